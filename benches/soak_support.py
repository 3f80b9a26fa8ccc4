"""Helpers of `benches/soak.py`: `/metrics` and `/proc` readers, and starting the real server
with the soak's budget while reading its log (the HTTP client is `load.Http`)."""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import listening_address, wait_ready


def parse_metrics(text: str) -> dict[str, float]:
    """`name{labels} value` lines into {"name{labels}": value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
    return int(m.group(1)) if m else None


def threads(pid: int | None) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text() if pid else ""
    except OSError:
        return None
    m = re.search(r"^Threads:\s+(\d+)", status, re.M)
    return int(m.group(1)) if m else None


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """Starts the server on a free loopback port with the soak's budget; returns it and its URL."""
    binary = Path(args.binary)
    if binary.is_file():
        cmd = [str(binary)]
    else:
        cmd = [sys.executable, "-m", "ember", "serve"]
    cmd += ["--host", "127.0.0.1", "--port", "0"]
    env = dict(
        os.environ,
        NO_COLOR="1",
        HF_HUB_OFFLINE="1",
        EMBER_LOG=os.environ.get("EMBER_LOG", "info"),
        EMBER_MAX_MEMORY=args.max_memory,
        EMBER_MAX_MODELS=str(args.max_models),
    )
    for var in ("EMBER_CONFIG", "EMBER_API_KEYS", "EMBER_ADMIN_KEY", "EMBER_KEEP_ALIVE"):
        env.pop(var, None)
    print(f"[soak] starting {' '.join(cmd)} (budget {args.max_memory})", flush=True)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    addr = listening_address(proc)
    log = open(args.server_log, "w") if args.server_log else None
    threading.Thread(target=read_log, args=(proc.stderr, log), daemon=True).start()
    url = f"http://{addr}"
    wait_ready(url, 300)
    return proc, url


LOADED_BYTES: dict[tuple[str, str], float] = {}
LOADED = re.compile(r'model loaded model="([^"]+)" dtype=(\w+) .*bytes=(\d+)')


def read_log(stream, out) -> None:
    """Keeps the server's log flowing (to `out`, if any) and notes each model's size."""
    for line in stream:
        m = LOADED.search(line)
        if m:
            LOADED_BYTES[(m.group(1), m.group(2))] = float(m.group(3))
        if out is not None:
            out.write(line)
    if out is not None:
        out.close()
