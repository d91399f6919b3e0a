#!/usr/bin/env bash
# make dist: the release artifacts of the commit checked out (HEAD), in dist/:
#
#   drainit-VERSION-x86_64-linux, drainit-VERSION-aarch64-linux   static musl binaries
#   drainit-VERSION-oci.tar     multi-arch OCI image (FROM scratch, only /drainit), an OCI archive
#   drainit.1, completions/     man page; bash, zsh and fish completions (from the clap definitions)
#   SHA256SUMS                  of all of the above
#
# Everything is built from `git archive HEAD` (a clean checkout: what is not
# committed is not released), then built a second time from another clean
# checkout, in another directory with a fresh target directory, and the two
# sets of files are compared byte for byte (DIST_REPRODUCE=0 skips that).
#
# Both binaries are linked by rust-lld (no C cross compiler, and the host's
# binutils do not leak into the release), with the release flags `make build`
# uses (the Makefile passes them in: RELEASE_RUSTFLAGS, BUILD_STD). Paths are
# remapped, so where the checkout lives does not matter. Dates come from the
# commit (SOURCE_DATE_EPOCH), so when it is built does not matter either.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

: "${RELEASE_RUSTFLAGS:?run this through make dist}" "${BUILD_STD:?run this through make dist}"
BUDGET=${BUDGET:-524288}
CARGO=${CARGO:-cargo}
TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
started=$(date +%s)
PODDIR= again=
trap 'rm -rf ${PODDIR:+"$PODDIR"} ${again:+"$again"}' EXIT

say() { printf 'dist: [%3ds] %s\n' $(($(date +%s) - started)) "$*" >&2; }
die() { printf 'dist: error: %s\n' "$*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------
bash scripts/deps.sh dist
for t in "${TARGETS[@]}"; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done
rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src

COMMIT=$(git rev-parse HEAD)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct "$COMMIT")}
DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
VERSION=$(git show "$COMMIT:Cargo.toml" | sed -n 's/^version = "\([^"]*\)"$/\1/p' | head -n1)
[ -n "$VERSION" ] || die "no version in Cargo.toml"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  say "warning: uncommitted changes are not in the release (it is built from $COMMIT)"
fi
SYSROOT=$(rustc --print sysroot)
CARGO_HOME_DIR=${CARGO_HOME:-$HOME/.cargo}

# --- one complete build: release SRC_PARENT OUT ---------------------------------
# SRC_PARENT gets src/ (a fresh `git archive`) and target/; OUT the artifacts.
release() {
  local parent=$1 out=$2 src=$1/src
  rm -rf "$src" "$out"
  mkdir -p "$src" "$out/completions"
  # -m: the files get the time of extraction, so cargo never takes an older
  # commit's sources for unchanged ones.
  git archive "$COMMIT" | tar -x -m -C "$src"

  local flags=($RELEASE_RUSTFLAGS
    "--remap-path-prefix=$src=/build/drainit"
    "--remap-path-prefix=$CARGO_HOME_DIR=/cargo"
    "--remap-path-prefix=$SYSROOT=/rustc/sysroot")
  local encoded
  encoded=$(IFS=$'\x1f'; printf '%s' "${flags[*]}")
  local target_args=()
  for t in "${TARGETS[@]}"; do target_args+=(--target "$t"); done
  say "building $VERSION ($COMMIT) in $src"
  (cd "$src" && RUSTC_BOOTSTRAP=1 CARGO_ENCODED_RUSTFLAGS="$encoded" RUSTFLAGS= \
     CARGO_TARGET_DIR="$parent/target" \
     CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
     CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
     "$CARGO" build --quiet --release --locked "${target_args[@]}" $BUILD_STD)

  local t arch bin
  for t in "${TARGETS[@]}"; do
    arch=${t%%-*}
    bin=$out/drainit-$VERSION-$arch-linux
    cp "$parent/target/$t/release/drainit" "$bin"
    check_binary "$bin" "$arch"
  done
  say "binaries built and checked"

  # The man page and the completions, from a separate build with the gen-docs
  # feature (the release binaries above have none of it: check_binary says so).
  (cd "$src" && CARGO_TARGET_DIR="$parent/target" RUSTFLAGS= CARGO_ENCODED_RUSTFLAGS= \
     "$CARGO" build --quiet --locked --features gen-docs)
  "$parent/target/debug/drainit" --gen-docs "$out" "$DATE"
  say "man page and completions written"

  image "$parent" "$out"

  (cd "$out" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort \
     | xargs sha256sum > SHA256SUMS)
}

# check_binary FILE ARCH: static, the right architecture, in budget, no
# gen-docs code, and it runs (the arm64 one under qemu-aarch64-static).
check_binary() {
  local bin=$1 arch=$2 desc size
  desc=$(file -b "$bin")
  case $arch in
    x86_64)  [[ $desc == *x86-64* ]] || die "$bin is not x86-64: $desc" ;;
    aarch64) [[ $desc == *"ARM aarch64"* ]] || die "$bin is not aarch64: $desc" ;;
  esac
  [[ $desc == *static* ]] || die "$bin is not statically linked: $desc"
  size=$(stat -c %s "$bin")
  [ "$size" -le "$BUDGET" ] || die "$bin is $size bytes, over the $BUDGET-byte budget"
  ! grep -q -a -e '--gen-docs' "$bin" || die "$bin holds the gen-docs code"
  local run=("$bin")
  [ "$arch" = aarch64 ] && run=(qemu-aarch64-static "$bin")
  local v
  v=$("${run[@]}" --version) || die "$bin --version failed"
  [ "$v" = "drainit $VERSION" ] || die "$bin --version says '$v', not 'drainit $VERSION'"
}

# image PARENT OUT: the two binaries as one multi-arch image, FROM scratch,
# holding only /drainit, saved as an OCI archive. A private podman store in a
# temporary directory (podman wants a short runroot), removed after, so
# nothing is left in the host's images. Each
# platform is built on its own, amd64 first, so that the image index lists
# them in a fixed order; --timestamp and --omit-history make the rest of the
# image depend on nothing but the binaries and the commit.
image() {
  local parent=$1 out=$2 ctx=$1/image tar=$2/drainit-$VERSION-oci.tar
  PODDIR=$(mktemp -d /tmp/drainit-pod.XXXXXX)
  local pod=(podman --root "$PODDIR/root" --runroot "$PODDIR/run"
    --storage-driver vfs --cgroup-manager cgroupfs --events-backend none)
  rm -rf "$ctx" "$parent/oci"
  mkdir -p "$ctx"
  say "image: $tar"
  cp "$out/drainit-$VERSION-x86_64-linux" "$ctx/drainit-amd64"
  cp "$out/drainit-$VERSION-aarch64-linux" "$ctx/drainit-arm64"
  cat > "$ctx/Containerfile" <<'EOF'
FROM scratch
ARG TARGETARCH
COPY drainit-${TARGETARCH} /drainit
ENTRYPOINT ["/drainit"]
CMD ["--help"]
EOF
  local a
  for a in amd64 arm64; do
    "${pod[@]}" build --quiet --omit-history --platform "linux/$a" \
      --manifest "drainit:$VERSION" --timestamp "$SOURCE_DATE_EPOCH" \
      --label "org.opencontainers.image.title=drainit" \
      --label "org.opencontainers.image.version=$VERSION" \
      --label "org.opencontainers.image.revision=$COMMIT" \
      --label "org.opencontainers.image.licenses=MIT" \
      -f "$ctx/Containerfile" "$ctx" > /dev/null
  done
  "${pod[@]}" manifest push --quiet --all --format oci "drainit:$VERSION" \
    "oci:$parent/oci:drainit:$VERSION" > /dev/null
  # The image index's digest: what `docker://REGISTRY/drainit@sha256:...` pins.
  INDEX_DIGEST=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$parent/oci/index.json" | head -n1 | cut -d'"' -f4)
  (cd "$parent/oci" && tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 \
     --numeric-owner --format=ustar -cf "$tar" .)
  check_image "$parent" "$out" "$tar"
  rm -rf "$ctx" "$parent/oci" "$PODDIR"
  PODDIR=
}

# check_image PARENT OUT TAR: what a user does with the image works for both
# architectures: `COPY --from=<image> /drainit /drainit` into an image of
# their own gives exactly the released binary.
check_image() {
  local parent=$1 out=$2 tar=$3 a arch id mnt
  for a in amd64 arm64; do
    arch=x86_64; [ "$a" = arm64 ] && arch=aarch64
    local pod=(podman --root "$PODDIR/check-$a" --runroot "$PODDIR/run-$a"
      --storage-driver vfs --cgroup-manager cgroupfs --events-backend none)
    id=$("${pod[@]}" pull --quiet --arch "$a" "oci-archive:$tar")
    printf 'FROM scratch\nCOPY --from=%s /drainit /drainit\n' "$id" > "$parent/image/Consumer"
    "${pod[@]}" build --quiet --platform "linux/$a" -t consumer -f "$parent/image/Consumer" \
      "$parent/image" > /dev/null
    [ "$("${pod[@]}" image inspect --format '{{.Architecture}}' consumer)" = "$a" ] \
      || die "the $a image is not $a"
    mnt=$("${pod[@]}" image mount consumer)
    cmp -s "$mnt/drainit" "$out/drainit-$VERSION-$arch-linux" \
      || die "COPY --from the $a image does not give drainit-$VERSION-$arch-linux"
    "${pod[@]}" image umount consumer > /dev/null
  done
}

# --- the release, then the same again from scratch ------------------------------
release "$ROOT/target/dist" "$ROOT/dist"
built=$(date +%s)
RELEASE_INDEX_DIGEST=$INDEX_DIGEST

if [ "${DIST_REPRODUCE:-1}" != 0 ]; then
  again=$(mktemp -d /tmp/drainit-reproduce.XXXXXX)
  say "building again from a clean checkout in $again, to compare"
  release "$again" "$again/dist"
  if ! diff -u "$ROOT/dist/SHA256SUMS" "$again/dist/SHA256SUMS" >&2; then
    die "not reproducible: the files above differ between two builds of $COMMIT"
  fi
  (cd "$ROOT/dist" && find . -type f | LC_ALL=C sort) > "$again/ours"
  (cd "$again/dist" && find . -type f | LC_ALL=C sort) > "$again/theirs"
  cmp -s "$again/ours" "$again/theirs" || die "the two builds made different files"
  while read -r f; do
    cmp -s "$ROOT/dist/$f" "$again/dist/$f" || die "not reproducible: $f differs"
  done < "$again/ours"
  say "reproducible: a second build from a clean checkout in another directory gave the same $(wc -l < "$again/ours") files, byte for byte"
else
  say "DIST_REPRODUCE=0: the second build and the comparison were skipped"
fi

ended=$(date +%s)
for f in "$ROOT"/dist/drainit-*-linux "$ROOT"/dist/drainit-*-oci.tar; do
  size=$(stat -c %s "$f")
  printf 'dist/%s: %d bytes (%d KiB)\n' "${f##*/}" "$size" $((size / 1024))
done
printf 'dist/drainit-%s-oci.tar: image index %s\n' "$VERSION" "$RELEASE_INDEX_DIGEST"
printf 'dist: %s (%s, %s) in %ds (the build %ds)\n' "$VERSION" "${COMMIT:0:12}" "$DATE" \
  $((ended - started)) $((built - started))
