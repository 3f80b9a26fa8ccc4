"""Real HTTP clients against a real `ember serve` holding an embedder, a cross-encoder and a
SPLADE model side by side: the `cohere` package's `ClientV2.rerank` (`/v2/rerank`) and
`Client.rerank` (`/v1/rerank`), and plain `requests` on TEI's `/rerank`, `/embed_all` and the
native sparse output, each checked against sentence-transformers' outputs for the same tiny
seeded models (`fixtures/reference/make_heads.py`): scores within 1e-4 and the same order,
token vectors with cosine >= 0.9999, sparse values within 1e-4 on the same indices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests

from conftest import catalog_server, cosine, load_json, tiny_dir

EMBEDDER = "tiny-bert"
RERANKER = "tiny-cross"
SPARSE = "tiny-splade"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ember serve` on a free port: the tiny BERT embedder by default, the tiny cross-encoder
    and the tiny SPLADE model in the catalog."""
    catalog = {
        EMBEDDER: tiny_dir("bert"),
        RERANKER: tiny_dir("cross-bert"),
        SPARSE: tiny_dir("splade-bert"),
    }
    with catalog_server(tmp_path_factory.mktemp("rerank-server"), EMBEDDER, catalog) as base:
        yield base


@pytest.fixture(scope="module")
def ref() -> dict[str, Any]:
    return load_json(tiny_dir("cross-bert") / "expected.json")


def assert_ranking(
    got: list[tuple[int, float]], ref: dict[str, Any], top: int | None = None
) -> None:
    """`got` as (index, score) best first, against CrossEncoder's ranking (activated scores)."""
    want = ref["rank"][:top] if top else ref["rank"]
    assert [i for i, _ in got] == [w["index"] for w in want]
    np.testing.assert_allclose([s for _, s in got], [w["score"] for w in want], atol=1e-4)


def test_cohere_v2_client_reranks(base_url: str, ref: dict[str, Any]) -> None:
    import cohere

    with cohere.ClientV2(api_key="unused", base_url=base_url) as client:
        out = client.rerank(model=RERANKER, query=ref["query"], documents=ref["documents"])
        assert_ranking([(r.index, r.relevance_score) for r in out.results], ref)
        out = client.rerank(model=RERANKER, query=ref["query"], documents=ref["documents"], top_n=3)
        assert_ranking([(r.index, r.relevance_score) for r in out.results], ref, top=3)

        # An embedder asked to rerank: Cohere's error shape, naming the kind.
        with pytest.raises(cohere.errors.BadRequestError) as e:
            client.rerank(model=EMBEDDER, query="q", documents=["d"])
        assert "is an embedder" in e.value.body["message"]
        with pytest.raises(cohere.errors.NotFoundError) as e:
            client.rerank(model="rerank-v5.0-pro", query="q", documents=["d"])
        assert "rerank-v5.0-pro" in e.value.body["message"]


def test_cohere_v1_client_reranks_with_documents(base_url: str, ref: dict[str, Any]) -> None:
    import cohere

    docs = [{"text": d} for d in ref["documents"]]
    with cohere.Client(api_key="unused", base_url=base_url) as client:
        out = client.rerank(
            model=RERANKER, query=ref["query"], documents=docs, top_n=4, return_documents=True
        )
    assert_ranking([(r.index, r.relevance_score) for r in out.results], ref, top=4)
    for r in out.results:
        assert r.document is not None and r.document.text == ref["documents"][r.index]


def test_requests_on_tei_rerank(base_url: str, ref: dict[str, Any]) -> None:
    body = {"model": RERANKER, "query": ref["query"], "texts": ref["documents"]}
    r = requests.post(f"{base_url}/rerank", json={**body, "return_text": True}, timeout=60)
    assert r.status_code == 200, r.text
    got = r.json()
    assert_ranking([(g["index"], g["score"]) for g in got], ref)
    assert all(g["text"] == ref["documents"][g["index"]] for g in got)

    r = requests.post(f"{base_url}/rerank", json={**body, "raw_scores": True}, timeout=60)
    assert r.status_code == 200, r.text
    for g in r.json():
        assert abs(g["score"] - ref["raw"][g["index"]]) < 1e-4

    r = requests.post(f"{base_url}/rerank", json={**body, "texts": []}, timeout=60)
    assert r.status_code == 400 and r.json()["error_type"] == "empty", r.text


def test_requests_on_embed_all_and_sparse_output(base_url: str) -> None:
    tokens = load_json(tiny_dir("bert") / "token_embeddings.json")
    r = requests.post(f"{base_url}/embed_all", json={"inputs": tokens["texts"]}, timeout=60)
    assert r.status_code == 200, r.text
    for got, want in zip(r.json(), tokens["token_embeddings"], strict=True):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape
        assert cosine(got, want).min() >= 0.9999

    splade = load_json(tiny_dir("splade-bert") / "expected.json")
    body = {"model": SPARSE, "input": splade["texts"], "output": "sparse"}
    r = requests.post(f"{base_url}/api/v1/embed", json=body, timeout=60)
    assert r.status_code == 200, r.text
    for got, want in zip(r.json()["embeddings"], splade["vectors"], strict=True):
        assert got["indices"] == want["indices"]
        np.testing.assert_allclose(got["values"], want["values"], atol=1e-4)

    r = requests.post(f"{base_url}/api/v1/embed", json={**body, "output": "dense"}, timeout=60)
    assert r.status_code == 400, r.text
    assert "is a sparse encoder" in r.json()["error"]["message"]
