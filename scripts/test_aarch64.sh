#!/usr/bin/env bash
# Cross-builds ember-core's kernel tests for aarch64-unknown-linux-gnu and runs them under
# qemu-user, so the NEON kernels meet the portable ones on every test run, on x86-64 machines.
#
# rustup cannot fetch an AArch64 standard library here (only crates.io, PyPI and Debian are
# reachable), so this uses Debian's Rust (`rustc-web`, whose arm64 standard library Debian
# ships as `libstd-rust-web-dev:arm64`), the GNU cross linker and qemu-user, all from apt-get.
# Without apt-get as root, or when the install fails, it says SKIPPED and exits 0; once the tools
# are there, a build or test failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
  echo "SKIPPED: the AArch64 kernel tests need apt-get as root"
  exit 0
fi
pkgs=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  qemu-user-static)
log=$(mktemp)
if ! { dpkg --add-architecture arm64 && apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; } >"$log" 2>&1; then
  tail -20 "$log"
  echo "SKIPPED: could not install the AArch64 cross toolchain (above)"
  exit 0
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# qemu finds the arm64 loader and libraries Debian's multiarch packages put under /lib.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
export CARGO_TARGET_DIR=target/aarch64-cross
# The kernels alone (crates/ember-kernels-cross compiles ember-core's kernel sources on their own),
# not the whole core: its dependency tree is what made this step slow.
RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc /usr/bin/cargo test --release \
  --target aarch64-unknown-linux-gnu --manifest-path crates/ember-kernels-cross/Cargo.toml --lib \
  -- kernels::
