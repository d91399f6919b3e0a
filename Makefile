# drainit — every step a newcomer (or CI) needs, from a fresh Linux machine, as root.
#
#   make          the static release binary (x86_64-unknown-linux-musl)
#   make size     its size, failing over the 512 KiB budget
#   make demo     drainit as PID 1 of a new PID namespace, stopping a sample app
#   make test     every test: lint, unit, integration (as PID 1 and as a plain
#                 parent), and the end-to-end tests in a real container engine
#   make e2e      only the end-to-end tests: podman + runc, podman kube play,
#                 and a dockerd of their own (tests/e2e/run.sh)
#   make bench    drainit side by side with tini, dumb-init and catatonit

SHELL := /bin/bash
TARGET := x86_64-unknown-linux-musl
BIN := target/$(TARGET)/release/drainit
BUDGET := 524288
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

# The release build compiles std itself with panic=immediate-abort: std's
# default panic hook (backtrace symbolisation: gimli, libunwind, demangling)
# is ~220 KiB of an otherwise ~760 KiB binary, and drainit must never panic
# anyway (clippy denies unwrap/expect/panic). RUSTC_BOOTSTRAP unlocks the two
# unstable flags this needs on the stable toolchain; see README "Size".
RELEASE_ENV := RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort"
RELEASE_ARGS := --release --locked --target $(TARGET) -Zbuild-std=std,panic_abort

.PHONY: all build size toolchain demo test lint unit integration e2e bench clean
all: build

toolchain:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	@rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src

build: toolchain
	$(RELEASE_ENV) $(CARGO) build $(RELEASE_ARGS)
	@file $(BIN) | grep -q 'static' || { echo "error: $(BIN) is not statically linked"; exit 1; }

size: build
	@size=$$(stat -c %s $(BIN)); \
	printf '%s: %d bytes (%d KiB), budget %d KiB\n' $(BIN) $$size $$((size / 1024)) $$(($(BUDGET) / 1024)); \
	[ $$size -le $(BUDGET) ] || { echo "error: over the size budget"; exit 1; }

demo: build
	@bash scripts/demo.sh $(BIN)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit:
	$(CARGO) test --locked --bins

integration: build
	@bash scripts/deps.sh test
	DRAINIT_BIN=$(abspath $(BIN)) $(CARGO) test --locked --test '*' -- --test-threads=4

e2e: build
	@bash tests/e2e/run.sh $(abspath $(BIN))

test: lint size unit integration e2e

bench: build
	@bash bench/run.sh $(abspath $(BIN))

clean:
	$(CARGO) clean
