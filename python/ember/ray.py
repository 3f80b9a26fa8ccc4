"""Ray Data, when one machine is not enough: `Embed`, a callable class for
`Dataset.map_batches` that loads a model once per actor, and `index`, which runs `ember.index`'s
flow with the embedding spread over a Ray cluster and the writing on the driver.

    import ray, ember.ray
    ray.init(address="auto")
    ds = ray.data.read_parquet("corpus/")
    out = ds.map_batches(
        ember.ray.Embed,
        fn_constructor_kwargs={"model": "all-MiniLM-L6-v2"},
        concurrency=4,          # actors, each with one copy of the model
        num_cpus=2,             # compute threads each actor may use
        batch_size=256,
        batch_format="pyarrow",
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ember
from ember._errors import InvalidInputError

__all__ = ["Embed", "dimension", "index", "matrix"]


def matrix(column: Any) -> Any:
    """An `embedding` column as Ray hands it back in a numpy batch (a 2-D array, or an object
    array of 1-D arrays when the batch went through pandas) as one 2-D float32 array."""
    import numpy as np

    a = np.asarray(column)
    if a.dtype == object:
        a = np.stack([np.asarray(v, dtype=np.float32) for v in a])
    return np.ascontiguousarray(a, dtype=np.float32)


def dimension(model: str) -> int:
    """The length of `model`'s vectors (the catalog's, without loading the model when it is
    known there), as the `embedding` column's list size."""
    spec = ember.get_model_spec(model)
    if spec.get("dimension"):
        return int(spec["dimension"])
    return ember.Embedder(model).dimension


class Embed:
    """Adds an `embedding` column to Ray Data batches: Arrow tables (a fixed-size list of
    float32 of the model's `dimension`), numpy dicts (a 2-D float32 array) or pandas frames.

    The model loads once per actor (`__init__`); pass it through `fn_constructor_kwargs`.
    Keyword arguments mean what they mean in `ember.index`; `threads` sizes the actor's compute
    pool (default: `EMBER_NUM_THREADS`, else every core of its node: give it the actor's
    `num_cpus`).
    """

    def __init__(
        self,
        model: str,
        *,
        column: str = "text",
        output_column: str = "embedding",
        dtype: str | None = None,
        input_type: str | None = "document",
        prompt_name: str | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        self.embedder = ember.Embedder(model, dtype=dtype, threads=threads)
        ident = self.embedder.identity(
            input_type=None if prompt_name else input_type,
            prompt_name=prompt_name,
            normalize=normalize,
        )
        self.identity: dict[str, Any] = ident
        self.dimension: int = self.embedder.dimension
        self.column = column
        self.output_column = output_column
        self._kw: dict[str, Any] = {"normalize": normalize, "batch_size": batch_size}
        if ident["prompt_name"]:
            self._kw["prompt_name"] = ident["prompt_name"]

    def _embed(self, texts: Sequence[Any]) -> Any:
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInputError(
                    f"column {self.column!r} row {i} is {type(t).__name__}, not text"
                )
        return self.embedder.embed(list(texts), **self._kw)

    def __call__(self, batch: Any) -> Any:
        kind = type(batch).__module__.split(".")[0]
        if kind == "pyarrow":
            import pyarrow as pa  # type: ignore[import-untyped, import-not-found]

            if self.column not in batch.column_names:
                raise InvalidInputError(
                    f"no column {self.column!r} in the batch (columns: {batch.column_names})"
                )
            vectors = self._embed(batch.column(self.column).to_pylist())
            flat = pa.array(vectors.reshape(-1))
            column = pa.FixedSizeListArray.from_arrays(flat, self.dimension)
            return batch.append_column(self.output_column, column)
        if kind == "pandas":
            out = batch.copy()
            out[self.output_column] = list(self._embed(batch[self.column].tolist()))
            return out
        if isinstance(batch, dict):
            if self.column not in batch:
                raise InvalidInputError(
                    f"no column {self.column!r} in the batch (columns: {list(batch)})"
                )
            out = dict(batch)
            out[self.output_column] = self._embed([str(t) for t in batch[self.column]])
            return out
        raise InvalidInputError(
            f"batches must be Arrow tables, numpy dicts or pandas frames, not {type(batch)}"
        )


def index(
    input: Any,
    db: Any,
    models: str | Sequence[str],
    *,
    concurrency: int = 1,
    num_cpus: float = 1,
    window: int = 1024,
    id_column: str = "id",
    text_column: str = "text",
    dtype: str | None = None,
    input_type: str | None = "document",
    prompt_name: str | None = None,
    normalize: bool = True,
    batch_size: int = 32,
    chunk_tokens: int | None = None,
    chunk_overlap: int = 0,
    reembed_stale: bool = False,
    on_duplicate: str = "error",
    lock_timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """`ember.index` with the embedding on the Ray cluster `ray.init` connected to: the driver
    reads the input, asks the target what is missing and cuts the texts into chunks
    (`chunk_tokens`, `chunk_overlap`: as `ember.index` cuts them, each chunk keeping its document
    id and character offsets), `concurrency` actors (each with `num_cpus`) embed the chunks
    through `Embed`, and the driver writes each document's vectors once all its chunks are back,
    one transaction per returned batch of up to `window` chunks, into `db` (SQLite, Postgres or
    `parquet:DIR`).

    Returns the summary `ember.index` returns; the tables are those `ember.index` makes.
    """
    import numpy as np
    import pyarrow as pa  # type: ignore[import-untyped, import-not-found]
    import ray  # type: ignore[import-untyped, import-not-found]

    from ember.indexing.models import LocalModel
    from ember.indexing.pipeline import check_chunking, open_store
    from ember.indexing.progress import Progress
    from ember.indexing.sources import Doc, open_source

    names = [models] if isinstance(models, str) else list(models)
    if not names:
        raise InvalidInputError("name at least one model")
    check_chunking(chunk_tokens, chunk_overlap)
    if not ray.is_initialized():
        ray.init()
    source = open_source(
        input, id_column=id_column, text_column=text_column, on_duplicate=on_duplicate
    )
    store = open_store(db, lock_timeout=lock_timeout)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "input_type": input_type,
        "prompt_name": prompt_name,
        "normalize": normalize,
        "batch_size": batch_size,
    }
    # On the driver, as `ember.index` has them: the identity to record and the chunking.
    drivers = [
        LocalModel(
            name, prompt=None, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap, **kwargs
        )
        for name in names
    ]
    conn = store.connect()
    try:
        tables = store.prepare(
            conn,
            [m.identity for m in drivers],
            source=f"ray:{ray.get_runtime_context().gcs_address}",
        )
        report = Progress(
            [(m.id, t.name) for m, t in zip(drivers, tables)], total=source.total, mode="quiet"
        )
        pending: dict[str, list[Doc]] = {t.name: [] for t in tables}
        for docs in source.batches(window):
            plan = store.plan(conn, docs, tables, reembed_stale=reembed_stale)
            if plan.docs:
                store.mark_pending(conn, plan)
            for t in tables:
                pending[t.name].extend(plan.embed[t.name])
                report.add(t.name, skipped=plan.skipped[t.name])
        for name, model, table in zip(names, drivers, tables):
            docs = pending[table.name]
            if not docs:
                continue
            spans, tokens = model.spans([d.text for d in docs])
            ds = ray.data.from_arrow(
                pa.table(
                    {
                        "id": [d.id for d, ss in zip(docs, spans) for _ in ss],
                        "chunk": [c for ss in spans for c in range(len(ss))],
                        "text": [d.text[s:e] for d, ss in zip(docs, spans) for s, e in ss],
                    }
                )
            )
            out = ds.map_batches(
                Embed,
                fn_constructor_kwargs={"model": name, **kwargs, "threads": max(int(num_cpus), 1)},
                concurrency=concurrency,
                num_cpus=num_cpus,
                batch_size=window,
                batch_format="pyarrow",
            )
            wanted = {d.id: (d, ss) for d, ss in zip(docs, spans)}
            parts: dict[str, list[Any]] = {}
            missing = {d.id: len(ss) for d, ss in zip(docs, spans)}
            # numpy batches: Ray hands the embedding column over as one 2-D array whatever
            # Arrow type it stored it in (its tensor extension type, for fixed-size lists).
            for batch in out.iter_batches(batch_size=window, batch_format="numpy"):
                ready = []
                for i, c, v in zip(batch["id"], batch["chunk"], matrix(batch["embedding"])):
                    doc_id = str(i)
                    parts.setdefault(doc_id, [None] * len(wanted[doc_id][1]))[int(c)] = v
                    missing[doc_id] -= 1
                    if missing[doc_id] == 0:
                        ready.append(doc_id)
                if not ready:
                    continue
                # A document is written once all its chunks are back, in one transaction.
                got = [wanted[i][0] for i in ready]
                vectors = np.stack([v for i in ready for v in parts.pop(i)])
                store.write_batch(conn, table, got, [wanted[i][1] for i in ready], vectors)
                report.add(table.name, embedded=len(got))
            report.add(table.name, tokens=tokens)
        store.finish(conn, tables)
        summary = report.close()
        for row, t in zip(summary, tables):
            row["stale"] = store.counts(conn, t.name).get("stale", 0)
        conn.commit()
        return summary
    finally:
        conn.close()
