#!/bin/sh
# The test app of the e2e tests, run by busybox sh inside a FROM-scratch image.
#
#   app.sh [--shutdown SECS] [--ignore-term] [--orphans N]
#
# Prints "app: ready" once its handlers are installed (the tests wait for that
# line before they stop the container), then idles. On SIGTERM it prints
# "app: got SIGTERM", takes SECS seconds to shut down (default 0), prints
# "app: shutdown complete after N.NNs" and exits 0.
#   --ignore-term  ignore SIGTERM altogether (only a SIGKILL stops it)
#   --orphans N    first leave N orphans behind: children of a subshell that
#                  exits at once, so PID 1 inherits them; each lives 3 s
shutdown=0 ignore=0 orphans=0
while [ $# -gt 0 ]; do
  case "$1" in
    --shutdown) shutdown=$2; shift 2 ;;
    --ignore-term) ignore=1; shift ;;
    --orphans) orphans=$2; shift 2 ;;
    *) echo "app: unknown argument $1" >&2; exit 2 ;;
  esac
done

uptime() { read -r up _ </proc/uptime; echo "$up"; }

on_term() {
  t0=$(uptime)
  echo "app: got SIGTERM"
  [ "$shutdown" = 0 ] || sleep "$shutdown"
  t1=$(uptime)
  echo "app: shutdown complete after $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}")s"
  exit 0
}

if [ "$ignore" = 1 ]; then
  trap '' TERM
else
  trap on_term TERM
fi

if [ "$orphans" -gt 0 ]; then
  (
    i=0
    while [ "$i" -lt "$orphans" ]; do
      sleep 3 &
      i=$((i + 1))
    done
  )
  echo "app: $orphans orphans spawned"
fi

echo "app: ready"
# Sleep in the background and wait for it, so that a trapped signal is
# handled at once rather than after the current sleep ends.
while :; do
  sleep 1 &
  wait $!
done
