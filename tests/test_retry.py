"""call_with_retry with an injected clock, sleep and random source: no real waiting."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest

import persevere
from persevere import ResumableError, RetryPolicy
from persevere._retry import TransientError, call_with_retry


@pytest.fixture
def anyio_backend():
    return "asyncio"


class FakeTime:
    """A clock that only moves when the code under test sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """Fails with TransientError ``failures`` times, then returns ``result``."""

    def __init__(self, failures: int, result: str = "ok", cost_s: float = 0.0, time=None):
        self.failures = failures
        self.result = result
        self.calls = 0
        self.cost_s = cost_s
        self.time = time

    async def __call__(self) -> str:
        self.calls += 1
        if self.time is not None:
            self.time.now += self.cost_s
        if self.calls <= self.failures:
            raise TransientError(f"reset #{self.calls}", code="RequestTimeout")
        return self.result


def policy(time: FakeTime, **overrides: Any) -> RetryPolicy:
    base = RetryPolicy(
        max_attempts=5,
        base_delay_s=0.25,
        max_delay_s=20.0,
        clock=time.clock,
        sleep=time.sleep,
        rng=random.Random(1234),
    )
    return dataclasses.replace(base, **overrides)


GaveUp = list[tuple[TransientError, int]]


def exhausted(calls: GaveUp) -> Callable[[TransientError, int], ResumableError]:
    def on_exhausted(exc: TransientError, attempts: int) -> ResumableError:
        calls.append((exc, attempts))
        return ResumableError(f"gave up after {attempts} attempts: {exc}")

    return on_exhausted


@pytest.mark.anyio
async def test_first_try_success_does_not_sleep():
    time = FakeTime()
    attempt = Flaky(0)
    assert await call_with_retry(policy(time), "PutObject", attempt, exhausted([])) == "ok"
    assert attempt.calls == 1
    assert time.sleeps == []


@pytest.mark.anyio
async def test_succeeds_after_transient_failures():
    time = FakeTime()
    attempt = Flaky(3)
    gave_up: GaveUp = []
    result = await call_with_retry(policy(time), "UploadPart 7", attempt, exhausted(gave_up))
    assert result == "ok"
    assert attempt.calls == 4
    assert len(time.sleeps) == 3
    assert gave_up == []


@pytest.mark.anyio
async def test_gives_up_after_max_attempts():
    time = FakeTime()
    attempt = Flaky(100)
    gave_up: GaveUp = []
    with pytest.raises(ResumableError, match="gave up after 5 attempts: reset #5") as info:
        await call_with_retry(policy(time), "UploadPart 7", attempt, exhausted(gave_up))
    assert attempt.calls == 5
    assert len(time.sleeps) == 4  # no pointless sleep after the last attempt
    [(last, attempts)] = gave_up
    assert attempts == 5
    assert str(last) == "reset #5"
    assert info.value.__cause__ is last


@pytest.mark.anyio
async def test_single_attempt_policy_never_sleeps():
    time = FakeTime()
    attempt = Flaky(1)
    with pytest.raises(ResumableError):
        await call_with_retry(policy(time, max_attempts=1), "x", attempt, exhausted([]))
    assert attempt.calls == 1
    assert time.sleeps == []


@pytest.mark.anyio
async def test_patience_stops_before_max_attempts():
    time = FakeTime()
    # Each attempt takes 10 s of (fake) time; patience, counted from the first failure (audit
    # 16 #12: a process stopped for a while, or a first attempt that took long, had used it
    # up before any retry), runs out during the fourth.
    attempt = Flaky(100, cost_s=10.0, time=time)
    gave_up: GaveUp = []
    slow = policy(time, max_attempts=100, base_delay_s=0.001, max_delay_s=0.001, patience_s=25.0)
    with pytest.raises(ResumableError, match="gave up after 4 attempts"):
        await call_with_retry(slow, "UploadPart 1", attempt, exhausted(gave_up))
    assert attempt.calls == 4
    assert gave_up[0][1] == 4
    assert len(time.sleeps) == 3


@pytest.mark.anyio
async def test_sleeping_counts_against_patience():
    time = FakeTime()
    attempt = Flaky(100)
    slow = policy(time, max_attempts=100, base_delay_s=8.0, max_delay_s=8.0, patience_s=30.0)
    with pytest.raises(ResumableError):
        await call_with_retry(slow, "x", attempt, exhausted([]))
    # Gave up at the first failure seen at or after 30 s, having slept before each retry.
    assert sum(time.sleeps[:-1]) < 30.0 <= sum(time.sleeps)
    assert attempt.calls == len(time.sleeps) + 1


class PermanentFailure(Exception):
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("error", [PermanentFailure("AccessDenied"), ResumableError("no")])
async def test_permanent_failure_propagates_at_once(error):
    time = FakeTime()
    calls = []

    async def attempt() -> str:
        calls.append(1)
        raise error

    gave_up: GaveUp = []
    with pytest.raises(type(error)) as info:
        await call_with_retry(policy(time), "x", attempt, exhausted(gave_up))
    assert info.value is error
    assert calls == [1]
    assert time.sleeps == []
    assert gave_up == []


@pytest.mark.anyio
async def test_permanent_failure_after_transient_ones_stops_retrying():
    time = FakeTime()
    outcomes = [TransientError("reset"), PermanentFailure("NoSuchUpload")]

    async def attempt() -> str:
        raise outcomes.pop(0)

    with pytest.raises(PermanentFailure):
        await call_with_retry(policy(time), "x", attempt, exhausted([]))
    assert outcomes == []
    assert len(time.sleeps) == 1


@pytest.mark.anyio
async def test_delays_are_full_jitter_under_the_capped_exponential():
    time = FakeTime()
    attempt = Flaky(100)
    retry = policy(time, max_attempts=12, base_delay_s=0.5, max_delay_s=20.0)
    with pytest.raises(ResumableError):
        await call_with_retry(retry, "x", attempt, exhausted([]))
    assert len(time.sleeps) == 11
    for n, delay in enumerate(time.sleeps, start=1):
        assert 0 <= delay <= min(20.0, 0.5 * 2 ** (n - 1)), (n, delay)
    # Jitter, not a fixed schedule: the capped tail is not pinned at the cap.
    assert len(set(time.sleeps)) == len(time.sleeps)


@pytest.mark.anyio
async def test_same_seed_same_delays():
    schedules = []
    for _ in range(2):
        time = FakeTime()
        with pytest.raises(ResumableError):
            await call_with_retry(policy(time, rng=random.Random(7)), "x", Flaky(9), exhausted([]))
        schedules.append(time.sleeps)
    assert schedules[0] == schedules[1]


def test_delay_bounds_over_many_draws():
    retry = RetryPolicy(base_delay_s=0.25, max_delay_s=20.0, rng=random.Random(0))
    for attempt in range(1, 16):
        ceiling = min(20.0, 0.25 * 2 ** (attempt - 1))
        draws = [retry.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling / 2  # spread over the range, not stuck near 0


@pytest.mark.parametrize(
    ("code", "status", "kind", "throttle"),
    [
        ("SlowDown", 503, TransientError, True),
        ("InternalError", 500, TransientError, False),
        ("BadDigest", 400, TransientError, False),
        ("", 502, TransientError, False),
        ("AccessDenied", 403, persevere.S3Error, False),
        ("NoSuchUpload", 404, persevere.UploadGone, False),
    ],
)
def test_s3_errors_are_translated_to_transient_or_permanent(code, status, kind, throttle):
    from botocore.exceptions import ClientError

    from persevere._s3 import translate

    response = {"Error": {"Code": code, "Message": "m"},
                "ResponseMetadata": {"HTTPStatusCode": status}}  # fmt: skip
    exc = translate(ClientError(response, "UploadPart"), "part 1")  # type: ignore[arg-type]
    assert type(exc) is kind
    assert exc is not None and str(exc).startswith("part 1: ")
    if isinstance(exc, TransientError):
        assert exc.throttle is throttle
        assert exc.code == code


def test_only_the_same_internal_error_throughout_is_the_servers_refusal():
    """At CompleteMultipartUpload, an InternalError answered to every attempt is exit 1
    (the server's refusal, see persevere._retry); anything else that exhausts the budget
    stays "try again later"."""
    from persevere._retry import refused_throughout

    def failures(*codes):
        return [TransientError("x", code=code) for code in codes]

    assert refused_throughout(failures("InternalError", "InternalError", "InternalError"))
    assert not refused_throughout(failures("SlowDown", "SlowDown"))  # asked to come back
    assert not refused_throughout(failures("ServiceUnavailable"))
    assert not refused_throughout(failures(None, None))  # refused or reset connections
    assert not refused_throughout(failures("", ""))  # a bare HTTP 500/502: a gateway
    assert not refused_throughout(failures(None, "InternalError"))  # the network, then S3
    assert not refused_throughout([])
    # One attempt (--max-retries 0, or a --retry-for spent by one slow answer) proves nothing:
    # a passing InternalError was exit 1, which a supervisor does not run again.
    assert not refused_throughout(failures("InternalError"))
    assert refused_throughout(failures("InternalError", "InternalError"))


def test_one_policy_per_kind_of_call():
    from persevere._options import UploadOptions
    from persevere._retry import Call, policy

    user = RetryPolicy(max_attempts=21)
    assert policy(Call.UPLOAD, user) is user
    assert policy(Call.FIRST, user).max_attempts == 4
    assert policy(Call.FIRST, user, first=2).max_attempts == 2
    assert policy(Call.CLEANUP, user).max_attempts == 3
    assert policy(Call.LOOKUP, user).max_attempts == 5
    assert policy(Call.FIRST).max_attempts == 4  # without a user's policy: the default one's
    patient = RetryPolicy(max_attempts=None, patience_s=600)
    assert policy(Call.FIRST, patient) is patient and policy(Call.CLEANUP, patient) is patient
    assert UploadOptions(retry=user, first_call_attempts=7).policy(Call.FIRST).max_attempts == 7
