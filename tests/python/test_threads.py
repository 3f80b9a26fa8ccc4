"""Concurrency: embedding from several threads, the GIL released during long calls, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import ember
from conftest import real_model, reference, rel_l2, tiny_dir


def test_two_threads_embed_at_once() -> None:
    models = [ember.Embedder(str(tiny_dir("bert"))), ember.Embedder(str(tiny_dir("mpnet")))]
    texts = [f"sentence {i} about threads" for i in range(200)]
    want = [m.embed(texts) for m in models]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                results[i] = models[i % 2].embed(texts, batch_size=8)
        except BaseException as e:  # surfaced below: a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "an embedding thread hung"
    assert not errors, errors
    for i in range(4):
        assert (rel_l2(results[i], want[i % 2]) < 1e-5).all()


def test_gil_is_released_while_embedding() -> None:
    model = real_model("all-MiniLM-L6-v2")
    texts = reference("all-MiniLM-L6-v2")["texts"][:40]  # one GIL-free call of about a second
    done = threading.Event()
    took: list[float] = []

    def embed() -> None:
        start = time.perf_counter()
        model.embed(texts, batch_size=32)
        took.append(time.perf_counter() - start)
        done.set()

    worker = threading.Thread(target=embed)
    ticks = []
    worker.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join(timeout=120)
    assert took and took[0] > 0.3, f"embedding took {took}: too short to tell"
    # Had the GIL been held, this loop would have stalled for the whole call.
    gaps = np.diff(ticks)
    assert len(ticks) > 20 and gaps.max() < took[0] / 2, (len(ticks), gaps.max(), took)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_interrupts_a_long_embed() -> None:
    script = (
        "import ember, signal, sys\n"
        # A child started from a shell in the background inherits SIGINT as ignored, and then
        # Python installs no handler of its own: the test sets it, as an interactive run has it.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"m = ember.Embedder({str(tiny_dir('bert'))!r})\n"
        "print('ready', flush=True)\n"
        # One call of about two minutes; it must stop within seconds of Ctrl-C.
        "m.embed(['some words to embed again and again'] * 1_000_000, batch_size=8)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As when the suite runs in the background (`pytest &`): SIGINT starts out ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        start = time.perf_counter()
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert time.perf_counter() - start < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "KeyboardInterrupt" in stderr, stderr


@pytest.mark.parametrize(
    ("isa", "threads"),
    [("portable", "1"), ("avx2", "3"), ("", "")],
    ids=["portable", "avx2", "default"],
)
def test_kernels_report_the_isa_cap_and_thread_budget(isa: str, threads: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("EMBER_ISA", "EMBER_NUM_THREADS")}
    if isa:
        env.update(EMBER_ISA=isa, EMBER_NUM_THREADS=threads)
    code = "import json, ember; print(json.dumps(ember.kernels()))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    k = json.loads(out.stdout)
    assert set(k) == {"f32", "int8", "threads"}
    if isa == "portable":
        assert k == {"f32": "portable", "int8": "portable", "threads": 1}
    elif isa == "avx2":
        assert k["f32"] in ("avx2+fma", "portable") and k["int8"] in ("avx2", "portable")
        assert k["threads"] == 3
    else:
        assert 1 <= k["threads"] <= (os.cpu_count() or 1)
        assert k["f32"] in ("avx512f", "avx2+fma", "portable")
