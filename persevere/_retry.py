"""Retry policy, in one place: which failures are worth another try, and how long to wait.

botocore's own retries are switched off (``total_max_attempts=1`` in :mod:`._s3`) so attempts
are not multiplied; every S3 call persevere makes goes through :func:`call_with_retry`.
A failure after which fresh credentials are in place (see :mod:`._credentials`) is retried at
once and not counted: the request itself was fine, only its signature was stale.
Backoff is exponential with full jitter (AWS architecture blog, "Exponential Backoff And
Jitter"). The clock, sleep and random source are parameters so tests run instantly.

An exhausted budget is "try again later" (exit 3), with one exception: a
CompleteMultipartUpload that the server answered with the same error, InternalError (HTTP
500), on every attempt, of more than one (:func:`refused_throughout`). AWS asks clients to retry an
InternalError, and a passing one does not outlast a budget of backoffs; one that does is the
server refusing this upload as it stands: SeaweedFS answers every Complete of a key with a
path segment over 255 bytes (a file name to its filer) this way, and would have a
supervisor re-run the same command forever. That is exit 1, with the server's words. Not so
a 503 or SlowDown (the server asks to come back later), a 502/504 (a gateway), a timeout or a
refused or reset connection (the network): those stay exit 3, as does a budget whose
failures differ from one another.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

import anyio

from ._errors import PersevereError
from ._logs import event

log = logging.getLogger("persevere")

T = TypeVar("T")

# Uncounted retries after a credentials renewal, per call: a source that keeps handing out
# credentials the server refuses must still run out of attempts.
FREE_CREDENTIAL_RETRIES = 3


class TransientError(Exception):
    """A failure that another attempt may cure (reset connection, 5xx, SlowDown, BadDigest...).

    Raised by :mod:`._s3`'s translation; never escapes :func:`call_with_retry`, which turns an
    exhausted budget into ``on_exhausted(last)``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        throttle: bool = False,
        credentials_renewed: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.throttle = throttle
        # S3 refused the credentials and fresh ones are now in place: retry now, uncounted.
        self.credentials_renewed = credentials_renewed


# Server errors that, answered to every attempt of a CompleteMultipartUpload, are taken as
# the server's refusal of the upload rather than a passing fault (see the module docstring).
PERSISTENT_AT_COMPLETE = frozenset({"InternalError"})


def refused_throughout(failures: Sequence[TransientError]) -> bool:
    """Did the server answer every attempt of a CompleteMultipartUpload, more than one, with
    the same persistent error (:data:`PERSISTENT_AT_COMPLETE`)? Then no later run will do
    better. (One answer, with ``--max-retries 0``, is no more than a passing one.)"""
    codes = {failure.code for failure in failures}
    return len(failures) > 1 and len(codes) == 1 and codes <= PERSISTENT_AT_COMPLETE


@dataclass(slots=True)
class RetryPolicy:
    """How long one call keeps trying: ``max_attempts`` attempts, or (``max_attempts=None``)
    until ``patience_s`` seconds have passed since its first failure."""

    max_attempts: int | None = 10
    base_delay_s: float = 0.25
    max_delay_s: float = 20.0
    patience_s: float | None = None  # give up on one call after this long, whatever the count
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.max_attempts is None and self.patience_s is None:
            raise ValueError("a retry policy needs max_attempts or patience_s")

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(n-1))] before retry n (1-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return self.rng.uniform(0, ceiling)


class Call(Enum):
    """The kinds of S3 call, each with its retry budget (:func:`policy`). FIRST: Create, the
    write-once HeadObject before it, the check of an upload found completed (cp, resume), a
    dry run's probes: an unreachable endpoint is reported in seconds, not minutes."""

    FIRST = "the first call of a run, before anything is made or sent: fail fast"
    UPLOAD = "the upload's own calls: the user's policy (--max-retries / --retry-for)"
    CLEANUP = "after a failure or a probe (abort, bench's delete): 3 tries, time-boxed"
    LOOKUP = "calls outside an upload (status, list, verify, abort): 5 tries"


def policy(kind: Call, user: RetryPolicy | None = None, first: int = 4) -> RetryPolicy:
    """The retry policy for a call of this kind, made from the user's (``--max-retries``,
    ``--retry-for``; default: :class:`RetryPolicy`'s). ``first``: the first call's attempts
    (:attr:`._options.UploadOptions.first_call_attempts`). FIRST and CLEANUP keep the user's
    backoff, cut to their tries, unless a patience was asked for (``--retry-for``): then that
    decides, here too; it holds for every kind but LOOKUP."""
    if kind is Call.LOOKUP:
        return RetryPolicy(max_attempts=5)
    user = user or RetryPolicy()
    if kind is Call.UPLOAD or user.patience_s is not None:
        return user
    return dataclasses.replace(user, max_attempts=first if kind is Call.FIRST else 3)


async def call_with_retry(
    policy: RetryPolicy,
    what: str,
    attempt_fn: Callable[[], Awaitable[T]],
    on_exhausted: Callable[[TransientError, int], PersevereError],
) -> T:
    """Run ``attempt_fn`` until it succeeds, fails permanently, or the budget runs out (a
    patience counted from the first failure: an attempt that took long, or a process stopped
    for a while, Ctrl-Z, SIGSTOP, does not use it up before any retry)."""
    started: float | None = None
    attempt = 0
    free_retries = 0
    while True:
        attempt += 1
        try:
            return await attempt_fn()
        except TransientError as exc:
            if exc.credentials_renewed and free_retries < FREE_CREDENTIAL_RETRIES:
                free_retries += 1
                attempt -= 1
                log.info("%s: %s; retrying with fresh credentials", what, exc,
                         extra=event("credentials", what=what))  # fmt: skip
                continue
            started = policy.clock() if started is None else started
            left = None if policy.patience_s is None else policy.patience_s - (
                policy.clock() - started)  # fmt: skip
            if (left is not None and left <= 0 and attempt > 1) or (
                policy.max_attempts is not None and attempt >= policy.max_attempts
            ):
                raise on_exhausted(exc, attempt) from exc
            delay = policy.delay(attempt)
            delay = delay if left is None else max(0.0, min(delay, left))
            log.warning(
                "%s failed (%s), retrying in %.1fs (attempt %d of %s)",
                what,
                exc,
                delay,
                attempt + 1,
                policy.max_attempts or f"{policy.patience_s:.0f}s",
                extra=event(
                    "retry", what=what, attempt=attempt + 1, delay_s=round(delay, 2), code=exc.code
                ),
            )
            await policy.sleep(delay)
