"""`ember.index`: one pass over the input feeds every model; reading and planning, embedding and
writing run at once, so the compute threads stay busy while the previous batch is written.

Three threads, joined by bounded queues:

- the caller's thread reads a window of documents (`batch_size * 8`), asks the store which
  (document, model) pairs need vectors, cuts chunks and counts tokens;
- the embed thread runs each model on its share of the window (Ember's compute threads, the
  GIL released);
- the write thread owns the write connection: the window's documents and `pending` status in
  one transaction, then each model's vectors and `done` status in one transaction per batch.

A bad input row stops the reading, lets the batches already read be written, then raises: the
next run resumes after them. Ctrl-C stops after the transactions in progress.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ember._errors import EmberError, InvalidInputError
from ember.indexing.models import open_model
from ember.indexing.progress import Progress
from ember.indexing.sources import open_source
from ember.indexing.store import ModelTable, Store, StoreError, parse_target

__all__ = ["check_chunking", "index", "open_store"]

_DONE = object()


def open_store(db: Any, *, lock_timeout: float = 5.0) -> Store:
    store = parse_target(db)
    store.lock_timeout = lock_timeout  # type: ignore[attr-defined]
    return store


def check_chunking(chunk_tokens: int | None, chunk_overlap: int) -> None:
    """Refuses a chunk window below 1 token or an overlap outside `[0, chunk_tokens)`."""
    if chunk_tokens is not None and chunk_tokens < 1:
        raise InvalidInputError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    if chunk_overlap < 0 or (chunk_tokens and chunk_overlap >= chunk_tokens):
        raise InvalidInputError(
            f"chunk_overlap must be at least 0 and below chunk_tokens, got {chunk_overlap}"
        )


def _progress_mode(progress: str | None) -> str:
    if progress is None or progress == "quiet":
        return "quiet"
    if progress == "auto":
        return "bar" if sys.stderr.isatty() else "json"
    if progress not in ("bar", "json"):
        raise InvalidInputError(f"progress must be 'auto', 'bar', 'json' or None, not {progress!r}")
    return progress


class _Run:
    """The threads of one run and what they share."""

    def __init__(self, store: Store, tables: list[ModelTable], models: dict, progress: Progress):
        self.store = store
        self.tables = tables
        self.models = models
        self.progress = progress
        self.embed_q: queue.Queue = queue.Queue(maxsize=2)
        self.write_q: queue.Queue = queue.Queue(maxsize=4)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def put(self, q: queue.Queue, item: Any) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def fail(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e
        self.stop.set()

    def embed_loop(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.embed_q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _DONE:
                    self.put(self.write_q, _DONE)
                    return
                table, docs, spans, tokens = item
                texts = [d.text[s:e] for d, ss in zip(docs, spans) for s, e in ss]
                try:
                    vectors = self.models[table.name].embed(texts)
                except InvalidInputError as e:  # about these texts: record, go on
                    self.put(self.write_q, ("failed", table, docs, str(e)))
                    continue
                self.put(self.write_q, ("vectors", table, docs, spans, vectors, tokens))
        except BaseException as e:
            self.fail(e)

    def write_loop(self) -> None:
        conn = None
        try:
            conn = self.store.connect()
            while not self.stop.is_set():
                try:
                    item = self.write_q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _DONE:
                    return
                if item[0] == "docs":
                    self.store.mark_pending(conn, item[1])
                elif item[0] == "failed":
                    _, table, docs, message = item
                    self.store.write_batch(conn, table, docs, [], None, error=message)
                    self.progress.add(table.name, failed=len(docs))
                else:
                    _, table, docs, spans, vectors, tokens = item
                    self.store.write_batch(conn, table, docs, spans, vectors)
                    self.progress.add(table.name, embedded=len(docs), tokens=tokens)
        except BaseException as e:
            self.fail(_store_error(self.store, e))
        finally:
            if conn is not None:
                conn.close()


def _store_error(store: Store, e: BaseException) -> BaseException:
    if isinstance(e, getattr(store, "errors", ())):
        return StoreError(f"{store.label}: {e}")
    return e


def index(
    input: Any,
    db: Any,
    models: str | Sequence[str],
    *,
    id_column: str = "id",
    text_column: str = "text",
    dtype: str | None = None,
    input_type: str | None = "document",
    prompt_name: str | None = None,
    prompt: str | None = None,
    normalize: bool = True,
    batch_size: int = 32,
    server: str | None = None,
    chunk_tokens: int | None = None,
    chunk_overlap: int = 0,
    reembed_stale: bool = False,
    on_duplicate: str = "error",
    progress: str | None = "auto",
    lock_timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Embeds the documents of `input` with each of `models` into per-model vector tables of
    `db`, and returns a summary per model (texts embedded, skipped, failed, stale, seconds).

    input: a JSONL, CSV or Parquet file (streamed), an iterable of dicts, a pandas DataFrame or
        a pyarrow Table, with an id and a text column (`id_column`, `text_column`).
    db: `*.db` / `*.sqlite` (SQLite with sqlite-vec), `postgresql://…` (Postgres with
        pgvector, HNSW indexes) or `parquet:DIR` (one Parquet dataset per model).
    models: model ids, aliases or directories; they share one pass over the input.
    input_type: "document" (default) or "query": the prompt that task picks in each model (none
        if the model has none); or name `prompt_name` / `prompt` for every model.
    batch_size: texts per forward pass; each model embeds `batch_size * 8` texts per call and
        writes them in one transaction.
    server: embed through a running Ember server (its native API) instead of in-process.
    chunk_tokens, chunk_overlap: cut texts into windows of this many model tokens, overlapping
        by `chunk_overlap`; each chunk keeps its document id and character offsets.
    reembed_stale: re-embed rows made by other weights (or dtype, pooling, prompt, chunking).
    on_duplicate: "error" (default) or "last" (the last text of an id wins).
    progress: "auto" (bars on a terminal, JSON lines elsewhere, on stderr), "bar", "json", or
        None for nothing.
    lock_timeout: seconds to wait for a locked database before failing.

    Re-running does nothing new; an interrupted run resumes; a new model backfills only itself;
    a changed text is re-embedded for every model.
    """
    names = [models] if isinstance(models, str) else list(models)
    if not names:
        raise InvalidInputError("name at least one model")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"a model is named twice: {names}")
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
    check_chunking(chunk_tokens, chunk_overlap)
    mode = _progress_mode(progress)
    source = open_source(
        input, id_column=id_column, text_column=text_column, on_duplicate=on_duplicate
    )
    store = open_store(db, lock_timeout=lock_timeout)
    loaded = [
        open_model(
            name,
            server=server,
            dtype=dtype,
            input_type=input_type,
            prompt_name=prompt_name,
            prompt=prompt,
            normalize=normalize,
            batch_size=batch_size,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
        )
        for name in names
    ]
    read = store.connect()
    try:
        try:
            tables = store.prepare(
                read, [m.identity for m in loaded], source=server or "in-process"
            )
        except EmberError:
            raise
        except BaseException as e:
            raise _store_error(store, e) from None
        report = Progress(
            [(m.id, t.name) for m, t in zip(loaded, tables)], total=source.total, mode=mode
        )
        for t in tables:
            report.counts[t.name].stale = t.stale
        run = _Run(store, tables, {t.name: m for m, t in zip(loaded, tables)}, report)
        summary = _drive(run, source, read, batch_size * 8, reembed_stale)
    finally:
        read.close()
    return summary


def _drive(run: _Run, source: Any, read: Any, window: int, reembed_stale: bool) -> list[dict]:
    store, tables = run.store, run.tables
    workers = [
        threading.Thread(target=run.embed_loop, name="ember-index-embed", daemon=True),
        threading.Thread(target=run.write_loop, name="ember-index-write", daemon=True),
    ]
    for w in workers:
        w.start()
    read_error: BaseException | None = None
    try:
        try:
            for docs in source.batches(window):
                if run.stop.is_set():
                    break
                plan = store.plan(read, docs, tables, reembed_stale=reembed_stale)
                read.commit()
                for t in tables:
                    if plan.skipped[t.name]:
                        run.progress.add(t.name, skipped=plan.skipped[t.name])
                if not plan.docs:
                    continue
                run.put(run.write_q, ("docs", plan))
                for t in tables:
                    todo = plan.embed[t.name]
                    if todo:
                        spans, tokens = run.models[t.name].spans([d.text for d in todo])
                        run.put(run.embed_q, (t, todo, spans, tokens))
        except InvalidInputError as e:
            read_error = e  # the batches read so far are still written
        except BaseException as e:
            if not isinstance(e, KeyboardInterrupt):
                e = _store_error(store, e)
            run.fail(e)
            raise e from None
        run.put(run.embed_q, _DONE)
        while any(w.is_alive() for w in workers):
            for w in workers:
                w.join(timeout=0.1)
    except KeyboardInterrupt:
        run.stop.set()
        for w in workers:
            w.join()
        run.progress.close()
        raise
    summary = run.progress.close()
    if run.error is not None:
        raise run.error
    try:
        store.finish(read, tables)
        for row, t in zip(summary, tables):
            row["stale"] = store.counts(read, t.name).get("stale", 0)
        read.commit()
    except BaseException as e:
        raise _store_error(store, e) from None
    if read_error is not None:
        raise read_error
    return summary
