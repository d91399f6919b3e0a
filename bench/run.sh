#!/usr/bin/env bash
# drainit side by side with tini-static, dumb-init and catatonit, in one run on
# this machine. Usage (as root, from anywhere):
#
#   bash bench/run.sh /abs/path/to/drainit        (what `make bench` runs)
#
# Prints a markdown report to stdout and writes the same to bench/RESULTS.md.
# Installs the peers and hyperfine through scripts/deps.sh; needs gcc and python3.
# Takes about two minutes; the method is written out at the end of the
# report. Knobs (environment): SPAWN_ROUNDS SPAWN_RUNS IDLE_SECS STORM_N
# STORM_ROUNDS SIG_SAMPLES, and BENCH_AUTOGROUP=0|1 to run with the kernel's
# autogroup scheduling off or on (restored afterwards); BENCH_KEEP=1 keeps the
# raw files (hyperfine JSON, per-round storm lines) and prints where;
# BENCH_SELF_CHECK=1 replaces the peers with copies of drainit, to test the
# method's verdicts (nothing should FAIL), and leaves RESULTS.md alone.
set -euo pipefail

BIN=${1:?usage: bash bench/run.sh /abs/path/to/drainit}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
BIN=$(readlink -f "$BIN")
[ -x "$BIN" ] || { echo "error: $BIN is not an executable" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (pid namespaces, SIGSTOP of a namespace's init)" >&2; exit 1; }

# Knobs (the defaults are what RESULTS.md reports).
SPAWN_ROUNDS=${SPAWN_ROUNDS:-5}   # hyperfine rounds, command order rotated each round
SPAWN_RUNS=${SPAWN_RUNS:-300}     # runs per command per round
IDLE_SECS=${IDLE_SECS:-10}
STORM_N=${STORM_N:-2000}
STORM_ROUNDS=${STORM_ROUNDS:-20}   # per init, interleaved across inits
SIG_SAMPLES=${SIG_SAMPLES:-5000}   # per init and setting, all interleaved (the p99 is the 50th worst)
BENCH_AUTOGROUP=${BENCH_AUTOGROUP:-}  # 0 or 1: set kernel.sched_autogroup_enabled for the run, restored after

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
START=$(date +%s)

log "peers: bash scripts/deps.sh bench"
bash "$REPO/scripts/deps.sh" bench
for tool in gcc python3 unshare hyperfine; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/drainit-bench.XXXXXX)
STARTED=()   # pids this script started in the background (unshare, stopper)
CGROUPS=()   # cgroups this script made (signal latency), removed at the end
AG=/proc/sys/kernel/sched_autogroup_enabled
AG_WAS=
cleanup() {
  local p
  for p in "${STARTED[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${CGROUPS[@]}"; do rmdir "$p" 2>/dev/null || true; done
  [ -z "$AG_WAS" ] || echo "$AG_WAS" >"$AG"
  if [ -n "${BENCH_KEEP:-}" ]; then log "raw files kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
if [ -n "$BENCH_AUTOGROUP" ] && [ -w "$AG" ]; then
  AG_WAS=$(cat "$AG")
  echo "$BENCH_AUTOGROUP" >"$AG"
  log "kernel.sched_autogroup_enabled=$BENCH_AUTOGROUP for this run (was $AG_WAS)"
fi
T=$WORK/benchtool
gcc -O2 -Wall -Wextra -o "$T" "$BENCH_DIR/benchtool.c"

# ---------------------------------------------------------------- the inits
# name | path | args as PID 1 | args as a plain parent (the spawn test)
# Fair equivalents: each in its "init for containers" mode, forwarding signals
# to the app's whole process group, as drainit does by default.
find_bin() { local b; for b in "$@"; do [ -x "$b" ] && { readlink -f "$b"; return; }; done; command -v "$(basename "$1")" || true; }
TINI=$(find_bin /usr/bin/tini-static)
DUMB=$(find_bin /usr/bin/dumb-init)
CATA=$(find_bin /usr/bin/catatonit /usr/libexec/podman/catatonit)
for p in "$TINI" "$DUMB" "$CATA"; do [ -x "$p" ] || { echo "error: a peer is missing (tini-static/dumb-init/catatonit)" >&2; exit 1; }; done
if [ "${BENCH_SELF_CHECK:-0}" = 1 ]; then
  # Tests the method, not drainit: every "peer" is a copy of drainit (same
  # code, same arguments), so any verdict but PASS or TIE is the method's error.
  for n in tini-static dumb-init catatonit; do cp "$BIN" "$WORK/$n"; done
  TINI=$WORK/tini-static DUMB=$WORK/dumb-init CATA=$WORK/catatonit
  log "self-check: the peers are copies of $BIN; bench/RESULTS.md is left as it is"
fi

NAMES=(drainit tini-static dumb-init catatonit)
declare -A PATH_OF=([drainit]=$BIN [tini-static]=$TINI [dumb-init]=$DUMB [catatonit]=$CATA)
declare -A PID1_ARGS=([drainit]="-q --" [tini-static]="-g --" [dumb-init]="--" [catatonit]="-g --")
declare -A PLAIN_ARGS=([drainit]="-q --" [tini-static]="-s -g --" [dumb-init]="--" [catatonit]="-g --")
declare -A PKG_OF=([tini-static]=tini [dumb-init]=dumb-init [catatonit]=catatonit)
if [ "${BENCH_SELF_CHECK:-0}" = 1 ]; then
  for n in tini-static dumb-init catatonit; do PID1_ARGS[$n]="-q --"; PLAIN_ARGS[$n]="-q --"; done
fi

{
  printf 'name\tpath\tstatic\tsize\tversion\tpid1_args\tplain_args\tfile\n'
  for n in "${NAMES[@]}"; do
    p=${PATH_OF[$n]}
    # Static = no ELF interpreter (benchtool reads the program headers); `file`, when
    # installed, is only quoted in the report.
    case $("$T" elf "$p") in static) st=yes ;; *) st=no ;; esac
    f=$(file -b -L "$p" 2>/dev/null | grep -oE 'static-pie linked|statically linked|dynamically linked' | head -1) || true
    [ -n "$f" ] || f="(file not installed)"
    if [ "$n" = drainit ]; then v=$("$p" -V 2>&1 | head -1); else v="${PKG_OF[$n]} $(dpkg-query -W -f='${Version}' "${PKG_OF[$n]}" 2>/dev/null || echo '?') (Debian)"; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$p" "$st" "$(stat -c %s "$p")" "$v" \
      "${PID1_ARGS[$n]}" "${PLAIN_ARGS[$n]}" "$f"
  done
} >"$WORK/inits.tsv"

# unshare forks the init: find it (a child of unshare running the init's binary).
host_pid() { # unshare_pid exe
  local i p
  for i in $(seq 1000); do
    for p in $("$T" children "$1"); do
      [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$2" ] && { echo "$p"; return 0; }
    done
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}
# Waits for a background pid; SIGKILLs it (and, through --kill-child, its namespace) after $2 s.
wait_or_kill() { # pid seconds
  local i
  for i in $(seq $(( $2 * 20 ))); do kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }; sleep 0.05; done
  log "warning: pid $1 still running after $2 s: SIGKILL"
  kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true
}
# Starts "INIT args -- APP..." as PID 1 of a new pid namespace; sets U (unshare pid) and H (init host pid).
# With CG set to a cgroup directory, the whole namespace starts in that cgroup.
start_pid1() { # name app...
  local n=$1; shift
  if [ -n "${CG:-}" ]; then
    # shellcheck disable=SC2086,SC2016  # the args are words on purpose; $0/$$ are sh's
    sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" \
      unshare --pid --fork --mount-proc --kill-child "${PATH_OF[$n]}" ${PID1_ARGS[$n]} "$@" &
  else
    # shellcheck disable=SC2086  # the args are words on purpose
    unshare --pid --fork --mount-proc --kill-child "${PATH_OF[$n]}" ${PID1_ARGS[$n]} "$@" &
  fi
  U=$!
  STARTED+=("$U")
  H=$(host_pid "$U" "${PATH_OF[$n]}") || { echo "error: $n did not start" >&2; exit 1; }
}
rotate() { # k names... -> the names rotated left by k
  local k=$1; shift; local a=("$@") i
  for ((i = 0; i < ${#a[@]}; i++)); do printf '%s\n' "${a[(i + k) % ${#a[@]}]}"; done
}

# ---------------------------------------------------------------- 1. spawn overhead
log "spawn overhead: hyperfine -N, $SPAWN_ROUNDS rounds x $SPAWN_RUNS runs, order rotated per round (plain parent mode)"
declare -A SPAWN_CMD=([true]=/bin/true)
for n in "${NAMES[@]}"; do SPAWN_CMD[$n]="${PATH_OF[$n]} ${PLAIN_ARGS[$n]} /bin/true"; done
SPAWN_ORDER=(true "${NAMES[@]}")
for ((r = 0; r < SPAWN_ROUNDS; r++)); do
  cmds=()
  while read -r n; do cmds+=("${SPAWN_CMD[$n]}"); done < <(rotate "$r" "${SPAWN_ORDER[@]}")
  hyperfine -N --style basic --warmup 30 --runs "$SPAWN_RUNS" \
    --export-json "$WORK/spawn_$r.json" "${cmds[@]}" >"$WORK/spawn_$r.log" 2>&1 ||
    { cat "$WORK/spawn_$r.log" >&2; exit 1; }
done
for n in true "${NAMES[@]}"; do printf '%s\t%s\n' "$n" "${SPAWN_CMD[$n]}"; done >"$WORK/spawn_cmds.tsv"

# ---------------------------------------------------------------- 2. idle: wake-ups and memory
log "idle: all four as PID 1 with 'sleep 1000', concurrently, ${IDLE_SECS} s"
ctx() { awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s}' "/proc/$1/status"; }
declare -A IU IH
SLEEP=$(readlink -f "$(command -v sleep)")
for n in "${NAMES[@]}"; do start_pid1 "$n" sleep 1000; IU[$n]=$U; IH[$n]=$H; done
for n in "${NAMES[@]}"; do # the app is running: the init is past its start-up
  for i in $(seq 500); do
    c=$("$T" children "${IH[$n]}" | head -1)
    [ -n "$c" ] && [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$SLEEP" ] && break
    sleep 0.01
  done
done
sleep 1
declare -A C0
for n in "${NAMES[@]}"; do C0[$n]=$(ctx "${IH[$n]}"); done
sleep "$IDLE_SECS"
{
  printf 'name\twakeups\tvmrss_kib\tvmhwm_kib\n'
  for n in "${NAMES[@]}"; do
    h=${IH[$n]} c0=${C0[$n]}
    printf '%s\t%s\t%s\t%s\n' "$n" $(( $(ctx "$h") - c0 )) \
      "$(awk '/^VmRSS/ {print $2}' "/proc/$h/status")" "$(awk '/^VmHWM/ {print $2}' "/proc/$h/status")"
  done
} >"$WORK/idle.tsv"
for n in "${NAMES[@]}"; do kill -TERM "${IH[$n]}"; done
for n in "${NAMES[@]}"; do wait_or_kill "${IU[$n]}" 10; done

# ---------------------------------------------------------------- 3. signal-forward latency
# Each init runs twice at once, with one sender visiting all of them in a fresh
# random order each round: in a cpu cgroup of its own, as a container runtime
# places it, and in the bench's own cgroup. The difference matters because of
# sched_autogroup: on the host (the root cpu cgroup) every session gets a
# scheduling group of its own, so an init that starts its app in a new session
# (dumb-init) gets it woken sooner; inside a cgroup autogroup does not apply.
cpu_cgroup_base() {
  if [ -w /sys/fs/cgroup/cpu/cgroup.procs ]; then echo /sys/fs/cgroup/cpu            # cgroup v1
  elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then echo /sys/fs/cgroup  # v2
  fi
}
CG_BASE=$(cpu_cgroup_base)
SIG_SETS=(root)
if [ -n "$CG_BASE" ]; then SIG_SETS=(cgroup root); else log "warning: no cpu cgroup to start the inits in: signal latency in the bench's own cgroup only"; fi
log "signal latency: $SIG_SAMPLES SIGUSR1 per init and setting (${SIG_SETS[*]}), all interleaved in random order"
sigargs=()
declare -A SU SH
SIG_KEYS=()
for set in "${SIG_SETS[@]}"; do
  for n in "${NAMES[@]}"; do
    k="$n@$set"
    SIG_KEYS+=("$k")
    CG=
    if [ "$set" = cgroup ]; then
      CG="$CG_BASE/drainit-bench-$$-$n"
      mkdir "$CG"
      CGROUPS+=("$CG")
    fi
    mkfifo "$WORK/sig_$k.fifo"
    start_pid1 "$n" "$T" sigapp "$WORK/sig_$k.fifo"; SU[$k]=$U; SH[$k]=$H
    sigargs+=("$WORK/sig_$k.fifo" "$H")
  done
done
CG=
# The init's own CPU time over the sends (/proc/PID/schedstat, ns): its work per
# forwarded signal, which scheduling noise hardly touches, unlike the latency.
cpu_ns() { local s; s=$(<"/proc/$1/schedstat"); echo "${s%% *}"; }
declare -A SCPU
for k in "${SIG_KEYS[@]}"; do SCPU[$k]=$(cpu_ns "${SH[$k]}"); done
"$T" sigsend "$SIG_SAMPLES" "$WORK/sig.txt" "${sigargs[@]}"
for k in "${SIG_KEYS[@]}"; do echo $(( $(cpu_ns "${SH[$k]}") - SCPU[$k] )); done >"$WORK/sig_cpu.txt"
# Does the init put its app in a session of its own? With sched_autogroup that also
# means a scheduling group of its own, which changes wake-up latency.
# shellcheck disable=SC2086  # split the fields after "(comm) " on purpose
sid_of() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; set -- $s; echo "$4"; }
for k in "${SIG_KEYS[@]}"; do
  app=$("$T" children "${SH[$k]}" | head -1)
  own=n/a
  [ -n "$app" ] && { [ "$(sid_of "$app")" = "$(sid_of "${SH[$k]}")" ] && own=no || own=yes; }
  echo "$own"
done >"$WORK/sig_session.txt"
for k in "${SIG_KEYS[@]}"; do kill -TERM "${SH[$k]}"; done
for k in "${SIG_KEYS[@]}"; do wait_or_kill "${SU[$k]}" 10; done
for cg in "${CGROUPS[@]}"; do # empty once the namespace is torn down
  for i in $(seq 100); do rmdir "$cg" 2>/dev/null && break; sleep 0.02; done
done
CGROUPS=()
# name, setting, median, p99, max, samples, lost, own session, init CPU ns; sig.txt.raw has every sample
paste <(printf '%s\n' "${SIG_KEYS[@]}" | tr '@' '\t') "$WORK/sig.txt" "$WORK/sig_session.txt" "$WORK/sig_cpu.txt" >"$WORK/sig.tsv"
cp "$WORK/sig.txt.raw" "$WORK/sig_raw.txt"

# ---------------------------------------------------------------- 4. orphan storm
log "orphan storm: $STORM_N orphans, $STORM_ROUNDS rounds per init, inits interleaved (order rotated per round)"
for ((r = 0; r < STORM_ROUNDS; r++)); do
  while read -r n; do
    req=$WORK/storm_$n.req ack=$WORK/storm_$n.ack
    rm -f "$req" "$ack"; mkfifo "$req" "$ack"
    start_pid1 "$n" "$T" storm "$STORM_N" 1 "$WORK/storm_$n.txt" "$req" "$ack"
    "$T" stopper "$H" "$req" "$ack" &
    S=$!; STARTED+=("$S")
    wait_or_kill "$U" 60
    wait_or_kill "$S" 5
  done < <(rotate "$r" "${NAMES[@]}")
done

# ---------------------------------------------------------------- report
ELAPSED=$(( $(date +%s) - START ))
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
CORES=$(grep -c '^processor' /proc/cpuinfo)
REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 "$BENCH_DIR/report.py" "$WORK" \
  --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --kernel "$(uname -r)" --cpu "$CPU" --cores "$CORES" \
  --autogroup "$(cat "$AG" 2>/dev/null || echo n/a)" --idle-secs "$IDLE_SECS" --storm-n "$STORM_N" \
  --command "make bench   (= bash bench/run.sh $BIN)" --rev "$REV" \
  --sha256 "$(sha256sum "$BIN" | cut -c1-16)" --elapsed "$ELAPSED" \
  --knobs "SPAWN_ROUNDS=$SPAWN_ROUNDS SPAWN_RUNS=$SPAWN_RUNS IDLE_SECS=$IDLE_SECS STORM_N=$STORM_N STORM_ROUNDS=$STORM_ROUNDS SIG_SAMPLES=$SIG_SAMPLES${BENCH_AUTOGROUP:+ BENCH_AUTOGROUP=$BENCH_AUTOGROUP}" \
  ${BENCH_SELF_CHECK:+--self-check "$BENCH_SELF_CHECK"} >"$WORK/report.md"
cat "$WORK/report.md"
if [ "${BENCH_SELF_CHECK:-0}" = 1 ]; then
  log "done in ${ELAPSED} s (self-check: bench/RESULTS.md not written)"
else
  cp "$WORK/report.md" "$BENCH_DIR/RESULTS.md"
  log "done in ${ELAPSED} s; wrote $BENCH_DIR/RESULTS.md"
fi
