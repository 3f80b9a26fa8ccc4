"""Every exception class: the hierarchy, and the core error each one carries."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ember
from conftest import tiny_dir


def test_hierarchy() -> None:
    assert issubclass(ember.EmberError, Exception)
    assert issubclass(ember.ModelNotFoundError, ember.EmberError)
    assert issubclass(ember.ModelNotFoundError, KeyError)
    assert issubclass(ember.ModelLoadError, ember.EmberError)
    assert issubclass(ember.UnsupportedModelError, ember.ModelLoadError)
    assert issubclass(ember.InvalidInputError, ember.EmberError)
    assert issubclass(ember.InvalidInputError, ValueError)
    assert issubclass(ember.CapacityError, ember.EmberError)


def test_unknown_model() -> None:
    for call in (lambda: ember.Embedder("no-such-model"), lambda: ember.get_model_spec("nope")):
        with pytest.raises(KeyError) as err:
            call()
        assert isinstance(err.value, ember.ModelNotFoundError)
        # The core's text, not KeyError's quoted repr; it lists the known models.
        assert str(err.value).startswith("unknown model `")
        assert "all-MiniLM-L6-v2" in str(err.value)


def test_unsupported_architecture() -> None:
    with pytest.raises(ember.UnsupportedModelError, match="mixture-of-experts") as err:
        ember.Embedder("nomic-embed-text-v2-moe")
    assert isinstance(err.value, ember.ModelLoadError)


def test_directory_without_tokenizer(tmp_path: Path) -> None:
    model = tmp_path / "broken"
    shutil.copytree(tiny_dir("bert"), model)
    (model / "tokenizer.json").unlink()
    with pytest.raises(ember.ModelLoadError, match=r"tokenizer\.json"):
        ember.Embedder(str(model))


def test_directory_with_corrupt_weights(tmp_path: Path) -> None:
    model = tmp_path / "corrupt"
    shutil.copytree(tiny_dir("bert"), model)
    (model / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ember.ModelLoadError, match="safetensors"):
        ember.Embedder(str(model))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_name": "query"}, "unknown prompt_name `query`"),
        ({"dimensions": 0}, "dimensions 0 is out of range"),
        ({"dimensions": 33}, "dimensions 33 is out of range"),
        ({"dimensions": -1}, "invalid `dimensions`"),
        ({"batch_size": 0}, "invalid `batch_size`"),
        ({"batch_size": -5}, "invalid `batch_size`"),
    ],
)
def test_invalid_options(tiny_bert: ember.Embedder, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        tiny_bert.embed(["a"], **kwargs)
    assert isinstance(err.value, ember.InvalidInputError)


def test_invalid_encode_options(tiny_bert: ember.Embedder) -> None:
    for truncate_dim in (0, 33, -2):
        with pytest.raises(ember.InvalidInputError):
            tiny_bert.encode(["a"], truncate_dim=truncate_dim)
    with pytest.raises(ember.InvalidInputError, match="prompt_name"):
        tiny_bert.encode(["a"], prompt_name="passage")


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["a", 1], r"input\[1\] is not a string \(got int\)"),
        ([None], r"input\[0\] is not a string \(got NoneType\)"),
        (["a", "b", b"c"], r"input\[2\] is not a string \(got bytes\)"),
        (3, r"inputs must be a string or a sequence of strings \(got int\)"),
        (b"abc", r"inputs must be a string or a sequence of strings \(got bytes\)"),
        (["ok", "\ud800"], r"input\[1\] is not valid Unicode"),
    ],
)
def test_non_string_inputs(tiny_bert: ember.Embedder, inputs: object, message: str) -> None:
    for method in (tiny_bert.embed, tiny_bert.encode, tiny_bert.count_tokens):
        with pytest.raises(ember.InvalidInputError, match=message) as err:
            method(inputs)
        assert isinstance(err.value, ValueError)


def test_register_model_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ember.InvalidInputError, match="is not a directory"):
        ember.register_model("ghost", tmp_path / "missing")


def test_malformed_models_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[models]]\nid = "x"\nbogus = 1\n')
    with pytest.raises(ember.ModelLoadError, match="bogus"):
        ember.load_models_file(bad)
    with pytest.raises(ember.ModelLoadError, match="cannot read"):
        ember.load_models_file(tmp_path / "absent.toml")


def test_serve_reports_a_bad_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server's flags read EMBER_* variables; a bad one must raise, not exit the interpreter.
    monkeypatch.setenv("EMBER_PORT", "not-a-port")
    with pytest.raises(ember.InvalidInputError, match="not-a-port"):
        ember.serve()
