"""Adaptive concurrency: how many parts may be in flight right now.

AIMD, as TCP and large S3 clients do: when S3 pushes back (SlowDown, 503), halve the window;
after each success grow it by ``1/window`` (about one part per round of successes), never
above the configured ``--concurrency``. Workers beyond the window wait before sending.
"""

from __future__ import annotations

import logging

import anyio

from ._logs import event

log = logging.getLogger("persevere")


class CongestionWindow:
    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.size = float(ceiling)
        self.in_flight = 0
        self._changed = anyio.Event()

    @property
    def limit(self) -> int:
        return max(1, int(self.size))

    async def __aenter__(self) -> CongestionWindow:
        while self.in_flight >= self.limit:
            await self._changed.wait()
        self.in_flight += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.in_flight -= 1
        self._notify()

    def throttled(self) -> None:
        self._resize(max(1.0, self.size / 2), "S3 is throttling: parts in flight %d -> %d")

    def succeeded(self) -> None:
        if self.size < self.ceiling:
            self._resize(
                min(float(self.ceiling), self.size + 1 / self.size), "parts in flight %d -> %d"
            )

    def _resize(self, size: float, message: str) -> None:
        """A new window; logged, and waiting workers woken, when its limit moves."""
        before = self.limit
        self.size = size
        if self.limit != before:
            log.info(
                message, before, self.limit, extra=event("throttle", parts_in_flight=self.limit)
            )
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
