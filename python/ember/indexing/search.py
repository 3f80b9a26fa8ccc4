"""`ember.search`: k-nearest-neighbour queries on a table `ember.index` built (sqlite-vec
`MATCH`, pgvector `<=>`, or an exact scan of a Parquet dataset), the query embedded by the model
and prompt the table records. A table whose recorded model, dimension, normalization or weights
differ from the query model's is refused with both named."""

from __future__ import annotations

from typing import Any

from ember._errors import InvalidInputError
from ember.indexing.models import open_model
from ember.indexing.pipeline import open_store
from ember.indexing.store import describe, table_name

__all__ = ["search"]


def search(
    query: str,
    db: Any,
    model: str,
    *,
    k: int = 10,
    table: str | None = None,
    dtype: str | None = None,
    normalize: bool = True,
    server: str | None = None,
) -> list[dict[str, Any]]:
    """The `k` rows of `model`'s vector table in `db` nearest to `query`, best first, as dicts
    `{"id", "score", "text"}` (score: cosine similarity; chunked tables add `chunk`, `start`,
    `end`, and `text` is the chunk).

    table: search this vector table instead of the model's own (refused unless the identities
        agree). dtype: load the model in this dtype (default: the dtype the table records).
    """
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("the query must be a non-empty string")
    if k < 1:
        raise InvalidInputError(f"k must be at least 1, got {k}")
    store = open_store(db)
    path = getattr(store, "path", None)
    if path is not None and not path.is_file():
        raise InvalidInputError(f"{store.label} does not exist (run `ember index` first)")
    conn = store.connect()
    try:
        rows = {r["table_name"]: r for r in _model_rows(store, conn)}
        if not rows:
            raise InvalidInputError(f"{store.label} holds no vector tables (run `ember index`)")
        if table is None:
            mine = [r for r in rows.values() if r["model_id"] == model]
            recorded = mine[0] if len(mine) == 1 else None
        else:
            recorded = rows.get(table)
            if recorded is None:
                raise InvalidInputError(
                    f"{store.label} has no vector table {table}; tables: {', '.join(rows)}"
                )
        m = open_model(
            model,
            server=server,
            dtype=dtype or (recorded or {}).get("dtype"),
            input_type=None,
            prompt_name=None,
            prompt=None,
            normalize=normalize,
            batch_size=32,
            chunk_tokens=None,
            chunk_overlap=0,
        )
        ident = m.identity
        if recorded is None:
            name = table_name(ident["id"], ident["dimension"])
            recorded = rows.get(name)
            if recorded is None:
                have = ", ".join(f"{t} ({r['model_id']})" for t, r in rows.items())
                raise InvalidInputError(
                    f"{store.label} has no vector table for model `{ident['id']}` "
                    f"(expected {name}); tables: {have}"
                )
        _check(recorded, ident, store.label)
        stale = store.counts(conn, recorded["table_name"]).get("stale", 0)
        if stale:
            raise InvalidInputError(
                f"{stale} rows of {recorded['table_name']} in {store.label} were made by other "
                f"weights or settings than {describe(recorded)}; run `ember index` with "
                "--reembed-stale first"
            )
        vector = m.embed_query(query, recorded)
        hits = store.knn(conn, recorded["table_name"], vector, k)
        texts = store.texts(conn, [h[0] for h in hits])
        chunked = bool(recorded.get("chunk_tokens"))
        out = []
        for doc_id, chunk, start, end, distance in hits:
            text = texts.get(doc_id, "")
            row: dict[str, Any] = {"id": doc_id, "score": 1.0 - float(distance)}
            if chunked:
                row.update(chunk=chunk, start=start, end=end, text=text[start:end])
            else:
                row["text"] = text
            out.append(row)
        return out
    finally:
        conn.close()


def _model_rows(store: Any, conn: Any) -> list[dict[str, Any]]:
    try:
        return store.model_rows(conn)
    except getattr(store, "errors", ()) as e:
        raise InvalidInputError(f"{store.label} is not an Ember index ({e})") from None


def _check(recorded: dict[str, Any], ident: dict[str, Any], label: str) -> None:
    """Refuses a query model whose vectors are not comparable with the table's."""
    query = {
        "model_id": ident["id"],
        "dimension": ident["dimension"],
        "dtype": ident["dtype"],
        "normalize": ident["normalize"],
        "weights_sha256": ident.get("weights_sha256"),
    }
    same_weights = (
        recorded.get("weights_sha256") is None
        or query["weights_sha256"] is None
        or recorded["weights_sha256"] == query["weights_sha256"]
    )
    if (
        recorded["model_id"] != query["model_id"]
        or int(recorded["dimension"]) != int(query["dimension"])
        or bool(recorded["normalize"]) != bool(query["normalize"])
        or not same_weights
    ):
        raise InvalidInputError(
            f"table {recorded['table_name']} in {label} holds vectors of {describe(recorded)}; "
            f"the query would be embedded by {describe(query)}: their vectors are not comparable"
        )
