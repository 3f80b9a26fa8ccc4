"""Real models (from their PyPI packages) against sentence-transformers' reference vectors."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from conftest import cosine, real_model, reference, rel_l2


def check_parity(model_id: str, stride: int = 1) -> None:
    """Normalized vectors for every text; raw and `encode` vectors for every `stride`-th one
    (a full pass of all-mpnet-base-v2 takes about a minute on two cores)."""
    ref = reference(model_id)
    m = real_model(model_id)
    texts = ref["texts"]
    assert m.model_id == model_id
    assert m.dimension == ref["dimension"]
    assert m.max_seq_length == ref["max_seq_length"]
    assert m.count_tokens(texts) == ref["token_counts_after_truncation"]

    want_norm = np.array(ref["normalized"])
    want_raw = np.array(ref["raw_mean_pooled"])
    embedded = m.embed(texts)
    assert embedded.shape == want_norm.shape and embedded.dtype == np.float32
    cos = cosine(embedded, want_norm)
    assert cos.min() >= 0.9999, f"worst text {cos.argmin()}: cosine {cos.min()}"
    assert cos.mean() >= 0.99999

    texts, want_norm, want_raw = texts[::stride], want_norm[::stride], want_raw[::stride]
    raw = rel_l2(m.embed(texts, normalize=False), want_raw)
    assert raw.max() < 1e-4, f"worst text {raw.argmax()}: relative L2 {raw.max():e}"

    # `encode` is sentence-transformers' call: the pipeline ends in Normalize, so it normalizes.
    encoded = m.encode(texts, batch_size=16)
    assert (cosine(encoded, want_norm) >= 0.9999).all()
    assert np.allclose(np.linalg.norm(encoded, axis=1), 1.0, atol=1e-5)


def test_all_minilm_l6_v2_matches_sentence_transformers() -> None:
    check_parity("all-MiniLM-L6-v2")


@pytest.mark.slow
def test_all_mpnet_base_v2_matches_sentence_transformers() -> None:
    check_parity("all-mpnet-base-v2", stride=6)


def test_aliases_load_the_same_model(minilm: ember.Embedder) -> None:
    alias = ember.Embedder("all-minilm")
    assert alias.model_id == "all-MiniLM-L6-v2"
    assert np.array_equal(alias.embed(["same text"]), minilm.embed(["same text"]))
    assert ember.Embedder().model_id == minilm.model_id  # the default model


def test_semantics_survive(minilm: ember.Embedder) -> None:
    e = minilm.embed(["A man is eating food.", "A man is eating pasta.", "The stock market fell."])
    s = minilm.similarity(e, e)
    assert s[0, 1] > 0.6 > s[0, 2]
    assert minilm.tokenize("Hello world") == ["[CLS]", "hello", "world", "[SEP]"]
