"""`Embedder.embed` / `encode` on the tiny seeded models: parity, shapes, options, properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ember
from conftest import cosine, rel_l2, tiny_dir, tiny_expected


def test_tiny_models_match_sentence_transformers(tiny_kind: str) -> None:
    expected = tiny_expected(tiny_kind)
    m = ember.Embedder(str(tiny_dir(tiny_kind)))
    texts = expected["texts"]
    want_norm = np.array(expected["normalized"])
    want_raw = np.array(expected["raw_mean_pooled"])

    assert (cosine(m.embed(texts), want_norm) > 0.9999).all()
    assert (rel_l2(m.embed(texts, normalize=False), want_raw) < 1e-4).all()
    # The tiny models end in a Normalize module, so `encode` normalizes by default.
    assert m.info["normalize"] is True
    assert (cosine(m.encode(texts), want_norm) > 0.9999).all()
    assert np.allclose(np.linalg.norm(m.encode(texts), axis=1), 1.0, atol=1e-5)


def test_shapes_dtype_and_layout(tiny_bert: ember.Embedder) -> None:
    d = tiny_bert.dimension
    for method in (tiny_bert.embed, tiny_bert.encode):
        many = method(["a", "b", "c"])
        assert many.shape == (3, d)
        assert many.dtype == np.float32
        assert many.flags.c_contiguous and many.flags.writeable
        one = method("a")
        assert one.shape == (d,) and one.dtype == np.float32
        assert np.allclose(one, many[0], atol=1e-6)
        empty = method([])
        assert empty.shape == (0, d) and empty.dtype == np.float32


def test_any_sequence_of_strings_is_accepted(tiny_bert: ember.Embedder) -> None:
    want = tiny_bert.embed(["x", "y"])
    assert np.allclose(tiny_bert.embed(("x", "y")), want, atol=1e-6)
    assert np.allclose(tiny_bert.embed(t for t in ["x", "y"]), want, atol=1e-6)
    assert np.allclose(tiny_bert.embed(np.array(["x", "y"])), want, atol=1e-6)


def test_batching_and_chunking_do_not_change_vectors(tiny_bert: ember.Embedder) -> None:
    texts = [f"text number {i} " + "word " * (i % 7) for i in range(40)]
    base = tiny_bert.embed(texts)
    # batch_size=1 runs many GIL-free chunks; the vectors must come back in input order.
    for batch_size in (1, 3, 64):
        assert (rel_l2(tiny_bert.embed(texts, batch_size=batch_size), base) < 1e-5).all()


def test_dimensions_keep_a_renormalized_prefix(tiny_bert: ember.Embedder) -> None:
    texts = ["hello world", "a"]
    raw = tiny_bert.embed(texts, normalize=False)
    cut = tiny_bert.embed(texts, dimensions=8)
    assert cut.shape == (2, 8) and cut.flags.c_contiguous
    assert np.allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-5)
    assert (cosine(cut, raw[:, :8]) > 0.99999).all()
    assert np.allclose(tiny_bert.embed(texts, normalize=False, dimensions=8), raw[:, :8], atol=1e-6)


def test_encode_truncate_dim_follows_sentence_transformers(tiny_bert: ember.Embedder) -> None:
    texts = ["hello world", "the quick brown fox"]
    full = tiny_bert.encode(texts)
    # Cut after the model's Normalize module, not re-normalized...
    cut = tiny_bert.encode(texts, truncate_dim=8)
    assert cut.shape == (2, 8) and cut.flags.c_contiguous
    assert np.allclose(cut, full[:, :8], atol=1e-6)
    assert (np.linalg.norm(cut, axis=1) < 1.0).all()
    # ...unless normalize_embeddings asks for it.
    renorm = tiny_bert.encode(texts, truncate_dim=8, normalize_embeddings=True)
    assert np.allclose(np.linalg.norm(renorm, axis=1), 1.0, atol=1e-5)
    assert (cosine(renorm, full[:, :8]) > 0.99999).all()
    one = tiny_bert.encode("hello world", truncate_dim=8)
    assert one.shape == (8,)


def test_prompt_is_prepended(tiny_bert: ember.Embedder) -> None:
    with_prompt = tiny_bert.embed(["world"], prompt="hello ")
    joined = tiny_bert.embed(["hello world"])
    assert (rel_l2(with_prompt, joined) < 1e-5).all()
    assert (rel_l2(tiny_bert.encode(["world"], prompt="hello "), joined) < 1e-5).all()


def test_truncate_false_names_the_long_input(tiny_bert: ember.Embedder) -> None:
    texts = ["short"] * 9 + ["the " * 100]
    assert tiny_bert.embed(texts).shape == (10, tiny_bert.dimension)
    # batch_size=1 splits the call in chunks: the index must still be the caller's.
    with pytest.raises(ember.InvalidInputError, match=r"input 9 has \d+ tokens") as err:
        tiny_bert.embed(texts, truncate=False, batch_size=1)
    assert "32" in str(err.value) and "truncate" in str(err.value)


def test_properties(tiny_bert: ember.Embedder) -> None:
    path = str(tiny_dir("bert"))
    assert tiny_bert.dimension == 32 == tiny_bert.get_sentence_embedding_dimension()
    assert tiny_bert.max_seq_length == 32 == tiny_bert.get_max_seq_length()
    assert tiny_bert.model_id == path
    assert tiny_bert.spec["id"] == path and tiny_bert.spec["path"] == path
    assert tiny_bert.info["architecture"] == "bert" and tiny_bert.info["dimension"] == 32
    assert tiny_bert.prompts == {} and tiny_bert.default_prompt_name is None
    assert repr(tiny_bert) == f'Embedder("{path}", dimension=32, max_seq_length=32)'


def test_path_objects_are_model_ids() -> None:
    m = ember.Embedder(Path(tiny_dir("mpnet")))
    assert m.model_id == str(tiny_dir("mpnet"))
    assert m.info["architecture"] == "mpnet"


def test_tokenize_and_count_tokens(tiny_bert: ember.Embedder) -> None:
    tokens = tiny_bert.tokenize("hello world")
    assert isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    # tokenize does not truncate; count_tokens does, as embedding does.
    assert len(tiny_bert.tokenize("the " * 100)) > 32
    assert tiny_bert.count_tokens(["hello world", "the " * 100]) == [len(tokens), 32]


def test_similarity(tiny_bert: ember.Embedder) -> None:
    e = tiny_bert.embed(["hello world", "hello there", "the lazy dog"])
    s = tiny_bert.similarity(e, e)
    assert s.shape == (3, 3) and s.dtype == np.float32
    assert np.allclose(np.diag(s), 1.0, atol=1e-5)
    assert np.allclose(s, s.T, atol=1e-6)
    row = tiny_bert.similarity(e[0], e.astype(np.float64))
    assert row.shape == (1, 3) and np.allclose(row[0], s[0], atol=1e-6)
    with pytest.raises(ember.InvalidInputError, match="different lengths"):
        tiny_bert.similarity(e, e[:, :8])


def test_same_model_is_loaded_once() -> None:
    a = ember.Embedder(str(tiny_dir("xlm-roberta")))
    b = ember.Embedder(str(tiny_dir("xlm-roberta")))
    assert a.info["bytes"] == b.info["bytes"]
    assert np.array_equal(a.embed(["same"]), b.embed(["same"]))
