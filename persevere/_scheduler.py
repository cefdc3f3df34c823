"""Sending the parts of one multipart upload: the hot path, shared by uploads and ``bench``.

One task group: ``concurrency`` workers pull part numbers from a shared iterator, each with
its own buffer, plus a watchdog that cuts attempts whose bytes stopped moving. Each attempt
passes the congestion window (AIMD on SlowDown/503) and, with ``--max-bandwidth``, a shared
token bucket; transient failures are retried by :func:`._retry.call_with_retry`. The first
permanent failure (or exhausted retries) cancels the rest and is raised.

What a part *is* (read from a file, or generated) is the caller's: ``prepare(number, buffer)``
returns its checksum and a factory of bodies, called again for every attempt.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from ._bandwidth import TokenBucket
from ._body import Throttle
from ._checksums import ChecksumAlgorithm
from ._congestion import CongestionWindow
from ._errors import PersevereError
from ._progress import NullProgress, ProgressSink
from ._retry import RetryPolicy, TransientError, call_with_retry
from ._s3 import attempt

# ``make_body(on_sent, throttle)``: a fresh body for one attempt.
BodyFactory = Callable[[Callable[[int], None], Throttle | None], Any]


@dataclass(frozen=True, slots=True)
class PreparedPart:
    number: int
    size: int
    checksum: str  # base64, sent in the request headers so S3 verifies the bytes
    make_body: BodyFactory


class _Attempt:
    """An in-flight UploadPart, watched for stalls: no byte sent and no answer for too long.

    Time spent waiting for ``--max-bandwidth`` tokens is not a stall.
    """

    __slots__ = ("last_activity", "scope", "throttled")

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.last_activity = time.monotonic()
        self.throttled = False


class PartSender:
    def __init__(
        self,
        client: Any,
        ids: dict[str, Any],  # Bucket, Key, UploadId (and ExpectedBucketOwner)
        algorithm: ChecksumAlgorithm,
        *,
        concurrency: int,
        retry: RetryPolicy,
        stall_timeout_s: float,
        exhausted: Callable[[str], Callable[[TransientError, int], PersevereError]],
        max_bandwidth_bytes_s: float | None = None,
        progress: ProgressSink | None = None,
    ) -> None:
        self.client = client
        self.ids = ids
        self.algorithm = algorithm
        self.concurrency = concurrency
        self.retry = retry
        self.stall_timeout_s = stall_timeout_s
        self.exhausted = exhausted
        self.progress = progress or NullProgress()
        self.window = CongestionWindow(concurrency)
        self.bandwidth = TokenBucket(max_bandwidth_bytes_s) if max_bandwidth_bytes_s else None
        self.bytes_sent = 0
        self._attempts: set[_Attempt] = set()

    async def send(
        self,
        todo: list[int],
        buffer_bytes: int,
        prepare: Callable[[int, memoryview], Awaitable[PreparedPart]],
        done: Callable[[PreparedPart, str], Awaitable[None]],
    ) -> None:
        """Send ``todo``; ``done(part, etag)`` records each success before the next part."""
        if not todo:
            return
        pending = iter(todo)
        failures: list[PersevereError] = []
        async with anyio.create_task_group() as tg:
            watchdog = anyio.CancelScope()
            tg.start_soon(self._watchdog, watchdog)
            async with anyio.create_task_group() as workers:
                for _ in range(min(self.concurrency, len(todo))):
                    workers.start_soon(
                        self._worker, pending, buffer_bytes, prepare, done, failures, tg
                    )
            watchdog.cancel()
        if failures:
            raise failures[0]

    async def _worker(
        self,
        pending: Iterator[int],
        buffer_bytes: int,
        prepare: Callable[[int, memoryview], Awaitable[PreparedPart]],
        done: Callable[[PreparedPart, str], Awaitable[None]],
        failures: list[PersevereError],
        tg: anyio.abc.TaskGroup,
    ) -> None:
        buffer = memoryview(bytearray(buffer_bytes))
        try:
            for number in pending:
                part = await prepare(number, buffer)
                what = f"part {number}"

                async def send_once(part: PreparedPart = part) -> str:
                    async with self.window:
                        return await self._send_once(part)

                etag = await call_with_retry(self.retry, what, send_once, self.exhausted(what))
                await done(part, etag)
        except PersevereError as exc:
            failures.append(exc)
            tg.cancel_scope.cancel()

    async def _watchdog(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await anyio.sleep(1.0)
                now = time.monotonic()
                for watched in list(self._attempts):
                    stalled = now - watched.last_activity > self.stall_timeout_s
                    if stalled and not watched.throttled:
                        watched.scope.cancel()

    async def _send_once(self, part: PreparedPart) -> str:
        """One UploadPart attempt, cut by the watchdog if it stalls; returns the ETag."""
        what = f"part {part.number}"
        param = self.algorithm.param
        sent = 0
        with anyio.CancelScope() as scope:
            watched = _Attempt(scope)

            def on_sent(n: int) -> None:
                nonlocal sent
                sent += n
                watched.last_activity = time.monotonic()
                self.progress.advance(n)

            throttle: Throttle | None = None
            if self.bandwidth is not None:
                bucket = self.bandwidth

                async def throttle(n: int) -> None:
                    watched.throttled = True
                    try:
                        await bucket.take(n)
                    finally:
                        watched.throttled = False
                        watched.last_activity = time.monotonic()

            body = part.make_body(on_sent, throttle)
            self._attempts.add(watched)
            try:
                response = await attempt(
                    what,
                    lambda: self.client.upload_part(
                        **self.ids,
                        PartNumber=part.number,
                        Body=body,
                        ContentLength=part.size,
                        **{param: part.checksum},
                    ),
                )
            except BaseException as exc:
                self.progress.advance(-sent)  # the retry sends these bytes again
                body_error = getattr(body, "error", None)
                if body_error is not None:
                    raise body_error from exc  # a local failure, not the network's
                if isinstance(exc, TransientError) and exc.throttle:
                    self.window.throttled()
                raise
            finally:
                self._attempts.discard(watched)
        if scope.cancelled_caught:
            self.progress.advance(-sent)
            raise TransientError(f"{what}: nothing moved for {self.stall_timeout_s:.0f}s (stalled)")
        returned = response.get(param)
        if returned is not None and returned != part.checksum:
            self.progress.advance(-sent)
            raise TransientError(
                f"{what}: S3 computed checksum {returned}, expected {part.checksum}",
                code="BadDigest",
            )
        self.bytes_sent += part.size
        self.window.succeeded()
        return str(response["ETag"])
