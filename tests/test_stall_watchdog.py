"""The stall watchdog cuts an attempt when its stall timeout is up, not on a 1 s tick.

The sender's parts are left out: the watchdog only reads the attempts it watches.
"""

from __future__ import annotations

import time

import anyio
import pytest

from persevere._sender import Attempt, Stalls


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _sender(stall_timeout_s: float) -> Stalls:
    return Stalls(stall_timeout_s, read_timeout_s=120.0)


async def _watched(sender: Stalls, attempts: list[Attempt], for_s: float) -> dict:
    """Run the watchdog over ``attempts`` for ``for_s``; when each one was cut (s), or None."""
    cut: dict[int, float | None] = dict.fromkeys(range(len(attempts)))
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        watchdog = anyio.CancelScope()
        sender.attempts.update(attempts)
        tg.start_soon(sender.watch, watchdog)
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
    cut = await _watched(_sender(0.2), [Attempt(anyio.CancelScope(), 1)], for_s=0.8)
    assert cut[0] is not None
    assert 0.2 <= cut[0] < 0.6


@pytest.mark.anyio
async def test_moving_or_throttled_attempts_are_not_cut():
    sender = _sender(0.2)
    moving, throttled = Attempt(anyio.CancelScope(), 1), Attempt(anyio.CancelScope(), 1)
    throttled.throttled = True

    async def keep_moving() -> None:
        for _ in range(40):
            moving.last_activity = time.monotonic()
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_moving)
        cut = await _watched(sender, [moving, throttled], for_s=0.7)
    assert cut == {0: None, 1: None}


class _Body:
    """A body written to ``sock`` (what a part's body knows once aiohttp writes it)."""

    def __init__(self, sock) -> None:
        self.sock = sock


def _queued_pair(n_bytes: int):
    """A TCP connection on loopback whose first end holds bytes its peer has not read (a
    small receive buffer: they are acknowledged as they are read); and how many it took."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ours = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
    ours.setblocking(False)
    taken = ours.send(b"x" * n_bytes)
    time.sleep(0.05)  # (the peer's buffer filled)
    return ours, peer, taken


@pytest.mark.anyio
async def test_a_body_stuck_in_the_send_queue_is_cut_at_the_timeout_without_allowance():
    """The whole body handed to the kernel, then the link dead: the queue does not drain. The
    allowance for draining (twice the handing) was all it got; with the queue seen, it is cut
    once the queue has not moved for the timeout."""
    ours, peer, taken = _queued_pair(64 * 1024)
    with ours, peer:
        attempt = Attempt(anyio.CancelScope(), taken)
        attempt.body = _Body(ours)
        attempt.started -= 10.0  # a handing that took 10 s: an allowance of 20 s, before
        attempt.moved(taken)
        assert attempt.queued and attempt.queued > 0
        cut = await _watched(_sender(0.3), [attempt], for_s=1.2)
    assert cut[0] is not None and cut[0] < 1.0


@pytest.mark.slow  # (over 3 s in make test: make test-all runs it)
@pytest.mark.anyio
async def test_a_draining_send_queue_is_progress_and_the_answer_then_gets_its_allowance():
    """A peer reading slowly (a slow link): the queue shrinks at every look, so nothing is
    cut while it drains, for longer than the timeout; once the peer has every byte, the
    answer is awaited the timeout and twice the time the bytes took, then cut."""
    ours, peer, taken = _queued_pair(48 * 1024)
    with ours, peer:
        attempt = Attempt(anyio.CancelScope(), taken)
        attempt.body = _Body(ours)
        attempt.moved(taken)
        assert attempt.queued and attempt.queued > 30 * 1024
        drained_at: list[float] = []

        async def read_slowly() -> None:
            started = time.monotonic()
            peer.setblocking(False)
            while True:
                await anyio.sleep(0.05)
                try:
                    if not peer.recv(4 * 1024):
                        break
                except BlockingIOError:
                    drained_at.append(time.monotonic() - started)
                    break

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_slowly)
            cut = await _watched(_sender(0.3), [attempt], for_s=3.5)
    assert drained_at and drained_at[0] > 0.45  # it drained for longer than the timeout
    assert attempt.emptied
    assert cut[0] is not None
    # cut after the timeout and the allowance (twice the draining), not while it drained
    assert cut[0] > drained_at[0] + 0.3 + 0.8, (cut, drained_at)


def test_an_attempt_lets_go_of_its_body_when_it_ends():
    """The body's on_sent holds the attempt; an attempt that held its body after its end made
    a cycle that only a collection frees, and a stream's parts (each its own memory) piled up:
    a 1 GiB stream peaked at 453 MiB against its bound of 256 (tests/test_stream.py)."""
    stalls = _sender(1.0)

    async def main() -> Attempt:
        with stalls.attempt(10) as watched:
            watched.body = _Body(None)
        return watched

    assert anyio.run(main).body is None
