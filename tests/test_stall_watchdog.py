"""The stall watchdog cuts an attempt when its stall timeout is up, not on a 1 s tick.

The sender's parts are left out: the watchdog only reads the attempts it watches.
"""

from __future__ import annotations

import time

import anyio
import pytest

from persevere._options import UploadOptions
from persevere._sender import PartSender, _Attempt


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _sender(stall_timeout_s: float) -> PartSender:
    sender = PartSender.__new__(PartSender)
    sender.options = UploadOptions(stall_timeout_s=stall_timeout_s)
    sender._attempts = set()
    return sender


async def _watched(sender: PartSender, attempts: list[_Attempt], for_s: float) -> dict:
    """Run the watchdog over ``attempts`` for ``for_s``; when each one was cut (s), or None."""
    cut: dict[int, float | None] = dict.fromkeys(range(len(attempts)))
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        watchdog = anyio.CancelScope()
        sender._attempts.update(attempts)
        tg.start_soon(sender._watchdog, watchdog)
        while time.monotonic() - started < for_s:
            await anyio.sleep(0.01)
            for index, attempt in enumerate(attempts):
                if cut[index] is None and attempt.scope.cancel_called:
                    cut[index] = time.monotonic() - started
        watchdog.cancel()
    return cut


@pytest.mark.anyio
async def test_a_stalled_attempt_is_cut_when_its_timeout_is_up():
    """Was cut on the watchdog's first 1 s tick at the earliest, whatever the timeout."""
    cut = await _watched(_sender(0.2), [_Attempt(anyio.CancelScope(), False)], for_s=0.8)
    assert cut[0] is not None
    assert 0.2 <= cut[0] < 0.6


@pytest.mark.anyio
async def test_moving_or_throttled_attempts_are_not_cut():
    sender = _sender(0.2)
    moving, throttled = _Attempt(anyio.CancelScope(), False), _Attempt(anyio.CancelScope(), False)
    throttled.throttled = True

    async def keep_moving() -> None:
        for _ in range(40):
            moving.last_activity = time.monotonic()
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_moving)
        cut = await _watched(sender, [moving, throttled], for_s=0.7)
    assert cut == {0: None, 1: None}
