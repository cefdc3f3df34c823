"""Adaptive concurrency: how many parts may be in flight right now.

AIMD, as TCP and large S3 clients do: when S3 pushes back (SlowDown, 503), halve the window;
after each success grow it by ``1/window`` (about one part per round of successes), never
above the configured ``--concurrency``. Workers beyond the window wait before sending.
"""

from __future__ import annotations

import logging
from types import TracebackType

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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.in_flight -= 1
        self._notify()

    def throttled(self) -> None:
        before = self.limit
        self.size = max(1.0, self.size / 2)
        if self.limit != before:
            log.info("S3 is throttling: parts in flight %d -> %d", before, self.limit,
                     extra=event("throttle", parts_in_flight=self.limit))  # fmt: skip
        self._notify()

    def succeeded(self) -> None:
        if self.size < self.ceiling:
            before = self.limit
            self.size = min(float(self.ceiling), self.size + 1 / self.size)
            if self.limit != before:
                log.info("parts in flight %d -> %d", before, self.limit,
                         extra=event("throttle", parts_in_flight=self.limit))  # fmt: skip
                self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
