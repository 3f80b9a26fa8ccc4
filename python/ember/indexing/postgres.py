"""The Postgres target: pgvector's `vector(dim)` columns, rows written with `COPY`, and an HNSW
index (`vector_cosine_ops`) per vector table, built when a run ends (pgvector builds an index
over loaded rows much faster than it inserts rows one by one into one; later runs insert into
the existing index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ember.indexing.sources import Doc
from ember.indexing.store import ModelTable, Store, StoreError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PostgresStore", "vector_literal"]


def vector_literal(v: np.ndarray) -> str:
    """pgvector's text form of a vector (`[0.1,0.2,...]`); float32 values round-trip exactly."""
    import numpy as np

    return "[" + ",".join(map(repr, np.asarray(v, dtype=np.float32).tolist())) + "]"


class PostgresStore(Store):
    """Postgres with the pgvector extension at a `postgresql://` URL."""

    ph = "%s"

    def __init__(self, url: str, *, lock_timeout: float = 5.0) -> None:
        self.url = url
        # The URL without a password, for messages.
        self.label = _redact(url)
        self.lock_timeout = lock_timeout
        try:
            psycopg = _psycopg()
        except ImportError:
            raise StoreError(
                "Postgres targets need psycopg: pip install 'psycopg[binary]'"
            ) from None
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)

    def connect(self) -> Any:
        psycopg = _psycopg()
        try:
            conn = psycopg.connect(self.url, connect_timeout=max(1, int(self.lock_timeout)))
            ms = int(self.lock_timeout * 1000)
            conn.execute(f"SET lock_timeout = {ms}")
            conn.commit()
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to Postgres at {self.label}: {e}".strip()) from None
        return conn

    def create_schema(self, conn: Any) -> None:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except self.errors as e:
            raise StoreError(
                f"{self.label}: the pgvector extension is not available ({e}); install pgvector "
                "(0.5 or newer, for HNSW) into this Postgres"
            ) from None
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS documents (
                id TEXT PRIMARY KEY,
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
                normalize BOOLEAN NOT NULL,
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
            "SELECT a.atttypmod, t.typname FROM pg_attribute a JOIN pg_type t "
            "ON t.oid = a.atttypid WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding'",
            (table,),
        ).fetchone()
        if row is None:
            return None
        if row[1] != "vector":
            raise StoreError(
                f"{self.label}: table {table} exists but its embedding is not a vector"
            )
        return int(row[0])

    def create_vector_table(self, conn: Any, table: str, dimension: int) -> None:
        conn.execute(
            f"CREATE TABLE {table} (doc_id TEXT NOT NULL, chunk INTEGER NOT NULL, "
            "start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, "
            f"embedding vector({dimension}) NOT NULL, PRIMARY KEY (doc_id, chunk))"
        )

    def upsert_documents(self, conn: Any, docs: Sequence[Doc]) -> None:
        conn.cursor().executemany(
            "INSERT INTO documents (id, text, content_hash) VALUES (%s, %s, %s) "
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
        stale = [d.id for d in docs if old_chunks.get(d.id, 0)]
        if stale:
            conn.execute(f"DELETE FROM {table} WHERE doc_id = ANY(%s)", (stale,))
        cur = conn.cursor()
        at = 0
        copy_sql = f"COPY {table} (doc_id, chunk, start_char, end_char, embedding) FROM STDIN"
        with cur.copy(copy_sql) as copy:
            for d, doc_spans in zip(docs, spans):
                for c, (start, end) in enumerate(doc_spans):
                    copy.write_row((d.id, c, start, end, vector_literal(vectors[at])))
                    at += 1

    def knn(self, conn: Any, table: str, vector: np.ndarray, k: int) -> list[tuple]:
        # HNSW returns at most ef_search rows (default 40): search at least k wide.
        conn.execute(f"SET hnsw.ef_search = {max(40, int(k))}")
        q = vector_literal(vector)
        return conn.execute(
            f"SELECT doc_id, chunk, start_char, end_char, embedding <=> %s::vector AS distance "
            f"FROM {table} ORDER BY embedding <=> %s::vector LIMIT %s",
            (q, q, k),
        ).fetchall()

    def finish(self, conn: Any, tables: Sequence[ModelTable]) -> None:
        for t in tables:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {t.name[:58]}_hnsw ON {t.name} "
                "USING hnsw (embedding vector_cosine_ops)"
            )
        conn.commit()


def _psycopg() -> Any:
    """The psycopg module, imported by name so that type checkers of `ember` (stubtest) do not
    analyze the whole of psycopg."""
    import importlib

    return importlib.import_module("psycopg")


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
