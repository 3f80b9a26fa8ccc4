"""`ember.Client` against a real `python -m ember serve` on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import ember
from conftest import ember_server, free_port, tiny_dir
from ember.client import _error

TINY = str(tiny_dir("bert"))
KEY = "test-key-123"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_dir = tmp_path_factory.mktemp("server")
    with ember_server(log_dir, EMBER_DEFAULT_MODEL=TINY, EMBER_API_KEYS=KEY) as base:
        yield base


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # A budget no model fits in: every embed is a capacity error.
    log_dir = tmp_path_factory.mktemp("tight")
    env = {"EMBER_DEFAULT_MODEL": TINY, "EMBER_MAX_MEMORY": "1000", "EMBER_LAZY": "true"}
    with ember_server(log_dir, wait_ready=False, **env) as base:
        yield base


def test_embed_returns_numpy(server: str) -> None:
    client = ember.Client(server, api_key=KEY)
    texts = ["hello world", "a"]
    got = client.embed(texts)
    assert got.shape == (2, 32) and got.dtype == np.float32 and got.flags.c_contiguous
    assert np.allclose(got, ember.Embedder(TINY).embed(texts), atol=1e-5)
    one = client.embed("hello world", model=TINY)
    assert one.shape == (32,) and np.allclose(one, got[0], atol=1e-6)
    cut = client.embed(texts, normalize=False, dimensions=8)
    assert cut.shape == (2, 8)
    assert np.allclose(cut, ember.Embedder(TINY).embed(texts, normalize=False)[:, :8], atol=1e-5)
    assert client.embed([]).shape == (0, 0)


def test_chunk_gives_the_in_process_chunks(server: str) -> None:
    client = ember.Client(server, api_key=KEY)
    local = ember.Embedder(TINY)
    texts = ["Ünïcödé café naïve résumé one two three four five six", "short", ""]
    got = client.chunk(texts, chunk_tokens=5, chunk_overlap=2)
    assert got == [local.chunk(t, 5, 2) for t in texts]
    assert len(got[0]) > 2
    # Without a window: the largest that fits the model's limit (the whole short text).
    assert client.chunk("short", TINY) == [local.chunk("short", local.max_seq_length - 2)]
    assert client.chunk([]) == []
    with pytest.raises(ember.InvalidInputError, match="chunk_overlap"):
        client.chunk(texts, chunk_tokens=2, chunk_overlap=2)


def test_models(server: str) -> None:
    client = ember.Client(server + "/", api_key=KEY, timeout=30)
    models = client.models()
    assert {"all-MiniLM-L6-v2", TINY} <= {m["id"] for m in models}
    assert client.model("all-minilm")["id"] == "all-MiniLM-L6-v2"
    assert repr(client) == f"Client({server!r}, timeout=30)"  # no key in the repr


def test_errors_map_to_ember_classes(server: str) -> None:
    client = ember.Client(server, api_key=KEY)
    with pytest.raises(ember.ModelNotFoundError, match="no-such-model") as err:
        client.embed(["x"], model="no-such-model")
    assert isinstance(err.value, KeyError) and "HTTP 404" in str(err.value)
    with pytest.raises(ember.InvalidInputError, match="HTTP 400"):
        client.embed(["x"], dimensions=999)
    with pytest.raises(ember.InvalidInputError, match="HTTP 413"):
        client.embed(["the " * 100], truncate=False)
    with pytest.raises(ember.ModelNotFoundError):
        client.model("no-such-model")
    with pytest.raises(ember.UnsupportedModelError):
        client.embed(["x"], model="nomic-embed-text-v2-moe")


def test_api_key(server: str) -> None:
    try:
        ember.Client(server).embed(["x"])
    except ember.EmberError as e:
        # Without the key: 401, an EmberError (not one of the subclasses).
        assert type(e) is ember.EmberError and "HTTP 401" in str(e)
    else:
        pytest.skip("this ember-server build does not check EMBER_API_KEYS yet")


def test_capacity_error(tight_server: str) -> None:
    try:
        ember.Client(tight_server).embed(["x"])
    except ember.CapacityError as e:
        assert "HTTP 429" in str(e)
    else:
        pytest.skip("this ember-server build does not apply EMBER_MAX_MEMORY yet")


def test_unreachable_server() -> None:
    with pytest.raises(ember.EmberError, match="cannot reach"):
        ember.Client(f"http://127.0.0.1:{free_port()}", timeout=5).embed(["x"])
    with pytest.raises(ember.InvalidInputError, match="http"):
        ember.Client("localhost:8080")


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (404, b'{"error": {"type": "model_not_found", "message": "m"}}', ember.ModelNotFoundError),
        (400, b'{"error": {"type": "invalid_request", "message": "m"}}', ember.InvalidInputError),
        (422, b"not json", ember.InvalidInputError),
        (413, b"{}", ember.InvalidInputError),
        (429, b'{"error": {"type": "capacity", "message": "m"}}', ember.CapacityError),
        (503, b'{"error": {"type": "overloaded", "message": "m"}}', ember.CapacityError),
        (503, b'{"error": {"type": "model_load_failed", "message": "m"}}', ember.ModelLoadError),
        (500, b'{"error": {"type": "internal", "message": "boom"}}', ember.EmberError),
    ],
)
def test_error_mapping(status: int, body: bytes, cls: type) -> None:
    err = _error(status, body, "http://x/api/v1/embed")
    assert type(err) is cls and f"HTTP {status}" in str(err)
