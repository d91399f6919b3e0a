#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only when one is missing.
# Usage: deps.sh test|e2e|bench
set -euo pipefail
case "${1:-}" in
  test)  need=(util-linux python3 procps strace) ;;
  e2e)   need=(podman runc busybox-static) ;;
  bench) need=(tini dumb-init catatonit hyperfine) ;;
  *) echo "usage: $0 test|e2e|bench" >&2; exit 2 ;;
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
