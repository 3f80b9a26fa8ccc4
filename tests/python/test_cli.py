"""The `ember` command line, run as `python -m ember` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import requests

import ember
from conftest import ember_server, real_model, tiny_dir

TINY = str(tiny_dir("bert"))


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ember", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_console_script_is_declared() -> None:
    scripts = entry_points(group="console_scripts")
    assert any(ep.name == "ember" and ep.value == "ember.cli:main" for ep in scripts)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ["serve", "embed", "models", "download", "bench"]),
        # The server's own flags, each with its EMBER_* variable.
        (
            ("serve",),
            [
                *("--host", "--port", "--model", "--default-model", "--models-file", "--config"),
                *("--api-key", "--max-batch-tokens", "--model-roots", "--keep-alive"),
                *("EMBER_PORT", "EMBER_MAX_MEMORY"),
            ],
        ),
        (("embed",), ["TEXT", "--model", "--json"]),
        (("models",), ["--loaded", "--url", "--json"]),
        (("download",), ["MODEL", "--quiet", "progress"]),
        (("bench",), ["--model", "--dtype", "--batch-sizes", "--texts", "--threads"]),
    ],
)
def test_help(args: tuple[str, ...], expected: list[str]) -> None:
    out = run(*args, "--help")
    assert out.returncode == 0, out.stderr
    for word in expected:
        assert word in out.stdout


def test_serve_rejects_a_bad_flag_value_before_starting() -> None:
    out = run("serve", "--port", "eighty")
    assert out.returncode == 2
    assert "--port" in out.stderr and "eighty" in out.stderr, out.stderr


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0, out.stderr
    k = ember.kernels()
    assert out.stdout.strip() == (
        f"ember {ember.__version__} (kernels: f32 {k['f32']}, int8 {k['int8']}; "
        f"{k['threads']} threads)"
    )


def test_embed_prints_one_vector_per_line() -> None:
    out = run("embed", "hello world", "a", "--model", TINY)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 2 and all(len(r) == 32 for r in rows)
    want = ember.Embedder(TINY).embed(["hello world", "a"])
    assert abs(rows[0][0] - float(want[0, 0])) < 1e-6


def test_embed_json_and_stdin() -> None:
    out = run("embed", "-", "--model", TINY, "--json", "--dimensions", "8", stdin="one\ntwo\n")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["model"] == TINY and doc["dimension"] == 8
    assert len(doc["embeddings"]) == 2 and len(doc["embeddings"][0]) == 8


def test_embed_max_input_tokens_cuts_inputs_at_the_cap() -> None:
    text = "hello world " * 40
    want = ember.Embedder(TINY, max_seq_length=8).embed([text])[0]
    full = ember.Embedder(TINY).embed([text])[0]
    flag = run("embed", text, "--model", TINY, "--max-input-tokens", "8")
    env = run("embed", text, "--model", TINY, EMBER_MAX_INPUT_TOKENS="8")
    for out in (flag, env):
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert max(abs(a - float(b)) for a, b in zip(got, want)) < 1e-5
        assert max(abs(a - float(b)) for a, b in zip(got, full)) > 1e-3
    zero = run("embed", "x", "--model", TINY, "--max-input-tokens", "0")
    assert zero.returncode == 2 and "--max-input-tokens" in zero.stderr, zero.stderr


def test_embed_errors_are_one_line() -> None:
    out = run("embed", "x", "--model", "no-such-model")
    assert out.returncode == 1
    assert out.stderr.startswith("ember: error: unknown model `no-such-model`")
    assert "Traceback" not in out.stderr


def test_models_table() -> None:
    # A port nothing listens on: the state shown is this process's, and the output says so.
    nobody = str(free_port())
    out = run("models", EMBER_PORT=nobody)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["id", "kind", "dim", "max", "len", "arch", "supported", "loaded"]
    minilm = next(line for line in lines if line.startswith("all-MiniLM-L6-v2"))
    assert minilm.split() == [
        "all-MiniLM-L6-v2",
        "*",
        "embedder",
        "384",
        "256",
        "bert",
        "yes",
        "no",
    ]
    assert any(line.split()[:1] == ["nomic-embed-text-v2-moe"] and " no " in line for line in lines)
    assert lines[-1].startswith(f"(no Ember server answered at http://127.0.0.1:{nobody}")
    assert "load state of this process" in lines[-1]
    # Nothing is loaded in a fresh process.
    loaded = run("models", "--loaded", EMBER_PORT=nobody)
    assert loaded.returncode == 0 and len(loaded.stdout.splitlines()) == 3
    as_json = run("models", "--json", EMBER_PORT=nobody)
    ids = {m["id"] for m in json.loads(as_json.stdout)}
    assert ids >= {"all-MiniLM-L6-v2", "all-mpnet-base-v2"}
    assert "load state of this process" in as_json.stderr


def test_models_asks_the_local_server_first(tmp_path: Path) -> None:
    with ember_server(tmp_path, "--default-model", TINY) as base:
        port = base.rsplit(":", 1)[1]
        out = run("models", "--loaded", EMBER_PORT=port)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith(TINY) and line.split()[-1] == "yes" for line in lines), lines
    assert lines[-1] == f"(load state of the server at http://127.0.0.1:{port})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_serve_answers_and_stops_on_ctrl_c() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ember", "serve", "--port", str(port), "--model", TINY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EMBER_DEFAULT_MODEL": TINY},
    )
    try:
        deadline = time.monotonic() + 120
        answered = None
        while answered is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                answered = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            except requests.ConnectionError:
                time.sleep(0.2)
        if proc.poll() is not None:
            _, stderr = proc.communicate()
            if "not yet" in stderr:
                pytest.skip("ember-server's serve_blocking is still a stub")
            pytest.fail(f"ember serve exited with {proc.returncode}: {stderr}")
        assert answered is not None, "the server did not answer within 120 s"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode in (0, 130, -signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_download_prints_the_model_directory() -> None:
    real_model("all-MiniLM-L6-v2")
    out = run("download", "all-minilm")
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    assert out.stdout.strip() == ember.download_model("all-MiniLM-L6-v2", progress=False)
    missing = run("download", "no-such-model")
    assert missing.returncode == 1 and missing.stderr.startswith("ember: error: unknown model")


def test_bench_prints_tokens_per_second() -> None:
    out = run("bench", "--model", TINY, "--batch-sizes", "1,4", "--texts", "20", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["model"] == TINY and doc["dtype"] == "fp32"
    assert doc["threads"] == ember.kernels()["threads"]
    assert [r["batch_size"] for r in doc["runs"]] == [1, 4]
    assert all(r["texts"] == 20 and r["tokens"] > 20 and r["tokens_per_s"] > 0 for r in doc["runs"])
    table = run("bench", "--model", TINY, "--batch-sizes", "2", "--texts", "5", "--dtype", "int8")
    assert table.returncode == 0, table.stderr
    assert "(int8)" in table.stdout and "tokens/s" in table.stdout
    bad = run("bench", "--model", TINY, "--batch-sizes", "0")
    assert bad.returncode == 1 and "--batch-sizes" in bad.stderr


def test_bench_threads_size_the_pool() -> None:
    # Building the parser must not size the thread pool before `--threads` is read.
    args = ("--batch-sizes", "2", "--texts", "5", "--threads", "1", "--json")
    out = run("bench", "--model", TINY, *args)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["threads"] == 1
    assert "ignored" not in out.stderr, out.stderr


def test_bench_corpus_ships_in_the_package() -> None:
    from ember.cli import corpus

    texts = corpus()
    assert len(texts) == 200 and all(isinstance(t, str) and t for t in texts)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_serve_config_file_preloads_models_in_their_dtype(tmp_path: Path) -> None:
    mpnet = str(tiny_dir("mpnet"))
    config = tmp_path / "ember.toml"
    config.write_text(
        f'default_model = "{TINY}"\n\n[[models]]\nid = "{mpnet}"\ndtype = "int8"\n',
        encoding="utf-8",
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ember", "serve", "--port", str(port), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, "ember serve exited early"
            try:
                if requests.get(f"{base}/health/ready", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        models = requests.get(f"{base}/api/v1/models", timeout=10).json()["models"]
        entry = next(m for m in models if m["id"] == mpnet)
        assert [i["dtype"] for i in entry["instances"]] == ["int8"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
