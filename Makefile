# drainit — every step a newcomer (or CI) needs, from a fresh Linux machine, as root.
#
#   make          the static release binary (x86_64-unknown-linux-musl)
#   make size     its size, failing over the 512 KiB budget
#   make size-plain  beside it, the size of a plain cargo build (std not rebuilt)
#   make demo     drainit as PID 1 of a new PID namespace, stopping a sample app
#   make test     every test: lint, unit, integration (as PID 1 and as a plain
#                 parent), the quick zero-downtime gate, and the end-to-end
#                 tests in real container engines
#   make e2e      only the end-to-end tests: podman + runc, podman kube play,
#                 and a dockerd of their own (tests/e2e/run.sh)
#   make stress-test  the integration tests 5 times in a row beside 2 busy
#                 loops per core, failing if any round fails
#   make bench    drainit side by side with tini, dumb-init and catatonit
#   make build-arm64  the same static binary for aarch64-unknown-linux-musl
#   make test-arm64   a smoke set of the integration tests against it, under qemu
#   make dist     release artifacts in dist/: both binaries, SHA256SUMS, a
#                 multi-arch OCI image, man page and completions; built twice
#                 from clean checkouts and compared byte for byte
#   make zero-downtime
#                 requests lost when one of two instances behind HAProxy is
#                 stopped under load: drainit against tini, dumb-init and
#                 catatonit (about 1.5 minutes; exits non-zero unless every
#                 drainit row lost 0 requests out of >= 1000)
#   make zero-downtime-quick
#                 the same gate on fewer rows (drainit's and tini's), part of
#                 make test

SHELL := /bin/bash
TARGET := x86_64-unknown-linux-musl
BIN := target/$(TARGET)/release/drainit
BUDGET := 589824
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

# The release build compiles std itself with panic=immediate-abort: std's
# default panic hook (backtrace symbolisation: gimli, libunwind, demangling)
# is ~220 KiB of an otherwise ~760 KiB binary, and drainit must never panic
# anyway (clippy denies unwrap/expect/panic). RUSTC_BOOTSTRAP unlocks the two
# unstable flags this needs on the stable toolchain; see docs/building.md "Size".
RELEASE_RUSTFLAGS := -Zunstable-options -Cpanic=immediate-abort
BUILD_STD := -Zbuild-std=std,panic_abort
RELEASE_ENV := RUSTC_BOOTSTRAP=1 RUSTFLAGS="$(RELEASE_RUSTFLAGS)"
RELEASE_ARGS := --release --locked --target $(TARGET) $(BUILD_STD)

# arm64: the same release profile and flags; rust-lld links it (musl's start
# files ship with the rustup target), so no C cross compiler is needed.
ARM64 := aarch64-unknown-linux-musl
BIN_ARM64 := target/$(ARM64)/release/drainit
ARM64_ENV := CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld

.PHONY: all build size size-plain toolchain demo test lint unit integration stress-test e2e bench zero-downtime \
	zero-downtime-quick clean host-tools toolchain-arm64 build-arm64 test-arm64 dist
all: build

# A C toolchain (host build scripts and proc macros) and `file`, when missing.
host-tools:
	@bash scripts/deps.sh build

toolchain: host-tools
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	@rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src

build: toolchain
	$(RELEASE_ENV) $(CARGO) build $(RELEASE_ARGS)
	@file $(BIN) | grep -q 'static' || { echo "error: $(BIN) is not statically linked"; exit 1; }

size: build
	@size=$$(stat -c %s $(BIN)); \
	printf '%s: %d bytes (%d KiB), budget %d KiB\n' $(BIN) $$size $$((size / 1024)) $$(($(BUDGET) / 1024)); \
	[ $$size -le $(BUDGET) ] || { echo "error: over the size budget"; exit 1; }

# The same profile without rebuilding std (what a plain `cargo build --release`
# gives), beside the release build: docs/building.md "Size".
size-plain: build
	$(CARGO) build --release --locked --target $(TARGET) --target-dir target/plain
	@for b in $(BIN) target/plain/$(TARGET)/release/drainit; do \
	  size=$$(stat -c %s $$b); printf '%s: %d bytes (%d KiB)\n' $$b $$size $$((size / 1024)); \
	done

demo: build
	@bash scripts/demo.sh $(BIN)

lint: host-tools
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --features gen-docs -- -D warnings

unit: host-tools
	$(CARGO) test --locked --bins

integration: build
	@bash scripts/deps.sh test
	DRAINIT_BIN=$(abspath $(BIN)) $(CARGO) test --locked --test '*' -- --test-threads=4

# The integration tests ROUNDS times in a row with 2 busy loops per core
# beside them: the timing tests must hold on a loaded machine. The loops end
# with the recipe, whatever way it ends (trap). Round logs: target/stress-test/.
ROUNDS ?= 5
stress-test: build
	@bash scripts/deps.sh test
	@DRAINIT_BIN=$(abspath $(BIN)) $(CARGO) test --locked --test '*' --no-run 2>&1 | tail -1
	@set -u; logs=target/stress-test; mkdir -p $$logs; \
	loops=(); \
	stop_loops() { [ $${#loops[@]} -eq 0 ] || kill "$${loops[@]}" 2>/dev/null; wait 2>/dev/null; loops=(); }; \
	trap stop_loops EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	n=$$(( $$(nproc) * 2 )); \
	for _ in $$(seq $$n); do ( while :; do :; done ) & loops+=($$!); done; \
	echo "stress-test: $(ROUNDS) rounds of the integration tests beside $$n busy loops ($$(nproc) cores)"; \
	good=0; begin=$$SECONDS; \
	for round in $$(seq $(ROUNDS)); do \
	  start=$$SECONDS; log=$$logs/round-$$round.log; \
	  DRAINIT_BIN=$(abspath $(BIN)) $(CARGO) test --locked --no-fail-fast --test '*' -- --test-threads=4 >$$log 2>&1; rc=$$?; \
	  passed=$$(awk '/^test result:/ { n += $$4 } END { print n + 0 }' $$log); \
	  failed=$$(awk '/^test result:/ { n += $$6 } END { print n + 0 }' $$log); \
	  if [ $$rc -eq 0 ]; then good=$$((good + 1)); verdict=ok; else verdict=FAILED; fi; \
	  printf 'round %d/%d: %s, %d passed, %d failed, %ds\n' $$round $(ROUNDS) $$verdict $$passed $$failed $$((SECONDS - start)); \
	  [ $$rc -eq 0 ] || grep -E '^(---- |thread .* panicked|    [a-z_]+$$)' $$log | sed 's/^/    /'; \
	done; \
	stop_loops; \
	echo "stress-test: $$good/$(ROUNDS) rounds passed in $$((SECONDS - begin))s"; \
	[ $$good -eq $(ROUNDS) ]

e2e: build
	@bash tests/e2e/run.sh $(abspath $(BIN))

toolchain-arm64: toolchain
	@rustup target list --installed | grep -qx $(ARM64) || rustup target add $(ARM64)

build-arm64: toolchain-arm64
	$(RELEASE_ENV) $(ARM64_ENV) $(CARGO) build $(subst $(TARGET),$(ARM64),$(RELEASE_ARGS))
	@file $(BIN_ARM64) | grep -q 'ARM aarch64.*static' || { echo "error: $(BIN_ARM64) is not a static aarch64 binary"; exit 1; }
	@size=$$(stat -c %s $(BIN_ARM64)); \
	printf '%s: %d bytes (%d KiB), budget %d KiB\n' $(BIN_ARM64) $$size $$((size / 1024)) $$(($(BUDGET) / 1024)); \
	[ $$size -le $(BUDGET) ] || { echo "error: over the size budget"; exit 1; }

test-arm64: build-arm64
	@bash scripts/deps.sh arm64
	@bash scripts/test-arm64.sh $(abspath $(BIN_ARM64))

dist:
	@RELEASE_RUSTFLAGS="$(RELEASE_RUSTFLAGS)" BUILD_STD="$(BUILD_STD)" BUDGET=$(BUDGET) CARGO="$(CARGO)" \
		bash scripts/dist.sh

test: lint size unit integration test-arm64 zero-downtime-quick e2e

bench: build
	@bash bench/run.sh $(abspath $(BIN))

zero-downtime: build
	@bash bench/zero-downtime/run.sh $(abspath $(BIN))

zero-downtime-quick: build
	@bash bench/zero-downtime/run.sh $(abspath $(BIN)) --quick

clean:
	$(CARGO) clean
	rm -rf dist
