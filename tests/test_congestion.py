"""AIMD window and the bandwidth token bucket: pure arithmetic, fake clocks, no server."""

from __future__ import annotations

import anyio
import pytest

from persevere._bandwidth import TokenBucket, parse_rate
from persevere._congestion import CongestionWindow


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_window_halves_on_throttle_and_grows_back_slowly():
    window = CongestionWindow(8)
    window.throttled()
    assert window.limit == 4
    window.throttled()
    window.throttled()
    window.throttled()
    assert window.limit == 1  # never below one part
    successes = 0
    while window.limit < 8:
        window.succeeded()
        successes += 1
    # additive increase: about `limit` successes per step, so 1 -> 8 takes ~ 1+2+...+7
    assert 20 <= successes <= 40
    for _ in range(100):
        window.succeeded()
    assert window.limit == 8  # never above --concurrency


@pytest.mark.anyio
async def test_window_holds_workers_beyond_its_limit():
    window = CongestionWindow(4)
    window.throttled()  # limit 2
    inside = peak = 0

    async def part():
        nonlocal inside, peak
        async with window:
            inside += 1
            peak = max(peak, inside)
            await anyio.sleep(0.01)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(part)
    assert peak == 2


@pytest.mark.parametrize(
    ("text", "rate"),
    [("50MB/s", 50e6), ("100MiB/s", 100 * 1024**2), ("64M", 64 * 1024**2), ("1000", 1000.0)],
)
def test_parse_rate(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0MB/s", ""])
def test_parse_rate_refuses(text):
    with pytest.raises(ValueError, match="bandwidth"):
        parse_rate(text)


@pytest.mark.anyio
async def test_token_bucket_paces_to_its_rate():
    now = 0.0
    slept: list[float] = []

    def clock():
        return now

    async def sleep(seconds):
        nonlocal now
        slept.append(seconds)
        now += seconds

    bucket = TokenBucket(1_000_000, burst_bytes=100_000, clock=clock, sleep=sleep)
    for _ in range(50):
        await bucket.take(100_000)  # 5 MB in all
    # the first 100 kB ride on the initial burst; the rest at 1 MB/s
    assert now == pytest.approx(4.9, rel=1e-6)
