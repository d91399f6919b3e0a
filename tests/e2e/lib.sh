# Shared by the end-to-end legs (podman.sh, docker.sh): counting, timing,
# waiting, and the FROM-scratch root file system of the test images.
# Sourced, not run. A leg sets CASES=(...) and LEG=name before using
# fail_all / engine_unusable, and defines, for the container helpers below:
#   engine ARGS...        its CLI (docker and podman take the same commands here)
#   case_containers NAME  the containers of a case, one name a line
#   remove_case NAME      removes what a case made
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

# --- containers, through the leg's `engine` ----------------------------------------

# cname CASE: the container name of a case.
cname() { printf '%s-%s\n' "$PREFIX" "$1"; }

logs() { engine logs "$1" 2>&1; }
# (no grep -q: with pipefail, the engine's logs dying of SIGPIPE would fail the test)
logs_have() { logs "$1" | grep -F -- "$2" >/dev/null; }
inspect() { engine inspect -f "$2" "$1"; }
exit_code() { inspect "$1" '{{.State.ExitCode}}'; }
not_running() { [ "$(inspect "$1" '{{.State.Running}}' 2>/dev/null)" = false ]; }

# log_time NAME TEXT: when the engine read the first log line holding TEXT,
# in seconds since the epoch.
log_time() {
  local line
  line=$(engine logs -t "$1" 2>&1 | grep -F -- "$2" | head -n1)
  [ -n "$line" ] && log_seconds "$line"
}

# timed_stop NAME TIMEOUT OUTFILE [pod]: `stop -t TIMEOUT` (of a pod, with
# pod); writes the seconds it took to OUTFILE (a line "error ..." if the stop
# failed).
timed_stop() {
  local t0 t1 kind=()
  [ "${4:-}" = pod ] && kind=(pod)
  t0=$(now)
  if engine "${kind[@]}" stop -t "$2" "$1" >/dev/null 2>"$3.err"; then
    t1=$(now)
    calc "$t1 - $t0" >"$3"
  else
    echo "error: $LEG stop failed: $(tr '\n' ' ' <"$3.err")" >"$3"
  fi
}

# run_case CASE: runs case_CASE; PASS with its $OK text, or FAIL with $WHY and
# the logs of the case's containers; then frees what the case made (the
# leg's trap is the safety net).
run_case() {
  local c=$1 name ctr
  selected "$c" || return 0
  name=$(cname "$c")
  WHY="" OK=""
  if "case_${c//-/_}" "$name"; then
    pass "$c" "$OK"
  else
    fail "$c" "${WHY:-failed}"
    for ctr in $(case_containers "$name"); do
      say "  --- log of $ctr (exit code $(exit_code "$ctr" 2>/dev/null)) ---"
      engine logs -t "$ctr" 2>&1 | sed 's/^/  | /'
    done
  fi
  [ "${DRAINIT_E2E_KEEP:-}" = 1 ] || remove_case "$name"
}

# sigterm_after_delay NAME DELAY: the app's SIGTERM came DELAY seconds after
# drainit's "drain started" (by the engine's log timestamps: 0.1 s of slack
# below, as they come from two pipes; 3 s above); sets GAP.
sigterm_after_delay() {
  local n=$1 delay=$2 t_drain t_term
  t_drain=$(log_time "$n" "drain started")
  t_term=$(log_time "$n" "app: got SIGTERM")
  check "no 'drain started' line in drainit's log" [ -n "$t_drain" ] || return 1
  check "the app never logged 'app: got SIGTERM'" [ -n "$t_term" ] || return 1
  GAP=$(calc "$t_term - $t_drain")
  check "the app got SIGTERM ${GAP}s after the drain started, before the ${delay}s delay" \
    is "$GAP >= $delay - 0.1" || return 1
  check "the app got SIGTERM ${GAP}s after the drain started, expected about ${delay}s (< $((delay + 3))s)" \
    is "$GAP < $delay + 3"
}
