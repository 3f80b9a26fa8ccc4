"""Progress of an index run: a tqdm bar per model on a terminal (texts/s, tokens/s, ETA), one
JSON line per interval elsewhere, nothing when quiet; and the per-model summary at the end."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["Progress", "format_summary"]


@dataclass
class _Counts:
    model: str
    table: str
    embedded: int = 0
    skipped: int = 0
    failed: int = 0
    tokens: int = 0
    stale: int = 0
    started: float = 0.0
    finished: float | None = None

    @property
    def processed(self) -> int:
        return self.embedded + self.skipped + self.failed


class Progress:
    """Counts per model table, shown as `mode`: "bar" (tqdm), "json" (lines every `interval`
    seconds) or "quiet". Safe to update from several threads."""

    def __init__(
        self,
        tables: list[tuple[str, str]],
        *,
        total: int | None,
        mode: str,
        stream: IO[str] | None = None,
        interval: float = 1.0,
    ) -> None:
        self.total = total
        self.mode = mode
        self.stream = stream or sys.stderr
        self.interval = interval
        now = time.monotonic()
        self._started = now
        self._last = now
        self._lock = threading.Lock()
        self.counts = {t: _Counts(m, t, started=now) for m, t in tables}
        self._bars: dict[str, Any] = {}
        if mode == "bar":
            try:
                from tqdm import tqdm  # type: ignore[import-untyped, import-not-found]
            except ImportError:  # no bars without tqdm: JSON lines instead
                self.mode = mode = "json"
        if mode == "bar":
            for i, (m, t) in enumerate(tables):
                self._bars[t] = tqdm(
                    total=total,
                    desc=m,
                    unit="text",
                    position=i,
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=True,
                )

    def add(
        self, table: str, *, embedded: int = 0, skipped: int = 0, failed: int = 0, tokens: int = 0
    ) -> None:
        with self._lock:
            c = self.counts[table]
            c.embedded += embedded
            c.skipped += skipped
            c.failed += failed
            c.tokens += tokens
            bar = self._bars.get(table)
            if bar is not None:
                bar.update(embedded + skipped + failed)
                elapsed = max(time.monotonic() - c.started, 1e-9)
                bar.set_postfix_str(f"{c.tokens / elapsed:,.0f} tokens/s", refresh=False)
            if self.mode == "json" and time.monotonic() - self._last >= self.interval:
                self._emit("progress")

    def table_done(self, table: str) -> None:
        with self._lock:
            self.counts[table].finished = time.monotonic()

    def _rows(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        rows = []
        for c in self.counts.values():
            seconds = (c.finished or now) - c.started
            rate = c.processed / seconds if seconds > 0 else 0.0
            left = None if self.total is None else max(self.total - c.processed, 0)
            rows.append(
                {
                    "model": c.model,
                    "table": c.table,
                    "processed": c.processed,
                    "total": self.total,
                    "embedded": c.embedded,
                    "skipped": c.skipped,
                    "failed": c.failed,
                    "stale": c.stale,
                    "tokens": c.tokens,
                    "seconds": round(seconds, 3),
                    "texts_per_s": round(c.embedded / seconds, 1) if seconds > 0 else 0.0,
                    "tokens_per_s": round(c.tokens / seconds, 1) if seconds > 0 else 0.0,
                    "eta_s": None if left is None or rate == 0 else round(left / rate, 1),
                }
            )
        return rows

    def _emit(self, event: str) -> None:
        self._last = time.monotonic()
        line = {"event": event, "elapsed_s": round(self._last - self._started, 3)}
        line["models"] = self._rows()  # type: ignore[assignment]
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()

    def close(self) -> list[dict[str, Any]]:
        """Stops the bars and returns the summary: one dict per model table."""
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            if self.mode == "json":
                self._emit("progress")
            rows = self._rows()
        for r in rows:
            for k in ("processed", "total", "eta_s"):
                r.pop(k)
        return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The summary as a small table for people."""
    header = ("model", "table", "embedded", "skipped", "failed", "stale", "seconds", "texts/s")
    body = [
        (
            r["model"],
            r["table"],
            str(r["embedded"]),
            str(r["skipped"]),
            str(r["failed"]),
            str(r["stale"]),
            f"{r['seconds']:.1f}",
            f"{r['texts_per_s']:.1f}",
        )
        for r in rows
    ]
    lines = [header, *body]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines
    )
