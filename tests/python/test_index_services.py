"""`ember index` against real services: Postgres with pgvector (HNSW), the shapes of the
applications the issue names (three models into one SQLite file and into Postgres, searched
with `ember search`), `--server URL` through a running Ember server, and Ray Data on a local
two-node cluster."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import ember
from conftest import cosine, ember_server, tiny_dir
from ember.cli import main
from index_support import connect, corpus, vectors, write_jsonl
from services import postgres_url, ray_cluster  # noqa: F401 (session fixtures)

BERT = str(tiny_dir("bert"))
XLMR = str(tiny_dir("xlm-roberta"))
# The applications keep one table per model: a small and a base English model and a
# multilingual one (tiny here; the NomicBERT, potion and T5 fixtures had not landed on main).
THREE = ("all-MiniLM-L6-v2", "all-mpnet-base-v2", XLMR)
TABLES = (
    "embeddings_all_minilm_l6_v2_384",
    "embeddings_all_mpnet_base_v2_768",
    "embeddings_xlm_roberta_32",
)


def pg_vectors(url: str, table: str) -> dict[str, np.ndarray]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT doc_id, embedding::text FROM {table}").fetchall()
    return {d: np.array(json.loads(e), dtype=np.float32) for d, e in rows}


def test_postgres_tables_hnsw_and_resume(postgres_url, tmp_path):  # noqa: F811
    import psycopg

    rows = corpus(40, prefix="p")
    summary = ember.index(rows[:25], postgres_url, [BERT], progress=None)
    assert summary[0]["embedded"] == 25
    summary = ember.index(rows, postgres_url, [BERT], progress=None)
    assert (summary[0]["embedded"], summary[0]["skipped"]) == (15, 25)
    with psycopg.connect(postgres_url) as conn:
        (index_def,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'embeddings_bert_32' "
            "AND indexdef LIKE '%hnsw%'"
        ).fetchone()
        assert "vector_cosine_ops" in index_def
        (sha,) = conn.execute("SELECT weights_sha256 FROM models").fetchone()
        assert sha == ember.Embedder(BERT).weights_sha256
    got = pg_vectors(postgres_url, "embeddings_bert_32")
    want = ember.Embedder(BERT).embed([r["text"] for r in rows])
    assert cosine(np.stack([got[r["id"]] for r in rows]), want).min() > 0.99999
    hit = ember.search(rows[11]["text"], postgres_url, BERT, k=1)[0]
    assert hit["id"] == "p11" and hit["score"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_applications_shapes_three_models_sqlite_and_postgres(
    postgres_url,  # noqa: F811
    tmp_path,
    capsys,
):
    rows = corpus(40, prefix="b", seed=7)
    src = write_jsonl(tmp_path / "movies.jsonl", rows)
    for target in (str(tmp_path / "movies.db"), postgres_url):
        argv = ["index", str(src), "--db", target, "--quiet"]
        for m in THREE:
            argv += ["-m", m]
        assert main(argv) == 0
        for model in THREE:
            assert (
                main(["search", rows[17]["text"], "--db", target, "-m", model, "-k", "3", "--json"])
                == 0
            )
            hits = json.loads(capsys.readouterr().out)
            assert hits[0]["id"] == "b17", (target, model, hits)
            assert hits[0]["text"] == rows[17]["text"]
        if target.endswith(".db"):
            conn = connect(tmp_path / "movies.db")
            have = sorted(t for (t,) in conn.execute("SELECT table_name FROM models"))
            assert have == sorted(TABLES)
            for model, table in zip(THREE, TABLES):
                got = vectors(conn, table)
                want = ember.Embedder(model).embed([r["text"] for r in rows[:8]])
                assert cosine(np.stack([got[(r["id"], 0)] for r in rows[:8]]), want).min() > 0.9999


def test_server_mode_gives_in_process_vectors(tmp_path, minilm):
    rows = corpus(20, prefix="s")
    db = tmp_path / "server.db"
    model = "all-MiniLM-L6-v2"
    with ember_server(tmp_path) as url:
        summary = ember.index(rows, db, [model], server=url, progress=None)
        assert summary[0]["embedded"] == 20
        hits = ember.search(rows[5]["text"], db, model, server=url, k=1)
        assert hits[0]["id"] == "s5"
        with pytest.raises(ember.InvalidInputError, match="--server"):
            ember.index(rows, db, [model], server=url, chunk_tokens=8, progress=None)
    got = vectors(connect(db), "embeddings_all_minilm_l6_v2_384")
    want = minilm.embed([r["text"] for r in rows])
    assert cosine(np.stack([got[(r["id"], 0)] for r in rows]), want).min() > 0.99999
    # In-process search of the same table: the identities agree (the server reports no
    # weights hash, so that one field is not compared).
    assert ember.search(rows[6]["text"], db, model, k=1)[0]["id"] == "s6"
    with pytest.raises(ember.EmberError, match="cannot reach"):
        ember.index(rows, db, [model], server=url, progress=None)


# Ray Data's own deprecation warnings (raised inside ray) are not ours to fix.
RAY_WARNINGS = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning:ray",
    "ignore:The minimum number of concurrent actors:UserWarning",
)


@RAY_WARNINGS
def test_ray_embed_map_batches_equals_in_process(ray_cluster):  # noqa: F811
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyarrow as pa
        import ray

        import ember.ray

    rows = corpus(64, prefix="r")
    want = ember.Embedder(BERT).embed([r["text"] for r in rows])
    table = pa.Table.from_pylist(rows)
    # The class declares its dimension in the Arrow type it adds.
    local = ember.ray.Embed(BERT)(table.slice(0, 4))
    assert local.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    assert ember.ray.Embed(BERT).dimension == 32
    ds = ray.data.from_arrow([table.slice(i, 16) for i in range(0, len(rows), 16)])
    for fmt in ("pyarrow", "numpy", "pandas"):
        out = ds.map_batches(
            ember.ray.Embed,
            fn_constructor_kwargs={"model": BERT, "threads": 1},
            concurrency=2,
            num_cpus=1,
            batch_size=16,
            batch_format=fmt,
        )
        by_id = {}
        for batch in out.iter_batches(batch_format="numpy"):
            by_id.update(zip(batch["id"], ember.ray.matrix(batch["embedding"])))
        got = np.stack([by_id[r["id"]] for r in rows])
        assert got.shape == (64, 32)
        assert cosine(got, want).min() > 0.99999, fmt
    # Two actors on two nodes did the work.
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    assert ember.ray.dimension("all-MiniLM-L6-v2") == 384


@RAY_WARNINGS
def test_ray_index_writes_sqlite_and_parquet(ray_cluster, tmp_path):  # noqa: F811
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ember.ray

    rows = corpus(50, prefix="q")
    for target in (str(tmp_path / "ray.db"), f"parquet:{tmp_path / 'ray-pq'}"):
        summary = ember.ray.index(rows, target, [BERT], concurrency=2, window=16)
        assert summary[0]["embedded"] == 50
        again = ember.ray.index(rows, target, [BERT], concurrency=2, window=16)
        assert (again[0]["embedded"], again[0]["skipped"]) == (0, 50)
        hit = ember.search(rows[9]["text"], target, BERT, k=1)[0]
        assert hit["id"] == "q9" and hit["score"] == pytest.approx(1.0, abs=1e-4)
    got = vectors(connect(tmp_path / "ray.db"), "embeddings_bert_32")
    want = ember.Embedder(BERT).embed([r["text"] for r in rows])
    assert cosine(np.stack([got[(r["id"], 0)] for r in rows]), want).min() > 0.99999
