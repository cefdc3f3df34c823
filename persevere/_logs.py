"""How persevere talks on stderr: plain lines for people, or JSON lines for log collectors.

``--log-format json`` writes one JSON object per line: ``{"ts", "level", "event", "message",
...fields}``. The events a collector can key on: ``plan`` (``file_size``, ``part_size``,
``part_count``: ``upload start``), ``start`` (the upload and its state file),
``progress`` (every few seconds: ``done``, ``total``, ``rate_bytes_s``), ``retry`` (``what``,
``attempt``, ``delay_s``), ``throttle`` (parts in flight), ``credentials`` (renewed),
``reread`` (parts re-read on resume), ``completed`` (the result), ``error`` (``exit_code``,
``hint``, ``next_command``); anything else is ``log``. Core modules attach the fields with
``log.warning(..., extra=event("retry", attempt=3))``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from ._units import format_size

log = logging.getLogger("persevere")


def event(name: str, **fields: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the event's name and its fields, for JSON lines."""
    return {"event": name, "fields": fields}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(document, default=str)


def setup(level: int, json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter("persevere: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def json_lines() -> bool:
    return any(isinstance(h.formatter, JsonLines) for h in log.handlers)


class LogLineProgress:
    """For logs (stderr not a terminal): one line every ``interval_s`` seconds, plain or an
    ``progress`` event."""

    def __init__(self, description: str, interval_s: float = 5.0, stream: TextIO | None = None):
        self._description = description
        self._interval = interval_s
        self._stream = stream
        self._total = self._done = self._started_with = 0
        self._t0 = self._last = 0.0

    def start(self, total_bytes: int, done_bytes: int) -> None:
        self._total, self._done, self._started_with = total_bytes, done_bytes, done_bytes
        self._t0 = self._last = time.monotonic()

    def advance(self, delta_bytes: int) -> None:
        self._done += delta_bytes
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._emit(now)

    def _emit(self, now: float) -> None:
        rate = (self._done - self._started_with) / max(now - self._t0, 1e-9)
        percent = 100.0 * self._done / self._total if self._total else 100.0
        text = (
            f"{self._description}: {format_size(self._done)} of {format_size(self._total)} "
            f"({percent:.1f}%) at {format_size(rate)}/s"
        )
        if json_lines():
            log.info(text, extra=event("progress", done=self._done, total=self._total,
                                          rate_bytes_s=round(rate)))  # fmt: skip
        else:
            print(text, file=self._stream or sys.stderr, flush=True)

    def close(self) -> None:
        if self._total:
            self._emit(time.monotonic())
