#!/usr/bin/env bash
# The podman legs of the end-to-end tests: drainit as PID 1 of real
# containers in podman + runc, stopped the way an orchestrator stops them
# (cases exec-form ... orphans), and docker/kubernetes-pod.yaml run by
# `podman kube play` (case kube-play).
#
#   bash tests/e2e/podman.sh /abs/path/to/drainit   (tests/e2e/run.sh runs it)
#
# The images are built FROM scratch (no registry needs to be reachable) and
# hold busybox-static, the static drainit and tests/e2e/app/app.sh. Each case
# prints "PASS name: why", "FAIL name: why" or "SKIP name: why"; the last line
# is "podman: N passed, M failed, K skipped", and the exit status is non-zero
# when M > 0.
#
# If the engine cannot start: with CI=true every case FAILS; otherwise the
# run is skipped, loudly, and exits 0.
#
# Knobs (environment):
#   DRAINIT_E2E_STORAGE=isolated  use a throw-away vfs store under a temp dir
#                                 instead of podman's default store (this is
#                                 also the automatic fallback when the default
#                                 store cannot run a container)
#   DRAINIT_E2E_KEEP=1            keep the containers, images and temp dir
#   DRAINIT_E2E_ONLY=REGEX        run only the cases whose name matches
set -uo pipefail

LEG=podman
CASES=(exec-form shell-form drain-env kill-deadline healthcheck orphans kube-play)

# --- arguments ---------------------------------------------------------------

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

# --- the engine ----------------------------------------------------------------

if ! bash "$ROOT/scripts/deps.sh" e2e >&2; then
  engine_unusable "scripts/deps.sh e2e could not install podman, runc, catatonit and busybox-static"
fi
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || engine_unusable "busybox is not installed (package busybox-static)"

WORK=$(mktemp -d /tmp/drainit-e2e.XXXXXX)
# A unique, lowercase prefix for every container and image of this run.
PREFIX=drainit-e2e-$(date +%s)-$$
IMAGES=()
CONTAINERS=()
PODS=()

# How podman works here (root, no systemd, in a sandbox):
#   --runtime runc               crun is not installed; say which runtime
#   --cgroup-manager=cgroupfs    there is no systemd to ask for cgroups
P=(podman --runtime runc --cgroup-manager=cgroupfs)

# Flags for every `podman run`:
#   --ulimit nofile/nproc  a rootful podman raises both limits to 1048576 by
#       default, and without CAP_SYS_RESOURCE (which this sandbox lacks) runc
#       then fails: "error setting rlimits ... operation not permitted". Stay
#       at or under our own hard limits.
#   --network none         no test needs a network; this keeps netavark and
#       the host's firewall out of the way
#   --log-driver k8s-file  `podman logs -t` from a plain file, timestamped when
#       conmon reads each line, whether or not journald exists
limit() { # min(1024, hard limit $1)
  local hard
  hard=$(ulimit -H "$1")
  if [ "$hard" = unlimited ] || [ "$hard" -gt 1024 ]; then echo 1024; else echo "$hard"; fi
}
NOFILE=$(limit -n)
NPROC=$(limit -u)
RUN_FLAGS=(--network none --log-driver k8s-file
  --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")

use_isolated_storage() {
  # A throw-away store: vfs works on any file system (overlay does not, e.g.
  # inside another overlay), and nothing outside $WORK is touched.
  mkdir -p "$WORK/storage" "$WORK/run" "$WORK/libpod"
  P=(podman --runtime runc --cgroup-manager=cgroupfs
    --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs
    --tmpdir "$WORK/libpod")
  STORAGE="isolated vfs store in $WORK/storage"
}
STORAGE="podman's default store"
[ "${DRAINIT_E2E_STORAGE:-}" = isolated ] && use_isolated_storage

# Removes every container and image this run made (in the current store).
remove_all() {
  if [ ${#PODS[@]} -gt 0 ]; then
    "${P[@]}" pod rm -f "${PODS[@]}" >/dev/null 2>&1
  fi
  if [ ${#CONTAINERS[@]} -gt 0 ]; then
    "${P[@]}" rm -f -t 0 "${CONTAINERS[@]}" >/dev/null 2>&1
  fi
  local i # derived images first, then the base
  for ((i = ${#IMAGES[@]} - 1; i >= 0; i--)); do
    "${P[@]}" rmi -f "${IMAGES[i]}" >/dev/null 2>&1
  done
  CONTAINERS=() IMAGES=() PODS=()
}

cleanup() {
  local rc=$?
  if [ "${DRAINIT_E2E_KEEP:-}" = 1 ]; then
    log "kept: pods ${PODS[*]:-none}; containers ${CONTAINERS[*]:-none}; images ${IMAGES[*]:-none}; $WORK"
    return $rc
  fi
  remove_all
  rm -rf --one-file-system "$WORK"
  return $rc
}
trap cleanup EXIT

# Containers and images that an earlier run left behind when it was killed
# (its pid, in the name, is gone): remove them from the default store.
sweep_stale() {
  local name pid
  while read -r name; do
    pid=$(cut -d- -f4 <<<"$name")
    [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null || continue
    "${P[@]}" pod rm -f "$name" >/dev/null 2>&1
  done < <("${P[@]}" pod ps --format '{{.Name}}' --filter 'name=^drainit-e2e-' 2>/dev/null)
  while read -r name; do
    pid=$(cut -d- -f4 <<<"$name")
    [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null || continue
    "${P[@]}" rm -f -t 0 "$name" >/dev/null 2>&1
  done < <("${P[@]}" ps -a --format '{{.Names}}' --filter 'name=^drainit-e2e-' 2>/dev/null)
  while read -r name; do
    pid=$(cut -d- -f4 <<<"${name#localhost/}")
    [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null || continue
    "${P[@]}" rmi -f "$name" >/dev/null 2>&1
  done < <("${P[@]}" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep '^localhost/drainit-e2e-')
}
trap 'exit 130' INT TERM

# --- helpers -------------------------------------------------------------------

engine() { "${P[@]}" "$@"; }
# A case's container, or the one container of its pod.
case_containers() {
  local ctr
  for ctr in "$1" "$1-web"; do
    engine container exists "$ctr" 2>/dev/null && echo "$ctr"
  done
  return 0
}
remove_case() {
  engine rm -f -t 0 "$1" >/dev/null 2>&1
  engine pod rm -f "$1" >/dev/null 2>&1
}

# start CASE [RUN ARGS...] IMAGE [COMMAND...]: podman run -d, remembered for
# clean-up.
start() {
  local name
  name=$(cname "$1")
  shift
  CONTAINERS+=("$name")
  "${P[@]}" run -d --name "$name" "${RUN_FLAGS[@]}" "$@" >/dev/null
}

# --- images --------------------------------------------------------------------

BASE=localhost/$PREFIX-base:test
SHELL_FORM=localhost/$PREFIX-shell-form:test
KUBE_IMAGE=localhost/$PREFIX-kube:test

build() { # build TAG CONTEXT-DIR (with a Containerfile in it)
  IMAGES+=("$1")
  "${P[@]}" build -q --pull=never --layers=false -t "$1" "$2" >"$WORK/build.log" 2>&1 && return 0
  cat "$WORK/build.log" >&2
  PROBE_ERR="podman build failed: $(tail -n2 "$WORK/build.log" | tr '\n' ' ')"
  return 1
}

build_images() {
  local ctx=$WORK/base
  make_rootfs "$ctx/rootfs"
  cat >"$ctx/Containerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
ENTRYPOINT ["/drainit", "--"]
CMD ["/app/app.sh"]
EOF
  build "$BASE" "$ctx" || return 1

  # A legacy shell-form CMD: the image config holds
  # ["/bin/sh", "-c", "/app/app.sh --shutdown 2; echo after the app"], and the
  # shell cannot exec the app since a command follows it.
  mkdir -p "$WORK/shell-form"
  cat >"$WORK/shell-form/Containerfile" <<EOF
FROM $BASE
CMD /app/app.sh --shutdown 2; echo "after the app"
EOF
  build "$SHELL_FORM" "$WORK/shell-form"
}

# Can the engine run a container at all (busybox only, not drainit)?
probe() {
  local name=$PREFIX-probe out
  CONTAINERS+=("$name")
  out=$("${P[@]}" run --rm --name "$name" "${RUN_FLAGS[@]}" \
    --entrypoint '["/bin/busybox", "echo", "probe-ok"]' "$BASE" 2>&1)
  [[ "$out" == *probe-ok* ]] || { PROBE_ERR="podman run failed: $(printf '%s' "$out" | tail -n2 | tr '\n' ' ')"; return 1; }
}

PROBE_ERR=""
if ! command -v podman >/dev/null; then
  engine_unusable "podman is not installed"
fi
sweep_stale
if ! { build_images && probe; }; then
  if [ "${DRAINIT_E2E_STORAGE:-}" != isolated ]; then
    log "the default store failed ($PROBE_ERR); trying an isolated vfs store"
    remove_all
    use_isolated_storage
    rm -rf "$WORK/base" "$WORK/shell-form"
    PROBE_ERR=""
    build_images && probe || engine_unusable "podman cannot run a container: $PROBE_ERR"
  else
    engine_unusable "podman cannot run a container: $PROBE_ERR"
  fi
fi
log "$(podman --version), runc $(runc --version | awk 'NR==1{print $3}'), $STORAGE, ulimits nofile=$NOFILE nproc=$NPROC"

# drainit itself must start in an empty, FROM-scratch image (static binary).
if ! out=$("${P[@]}" run --rm "${RUN_FLAGS[@]}" --entrypoint '["/drainit", "--version"]' "$BASE" 2>&1); then
  fail_all "$BIN does not run in a FROM-scratch container (not static?): $out"
fi
log "under test: $out ($BIN)"

# --- the cases -------------------------------------------------------------------

# podman stop of an exec-form app: the app gets SIGTERM, the container exits
# with the app's code, at once.
case_exec_form() {
  local n=$1 took code
  start exec-form "$BASE" || { WHY="podman run failed"; return 1; }
  check "the app never printed 'app: ready'" wait_until 20 logs_have "$n" "app: ready" || return 1
  timed_stop "$n" 10 "$WORK/stop.exec"
  took=$(cat "$WORK/stop.exec")
  [[ "$took" != error* ]] || { WHY=$took; return 1; }
  code=$(exit_code "$n")
  check "the app never logged 'app: got SIGTERM'" logs_have "$n" "app: got SIGTERM" || return 1
  check "exit code $code, expected the app's 0" [ "$code" = 0 ] || return 1
  check "podman stop -t 10 took ${took}s, expected well under 10s (< 5s)" is "$took < 5" || return 1
  OK="the app got SIGTERM, exit code 0, stopped in ${took}s of 10s"
}

# A shell-form CMD: /bin/sh -c "app.sh --shutdown 2; echo ..." — the app sits
# behind a shell that does not exec it, and still gets SIGTERM and its 2 s.
case_shell_form() {
  local n=$1 took code
  start shell-form "$SHELL_FORM" || { WHY="podman run failed"; return 1; }
  check "the app never printed 'app: ready'" wait_until 20 logs_have "$n" "app: ready" || return 1
  timed_stop "$n" 10 "$WORK/stop.shell"
  took=$(cat "$WORK/stop.shell")
  [[ "$took" != error* ]] || { WHY=$took; return 1; }
  code=$(exit_code "$n")
  check "the app behind the shell never logged 'app: got SIGTERM'" logs_have "$n" "app: got SIGTERM" || return 1
  check "the app never logged 'app: shutdown complete' (cut short?)" \
    logs_have "$n" "app: shutdown complete" || return 1
  check "stopped in ${took}s: sooner than the app's 2s shutdown" is "$took >= 2" || return 1
  check "podman stop -t 10 took ${took}s: podman had to SIGKILL (expected < 9s)" is "$took < 9" || return 1
  check "exit code 137: killed, not stopped" [ "$code" != 137 ] || return 1
  OK="the app behind /bin/sh -c got SIGTERM and finished its 2s shutdown; stopped in ${took}s of 10s; exit code $code"
}

# A drain set up only through DRAINIT_* variables, run by podman stop: the
# drain file appears while the app still serves, and the app's SIGTERM waits
# for the delay. The drain file's directory is bind-mounted, so that the host
# can watch it: podman refuses `podman exec` into a container it is stopping.
case_drain_env() {
  local n=$1 took code gap delay=3 dir=$WORK/drain-env
  mkdir -p "$dir"
  start drain-env -v "$dir:/drain" \
    -e DRAINIT_DRAIN_FILE=/drain/draining -e DRAINIT_DRAIN_DELAY=${delay}s "$BASE" ||
    { WHY="podman run failed"; return 1; }
  check "the app never printed 'app: ready'" wait_until 20 logs_have "$n" "app: ready" || return 1
  check "the drain file exists before any drain" [ ! -e "$dir/draining" ] || return 1
  check "drainit --healthcheck inside reports unhealthy before any drain" \
    "${P[@]}" exec "$n" /drainit --healthcheck >/dev/null || return 1

  timed_stop "$n" 20 "$WORK/stop.drain" &
  local stopper=$!
  if ! wait_until 2.5 test -e "$dir/draining"; then
    WHY="the drain file did not appear within 2.5s of podman stop"
    wait $stopper
    return 1
  fi
  local early=""
  logs_have "$n" "app: got SIGTERM" && early=1
  wait $stopper
  took=$(cat "$WORK/stop.drain")
  [[ "$took" != error* ]] || { WHY=$took; return 1; }
  check "the app already had SIGTERM when the drain file appeared" [ -z "$early" ] || return 1
  code=$(exit_code "$n")
  check "the app never logged 'app: got SIGTERM'" logs_have "$n" "app: got SIGTERM" || return 1
  # podman stop is issued before the drain starts and returns after the app
  # exits: it cannot take less than the delay.
  check "podman stop took ${took}s, less than the ${delay}s drain delay" is "$took >= $delay" || return 1
  sigterm_after_delay "$n" "$delay" || return 1
  gap=$GAP
  check "exit code $code, expected the app's 0" [ "$code" = 0 ] || return 1
  OK="drain file written while the app served; its SIGTERM ${gap}s after the drain started (delay ${delay}s); podman stop ${took}s; exit code 0"
}

# An app that ignores SIGTERM, DRAINIT_STOP_TIMEOUT=5s, podman stop -t 5:
# drainit SIGKILLs at 4s, before podman would at 5s.
case_kill_deadline() {
  local n=$1 took code t_drain t_kill gap
  start kill-deadline -e DRAINIT_STOP_TIMEOUT=5s "$BASE" /app/app.sh --ignore-term ||
    { WHY="podman run failed"; return 1; }
  check "the app never printed 'app: ready'" wait_until 20 logs_have "$n" "app: ready" || return 1
  timed_stop "$n" 5 "$WORK/stop.kill"
  took=$(cat "$WORK/stop.kill")
  [[ "$took" != error* ]] || { WHY=$took; return 1; }
  code=$(exit_code "$n")
  check "no 'kill deadline reached: SIGKILL' line from drainit: podman's SIGKILL came first" \
    logs_have "$n" "kill deadline reached: SIGKILL" || return 1
  t_drain=$(log_time "$n" "SIGTERM received")
  t_kill=$(log_time "$n" "kill deadline reached: SIGKILL")
  check "no 'SIGTERM received' line in drainit's log" [ -n "$t_drain" ] || return 1
  gap=$(calc "$t_kill - $t_drain")
  check "podman stop took ${took}s: drainit killed before its 4s deadline" is "$took >= 4" || return 1
  check "drainit's SIGKILL came ${gap}s after SIGTERM, expected 4s (stop timeout - 1s)" \
    is "$gap >= 3.9 && $gap < 5" || return 1
  check "exit code $code, expected 137" [ "$code" = 137 ] || return 1
  OK="drainit logged its SIGKILL ${gap}s after SIGTERM (podman's would be at 5s), podman stop ${took}s, exit code 137"
}

# A HEALTHCHECK of `drainit --healthcheck` (exec form, drain file from
# DRAINIT_DRAIN_FILE): healthy before, unhealthy as soon as the drain starts,
# while the app still serves. The drain starts with `podman kill -s TERM`,
# the signal `podman stop` sends, because podman refuses health checks (and
# exec) on a container it is stopping; docker and kubelet do not.
case_healthcheck() {
  local n=$1 code out t0 after early="" delay=4
  start healthcheck -e DRAINIT_DRAIN_FILE=/tmp/draining -e DRAINIT_DRAIN_DELAY=${delay}s \
    --health-cmd '["/drainit", "--healthcheck"]' --health-interval disable --health-retries 1 \
    "$BASE" || { WHY="podman run failed"; return 1; }
  check "the app never printed 'app: ready'" wait_until 20 logs_have "$n" "app: ready" || return 1
  if ! out=$("${P[@]}" healthcheck run "$n" 2>&1); then
    WHY="podman healthcheck run failed before the drain: $out"
    return 1
  fi
  t0=$(now)
  "${P[@]}" kill -s TERM "$n" >/dev/null || { WHY="podman kill -s TERM failed"; return 1; }
  hc_unhealthy() {
    out=$("${P[@]}" healthcheck run "$1" 2>&1) && return 1
    [[ "$out" == *unhealthy* ]]
  }
  if ! wait_until 3 hc_unhealthy "$n"; then
    WHY="podman healthcheck run did not answer unhealthy within 3s of the drain's start (last: ${out:-nothing})"
    return 1
  fi
  after=$(calc "$(now) - $t0")
  logs_have "$n" "app: got SIGTERM" && early=1
  check "the app already had SIGTERM when the health check turned: not during the drain" [ -z "$early" ] || return 1
  local status said
  status=$("${P[@]}" inspect -f '{{.State.Health.Status}}' "$n")
  said=$("${P[@]}" inspect -f '{{range .State.Health.Log}}{{.Output}}{{"\n"}}{{end}}' "$n" | grep . | tail -n1)
  check "podman's health status is '$status' after a failed check (--health-retries 1), expected unhealthy" \
    [ "$status" = unhealthy ] || return 1
  check "the container did not exit within $((delay + 10))s of SIGTERM" \
    wait_until $((delay + 10)) not_running "$n" || return 1
  code=$(exit_code "$n")
  check "exit code $code, expected the app's 0" [ "$code" = 0 ] || return 1
  OK="'podman healthcheck run' healthy before, unhealthy ${after}s into the ${delay}s drain while the app still served (\"$said\"); exit code 0"
}


# An app that leaves 1000 orphans: once they have exited, no zombie is left.
case_orphans() {
  local n=$1 state first code
  start orphans "$BASE" /app/app.sh --orphans 1000 || { WHY="podman run failed"; return 1; }
  check "the app never printed 'app: ready' (after spawning 1000 orphans)" \
    wait_until 60 logs_have "$n" "app: ready" || return 1
  # "PROCESSES ZOMBIES" inside the container, with shell builtins only (the
  # scan forks nothing that could itself show up).
  local scan='p=0 z=0; for f in /proc/[0-9]*/stat; do
      { read -r l <"$f"; } 2>/dev/null || continue
      s=${l##*) }; s=${s%% *}; p=$((p + 1)); [ "$s" = Z ] && z=$((z + 1))
    done; echo "$p $z"'
  first=$("${P[@]}" exec "$n" /bin/sh -c "$scan")
  # Settled: the orphans (3s each) are gone — drainit, the app, its sleep and
  # this scan are left — and no process is a zombie.
  settled() {
    state=$("${P[@]}" exec "$1" /bin/sh -c "$scan" 2>/dev/null) || return 1
    set -- $state
    [ "$1" -le 6 ] && [ "$2" -eq 0 ]
  }
  if ! wait_until 30 settled "$n"; then
    WHY="30s after the orphans were spawned: processes/zombies = ${state:-?} (first look: $first)"
    return 1
  fi
  timed_stop "$n" 10 "$WORK/stop.orphans"
  code=$(exit_code "$n")
  check "exit code $code, expected the app's 0" [ "$code" = 0 ] || return 1
  OK="processes/zombies ${first/ //} at first look, then ${state/ //}: every orphan reaped; exit code 0"
}

# docker/kubernetes-pod.yaml, run by `podman kube play` with its image swapped
# for a test image, stopped as its comment says: at t+0 the drain file
# appears while the app still serves, at t+15s the app gets SIGTERM and dies
# of it, like python's http.server (143, which the yaml's DRAINIT_SUCCESS_EXIT
# turns into exit code 0). Also checks what docs/deploying.md
# says podman 4.3 does with the spec: it ignores terminationGracePeriodSeconds
# (the stop timeout stays 10s, so stop with `podman pod stop -t 30`) and the
# readinessProbe (no health check), and `podman kube down` SIGKILLs at once.
case_kube_play() {
  local n=$1 ctr=$1-web dir=$WORK/kube pid out stop_timeout health cmdline served
  local took code t_drain t_term gap t0 took_down delay=15
  command -v catatonit >/dev/null ||
    { WHY="catatonit is not installed: podman kube play cannot build its pause image"; return 1; }
  mkdir -p "$dir/rootfs/bin"
  cat >"$dir/rootfs/bin/python3" <<'EOF'
#!/bin/sh
# Stands in for `python3 -m http.server PORT`: busybox httpd, which like
# http.server has no SIGTERM handler and dies of it.
[ "$1 $2" = "-m http.server" ] || { echo "python3 stand-in: only -m http.server PORT" >&2; exit 2; }
mkdir -p /srv && echo served >/srv/index.html
exec httpd -f -p "${3:-8000}" -h /srv
EOF
  chmod 755 "$dir/rootfs/bin/python3"
  printf 'FROM %s\nCOPY rootfs/ /\n' "$BASE" >"$dir/Containerfile"
  build "$KUBE_IMAGE" "$dir" || { WHY=$PROBE_ERR; return 1; }
  # The yaml as shipped but for the image, the pod's name (unique to this
  # run), and `ports:` (podman 4.3 publishes a containerPort on the host's
  # port, which needs a bridge network and the host's firewall; the tests run
  # without a network).
  sed -e "s#image: registry.example.com/web:latest#image: $KUBE_IMAGE#" \
    -e "s#^  name: web\$#  name: $n#" \
    -e '/^      ports:$/,/name: health$/d' "$ROOT/docker/kubernetes-pod.yaml" >"$dir/pod.yaml"
  check "docker/kubernetes-pod.yaml changed: the test could not swap its image and name" \
    [ "$(grep -c -e "image: $KUBE_IMAGE" -e "name: $n\$" "$dir/pod.yaml")" = 2 ] || return 1
  # kube play has no --ulimit: the limits of RUN_FLAGS, by containers.conf.
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' \
    "$NOFILE" "$NOFILE" "$NPROC" "$NPROC" >"$dir/containers.conf"
  PODS+=("$n")
  if ! out=$(CONTAINERS_CONF=$dir/containers.conf "${P[@]}" kube play --network none \
    --log-driver k8s-file "$dir/pod.yaml" 2>&1); then
    WHY="podman kube play failed: $(tail -n2 <<<"$out" | tr '\n' ' ')"
    return 1
  fi
  pid=$("${P[@]}" inspect -f '{{.State.Pid}}' "$ctr")
  # (timeout, not wget -T: busybox-static 1.35 wget -T dies of SIGSEGV)
  serves() { nsenter --net="/proc/$pid/ns/net" timeout 3 "$BUSYBOX" wget -q -O- http://127.0.0.1:8080/ 2>/dev/null | grep served >/dev/null; }
  check "the app never served on 127.0.0.1:8080 inside the pod" wait_until 20 serves || return 1
  cmdline=$("${P[@]}" exec "$ctr" cat /proc/1/cmdline | tr '\0' ' ')
  check "PID 1 of the container is '$cmdline', expected drainit" \
    [ "$cmdline" = "/drainit -- python3 -m http.server 8080 " ] || return 1
  # What podman made of the spec.
  stop_timeout=$("${P[@]}" inspect -f '{{.Config.StopTimeout}}' "$ctr")
  health=$("${P[@]}" inspect -f '{{json .Config.Healthcheck}}' "$ctr")
  check "podman now takes terminationGracePeriodSeconds (stop timeout $stop_timeout): update docs/deploying.md, which says it is ignored" \
    [ "$stop_timeout" = 10 ] || return 1
  check "podman now runs the readinessProbe as a health check ($health): update docs/deploying.md, which says it is ignored" \
    [ "$health" = null ] || return 1

  timed_stop "$n" 30 "$WORK/stop.kube" pod &
  local stopper=$!
  if ! wait_until 2.5 test -e "/proc/$pid/root/tmp/draining"; then
    WHY="the drain file /tmp/draining did not appear within 2.5s of podman pod stop"
    wait $stopper
    return 1
  fi
  serves && served=1
  wait $stopper
  took=$(cat "$WORK/stop.kube")
  [[ "$took" != error* ]] || { WHY=$took; return 1; }
  code=$(exit_code "$ctr")
  check "the app did not answer during the drain" [ "${served:-}" = 1 ] || return 1
  t_drain=$(log_time "$ctr" "drain started")
  t_term=$(log_time "$ctr" "the app was killed by SIGTERM")
  check "no 'drain started' line in drainit's log" [ -n "$t_drain" ] || return 1
  check "no 'the app was killed by SIGTERM' line in drainit's log" [ -n "$t_term" ] || return 1
  check "no 't+15.0s: sending SIGTERM' line in drainit's log" \
    logs_have "$ctr" "t+15.0s: sending SIGTERM to the app's process group" || return 1
  gap=$(calc "$t_term - $t_drain")
  check "the app died ${gap}s after the drain started, before the ${delay}s delay" is "$gap >= $delay - 0.1" || return 1
  check "the app died ${gap}s after the drain started, expected about ${delay}s (< $((delay + 3))s)" \
    is "$gap < $delay + 3" || return 1
  check "podman pod stop -t 30 took ${took}s, expected ${delay}s to 29s" is "$took >= $delay && $took < 29" || return 1
  check "no 'counts as success' line: the yaml's DRAINIT_SUCCESS_EXIT=143 did not apply" \
    logs_have "$ctr" "the app's exit code 143 counts as success (DRAINIT_SUCCESS_EXIT): exiting 0" || return 1
  check "exit code $code, expected 0 (the server's 143, turned by DRAINIT_SUCCESS_EXIT)" [ "$code" = 0 ] || return 1

  # `podman kube down` (podman < 5.1) stops with no timeout at all: SIGKILL.
  "${P[@]}" pod start "$n" >/dev/null 2>&1 || { WHY="podman pod start failed"; return 1; }
  pid=$("${P[@]}" inspect -f '{{.State.Pid}}' "$ctr")
  check "the app never served again after podman pod start" wait_until 20 serves || return 1
  t0=$(now)
  "${P[@]}" kube down "$dir/pod.yaml" >/dev/null 2>&1 || { WHY="podman kube down failed"; return 1; }
  took_down=$(calc "$(now) - $t0")
  check "podman kube down took ${took_down}s: it now lets the ${delay}s drain run; update docs/deploying.md, which says it SIGKILLs at once" \
    is "$took_down < $delay - 5" || return 1
  OK="drainit PID 1 of the pod; podman pod stop -t 30: drain file at once, the app served during the drain and died of SIGTERM ${gap}s after it started (t+15s), its 143 turned into exit code 0, stop ${took}s; podman ignored terminationGracePeriodSeconds (stop timeout $stop_timeout) and readinessProbe (no health check); podman kube down took ${took_down}s (SIGKILL, no drain)"
}

for c in "${CASES[@]}"; do run_case "$c"; done
summary
