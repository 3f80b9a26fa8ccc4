#!/usr/bin/env bash
# Packaging smoke test: builds the abi3 wheel (`maturin build --release`) and the sdist
# (`maturin sdist`), installs each into a fresh virtual environment (numpy from PyPI, Ember with
# --no-deps), and checks that the package imports, embeds with a tiny model from fixtures/, ships its
# bench corpus and runs its console script.
#
# Both builds reuse the workspace target directory (CARGO_TARGET_DIR, default $PWD/target), so
# only the Ember crates compile; nothing is built from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR=never
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ember-package-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
TINY="$PWD/fixtures/reference/tiny/bert"

step() { printf '\n== package smoke: %s\n' "$*"; }

step "wheel and sdist"
$PY -m maturin build --release --quiet --out "$WORK/dist"
$PY -m maturin sdist --out "$WORK/dist"
WHEEL=$(ls "$WORK"/dist/ember-*.whl)
SDIST=$(ls "$WORK"/dist/ember-*.tar.gz)
case "$WHEEL" in
*-abi3-*) ;;
*) echo "expected an abi3 wheel, got $WHEEL" >&2 && exit 1 ;;
esac

smoke() {
  local venv=$1
  # Run from an empty folder so `import ember` finds the installed package, not ./python.
  (cd "$WORK" && "$venv/bin/python" - "$TINY" <<'EOF'
import subprocess, sys
from pathlib import Path

import numpy as np

import ember
from ember.cli import corpus

tiny = sys.argv[1]
assert Path(ember.__file__).is_relative_to(Path(sys.prefix)), ember.__file__
m = ember.Embedder(tiny)
v = m.embed(["hello world", "a"])
assert v.shape == (2, 32) and v.dtype == np.float32, (v.shape, v.dtype)
assert m.encode(["hello world", "a"], precision="ubinary").shape == (2, 4)
assert ember.ModelManager().embed("x", tiny).shape == (32,)
assert len(corpus()) == 200
script = Path(sys.prefix) / "bin" / "ember"
out = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
k = ember.kernels()
want = f"ember {ember.__version__} (kernels: f32 {k['f32']}, int8 {k['int8']}; {k['threads']} threads)"
assert out.stdout.strip() == want, (out.stdout, want)
print(f"ok: ember {ember.__version__} from {Path(ember.__file__).parent}")
EOF
  )
}

fresh_venv() {
  $PY -m venv "$1"
  "$1/bin/python" -m pip install --quiet --disable-pip-version-check numpy
}

step "install the wheel in a fresh venv"
fresh_venv "$WORK/venv-wheel"
"$WORK/venv-wheel/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$WHEEL"
smoke "$WORK/venv-wheel"

step "install the sdist in a fresh venv (builds from source)"
fresh_venv "$WORK/venv-sdist"
# The build backend goes into the venv so the build can skip isolation and see CARGO_TARGET_DIR.
"$WORK/venv-sdist/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2"
"$WORK/venv-sdist/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  --no-build-isolation "$SDIST"
smoke "$WORK/venv-sdist"

step "passed"
