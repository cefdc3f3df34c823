"""Progress reporting. The uploader owns one sink; parts report byte deltas to it,
negative when a failed attempt rewinds (as s3transfer's subscribers do).
"""

from __future__ import annotations

import logging
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

        self._bar = BinaryBar(  # (a stream of unknown length, total 0: bytes and rate only)
            total=total_bytes or None,
            initial=done_bytes,
            unit="B",
            bar_format=self.BAR_FORMAT if total_bytes else "{desc}: {done} [{elapsed}, {speed}]",
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


class _Guarded:
    """An API caller's sink, whose errors stay its own: the first one it raises is logged and
    it is not called again; the transfer goes on. (Raised inside a part's body, it was taken
    for the network's failure: the part sent again, or the upload ended in an
    ExceptionGroup.) A progress display's bug is no reason to stop hours of transfer."""

    def __init__(self, sink: Any) -> None:
        self.sink: Any = sink
        self.error: Exception | None = None

    def _call(self, name: str, *args: int) -> None:
        if self.error is None:
            try:
                getattr(self.sink, name, lambda *_: None)(*args)
            except Exception as exc:
                self.error = exc
                logging.getLogger("persevere").warning(
                    "the progress sink's %s raised %r: it is not called again", name, exc
                )

    def start(self, total_bytes: int, done_bytes: int) -> None:
        self._call("start", total_bytes, done_bytes)

    def files(self, done: int, total: int) -> None:
        self._call("files", done, total)

    def advance(self, delta_bytes: int) -> None:
        self._call("advance", delta_bytes)

    def close(self) -> None:
        self._call("close")


def guarded(progress: Any) -> Any:
    """The sink an API call was given (None: none), guarded (:class:`_Guarded`)."""
    return NullProgress() if progress is None else _Guarded(progress)
