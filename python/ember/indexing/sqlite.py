"""The SQLite target: one file with sqlite-vec's `vec0` virtual tables for the vectors (cosine
distance, k-nearest-neighbour `MATCH`), in WAL mode so the planner reads while the writer writes.

A vector row's rowid is `documents.key * 65536 + chunk`, so a document's vectors are found and
replaced without scanning, and a resumed run gives the same rowids as an uninterrupted one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember._errors import InvalidInputError
from ember.indexing.sources import Doc
from ember.indexing.store import ModelTable, Store, StoreError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SqliteStore", "sqlite_module"]

# Chunks per document the rowid scheme leaves room for.
_CHUNKS = 1 << 16


def sqlite_module() -> Any:
    """A DB-API sqlite module that loads extensions: the standard `sqlite3` when this Python was
    built with extension loading, else `pysqlite3` (pip install pysqlite3-binary)."""
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        import pysqlite3.dbapi2 as pysqlite3  # type: ignore[import-untyped, import-not-found]
    except ImportError:
        raise StoreError(
            "this Python's sqlite3 cannot load extensions, which sqlite-vec needs; "
            "pip install pysqlite3-binary (Ember then uses it)"
        ) from None
    return pysqlite3


class SqliteStore(Store):
    """SQLite with sqlite-vec at `path` (created when missing)."""

    ph = "?"
    #: False for targets that keep only the bookkeeping tables here (Parquet).
    vectors_in_sqlite = True

    def __init__(self, path: Path, *, lock_timeout: float = 5.0) -> None:
        self.path = path
        self.label = str(path)
        self.lock_timeout = lock_timeout
        if self.vectors_in_sqlite:
            self.sqlite = sqlite_module()
        else:
            import sqlite3

            self.sqlite = sqlite3
        self.errors: tuple[type[BaseException], ...] = (self.sqlite.Error,)

    def connect(self) -> Any:
        sqlite_vec = None
        if self.vectors_in_sqlite:
            try:
                import sqlite_vec  # type: ignore[import-untyped, import-not-found, no-redef]
            except ImportError:
                raise StoreError("SQLite targets need sqlite-vec: pip install sqlite-vec") from None
        if not self.path.parent.is_dir():
            raise StoreError(
                f"cannot open {self.path}: directory {self.path.parent} does not exist"
            )
        try:
            conn = self.sqlite.connect(
                str(self.path), timeout=self.lock_timeout, check_same_thread=False
            )
            if sqlite_vec is not None:
                conn.enable_load_extension(True)
                sqlite_vec.load(conn)
                conn.enable_load_extension(False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except self.sqlite.Error as e:
            raise StoreError(f"cannot open SQLite database {self.path}: {e}") from None
        return conn

    def create_schema(self, conn: Any) -> None:
        conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS documents (
                key INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                text TEXT NOT NULL,
                content_hash TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS models (
                table_name TEXT PRIMARY KEY,
                model_id TEXT NOT NULL,
                revision TEXT,
                weights_sha256 TEXT,
                architecture TEXT,
                dimension INTEGER NOT NULL,
                dtype TEXT,
                pooling TEXT,
                normalize INTEGER NOT NULL,
                input_type TEXT,
                prompt_name TEXT,
                prompt TEXT,
                max_seq_length INTEGER,
                chunk_tokens INTEGER,
                chunk_overlap INTEGER,
                fingerprint TEXT NOT NULL,
                source TEXT,
                created_at TEXT,
                updated_at TEXT
            );
            CREATE TABLE IF NOT EXISTS status (
                doc_id TEXT NOT NULL,
                table_name TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'stale')),
                content_hash TEXT NOT NULL,
                fingerprint TEXT,
                chunks INTEGER NOT NULL DEFAULT 0,
                error TEXT,
                PRIMARY KEY (doc_id, table_name)
            );
            CREATE INDEX IF NOT EXISTS status_by_table ON status (table_name, state);
            """
        )
        conn.commit()

    def vector_table_dimension(self, conn: Any, table: str) -> int | None:
        row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = ? AND type = 'table'", (table,)
        ).fetchone()
        if row is None:
            return None
        found = re.search(r"float\[(\d+)\]", row[0] or "")
        if found is None:
            raise InvalidInputError(
                f"{self.path}: table {table} exists but is not a sqlite-vec vector table"
            )
        return int(found.group(1))

    def create_vector_table(self, conn: Any, table: str, dimension: int) -> None:
        conn.execute(
            f"CREATE VIRTUAL TABLE {table} USING vec0(embedding float[{dimension}] "
            "distance_metric=cosine, +doc_id text, +chunk integer, +start_char integer, "
            "+end_char integer)"
        )

    def upsert_documents(self, conn: Any, docs: Sequence[Doc]) -> None:
        conn.executemany(
            "INSERT INTO documents (id, text, content_hash) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET text = excluded.text, "
            "content_hash = excluded.content_hash",
            [(d.id, d.text, d.content_hash) for d in docs],
        )

    def replace_vectors(
        self,
        conn: Any,
        table: str,
        docs: Sequence[Doc],
        old_chunks: dict[str, int],
        spans: Sequence[list[tuple[int, int]]],
        vectors: np.ndarray,
    ) -> None:
        ids = [d.id for d in docs]
        keys: dict[str, int] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ", ".join("?" for _ in part)
            keys.update(conn.execute(f"SELECT id, key FROM documents WHERE id IN ({marks})", part))
        conn.executemany(
            f"DELETE FROM {table} WHERE rowid = ?",
            [(keys[i] * _CHUNKS + c,) for i in ids for c in range(old_chunks.get(i, 0))],
        )
        rows = []
        at = 0
        for d, doc_spans in zip(docs, spans):
            if len(doc_spans) > _CHUNKS:
                raise InvalidInputError(
                    f"document {d.id!r} has {len(doc_spans)} chunks; at most {_CHUNKS} fit"
                )
            for c, (start, end) in enumerate(doc_spans):
                rows.append((keys[d.id] * _CHUNKS + c, vectors[at].tobytes(), d.id, c, start, end))
                at += 1
        conn.executemany(
            f"INSERT INTO {table} (rowid, embedding, doc_id, chunk, start_char, end_char) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def knn(self, conn: Any, table: str, vector: np.ndarray, k: int) -> list[tuple]:
        import numpy as np

        return conn.execute(
            f"SELECT doc_id, chunk, start_char, end_char, distance FROM {table} "
            "WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (np.ascontiguousarray(vector, dtype=np.float32).tobytes(), k),
        ).fetchall()

    def finish(self, conn: Any, tables: Sequence[ModelTable]) -> None:
        # Fold the write-ahead log into the file, so the database is one file when the run ends.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
