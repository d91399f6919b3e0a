#!/bin/sh
# The demo's sample app: serves until SIGTERM, then takes a second to finish
# its in-flight work, as a well-behaved server would.
trap 'echo "app: SIGTERM received, finishing in-flight requests..."; sleep 1; echo "app: done, exiting 0"; exit 0' TERM
echo "app: pid $$, parent is PID $PPID ($(cat /proc/$PPID/comm)), serving"
touch "$1"
while :; do sleep 0.2; done
