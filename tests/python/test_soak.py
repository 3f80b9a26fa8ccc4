"""The soak (`benches/soak.py`) for 30 seconds against the real server, and the faults table.

The 30-second soak checks what holds at any length: no 5xx, bad requests answered 4xx, correct
vectors, the manager's bytes never over the budget, models actually evicted and reloaded, every
request slot and queue entry back to zero once traffic stops, the settled RSS (one small model
left) under the budget, exit 0 on SIGTERM. It does not check RSS *drift*: that needs a baseline
after a minute of traffic and settled checkpoints after the idle batch workers stop (60 s each),
about 3 minutes more than CI can spend, and 30 seconds is too short for drift to mean anything.
The settled-RSS limit is what catches memory not given back (before `malloc_trim` it was 2.4 GB
against the 700 MB budget within 35 s). The 10-minute run and its figures: `docs/faults.md`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from test_docs import TEST_REF, python_test_exists, rust_test_exists

from conftest import REPO

SOAK = REPO / "benches" / "soak.py"
FAULTS = REPO / "docs" / "faults.md"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_soak_30_seconds(tmp_path) -> None:
    out_json = tmp_path / "soak.json"
    log = tmp_path / "server.log"
    cmd = [sys.executable, str(SOAK), "--duration", "30", "--settle-at", "30", "--settle", "3"]
    cmd += ["--sample-every", "0.2", "--json", str(out_json), "--server-log", str(log)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=220, check=False)
    output = run.stdout + run.stderr
    if "reference for" in output and not out_json.exists():
        # A real model is missing (only CI insists on them).
        if os.environ.get("EMBER_REQUIRE_REAL_MODELS") == "1":
            pytest.fail(output)
        pytest.skip("the soak needs all-MiniLM-L6-v2 and all-mpnet-base-v2 installed")
    server_log = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    assert run.returncode == 0, output[-4000:] + "\n--- server log ---\n" + server_log
    s = json.loads(out_json.read_text())

    assert s["five_xx"] == 0 and s["failed"] == [] and s["problems"] == {}, s
    assert s["server_exit"] == 0
    # Every dialect was exercised and answered; every bad request got a 4xx.
    for route in ("native", "openai", "ollama-embed", "tei"):
        assert s["statuses"].get(route, {}).get("200", 0) > 0, (route, s["statuses"])
    bad = {r: c for r, c in s["statuses"].items() if r.startswith("bad: ")}
    assert bad and all(400 <= int(code) < 500 for c in bad.values() for code in c), bad
    assert s["probes_checked"] > 0
    # More models than the budget holds, so models were evicted and loaded again. The sizes are
    # sampled from /metrics, so on a slow machine a model loaded and evicted between two samples
    # is missed: an eviction for memory shows the same thing directly.
    assert s["models_bytes_total"] > s["budget_bytes"] or s["evictions"]["memory"] > 0, s
    assert s["evictions"]["memory"] + s["evictions"]["lru"] > 0, s["evictions"]
    assert s["loads"] > s["models_served"], (s["loads"], s["models_served"])
    assert 0 < s["peak_bytes_in_use"] <= s["budget_bytes"]
    # Traffic stopped: nothing left in flight, one model loaded, RSS under the budget.
    (end,) = s["checkpoints"]
    assert end["inflight"] == 0 and end["queued"] == 0, end
    assert 0 < end["rss_kb"] * 1024 < s["budget_bytes"], end


def test_faults_table_names_existing_tests() -> None:
    text = FAULTS.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    assert len(rows) >= 20, f"{len(rows)} rows"
    numbers = [int(line.split("|")[1]) for line in rows]
    assert numbers == list(range(1, len(rows) + 1)), "rows are numbered 1, 2, 3, ..."
    missing = []
    for line in rows:
        refs = TEST_REF.findall(line.rsplit("|", 2)[-2])
        assert refs, f"row names no test: {line}"
        for path, name in refs:
            file = REPO / path
            body = file.read_text(encoding="utf-8") if file.is_file() else ""
            exists = rust_test_exists if path.endswith(".rs") else python_test_exists
            if not exists(body, name):
                missing.append(f"{path}::{name}")
    assert not missing, f"docs/faults.md names tests that do not exist: {missing}"
