"""The `ember` command line: `ember serve`, `ember embed`, `ember models`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import ember


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ember",
        description="Ember: text embeddings from Rust, with sentence-transformers' vectors.",
    )
    parser.add_argument("--version", action="version", version=f"ember {ember.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run Ember's HTTP server until Ctrl-C. Options left out take their EMBER_* "
        "environment variable (EMBER_HOST, EMBER_PORT, ...), else the server's default.",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port to listen on; 0 picks a free one (default 8080)"
    )
    serve.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="MODEL",
        help="a model to load at start (repeat, or separate with commas)",
    )
    serve.add_argument("--default-model", help="the model a request that names none gets")
    serve.add_argument("--models-file", help="a TOML file adding [[models]] entries")
    serve.add_argument(
        "--lazy",
        action="store_true",
        default=None,
        help="load the default model on first use instead of at start",
    )

    embed = commands.add_parser(
        "embed",
        help="print the embeddings of texts",
        description="Print one embedding per TEXT, each as a JSON array on its own line "
        "(TEXT '-' reads one text per line from standard input).",
    )
    embed.add_argument("texts", nargs="+", metavar="TEXT", help="a text to embed, or '-'")
    embed.add_argument("--model", "-m", help="model id, alias or directory (default: the default)")
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

    models = commands.add_parser(
        "models",
        help="list the model catalog",
        description="List the model catalog: id, dimension, max input length in tokens, "
        "architecture, whether Ember implements it, whether this process has it loaded.",
    )
    models.add_argument("--loaded", action="store_true", help="only models loaded in this process")
    models.add_argument("--json", action="store_true", help="print the catalog as JSON")
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
    model = ember.Embedder(args.model)
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


def _models(args: argparse.Namespace) -> int:
    entries = [m for m in ember.models() if m["loaded"] or not args.loaded]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    header = ("id", "dim", "max len", "arch", "supported", "loaded")
    rows = [header] + [
        (
            m["id"] + (" *" if m["is_default"] else ""),
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
    return 0


def _serve(args: argparse.Namespace) -> int:
    models = None
    if args.models:
        models = [m.strip() for arg in args.models for m in arg.split(",") if m.strip()]
    try:
        ember.serve(
            host=args.host,
            port=args.port,
            models=models,
            default_model=args.default_model,
            models_file=args.models_file,
            lazy=args.lazy,
        )
    except KeyboardInterrupt:
        # The server already stopped cleanly (in-flight requests finished): a normal exit.
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `ember` command line; returns the exit status."""
    args = _parser().parse_args(argv)
    run = {"serve": _serve, "embed": _embed, "models": _models}[args.command]
    try:
        return run(args)
    except ember.EmberError as e:
        print(f"ember: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
