"""The README's examples run as written: the curl example against a real `ember serve`, and the
Python example in a fresh interpreter; both are checked against the reference vectors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import ember
from conftest import REPO, cosine, ember_server, real_model

README = (REPO / "README.md").read_text(encoding="utf-8")


def example(kind: str) -> str:
    """The fenced block right after `<!-- readme-example: KIND -->`."""
    m = re.search(rf"<!-- readme-example: {kind} -->\s*```\w*\n(.*?)```", README, re.S)
    assert m, f"README has no `{kind}` example"
    return m.group(1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    real_model("all-MiniLM-L6-v2")
    with ember_server(tmp_path) as base:
        yield int(base.rsplit(":", 1)[1])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_example(server: int) -> None:
    command = example("curl").replace("127.0.0.1:8080", f"127.0.0.1:{server}")
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["dimension"] == 384
    texts = ["a cat sat on the mat", "stock prices fell"]
    assert "a cat sat on the mat" in command
    got = np.array(body["embeddings"], dtype=np.float32)
    want = ember.Embedder("all-MiniLM-L6-v2").embed(texts)
    assert (cosine(got, want) > 0.9999).all()
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


def test_readme_python_example() -> None:
    real_model("all-MiniLM-L6-v2")
    out = subprocess.run(
        [sys.executable, "-c", example("python")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "(2, 384) float32"
    # The cosine of "a cat sat on the mat" with "just one text" is a real similarity.
    assert -1.0 <= float(lines[1]) <= 1.0
