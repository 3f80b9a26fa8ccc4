"""`ember index` against real services: Postgres with pgvector (HNSW), the shapes of the
applications the issue names (three models into one SQLite file and into Postgres, searched
with `ember search`), `--server URL` through a running Ember server, and Ray Data on a local
two-node cluster."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.parse
import urllib.request
import warnings

import numpy as np
import pytest

import ember
from conftest import cosine, ember_server, tiny_dir
from ember.cli import main
from index_support import (
    connect,
    corpus,
    model_copy,
    perturb_weights,
    vectors,
    write_jsonl,
)

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


def test_postgres_tables_hnsw_and_resume(postgres_url, tmp_path):
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
    postgres_url,
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
    got = vectors(connect(db), "embeddings_all_minilm_l6_v2_384")
    want = minilm.embed([r["text"] for r in rows])
    assert cosine(np.stack([got[(r["id"], 0)] for r in rows]), want).min() > 0.99999
    # The server reports the weights hash in-process Ember computes, so the table records the
    # identity an in-process run records: an in-process run finds nothing to redo.
    (sha,) = connect(db).execute("SELECT weights_sha256 FROM models").fetchone()
    assert sha == minilm.weights_sha256
    again = ember.index(rows, db, [model], progress=None)[0]
    assert (again["embedded"], again["skipped"], again["stale"]) == (0, 20, 0)
    assert ember.search(rows[6]["text"], db, model, k=1)[0]["id"] == "s6"
    with pytest.raises(ember.EmberError, match="cannot reach"):
        ember.index(rows, db, [model], server=url, progress=None)


def chunk_rows(db) -> list[tuple]:
    """The chunks of the tiny BERT's table, in order."""
    query = "SELECT doc_id, chunk, start_char, end_char FROM embeddings_bert_32 ORDER BY 1, 2"
    return connect(db).execute(query).fetchall()


def test_server_mode_chunks_as_an_in_process_run_does(tmp_path):
    # Long texts with accents: the server cuts with the model's tokens, offsets in characters.
    rows = [
        {"id": f"c{i}", "text": f"Ünïcödé café {i} " + " ".join(f"w{j}" for j in range(i * 7))}
        for i in range(12)
    ]
    chunking = {"chunk_tokens": 12, "chunk_overlap": 4}
    local, remote = tmp_path / "local.db", tmp_path / "remote.db"
    ember.index(rows, local, [BERT], progress=None, **chunking)
    with ember_server(tmp_path, **{"EMBER_DEFAULT_MODEL": BERT}) as url:
        summary = ember.index(rows, remote, [BERT], server=url, progress=None, **chunking)[0]
        assert summary["embedded"] == 12
        # A window over the model's limit is refused before any row is written, naming the
        # largest that fits.
        with pytest.raises(ember.InvalidInputError, match="use at most 30"):
            ember.index(
                rows, tmp_path / "x.db", [BERT], server=url, chunk_tokens=500, progress=None
            )
        # Search through the server finds a chunk by its own text, with its offsets.
        _, _, start, end = next(r for r in chunk_rows(local) if r[:2] == ("c9", 1))
        hit = ember.search(rows[9]["text"][start:end], remote, BERT, server=url, k=1)[0]
        assert (hit["id"], hit["chunk"], hit["start"], hit["end"]) == ("c9", 1, start, end)
    want = chunk_rows(local)
    assert chunk_rows(remote) == want
    assert max(c for _, c, _, _ in want) >= 3  # the long texts made several chunks
    got, ref = (
        vectors(connect(remote), "embeddings_bert_32"),
        vectors(connect(local), "embeddings_bert_32"),
    )
    keys = sorted(ref)
    assert sorted(got) == keys
    assert cosine(np.stack([got[k] for k in keys]), np.stack([ref[k] for k in keys])).min() > 0.9999
    # Both runs record the same identity, chunking included: an in-process run redoes nothing.
    query = "SELECT fingerprint, chunk_tokens, chunk_overlap, architecture, pooling FROM models"
    assert connect(remote).execute(query).fetchall() == connect(local).execute(query).fetchall()
    again = ember.index(rows, remote, [BERT], progress=None, **chunking)[0]
    assert (again["embedded"], again["stale"]) == (0, 0)


def test_server_mode_records_a_directory_model_s_identity_as_in_process(tmp_path):
    # A directory has no catalog facts: the server states those its loaded files declare
    # (architecture, last-token pooling, prompts, limit), so both tables record one identity.
    qwen3 = str(tiny_dir("qwen3"))
    rows = corpus(6, prefix="q")
    local, remote = tmp_path / "local.db", tmp_path / "remote.db"
    ember.index(rows, local, [qwen3], input_type="query", progress=None)
    with ember_server(tmp_path, **{"EMBER_DEFAULT_MODEL": BERT, "EMBER_MODELS": qwen3}) as url:
        ember.index(rows, remote, [qwen3], server=url, input_type="query", progress=None)
    fields = (
        "table_name, model_id, weights_sha256, architecture, dimension, dtype, pooling, "
        "normalize, input_type, prompt_name, prompt, max_seq_length, fingerprint"
    )
    query = f"SELECT {fields} FROM models"
    got = connect(remote).execute(query).fetchall()
    assert got == connect(local).execute(query).fetchall()
    assert got[0][3:7] == ("qwen3", 32, "fp32", "last_token")
    assert got[0][9:11] == ("query", ember.Embedder(qwen3).prompts["query"])


def unload(url: str, model: str) -> None:
    """Unloads `model` on the server (its next request loads its files again)."""
    path = "/api/v1/models/" + urllib.parse.quote(model, safe="/")
    with urllib.request.urlopen(urllib.request.Request(url + path, method="DELETE")) as r:
        assert r.status == 200


def test_server_mode_changed_weights_mark_rows_stale_and_reembed_stale_redoes_them(tmp_path):
    model = model_copy("bert", tmp_path / "wbert")
    name = str(model)
    rows = corpus(16, prefix="w")
    db = tmp_path / "w.db"
    env = {"EMBER_DEFAULT_MODEL": BERT, "EMBER_MODELS": name}

    def recorded() -> str:
        return connect(db).execute("SELECT weights_sha256 FROM models").fetchone()[0]

    def file_sha() -> str:  # a single weights file's hash is the file's digest
        return hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()

    first_sha = ember.Embedder(name).weights_sha256
    with ember_server(tmp_path, **env) as url:
        assert ember.index(rows, db, [name], server=url, progress=None)[0]["embedded"] == 16
        assert recorded() == first_sha == file_sha()
        # The running server still holds the old weights: it cannot vouch for the new files.
        perturb_weights(model)
        with pytest.raises(ember.EmberError, match="changed on disk since it loaded them"):
            ember.index(rows, db, [name], server=url, progress=None)
        # Unloaded there, the model is read again from the new files.
        unload(url, name)
        stale = ember.index(rows, db, [name], server=url, progress=None)[0]
        assert (stale["embedded"], stale["stale"]) == (0, 16)
        assert recorded() == file_sha() != first_sha
        redo = ember.index(rows, db, [name], server=url, reembed_stale=True, progress=None)[0]
        assert (redo["embedded"], redo["stale"]) == (16, 0)
    # The vectors are the new weights' (this process keeps the model it loaded: a copy).
    fresh = ember.Embedder(str(shutil.copytree(model, tmp_path / "wbert-new")))
    assert fresh.weights_sha256 == recorded()
    got = vectors(connect(db), "embeddings_wbert_32")
    want = fresh.embed([r["text"] for r in rows])
    assert cosine(np.stack([got[(r["id"], 0)] for r in rows]), want).min() > 0.9999
    # Changed again while no server runs: a restarted server reports the new hash.
    second_sha = recorded()
    perturb_weights(model, delta=0.02)
    with ember_server(tmp_path, **env) as url:
        stale = ember.index(rows, db, [name], server=url, progress=None)[0]
        assert (stale["embedded"], stale["stale"]) == (0, 16)
        assert recorded() == file_sha() != second_sha
        redo = ember.index(rows, db, [name], server=url, reembed_stale=True, progress=None)[0]
        assert (redo["embedded"], redo["stale"]) == (16, 0)


# Ray Data's own deprecation warnings (raised inside ray) are not ours to fix.
RAY_WARNINGS = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning:ray",
    "ignore:The minimum number of concurrent actors:UserWarning",
)


@RAY_WARNINGS
def test_ray_embed_map_batches_equals_in_process(ray_cluster):
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
def test_ray_index_writes_sqlite_and_parquet(ray_cluster, tmp_path):
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


@RAY_WARNINGS
def test_ray_index_chunks_as_the_local_flow_does(ray_cluster, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ember.ray

    rows = [
        {"id": f"k{i}", "text": " ".join(r["text"] for r in corpus(3, seed=20 + i))}
        for i in range(10)
    ] + [{"id": "short", "text": "river stone"}]
    chunking = {"chunk_tokens": 12, "chunk_overlap": 4}
    local, on_ray = tmp_path / "local.db", tmp_path / "ray.db"
    ember.index(rows, local, [BERT], progress=None, **chunking)
    summary = ember.ray.index(rows, on_ray, [BERT], concurrency=2, window=16, **chunking)
    assert (summary[0]["embedded"], summary[0]["failed"]) == (len(rows), 0)

    def chunks(db):
        return (
            connect(db)
            .execute(
                "SELECT doc_id, chunk, start_char, end_char FROM embeddings_bert_32 "
                "ORDER BY doc_id, chunk"
            )
            .fetchall()
        )

    want = chunks(local)
    assert chunks(on_ray) == want
    assert len(want) > 3 * len(rows)  # the long texts were cut
    assert [r for r in want if r[0] == "short"] == [("short", 0, 0, len("river stone"))]
    a, b = (
        vectors(connect(local), "embeddings_bert_32"),
        vectors(connect(on_ray), "embeddings_bert_32"),
    )
    keys = [(d, c) for d, c, _, _ in want]
    assert cosine(np.stack([b[k] for k in keys]), np.stack([a[k] for k in keys])).min() > 0.9999
    # The same identity (chunking included) as the local run, and a re-run does nothing new.
    query = "SELECT fingerprint, chunk_tokens, chunk_overlap FROM models"
    assert connect(on_ray).execute(query).fetchall() == connect(local).execute(query).fetchall()
    again = ember.ray.index(rows, on_ray, [BERT], concurrency=2, window=16, **chunking)
    assert (again[0]["embedded"], again[0]["skipped"]) == (0, len(rows))
