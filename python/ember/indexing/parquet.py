"""The Parquet target `parquet:DIR`: one Parquet dataset per model (`DIR/<table>/part-N.parquet`,
columns `doc_id`, `chunk`, `start_char`, `end_char`, `embedding` as fixed-size float32 lists),
and the documents, models and status tables in `DIR/index.db` (SQLite), which also records
which part holds each document's vectors.

Parquet files are immutable, so each embedding batch becomes a new part: written to a `.tmp`
file, recorded in the same SQLite transaction as the batch's status rows, then renamed. Opening
the target finishes or drops parts an interrupted run left; a run's end rewrites parts holding
rows that a later part replaced (changed texts, re-embedded stale rows).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ember._errors import InvalidInputError
from ember.indexing.sources import Doc
from ember.indexing.sqlite import SqliteStore
from ember.indexing.store import ModelTable, StoreError

__all__ = ["ParquetStore"]


class ParquetStore(SqliteStore):
    """Parquet datasets under `root`, with their bookkeeping in `root/index.db`."""

    vectors_in_sqlite = False

    def __init__(self, root: Path, *, lock_timeout: float = 5.0) -> None:
        try:
            import pyarrow  # type: ignore[import-untyped, import-not-found]  # noqa: F401
        except ImportError:
            raise StoreError("Parquet targets need pyarrow: pip install pyarrow") from None
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root / "index.db", lock_timeout=lock_timeout)
        self.root = root
        self.label = f"parquet:{root}"
        self._renames: list[tuple[Path, Path]] = []

    def create_schema(self, conn: Any) -> None:
        super().create_schema(conn)
        conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS parts (
                table_name TEXT NOT NULL,
                part INTEGER NOT NULL,
                rows INTEGER NOT NULL,
                PRIMARY KEY (table_name, part)
            );
            CREATE TABLE IF NOT EXISTS locations (
                doc_id TEXT NOT NULL,
                table_name TEXT NOT NULL,
                part INTEGER NOT NULL,
                PRIMARY KEY (doc_id, table_name)
            );
            """
        )
        conn.commit()
        self._recover(conn)

    def _dir(self, table: str) -> Path:
        return self.root / table

    def _part(self, table: str, part: int) -> Path:
        return self._dir(table) / f"part-{part:06d}.parquet"

    def _recover(self, conn: Any) -> None:
        """Finishes the renames of recorded parts and drops files no transaction recorded."""
        recorded = {(t, p) for t, p in conn.execute("SELECT table_name, part FROM parts")}
        for meta in self.root.glob("*/_ember.json"):
            table = meta.parent.name
            for f in meta.parent.glob("part-*.parquet*"):
                part = int(f.name.split("-")[1].split(".")[0])
                final = self._part(table, part)
                if (table, part) not in recorded:
                    f.unlink()
                elif f.suffix == ".tmp":
                    if final.exists():
                        f.unlink()  # a compaction's rewrite that never got renamed
                    else:
                        f.rename(final)

    def vector_table_dimension(self, conn: Any, table: str) -> int | None:
        meta = self._dir(table) / "_ember.json"
        if not meta.is_file():
            return None
        return int(json.loads(meta.read_text())["dimension"])

    def create_vector_table(self, conn: Any, table: str, dimension: int) -> None:
        self._dir(table).mkdir(exist_ok=True)
        (self._dir(table) / "_ember.json").write_text(json.dumps({"dimension": dimension}))

    def _write(self, path: Path, columns: dict[str, Any], dimension: int) -> None:
        import pyarrow as pa  # type: ignore[import-untyped, import-not-found]
        import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found]

        flat = pa.array(np.ascontiguousarray(columns["embedding"], dtype=np.float32).ravel())
        table = pa.table(
            {
                "doc_id": pa.array(columns["doc_id"], pa.string()),
                "chunk": pa.array(columns["chunk"], pa.int32()),
                "start_char": pa.array(columns["start_char"], pa.int32()),
                "end_char": pa.array(columns["end_char"], pa.int32()),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, dimension),
            }
        )
        pq.write_table(table, path)

    def replace_vectors(
        self,
        conn: Any,
        table: str,
        docs: Sequence[Doc],
        old_chunks: dict[str, int],
        spans: Sequence[list[tuple[int, int]]],
        vectors: np.ndarray,
    ) -> None:
        (last,) = conn.execute(
            "SELECT coalesce(max(part), -1) FROM parts WHERE table_name = ?", (table,)
        ).fetchone()
        part = int(last) + 1
        cols: dict[str, list] = {"doc_id": [], "chunk": [], "start_char": [], "end_char": []}
        for d, doc_spans in zip(docs, spans):
            for c, (start, end) in enumerate(doc_spans):
                cols["doc_id"].append(d.id)
                cols["chunk"].append(c)
                cols["start_char"].append(start)
                cols["end_char"].append(end)
        final = self._part(table, part)
        tmp = final.with_name(final.name + ".tmp")
        self._write(tmp, {**cols, "embedding": vectors}, vectors.shape[1])
        conn.execute(
            "INSERT INTO parts (table_name, part, rows) VALUES (?, ?, ?)",
            (table, part, len(cols["doc_id"])),
        )
        conn.executemany(
            "INSERT INTO locations (doc_id, table_name, part) VALUES (?, ?, ?) "
            "ON CONFLICT (doc_id, table_name) DO UPDATE SET part = excluded.part",
            [(d.id, table, part) for d in docs],
        )
        self._renames.append((tmp, final))

    def committed(self) -> None:
        for tmp, final in self._renames:
            tmp.rename(final)
        self._renames.clear()

    def _current(self, conn: Any, table: str, part: int, doc_ids: Sequence[str]) -> np.ndarray:
        here = {
            d
            for (d,) in conn.execute(
                "SELECT doc_id FROM locations WHERE table_name = ? AND part = ?", (table, part)
            )
        }
        return np.fromiter((d in here for d in doc_ids), dtype=bool, count=len(doc_ids))

    def finish(self, conn: Any, tables: Sequence[ModelTable]) -> None:
        import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found]

        for t in tables:
            for (part,) in conn.execute(
                "SELECT part FROM parts WHERE table_name = ? ORDER BY part", (t.name,)
            ).fetchall():
                path = self._part(t.name, part)
                data = pq.read_table(path)
                keep = self._current(conn, t.name, part, data.column("doc_id").to_pylist())
                if keep.all():
                    continue
                if not keep.any():
                    conn.execute(
                        "DELETE FROM parts WHERE table_name = ? AND part = ?", (t.name, part)
                    )
                    conn.commit()
                    path.unlink()
                    continue
                tmp = path.with_name(path.name + ".tmp")
                pq.write_table(data.filter(keep), tmp)
                conn.execute(
                    "UPDATE parts SET rows = ? WHERE table_name = ? AND part = ?",
                    (int(keep.sum()), t.name, part),
                )
                conn.commit()
                tmp.replace(path)
        super().finish(conn, tables)

    def knn(self, conn: Any, table: str, vector: np.ndarray, k: int) -> list[tuple]:
        """Exact search over the dataset: cosine distance to every current row."""
        import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found]

        q = np.asarray(vector, dtype=np.float64)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        found: list[tuple] = []
        for (part,) in conn.execute(
            "SELECT part FROM parts WHERE table_name = ? ORDER BY part", (table,)
        ).fetchall():
            data = pq.read_table(self._part(table, part))
            ids = data.column("doc_id").to_pylist()
            keep = self._current(conn, table, part, ids)
            emb = data.column("embedding").combine_chunks()
            m = emb.values.to_numpy().reshape(len(emb), -1).astype(np.float64)
            dist = 1.0 - (m @ q) / np.maximum(np.linalg.norm(m, axis=1), 1e-12)
            cols = [data.column(c).to_pylist() for c in ("chunk", "start_char", "end_char")]
            for i in np.flatnonzero(keep):
                found.append((ids[i], cols[0][i], cols[1][i], cols[2][i], float(dist[i])))
        found.sort(key=lambda r: r[4])
        return found[:k]

    def dataset(self, table: str) -> Path:
        """The directory of a model's Parquet dataset."""
        if not self._dir(table).is_dir():
            raise InvalidInputError(f"{self.label} has no dataset {table}")
        return self._dir(table)
