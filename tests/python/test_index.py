"""`ember.index` and `ember.search` on SQLite (sqlite-vec) and Parquet with the tiny seeded
models: tables and identity, vectors equal to `Embedder.embed`, re-runs, backfill, changed
texts, changed weights, chunking, every input kind, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ember
from conftest import REPO, cosine, tiny_dir
from index_support import (
    bench_corpus,
    connect,
    corpus,
    model_copy,
    perturb_weights,
    snapshot,
    vectors,
    write_jsonl,
)

BERT = str(tiny_dir("bert"))
MPNET = str(tiny_dir("mpnet"))


def run(rows, db, models, **kw):
    return ember.index(rows, db, models, progress=None, **kw)


def by_table(summary):
    return {r["table"]: r for r in summary}


def test_tables_identity_and_vectors_equal_embed(tmp_path):
    rows = corpus(40)
    db = tmp_path / "index.db"
    summary = run(write_jsonl(tmp_path / "c.jsonl", rows), db, [BERT, MPNET])
    assert [(r["table"], r["embedded"], r["skipped"], r["failed"]) for r in summary] == [
        ("embeddings_bert_32", 40, 0, 0),
        ("embeddings_mpnet_32", 40, 0, 0),
    ]
    conn = connect(db)
    ident = ember.Embedder(BERT).identity(input_type="document")
    (model_id, sha, dim, dtype, pooling, normalize, prompt) = conn.execute(
        "SELECT model_id, weights_sha256, dimension, dtype, pooling, normalize, prompt FROM models "
        "WHERE table_name = 'embeddings_bert_32'"
    ).fetchone()
    assert (model_id, sha, dim, dtype, pooling, bool(normalize), prompt) == (
        BERT,
        ident["weights_sha256"],
        32,
        "fp32",
        ident["pooling"],
        True,
        None,
    )
    assert len(sha) == 64
    assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 40
    states = conn.execute("SELECT table_name, state, count(*) FROM status GROUP BY 1, 2").fetchall()
    assert sorted(states) == [
        ("embeddings_bert_32", "done", 40),
        ("embeddings_mpnet_32", "done", 40),
    ]
    for model, table in ((BERT, "embeddings_bert_32"), (MPNET, "embeddings_mpnet_32")):
        stored = vectors(conn, table)
        want = ember.Embedder(model).embed([r["text"] for r in rows])
        got = np.stack([stored[(r["id"], 0)] for r in rows])
        assert cosine(got, want).min() > 0.99999


def test_search_finds_the_document_and_prints_json(tmp_path, capsys):
    rows = corpus(30)
    db = tmp_path / "s.db"
    run(rows, db, BERT)
    hits = ember.search(rows[7]["text"], db, BERT, k=3)
    assert hits[0]["id"] == "d7" and hits[0]["text"] == rows[7]["text"]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    from ember.cli import main

    assert main(["search", rows[3]["text"], "--db", str(db), "-m", BERT, "-k", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [set(h) for h in out] == [{"id", "score", "text"}] * 2 and out[0]["id"] == "d3"


def test_rerun_backfill_and_changed_text(tmp_path):
    rows = corpus(30)
    db = tmp_path / "r.db"
    run(rows, db, BERT)
    before = snapshot(db)
    again = by_table(run(rows, db, BERT))["embeddings_bert_32"]
    assert (again["embedded"], again["skipped"]) == (0, 30)
    after = snapshot(db)
    assert after["status"] == before["status"] and after["documents"] == before["documents"]

    # A second model backfills only itself.
    both = by_table(run(rows, db, [BERT, MPNET]))
    assert (both["embeddings_bert_32"]["embedded"], both["embeddings_mpnet_32"]["embedded"]) == (
        0,
        30,
    )

    # A changed text is re-embedded for every model, and only it.
    rows[4] = {"id": "d4", "text": "a completely different text about the ocean"}
    changed = by_table(run(rows, db, [BERT, MPNET]))
    assert [changed[t]["embedded"] for t in sorted(changed)] == [1, 1]
    conn = connect(db)
    for model, table in ((BERT, "embeddings_bert_32"), (MPNET, "embeddings_mpnet_32")):
        got = vectors(conn, table)
        assert len(got) == 30
        want = ember.Embedder(model).embed(rows[4]["text"])
        assert cosine(got[("d4", 0)], want)[0] > 0.99999
    assert (
        conn.execute("SELECT text FROM documents WHERE id = 'd4'").fetchone()[0] == rows[4]["text"]
    )


def test_changed_weights_mark_rows_stale_and_reembed_stale_redoes_them(tmp_path):
    # Each step in its own process: a process keeps the weights it loaded.

    model = model_copy("bert", tmp_path / "wbert")
    rows = corpus(20)
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    db = tmp_path / "w.db"

    def index(*extra: str) -> dict:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "ember",
                "index",
                str(src),
                "--db",
                str(db),
                "-m",
                str(model),
                *extra,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["models"][0]

    assert index()["embedded"] == 20
    old_sha = connect(db).execute("SELECT weights_sha256 FROM models").fetchone()[0]
    perturb_weights(model)
    first = index()
    assert (first["embedded"], first["stale"]) == (0, 20)
    conn = connect(db)
    assert conn.execute("SELECT count(*) FROM status WHERE state = 'stale'").fetchone()[0] == 20
    new_sha = conn.execute("SELECT weights_sha256 FROM models").fetchone()[0]
    assert new_sha != old_sha
    # Searching a table of stale rows is refused.
    out = subprocess.run(
        [sys.executable, "-m", "ember", "search", "river", "--db", str(db), "-m", str(model)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1 and "--reembed-stale" in out.stderr, out.stderr
    redo = index("--reembed-stale")
    assert (redo["embedded"], redo["stale"]) == (20, 0)
    conn = connect(db)
    assert conn.execute("SELECT count(*) FROM status WHERE state = 'done'").fetchone()[0] == 20


def test_chunking_keeps_source_ids_and_offsets(tmp_path):
    m = ember.Embedder(BERT)
    long = " ".join(r["text"] for r in corpus(4, seed=3))
    rows = [{"id": "long", "text": long}, {"id": "short", "text": "river stone"}]
    db = tmp_path / "c.db"
    run(rows, db, BERT, chunk_tokens=12, chunk_overlap=4)
    conn = connect(db)
    got = conn.execute(
        "SELECT doc_id, chunk, start_char, end_char FROM embeddings_bert_32 ORDER BY rowid"
    ).fetchall()
    chunks = m.chunk(long, 12, 4, input_type="document")
    assert len(chunks) > 2
    assert [(d, c, s, e) for d, c, s, e in got if d == "long"] == [
        ("long", i, s, e) for i, (s, e, _) in enumerate(chunks)
    ]
    assert [r for r in got if r[0] == "short"] == [("short", 0, 0, len("river stone"))]
    stored = vectors(conn, "embeddings_bert_32")
    want = m.embed([long[s:e] for s, e, _ in chunks])
    assert cosine(np.stack([stored[("long", i)] for i in range(len(chunks))]), want).min() > 0.99999
    query = long[chunks[1][0] : chunks[1][1]]
    hit = ember.search(query, db, BERT, k=1)[0]
    assert (hit["id"], hit["text"], long[hit["start"] : hit["end"]]) == ("long", query, query)
    assert hit["score"] == pytest.approx(1.0, abs=1e-4)
    # Windows that do not fit the model are refused, naming the largest that does.
    with pytest.raises(ember.InvalidInputError, match="use at most"):
        run(rows, tmp_path / "x.db", BERT, chunk_tokens=5000)


def test_chunk_offsets_are_python_string_offsets():
    m = ember.Embedder(BERT)
    text = "héllo wörld 日本 " * 6
    chunks = m.chunk(text, 5, 1)
    assert len(chunks) > 1
    for start, end, tokens in chunks:
        assert 0 <= start < end <= len(text) and 1 <= tokens <= 5
        assert text[start:end].strip() == text[start:end]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "dataframe", "arrow", "dicts"])
def test_every_input_kind(tmp_path, kind):
    rows = corpus(12)
    path = tmp_path / f"in.{kind}"
    if kind == "jsonl":
        source = write_jsonl(path, rows)
    elif kind == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
        source = path
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
        source = path
    elif kind == "dataframe":
        source = pd.DataFrame(rows)
    elif kind == "arrow":
        source = pa.Table.from_pylist(rows)
    else:
        source = iter(rows)
    summary = run(source, tmp_path / "k.db", BERT)
    assert summary[0]["embedded"] == 12
    texts = connect(tmp_path / "k.db").execute("SELECT id, text FROM documents").fetchall()
    assert sorted(texts) == sorted((r["id"], r["text"]) for r in rows)


def test_parquet_target_one_dataset_per_model(tmp_path):
    rows = corpus(25)
    target = f"parquet:{tmp_path / 'pq'}"
    run(rows, target, [BERT, MPNET])
    rows[2] = {"id": "d2", "text": "changed text about coffee"}
    run(rows, target, [BERT, MPNET])
    for model, table in ((BERT, "embeddings_bert_32"), (MPNET, "embeddings_mpnet_32")):
        data = pq.read_table(tmp_path / "pq" / table)
        assert data.num_rows == 25  # the superseded row of d2 was compacted away
        assert data.schema.field("embedding").type == pa.list_(pa.float32(), 32)
        got = dict(zip(data.column("doc_id").to_pylist(), data.column("embedding").to_pylist()))
        want = ember.Embedder(model).embed([r["text"] for r in rows])
        assert cosine(np.array([got[r["id"]] for r in rows]), want).min() > 0.99999
    assert ember.search("changed text about coffee", target, BERT, k=1)[0]["id"] == "d2"


def test_search_refuses_another_models_table(tmp_path):
    db = tmp_path / "m.db"
    run(corpus(10), db, BERT)
    with pytest.raises(ember.InvalidInputError) as e:
        ember.search("river", db, MPNET, table="embeddings_bert_32")
    assert BERT in str(e.value) and MPNET in str(e.value)
    with pytest.raises(ember.InvalidInputError, match="no vector table for model"):
        ember.search("river", db, MPNET)
    with pytest.raises(ember.InvalidInputError) as e:
        ember.search("river", db, BERT, normalize=False)
    assert "not normalized" in str(e.value) and "normalized" in str(e.value)


def test_a_table_name_held_by_another_dimension_is_refused(tmp_path, minilm):
    # One id registered for two models of different dimensions, in two processes' lifetimes.
    db = tmp_path / "dim.db"
    ember.register_model("index-test-model", minilm.info["path"])
    run(corpus(5), db, "index-test-model")
    conn = connect(db)
    conn.execute("UPDATE models SET dimension = 768")  # as if it had been a 768-d model
    conn.commit()
    with pytest.raises(ember.InvalidInputError) as e:
        run(corpus(5), db, "index-test-model")
    assert "768-d" in str(e.value) and "384-d" in str(e.value)


def test_bad_input_errors_name_the_row(tmp_path):
    db = tmp_path / "bad.db"
    with pytest.raises(ember.InvalidInputError) as e:
        run([{"doc": "a", "text": "x"}], db, BERT)
    assert "'id'" in str(e.value) and "'doc', 'text'" in str(e.value)
    with pytest.raises(
        ember.InvalidInputError, match=r"duplicate id 'd1' at item 3 \(first at item 2\)"
    ):
        run(
            [{"id": "d0", "text": "a"}, {"id": "d1", "text": "b"}, {"id": "d1", "text": "c"}],
            db,
            BERT,
        )
    last = run(
        [{"id": "e0", "text": "a"}, {"id": "e1", "text": "b"}, {"id": "e1", "text": "c"}],
        tmp_path / "last.db",
        BERT,
        on_duplicate="last",
    )
    assert last[0]["failed"] == 0
    text = connect(tmp_path / "last.db").execute("SELECT text FROM documents WHERE id='e1'")
    assert text.fetchone()[0] == "c"

    # An empty line and a non-UTF-8 line name their line numbers; rows before them are kept,
    # so the run resumes once the line is fixed.
    path = tmp_path / "broken.jsonl"
    good = corpus(300)
    lines = [json.dumps(r).encode() for r in good]
    lines.insert(290, b"")
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ember.InvalidInputError, match="line 291 is empty"):
        run(path, db, BERT)
    conn = connect(db)
    kept = conn.execute("SELECT count(*) FROM status WHERE state = 'done'").fetchone()[0]
    assert kept >= 256  # the first window (8 batches of 32) was written before the bad line
    lines[290] = b'{"id": "x", "text": "caf\xe9"}'
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ember.InvalidInputError, match="line 291 is not valid UTF-8"):
        run(path, db, BERT)
    del lines[290]
    path.write_bytes(b"\n".join(lines) + b"\n")
    resumed = run(path, db, BERT)[0]
    assert resumed["skipped"] >= 256 and resumed["embedded"] + resumed["skipped"] == 300


def test_locked_or_unreachable_database_is_a_clear_error(tmp_path):
    db = tmp_path / "locked.db"
    run(corpus(3), db, BERT)
    holder = connect(db)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ember.StoreError, match="locked"):
            run(corpus(6, prefix="n"), db, BERT, lock_timeout=0.2)
    finally:
        holder.rollback()
    conn = connect(db)
    assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 3  # no partial rows
    with pytest.raises(ember.StoreError, match="does not exist"):
        run(corpus(3), tmp_path / "no" / "such.db", BERT)
    with pytest.raises(ember.StoreError, match="cannot connect to Postgres"):
        run(corpus(3), "postgresql://nobody@127.0.0.1:1/none", BERT, lock_timeout=1)
    with pytest.raises(ember.InvalidInputError, match="use a SQLite file"):
        run(corpus(3), tmp_path / "x.txt", BERT)


@pytest.mark.slow
def test_readme_index_example_runs(tmp_path, minilm):
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- readme-example: index -->\s*```\w*\n(.*?)```", readme, re.S)
    assert block, "README has no index example"
    rows = bench_corpus(40)
    rows[17] = {"id": "heist", "text": "A crew of thieves plans a bank heist that goes wrong."}
    write_jsonl(tmp_path / "corpus.jsonl", rows)
    out = subprocess.run(
        ["bash", "-ec", block.group(1)],
        cwd=tmp_path,
        # The `ember` script installed next to this interpreter.
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    summary, hits = (json.loads(line) for line in out.stdout.splitlines())
    assert [m["embedded"] for m in summary["models"]] == [40, 40]
    assert hits[0]["id"] == "heist" and len(hits) == 3
