"""Type stubs of `ember._native` (the Rust extension); docstrings live in the Rust sources."""

from collections.abc import Iterable, Sequence
from datetime import timedelta
from os import PathLike
from typing import Any, Literal, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "Embedder",
    "ModelManager",
    "Reranker",
    "__version__",
    "download_model",
    "get_model_spec",
    "kernels",
    "load_models_file",
    "models",
    "prompt_name_for",
    "register_model",
    "serve",
    "serve_cli",
    "set_default_model",
]

__version__: str

_Floats = npt.NDArray[np.float32]
_Path = str | PathLike[str]
_Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
# Seconds (negative: forever), a duration such as "5m" or "-1", or a timedelta.
_KeepAlive = str | float | timedelta

@final
class Embedder:
    def __new__(
        cls,
        model: _Path | None = None,
        *,
        dtype: str | None = None,
        max_seq_length: int | None = None,
        threads: int | None = None,
    ) -> Embedder: ...
    def embed(
        self,
        inputs: str | Iterable[str],
        *,
        normalize: bool = True,
        dimensions: int | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate: bool = True,
        batch_size: int = 32,
        instruction: str | None = None,
    ) -> _Floats: ...
    def encode(
        self,
        sentences: str | Iterable[str],
        *,
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate_dim: int | None = None,
        precision: _Precision = "float32",
        ranges: npt.ArrayLike | None = None,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        instruction: str | None = None,
        output_value: Literal["sentence_embedding", "token_embeddings"] = "sentence_embedding",
    ) -> Any: ...  # float32, int8 or uint8 array by precision; a list if not convert_to_numpy
    def encode_sparse(
        self,
        sentences: str | Iterable[str],
        *,
        input_type: Literal["query", "document", "passage"] = "document",
        top_k: int | None = None,
        batch_size: int = 32,
        truncate: bool = True,
        csr: bool = False,
    ) -> Any: ...  # (indices, values) per text, or ((data, indices, indptr), shape) with csr
    def encode_query(
        self,
        sentences: str | Iterable[str],
        *,
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate_dim: int | None = None,
        precision: _Precision = "float32",
        ranges: npt.ArrayLike | None = None,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        instruction: str | None = None,
    ) -> Any: ...  # float32, int8 or uint8 array by precision; a list if not convert_to_numpy
    def encode_document(
        self,
        sentences: str | Iterable[str],
        *,
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate_dim: int | None = None,
        precision: _Precision = "float32",
        ranges: npt.ArrayLike | None = None,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        instruction: str | None = None,
    ) -> Any: ...  # float32, int8 or uint8 array by precision; a list if not convert_to_numpy
    def similarity(self, a: npt.ArrayLike, b: npt.ArrayLike) -> _Floats: ...
    def tokenize(self, text: str) -> list[str]: ...
    def count_tokens(self, inputs: str | Iterable[str]) -> list[int]: ...
    @property
    def dimension(self) -> int: ...
    @property
    def max_seq_length(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    @property
    def prompts(self) -> dict[str, str]: ...
    @property
    def default_prompt_name(self) -> str | None: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    @property
    def info(self) -> dict[str, Any]: ...
    @property
    def weights_sha256(self) -> str: ...
    def identity(
        self,
        *,
        input_type: str | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        normalize: bool = True,
    ) -> dict[str, Any]: ...
    def chunk(
        self,
        text: str,
        max_tokens: int,
        overlap: int = 0,
        *,
        input_type: str | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> list[tuple[int, int, int]]: ...
    def get_sentence_embedding_dimension(self) -> int: ...
    def get_max_seq_length(self) -> int: ...

@final
class ModelManager:
    def __new__(
        cls,
        max_models: int = 16,
        max_memory: int | str | None = None,
        pinned: Sequence[str] | None = None,
        keep_alive: _KeepAlive | None = None,
        *,
        dtypes: dict[str, str] | None = None,
        max_input_tokens: int | None = None,
    ) -> ModelManager: ...
    def embed(
        self,
        texts: str | Iterable[str],
        model: str | None = None,
        dtype: str | None = None,
        *,
        normalize: bool = True,
        dimensions: int | None = None,
        prompt_name: str | None = None,
        truncate: bool = True,
        batch_size: int = 32,
        keep_alive: _KeepAlive | None = None,
    ) -> _Floats: ...
    def load(
        self, model: str, dtype: str | None = None, keep_alive: _KeepAlive | None = None
    ) -> dict[str, Any]: ...
    def unload(self, model: str, dtype: str | None = None) -> int: ...
    def status(self) -> list[dict[str, Any]]: ...
    def rerank(
        self,
        query: str,
        documents: Iterable[str],
        model: str,
        dtype: str | None = None,
        *,
        top_k: int | None = None,
        return_documents: bool = False,
        raw_scores: bool = False,
        truncate: bool = True,
        batch_size: int = 32,
        keep_alive: _KeepAlive | None = None,
    ) -> list[dict[str, Any]]: ...
    def model_status(self, model: str) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]: ...

@final
class Reranker:
    def __new__(
        cls,
        model: _Path,
        *,
        dtype: str | None = None,
        max_length: int | None = None,
        threads: int | None = None,
    ) -> Reranker: ...
    def predict(
        self,
        inputs: Any,  # a (query, document) pair, a text, or a sequence of them
        *,
        batch_size: int = 32,
        raw_scores: bool = False,
        apply_softmax: bool = False,
        truncate: bool = True,
        convert_to_numpy: bool = True,
        show_progress_bar: bool | None = None,
    ) -> Any: ...  # a float for one pair of a one-label model, else a float32 array
    def rank(
        self,
        query: str,
        documents: str | Iterable[str],
        top_k: int | None = None,
        return_documents: bool = False,
        *,
        batch_size: int = 32,
        raw_scores: bool = False,
        truncate: bool = True,
    ) -> list[dict[str, Any]]: ...
    @property
    def num_labels(self) -> int: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def activation(self) -> str: ...
    @property
    def max_length(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    @property
    def info(self) -> dict[str, Any]: ...

def models() -> list[dict[str, Any]]: ...
def kernels() -> dict[str, Any]: ...
def prompt_name_for(prompts: Sequence[str], input_type: str) -> str | None: ...
def download_model(model: _Path, *, progress: bool = True) -> str: ...
def get_model_spec(model: _Path) -> dict[str, Any]: ...
def register_model(model_id: str, path: _Path, *, default: bool = False) -> None: ...
def load_models_file(path: _Path) -> int: ...
def set_default_model(model: str) -> None: ...
def serve(
    host: str | None = None,
    port: int | None = None,
    models: Sequence[str] | None = None,
    default_model: str | None = None,
    models_file: _Path | None = None,
    *,
    max_body_bytes: int | None = None,
    max_client_batch: int | None = None,
    lazy: bool | None = None,
    config: _Path | None = None,
) -> None: ...
def serve_cli(argv: Sequence[str]) -> tuple[int, str]: ...
