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
    assert repr(tiny_bert) == f'Embedder("{path}", dtype="fp32", dimension=32, max_seq_length=32)'


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


def test_dtype_is_loaded_and_reported() -> None:
    path = str(tiny_dir("bert"))
    fp32 = ember.Embedder(path)
    for name, canonical in (("float16", "fp16"), ("bf16", "bf16"), ("int8", "int8")):
        m = ember.Embedder(path, dtype=name)
        assert m.dtype == canonical and m.spec["dtype"] == canonical
        assert m.info["dtype"] == canonical and m.info["bytes"] < fp32.info["bytes"]
        assert (cosine(m.embed(["hello world"]), fp32.embed(["hello world"])) > 0.99).all()
    assert fp32.spec["dtype"] == "fp32" and fp32.spec["default_dtype"] == "fp32"
    status = {s["id"]: s for s in ember.models()}[path]
    assert {"fp32", "fp16", "bf16", "int8"} <= {i["dtype"] for i in status["instances"]}
    with pytest.raises(ember.InvalidInputError, match="unknown dtype `fp8`"):
        ember.Embedder(path, dtype="fp8")


def test_max_seq_length_caps_tokens(tiny_bert: ember.Embedder) -> None:
    path = str(tiny_dir("bert"))
    short = ember.Embedder(path, max_seq_length=8)
    assert short.max_seq_length == 8 == short.get_max_seq_length()
    long_text = "the quick brown fox jumps over the lazy dog " * 3
    assert short.count_tokens([long_text, "a"]) == [8, tiny_bert.count_tokens(["a"])[0]]
    # Cutting the text to its first 8 tokens gives the same vector.
    tokens = tiny_bert.tokenize(long_text)[1:7]
    assert all(not t.startswith("##") for t in tokens)
    cut = " ".join(tokens)
    assert (rel_l2(short.embed([long_text]), tiny_bert.embed([cut])) < 1e-5).all()
    assert (rel_l2(short.encode([long_text]), tiny_bert.encode([cut])) < 1e-5).all()
    with pytest.raises(ember.InvalidInputError, match=r"input 0 has \d+ tokens.*8"):
        short.embed([long_text], truncate=False)
    for bad in (0, -1, 33):
        with pytest.raises(ember.InvalidInputError, match="max_seq_length"):
            ember.Embedder(path, max_seq_length=bad)


def test_encode_query_and_document_pick_prompts(tmp_path: Path) -> None:
    import json
    import shutil

    model = tmp_path / "prompted"
    shutil.copytree(tiny_dir("bert"), model)
    config = {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}
    (model / "config_sentence_transformers.json").write_text(json.dumps(config))
    m = ember.Embedder(str(model))
    assert m.prompts == {"query": "query: ", "passage": "passage: "}
    texts = ["hello world", "a"]
    assert np.allclose(m.encode_query(texts), m.encode(texts, prompt="query: "), atol=1e-6)
    assert np.allclose(m.encode_document(texts), m.encode(texts, prompt="passage: "), atol=1e-6)
    assert np.allclose(m.encode_query(texts), m.encode(texts, prompt_name="query"), atol=1e-6)
    # An explicit prompt or prompt_name wins.
    assert np.allclose(m.encode_query(texts, prompt=""), m.encode(texts), atol=1e-6)
    assert np.allclose(
        m.encode_document(texts, prompt_name="query"), m.encode_query(texts), atol=1e-6
    )
    # A model without those prompts encodes as `encode` does.
    plain = ember.Embedder(str(tiny_dir("bert")))
    assert np.allclose(plain.encode_query(texts), plain.encode(texts), atol=1e-6)
    assert np.allclose(plain.encode_document(texts), plain.encode(texts), atol=1e-6)


def test_encode_convert_to_numpy_false_gives_a_list(tiny_bert: ember.Embedder) -> None:
    out = tiny_bert.encode(["a", "b"], convert_to_numpy=False)
    assert isinstance(out, list) and len(out) == 2 and out[0].shape == (32,)
    assert tiny_bert.encode("a", convert_to_numpy=False).shape == (32,)


def test_threads_argument() -> None:
    import subprocess
    import sys

    # The pool is process-wide: a fresh interpreter sizes it; a later different value warns.
    script = (
        "import warnings, ember\n"
        f"m = ember.Embedder({str(tiny_dir('bert'))!r}, threads=1)\n"
        "m.embed(['a'])\n"
        f"ember.Embedder({str(tiny_dir('bert'))!r}, threads=1)\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    ember.Embedder({str(tiny_dir('bert'))!r}, threads=2)\n"
        "print(len(w), w[0].category.__name__, w[0].message)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1 UserWarning threads=2 ignored"), out.stdout
    with pytest.raises(ember.InvalidInputError, match="threads"):
        ember.Embedder(str(tiny_dir("bert")), threads=0)
