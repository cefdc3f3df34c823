"""Sending the parts of one multipart upload: the hot path, shared by uploads and ``bench``.

The part size and the concurrency each travel one way, from the CLI to the UploadPart call::

    --part-size ─> make_plan() ─> PartPlan ─┬─> journal header (resume rebuilds the plan from it)
                                            │
    --concurrency ─> UploadOptions ─────────┼─> open_client(pool of concurrency + 2)
                                            ▼
                   send(session, ledger, options, progress, feed)   (every upload, bench)
                     workers = min(concurrency, parts); one buffer each, sized here once
                                            ▼
                   feed.next(buffer): a file's source.prepare(PartSpec(n, ...), buffer),
                                      or a stream's next part (its own memory); a part
                                      larger than the buffer is read as it is sent, its
                                      checksum a trailer (._trailer) if the endpoint takes it
                                            ▼
                   session.upload_part(number, body, size, checksum)   -> UploadPart
                                            ▼
                   ledger.record(PartRecord)   (the journal: fsync'd before the part counts)

One task group: the workers pull part numbers from a shared iterator, plus a watchdog that cuts
attempts whose bytes stopped moving. Each attempt passes the congestion window (AIMD on
SlowDown/503) and, with a bandwidth cap, a shared token bucket; transient failures are retried
by :func:`._retry.call_with_retry`. The first permanent failure (or exhausted retries) cancels
the rest and is raised.

A stop (Ctrl-C cancelling the upload, or that first failure) cuts the attempts in flight, but
for those whose body is all sent: S3 may hold that part already, so its answer gets
``ANSWER_GRACE_S`` to come, and the part is recorded. The journal then holds every part S3
acknowledged; only an answer later than that leaves S3 a part the journal lacks (the next
resume checks it against the file and adopts it).

What a part *is* belongs to the feed (:class:`Feed`: the planned parts of a file, a shard or
the bench's generated pattern, or a stream's parts in order); where a success is written down
belongs to the ledger (:class:`Ledger`).
"""

from __future__ import annotations

import functools
import time
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from ._bandwidth import bucket_for
from ._body import PreparedPart, Throttle
from ._checksums import b64
from ._congestion import CongestionWindow
from ._errors import PersevereError
from ._journal import PartRecord
from ._options import UploadOptions
from ._plan import PartPlan
from ._progress import ProgressSink
from ._retry import TransientError, call_with_retry
from ._session import MultipartSession
from ._source import PartSpec
from ._trailer import TrailerRefused
from ._units import MiB


class PartSource(Protocol):
    """Where parts come from: checksums them, and makes a body per attempt."""

    async def prepare(self, part: PartSpec, buffer: memoryview) -> PreparedPart: ...


class Ledger(Protocol):
    """Where a part S3 accepted is written down, before it counts as done."""

    async def record(self, part: PartRecord) -> None: ...


class MemoryLedger:
    """The bench's ledger: nothing to resume, so parts are only remembered."""

    def __init__(self) -> None:
        self.parts: dict[int, PartRecord] = {}

    async def record(self, part: PartRecord) -> None:
        self.parts[part.part_number] = part


ANSWER_GRACE_S = 10.0  # how long a stop waits for the answer to a part whose body is all sent
_WATCHDOG_MIN_SLEEP_S = 0.01  # due now but not yet over: look again shortly, never spin


class _Attempt:
    """An in-flight UploadPart, watched for stalls: no byte sent and no answer for too long.

    Time spent waiting for bandwidth tokens is not a stall. ``scope`` is shielded from a stop:
    :meth:`stop` decides (see the module docstring).
    """

    __slots__ = ("body_sent", "draining_s", "last_activity", "scope", "started", "stopped",
                 "throttled", "waited_s")  # fmt: skip

    def __init__(self, scope: anyio.CancelScope, body_sent: bool) -> None:
        self.scope = scope
        self.started = self.last_activity = time.monotonic()
        self.throttled = False
        self.body_sent = body_sent  # every byte handed to the connection: S3 may hold the part
        self.stopped = False
        # Once the body is handed over, the kernel's send buffer still drains to a slow link
        # (nothing seen to move): as long again as the handing took, twice, is not a stall.
        self.draining_s = 0.0
        self.waited_s = 0.0  # for --max-bandwidth's tokens: nothing was queued then

    def handed(self, sent_all: bool) -> None:
        self.last_activity = time.monotonic()
        if sent_all and not self.body_sent:
            self.draining_s = 2 * (self.last_activity - self.started - self.waited_s)
        self.body_sent = sent_all

    def stop(self) -> None:
        self.stopped = True
        if self.body_sent:
            self.scope.deadline = min(self.scope.deadline, anyio.current_time() + ANSWER_GRACE_S)
        else:
            self.scope.cancel()


class Feed(Protocol):
    """What the sender pulls parts from, whatever the upload (file, device, stream, shard) or
    the bench: the next prepared part, read into the worker's ``buffer`` if it fits, or None
    when there is nothing more to send."""

    count: int | None  # how many parts it gives; None: until it runs dry (a stream)
    part_size: int  # the largest a worker's buffer need hold; 0: parts bring their own memory

    async def next(self, buffer: memoryview) -> PreparedPart | None: ...


class PlannedParts:
    """These parts of a planned source (a file or device, a shard's range of it, the bench's
    pattern), in the order given, each read into the worker's buffer."""

    def __init__(
        self, session: MultipartSession, source: PartSource, plan: PartPlan, numbers: list[int]
    ) -> None:
        self.count: int | None = len(numbers)
        self.part_size = plan.part_size
        self._session = session
        self._source = source
        self._plan = plan
        self._pending = iter(numbers)

    async def next(self, buffer: memoryview) -> PreparedPart | None:
        number = next(self._pending, None)
        if number is None:
            return None
        plan = self._plan
        size = plan.size_of(number)
        # Only a part larger than the buffer is streamed, hence may be trailed.
        trailer = size > len(buffer) and self._session.takes_trailers()
        spec = PartSpec(number, plan.offset(number), size, self._session.algorithm,
                        self._session.verifier.needs_md5(), trailer)  # fmt: skip
        return await self._source.prepare(spec, buffer)


async def send(
    session: MultipartSession,
    ledger: Ledger,
    options: UploadOptions,
    progress: ProgressSink,
    feed: Feed,
) -> int:
    """Send every part ``feed`` gives, each recorded in ``ledger`` before it counts; the bytes
    sent. The one place a :class:`PartSender` is made: every upload and the bench send here."""
    return await PartSender(session, ledger, options, progress).run(feed)


class PartSender:
    def __init__(
        self,
        session: MultipartSession,
        ledger: Ledger,
        options: UploadOptions,
        progress: ProgressSink,
    ) -> None:
        self.session = session
        self.ledger = ledger
        self.options = options
        self.progress = progress
        self.window = CongestionWindow(options.concurrency)
        self.bandwidth = bucket_for(options.max_bandwidth_bytes_s)  # (a tree's: shared)
        self.bytes_sent = 0
        self._attempts: set[_Attempt] = set()

    async def run(self, feed: Feed) -> int:
        """Send every part ``feed`` gives: workers, each recording a part in the ledger before
        taking another; their buffers are sized here, once. The bytes sent."""
        if feed.count == 0:
            return 0
        workers = min(self.options.concurrency, feed.count or self.options.concurrency)
        buffer_bytes = min(feed.part_size, max(MiB, self.options.buffer_budget_bytes // workers))
        failures: list[PersevereError] = []
        async with anyio.create_task_group() as tg:
            watchdog = anyio.CancelScope()
            tg.start_soon(self._watchdog, watchdog)
            async with anyio.create_task_group() as crew:
                for _ in range(workers):
                    crew.start_soon(self._worker, feed, buffer_bytes, failures, tg)
            watchdog.cancel()
        if failures:
            raise failures[0]
        return self.bytes_sent

    async def _worker(
        self,
        feed: Feed,
        buffer_bytes: int,
        failures: list[PersevereError],
        tg: anyio.abc.TaskGroup,
    ) -> None:
        buffer = memoryview(bytearray(buffer_bytes))
        try:
            while (part := await feed.next(buffer)) is not None:
                try:
                    await self._deliver(part)
                finally:
                    if part.release is not None:
                        await part.release()
                # Let go of the part before taking the next: a stream's part is its own memory.
                part = None
        except PersevereError as exc:
            failures.append(exc)
            tg.cancel_scope.cancel()

    async def _deliver(self, part: PreparedPart) -> None:
        """Send a part (retried), then record it in the ledger."""

        part_algorithm = self.session.algorithm

        async def send_once() -> tuple[str, str]:
            nonlocal part
            while True:
                if part.checksum is None and not self.session.trailers.usable(part_algorithm):
                    assert part.header_form is not None
                    part = await part.header_form()  # the endpoint refused trailers
                try:
                    async with self.window:
                        return await self._send_once(part)
                except TrailerRefused:
                    continue  # sent again at once in the header form: not a retry

        what = f"part {part.number}"
        exhausted = functools.partial(self.session.exhausted, what)
        etag, checksum = await call_with_retry(self.options.retry, what, send_once, exhausted)
        await self.ledger.record(PartRecord(part.number, etag, checksum, part.size))

    async def _watchdog(self, scope: anyio.CancelScope) -> None:
        """Cut attempts that moved nothing for ``stall_timeout_s``, checked when the oldest
        one's time would be up (not on a fixed tick): a stall is cut after the timeout, not
        up to a tick later, and an idle watchdog wakes once per timeout."""
        timeout_s = self.options.stall_timeout_s
        try:
            with scope:
                while True:
                    now = time.monotonic()
                    next_check = now + timeout_s  # an attempt that starts now is due then
                    for watched in list(self._attempts):
                        draining = min(watched.draining_s, self.options.read_timeout_s)
                        due = watched.last_activity + timeout_s + draining
                        if watched.throttled or watched.scope.cancel_called:
                            continue  # waiting for tokens is not a stall; a cut one is ending
                        if now > due:
                            watched.scope.cancel()
                        else:
                            next_check = min(next_check, due)
                    await anyio.sleep(max(next_check - now, _WATCHDOG_MIN_SLEEP_S))
        finally:
            # Cancelled with the sender (a stop, a failure), or at its end (none in flight).
            for watched in list(self._attempts):
                watched.stop()

    async def _send_once(self, part: PreparedPart) -> tuple[str, str]:
        """One UploadPart attempt, cut by the watchdog if it stalls; returns the ETag and the
        part's checksum (a trailed part's, from its body)."""
        sent = 0
        await anyio.lowlevel.checkpoint_if_cancelled()  # stopping: no attempt starts
        with anyio.CancelScope(shield=True) as scope:
            watched = _Attempt(scope, body_sent=part.size == 0)

            def on_sent(n: int) -> None:
                nonlocal sent
                sent += n
                watched.handed(sent >= part.size)
                self.progress.advance(n)

            throttle: Throttle | None = None
            if self.bandwidth is not None:
                bucket = self.bandwidth

                async def throttle(n: int) -> None:
                    watched.throttled = True
                    began = time.monotonic()
                    try:
                        await bucket.take(n)
                    finally:
                        watched.throttled = False
                        watched.last_activity = time.monotonic()
                        watched.waited_s += watched.last_activity - began

            body = part.make_body(on_sent, throttle)
            self._attempts.add(watched)
            try:
                etag = await self.session.upload_part(
                    part.number, body, part.size, part.checksum, part.md5
                )
            except BaseException as exc:
                self.progress.advance(-sent)  # its bytes will be sent again: progress goes back
                if body.error is not None:  # (every body is a _body._Body)
                    raise body.error from exc  # a local failure, not the network's
                if isinstance(exc, TransientError):
                    if exc.throttle:
                        self.window.throttled()
                    if exc.code == "BadDigest" and part.recheck is not None:
                        await part.recheck()  # the file changed: SourceChanged, no retry
                raise
            finally:
                self._attempts.discard(watched)
        if scope.cancelled_caught and watched.stopped:
            await anyio.lowlevel.checkpoint()  # raises the stop
        if scope.cancelled_caught:
            raise TransientError(
                f"part {part.number}: nothing moved for {self.options.stall_timeout_s:.0f}s "
                "(stalled)"
            )
        self.bytes_sent += part.size
        self.window.succeeded()
        return etag, part.checksum if part.checksum is not None else b64(body.digest)
