"""Real HTTP clients against a real `ember serve`: the OpenAI SDK, the Ollama client, LangChain's
OpenAIEmbeddings and plain `requests` on Ollama's legacy route, each checked against
sentence-transformers' reference vectors for all-MiniLM-L6-v2 (cosine >= 0.9999)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from conftest import cosine, ember_server, real_model, reference

MODEL = "all-MiniLM-L6-v2"
N = 8  # reference texts per check: enough to cover short and long (truncated) inputs


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The root URL of an `ember serve` on a free port, stopped with SIGINT afterwards. Its
    OpenAI token-id inputs are `cl100k_base` ids, as LangChain sends them by default."""
    real_model(MODEL)
    with ember_server(
        tmp_path_factory.mktemp("server"),
        "--openai-token-ids",
        "cl100k_base",
        EMBER_DEFAULT_MODEL=MODEL,
    ) as base:
        yield base


@pytest.fixture(scope="module")
def ref() -> dict[str, Any]:
    return reference(MODEL)


def texts(ref: dict[str, Any]) -> list[str]:
    return list(ref["texts"][:N])


def assert_matches(got: Any, want: Any) -> None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    c = cosine(got, want)
    assert c.min() >= 0.9999, c


def test_openai_sdk_float_and_default_base64(base_url: str, ref: dict[str, Any]) -> None:
    import openai

    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0) as client:
        # The SDK's default asks for base64 and decodes it.
        out = client.embeddings.create(model=MODEL, input=texts(ref))
        assert out.model == MODEL
        assert [d.index for d in out.data] == list(range(N))
        assert_matches([d.embedding for d in out.data], ref["normalized"][:N])
        assert out.usage.prompt_tokens == sum(ref["token_counts_after_truncation"][:N])

        out = client.embeddings.create(
            model="sentence-transformers/all-MiniLM-L6-v2",
            input=texts(ref)[0],
            encoding_format="float",
            user="someone",
        )
        assert_matches([out.data[0].embedding], ref["normalized"][:1])

        out = client.embeddings.create(model=MODEL, input="hello", dimensions=64)
        assert len(out.data[0].embedding) == 64

        with pytest.raises(openai.NotFoundError) as e:
            client.embeddings.create(model="text-embedding-3-small-nope", input="a")
        assert e.value.body["code"] == "model_not_found"
        assert "text-embedding-3-small-nope" in e.value.body["message"]
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model=MODEL, input=[])

        models = [m.id for m in client.models.list()]
        assert MODEL in models


def test_ollama_client_embed_and_embeddings(base_url: str, ref: dict[str, Any]) -> None:
    import ollama

    with ollama.Client(host=base_url) as client:
        out = client.embed(model="all-minilm", input=texts(ref))
        assert_matches(out.embeddings, ref["normalized"][:N])
        norms = np.linalg.norm(np.asarray(out.embeddings), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
        assert out.prompt_eval_count == sum(ref["token_counts_after_truncation"][:N])
        assert out.total_duration and out.total_duration > 0

        legacy = client.embeddings(model="all-minilm:latest", prompt=texts(ref)[1])
        assert_matches([legacy.embedding], ref["raw_mean_pooled"][1:2])
        # Not normalized, as Ollama's legacy route.
        np.testing.assert_allclose(
            legacy.embedding, ref["raw_mean_pooled"][1], rtol=1e-3, atol=1e-4
        )

        with pytest.raises(ollama.ResponseError) as e:
            client.embed(model="no-such-model", input="a")
        assert e.value.status_code == 404
        with pytest.raises(ollama.ResponseError) as e:
            client.embed(model="all-minilm", input=" ".join(["word"] * 400), truncate=False)
        assert e.value.status_code == 400
        assert "the input length exceeds the context length" in e.value.error

        names = [m.model for m in client.list().models]
        assert MODEL in names
        assert any(m.model == MODEL for m in client.ps().models)


def test_langchain_openai_embeddings(base_url: str, ref: dict[str, Any]) -> None:
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(
        model=MODEL,
        base_url=f"{base_url}/v1",
        api_key="x",  # type: ignore[arg-type]
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    try:
        assert_matches(emb.embed_documents(texts(ref)), ref["normalized"][:N])
        assert_matches([emb.embed_query(texts(ref)[2])], ref["normalized"][2:3])
    finally:
        # The OpenAI client LangChain made holds a connection pool: close it.
        emb.client._client.close()


@pytest.mark.usefixtures("offline_tiktoken")
def test_langchain_default_configuration_sends_cl100k_ids(
    base_url: str, ref: dict[str, Any]
) -> None:
    """LangChain's defaults (`check_embedding_ctx_length=True`) send tiktoken cl100k_base ids,
    which `--openai-token-ids cl100k_base` decodes: the vectors are the texts' vectors."""
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(model=MODEL, base_url=f"{base_url}/v1", api_key="x", max_retries=0)  # type: ignore[arg-type]
    try:
        assert emb.check_embedding_ctx_length
        assert_matches(emb.embed_documents(texts(ref)), ref["normalized"][:N])
        assert_matches([emb.embed_query(texts(ref)[3])], ref["normalized"][3:4])
    finally:
        emb.client._client.close()


def test_requests_ollama_legacy_prompt(base_url: str, ref: dict[str, Any]) -> None:
    import requests

    got = []
    for text in texts(ref)[:3]:
        r = requests.post(
            f"{base_url}/api/embeddings", json={"model": "all-minilm", "prompt": text}, timeout=60
        )
        assert r.status_code == 200, r.text
        got.append(r.json()["embedding"])
    assert_matches(got, ref["raw_mean_pooled"][:3])

    r = requests.post(
        f"{base_url}/api/embeddings", json={"model": "nope", "prompt": "a"}, timeout=60
    )
    assert r.status_code == 404
    assert set(r.json()) == {"error"} and "nope" in r.json()["error"]
    r = requests.post(
        f"{base_url}/api/embeddings",
        data=b'{"model": "all-minilm", "prompt": ',
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_tei_and_native_over_http(base_url: str, ref: dict[str, Any]) -> None:
    import requests

    r = requests.post(f"{base_url}/embed", json={"inputs": texts(ref)}, timeout=60)
    assert r.status_code == 200, r.text
    assert_matches(r.json(), ref["normalized"][:N])
    for h in ("x-queue-time", "x-tokenization-time", "x-inference-time", "x-total-time"):
        assert float(r.headers[h]) >= 0
    r = requests.post(
        f"{base_url}/api/v1/embed", json={"input": texts(ref), "model": "all-minilm"}, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-model-id"] == MODEL
    assert_matches(r.json()["embeddings"], ref["normalized"][:N])
    doc = requests.get(f"{base_url}/openapi.json", timeout=60).json()
    assert "/v1/embeddings" in doc["paths"]
