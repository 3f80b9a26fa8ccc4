"""Issue 17's benchmarks: full-size models with random weights in the real models' shapes, made
locally (never committed), Ember against transformers/PyTorch in the same run, engines taking
turns.

    python benches/frontier.py qwen3 [--threads 2] [--rounds 3] [--lengths 128,1024]
    python benches/frontier.py modernbert [--threads 2] [--rounds 2] [--length 8192]
    python benches/frontier.py memory [--lengths 512,2048,8192]
    python benches/frontier.py make qwen3|modernbert   (the random model alone; needs torch)

- `qwen3`: Qwen3-Embedding-0.6B's shape (28 layers, hidden 1,024, 16 query / 8 key heads of 128,
  SwiGLU 3,072, last-token pooling). Ember BF16, INT8 and FP32 against PyTorch FP32 and BF16
  (SDPA), one text of exactly N tokens per call. Prints tokens/s, each engine's ratio to PyTorch
  FP32, and the cosine of every engine's vectors to Ember FP32 on the same texts.
- `modernbert`: ModernBERT-base's shape (22 layers, hidden 768, 12 heads, GeGLU 1,152, local
  windows of 128 with a global layer every third) on one text of N tokens: tokens/s and the peak
  resident memory of a process that does nothing else (each engine in its own process; the
  processes take turns).
- `memory`: Ember's attention and activation memory, ModernBERT-base at each length: once the
  model is loaded, the child resets its peak (`5` into /proc/self/clear_refs), then runs one
  text of N tokens and reads the new peak (VmHWM); the figure is that peak minus the resident
  memory at the reset, so the load's own spike (weights read and converted) is not in it.

Every child reports three figures: the peak of the load (VmHWM before the reset), the resident
memory once loaded (VmRSS at the reset) and the peak of the runs after it (VmHWM at the end).

Needs Ember installed in this Python (`pip install .`) and, for the peer, torch and transformers 5
(the reference venv). Run the script with a Python that has both, or with `--peer-python` naming
the reference venv's interpreter (each engine runs in a child process anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY = HERE.parent / "fixtures" / "reference" / "tiny"
CACHE = Path(
    os.environ.get("EMBER_BENCH_CACHE", Path(tempfile.gettempdir()) / "ember-frontier-bench")
)

QWEN3_06B = dict(
    vocab_size=151669,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=32768,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
MODERNBERT_BASE = dict(
    vocab_size=50368,
    hidden_size=768,
    intermediate_size=1152,
    num_hidden_layers=22,
    num_attention_heads=12,
    local_attention=128,
    global_attn_every_n_layers=3,
    max_position_embeddings=8192,
    hidden_activation="gelu",
    norm_eps=1e-5,
    rope_parameters={
        "full_attention": {"rope_type": "default", "rope_theta": 160000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    },
    classifier_pooling="mean",
)


def model_dir(kind: str, peer_python: str) -> Path:
    """`CACHE/kind`, made first (by the peer's interpreter, which has torch) when missing."""
    d = CACHE / kind
    if not (d / "model.safetensors").is_file():
        subprocess.run([peer_python, __file__, "make", kind], check=True)
    return d


def make_model(kind: str) -> Path:
    """A full-size random model in `CACHE/kind`, with the tiny fixture's tokenizer and ST files."""
    d = CACHE / kind
    if (d / "model.safetensors").is_file():
        return d
    import shutil

    import torch

    d.mkdir(parents=True, exist_ok=True)
    src = TINY / ("qwen3" if kind == "qwen3" else "modernbert")
    for f in src.iterdir():
        if f.name not in ("model.safetensors", "config.json", "expected.json"):
            if f.is_dir():
                shutil.copytree(f, d / f.name, dirs_exist_ok=True)
            else:
                shutil.copy(f, d / f.name)
    torch.manual_seed(0)
    if kind == "qwen3":
        from transformers import Qwen3Config, Qwen3Model

        tiny = json.loads((src / "config.json").read_text())
        cfg = Qwen3Config(
            **QWEN3_06B, pad_token_id=tiny["pad_token_id"], eos_token_id=tiny["eos_token_id"]
        )
        model = Qwen3Model(cfg)
        dim = 1024
    else:
        from transformers import ModernBertConfig, ModernBertModel

        tiny = json.loads((src / "config.json").read_text())
        ids = {
            k: tiny[k]
            for k in (
                "pad_token_id",
                "cls_token_id",
                "sep_token_id",
                "bos_token_id",
                "eos_token_id",
            )
        }
        model = ModernBertModel(ModernBertConfig(**MODERNBERT_BASE, **ids))
        dim = 768
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(d, safe_serialization=True)
    pool = json.loads((d / "1_Pooling" / "config.json").read_text())
    pool["word_embedding_dimension"] = dim
    if kind == "modernbert":
        pool["pooling_mode_cls_token"], pool["pooling_mode_mean_tokens"] = False, True
    (d / "1_Pooling" / "config.json").write_text(json.dumps(pool, indent=2))
    (d / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 8192, "do_lower_case": False})
    )
    return d


def texts_of(n_tokens: int, count: int) -> list[str]:
    """`count` different texts, each longer than `n_tokens` tokens (truncated to exactly N)."""
    import random

    words = (
        (TINY.parent / "make_reference.py")
        .read_text()
        .split("TINY_WORDS = (")[1]
        .split(").split()")[0]
    )
    vocab = " ".join(line.strip().strip('"') for line in words.splitlines()).split()
    out = []
    for s in range(count):
        rng = random.Random(s)
        out.append(" ".join(rng.choice(vocab) for _ in range(n_tokens * 2)))
    return out


# ---------- child processes: one engine each ----------


def status_kb(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak() -> None:
    """Resets this process's peak resident memory (VmHWM) to its current resident memory."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(args) -> None:
    """Runs one engine on one model and prints a JSON line: tokens/s, vectors, memory."""
    import numpy as np

    n, reps = args.length, args.reps
    texts = texts_of(n, reps)
    d = Path(args.model_dir)
    if args.engine.startswith("ember"):
        import ember

        dtype = args.engine.split("-")[1]
        m = ember.Embedder(str(d), dtype=dtype, threads=args.threads, max_seq_length=n)
        run = lambda t: np.asarray(m.encode([t], batch_size=1, normalize_embeddings=True))  # noqa: E731
        tokens = m.count_tokens([texts[0]])[0]
    else:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(args.threads)
        dtype = torch.bfloat16 if args.engine.endswith("bf16") else torch.float32
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModel.from_pretrained(d, dtype=dtype, attn_implementation="sdpa").eval()
        last = args.pooling == "last"

        def run(t):
            enc = tok([t], truncation=True, max_length=n, return_tensors="pt")
            with torch.inference_mode():
                h = model(**enc).last_hidden_state.float()
            v = h[:, -1] if last else h.mean(1)
            return torch.nn.functional.normalize(v, dim=-1).numpy()

        tokens = len(tok(texts[0], truncation=True, max_length=n)["input_ids"])
    # The model is loaded: what the runs hold from here on is measured from this point.
    load_peak_kb = status_kb("VmHWM")
    reset_peak()
    loaded_kb = status_kb("VmRSS")
    run(" ".join(texts[0].split()[:64]))  # warm-up (short: a long one would double the run)
    times, vecs = [], []
    for t in texts:
        start = time.perf_counter()
        vecs.append(run(t)[0])
        times.append(time.perf_counter() - start)
    hwm = status_kb("VmHWM")
    print(
        json.dumps(
            {
                "engine": args.engine,
                "tokens": tokens,
                "seconds": times,
                "load_peak_mb": load_peak_kb / 1024,
                "loaded_rss_mb": loaded_kb / 1024,
                "peak_rss_mb": hwm / 1024,
                "over_loaded_mb": (hwm - loaded_kb) / 1024,
                "vectors": np.asarray(vecs, dtype=np.float32).tolist(),
            }
        )
    )


def run_child(
    engine: str, model_dir: Path, length: int, reps: int, threads: int, pooling: str, python: str
) -> dict:
    cmd = [
        python,
        __file__,
        "child",
        "--engine",
        engine,
        "--model-dir",
        str(model_dir),
        "--length",
        str(length),
        "--reps",
        str(reps),
        "--threads",
        str(threads),
        "--pooling",
        pooling,
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), EMBER_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(
    kind: str,
    engines: list[str],
    lengths: list[int],
    rounds: int,
    reps: int,
    threads: int,
    peer_python: str,
) -> None:
    import numpy as np

    d = model_dir(kind, peer_python)
    pooling = "last" if kind == "qwen3" else "mean"
    print(
        f"{kind}: random weights at {d}, {threads} threads, {rounds} rounds (engines take turns), "
        f"{reps} texts per round"
    )
    for n in lengths:
        best: dict[str, dict] = {}
        for r in range(rounds):
            for e in engines:
                py = sys.executable if e.startswith("ember") else peer_python
                res = run_child(e, d, n, reps, threads, pooling, py)
                tps = res["tokens"] * len(res["seconds"]) / sum(res["seconds"])
                res["tokens_per_s"] = tps
                print(
                    f"  round {r + 1} {e:<12} {n:>5} tokens: {tps:9.1f} tokens/s, peak RSS "
                    f"{res['peak_rss_mb']:.0f} MB running ({res['over_loaded_mb']:.0f} MB over "
                    f"the loaded model), {res['load_peak_mb']:.0f} MB loading"
                )
                if e not in best or tps > best[e]["tokens_per_s"]:
                    best[e] = res
        ref = best.get("ember-fp32")
        base = best.get("torch-fp32")
        print(f"\n  {n} tokens (best round of each engine)")
        print(
            f"  {'engine':<12} {'tokens/s':>10} {'vs torch fp32':>14} {'peak RSS MB':>12} "
            f"{'cos to ember fp32 (mean/min)':>30}"
        )
        for e, res in best.items():
            ratio = res["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
            if ref:
                a, b = np.asarray(res["vectors"]), np.asarray(ref["vectors"])
                c = (a * b).sum(-1)
                cos = f"{c.mean():.5f} / {c.min():.5f}"
            else:
                cos = "-"
            tps, rss = res["tokens_per_s"], res["peak_rss_mb"]
            print(f"  {e:<12} {tps:>10.1f} {ratio:>13.2f}x {rss:>12.0f} {cos:>30}")
        print()


def memory(lengths: list[int], threads: int, peer_python: str) -> None:
    d = model_dir("modernbert", peer_python)
    print(
        f"ModernBERT-base shape, Ember FP32, {threads} threads, one process per length: memory "
        "over the loaded model (peak reset once loaded)"
    )
    print(
        f"  {'tokens':>6} {'over loaded MB':>15} {'KB per token':>13} {'loaded MB':>10} "
        f"{'load peak MB':>13} {'seconds':>8}"
    )
    for n in lengths:
        res = run_child("ember-fp32", d, n, 1, threads, "mean", sys.executable)
        over = res["over_loaded_mb"]
        print(
            f"  {res['tokens']:>6} {over:>15.1f} {over * 1024 / res['tokens']:>13.1f} "
            f"{res['loaded_rss_mb']:>10.0f} {res['load_peak_mb']:>13.0f} "
            f"{res['seconds'][0]:>8.2f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("qwen3", "modernbert", "memory"):
        s = sub.add_parser(name)
        s.add_argument("--threads", type=int, default=2)
        s.add_argument("--rounds", type=int, default=2)
        s.add_argument("--reps", type=int, default=3)
        s.add_argument(
            "--lengths",
            default={"qwen3": "128,1024", "modernbert": "8192", "memory": "512,2048,8192"}[name],
        )
        s.add_argument("--peer-python", default=sys.executable)
    sub.add_parser("make").add_argument("kind", choices=["qwen3", "modernbert"])
    c = sub.add_parser("child")
    for a in ("--engine", "--model-dir", "--pooling"):
        c.add_argument(a, required=True)
    for a in ("--length", "--reps", "--threads"):
        c.add_argument(a, type=int, required=True)
    args = p.parse_args()
    if args.cmd == "child":
        return child(args)
    if args.cmd == "make":
        print(make_model(args.kind))
        return None
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.cmd == "qwen3":
        compare(
            "qwen3",
            ["torch-fp32", "ember-int8", "torch-bf16", "ember-bf16", "ember-fp32"],
            lengths,
            args.rounds,
            args.reps,
            args.threads,
            args.peer_python,
        )
    elif args.cmd == "modernbert":
        compare(
            "modernbert",
            ["torch-fp32", "ember-fp32"],
            lengths,
            args.rounds,
            args.reps,
            args.threads,
            args.peer_python,
        )
    else:
        memory(lengths, args.threads, args.peer_python)


if __name__ == "__main__":
    main()
