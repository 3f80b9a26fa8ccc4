"""The rotary families of issue 17 from Python against transformers / sentence-transformers
(fixtures/reference/tiny/*, made by make_frontier.py): Qwen3 (causal, last-token pooling over the
appended <|endoftext|>; bidirectional), Gemma3 (bidirectional, sliding layers, Dense heads),
ModernBERT and Alibaba GTE in both layouts; texts past 1,000 tokens, padding on either side,
batch invariance, the models' prompts and Matryoshka cuts."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from conftest import cosine, tiny_dir, tiny_expected

KINDS = ["qwen3", "qwen3-bidir", "gemma3", "modernbert", "gte", "gte-new"]


def assert_close(got: np.ndarray, want: object) -> None:
    want = np.atleast_2d(np.asarray(want, dtype=np.float32))
    got = np.atleast_2d(got)
    assert got.shape == want.shape
    cos = cosine(got, want)
    assert cos.mean() >= 0.99999 and cos.min() >= 0.9999, (cos.mean(), cos.min())


@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference_with_either_padding(kind: str) -> None:
    e = tiny_expected(kind)
    assert max(e["token_counts"]) == 2048 and any(1000 < n < 2048 for n in e["token_counts"])
    m = ember.Embedder(str(tiny_dir(kind)))
    got = m.embed(e["texts"])
    assert got.dtype == np.float32 and got.flags.c_contiguous
    # The reference ran with the tokenizer padding on the right and on the left.
    assert_close(got, e["normalized_right"])
    assert_close(got, e["normalized_left"])
    # Batch invariance: a few texts alone (the short, the cut and the long ones).
    for i in (1, 6, 19, 21):
        assert cosine(m.embed(e["texts"][i]), got[i])[0] > 0.99999, (kind, i)


@pytest.mark.parametrize(
    ("kind", "name"), [("qwen3", "query"), ("gemma3", "query"), ("gemma3", "document")]
)
def test_prompts_match_sentence_transformers(kind: str, name: str) -> None:
    e = tiny_expected(kind)
    m = ember.Embedder(str(tiny_dir(kind)))
    assert_close(m.embed(e["texts"][:4], prompt_name=name), e["prompted"][name])
    assert_close(m.encode(e["texts"][:4], prompt_name=name), e["prompted"][name])


def test_qwen3_matryoshka_cuts_the_raw_vector_then_normalizes() -> None:
    texts = tiny_expected("qwen3")["texts"][1:5]
    m = ember.Embedder(str(tiny_dir("qwen3")))
    raw = m.embed(texts, normalize=False)
    cut = m.embed(texts, dimensions=8)
    assert cut.shape == (4, 8)
    assert np.allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-5)
    assert cosine(cut, raw[:, :8]).min() > 0.999999


def test_over_the_limit_without_truncation_names_both_numbers() -> None:
    m = ember.Embedder(str(tiny_dir("modernbert")))
    with pytest.raises(ember.InvalidInputError) as err:
        m.embed(["fine", "hello world " * 1500], truncate=False)
    msg = str(err.value)
    assert "input 1" in msg and "2048" in msg, msg


def test_unsupported_qwen3_option_is_named(tmp_path) -> None:
    import json
    import shutil

    d = tmp_path / "qwen3-yarn"
    shutil.copytree(tiny_dir("qwen3"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ember.UnsupportedModelError, match="`yarn`"):
        ember.Embedder(str(d))


def test_the_input_cap_cuts_or_refuses_at_the_cap() -> None:
    path = str(tiny_dir("qwen3"))
    long = "hello world " * 100
    mm = ember.ModelManager(max_input_tokens=64)
    want = ember.Embedder(path, max_seq_length=64).embed([long])
    assert cosine(mm.embed([long], model=path), want).min() > 0.99999
    with pytest.raises(ember.InvalidInputError, match="accepts 64"):
        mm.embed(["fine", long], model=path, truncate=False)
    # The process's own manager keeps the default cap, over the tiny model's 2048.
    assert ember.Embedder(path).max_seq_length == 2048
    with pytest.raises(ember.InvalidInputError, match="max_input_tokens"):
        ember.ModelManager(max_input_tokens=0)
