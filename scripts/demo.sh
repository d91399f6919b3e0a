#!/usr/bin/env bash
# make demo: drainit as PID 1 of a new PID namespace, running a sample app,
# stopped the way ECS stops a task (SIGTERM), with drainit's log on stderr.
set -euo pipefail
bin=${1:?usage: demo.sh path/to/drainit}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
drain_file=$work/draining
opts=(--drain-file "$drain_file" --drain-delay 2s --stop-timeout 10s)

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ] || ! unshare --pid --fork --mount-proc true 2>/dev/null; then
  echo "make demo needs root and 'unshare --pid --fork --mount-proc' (util-linux)" >&2
  exit 1
fi

say "the shutdown timeline these options give: drainit --explain ${opts[*]}"
"$bin" --explain "${opts[@]}" -- sh demo-app.sh

say "start: unshare --pid --fork --mount-proc drainit ${opts[*]} -- sh demo-app.sh"
unshare --pid --fork --mount-proc "$bin" "${opts[@]}" -- sh "$here/demo-app.sh" "$work/ready" &
unshare_pid=$!
for _ in $(seq 500); do [ -e "$work/ready" ] && break; sleep 0.01; done
drainit_pid=$(pgrep -P "$unshare_pid" -x drainit)

say "health check before the stop: drainit --healthcheck --drain-file ..."
"$bin" --healthcheck --drain-file "$drain_file" || true

say "the orchestrator stops the task: kill -TERM <drainit> (PID 1 inside)"
start=$(date +%s%N)
kill -TERM "$drainit_pid"
sleep 0.5
say "during the drain delay, the health check fails so the load balancer lets go:"
"$bin" --healthcheck --drain-file "$drain_file" || true

set +e
wait "$unshare_pid"
code=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
say "drainit exited with code $code, $((ms / 1000)).$((ms % 1000 / 100))s after SIGTERM (the app's own code)"
