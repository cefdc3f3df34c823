"""Progress reporting. The uploader owns one sink; parts report byte deltas to it,
negative when a failed attempt rewinds (as s3transfer's subscribers do).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol


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
