"""Progress reporting. The uploader owns one sink; parts report byte deltas to it,
negative when a failed attempt rewinds (as s3transfer's subscribers do).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from ._units import format_size


class ProgressSink(Protocol):
    def start(self, total_bytes: int, done_bytes: int) -> None: ...
    def advance(self, delta_bytes: int) -> None: ...
    def close(self) -> None: ...


class TreeProgress(ProgressSink, Protocol):
    def files(self, done: int, total: int) -> None: ...


class NullProgress:
    def start(self, total_bytes: int, done_bytes: int) -> None:
        pass

    def files(self, done: int, total: int) -> None:
        pass

    def advance(self, delta_bytes: int) -> None:
        pass

    def close(self) -> None:
        pass


class TqdmProgress:
    """A bar on stderr: bytes, rate, ETA; resumed bytes show as already done.

    Sizes and the rate are formatted by :func:`format_size` (KiB, MiB, GiB), as in every other
    line persevere prints: tqdm's own ``unit_scale`` would scale the rate by 1000 whatever
    ``unit_divisor`` says, and label both "MB".
    """

    BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {done}/{size} [{elapsed}<{remaining}, {speed}]"

    def __init__(self, description: str) -> None:
        self._description = description
        self._bar: Any = None

    def start(self, total_bytes: int, done_bytes: int) -> None:
        from tqdm import tqdm  # imported late: start-up time

        class BinaryBar(tqdm):  # type: ignore[misc]  # tqdm is untyped
            """tqdm, with the bar's sizes and rate in binary units."""

            @property
            def format_dict(self) -> dict[str, Any]:
                fields: dict[str, Any] = super().format_dict
                rate = fields["rate"]  # smoothed; None until there is one: then the average
                if rate is None and fields["elapsed"]:
                    rate = (fields["n"] - fields["initial"]) / fields["elapsed"]
                fields["done"] = format_size(fields["n"])
                fields["size"] = format_size(fields["total"] or 0)
                fields["speed"] = f"{format_size(rate)}/s" if rate else "?/s"
                return fields

        self._bar = BinaryBar(
            total=total_bytes,
            initial=done_bytes,
            unit="B",
            bar_format=self.BAR_FORMAT,
            desc=self._description,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.2,
            smoothing=0.1,
        )

    def advance(self, delta_bytes: int) -> None:
        if self._bar is not None:
            self._bar.update(delta_bytes)

    def files(self, done: int, total: int) -> None:
        """A tree: how many of its files are done."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{done:,}/{total:,} files", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
