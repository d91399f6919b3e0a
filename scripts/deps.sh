#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only when one is missing.
# Usage: deps.sh build|test|arm64|e2e|docker|bench|dist|zero-downtime
set -euo pipefail
case "${1:-}" in
  # A C toolchain links the host's build scripts and proc macros (clap's
  # derive); `file` checks that the release binary is static.
  build) need=(file gcc libc6-dev) ;;
  test)  need=(util-linux python3 procps strace) ;;
  e2e)   need=(podman runc catatonit busybox-static) ;;   # catatonit: the pause image of podman kube play
  docker) need=(docker.io busybox-static) ;;
  bench) need=(tini dumb-init catatonit hyperfine) ;;
  zero-downtime) need=(haproxy tini dumb-init catatonit gcc libc6-dev python3 util-linux procps) ;;
  # qemu-user-static runs the arm64 binary (binfmt is not registered: it is called by name).
  arm64) need=(qemu-user-static util-linux python3 procps file) ;;
  dist)  need=(file gcc libc6-dev git tar podman runc qemu-user-static) ;;
  *) echo "usage: $0 build|test|arm64|e2e|docker|bench|dist|zero-downtime" >&2; exit 2 ;;
esac
missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing packages: ${missing[*]} (run as root, or: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
