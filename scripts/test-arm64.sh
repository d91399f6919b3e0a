#!/usr/bin/env bash
# make test-arm64: a smoke set of the integration tests against the arm64
# binary, run by qemu-aarch64-static (binfmt is not registered here, so qemu is
# called by name). The app drainit starts (python3, sh, sleep) is the host's:
# qemu runs an x86-64 program it is asked to exec natively.
#
# The tests take DRAINIT_BIN; they find drainit in /proc by its name
# (common::bin_comm), so DRAINIT_BIN is a script named `drainit` that execs a
# link named `drainit` to qemu: the process under test is still called drainit.
#
# Run: exit codes, signal forwarding, the drain timeline, the health check.
# Not run, because qemu-user cannot emulate them (see docs/building.md "arm64"):
#   - PR_SET_CHILD_SUBREAPER: qemu answers EINVAL, so as a plain parent drainit
#     warns that it cannot adopt orphans. That extra warning line fails the
#     two exit-code tests that require exactly one line on stderr (both pass
#     as PID 1), and orphans are not adopted (reaping.rs, shell_form.rs: not run).
#   - the "signal right after start" hand-shake reads the host's SigBlk of the
#     process, which is qemu's own mask, not the emulated program's.
#   - inheritance.rs: qemu keeps host real-time signals for itself and maps the
#     guest's onto others, so an ignored signal 33 does not survive exec.
# Usage: test-arm64.sh /abs/path/to/aarch64/drainit
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: test-arm64.sh /path/to/aarch64/drainit}
qemu=$(command -v qemu-aarch64-static) || { echo "error: qemu-aarch64-static not found (Debian qemu-user-static)" >&2; exit 1; }
file -b "$bin" | grep -q 'ARM aarch64' || { echo "error: $bin is not an aarch64 binary" >&2; exit 1; }

tmp=$(mktemp -d /tmp/drainit-arm64.XXXXXX)
# Some tests run drainit as another user (setpriv): the wrapper must be theirs to run too.
chmod 0755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/qemu"
ln -s "$qemu" "$tmp/qemu/drainit"
printf '#!/bin/sh\nexec %q %q "$@"\n' "$tmp/qemu/drainit" "$bin" > "$tmp/drainit"
chmod +x "$tmp/drainit"

# What runs is the arm64 binary, under qemu.
version=$("$tmp/drainit" --version)
echo "arm64: $version, run by $qemu" >&2

started=$(date +%s)
DRAINIT_BIN="$tmp/drainit" ${CARGO:-cargo} test --locked \
  --test exit_codes --test signals --test drain --test healthcheck -- --test-threads=4 \
  --skip exits_127_when_the_command_is_not_found \
  --skip exits_126_when_the_command_cannot_be_executed \
  --skip sigterm_sent_right_after_start_is_not_lost
echo "arm64: smoke set passed under qemu in $(( $(date +%s) - started ))s" >&2
