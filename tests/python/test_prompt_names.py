"""The task -> prompt rule is one rule at every edge: a model whose document prompt is named
`document`, `passage`, `corpus` or `doc` gets that prompt for a document from Python
(`encode_document`) and over HTTP (`input_type: "document"` on the native route), and its
`query` prompt for a query. Each model is the tiny BERT fixture with its prompts added."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import ember
from conftest import ember_server, tiny_dir

NAMES = ["document", "passage", "corpus", "doc"]
TEXTS = ["a short text", "another text about retrieval"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prompted")
    out = {}
    for name in NAMES:
        d = root / f"tiny-{name}"
        shutil.copytree(tiny_dir("bert"), d)
        config = {"prompts": {"query": "q: ", name: f"{name} says: "}, "default_prompt_name": None}
        (d / "config_sentence_transformers.json").write_text(json.dumps(config))
        out[name] = d
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[str]:
    # The models are named at start (a server serves the directories it was given).
    env = {
        "EMBER_DEFAULT_MODEL": str(tiny_dir("bert")),
        "EMBER_MODELS": ",".join(str(d) for d in models.values()),
    }
    with ember_server(tmp_path_factory.mktemp("server"), **env) as base:
        yield base


def native(base: str, model: Path, input_type: str) -> np.ndarray:
    body = {"model": str(model), "input": TEXTS, "input_type": input_type}
    req = urllib.request.Request(
        f"{base}/api/v1/embed",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return np.asarray(json.load(r)["embeddings"], dtype=np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_document_prompt_is_the_same_at_both_edges(
    name: str, models: dict[str, Path], server: str
) -> None:
    m = ember.Embedder(str(models[name]))
    want_doc = m.encode(TEXTS, prompt_name=name)
    want_query = m.encode(TEXTS, prompt_name="query")
    plain = m.encode(TEXTS)
    # The prompt changes the vectors, so picking the wrong one (or none) cannot pass.
    assert not np.allclose(want_doc, plain, atol=1e-3)
    assert not np.allclose(want_doc, want_query, atol=1e-3)
    assert np.allclose(m.encode_document(TEXTS), want_doc, atol=1e-6)
    assert np.allclose(m.encode_query(TEXTS), want_query, atol=1e-6)
    assert np.allclose(native(server, models[name], "document"), want_doc, atol=1e-5)
    assert np.allclose(native(server, models[name], "query"), want_query, atol=1e-5)
