"""Docstring examples run as tests, and the `_native.pyi` stubs match the extension."""

from __future__ import annotations

import doctest
import inspect
import subprocess
import sys

import numpy as np
import pytest

import ember
from conftest import real_model


def documented_objects() -> list[object]:
    found: list[tuple[str, object]] = [("ember", ember)]
    for name in ember.__all__:
        obj = getattr(ember, name)
        found.append((f"ember.{name}", obj))
        if inspect.isclass(obj) and obj.__module__ == "ember":
            for attr, member in vars(obj).items():
                if not attr.startswith("_"):
                    found.append((f"ember.{name}.{attr}", member))
    return [
        pytest.param(n, o, id=n) for n, o in found if ">>>" in (getattr(o, "__doc__", None) or "")
    ]


def test_docstrings_document_the_api() -> None:
    for name in ember.__all__:
        assert (getattr(ember, name).__doc__ or "").strip() or name == "__version__", name
    for attr in ("embed", "encode", "similarity", "tokenize", "dimension", "max_seq_length"):
        assert (getattr(ember.Embedder, attr).__doc__ or "").strip(), attr
    assert "inputs, *, normalize=True" in str(inspect.signature(ember.Embedder.embed))


@pytest.mark.parametrize(("name", "obj"), documented_objects())
def test_docstring_examples(name: str, obj: object) -> None:
    real_model("all-MiniLM-L6-v2")  # the examples use it
    test = doctest.DocTestParser().get_doctest(
        obj.__doc__ or "", {"ember": ember, "np": np}, name, None, 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda s: sys.stderr.write(s))
    assert runner.tries > 0
    assert runner.failures == 0, f"{runner.failures} example(s) of {name} failed (see stderr)"


def test_stubs_match_the_extension() -> None:
    pytest.importorskip("mypy", reason="stubtest needs mypy (in the `test` extra)")
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "ember", "--mypy-config-file", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
