"""`ember index` and `ember search`: the command-line side of `ember.index` / `ember.search`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_commands", "run_index", "run_search"]


def add_commands(commands: Any) -> None:
    """Adds `index` and `search` to the `ember` parser's subcommands."""
    index = commands.add_parser(
        "index",
        help="embed a corpus into per-model vector tables",
        description="Embed the documents of INPUT (JSONL, CSV or Parquet, each row an id and a "
        "text) with each MODEL into per-model vector tables of TARGET: a SQLite file (*.db, "
        "*.sqlite; sqlite-vec), postgresql://... (pgvector, HNSW) or parquet:DIR. Re-running "
        "embeds only what is new, changed, failed or interrupted; a new model backfills only "
        "itself. Progress goes to stderr (bars on a terminal, JSON lines elsewhere), the "
        "summary to stdout.",
    )
    index.add_argument("input", metavar="INPUT", help="a .jsonl, .csv or .parquet file")
    index.add_argument("--db", required=True, metavar="TARGET", help="where the tables go")
    index.add_argument(
        "--model",
        "-m",
        action="append",
        required=True,
        metavar="MODEL",
        help="a model id, alias or directory (repeat for several; one pass over the input)",
    )
    index.add_argument("--id-column", default="id", help="the id column (default: id)")
    index.add_argument("--text-column", default="text", help="the text column (default: text)")
    index.add_argument("--dtype", help="weight dtype: fp32, fp16, bf16 or int8")
    index.add_argument(
        "--input-type",
        default="document",
        choices=("document", "query"),
        help="the task whose prompt each model prepends, if it has one (default: document)",
    )
    index.add_argument("--prompt-name", help="a prompt of the models to prepend instead")
    index.add_argument(
        "--batch-size", type=int, default=32, help="texts per forward pass (default: 32)"
    )
    index.add_argument("--server", metavar="URL", help="embed through a running Ember server")
    index.add_argument(
        "--chunk-tokens", type=int, metavar="N", help="cut texts into windows of N model tokens"
    )
    index.add_argument(
        "--chunk-overlap", type=int, default=0, metavar="M", help="tokens windows share"
    )
    index.add_argument(
        "--reembed-stale",
        action="store_true",
        help="re-embed rows made by other weights, dtype, pooling, prompt or chunking",
    )
    index.add_argument(
        "--on-duplicate",
        default="error",
        choices=("error", "last"),
        help="a repeated id: stop with an error (default), or keep its last text",
    )
    index.add_argument(
        "--no-normalize", action="store_true", help="store vectors without L2 normalization"
    )
    index.add_argument("--quiet", "-q", action="store_true", help="print nothing")
    index.add_argument(
        "--lock-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for a locked database (default: 5)",
    )

    search = commands.add_parser(
        "search",
        help="nearest neighbours of a query in an index",
        description="Embed QUERY with MODEL (and the prompt the table records) and print the K "
        "nearest rows of MODEL's vector table in TARGET, best first.",
    )
    search.add_argument("query", metavar="QUERY", help="the query text")
    search.add_argument("--db", required=True, metavar="TARGET", help="the index to search")
    search.add_argument("--model", "-m", required=True, help="the model the table was built with")
    search.add_argument("-k", type=int, default=10, help="how many rows (default: 10)")
    search.add_argument("--table", help="search this vector table (its model must match)")
    search.add_argument("--dtype", help="weight dtype (default: the one the table records)")
    search.add_argument("--server", metavar="URL", help="embed the query on a running server")
    search.add_argument(
        "--no-normalize", action="store_true", help="for tables stored without normalization"
    )
    search.add_argument(
        "--json", action="store_true", help='print [{"id", "score", "text"}] as JSON'
    )


def run_index(args: argparse.Namespace) -> int:
    import ember
    from ember.indexing.progress import format_summary

    progress = None if args.quiet else "auto"
    summary = ember.index(
        args.input,
        args.db,
        args.model,
        id_column=args.id_column,
        text_column=args.text_column,
        dtype=args.dtype,
        input_type=None if args.prompt_name else args.input_type,
        prompt_name=args.prompt_name,
        normalize=not args.no_normalize,
        batch_size=args.batch_size,
        server=args.server,
        chunk_tokens=args.chunk_tokens,
        chunk_overlap=args.chunk_overlap,
        reembed_stale=args.reembed_stale,
        on_duplicate=args.on_duplicate,
        progress=progress,
        lock_timeout=args.lock_timeout,
    )
    if not args.quiet:
        if sys.stdout.isatty():
            print(format_summary(summary))
        else:
            print(json.dumps({"event": "summary", "models": summary}))
        for row in summary:
            if row["stale"] and not args.reembed_stale:
                print(
                    f"ember: warning: {row['stale']} rows of {row['table']} were made by other "
                    "weights or settings; pass --reembed-stale to re-embed them",
                    file=sys.stderr,
                )
    return 1 if any(row["failed"] for row in summary) else 0


def run_search(args: argparse.Namespace) -> int:
    import ember

    hits = ember.search(
        args.query,
        args.db,
        args.model,
        k=args.k,
        table=args.table,
        dtype=args.dtype,
        normalize=not args.no_normalize,
        server=args.server,
    )
    if args.json:
        print(json.dumps(hits))
        return 0
    for rank, hit in enumerate(hits, start=1):
        text = " ".join(hit["text"].split())
        if len(text) > 100:
            text = text[:97] + "..."
        print(f"{rank:>3}  {hit['score']:.4f}  {hit['id']}  {text}")
    return 0
