"""Docstring examples run as tests, the `_native.pyi` stubs match the extension, and the
robustness table in docs/ names only tests that exist."""

from __future__ import annotations

import doctest
import inspect
import re
import subprocess
import sys

import numpy as np
import pytest

import ember
from conftest import REPO, real_model


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


ROBUSTNESS = REPO / "docs" / "robustness.md"
# `path::name` in backticks: a test function in a file CI runs (`cargo test --workspace`, pytest).
TEST_REF = re.compile(
    r"`((?:crates/[\w-]+/(?:src|tests)|tests/python)/[\w/.-]+\.(?:rs|py))::(\w+)`"
)


def rust_test_exists(text: str, name: str) -> bool:
    """`fn name` preceded by a test attribute (not ignored), as cargo test runs it."""
    m = re.search(rf"^((?:[ \t]*#\[.*\]\n)+)[ \t]*(?:pub )?(?:async )?fn {name}\s*\(", text, re.M)
    return bool(m) and "test" in m.group(1) and "ignore" not in m.group(1)


def python_test_exists(text: str, name: str) -> bool:
    return name.startswith("test_") and re.search(rf"^def {name}\(", text, re.M) is not None


def test_robustness_table_names_existing_tests() -> None:
    rows = [
        line
        for line in ROBUSTNESS.read_text(encoding="utf-8").splitlines()
        if re.match(r"\|\s*\d+\s*\|", line)
    ]
    assert len(rows) >= 40, f"{len(rows)} rows"
    numbers = [int(line.split("|")[1]) for line in rows]
    assert numbers == list(range(1, len(rows) + 1)), "rows are numbered 1, 2, 3, ..."
    missing = []
    for line in rows:
        refs = TEST_REF.findall(line.rsplit("|", 2)[-2])
        assert refs, f"row names no test: {line}"
        for path, name in refs:
            file = REPO / path
            text = file.read_text(encoding="utf-8") if file.is_file() else ""
            exists = rust_test_exists if path.endswith(".rs") else python_test_exists
            if not exists(text, name):
                missing.append(f"{path}::{name}")
    assert not missing, f"docs/robustness.md names tests that do not exist: {missing}"
    assert "(faults.md)" in ROBUSTNESS.read_text(encoding="utf-8")
