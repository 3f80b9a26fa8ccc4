"""The README's examples run as written: the curl example against a real `ember serve`, the
LangChain example against the same server, and the Python example in a fresh interpreter. The
answers they show in the README are compared with the real ones, and the vectors with the
reference vectors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

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


def shown_after(kind: str) -> str:
    """The fenced block the README shows after the `kind` example (its answer)."""
    m = re.search(
        rf"<!-- readme-example: {kind} -->\s*```\w*\n.*?```\s*\w+\s*```\w*\n(.*?)```", README, re.S
    )
    assert m, f"README shows no answer after the `{kind}` example"
    return m.group(1)


def shown_json(text: str) -> dict:
    """A JSON answer as the README shows it, with `...` standing for the rest of a vector."""
    return json.loads(re.sub(r",\s*\.\.\.\s*\]", "]", text).replace("[...]", "[]"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    real_model("all-MiniLM-L6-v2")
    # As the README's LangChain section says to start it.
    with ember_server(
        tmp_path_factory.mktemp("readme"), "--openai-token-ids", "cl100k_base"
    ) as base:
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
    # The answer the README shows is this answer: every field, and the first values shown.
    shown = shown_json(shown_after("curl"))
    assert set(shown) == set(body), (shown, list(body))
    for key, value in shown.items():
        if key != "embeddings":
            assert body[key] == value, key
    assert len(shown["embeddings"]) == len(body["embeddings"])
    first = shown["embeddings"][0]
    assert first and np.allclose(first, body["embeddings"][0][: len(first)], atol=6e-4), first


@pytest.mark.usefixtures("offline_tiktoken")
def test_readme_langchain_example(server: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = example("langchain").replace("127.0.0.1:8080", f"127.0.0.1:{server}")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    printed = capsys.readouterr().out.strip()
    comment = re.search(r"print\(.*\)\s*#\s*(.*)", code)
    assert comment and printed == comment.group(1).strip(), printed
    want = ember.Embedder("all-MiniLM-L6-v2").embed(["a cat sat on the mat", "stock prices fell"])
    assert (cosine(np.array(scope["vectors"]), want) > 0.9999).all()
    scope["emb"].client._client.close()


def test_readme_python_example() -> None:
    real_model("all-MiniLM-L6-v2")
    code = example("python")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    # Each print's comment shows what it prints.
    shown = [m.group(1).strip() for m in re.finditer(r"print\(.*\)\s*#\s*(.*)", code)]
    assert len(shown) == len(lines) == 2, (shown, lines)
    assert lines == shown
