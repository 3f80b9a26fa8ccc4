"""The models an index run embeds with: in this process (`ember.Embedder`) or on a running
Ember server (`--server URL`, its native `POST /api/v1/embed` and `POST /api/v1/chunk`), each
with the identity recorded in the `models` table and the chunk spans of each text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ember._errors import EmberError, InvalidInputError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["LocalModel", "ServerModel", "open_model"]


class LocalModel:
    """A model loaded in this process; embedding runs on Ember's threads, the GIL released."""

    def __init__(
        self,
        model: str,
        *,
        dtype: str | None,
        input_type: str | None,
        prompt_name: str | None,
        prompt: str | None,
        normalize: bool,
        batch_size: int,
        chunk_tokens: int | None,
        chunk_overlap: int,
    ) -> None:
        import ember

        self.embedder = ember.Embedder(model, dtype=dtype)
        ident = self.embedder.identity(
            input_type=input_type if prompt_name is None and prompt is None else None,
            prompt_name=prompt_name,
            prompt=prompt,
            normalize=normalize,
        )
        ident.update(
            input_type=input_type if prompt_name is None and prompt is None else None,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap if chunk_tokens else None,
        )
        self.identity: dict[str, Any] = ident
        self.id = ident["id"]
        self._prompt = {"prompt_name": ident["prompt_name"]} if ident["prompt_name"] else {}
        if not self._prompt and ident["prompt"]:
            self._prompt = {"prompt": ident["prompt"]}
        self._normalize = normalize
        self._batch_size = batch_size
        self._chunk = (chunk_tokens, chunk_overlap) if chunk_tokens else None
        if chunk_tokens:
            # Checks the window against the model's limit now, not at the first document.
            self.embedder.chunk("", chunk_tokens, chunk_overlap, **self._prompt)

    def spans(self, texts: Sequence[str]) -> tuple[list[list[tuple[int, int]]], int]:
        """Each text's chunks as `(start, end)` character offsets, and the tokens they hold."""
        if self._chunk is None:
            tokens = sum(self.embedder.count_tokens(list(texts)))
            return [[(0, len(t))] for t in texts], tokens
        n, overlap = self._chunk
        spans, tokens = [], 0
        for t in texts:
            chunks = self.embedder.chunk(t, n, overlap, **self._prompt)
            spans.append([(s, e) for s, e, _ in chunks])
            tokens += sum(k for _, _, k in chunks)
        return spans, tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed(
            list(texts), normalize=self._normalize, batch_size=self._batch_size, **self._prompt
        )

    def embed_query(self, text: str, recorded: dict[str, Any]) -> np.ndarray:
        """The query vector for a table built with `recorded`: the query prompt of the task the
        table was built for, or the same explicit prompt."""
        kw: dict[str, Any] = {}
        if recorded.get("input_type") == "document":
            ident = self.embedder.identity(input_type="query", normalize=self._normalize)
            if ident["prompt_name"]:
                kw["prompt_name"] = ident["prompt_name"]
        elif recorded.get("prompt_name"):
            kw["prompt_name"] = recorded["prompt_name"]
        elif recorded.get("prompt"):
            kw["prompt"] = recorded["prompt"]
        return self.embedder.embed([text], normalize=self._normalize, **kw)[0]


class ServerModel:
    """A model served by a running Ember server: vectors come from its native API; the identity
    comes from its `GET /api/v1/models/{id}` entry, with the weights hash the server computes as
    `Embedder.weights_sha256` does, so server-mode and in-process tables record the same one."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        dtype: str | None,
        input_type: str | None,
        prompt_name: str | None,
        prompt: str | None,
        normalize: bool,
        batch_size: int,
        chunk_tokens: int | None,
        chunk_overlap: int,
    ) -> None:
        import ember
        from ember import _native

        if prompt is not None:
            raise InvalidInputError(
                "--server takes a prompt name (the server's), not a literal prompt"
            )
        self.client = ember.Client(url, timeout=600)
        entry = self.client.model(model)
        dimension = int(entry.get("dimension") or 0)
        if entry.get("weights_sha256") is None or not dimension:
            # The server's files are not there yet (its first load downloads them) or changed
            # since it loaded them, or its catalog entry states no dimension (a directory): one
            # request loads the model and shows the dimension; then it can tell its weights.
            dimension = int(self.client.embed(["ember"], entry["id"], dtype=dtype).shape[-1])
            entry = self.client.model(model)
        if entry.get("weights_sha256") is None:
            raise EmberError(
                f"the server at {url} does not report the weights of model `{entry['id']}` "
                "(`weights_sha256` of GET /api/v1/models/{id}): its files changed on disk since "
                "it loaded them (unload the model there, or restart the server, to reload it), "
                "or the server predates it; without it, changed weights could not mark rows stale"
            )
        if prompt_name is None and input_type is not None:
            prompt_name = _native.prompt_name_for(list(entry.get("prompts") or {}), input_type)
        else:
            input_type = None
        prompts = entry.get("prompts") or {}
        if prompt_name is not None and prompt_name not in prompts:
            raise InvalidInputError(
                f"model `{entry['id']}` on {url} has no prompt {prompt_name!r} "
                f"(its prompts: {', '.join(prompts) or 'none'})"
            )
        self.id = entry["id"]
        self.url = url
        self.identity: dict[str, Any] = {
            "id": entry["id"],
            "revision": entry.get("revision"),
            "architecture": entry.get("architecture"),
            "weights_sha256": entry["weights_sha256"],
            "dimension": dimension,
            "dtype": dtype or entry.get("dtype") or entry.get("default_dtype"),
            "pooling": entry.get("pooling"),
            "normalize": normalize,
            "prompt_name": prompt_name,
            "prompt": prompts.get(prompt_name) if prompt_name else None,
            "max_seq_length": entry.get("max_seq_length"),
            "input_type": input_type,
            "chunk_tokens": chunk_tokens,
            "chunk_overlap": chunk_overlap if chunk_tokens else None,
        }
        self._dtype = dtype
        self._prompt_name = prompt_name
        self._normalize = normalize
        self._batch_size = batch_size
        self._chunk = (chunk_tokens, chunk_overlap) if chunk_tokens else None
        if chunk_tokens:
            # The server cuts with the model's tokenizer (`POST /api/v1/chunk`), as an
            # in-process run does; this checks the window against the model's limit now.
            self._chunks([""], chunk_tokens, chunk_overlap)

    def _chunks(
        self, texts: Sequence[str], n: int, overlap: int
    ) -> list[list[tuple[int, int, int]]]:
        """Each text's chunks `(start, end, tokens)`, cut by the server."""
        out: list[list[tuple[int, int, int]]] = []
        step = self._step()
        for i in range(0, len(texts), step):
            out += self.client.chunk(
                list(texts[i : i + step]),
                self.id,
                chunk_tokens=n,
                chunk_overlap=overlap,
                prompt_name=self._prompt_name,
                dtype=self._dtype,
            )
        return out

    def _step(self) -> int:
        """Texts per request: a forward-pass batch's worth keeps requests under the server's
        limits."""
        return max(self._batch_size, 1) * 8

    def spans(self, texts: Sequence[str]) -> tuple[list[list[tuple[int, int]]], int]:
        """Each text's chunks as `(start, end)` character offsets, and the tokens they hold
        (counted only when chunking: without it the server counts them as it embeds)."""
        if self._chunk is None:
            return [[(0, len(t))] for t in texts], 0
        chunks = self._chunks(texts, *self._chunk)
        tokens = sum(k for spans in chunks for _, _, k in spans)
        return [[(s, e) for s, e, _ in spans] for spans in chunks], tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = []
        step = self._step()
        for i in range(0, len(texts), step):
            out.append(
                self.client.embed(
                    list(texts[i : i + step]),
                    self.id,
                    normalize=self._normalize,
                    prompt_name=self._prompt_name,
                    dtype=self._dtype,
                )
            )
        return np.concatenate(out) if out else np.zeros((0, self.identity["dimension"]), np.float32)

    def embed_query(self, text: str, recorded: dict[str, Any]) -> np.ndarray:
        from ember import _native

        name = recorded.get("prompt_name")
        if recorded.get("input_type") == "document":
            prompts = list(self.client.model(self.id).get("prompts") or {})
            name = _native.prompt_name_for(prompts, "query")
        return self.client.embed(
            [text], self.id, normalize=self._normalize, prompt_name=name, dtype=self._dtype
        )[0]


def open_model(model: str, *, server: str | None, **kw: Any) -> LocalModel | ServerModel:
    """The model `model`, in this process or on `server`."""
    if server:
        return ServerModel(server, model, **kw)
    return LocalModel(model, **kw)
