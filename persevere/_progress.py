"""Progress reporting. The uploader owns one sink; parts report byte deltas to it,
negative when a failed attempt rewinds (as s3transfer's subscribers do).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

from ._units import format_size


class ProgressSink(Protocol):
    def start(self, total_bytes: int, done_bytes: int) -> None: ...
    def advance(self, delta_bytes: int) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def start(self, total_bytes: int, done_bytes: int) -> None:
        pass

    def advance(self, delta_bytes: int) -> None:
        pass

    def close(self) -> None:
        pass


class TqdmProgress:
    """A bar on stderr: bytes, rate, ETA; resumed bytes show as already done."""

    def __init__(self, description: str) -> None:
        self._description = description
        self._bar: Any = None

    def start(self, total_bytes: int, done_bytes: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total_bytes,
            initial=done_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=self._description,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.2,
            smoothing=0.1,
        )

    def advance(self, delta_bytes: int) -> None:
        if self._bar is not None:
            self._bar.update(delta_bytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class LogLineProgress:
    """For logs (stderr not a terminal): one plain line every ``interval_s`` seconds."""

    def __init__(self, description: str, interval_s: float = 5.0, stream: TextIO | None = None):
        self._description = description
        self._interval = interval_s
        self._stream = stream or sys.stderr
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
        print(
            f"{self._description}: {format_size(self._done)} of {format_size(self._total)} "
            f"({percent:.1f}%) at {format_size(rate)}/s",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        if self._total:
            self._emit(time.monotonic())
