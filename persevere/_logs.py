"""How persevere talks on stderr: plain lines for people, or JSON lines for log collectors.

``--log-format json`` writes one JSON object per line: ``{"ts", "level", "event", "message",
...fields}``. The events a collector can key on: ``state_file`` (``path``), ``plan``
(``file_size``, ``part_size``, ``part_count``: ``upload start`` and ``cp``, before a new
upload), ``start`` (the upload and its state file),
``progress`` (every few seconds: ``done``, ``total``, ``rate_bytes_s``), ``retry`` (``what``,
``attempt``, ``delay_s``), ``throttle`` (parts in flight), ``credentials`` (renewed),
``reread`` (parts re-read on resume), ``completed`` (the result), ``error`` (``exit_code``,
``hint``, ``next_command``); anything else is ``log``. Core modules attach the fields with
``log.warning(..., extra=event("retry", attempt=3))``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._units import MiB, format_size

if TYPE_CHECKING:
    from ._plan import PartPlan
    from ._progress import ProgressSink

log = logging.getLogger("persevere")


def event(name: str, **fields: Any) -> dict[str, Any]:
    """``extra=`` for a log call: the event's name and its fields, for JSON lines."""
    return {"event": name, "fields": fields}


def json_line(level: str, name: str, message: str, fields: dict[str, Any], created: float) -> str:
    """One JSON line: ``{"ts", "level", "event", "message", ...fields}``."""
    document = {
        "ts": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "event": name,
        "message": message,
        **fields,
    }
    return json.dumps(document, default=str)


def one_line(text: str) -> str:
    """A name (a path, a key), or a report's line holding one, as one line: a newline or
    another control character in it, which would forge a line of its own, escaped (``\\n``);
    a name that is not UTF-8 is shown as it was."""
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029"
        else c
        for c in text
    )


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        name = getattr(record, "event", "log")
        return json_line(
            record.levelname.lower(), name, record.getMessage(), fields, record.created
        )


class _Theirs(logging.Formatter):
    """A library's warning as one line, without the traceback it may carry."""

    def format(self, record: logging.LogRecord) -> str:
        return f"persevere: {record.name}: {one_line(record.getMessage())}"


def setup(level: int, json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter("persevere: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    # botocore's and aiobotocore's own warnings (a credential refresh that failed, with its
    # traceback, through logging's last resort) say what persevere's retry line says better:
    # one line under -v, else nothing.
    for name in ("botocore", "aiobotocore"):
        theirs: logging.Handler = logging.NullHandler()
        if level <= logging.INFO:
            theirs = logging.StreamHandler(sys.stderr)
            theirs.setFormatter(JsonLines() if json_lines else _Theirs())
        logging.getLogger(name).handlers[:] = [theirs]
        logging.getLogger(name).propagate = False


def json_lines() -> bool:
    return any(isinstance(h.formatter, JsonLines) for h in log.handlers)


def say(message: str, *args: Any, extra: dict[str, Any] | None = None) -> None:
    """A line people see unless ``-q``: a warning, the level plain text shows by default; for
    collectors an ``info`` event, since nothing is wrong (JSON lines show info)."""
    log.log(logging.INFO if json_lines() else logging.WARNING, message, *args, extra=extra)


def say_plan(plan: PartPlan) -> None:
    """The plan of a new upload, before anything is sent, so that a part size given in the
    wrong unit shows at once: ``8MB`` is 8,000,000 bytes here, 8 MiB for the aws cli."""
    say("plan: %s", plan.describe(), extra=event("plan", file_size=plan.file_size,
        part_size=plan.part_size, part_count=plan.part_count))  # fmt: skip
    note_decimal(plan)


def note_decimal(plan: PartPlan) -> None:
    """A part size in decimal units (``8MB``), said as such: the aws cli reads it as 8 MiB."""
    if plan.part_count > 1 and plan.part_size % MiB and plan.part_size % 1000 == 0:
        say(
            "note: KB/MB/GB are decimal (the aws cli reads 8MB as 8 MiB); "
            "write KiB/MiB/GiB or K/M/G for binary sizes"
        )


class NamingStateFile:
    """Progress that first names the state file, once it holds the upload: the upload starts
    its progress only then, so nothing is named before a refusal (a plan, a flag, an existing
    key, a refused CreateMultipartUpload) that leaves no state file behind. :meth:`name` names
    it at once, for a run that finds it already holds everything (``cp``: done earlier)."""

    def __init__(self, progress: ProgressSink, state_file: str | os.PathLike[str]) -> None:
        self._progress = progress
        self._state_file: str | None = str(state_file)

    def name(self) -> None:
        if self._state_file is not None:
            path, self._state_file = self._state_file, None
            say("state file: %s", path, extra=event("state_file", path=path))

    def start(self, total_bytes: int, done_bytes: int) -> None:
        self.name()
        self._progress.start(total_bytes, done_bytes)

    def advance(self, delta_bytes: int) -> None:
        self._progress.advance(delta_bytes)

    def close(self) -> None:
        self._progress.close()


class LogLineProgress:
    """For logs (stderr not a terminal): one line every ``INTERVAL_S`` seconds, plain or an
    ``progress`` event."""

    INTERVAL_S = 5.0

    def __init__(self, description: str):
        self._description = description
        self._total = self._done = self._started_with = 0
        self._t0 = self._last = 0.0
        self._files = ""

    def files(self, done: int, total: int) -> None:
        """A tree: how many of its files are done."""
        self._files = f", {done:,} of {total:,} files"

    def start(self, total_bytes: int, done_bytes: int) -> None:
        self._total, self._done, self._started_with = total_bytes, done_bytes, done_bytes
        self._t0 = self._last = time.monotonic()

    def advance(self, delta_bytes: int) -> None:
        self._done += delta_bytes
        now = time.monotonic()
        if now - self._last >= self.INTERVAL_S:
            self._last = now
            self._emit(now)

    def _emit(self, now: float) -> None:
        rate = (self._done - self._started_with) / max(now - self._t0, 1e-9)
        percent = 100.0 * self._done / self._total if self._total else 100.0
        of = f" of {format_size(self._total)} ({percent:.1f}%)"
        if not self._total and self._done:  # (a stream of unknown length)
            of = ""
        done = format_size(self._done)
        text = f"{self._description}: {done}{of} at {format_size(rate)}/s{self._files}"
        if json_lines():
            log.info(text, extra=event("progress", done=self._done, total=self._total,
                                          rate_bytes_s=round(rate)))  # fmt: skip
        else:  # never raises: a log that is gone (a closed pipe) must not stop the upload
            with contextlib.suppress(OSError, ValueError):
                print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._total:
            self._emit(time.monotonic())
