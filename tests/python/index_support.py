"""Helpers of the indexing tests: small corpora, table snapshots for comparing two runs, and a
copy of a tiny model whose weights a test may change."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

from conftest import REPO, tiny_dir
from ember.indexing.sqlite import sqlite_module

BENCH_CORPUS = REPO / "benches" / "data" / "corpus.jsonl"

WORDS = (
    "river stone market cloud engine garden winter letter silver forest number window "
    "doctor island music paper summer bridge orange planet coffee theory motion ocean"
).split()


def corpus(n: int, *, seed: int = 0, prefix: str = "d") -> list[dict[str, str]]:
    """`n` documents of 3-40 words with ids `<prefix>0`, `<prefix>1`, ..."""
    rng = np.random.default_rng(seed)
    return [
        {"id": f"{prefix}{i}", "text": " ".join(rng.choice(WORDS, size=int(rng.integers(3, 40))))}
        for i in range(n)
    ]


def bench_corpus(n: int) -> list[dict[str, str]]:
    """The first `n` texts of the benchmark corpus, with ids."""
    rows = []
    with BENCH_CORPUS.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= n:
                break
            rows.append({"id": f"b{i}", "text": json.loads(line)["text"]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def connect(db: Path) -> Any:
    """A plain connection to an index file with sqlite-vec loaded."""
    import sqlite_vec  # type: ignore[import-not-found]

    conn = sqlite_module().connect(str(db))
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    return conn


def vectors(conn: Any, table: str) -> dict[tuple[str, int], np.ndarray]:
    """A SQLite vector table's rows: (doc id, chunk) -> vector."""
    rows = conn.execute(f"SELECT doc_id, chunk, embedding FROM {table}").fetchall()
    return {(d, c): np.frombuffer(e, dtype=np.float32) for d, c, e in rows}


def snapshot(db: Path) -> dict[str, Any]:
    """Everything of a SQLite index except timestamps: documents, models, status, and each
    vector table's rows (rowid, doc, chunk, offsets) and vectors."""
    conn = connect(db)
    try:
        out: dict[str, Any] = {
            "documents": conn.execute("SELECT * FROM documents ORDER BY key").fetchall(),
            "status": conn.execute("SELECT * FROM status ORDER BY table_name, doc_id").fetchall(),
            "models": conn.execute(
                "SELECT table_name, model_id, weights_sha256, dimension, dtype, fingerprint "
                "FROM models ORDER BY table_name"
            ).fetchall(),
        }
        for (table,) in conn.execute("SELECT table_name FROM models"):
            rows = conn.execute(
                f"SELECT rowid, doc_id, chunk, start_char, end_char, embedding FROM {table} "
                "ORDER BY rowid"
            ).fetchall()
            out[table] = [r[:5] for r in rows]
            out[table + ":vectors"] = np.stack([np.frombuffer(r[5], np.float32) for r in rows])
        return out
    finally:
        conn.close()


def assert_same_index(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two snapshots hold the same rows, and vectors equal up to float rounding."""
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith(":vectors"):
            assert a[key].shape == b[key].shape, key
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-5, err_msg=key)
        else:
            assert a[key] == b[key], key


def model_copy(kind: str, dest: Path) -> Path:
    """A copy of a tiny model directory whose weights `perturb_weights` can change."""
    shutil.copytree(tiny_dir(kind), dest)
    return dest


def perturb_weights(model_dir: Path, delta: float = 0.01) -> None:
    """Adds `delta` to the first float32 tensor of the model's safetensors file in place (a
    valid file with other weights, so another weights hash)."""
    path = model_dir / "model.safetensors"
    data = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    _, meta = next(
        (k, v) for k, v in sorted(header.items()) if k != "__metadata__" and v["dtype"] == "F32"
    )
    start, end = (8 + header_len + o for o in meta["data_offsets"])
    tensor = np.frombuffer(bytes(data[start:end]), dtype=np.float32) + np.float32(delta)
    data[start:end] = tensor.astype(np.float32).tobytes()
    path.write_bytes(bytes(data))
