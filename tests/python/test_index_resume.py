"""Interrupted index runs resume: `ember index` killed with SIGKILL (or stopped with Ctrl-C)
mid-run, then run again, leaves tables identical to an uninterrupted run; and every `ember`
command ends quietly on a closed pipe and on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from index_support import assert_same_index, bench_corpus, connect, snapshot, write_jsonl

MODEL = "all-MiniLM-L6-v2"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBER_LOG": "warn"}


def ember(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ember", *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def done_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = connect(db)
        try:
            return conn.execute("SELECT count(*) FROM status WHERE state = 'done'").fetchone()[0]
        finally:
            conn.close()
    except Exception:  # the schema may not exist yet
        return 0


def interrupt_when_some_are_done(proc: subprocess.Popen, db: Path, sig: int, total: int) -> int:
    """Sends `sig` once some rows (but not all) are written; returns the rows done then."""
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None, proc.communicate()[1].decode()
        done = done_rows(db)
        if 0 < done < total:
            proc.send_signal(sig)
            return done
        assert time.monotonic() < deadline, "the run never wrote a batch"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_same_tables(tmp_path, minilm):
    rows = bench_corpus(300)
    src = write_jsonl(tmp_path / "corpus.jsonl", rows)
    args = ["index", str(src), "-m", MODEL, "--batch-size", "16", "--quiet"]

    whole = tmp_path / "whole.db"
    out = ember(*args, "--db", str(whole))
    _, stderr = out.communicate(timeout=600)
    assert out.returncode == 0, stderr.decode()

    killed = tmp_path / "killed.db"
    proc = ember(*args, "--db", str(killed))
    interrupt_when_some_are_done(proc, killed, signal.SIGKILL, len(rows))
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    kept = done_rows(killed)
    assert 0 < kept < len(rows)
    conn = connect(killed)
    # Whole batches only: every vector belongs to a done row, every done row has its vector.
    (vectors,) = conn.execute("SELECT count(*) FROM embeddings_all_minilm_l6_v2_384").fetchone()
    assert vectors == kept
    conn.close()

    resume = ember(*args[:-1], "--db", str(killed))
    stdout, stderr = resume.communicate(timeout=600)
    assert resume.returncode == 0, stderr.decode()
    summary = json.loads(stdout)["models"][0]
    assert summary["skipped"] == kept and summary["embedded"] == len(rows) - kept
    assert_same_index(snapshot(killed), snapshot(whole))


def test_ctrl_c_mid_run_exits_quietly_and_resumes(tmp_path, minilm):
    rows = bench_corpus(400)
    src = write_jsonl(tmp_path / "corpus.jsonl", rows)
    # The signal goes out as soon as some rows are done, but a busy machine can hold this process
    # back long enough for the run to finish first (it did, once, at load 10): that lost race says
    # nothing about Ctrl-C, so it is run again on a fresh database, up to three times.
    for attempt in range(3):
        db = tmp_path / f"int{attempt}.db"
        args = ["index", str(src), "--db", str(db), "-m", MODEL, "--batch-size", "8"]
        proc = ember(*args)
        interrupt_when_some_are_done(proc, db, signal.SIGINT, len(rows))
        _, stderr = proc.communicate(timeout=120)
        if proc.returncode == 0 and done_rows(db) == len(rows):
            continue
        break
    assert proc.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()
    assert done_rows(db) < len(rows)
    again = ember(*args, "--quiet")
    again.communicate(timeout=600)
    assert again.returncode == 0
    assert done_rows(db) == len(rows)


def test_commands_end_quietly_on_a_closed_pipe(tmp_path, minilm):
    texts = "\n".join(f"text number {i}" for i in range(400)).encode()
    # `ember embed - | head -1`: the reader goes away after one line.
    proc = subprocess.Popen(
        [sys.executable, "-m", "ember", "embed", "-", "-m", MODEL],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(texts)
    proc.stdin.close()
    assert proc.stdout.readline().startswith(b"[")
    proc.stdout.close()
    with proc.stderr:
        stderr = proc.stderr.read()
    assert proc.wait(timeout=120) in (0, 141)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()

    for argv in (["models"], ["--help"], ["bench", "--texts", "20", "--batch-sizes", "1"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ember", *argv],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        proc.stdout.close()  # closed before anything is written
        with proc.stderr:
            stderr = proc.stderr.read()
        assert proc.wait(timeout=120) in (0, 141), (argv, stderr.decode())
        assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, (argv, stderr.decode())


def test_ctrl_c_while_embedding_exits_quietly(minilm):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ember", "embed", "-", "-m", MODEL],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Standard input left open: the command waits in its read, as a person's terminal would.
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert b"Traceback" not in stderr, stderr.decode()


def test_progress_bars_on_a_terminal_and_json_lines_elsewhere(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    from conftest import tiny_dir
    from index_support import corpus

    src = write_jsonl(tmp_path / "c.jsonl", corpus(300))
    args = ["index", str(src), "-m", str(tiny_dir("bert")), "-m", str(tiny_dir("mpnet"))]

    # stderr a terminal: a tqdm bar per model, with texts/s and tokens/s.
    main_fd, term = pty.openpty()
    # A terminal of 30 rows by 160 columns (a new pty has no size).
    fcntl.ioctl(term, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ember", *args, "--db", str(tmp_path / "tty.db")],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=term,
    )
    os.close(term)
    screen = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        screen += chunk
    os.close(main_fd)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    text = screen.decode(errors="replace")
    for name in ("bert", "mpnet"):
        assert f"{tiny_dir(name)}" in text or name in text
    assert "300/300" in text and "text/s" in text and "tokens/s" in text, text[-2000:]
    assert json.loads(stdout)["event"] == "summary"

    # stderr a pipe: JSON lines, the last one with every text processed.
    out = subprocess.run(
        [sys.executable, "-m", "ember", *args, "--db", str(tmp_path / "pipe.db")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert lines and all(line["event"] == "progress" for line in lines)
    last = {m["table"]: m for m in lines[-1]["models"]}
    assert {t: m["processed"] for t, m in last.items()} == {
        "embeddings_bert_32": 300,
        "embeddings_mpnet_32": 300,
    }
    assert all(m["texts_per_s"] > 0 and m["tokens_per_s"] > 0 for m in last.values())
    summary = json.loads(out.stdout)["models"]
    assert [(m["embedded"], m["skipped"], m["failed"]) for m in summary] == [(300, 0, 0)] * 2

    # --quiet: nothing at all.
    out = subprocess.run(
        [sys.executable, "-m", "ember", *args, "--db", str(tmp_path / "q.db"), "--quiet"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
