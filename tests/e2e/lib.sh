# Shared by the end-to-end legs (podman.sh, docker.sh): counting, timing,
# waiting, and the FROM-scratch root file system of the test images.
# Sourced, not run. A leg sets CASES=(...) and LEG=name before using
# fail_all / engine_unusable.
# shellcheck shell=bash

export LC_ALL=C # $EPOCHREALTIME uses the locale's decimal point

say() { printf '%s\n' "$*"; }
log() { printf 'e2e %s: %s\n' "${LEG:-?}" "$*" >&2; }

PASSED=0 FAILED=0 SKIPPED=0
pass() { PASSED=$((PASSED + 1)); say "PASS $1: $2"; }
fail() { FAILED=$((FAILED + 1)); say "FAIL $1: $2"; }
skip() { SKIPPED=$((SKIPPED + 1)); say "SKIP $1: $2"; }
summary() {
  say "$LEG: $PASSED passed, $FAILED failed, $SKIPPED skipped"
  [ "$FAILED" -eq 0 ]
  exit $?
}

selected() { [[ -z "${DRAINIT_E2E_ONLY:-}" || "$1" =~ ${DRAINIT_E2E_ONLY} ]]; }

# Every case fails for one reason (setup went wrong before any case ran).
fail_all() {
  local why=$1 c
  for c in "${CASES[@]}"; do selected "$c" && fail "$c" "$why"; done
  summary
}

# $BIN made absolute; every case fails when it is not an executable file.
bin_under_test() {
  if [ ! -f "$BIN" ] || [ ! -x "$BIN" ]; then
    fail_all "$BIN is not an executable file (run make build first)"
  fi
  BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
}

# A prerequisite of the leg cannot start: every case fails under CI=true,
# and is skipped, loudly, otherwise.
engine_unusable() {
  local why=$1 c
  if [ "${CI:-}" = true ]; then
    fail_all "the $LEG leg cannot start: $why"
  fi
  say "################################################################"
  say "## SKIPPING the $LEG leg of the end-to-end tests:"
  say "## $why"
  say "## (with CI=true this is a failure of every case)"
  say "################################################################"
  for c in "${CASES[@]}"; do selected "$c" && skip "$c" "$why"; done
  summary
}

now() { printf '%s\n' "$EPOCHREALTIME"; }
# Float arithmetic and comparisons.
calc() { awk "BEGIN { printf \"%.2f\", $* }"; }
is() { awk "BEGIN { exit !($*) }"; }

# wait_until SECONDS CMD...: run CMD every 0.1 s until it succeeds; false if
# it never did within SECONDS.
wait_until() {
  local limit=$1 end
  shift
  end=$(calc "$(now) + $limit")
  until "$@"; do
    is "$(now) > $end" && return 1
    sleep 0.1
  done
}

# check WHY CMD...: on failure record WHY and return 1.
WHY=""
check() {
  local what=$1
  shift
  if "$@"; then return 0; fi
  WHY=$what
  return 1
}

# make_rootfs DIR [with-drainit]: busybox-static with its applet links, the
# test app in /app, a world-writable /tmp, and /drainit unless told not to.
make_rootfs() {
  local rootfs=$1 with=${2:-with-drainit} applet
  mkdir -p "$rootfs/bin" "$rootfs/app" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  cp "$BUSYBOX" "$rootfs/bin/busybox"
  # `busybox --install -s` cannot run in a FROM-scratch build: make the
  # applet links here.
  for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
  done
  cp "$E2E/app/app.sh" "$rootfs/app/app.sh"
  chmod 755 "$rootfs/app/app.sh"
  if [ "$with" = with-drainit ]; then
    cp "$BIN" "$rootfs/drainit"
    chmod 755 "$rootfs/drainit"
  fi
}

# log_seconds LINE: the RFC 3339 timestamp that starts a `logs -t` line, in
# seconds since the epoch.
log_seconds() { date -d "${1%% *}" +%s.%N; }
