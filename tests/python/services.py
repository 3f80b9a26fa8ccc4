"""Real services for the indexing tests, each started once per test run (session fixtures) and
stopped at its end: Postgres with pgvector (the `pgserver` wheel: PostgreSQL 16 with pgvector,
listening on a Unix socket in a temporary directory, so no port is shared with anyone) and a
local Ray cluster (`ray start --head` plus one worker node, one CPU each, on free ports). A pytest
plugin (`conftest.py` names it in `pytest_plugins`), so the tests ask for the fixtures by name."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh Postgres database URL with pgvector available (skips when pgserver is absent
    unless EMBER_REQUIRE_SERVICES=1)."""
    # Unix socket paths are limited to ~107 bytes: a short directory under /tmp.
    root = Path(tempfile.mkdtemp(prefix="ember-pg-", dir="/tmp"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver  # type: ignore[import-not-found]
    except ImportError:
        shutil.rmtree(root, ignore_errors=True)
        if os.environ.get("EMBER_REQUIRE_SERVICES") == "1":
            raise
        pytest.skip("pgserver is not installed (pip install pgserver)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(root / "data", cleanup_mode="stop")
    try:
        server.psql("CREATE DATABASE ember_test;")
        url = server.get_uri("ember_test")
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own process group, so the test can stop exactly the
    processes it started (`ray stop` would stop every Ray process of the machine)."""
    # Ray's console script by module, so it is found in a venv and without one alike.
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address of a local Ray cluster: a head node and a worker node, one CPU each."""
    try:
        import ray  # type: ignore[import-not-found]
    except ImportError:
        if os.environ.get("EMBER_REQUIRE_SERVICES") == "1":
            raise
        pytest.skip("ray is not installed (pip install 'ray[data]')")
    temp = Path(tempfile.mkdtemp(prefix="ember-ray-", dir="/tmp"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "EMBER_NUM_THREADS": "1"}
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    procs = []
    try:
        procs.append(
            _start(
                [
                    "--head",
                    f"--port={port}",
                    "--include-dashboard=false",
                    f"--temp-dir={temp}",
                    *common,
                    *_node_ports(),
                ],
                env,
                temp / "head.log",
            )
        )
        _wait_for_port(port, procs[0], temp / "head.log")
        procs.append(
            _start(
                [
                    f"--address={address}",
                    *common,
                    *_node_ports(),
                ],
                env,
                temp / "worker.log",
            )
        )
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        deadline = time.monotonic() + 120
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            assert procs[1].poll() is None, (temp / "worker.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "the Ray worker node never joined"
            time.sleep(0.5)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _node_ports() -> list[str]:
    """Free ports for every service of a node that would otherwise take a fixed one."""
    flags = (
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "metrics-export-port",
        "runtime-env-agent-port",
    )
    low = free_port()
    return [f"--{f}={free_port()}" for f in flags] + [
        f"--min-worker-port={low}",
        f"--max-worker-port={low + 100}",
    ]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, "the Ray head never listened"
        time.sleep(0.3)
