"""What every index target shares: the schema, model identities and per-model vector tables,
the per-(document, model) status, the plan of what a run must embed, and transactional writes.

Tables (the same in SQLite and Postgres; a Parquet target keeps them in `DIR/index.db`):

- `documents(id, text, content_hash)`: one row per input id.
- `models(table_name, model_id, revision, weights_sha256, architecture, dimension, dtype,
  pooling, normalize, input_type, prompt_name, prompt, max_seq_length, chunk_tokens,
  chunk_overlap, fingerprint, source, created_at, updated_at)`: the identity of each vector
  table's model. `fingerprint` hashes every field that changes a vector.
- `status(doc_id, table_name, state, content_hash, fingerprint, chunks, error)`: `pending`,
  `done`, `failed` (with the error) or `stale` (made by another fingerprint).
- `embeddings_<model_slug>_<dim>`: one row per (document, chunk): `doc_id`, `chunk`,
  `start_char`, `end_char` (the chunk is `text[start_char:end_char]`) and `embedding`.

A model's vectors and status rows are written in one transaction per embedding batch, with the
documents they belong to, so an interrupted run leaves whole batches only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember._errors import InvalidInputError, StoreError
from ember.indexing.sources import Doc

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ModelTable", "Store", "StoreError", "table_name"]

# Fields of a model identity that change the vectors it makes.
_FINGERPRINT_FIELDS = (
    "weights_sha256",
    "dimension",
    "dtype",
    "pooling",
    "normalize",
    "prompt",
    "max_seq_length",
    "chunk_tokens",
    "chunk_overlap",
)
_MODEL_COLUMNS = (
    "table_name",
    "model_id",
    "revision",
    "weights_sha256",
    "architecture",
    "dimension",
    "dtype",
    "pooling",
    "normalize",
    "input_type",
    "prompt_name",
    "prompt",
    "max_seq_length",
    "chunk_tokens",
    "chunk_overlap",
    "fingerprint",
    "source",
    "created_at",
    "updated_at",
)
# Postgres limits identifiers to 63 bytes.
_MAX_NAME = 63


def slug(model_id: str) -> str:
    """A model id as a table-name part: a directory's last component, lowercased, runs of other
    characters than letters and digits as one `_`."""
    name = model_id.rstrip("/\\")
    if "/" in name or "\\" in name:
        name = re.split(r"[/\\]", name)[-1]
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "model"


def table_name(model_id: str, dimension: int) -> str:
    """The vector table of a model, as RAG applications name theirs: `embeddings_<slug>_<dim>`."""
    tail = f"_{dimension}"
    return f"embeddings_{slug(model_id)}"[: _MAX_NAME - len(tail)] + tail


def fingerprint(identity: dict[str, Any]) -> str:
    """SHA-256 over the identity fields that change vectors (see `_FINGERPRINT_FIELDS`)."""
    facts = {k: identity.get(k) for k in _FINGERPRINT_FIELDS}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def describe(row: dict[str, Any]) -> str:
    """A model identity in a few words, for errors naming two of them."""
    norm = "normalized" if row.get("normalize") else "not normalized"
    sha = (row.get("weights_sha256") or "unknown")[:12]
    return f"`{row['model_id']}` ({row['dimension']}-d, {row['dtype']}, {norm}, weights {sha})"


@dataclass
class ModelTable:
    """One model's vector table in a run: its name and the identity it is written with."""

    name: str
    identity: dict[str, Any]
    fingerprint: str
    # Documents found stale when the run started (another fingerprint made them).
    stale: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def dimension(self) -> int:
        return int(self.identity["dimension"])


@dataclass
class Plan:
    """What one input batch needs: documents to (re)write and, per table, those to embed."""

    docs: list[Doc]
    embed: dict[str, list[Doc]]
    skipped: dict[str, int]


class Store:
    """Base class of the index targets. Subclasses provide connections and the vector-table
    dialect; this class owns the schema of the shared tables and the indexing rules."""

    #: The DB-API parameter marker.
    ph = "?"
    #: What `target` looked like, for messages.
    label = ""

    # ---- dialect (subclasses) -------------------------------------------------------------

    def connect(self) -> Any:
        """A new connection (each thread has its own)."""
        raise NotImplementedError

    def create_schema(self, conn: Any) -> None:
        raise NotImplementedError

    def vector_table_dimension(self, conn: Any, table: str) -> int | None:
        """The dimension an existing vector table was created with, or None if absent."""
        raise NotImplementedError

    def create_vector_table(self, conn: Any, table: str, dimension: int) -> None:
        raise NotImplementedError

    def upsert_documents(self, conn: Any, docs: Sequence[Doc]) -> None:
        raise NotImplementedError

    def replace_vectors(
        self,
        conn: Any,
        table: str,
        docs: Sequence[Doc],
        old_chunks: dict[str, int],
        spans: Sequence[list[tuple[int, int]]],
        vectors: np.ndarray,
    ) -> None:
        """Deletes the docs' old vectors (`old_chunks`: how many each had) and inserts the new
        ones: `spans[i]` are doc i's chunks; `vectors` holds their rows in that order."""
        raise NotImplementedError

    def knn(self, conn: Any, table: str, vector: np.ndarray, k: int) -> list[tuple]:
        """The `k` nearest rows: `(doc_id, chunk, start_char, end_char, cosine distance)`."""
        raise NotImplementedError

    def finish(self, conn: Any, tables: Sequence[ModelTable]) -> None:
        """Work left for the end of a run (indexes, compaction)."""

    def committed(self) -> None:
        """Called after an embedding batch's transaction committed (file renames)."""

    def now(self) -> str:
        import datetime

        return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    # ---- shared rules ---------------------------------------------------------------------

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.ph)

    def model_rows(self, conn: Any) -> list[dict[str, Any]]:
        cur = conn.cursor()
        cur.execute(f"SELECT {', '.join(_MODEL_COLUMNS)} FROM models ORDER BY table_name")
        return [dict(zip(_MODEL_COLUMNS, r)) for r in cur.fetchall()]

    def prepare(
        self, conn: Any, identities: Sequence[dict[str, Any]], *, source: str
    ) -> list[ModelTable]:
        """Creates or checks each model's vector table, records its identity, and marks rows
        made by another fingerprint stale (rows made by this one again done). Refuses a table
        name held by another model and a dimension that disagrees with an existing table."""
        self.create_schema(conn)
        rows = {r["table_name"]: r for r in self.model_rows(conn)}
        tables = []
        cur = conn.cursor()
        for ident in identities:
            name = table_name(ident["id"], ident["dimension"])
            fp = fingerprint(ident)
            have = rows.get(name)
            if have is not None and have["model_id"] != ident["id"]:
                raise InvalidInputError(
                    f"table {name} in {self.label} holds vectors of {describe(have)}; model "
                    f"`{ident['id']}` would write to the same table. Index it into another "
                    "target, or drop the table"
                )
            for other in rows.values():
                if other["model_id"] == ident["id"] and other["dimension"] != ident["dimension"]:
                    raise InvalidInputError(
                        f"model `{ident['id']}` now makes {ident['dimension']}-d vectors, but "
                        f"table {other['table_name']} in {self.label} holds its "
                        f"{other['dimension']}-d vectors ({describe(other)}); refusing to mix them"
                    )
            existing = self.vector_table_dimension(conn, name)
            if existing is not None and existing != ident["dimension"]:
                raise InvalidInputError(
                    f"table {name} in {self.label} holds {existing}-d vectors; model "
                    f"`{ident['id']}` makes {ident['dimension']}-d vectors"
                )
            if existing is None:
                self.create_vector_table(conn, name, ident["dimension"])
            now = self.now()
            values = {
                "table_name": name,
                "model_id": ident["id"],
                "revision": ident.get("revision"),
                "weights_sha256": ident.get("weights_sha256"),
                "architecture": ident.get("architecture"),
                "dimension": ident["dimension"],
                "dtype": ident.get("dtype"),
                "pooling": ident.get("pooling"),
                "normalize": bool(ident.get("normalize")),
                "input_type": ident.get("input_type"),
                "prompt_name": ident.get("prompt_name"),
                "prompt": ident.get("prompt"),
                "max_seq_length": ident.get("max_seq_length"),
                "chunk_tokens": ident.get("chunk_tokens"),
                "chunk_overlap": ident.get("chunk_overlap"),
                "fingerprint": fp,
                "source": source,
                "created_at": have["created_at"] if have else now,
                "updated_at": now
                if (have is None or have["fingerprint"] != fp)
                else have["updated_at"],
            }
            cols = ", ".join(_MODEL_COLUMNS)
            marks = ", ".join("?" for _ in _MODEL_COLUMNS)
            updates = ", ".join(f"{c} = excluded.{c}" for c in _MODEL_COLUMNS[1:])
            cur.execute(
                self._q(
                    f"INSERT INTO models ({cols}) VALUES ({marks}) "
                    f"ON CONFLICT (table_name) DO UPDATE SET {updates}"
                ),
                [values[c] for c in _MODEL_COLUMNS],
            )
            cur.execute(
                self._q(
                    "UPDATE status SET state = 'stale' WHERE table_name = ? AND state = 'done' "
                    "AND fingerprint <> ?"
                ),
                (name, fp),
            )
            cur.execute(
                self._q(
                    "UPDATE status SET state = 'done' WHERE table_name = ? AND state = 'stale' "
                    "AND fingerprint = ?"
                ),
                (name, fp),
            )
            cur.execute(
                self._q("SELECT count(*) FROM status WHERE table_name = ? AND state = 'stale'"),
                (name,),
            )
            stale = int(cur.fetchone()[0])
            tables.append(ModelTable(name, dict(ident), fp, stale=stale))
        conn.commit()
        return tables

    def plan(
        self, conn: Any, docs: list[Doc], tables: Sequence[ModelTable], *, reembed_stale: bool
    ) -> Plan:
        """Which documents of `docs` each table must embed: new ones, changed ones (another
        content hash), pending and failed ones, and stale ones when `reembed_stale`."""
        ids = [d.id for d in docs]
        state: dict[tuple[str, str], tuple[str, str]] = {}
        cur = conn.cursor()
        step = 500
        for i in range(0, len(ids), step):
            part = ids[i : i + step]
            marks = ", ".join("?" for _ in part)
            cur.execute(
                self._q(
                    "SELECT doc_id, table_name, state, content_hash FROM status "
                    f"WHERE doc_id IN ({marks})"
                ),
                part,
            )
            for doc_id, table, st, h in cur.fetchall():
                state[(doc_id, table)] = (st, h)
        embed: dict[str, list[Doc]] = {}
        skipped: dict[str, int] = {}
        for t in tables:
            todo = []
            for d in docs:
                st, h = state.get((d.id, t.name), (None, None))
                if st == "done" and h == d.content_hash:
                    continue
                if st == "stale" and h == d.content_hash and not reembed_stale:
                    continue
                todo.append(d)
            embed[t.name] = todo
            skipped[t.name] = len(docs) - len(todo)
        wanted = {d.id for todo in embed.values() for d in todo}
        return Plan([d for d in docs if d.id in wanted], embed, skipped)

    def mark_pending(self, conn: Any, plan: Plan) -> None:
        """One transaction: the plan's documents upserted, and a `pending` status for each
        (document, table) the plan embeds (keeping the fingerprint and chunk count of the
        vectors still stored, which the embedding batch replaces)."""
        self.upsert_documents(conn, plan.docs)
        cur = conn.cursor()
        rows = [(d.id, table, d.content_hash) for table, todo in plan.embed.items() for d in todo]
        cur.executemany(
            self._q(
                "INSERT INTO status (doc_id, table_name, state, content_hash, chunks) "
                "VALUES (?, ?, 'pending', ?, 0) ON CONFLICT (doc_id, table_name) DO UPDATE SET "
                "state = 'pending', content_hash = excluded.content_hash, error = NULL"
            ),
            rows,
        )
        conn.commit()

    def write_batch(
        self,
        conn: Any,
        table: ModelTable,
        docs: Sequence[Doc],
        spans: Sequence[list[tuple[int, int]]],
        vectors: np.ndarray | None,
        error: str | None = None,
    ) -> None:
        """One embedding batch of one model, in one transaction: old vectors replaced by
        `vectors` and the status rows `done`; or, with `error`, the status rows `failed`."""
        cur = conn.cursor()
        ids = [d.id for d in docs]
        if error is not None:
            cur.executemany(
                self._q(
                    "UPDATE status SET state = 'failed', error = ? "
                    "WHERE doc_id = ? AND table_name = ?"
                ),
                [(error, i, table.name) for i in ids],
            )
            conn.commit()
            return
        old: dict[str, int] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ", ".join("?" for _ in part)
            cur.execute(
                self._q(
                    "SELECT doc_id, chunks FROM status "
                    f"WHERE table_name = ? AND doc_id IN ({marks})"
                ),
                [table.name, *part],
            )
            old.update({d: int(n or 0) for d, n in cur.fetchall()})
        assert vectors is not None
        self.replace_vectors(conn, table.name, docs, old, spans, vectors)
        cur.executemany(
            self._q(
                "INSERT INTO status (doc_id, table_name, state, content_hash, fingerprint, chunks) "
                "VALUES (?, ?, 'done', ?, ?, ?) ON CONFLICT (doc_id, table_name) DO UPDATE SET "
                "state = 'done', content_hash = excluded.content_hash, "
                "fingerprint = excluded.fingerprint, chunks = excluded.chunks, error = NULL"
            ),
            [
                (d.id, table.name, d.content_hash, table.fingerprint, len(s))
                for d, s in zip(docs, spans)
            ],
        )
        conn.commit()
        self.committed()

    def texts(self, conn: Any, ids: Sequence[str]) -> dict[str, str]:
        cur = conn.cursor()
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            marks = ", ".join("?" for _ in part)
            cur.execute(self._q(f"SELECT id, text FROM documents WHERE id IN ({marks})"), part)
            out.update(dict(cur.fetchall()))
        return out

    def counts(self, conn: Any, table: str) -> dict[str, int]:
        cur = conn.cursor()
        cur.execute(
            self._q("SELECT state, count(*) FROM status WHERE table_name = ? GROUP BY state"),
            (table,),
        )
        return {s: int(n) for s, n in cur.fetchall()}


def parse_target(target: Any) -> Store:
    """The store for `target`: `*.db` / `*.sqlite` / `*.sqlite3` (SQLite with sqlite-vec),
    `postgresql://…` / `postgres://…` (Postgres with pgvector), or `parquet:DIR`."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from ember.indexing.postgres import PostgresStore

        return PostgresStore(text)
    if text.startswith("parquet:"):
        from ember.indexing.parquet import ParquetStore

        return ParquetStore(Path(text[len("parquet:") :]))
    if Path(text).suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        from ember.indexing.sqlite import SqliteStore

        return SqliteStore(Path(text))
    raise InvalidInputError(
        f"--db {text!r}: use a SQLite file (*.db, *.sqlite), postgresql://… or parquet:DIR"
    )
