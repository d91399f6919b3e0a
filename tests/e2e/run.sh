#!/usr/bin/env bash
# End-to-end tests: drainit as PID 1 of real containers, in real engines,
# stopped the way orchestrators stop them. Runs every leg, one after the
# other (timing bounds hold better on a 2-core machine without a second
# engine busy beside them):
#
#   podman.sh   podman + runc (exec and shell form, a drain set by variables,
#               the kill deadline, a health check, 1000 orphans) and
#               docker/kubernetes-pod.yaml under `podman kube play`
#   docker.sh   a dockerd of its own (ENTRYPOINT and docker stop, exit codes
#               as docker inspect reports them, HEALTHCHECK, docker run --init
#               with dockerd --init-path pointed at drainit)
#
#   bash tests/e2e/run.sh /abs/path/to/drainit        (what `make e2e` runs)
#
# Each leg prints PASS/FAIL/SKIP lines and its own summary; this prints how
# long each leg took and, last, "e2e: N passed, M failed, K skipped". The exit
# status is non-zero when a case failed or a leg ended without its summary.
# A leg whose engine cannot start is skipped, loudly, or under CI=true fails.
#
# Knobs (environment): DRAINIT_E2E_LEGS="podman docker" (the default) picks
# legs; DRAINIT_E2E_ONLY, DRAINIT_E2E_KEEP and DRAINIT_E2E_STORAGE are
# described in the legs.
set -uo pipefail
export LC_ALL=C

if [ $# -ne 1 ]; then
  echo "usage: $0 /abs/path/to/drainit" >&2
  exit 2
fi
E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(mktemp /tmp/drainit-e2e-run.XXXXXX)
trap 'rm -f "$OUT"' EXIT

passed=0 failed=0 skipped=0 broken=0 times=()
for leg in ${DRAINIT_E2E_LEGS:-podman docker}; do
  if [ ! -f "$E2E/$leg.sh" ]; then
    echo "e2e: no leg named $leg (tests/e2e/$leg.sh)"
    broken=1
    continue
  fi
  t0=$EPOCHREALTIME
  bash "$E2E/$leg.sh" "$1" | tee "$OUT"
  rc=${PIPESTATUS[0]}
  took=$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $t0 }")
  times+=("$leg ${took}s")
  read -r p f s < <(sed -nE "s/^$leg: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/p" "$OUT" | tail -n1)
  if [ -z "${p:-}" ]; then
    echo "e2e: the $leg leg ended (status $rc) without its summary line"
    broken=1
    continue
  fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
  [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || broken=1
  unset p f s
done

echo "e2e: time per leg: ${times[*]/%/,}" | sed 's/,$//'
echo "e2e: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$broken" -eq 0 ]
