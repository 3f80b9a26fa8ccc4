"""Where `ember index` reads documents from: JSONL, CSV or Parquet files (streamed), an iterable
of dicts, a pandas DataFrame or an Arrow table, each yielded as batches of `Doc`.

Every bad row is an `InvalidInputError` naming its line (JSONL, CSV) or row (the others): a
missing id or text column lists the columns present; an empty text, a missing id, a line that is
not UTF-8 or not JSON, and a duplicate id (unless `on_duplicate="last"`) stop the read there.
Batches read before the bad row are indexed, so the run resumes after the row is fixed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember._errors import InvalidInputError

__all__ = ["Doc", "Source", "open_source"]

_JSONL = (".jsonl", ".ndjson", ".json")
_CSV = (".csv",)
_PARQUET = (".parquet", ".pq")


@dataclass(frozen=True)
class Doc:
    """One input document: its id (as text), its text and the SHA-256 of the text."""

    id: str
    text: str
    content_hash: str


def content_hash(text: str) -> str:
    """The hash that tells a changed text: SHA-256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Source:
    """Documents of one input, read in batches of `batch_rows`; `total` is the row count when
    known without reading the data (Parquet metadata, a sized collection, a quick line count)."""

    def __init__(
        self,
        rows: Iterator[tuple[str, Mapping[str, Any]]],
        *,
        name: str,
        id_column: str,
        text_column: str,
        total: int | None,
        on_duplicate: str = "error",
    ) -> None:
        if on_duplicate not in ("error", "last"):
            raise InvalidInputError(f"on_duplicate must be 'error' or 'last', not {on_duplicate!r}")
        self.name = name
        self.total = total
        self._rows = rows
        self._id_column = id_column
        self._text_column = text_column
        self._on_duplicate = on_duplicate
        self._seen: dict[str, str] = {}

    def batches(self, batch_rows: int) -> Iterator[list[Doc]]:
        """The documents in input order, `batch_rows` at a time."""
        # Keyed by id: with on_duplicate="last" a later row of an id in the same batch replaces
        # the earlier one (a later batch re-indexes the id with its new text).
        batch: dict[str, Doc] = {}
        for where, row in self._rows:
            doc = self._doc(where, row)
            batch[doc.id] = doc
            if len(batch) >= batch_rows:
                yield list(batch.values())
                batch = {}
        if batch:
            yield list(batch.values())

    def _doc(self, where: str, row: Mapping[str, Any]) -> Doc:
        for column in (self._id_column, self._text_column):
            if column not in row:
                present = ", ".join(repr(str(c)) for c in row) or "none"
                raise InvalidInputError(
                    f"{self.name}: {where} has no column {column!r} (columns present: {present}); "
                    f"name the {'id' if column == self._id_column else 'text'} column with "
                    f"--{'id' if column == self._id_column else 'text'}-column"
                )
        raw_id, text = row[self._id_column], row[self._text_column]
        if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
            raise InvalidInputError(f"{self.name}: {where} has an empty id ({self._id_column!r})")
        if isinstance(raw_id, float) and raw_id.is_integer():
            raw_id = int(raw_id)
        doc_id = str(raw_id)
        if not isinstance(text, str):
            kind = "no text" if text is None else f"a {type(text).__name__}, not text,"
            raise InvalidInputError(
                f"{self.name}: {where} (id {doc_id!r}) has {kind} in {self._text_column!r}"
            )
        if not text.strip():
            raise InvalidInputError(
                f"{self.name}: {where} (id {doc_id!r}) has an empty {self._text_column!r}"
            )
        first = self._seen.get(doc_id)
        if first is not None and self._on_duplicate == "error":
            raise InvalidInputError(
                f"{self.name}: duplicate id {doc_id!r} at {where} (first at {first}); ids must be "
                "unique, or pass --on-duplicate last to keep the last text of each id"
            )
        self._seen[doc_id] = where
        return Doc(doc_id, text, content_hash(text))


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    # Line by line in Python rather than pyarrow's JSON reader: errors must name the line, and
    # pyarrow's reader reports blocks. Parsing is a few microseconds a line, far below embedding.
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidInputError(
                    f"{path}: {where} is not valid UTF-8 "
                    f"(byte {e.start}: {raw[e.start : e.start + 1]!r})"
                ) from None
            if not line.strip():
                raise InvalidInputError(f"{path}: {where} is empty (JSONL needs one object a line)")
            try:
                row = json.loads(line)
            except ValueError as e:
                raise InvalidInputError(f"{path}: {where} is not valid JSON: {e}") from None
            if not isinstance(row, dict):
                raise InvalidInputError(
                    f"{path}: {where} is a JSON {type(row).__name__}, not an object"
                )
            yield where, row


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _csv_rows(path: Path, id_column: str, text_column: str) -> Iterator[tuple[str, Mapping]]:
    import pyarrow as pa  # type: ignore[import-untyped, import-not-found]
    import pyarrow.csv as pcsv  # type: ignore[import-untyped, import-not-found]

    convert = pcsv.ConvertOptions(
        column_types={id_column: pa.string(), text_column: pa.string()},
        strings_can_be_null=False,
    )
    try:
        reader = pcsv.open_csv(path, convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{path}: cannot read as CSV: {e}") from None
    row = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as e:
            # pyarrow names the row inside the block it could not convert ("Row #3").
            raise InvalidInputError(f"{path}: after data row {row}: {e}") from None
        for values in batch.to_pylist():
            row += 1
            yield f"row {row} (line {row + 1})", values


def _arrow_rows(batches: Iterable[Any], label: str) -> Iterator[tuple[str, Mapping]]:
    row = 0
    for batch in batches:
        for values in batch.to_pylist():
            row += 1
            yield f"{label} {row}", values


def open_source(
    source: Any, *, id_column: str, text_column: str, on_duplicate: str = "error"
) -> Source:
    """A `Source` over `source`: a path (`.jsonl`/`.ndjson`/`.json`, `.csv`, `.parquet`), an
    iterable of dicts, a pandas DataFrame, or a pyarrow Table / RecordBatchReader."""
    kw: dict[str, Any] = {
        "id_column": id_column,
        "text_column": text_column,
        "on_duplicate": on_duplicate,
    }
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"input {str(path)!r} is not a file")
        suffix = path.suffix.lower()
        if suffix in _JSONL:
            return Source(_jsonl_rows(path), name=str(path), total=_count_lines(path), **kw)
        if suffix in _CSV:
            rows = _csv_rows(path, id_column, text_column)
            return Source(rows, name=str(path), total=None, **kw)
        if suffix in _PARQUET:
            import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found]

            f = pq.ParquetFile(path)
            present = f.schema_arrow.names
            for column in (id_column, text_column):
                if column not in present:
                    raise InvalidInputError(
                        f"{path}: no column {column!r} (columns present: "
                        f"{', '.join(map(repr, present))})"
                    )
            rows = _arrow_rows(f.iter_batches(columns=[id_column, text_column]), "row")
            return Source(rows, name=str(path), total=f.metadata.num_rows, **kw)
        raise InvalidInputError(
            f"input {str(path)!r}: unknown format {suffix!r}; use .jsonl, .csv or .parquet"
        )
    module = type(source).__module__.split(".")[0]
    if module == "pandas":
        import pyarrow as pa  # type: ignore[import-untyped, import-not-found]

        source = pa.Table.from_pandas(source, preserve_index=False)
        module = "pyarrow"
    if module == "pyarrow":
        total = getattr(source, "num_rows", None)
        batches = source.to_batches() if hasattr(source, "to_batches") else source
        return Source(_arrow_rows(batches, "row"), name="table", total=total, **kw)
    if isinstance(source, (str, bytes, Mapping)):
        raise InvalidInputError(
            f"input must be a path, an iterable of dicts, a DataFrame or an Arrow table, "
            f"not {type(source).__name__}"
        )
    try:
        total = len(source)
    except TypeError:
        total = None

    def dict_rows() -> Iterator[tuple[str, Mapping]]:
        for n, row in enumerate(source, start=1):
            if not isinstance(row, Mapping):
                raise InvalidInputError(f"input item {n} is a {type(row).__name__}, not a dict")
            yield f"item {n}", row

    return Source(dict_rows(), name="input", total=total, **kw)
