#!/usr/bin/env python3
"""Soak test: the real server under mixed traffic for a bounded time, over more models than its
memory budget holds, so models are evicted and reloaded all along.

Several concurrent workers send native, OpenAI, Ollama and TEI requests over every (model, dtype)
pair (all-MiniLM-L6-v2 and all-mpnet-base-v2 in fp32/fp16/bf16/int8: about 1.2 GB against a
700 MB budget), plus bad requests that must get a 4xx, clients that disconnect mid-request,
Ollama ``keep_alive: 0`` and explicit unloads. Meanwhile it samples the server's RSS
(``/proc/<pid>/status``) and the manager's bytes in use against the budget (``/metrics``).

RSS is judged at two *settled* checkpoints (after ``--settle-at`` seconds and at the end): traffic
pauses, every model but the pinned default is unloaded, and RSS is read once nothing is in flight
and the batch workers of the unloaded models have stopped (they stop after 60 s idle, freeing
their per-thread scratch buffers, which are sized by the largest batch each ran). A raw sample
says which models happen to be cached at that instant (all-mpnet-base-v2 in fp32 alone is 440 MB,
far more than 5 % of the total), so only settled states are comparable; growth between them is
memory the server failed to give back (leaks, allocator fragmentation). A settled RSS above
``--settled-rss-limit`` (default: the budget) fails too: with one small model loaded, the process
must not still hold a budget's worth of freed memory.

Exits non-zero on any 5xx, transport error, good request refused (other than 429), bad request
accepted, wrong vector, settled RSS growth beyond ``--rss-tolerance`` or above the settled limit,
manager bytes over the budget, requests or queue entries left in flight after traffic stops, or a
server that does not exit 0 on SIGTERM.

    nice -n 10 python benches/soak.py   # 10 minutes; starts target/release/ember-server
    python benches/soak.py --duration 30 --settle-at 30 --settle 3   # CI: no drift check
    python benches/soak.py --url http://127.0.0.1:8080 --pid 1234   # a running server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import MINILM, MPNET, QUERIES, ROOT, Http, percentile
from soak_support import LOADED_BYTES, cosine, parse_metrics, rss_kb, start_server, threads

DIMS = {MINILM: 384, MPNET: 768}
OLLAMA_NAMES = {MINILM: "all-minilm", MPNET: "all-mpnet"}
DTYPES = ["fp32", "fp16", "bf16", "int8"]
PROBE = "The quick brown fox jumps over the lazy dog near the river bank."
# Lowest cosine of a probe vector to its fp32 reference (int8 is the loosest: >= 0.9935 on the
# reference texts, README "Performance").
MIN_PROBE_COSINE = 0.98


def vectors_of(route: str, payload: object) -> list[list[float]]:
    """The float vectors in a successful answer of `route`."""
    if route == "openai":
        return [d["embedding"] for d in payload["data"]]  # type: ignore[index]
    if route == "ollama-embeddings":
        return [payload["embedding"]]  # type: ignore[index]
    if route == "tei":
        return payload  # type: ignore[return-value]
    return payload["embeddings"]  # type: ignore[index]


# Requests that must be refused with a 4xx: (name, method, path, body, content type).
BAD_REQUESTS = [
    ("unknown model", "POST", "/api/v1/embed", b'{"input":"x","model":"no-such-model"}', None),
    ("bad dtype", "POST", "/api/v1/embed", b'{"input":"x","dtype":"fp8"}', None),
    ("empty input", "POST", "/api/v1/embed", b'{"input":[]}', None),
    ("malformed json", "POST", "/api/v1/embed", b'{"input": ["a",', None),
    ("wrong content type", "POST", "/api/v1/embed", b'{"input":"a"}', "text/plain"),
    ("dimensions 0", "POST", "/api/v1/embed", b'{"input":"a","dimensions":0}', None),
    ("too long, no truncation", "POST", "/api/v1/embed", None, None),
    ("openai unknown model", "POST", "/v1/embeddings", b'{"input":"a","model":"gpt-x"}', None),
    ("ollama unknown model", "POST", "/api/embed", b'{"input":"a","model":"nope:latest"}', None),
    ("tei inputs not text", "POST", "/embed", b'{"inputs": 42}', None),
    ("unknown route", "GET", "/api/v1/nowhere", None, None),
    ("wrong method", "GET", "/api/v1/embed", None, None),
]
LONG = json.dumps({"input": "word " * 3000, "truncate": False}).encode()


class Soak:
    def __init__(self, args: argparse.Namespace, url: str, pid: int | None):
        self.args, self.pid = args, pid
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        self.rng = random.Random(args.seed)
        self.queries = [
            json.loads(line)["text"] for line in QUERIES.read_text().splitlines() if line.strip()
        ]
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.problems: list[str] = []
        self.problem_counts: Counter = Counter()
        self.reference: dict[str, list[float]] = {}
        self.samples: list[dict] = []
        self.checkpoints: list[dict] = []
        self.running = asyncio.Event()
        self.busy = 0
        self.stop = False
        self.t0 = 0.0
        self.abandoned = 0
        self.probes = 0
        # (model, dtype) -> bytes held: from /metrics samples, and from the log of a server this
        # script started (`model loaded ... bytes=`), which misses no load however short.
        self.model_bytes: dict[tuple[str, str], float] = LOADED_BYTES

    def conn(self) -> Http:
        return Http(self.host, self.port, self.headers)

    def problem(self, kind: str, detail: str) -> None:
        self.problem_counts[kind] += 1
        if len(self.problems) < 40:
            self.problems.append(f"{time.monotonic() - self.t0:7.1f}s {kind}: {detail[:300]}")

    def texts(self, n: int, probe: bool) -> list[str]:
        out = [self.rng.choice(self.queries) for _ in range(n)]
        if probe:
            out[0] = PROBE
        return out

    # One request of each kind: returns (route label, method, path, body, content type, model,
    # probe?, expect_ok).
    def next_request(self) -> tuple:
        r = self.rng.random()
        probe = self.rng.random() < 0.2
        n = self.rng.choice([1, 1, 2, 4, 8, 16, 32])
        model = MINILM if self.rng.random() < 0.55 else MPNET
        texts = self.texts(n, probe)
        if r < 0.45:
            # The default model's default dtype is the hot path; the rest spread over the cache.
            dtype = "fp32" if model == MINILM and self.rng.random() < 0.4 else None
            dtype = dtype or self.rng.choice(DTYPES)
            body = {"input": texts, "model": model, "dtype": dtype}
            return ("native", "POST", "/api/v1/embed", body, None, model, probe, True)
        if r < 0.57:
            body = {"input": texts, "model": model}
            return ("openai", "POST", "/v1/embeddings", body, None, model, probe, True)
        if r < 0.66:
            body = {"input": texts, "model": OLLAMA_NAMES[model]}
            if self.rng.random() < 0.05 and model == MPNET:
                body["keep_alive"] = 0  # unloaded right after this request
            return ("ollama-embed", "POST", "/api/embed", body, None, model, probe, True)
        if r < 0.70:
            body = {"prompt": texts[0], "model": OLLAMA_NAMES[model]}
            return ("ollama-embeddings", "POST", "/api/embeddings", body, None, model, probe, True)
        if r < 0.80:
            body = {"inputs": texts, "model": model}
            return ("tei", "POST", "/embed", body, None, model, probe, True)
        if r < 0.93:
            name, method, path, raw, ctype = self.rng.choice(BAD_REQUESTS)
            return (f"bad: {name}", method, path, LONG if raw is None and method == "POST" else raw,
                    ctype, None, False, False)  # fmt: skip
        if r < 0.97:
            path = self.rng.choice(
                ["/api/v1/models", "/v1/models", "/api/ps", "/api/tags", "/info"]
            )
            return ("catalog", "GET", path, None, None, None, False, True)
        if r < 0.985:
            dtype = self.rng.choice(DTYPES)
            path = f"/api/v1/models/{MPNET}?dtype={dtype}"
            return ("unload", "DELETE", path, None, None, None, False, True)
        return ("abandon", "POST", "/api/v1/embed", None, None, MPNET, False, True)

    async def abandon(self) -> None:
        """A client that sends a big request and disconnects before the answer."""
        body = json.dumps(
            {"input": self.texts(256, False), "model": MPNET, "dtype": self.rng.choice(DTYPES)}
        ).encode()
        try:
            _, writer = await asyncio.open_connection(self.host, self.port)
            head = (
                f"POST /api/v1/embed HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
            await asyncio.sleep(self.rng.uniform(0.0, 0.3))
            writer.close()
            self.abandoned += 1
        except OSError as e:
            self.problem("transport", f"abandon: {e}")

    def check(self, route: str, model: str | None, probe: bool, data: bytes) -> None:
        if route in ("catalog", "unload") or model is None:
            return
        try:
            vecs = vectors_of(route, json.loads(data))
        except (ValueError, KeyError, TypeError) as e:
            self.problem("bad answer", f"{route}: {e}: {data[:200]!r}")
            return
        for v in vecs:
            norm = math.sqrt(sum(x * x for x in v))
            # Ollama's legacy /api/embeddings answers unnormalized vectors, as Ollama does.
            unit = route == "ollama-embeddings" or abs(norm - 1.0) < 1e-3
            if len(v) != DIMS[model] or not unit or not math.isfinite(norm):
                self.problem("bad vector", f"{route} {model}: dim {len(v)}, norm {norm}")
                return
        if probe and model in self.reference:
            self.probes += 1
            c = cosine(vecs[0], self.reference[model])
            if c < MIN_PROBE_COSINE:
                self.problem("wrong vector", f"{route} {model}: probe cosine {c:.4f}")

    async def worker(self, w: int) -> None:
        conn = self.conn()
        try:
            while not self.stop:
                await self.running.wait()
                if self.stop:
                    break
                route, method, path, body, ctype, model, probe, ok = self.next_request()
                self.busy += 1
                try:
                    if route == "abandon":
                        await self.abandon()
                        continue
                    raw = body if isinstance(body, (bytes, type(None))) else json.dumps(body)
                    raw = raw.encode() if isinstance(raw, str) else raw
                    t = time.perf_counter()
                    try:
                        status, data = await conn.request(
                            method, path, raw, ctype or "application/json"
                        )
                    except (OSError, ConnectionError, asyncio.IncompleteReadError) as e:
                        conn.close()
                        self.statuses[route][0] += 1
                        self.problem("transport", f"{route} {path}: {e!r}")
                        continue
                    except asyncio.TimeoutError:
                        conn.close()
                        self.statuses[route][0] += 1
                        self.problem("timeout", f"{route} {path}")
                        continue
                    self.latency[route].append((time.perf_counter() - t) * 1e3)
                    self.statuses[route][status] += 1
                    if status >= 500:
                        self.problem("5xx", f"{route} {path} -> {status}: {data[:300]!r}")
                    elif not ok and not 400 <= status < 500:
                        self.problem("bad request accepted", f"{route} -> {status}")
                    elif ok and status == 200:
                        self.check(route, model, probe, data)
                    elif ok and status == 400 and route == "unload":
                        pass  # nothing of that dtype was loaded
                    elif ok and status != 429:
                        self.problem("refused", f"{route} {path} -> {status}: {data[:300]!r}")
                finally:
                    self.busy -= 1
        finally:
            conn.close()

    async def metrics(self, conn: Http) -> dict[str, float]:
        status, data = await conn.request("GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(data.decode())

    async def sampler(self) -> None:
        conn = self.conn()
        last_rss = -1e9
        while not self.stop:
            t = time.monotonic() - self.t0
            try:
                m = await self.metrics(conn)
            except (OSError, ConnectionError, RuntimeError, asyncio.TimeoutError) as e:
                conn.close()
                self.problem("metrics", repr(e))
                await asyncio.sleep(self.args.sample_every)
                continue
            s = {
                "t": round(t, 2),
                "bytes_in_use": m.get("ember_memory_bytes_in_use", 0.0),
                "budget": m.get("ember_memory_bytes_budget"),
                "models_loaded": m.get("ember_models_loaded", 0.0),
            }
            if t - last_rss >= self.args.rss_every:
                s["rss_kb"] = rss_kb(self.pid)
                last_rss = t
            for k, v in m.items():
                labels = re.fullmatch(r'ember_model_bytes\{model="(.+)",dtype="(\w+)"\}', k)
                if labels:
                    key = (labels.group(1), labels.group(2))
                    self.model_bytes[key] = max(v, self.model_bytes.get(key, 0.0))
            if s["budget"] is not None and s["bytes_in_use"] > s["budget"]:
                self.problem("over budget", f"{s['bytes_in_use']:.0f} > {s['budget']:.0f}")
            self.samples.append(s)
            await asyncio.sleep(self.args.sample_every)
        conn.close()

    async def checkpoint(self, label: str) -> dict:
        """Pauses traffic, unloads every unpinned model, and reads RSS once memory settled."""
        self.running.clear()
        while self.busy:
            await asyncio.sleep(0.05)
        conn = self.conn()
        try:
            for model in DIMS:
                await conn.request("DELETE", f"/api/v1/models/{model}")
            deadline = time.monotonic() + 60
            while True:
                m = await self.metrics(conn)
                depth = sum(v for k, v in m.items() if k.startswith("ember_queue_depth"))
                settled = (
                    m.get("ember_models_loaded") == 1
                    and m.get("ember_memory_bytes_draining", 0) == 0
                    and m.get("ember_inflight_requests", 0) == 0
                    and depth == 0
                )
                if settled or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            if not settled:
                self.problem(
                    "not settled",
                    f"{label}: loaded {m.get('ember_models_loaded')}, in flight "
                    f"{m.get('ember_inflight_requests')}, queued {depth}",
                )
            # Idle batch workers stop after 60 s; the manager hands freed memory back within 10 s.
            await asyncio.sleep(self.args.settle)
            rss = [rss_kb(self.pid) for _ in range(3)]
            cp = {
                "label": label,
                "t": round(time.monotonic() - self.t0, 1),
                "rss_kb": min((r for r in rss if r is not None), default=None),
                "threads": threads(self.pid),
                "bytes_in_use": m.get("ember_memory_bytes_in_use"),
                "inflight": m.get("ember_inflight_requests"),
                "queued": depth,
            }
            self.checkpoints.append(cp)
            print(f"[soak] checkpoint {json.dumps(cp)}", flush=True)
            return cp
        finally:
            conn.close()
            self.running.set()

    async def fetch_references(self) -> None:
        conn = self.conn()
        try:
            for model in DIMS:
                body = json.dumps({"input": [PROBE], "model": model, "dtype": "fp32"}).encode()
                status, data = await conn.request("POST", "/api/v1/embed", body)
                if status != 200:
                    raise SystemExit(f"reference for {model}: {status} {data[:300]!r}")
                self.reference[model] = json.loads(data)["embeddings"][0]
        finally:
            conn.close()

    async def run(self) -> dict:
        await self.fetch_references()
        self.t0 = time.monotonic()
        self.running.set()
        sampler = asyncio.create_task(self.sampler())
        workers = [asyncio.create_task(self.worker(w)) for w in range(self.args.workers)]
        end = self.t0 + self.args.duration
        first = self.t0 + self.args.settle_at
        if self.args.settle_at < self.args.duration:
            await asyncio.sleep(max(0.0, first - time.monotonic()))
            await self.checkpoint("first")
        while time.monotonic() < end:
            await asyncio.sleep(min(10.0, end - time.monotonic()))
            done = time.monotonic() - self.t0
            total = sum(sum(c.values()) for c in self.statuses.values())
            print(
                f"[soak] {done:6.0f}s {total} requests, problems {dict(self.problem_counts)}",
                flush=True,
            )
        await self.checkpoint("end")
        self.stop = True
        self.running.set()
        await asyncio.gather(*workers)
        await sampler
        conn = self.conn()
        try:
            final = await self.metrics(conn)
        finally:
            conn.close()
        return self.summary(final)

    def summary(self, final: dict[str, float]) -> dict:
        budget = final.get("ember_memory_bytes_budget")
        peak = max((s["bytes_in_use"] for s in self.samples), default=0.0)
        rss = [s for s in self.samples if s.get("rss_kb")]
        at_first = next((s for s in rss if s["t"] >= self.args.settle_at), None)
        cps = {c["label"]: c for c in self.checkpoints}
        drift = None
        if "first" in cps and "end" in cps and cps["first"]["rss_kb"] and cps["end"]["rss_kb"]:
            drift = cps["end"]["rss_kb"] / cps["first"]["rss_kb"] - 1.0
        evictions = {
            k.split('"')[1]: int(v)
            for k, v in final.items()
            if k.startswith("ember_model_evictions_total{")
        }
        statuses = {r: dict(sorted(c.items())) for r, c in sorted(self.statuses.items())}
        five = sum(n for c in self.statuses.values() for s, n in c.items() if s >= 500)
        return {
            "duration_s": self.args.duration,
            "workers": self.args.workers,
            "requests": sum(sum(c.values()) for c in self.statuses.values()),
            "abandoned": self.abandoned,
            "probes_checked": self.probes,
            "statuses": statuses,
            "five_xx": five,
            "p50_p99_ms": {
                r: [round(percentile(sorted(v), 50), 1), round(percentile(sorted(v), 99), 1)]
                for r, v in sorted(self.latency.items())
            },
            "loads": int(final.get("ember_model_loads_total", 0)),
            "load_failures": int(final.get("ember_model_load_failures_total", 0)),
            "evictions": evictions,
            "budget_bytes": budget,
            "peak_bytes_in_use": peak,
            # Every (model, dtype) served, at its size: what would be held without a budget.
            "models_served": len(self.model_bytes),
            "models_bytes_total": sum(self.model_bytes.values()),
            "rss_kb_raw_at_first_minute": at_first["rss_kb"] if at_first else None,
            "rss_kb_raw_end": rss[-1]["rss_kb"] if rss else None,
            "rss_kb_peak": max((s["rss_kb"] for s in rss), default=None),
            "checkpoints": self.checkpoints,
            "rss_settled_drift": drift,
            "problems": dict(self.problem_counts),
            "problem_examples": self.problems,
        }


def verdict(s: dict, args: argparse.Namespace, exit_code: int | None) -> list[str]:
    """Every failed criterion, as a sentence."""
    failed = []
    if s["five_xx"]:
        failed.append(f"{s['five_xx']} answers were 5xx")
    for kind in ("transport", "timeout", "refused", "bad request accepted", "bad answer",
                 "bad vector", "wrong vector", "not settled", "metrics"):  # fmt: skip
        if s["problems"].get(kind):
            failed.append(f"{s['problems'][kind]} x {kind}")
    if s["problems"].get("over budget"):
        failed.append(f"the budget was exceeded in {s['problems']['over budget']} samples")
    # Only growth fails: memory given back between the checkpoints is no leak.
    if s["rss_settled_drift"] is not None and s["rss_settled_drift"] > args.rss_tolerance:
        failed.append(
            f"settled RSS grew {100 * s['rss_settled_drift']:+.1f} % between the checkpoints "
            f"(tolerance {100 * args.rss_tolerance:.0f} %)"
        )
    limit = args.settled_rss_limit
    if limit is None and s["budget_bytes"]:
        limit = s["budget_bytes"] / 1e6
    for cp in s["checkpoints"]:
        if limit and cp["rss_kb"] and cp["rss_kb"] * 1024 > limit * 1e6:
            failed.append(
                f"settled RSS at the {cp['label']} checkpoint is {cp['rss_kb'] / 1024:.0f} MiB, "
                f"over the {limit:.0f} MB limit"
            )
    if exit_code not in (None, 0):
        failed.append(f"the server exited {exit_code} on SIGTERM")
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", help="a running server (loopback only); default: start one")
    ap.add_argument("--pid", type=int, help="with --url: the server's pid, for RSS")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "ember-server"))
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    ap.add_argument("--settle-at", type=float, default=60.0, help="first RSS checkpoint (s)")
    ap.add_argument(
        "--settle",
        type=float,
        default=75.0,
        help="seconds idle before reading RSS (idle workers stop after 60 s; freed memory is "
        "handed back within 10 s more)",
    )
    ap.add_argument(
        "--settled-rss-limit", type=float, help="MB a settled RSS must stay under (default: budget)"
    )
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--max-memory", default="700MB", help="the server's budget (when started)")
    ap.add_argument("--max-models", type=int, default=6)
    ap.add_argument("--sample-every", type=float, default=0.5, help="seconds between /metrics")
    ap.add_argument("--rss-every", type=float, default=2.0, help="seconds between RSS samples")
    ap.add_argument("--rss-tolerance", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--api-key", default=os.environ.get("EMBER_API_KEY"))
    ap.add_argument("--server-log", help="write the started server's log here")
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args()

    proc, pid = None, args.pid
    if args.url:
        url = args.url.rstrip("/")
    else:
        proc, url = start_server(args)
        pid = proc.pid
    if urllib.parse.urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        ap.error("the soak runs on loopback only")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    exit_code = None
    try:
        summary = asyncio.run(Soak(args, url, pid).run())
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                exit_code = proc.wait()
    summary["started_utc"] = started
    summary["server_exit"] = exit_code
    failed = verdict(summary, args, exit_code)
    summary["failed"] = failed
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    print("\n[soak] " + ("PASS" if not failed else "FAIL: " + "; ".join(failed)), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
