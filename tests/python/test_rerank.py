"""`ember.Reranker`, `Embedder.encode_sparse`, `encode(output_value="token_embeddings")`,
`ModelManager.rerank` and `ember rerank` against sentence-transformers' outputs for the same tiny
seeded models (`fixtures/reference/make_heads.py`)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import ember
from conftest import cosine, load_json, tiny_dir


def expected(kind: str) -> dict:
    return load_json(tiny_dir(kind) / "expected.json")


@pytest.mark.parametrize(
    "kind",
    ["cross-bert", "cross-xlm-roberta", "cross-modernbert", "cross-gte", "cross-gte-new"],
)
def test_reranker_matches_cross_encoder(kind: str) -> None:
    ref = expected(kind)
    r = ember.Reranker(str(tiny_dir(kind)))
    assert (r.num_labels, r.labels, r.activation) == (1, ["LABEL_0"], "sigmoid")
    pairs = [(ref["query"], d) for d in ref["documents"]]
    raw = r.predict(pairs, raw_scores=True)
    assert raw.dtype == np.float32 and raw.shape == (len(pairs),)
    np.testing.assert_allclose(raw, ref["raw"], atol=1e-4)
    np.testing.assert_allclose(r.predict(pairs), ref["activated"], atol=1e-4)
    # One pair gives one float, as CrossEncoder.predict does.
    one = r.predict(list(pairs[0]))
    assert isinstance(one, float) and abs(one - ref["activated"][0]) < 1e-4
    ranked = r.rank(ref["query"], ref["documents"], return_documents=True)
    assert [d["corpus_id"] for d in ranked] == [d["index"] for d in ref["rank"]]
    for got, want in zip(ranked, ref["rank"]):
        assert abs(got["score"] - want["score"]) < 1e-4
        assert got["text"] == ref["documents"][got["corpus_id"]]
    assert len(r.rank(ref["query"], ref["documents"], top_k=2)) == 2


def test_three_labels_predict_rows_and_softmax() -> None:
    ref = expected("cross-bert-nli")
    r = ember.Reranker(str(tiny_dir("cross-bert-nli")))
    assert r.num_labels == 3 and r.activation == "identity"
    scores = r.predict(ref["pairs"])
    assert scores.shape == (3, 3)
    np.testing.assert_allclose(scores, ref["activated"], atol=1e-4)
    singles = r.predict([[t] for t in ref["singles"]], apply_softmax=True)
    np.testing.assert_allclose(singles, ref["singles_softmax"], atol=1e-4)
    with pytest.raises(ember.InvalidInputError, match="3 labels"):
        r.rank("q", ["d"])


def test_kinds_refuse_each_other() -> None:
    with pytest.raises(ember.InvalidInputError, match="is an embedder"):
        ember.Reranker(str(tiny_dir("bert")))
    e = ember.Embedder(str(tiny_dir("cross-bert")))
    with pytest.raises(ember.InvalidInputError, match="is a reranker"):
        e.embed(["x"])
    with pytest.raises(ember.InvalidInputError, match="sparse encoder"):
        e.encode_sparse(["x"])


def test_bad_pairs_name_the_input() -> None:
    r = ember.Reranker(str(tiny_dir("cross-bert")))
    with pytest.raises(ember.InvalidInputError, match=r"inputs\[1\]"):
        r.predict([("q", "d"), ("a", "b", "c")])
    with pytest.raises(ember.InvalidInputError, match="input 1"):
        r.rank("q", ["short", "word " * 60], truncate=False)


def sparse_rows(rows: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(r["indices"]), np.asarray(r["values"])) for r in rows]


def assert_sparse_close(got: list, want: list) -> None:
    assert len(got) == len(want)
    for (gi, gv), (wi, wv) in zip(got, want):
        assert gi.dtype == np.int64 and gv.dtype == np.float32
        g = dict(zip(gi.tolist(), gv.tolist()))
        for i, v in zip(wi.tolist(), wv.tolist()):
            assert abs(g.get(i, 0.0) - v) <= 1e-4, (i, g.get(i), v)
        big = {i for i, v in g.items() if abs(v) > 1e-5}
        assert big <= set(wi.tolist())


def test_encode_sparse_matches_sparse_encoder() -> None:
    ref = expected("splade-bert")
    m = ember.Embedder(str(tiny_dir("splade-bert")))
    got = m.encode_sparse(ref["texts"])
    assert_sparse_close(got, sparse_rows(ref["vectors"]))
    top = m.encode_sparse(ref["texts"][:3], top_k=3)
    assert_sparse_close(top, sparse_rows(ref["top_3"]))
    single = m.encode_sparse(ref["texts"][0])
    assert isinstance(single, tuple) and len(single) == 2
    # csr: what scipy.sparse.csr_matrix takes, the same numbers.
    (data, indices, indptr), shape = m.encode_sparse(ref["texts"], csr=True)
    assert shape == (len(ref["texts"]), m.dimension) and indptr[-1] == len(data)
    for row, (gi, gv) in enumerate(got):
        np.testing.assert_array_equal(indices[indptr[row] : indptr[row + 1]], gi)
        np.testing.assert_array_equal(data[indptr[row] : indptr[row + 1]], gv)


def test_too_long_inputs_are_named_by_their_index_in_the_call() -> None:
    # A call runs in GIL-free chunks (8 batches of pairs; 256 texts for sparse vectors): the
    # error still names the caller's index, not the chunk's.
    long = "word " * 2000
    r = ember.Reranker(str(tiny_dir("cross-bert")))
    pairs = [("q", "short")] * 11 + [("q", long)]
    with pytest.raises(ember.InvalidInputError, match=r"input 11 has \d+ tokens"):
        r.predict(pairs, batch_size=1, truncate=False)
    m = ember.Embedder(str(tiny_dir("splade-bert")))
    with pytest.raises(ember.InvalidInputError, match=r"input 300 has \d+ tokens"):
        m.encode_sparse(["short"] * 300 + [long], truncate=False)


def test_inference_free_queries_take_the_static_route() -> None:
    ref = expected("splade-distilbert-if")
    m = ember.Embedder(str(tiny_dir("splade-distilbert-if")))
    assert_sparse_close(m.encode_sparse(ref["texts"]), sparse_rows(ref["documents"]))
    queries = m.encode_sparse(ref["texts"], input_type="query")
    assert_sparse_close(queries, sparse_rows(ref["queries"]))


def test_token_embeddings_match_sentence_transformers() -> None:
    ref = load_json(tiny_dir("bert") / "token_embeddings.json")
    m = ember.Embedder(str(tiny_dir("bert")))
    got = m.encode(ref["texts"], output_value="token_embeddings")
    assert len(got) == len(ref["texts"])
    for g, w in zip(got, ref["token_embeddings"]):
        w = np.asarray(w)
        assert g.dtype == np.float32 and g.shape == w.shape
        assert cosine(g, w).min() >= 0.9999
    one = m.encode(ref["texts"][1], output_value="token_embeddings")
    assert one.shape == np.asarray(ref["token_embeddings"][1]).shape
    with pytest.raises(ember.InvalidInputError, match="output_value"):
        m.encode(["x"], output_value="nope")


def test_manager_reranks_beside_embedders() -> None:
    ref = expected("cross-bert")
    mm = ember.ModelManager(max_models=2)
    ranked = mm.rerank(ref["query"], ref["documents"], model=str(tiny_dir("cross-bert")))
    assert [d["corpus_id"] for d in ranked] == [d["index"] for d in ref["rank"]]
    assert mm.embed(["x"], model=str(tiny_dir("bert"))).shape == (1, 32)
    kinds = {s["id"]: s["kind"] for s in mm.status() if s["loaded"]}
    assert sorted(kinds.values()) == ["embedder", "reranker"]
    with pytest.raises(ember.InvalidInputError, match="is an embedder"):
        mm.rerank("q", ["d"], model=str(tiny_dir("bert")))
    with pytest.raises(ember.InvalidInputError, match="is a reranker"):
        mm.embed(["x"], model=str(tiny_dir("cross-bert")))


def test_catalog_lists_kinds() -> None:
    kinds = {m["id"]: m["kind"] for m in ember.models()}
    assert kinds["ms-marco-MiniLM-L6-v2"] == "reranker"
    assert kinds["bge-reranker-v2-m3"] == "reranker"
    assert kinds["gte-multilingual-reranker-base"] == "reranker"
    assert kinds["gte-reranker-modernbert-base"] == "reranker"
    assert kinds["splade-cocondenser-ensembledistil"] == "sparse"
    assert kinds["all-MiniLM-L6-v2"] == "embedder"


def test_cli_rerank_prints_the_ranking() -> None:
    ref = expected("cross-bert")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ember",
            "rerank",
            ref["query"],
            *ref["documents"][:4],
            "--json",
            "--model",
            str(tiny_dir("cross-bert")),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(out.stdout)
    want = [d for d in ref["rank"] if d["index"] < 4]
    assert [r["index"] for r in rows] == [d["index"] for d in want]
    assert all(abs(r["score"] - d["score"]) < 1e-4 for r, d in zip(rows, want))
    assert rows[0]["text"] == ref["documents"][rows[0]["index"]]
    text = subprocess.run(
        [
            sys.executable,
            "-m",
            "ember",
            "rerank",
            "q",
            "a",
            "b",
            "--top-k",
            "1",
            "--model",
            str(tiny_dir("cross-bert")),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert text.count("\n") == 1 and text.startswith("1\t")
    bad = subprocess.run(
        [sys.executable, "-m", "ember", "rerank", "q", "a", "--model", str(tiny_dir("bert"))],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "is an embedder" in bad.stderr
