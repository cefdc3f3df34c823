"""``--max-bandwidth``: one token bucket shared by every part of an upload.

Bodies ask for their next slice's bytes before yielding it. The bucket holds at most a quarter
second of tokens, so bursts stay short and the average holds over a few seconds. The clock and
sleep are parameters so the arithmetic is testable without waiting."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar

import anyio

from ._units import parse_size

_RATE_RE = re.compile(r"^\s*(.+?)\s*(?:/\s*s)?\s*$", re.IGNORECASE)


def parse_rate(text: str) -> float:
    """Bytes per second from ``50MB/s``, ``50MiB/s``, ``50M`` or ``1000000``."""
    match = _RATE_RE.match(text)
    try:
        rate = parse_size(match.group(1) if match else text)
    except ValueError:
        raise ValueError(f"not a bandwidth: {text!r} (use e.g. 50MB/s, 100MiB/s)") from None
    if rate <= 0:
        raise ValueError(f"bandwidth must be positive: {text!r}")
    return float(rate)


class TokenBucket:
    def __init__(
        self,
        rate_bytes_s: float,
        *,
        burst_bytes: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.rate = rate_bytes_s
        # (a quarter second: at 64 KiB/s a whole MiB went at full speed; a slice larger than
        # it is a debt, paid by waiting before it is sent)
        self.capacity = burst_bytes if burst_bytes is not None else rate_bytes_s / 4
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = anyio.Lock()

    async def take(self, n_bytes: int) -> None:
        """Wait until ``n_bytes`` may be sent. Callers are served in order (one lock)."""
        async with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= n_bytes  # may go negative: the debt is paid by waiting
            if self._tokens < 0:
                await self._sleep(-self._tokens / self.rate)


# One bucket for every upload a run makes (a tree's files, small and large): set by sharing()
_SHARED: ContextVar[TokenBucket | None] = ContextVar("persevere_bandwidth", default=None)


def bucket_for(rate: float | None) -> TokenBucket | None:
    """An upload's bucket at ``rate`` (None: no cap): the one its run shares, else its own."""
    return (_SHARED.get() or TokenBucket(rate)) if rate else None


@contextlib.contextmanager
def sharing(rate: float | None) -> Iterator[TokenBucket | None]:
    """Within it (and the tasks started in it), every upload at ``rate`` takes from one
    bucket: the cap is the run's, not each file's."""
    token = _SHARED.set(TokenBucket(rate) if rate else None)
    try:
        yield _SHARED.get()
    finally:
        _SHARED.reset(token)
