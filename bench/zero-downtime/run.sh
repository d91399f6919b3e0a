#!/usr/bin/env bash
# The rolling-stop proof: how many requests each init loses when one of two
# instances behind HAProxy is stopped under load. Usage (as root):
#
#   bash bench/zero-downtime/run.sh /abs/path/to/drainit           (make zero-downtime)
#   bash bench/zero-downtime/run.sh /abs/path/to/drainit --quick   (make zero-downtime-quick)
#
# Installs HAProxy and the peers through scripts/deps.sh, compiles zdt.c (the
# app and the load client), and runs zdt.py, which prints the table and exits
# 0 only when every gated drainit row that ran lost 0 requests (out of >= 1000;
# 100 for the rows with 2 s requests). The full run (16 rows, about 3.5 minutes)
# also writes RESULTS.md beside this script. Everything it starts is stopped
# and its temp dir removed on any exit (ZDT_KEEP=1 keeps the temp dir: logs,
# HAProxy configs, every request). Knobs: see zdt.py.
set -euo pipefail

BIN=${1:?usage: bash bench/zero-downtime/run.sh /abs/path/to/drainit [--quick]}
shift
QUICK=
case "${1:-}" in
  --quick) QUICK=--quick ;;
  "") ;;
  *) echo "usage: bash bench/zero-downtime/run.sh /abs/path/to/drainit [--quick]" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=$(readlink -f "$BIN")
[ -x "$BIN" ] || { echo "error: $BIN is not an executable" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (pid namespaces)" >&2; exit 2; }

bash "$REPO/scripts/deps.sh" zero-downtime
for tool in gcc python3 unshare haproxy; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/drainit-zdt.XXXXXX)
DRIVER=
cleanup() {
  # The driver stops what it started; its children die with it in any case
  # (PR_SET_PDEATHSIG, and unshare --kill-child takes each init's namespace).
  if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
    kill -TERM "$DRIVER" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$DRIVER" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$DRIVER" 2>/dev/null || true
    wait "$DRIVER" 2>/dev/null || true
  fi
  if [ -n "${ZDT_KEEP:-}" ]; then echo "[zero-downtime] kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

gcc -O2 -Wall -Wextra -pthread -o "$WORK/zdt" "$HERE/zdt.c"

REPORT=()
if [ -z "$QUICK" ]; then REPORT=(--report "$HERE/RESULTS.md"); fi
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
python3 "$HERE/zdt.py" --drainit "$BIN" --zdt "$WORK/zdt" --work "$WORK" $QUICK "${REPORT[@]}" \
  --meta "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --meta "machine=$(grep -c '^processor' /proc/cpuinfo) cores, $CPU, Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start" \
  --meta "command=make zero-downtime (bash bench/zero-downtime/run.sh $BIN${QUICK:+ --quick})" \
  --meta "drainit=$("$BIN" -V 2>&1 | head -1), rev $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown), sha256 $(sha256sum "$BIN" | cut -c1-16)" \
  --meta "haproxy=$(haproxy -v | head -1 | cut -d' ' -f1-3)" \
  --meta "peers=tini $(dpkg-query -W -f='${Version}' tini), dumb-init $(dpkg-query -W -f='${Version}' dumb-init), catatonit $(dpkg-query -W -f='${Version}' catatonit) (Debian)" &
DRIVER=$!
set +e
wait "$DRIVER"
rc=$?
set -e
DRIVER=
exit "$rc"
