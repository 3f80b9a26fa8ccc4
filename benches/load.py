#!/usr/bin/env python3
"""Load benchmark for a running Ember server, on loopback only.

Sends short queries (``benches/data/queries.jsonl``, one query per request) to
``POST /api/v1/embed`` at fixed concurrency levels and reports QPS and p50/p95/p99 latency; then
mixed traffic across two models. Each scenario is bounded both in requests and in seconds.

The client is a small asyncio HTTP/1.1 client over keep-alive connections (standard library only,
so it takes as little CPU as possible from the server on a small machine).

    # against a running server
    python benches/load.py --url http://127.0.0.1:8080

    # or let the script start target/release/ember-server on a free port and stop it after
    python benches/load.py --start

Figures are only comparable within one run on one machine; note what else was running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "benches" / "data" / "queries.jsonl"
MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"


class Http:
    """One keep-alive HTTP/1.1 connection (standard library only: the CPU is for the server)."""

    def __init__(self, host: str, port: int, headers: dict[str, str], timeout: float = 180.0):
        self.host, self.port, self.headers, self.timeout = host, port, headers, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        ctype: str = "application/json",
    ) -> tuple[int, bytes]:
        return await asyncio.wait_for(self._request(method, path, body, ctype), self.timeout)

    async def _request(
        self, method: str, path: str, body: bytes | None, ctype: str
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{extra}"
        if body is not None:
            head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head + "\r\n").encode() + (body or b""))
        await self.writer.drain()
        assert self.reader is not None
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close, chunked = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.lower() == "close":
                close = True
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
        else:
            data = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, data

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.request("POST", path, body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(q / 100 * (len(sorted_ms) - 1))))
    return sorted_ms[k]


async def scenario(
    url: str,
    models: list[str],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    headers: dict[str, str],
) -> dict:
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    queries = [
        json.loads(line)["text"] for line in QUERIES.read_text().splitlines() if line.strip()
    ]
    latencies: list[float] = []
    per_model: dict[str, list[float]] = {m: [] for m in models}
    errors: dict[int, int] = {}
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def worker(w: int) -> None:
        nonlocal issued
        conn = Http(host, port, headers)
        try:
            while issued < max_requests and time.perf_counter() < deadline:
                i = issued
                issued += 1
                model = models[i % len(models)]
                body = json.dumps({"input": queries[i % len(queries)], "model": model}).encode()
                t0 = time.perf_counter()
                try:
                    status, _ = await conn.post("/api/v1/embed", body)
                except (ConnectionError, OSError, asyncio.IncompleteReadError):
                    conn.close()
                    status = 0
                ms = (time.perf_counter() - t0) * 1e3
                if status == 200:
                    latencies.append(ms)
                    per_model[model].append(ms)
                else:
                    errors[status] = errors.get(status, 0) + 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall = time.perf_counter() - t0
    latencies.sort()
    out = {
        "models": models,
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "qps": round(len(latencies) / wall, 1) if wall > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }
    if len(models) > 1:
        out["per_model_p50_p95_ms"] = {
            m: [round(percentile(sorted(v), 50), 2), round(percentile(sorted(v), 95), 2)]
            for m, v in per_model.items()
        }
    return out


def start_server(binary: Path, models: list[str]) -> tuple[subprocess.Popen, str]:
    """Starts the server on a free loopback port; returns it and its URL once ready."""
    cmd = [str(binary), "--host", "127.0.0.1", "--port", "0", "--model", ",".join(models)]
    env = dict(os.environ, NO_COLOR="1", EMBER_LOG=os.environ.get("EMBER_LOG", "info"))
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://{listening_address(proc)}"
    # Drain the log so the pipe never blocks the server.
    threading.Thread(target=drain, args=(proc.stderr,), daemon=True).start()
    wait_ready(url, 300)
    return proc, url


def listening_address(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Reads the server's log until it says where it listens; exits (killing it) if it never
    does. The last log lines go into the error when the server dies first."""
    assert proc.stderr is not None
    start = time.time()
    tail: list[str] = []
    while time.time() - start < timeout:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"server exited early ({proc.poll()}):\n{''.join(tail)}")
        tail = [*tail[-20:], line]
        m = re.search(r"ember listening.*addr=([0-9.]+:[0-9]+)", line)
        if m:
            return m.group(1)
    proc.kill()
    raise SystemExit("server never logged its address")


def drain(stream) -> None:
    for _ in stream:
        pass


def wait_ready(url: str, seconds: float) -> None:
    start = time.time()
    while time.time() - start < seconds:
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} never became ready")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", help="a running server (loopback only)")
    ap.add_argument("--start", action="store_true", help="start target/release/ember-server")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "ember-server"))
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=2000, help="most requests per scenario")
    ap.add_argument("--seconds", type=float, default=20.0, help="most seconds per scenario")
    ap.add_argument("--warmup", type=int, default=50, help="untimed requests per model first")
    ap.add_argument("--no-mixed", action="store_true", help="skip the two-model scenario")
    ap.add_argument("--api-key", default=os.environ.get("EMBER_API_KEY"))
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    proc = None
    if args.start:
        proc, url = start_server(Path(args.binary), [MINILM, MPNET])
    elif args.url:
        url = args.url.rstrip("/")
    else:
        ap.error("give --url or --start")
    host = urllib.parse.urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("this benchmark runs on loopback only")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}

    results = []
    try:
        for model in [MINILM] + ([] if args.no_mixed else [MPNET]):
            asyncio.run(scenario(url, [model], 4, args.warmup, 30, headers))
        for c in [int(x) for x in args.concurrency.split(",")]:
            r = asyncio.run(scenario(url, [MINILM], c, args.requests, args.seconds, headers))
            results.append(r)
            print(json.dumps(r), flush=True)
        if not args.no_mixed:
            for c in (8, 32):
                r = asyncio.run(
                    scenario(url, [MINILM, MPNET], c, args.requests, args.seconds, headers)
                )
                results.append(r)
                print(json.dumps(r), flush=True)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    print("\n| models | concurrency | requests | errors | QPS | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        errs = sum(r["errors"].values())
        print(
            f"| {'+'.join(r['models'])} | {r['concurrency']} | {r['requests']} | {errs} | "
            f"{r['qps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
