"""The newer families from Python against their reference outputs (fixtures/reference/tiny/*):
NomicBERT (both config layouts, Matryoshka by the model card's recipe in `embed`, a plain slice in
`encode(truncate_dim=...)` as sentence-transformers does), static model2vec, T5 + Dense, and
INSTRUCTOR instructions."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from conftest import cosine, tiny_dir, tiny_expected


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    got, want = np.atleast_2d(got), np.atleast_2d(np.asarray(want, dtype=np.float32))
    assert got.shape == want.shape
    zero = (np.abs(got).sum(1) == 0) & (np.abs(want).sum(1) == 0)
    cos = np.where(
        zero, 1.0, cosine(np.where(zero[:, None], 1, got), np.where(zero[:, None], 1, want))
    )
    assert cos.mean() >= 0.99999 and cos.min() >= 0.9999, (cos.mean(), cos.min())


@pytest.mark.parametrize("kind", ["nomic", "nomic-hf", "nomic-prenorm"])
def test_nomic_matches_reference(kind: str) -> None:
    e = tiny_expected(kind)
    m = ember.Embedder(str(tiny_dir(kind)))
    assert_close(m.embed(e["texts"]), e["normalized"])
    # sentence-transformers' encode: the pipeline's own (normalized) output.
    assert_close(m.encode(e["texts"]), e["normalized"])
    if "matryoshka_16" in e:
        # embed(dimensions=...): the model card's recipe (layer norm, cut, normalize).
        assert_close(m.embed(e["texts"], dimensions=16), e["matryoshka_16"])
        # encode(truncate_dim=...): sentence-transformers' plain slice of the normalized output.
        cut = m.encode(e["texts"][1:4], truncate_dim=16)
        assert_close(cut, np.asarray(e["normalized"], dtype=np.float32)[1:4, :16])


@pytest.mark.parametrize("kind", ["potion", "potion-mapped"])
def test_static_models_match_model2vec(kind: str) -> None:
    e = tiny_expected(kind)
    m = ember.Embedder(str(tiny_dir(kind)))
    got = m.encode(e["texts"])
    assert_close(got, e["vectors"])
    if not e["normalize"]:
        want = np.asarray(e["vectors"], dtype=np.float32)
        assert np.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_t5_dense_matches_sentence_transformers() -> None:
    e = tiny_expected("t5-dense")
    m = ember.Embedder(str(tiny_dir("t5-dense")))
    assert m.dimension == 32
    assert_close(m.encode(e["texts"]), e["normalized"])
    assert_close(m.embed(e["texts"], normalize=False), e["raw_dense"])


def test_instructor_instruction_is_left_out_of_pooling() -> None:
    e = tiny_expected("instructor")
    m = ember.Embedder(str(tiny_dir("instructor")))
    for inst in e["instructions"]:
        rows = [r for r in e["rows"] if r["instruction"] == inst]
        texts = [r["text"] for r in rows]
        want = [r["normalized"] for r in rows]
        assert_close(m.encode(texts, instruction=inst), want)
        assert_close(m.embed(texts, instruction=inst), want)


@pytest.mark.parametrize("kind", ["nomic", "t5-dense", "instructor", "potion"])
def test_batch_invariance(kind: str) -> None:
    texts = tiny_expected(kind)["texts"]
    m = ember.Embedder(str(tiny_dir(kind)))
    batch = m.embed(texts)
    for i, t in enumerate(texts):
        alone = m.embed(t)
        if not alone.any():
            assert not batch[i].any()
            continue
        assert cosine(alone, batch[i])[0] > 0.999999, (kind, i)


def test_broken_family_directories_raise_model_load_errors(tmp_path) -> None:
    import shutil

    d = tmp_path / "t5"
    shutil.copytree(tiny_dir("t5-dense"), d)
    cfg = (
        (d / "3_Dense" / "config.json")
        .read_text()
        .replace('"in_features": 40', '"in_features": 33')
    )
    (d / "3_Dense" / "config.json").write_text(cfg)
    with pytest.raises(ember.ModelLoadError, match="3_Dense"):
        ember.Embedder(str(d))
    cfg = (d / "config.json").read_text().replace('"model_type": "t5"', '"model_type": "nope"')
    (d / "config.json").write_text(cfg)
    with pytest.raises(ember.UnsupportedModelError, match=r"supported: .*nomic_bert"):
        ember.Embedder(str(d))
