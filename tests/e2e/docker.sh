#!/usr/bin/env bash
# The Docker leg of the end-to-end tests: drainit in containers of a real
# Docker engine (Debian's docker.io: dockerd, containerd, runc), used the way
# Docker users use it.
#
#   bash tests/e2e/docker.sh /abs/path/to/drainit   (tests/e2e/run.sh runs it)
#
# The leg starts a dockerd of its own, as root, with everything in a temp dir
# (--data-root, --exec-root, its socket, pid file and config) and tears it
# down on exit, failure and interrupt included. That dockerd touches neither
# the host's firewall nor its network (--bridge none, --iptables=false: every
# container runs with --network none), keeps its cgroups under a parent of its
# own, and has `--init-path` pointed at drainit, so that `docker run --init`
# injects drainit instead of tini. The images are built FROM scratch (no
# registry needs to be reachable) and hold busybox-static and
# tests/e2e/app/app.sh, with or without /drainit.
#
# Each case prints "PASS name: why", "FAIL name: why" or "SKIP name: why"; the
# last line is "docker: N passed, M failed, K skipped", and the exit status is
# non-zero when M > 0. If dockerd cannot start: with CI=true every case
# FAILS; otherwise the leg is skipped, loudly, and exits 0.
#
# Knobs (environment):
#   DRAINIT_E2E_KEEP=1       leave dockerd running and keep the temp dir (the
#                            log says how to reach and stop it)
#   DRAINIT_E2E_ONLY=REGEX   run only the cases whose name matches
#   DRAINIT_E2E_DOCKERD=PATH the dockerd to start (default: dockerd on PATH)
set -uo pipefail

LEG=docker
CASES=(docker-stop docker-exit-codes docker-kill-deadline docker-healthcheck docker-init-path)

if [ $# -ne 1 ]; then
  echo "usage: $0 /abs/path/to/drainit" >&2
  exit 2
fi
BIN=$1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E=$ROOT/tests/e2e
# shellcheck source=tests/e2e/lib.sh
. "$E2E/lib.sh"

bin_under_test

# --- the engine ------------------------------------------------------------------

if ! bash "$ROOT/scripts/deps.sh" docker >&2; then
  engine_unusable "scripts/deps.sh docker could not install docker.io and busybox-static"
fi
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || engine_unusable "busybox is not installed (package busybox-static)"
DOCKERD=${DRAINIT_E2E_DOCKERD:-$(PATH=/usr/sbin:/usr/bin:$PATH command -v dockerd || true)}
[ -n "$DOCKERD" ] || engine_unusable "dockerd is not installed (package docker.io)"
# The client that came with this dockerd (docker.io puts both in /usr): a
# newer client elsewhere on PATH may not speak the daemon's API version.
CLIENT=$(dirname "$DOCKERD")/../bin/docker
[ -x "$CLIENT" ] || CLIENT=/usr/bin/docker
[ -x "$CLIENT" ] || CLIENT=$(command -v docker || true)
[ -n "$CLIENT" ] || engine_unusable "the docker client is not installed (package docker.io)"

# Everything of this run lives in $WORK, named after this shell's pid so that
# a later run can tell a leftover (its pid gone) from a run in progress.
WORK=$(mktemp -d "/tmp/drainit-e2e-docker-$$.XXXXXX")
PREFIX=drainit-e2e-$$
SOCK=$WORK/docker.sock
D=("$CLIENT" -H "unix://$SOCK")
export DOCKER_BUILDKIT=0 DOCKER_CONFIG=$WORK/client # the classic builder; no ~/.docker
DOCKERD_PID=""

# stop_dockerd DIR: stops the dockerd (and the containerd it started) whose
# files are in DIR, unmounts what is left under DIR, and removes DIR. Only
# processes whose command line names DIR are signalled.
stop_dockerd() {
  local dir=$1 pidfile pid i
  for pidfile in "$dir/dockerd.pid" "$dir/exec/containerd/containerd.pid"; do
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F -- "$dir" >/dev/null || continue
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
  done
  # Mounts dockerd left behind (overlays, shm), innermost first.
  awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf --one-file-system "$dir"
}

cleanup() {
  local rc=$?
  if [ "${DRAINIT_E2E_KEEP:-}" = 1 ]; then
    log "kept: dockerd (pid ${DOCKERD_PID:-none}) on unix://$SOCK and $WORK; stop it with: kill \$(cat $WORK/dockerd.pid)"
    return $rc
  fi
  if [ -n "$DOCKERD_PID" ]; then
    "${D[@]}" ps -aq 2>/dev/null | xargs -r "${D[@]}" rm -f >/dev/null 2>&1
  fi
  stop_dockerd "$WORK"
  return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# What a run that was killed left behind: its dockerd, containerd, mounts.
sweep_stale() {
  local dir owner
  for dir in /tmp/drainit-e2e-docker-*.*; do
    [ -d "$dir" ] || continue
    owner=${dir#/tmp/drainit-e2e-docker-}
    owner=${owner%%.*}
    [[ "$owner" =~ ^[0-9]+$ ]] && ! kill -0 "$owner" 2>/dev/null || continue
    log "removing what an earlier run left in $dir"
    stop_dockerd "$dir"
  done
}

start_dockerd() {
  mkdir -p "$WORK/data" "$WORK/exec" "$WORK/client"
  cp "$BIN" "$WORK/drainit"
  # A config file of our own: the host's /etc/docker/daemon.json is not read,
  # and the daemon's key goes here instead of /etc/docker/key.json.
  printf '{"deprecated-key-path": "%s/key.json"}\n' "$WORK" >"$WORK/daemon.json"
  "$DOCKERD" --config-file "$WORK/daemon.json" \
    --data-root "$WORK/data" --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.pid" \
    -H "unix://$SOCK" --containerd-namespace "$PREFIX" --containerd-plugins-namespace "$PREFIX-plugins" \
    --bridge none --iptables=false --ip6tables=false --ip-masq=false --userland-proxy=false \
    --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "/$PREFIX" \
    --init-path "$WORK/drainit" >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  local end
  end=$(calc "$(now) + 60")
  until "${D[@]}" version >/dev/null 2>&1; do
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
      PROBE_ERR="$DOCKERD exited at once: $(grep -v 'level=info' "$WORK/dockerd.log" | tail -n3 | tr '\n' ' ')"
      DOCKERD_PID=""
      return 1
    fi
    if is "$(now) > $end"; then
      PROBE_ERR="dockerd did not answer within 60s: $(grep -v 'level=info' "$WORK/dockerd.log" | tail -n3 | tr '\n' ' ')"
      return 1
    fi
    sleep 0.2
  done
}

# --- images ------------------------------------------------------------------------

BASE=$PREFIX-base:test     # /drainit as ENTRYPOINT, the app as CMD
HEALTH=$PREFIX-health:test # the same with HEALTHCHECK CMD ["/drainit", "--healthcheck"]
PLAIN=$PREFIX-plain:test   # no drainit at all: CMD ["/app/app.sh"]

build() { # build TAG CONTEXT-DIR (with a Dockerfile in it)
  "${D[@]}" build -q -t "$1" "$2" >"$WORK/build.log" 2>&1 && return 0
  PROBE_ERR="docker build failed: $(tail -n2 "$WORK/build.log" | tr '\n' ' ')"
  return 1
}

build_images() {
  make_rootfs "$WORK/base/rootfs"
  cat >"$WORK/base/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
ENTRYPOINT ["/drainit", "--"]
CMD ["/app/app.sh"]
EOF
  build "$BASE" "$WORK/base" || return 1

  mkdir -p "$WORK/health"
  cat >"$WORK/health/Dockerfile" <<EOF
FROM $BASE
ENV DRAINIT_DRAIN_FILE=/tmp/draining
HEALTHCHECK --interval=1s --timeout=3s --retries=1 CMD ["/drainit", "--healthcheck"]
EOF
  build "$HEALTH" "$WORK/health" || return 1

  make_rootfs "$WORK/plain/rootfs" without-drainit
  cat >"$WORK/plain/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["/app/app.sh"]
EOF
  build "$PLAIN" "$WORK/plain"
}

# Can the engine run a container at all (busybox only, not drainit)?
probe() {
  local out
  out=$("${D[@]}" run --rm --network none --entrypoint /bin/busybox "$BASE" echo probe-ok 2>&1)
  [[ "$out" == *probe-ok* ]] || { PROBE_ERR="docker run failed: $(printf '%s' "$out" | tail -n2 | tr '\n' ' ')"; return 1; }
}

PROBE_ERR=""
sweep_stale
start_dockerd || engine_unusable "$PROBE_ERR"
{ build_images && probe; } || engine_unusable "$PROBE_ERR"
log "$("${D[@]}" version -f 'docker {{.Server.Version}}, API {{.Server.APIVersion}}') ($(basename "$DOCKERD") pid $DOCKERD_PID, $WORK); storage $("${D[@]}" info -f '{{.Driver}}')"

if ! out=$("${D[@]}" run --rm --network none --entrypoint /drainit "$BASE" --version 2>&1); then
  fail_all "$BIN does not run in a FROM-scratch container (not static?): $out"
fi
log "under test: $out ($BIN)"

# --- helpers -----------------------------------------------------------------------

engine() { "${D[@]}" "$@"; }
case_containers() { engine ps -a --format '{{.Names}}' --filter "name=^$1"; }
remove_case() { engine ps -aq --filter "name=^$1" | xargs -r "${D[@]}" rm -f >/dev/null 2>&1; }

# start NAME [RUN ARGS...] IMAGE [COMMAND...]: docker run -d.
start() {
  local name=$1
  shift
  "${D[@]}" run -d --name "$name" --network none "$@" >/dev/null
}

not() { ! "$@"; }

# forced NAME: whether dockerd had to SIGKILL the container after docker
# stop's timeout: it logs "Container failed to exit within 1s of signal 15 -
# using the force" with container=ID (the wording differs between versions,
# the id and "failed to exit within" do not).
forced() {
  local id
  id=$(inspect "$1" '{{.Id}}') || return 1
  grep -F -- "$id" "$WORK/dockerd.log" | grep -F "failed to exit within" >/dev/null
}

# --- the cases ---------------------------------------------------------------------

# ENTRYPOINT ["/drainit", "--"], the drain set only by `docker run -e
# DRAINIT_*`, stopped by `docker stop -t 10`: the drain file appears while
# the app still serves, the app's SIGTERM waits for the delay, the app's own
# exit code is what docker inspect reports, and dockerd never had to SIGKILL.
case_docker_stop() {
  local n=$1 took code gap delay=3 dir=$WORK/drain-stop early=""
  mkdir -p "$dir"
  start "$n" -v "$dir:/drain" -e DRAINIT_DRAIN_FILE=/drain/draining \
    -e DRAINIT_DRAIN_DELAY=${delay}s -e DRAINIT_STOP_TIMEOUT=10s "$BASE" /app/app.sh --shutdown 1 ||
    { WHY="docker run failed"; return 1; }
  check "the app never printed 'app: ready'" wait_until 20 logs_have "$n" "app: ready" || return 1
  check "the drain file exists before any drain" [ ! -e "$dir/draining" ] || return 1
  timed_stop "$n" 10 "$WORK/stop.drain" &
  local stopper=$!
  if ! wait_until 8 test -e "$dir/draining"; then
    WHY="the drain file did not appear within 8s of docker stop"
    wait $stopper
    return 1
  fi
  logs_have "$n" "app: got SIGTERM" && early=1
  wait $stopper
  took=$(cat "$WORK/stop.drain")
  [[ "$took" != error* ]] || { WHY=$took; return 1; }
  check "the app already had SIGTERM when the drain file appeared" [ -z "$early" ] || return 1
  code=$(exit_code "$n")
  check "the app never logged 'app: shutdown complete'" logs_have "$n" "app: shutdown complete" || return 1
  sigterm_after_delay "$n" "$delay" || return 1
  gap=$GAP
  check "docker stop -t 10 took ${took}s, less than the ${delay}s delay + the app's 1s" is "$took >= $delay + 1" || return 1
  check "docker stop -t 10 took ${took}s: the engine's SIGKILL came (expected < 9s)" is "$took < 9" || return 1
  check "dockerd logged that it had to SIGKILL the container" not forced "$n" || return 1
  check "docker inspect reports exit code $code, expected the app's 0" [ "$code" = 0 ] || return 1
  OK="drain file while the app served; its SIGTERM ${gap}s after the drain started (delay ${delay}s), its 1s shutdown finished; docker stop ${took}s of 10s, no SIGKILL from dockerd; docker inspect: exit code 0"
}

# Exit codes as docker inspect reports them: the app's own, 128+N when a
# signal killed it, 127 for a command that does not exist, 125 for a bad
# DRAINIT_* value, and DRAINIT_SUCCESS_EXIT turning the 143 of an app that
# dies of the drain's SIGTERM (a JVM) into 0.
case_docker_exit_codes() {
  local n=$1 i=0 code c got=()
  expect() { # expect CODE RUN-ARGS...: docker run, then docker inspect
    local want=$1
    shift
    i=$((i + 1))
    c=$n-$i
    "${D[@]}" run --name "$c" --network none "$@" >/dev/null 2>&1
    code=$(exit_code "$c")
    got+=("$code")
    check "docker run $*: docker inspect reports exit code $code, expected $want" [ "$code" = "$want" ]
  }
  expect 3 "$BASE" sh -c 'exit 3' || return 1
  expect 143 "$BASE" sh -c 'kill -TERM $$' || return 1
  expect 0 -e DRAINIT_SUCCESS_EXIT=143,130 "$BASE" sh -c 'kill -TERM $$' || return 1
  expect 127 "$BASE" no-such-command || return 1
  expect 125 -e DRAINIT_SUCCESS_EXIT=137 "$BASE" true || return 1
  check "no one-line error naming DRAINIT_SUCCESS_EXIT for the 125" \
    logs_have "$n-5" "(from DRAINIT_SUCCESS_EXIT)" || return 1
  check "no 'counts as success' line for the 0" logs_have "$n-3" "the app's exit code 143 counts as success (DRAINIT_SUCCESS_EXIT): exiting 0" || return 1

  # The case the option is for: docker stop, a drain, and an app that dies of
  # its SIGTERM.
  c=$n-stop
  start "$c" -e DRAINIT_DRAIN_DELAY=1s -e DRAINIT_SUCCESS_EXIT=143 "$BASE" sh -c 'echo app: ready; exec sleep 60' ||
    { WHY="docker run failed"; return 1; }
  check "the app never printed 'app: ready'" wait_until 20 logs_have "$c" "app: ready" || return 1
  "${D[@]}" stop -t 10 "$c" >/dev/null || { WHY="docker stop failed"; return 1; }
  code=$(exit_code "$c")
  check "the app was not killed by SIGTERM" logs_have "$c" "the app was killed by SIGTERM (code 143)" || return 1
  check "docker inspect reports exit code $code after docker stop, expected 0 (DRAINIT_SUCCESS_EXIT=143)" [ "$code" = 0 ] || return 1
  OK="docker inspect: ${got[*]} (exit 3, killed by SIGTERM, the same with DRAINIT_SUCCESS_EXIT=143, not found, a bad DRAINIT_SUCCESS_EXIT); docker stop of an app that dies of the drain's SIGTERM: 0 with DRAINIT_SUCCESS_EXIT=143"
}

# An app that ignores SIGTERM, DRAINIT_STOP_TIMEOUT=5s, docker stop -t 5:
# drainit SIGKILLs at 4s and exits 137, before dockerd would at 5s. A control
# without DRAINIT_STOP_TIMEOUT shows what dockerd's own SIGKILL looks like
# (docker stop -t 1), so that its absence above means something.
case_docker_kill_deadline() {
  local n=$1 took code t_drain t_kill gap ctl=$1-control
  start "$ctl" "$BASE" /app/app.sh --ignore-term || { WHY="docker run failed"; return 1; }
  check "the control app never printed 'app: ready'" wait_until 20 logs_have "$ctl" "app: ready" || return 1
  "${D[@]}" stop -t 1 "$ctl" >/dev/null || { WHY="docker stop of the control failed"; return 1; }
  check "control: dockerd did not log its SIGKILL of a container that ignored docker stop -t 1 (the probe for it is broken)" \
    forced "$ctl" || return 1

  start "$n" -e DRAINIT_STOP_TIMEOUT=5s "$BASE" /app/app.sh --ignore-term ||
    { WHY="docker run failed"; return 1; }
  check "the app never printed 'app: ready'" wait_until 20 logs_have "$n" "app: ready" || return 1
  timed_stop "$n" 5 "$WORK/stop.kill"
  took=$(cat "$WORK/stop.kill")
  [[ "$took" != error* ]] || { WHY=$took; return 1; }
  code=$(exit_code "$n")
  check "no 'kill deadline reached: SIGKILL' line from drainit: dockerd's SIGKILL came first" \
    logs_have "$n" "kill deadline reached: SIGKILL" || return 1
  check "dockerd logged that it had to SIGKILL the container" not forced "$n" || return 1
  t_drain=$(log_time "$n" "SIGTERM received")
  t_kill=$(log_time "$n" "kill deadline reached: SIGKILL")
  check "no 'SIGTERM received' line in drainit's log" [ -n "$t_drain" ] || return 1
  gap=$(calc "$t_kill - $t_drain")
  check "docker stop took ${took}s: drainit killed before its 4s deadline" is "$took >= 4" || return 1
  check "drainit's SIGKILL came ${gap}s after SIGTERM, expected 4s (stop timeout - 1s)" \
    is "$gap >= 3.9 && $gap < 5" || return 1
  check "docker inspect reports exit code $code, expected 137" [ "$code" = 137 ] || return 1
  OK="drainit's SIGKILL ${gap}s after SIGTERM, docker stop ${took}s of 5s, dockerd never forced it (it did force the control), docker inspect: exit code 137"
}

# HEALTHCHECK CMD ["/drainit", "--healthcheck"] in the image: docker inspect
# shows healthy, then unhealthy as soon as docker stop starts the drain, while
# the app still serves (docker keeps running health checks during a stop).
case_docker_healthcheck() {
  local n=$1 code status said after t0 early="" delay=5
  start "$n" -e DRAINIT_DRAIN_DELAY=${delay}s -e DRAINIT_STOP_TIMEOUT=20s "$HEALTH" ||
    { WHY="docker run failed"; return 1; }
  health() { inspect "$1" '{{.State.Health.Status}}'; }
  is_healthy() { [ "$(health "$1")" = healthy ]; }
  is_unhealthy() { [ "$(health "$1")" = unhealthy ]; }
  check "docker inspect never showed healthy (last: $(health "$n"))" wait_until 20 is_healthy "$n" || return 1
  t0=$(now)
  timed_stop "$n" 20 "$WORK/stop.health" &
  local stopper=$!
  if ! wait_until $((delay - 1)) is_unhealthy "$n"; then
    WHY="docker inspect did not show unhealthy within $((delay - 1))s of docker stop (last: $(health "$n"))"
    wait $stopper
    return 1
  fi
  after=$(calc "$(now) - $t0")
  logs_have "$n" "app: got SIGTERM" && early=1
  said=$(inspect "$n" '{{range .State.Health.Log}}{{.Output}}{{end}}' | grep . | tail -n1)
  wait $stopper
  check "the app already had SIGTERM when the health turned: not during the drain" [ -z "$early" ] || return 1
  code=$(exit_code "$n")
  check "docker inspect reports exit code $code, expected the app's 0" [ "$code" = 0 ] || return 1
  OK="docker inspect: healthy, then unhealthy ${after}s after docker stop, during the ${delay}s drain, while the app still served (\"$said\"); exit code 0"
}

# `docker run --init` with dockerd --init-path pointed at drainit (what ECS
# initProcessEnabled does on EC2 with the daemon's init-path): an image with
# no drainit in it gets drainit as PID 1, and the drain set by -e works. The
# engine mounts drainit at /sbin/docker-init, so a health check can call it
# there (docker/ecs-task-definition-ec2-init.json does): healthy before,
# unhealthy during the drain.
case_docker_init_path() {
  local n=$1 pid1 version took code gap delay=3 pid early="" said
  start "$n" --init -e DRAINIT_DRAIN_FILE=/tmp/draining -e DRAINIT_DRAIN_DELAY=${delay}s "$PLAIN" ||
    { WHY="docker run --init failed"; return 1; }
  check "the app never printed 'app: ready'" wait_until 20 logs_have "$n" "app: ready" || return 1
  check "the image holds /drainit: the point is an image without it" \
    "${D[@]}" exec "$n" sh -c '! test -e /drainit' || return 1
  pid1=$("${D[@]}" exec "$n" cat /proc/1/cmdline | tr '\0' ' ')
  check "PID 1 is '$pid1', expected docker's init in front of the app" \
    [ "$pid1" = "/sbin/docker-init -- /app/app.sh " ] || return 1
  version=$("${D[@]}" exec "$n" /sbin/docker-init --version 2>&1)
  check "/sbin/docker-init --version says '$version': not drainit" [ "${version#drainit }" != "$version" ] || return 1
  check "/sbin/docker-init --healthcheck was not healthy before the drain" \
    "${D[@]}" exec "$n" /sbin/docker-init --healthcheck >/dev/null || return 1
  pid=$(inspect "$n" '{{.State.Pid}}')
  timed_stop "$n" 10 "$WORK/stop.init" &
  local stopper=$!
  if ! wait_until 8 test -e "/proc/$pid/root/tmp/draining"; then
    WHY="the drain file did not appear within 8s of docker stop"
    wait $stopper
    return 1
  fi
  said=$("${D[@]}" exec "$n" /sbin/docker-init --healthcheck 2>&1) && said="healthy?! $said"
  logs_have "$n" "app: got SIGTERM" && early=1
  wait $stopper
  took=$(cat "$WORK/stop.init")
  check "/sbin/docker-init --healthcheck during the drain said '$said', expected unhealthy" \
    [ "${said#unhealthy: draining}" != "$said" ] || return 1
  [[ "$took" != error* ]] || { WHY=$took; return 1; }
  check "the app already had SIGTERM when the drain file appeared" [ -z "$early" ] || return 1
  code=$(exit_code "$n")
  sigterm_after_delay "$n" "$delay" || return 1
  gap=$GAP
  check "dockerd logged that it had to SIGKILL the container" not forced "$n" || return 1
  check "docker inspect reports exit code $code, expected the app's 0" [ "$code" = 0 ] || return 1
  OK="image without drainit; docker run --init gave PID 1 '${pid1% }' = $version; drain file at once, /sbin/docker-init --healthcheck healthy then \"$said\", the app's SIGTERM ${gap}s later (delay ${delay}s); docker stop ${took}s; exit code 0"
}

for c in "${CASES[@]}"; do run_case "$c"; done
summary
