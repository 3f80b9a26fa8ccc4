"""`ember.Client`: a small HTTP client for a running Ember server's native API, on the standard
library only (`urllib`), returning NumPy arrays and raising Ember's exception classes."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ember._errors import (
    CapacityError,
    EmberError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedModelError,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Client"]

# The server's `error.type` names first (they are exact), then the HTTP status.
_BY_TYPE: dict[str, type[EmberError]] = {
    "model_not_found": ModelNotFoundError,
    "invalid_request": InvalidInputError,
    "invalid_json": InvalidInputError,
    "input_too_long": InvalidInputError,
    "too_many_inputs": InvalidInputError,
    "payload_too_large": InvalidInputError,
    "model_unsupported": UnsupportedModelError,
    "model_load_failed": ModelLoadError,
    "model_not_installed": ModelLoadError,
    "capacity": CapacityError,
}
_BY_STATUS: dict[int, type[EmberError]] = {
    404: ModelNotFoundError,
    400: InvalidInputError,
    413: InvalidInputError,
    422: InvalidInputError,
    429: CapacityError,
    503: CapacityError,
}


def _error(status: int, body: bytes, url: str) -> EmberError:
    """The exception for an error response (`{"error": {"type", "message", "code"}}`)."""
    kind, message = None, body.decode("utf-8", "replace").strip()
    try:
        err = json.loads(body)["error"]
        kind, message = err.get("type"), err.get("message", message)
    except (ValueError, KeyError, TypeError):
        pass
    cls = _BY_TYPE.get(kind or "") or _BY_STATUS.get(status, EmberError)
    return cls(f"{message} (HTTP {status} from {url})")


def _body(fields: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """A request body: `fields`, plus each optional field that was given (servers that predate
    a field reject it, so one not given is not sent)."""
    return {**fields, **{k: v for k, v in optional.items() if v is not None}}


class Client:
    """A client for Ember's native HTTP API (`POST /api/v1/embed`, `POST /api/v1/rerank`,
    `POST /api/v1/chunk`, `GET /api/v1/models`) on a
    server started elsewhere (`ember serve`, `ember.serve()` or the `ember-server` binary).

    base_url: the server's address, e.g. "http://127.0.0.1:8080".
    api_key: sent as `Authorization: Bearer <api_key>` when given.
    timeout: seconds to wait for each response.

    Errors arrive as Ember's exception classes: ModelNotFoundError (404), InvalidInputError
    (400, 413, 422), CapacityError (429, 503 for capacity), ModelLoadError (503 for a model that
    cannot load), EmberError otherwise, including a server that cannot be reached.

    Example (with `ember serve` running)::

        client = ember.Client("http://127.0.0.1:8080")
        client.embed(["hello", "world"]).shape  # (2, 384)
    """

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 60.0):
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInputError(f"base_url must start with http:// or https:// ({base_url!r})")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key

    def __repr__(self) -> str:
        # The key stays out of reprs and logs.
        return f"Client({self.base_url!r}, timeout={self.timeout})"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        # Imported here: urllib.request pulls in http.client, email and ssl, which would add
        # milliseconds to every `import ember`.
        import urllib.error
        import urllib.request

        url = self.base_url + path
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise _error(e.code, e.read(), url) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise EmberError(f"cannot reach the Ember server at {url}: {reason}") from e

    def embed(
        self,
        texts: str | Iterable[str],
        model: str | None = None,
        *,
        normalize: bool = True,
        dimensions: int | None = None,
        prompt_name: str | None = None,
        truncate: bool = True,
        dtype: str | None = None,
    ) -> npt.NDArray[np.float32]:
        """Embeds one string (-> shape `(dimension,)`) or a sequence of strings (-> shape
        `(len(texts), dimension)`) on the server; the options mean what they mean in
        `Embedder.embed`. `dtype` is sent only when given (servers that do not know the field
        reject it). An empty sequence gives shape (0, 0) without a request."""
        # Imported here so `import ember` stays cheap for the CLI (numpy is ~0.1 s).
        import numpy as np

        single = isinstance(texts, str)
        inputs = [texts] if single else list(texts)
        if not inputs:
            return np.zeros((0, 0), dtype=np.float32)
        body = _body(
            {"input": inputs, "normalize": normalize, "truncate": truncate},
            model=model,
            dimensions=dimensions,
            prompt_name=prompt_name,
            dtype=dtype,
        )
        doc = self._request("POST", "/api/v1/embed", body)
        vectors = np.asarray(doc["embeddings"], dtype=np.float32).reshape(
            len(inputs), doc["dimension"]
        )
        return np.ascontiguousarray(vectors[0] if single else vectors)

    def rerank(
        self,
        query: str,
        documents: Iterable[str],
        model: str | None = None,
        *,
        top_n: int | None = None,
        return_documents: bool = False,
        raw_scores: bool = False,
        truncate: bool = True,
    ) -> list[dict[str, Any]]:
        """Ranks `documents` against `query` with a reranker on the server (`POST
        /api/v1/rerank`, Cohere's shape): a list of `{"index", "relevance_score"}` (plus
        `"document": {"text"}` with `return_documents`), best first, cut to `top_n`. An
        embedder named as `model` raises InvalidInputError naming its kind."""
        body = _body(
            {
                "query": query,
                "documents": list(documents),
                "return_documents": return_documents,
                "raw_scores": raw_scores,
                "truncate": truncate,
            },
            model=model,
            top_n=top_n,
        )
        return list(self._request("POST", "/api/v1/rerank", body)["results"])

    def chunk(
        self,
        texts: str | Iterable[str],
        model: str | None = None,
        *,
        chunk_tokens: int | None = None,
        chunk_overlap: int = 0,
        prompt_name: str | None = None,
        input_type: str | None = None,
        dtype: str | None = None,
    ) -> list[list[tuple[int, int, int]]]:
        """Cuts each text into windows of `chunk_tokens` of the model's tokens, overlapping by
        `chunk_overlap`, on the server (`POST /api/v1/chunk`): per text, its chunks as
        `(start, end, tokens)` with character offsets (`text[start:end]` is the chunk), as
        `Embedder.chunk` gives them in-process. Without `chunk_tokens`, the largest window that
        fits the model's limit with its prompt."""
        single = isinstance(texts, str)
        inputs = [texts] if single else list(texts)
        if not inputs:
            return []
        body = _body(
            {"input": inputs, "chunk_overlap": chunk_overlap},
            model=model,
            chunk_tokens=chunk_tokens,
            prompt_name=prompt_name,
            input_type=input_type,
            dtype=dtype,
        )
        doc = self._request("POST", "/api/v1/chunk", body)
        return [[(c["start"], c["end"], c["tokens"]) for c in spans] for spans in doc["chunks"]]

    def models(self) -> list[dict[str, Any]]:
        """The server's catalog: one dict per model with its load state."""
        return list(self._request("GET", "/api/v1/models")["models"])

    def model(self, model: str) -> dict[str, Any]:
        """One model's catalog entry and load state."""
        return dict(self._request("GET", "/api/v1/models/" + urllib.parse.quote(model, safe="/")))
