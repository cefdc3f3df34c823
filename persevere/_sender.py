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
``ANSWER_GRACE_S`` to come (:class:`Attempt`), and the part is recorded. The journal then
holds every part S3 acknowledged; only an answer later than that leaves S3 a part the journal
lacks (the next resume checks it against the file and adopts it).

What a part *is* belongs to the feed (:class:`Feed`: the planned parts of a file, a shard or
the bench's generated pattern, or a stream's parts in order); where a success is written down
belongs to the ledger (:class:`Ledger`).
"""

from __future__ import annotations

import functools
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel

from ._bandwidth import TokenBucket, bucket_for
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

# Stall detection (``--stall-timeout``): a request whose bytes stopped moving is cut.
#
# Every request that sends a body (a part's UploadPart, a tree's small file's PutObject) is an
# :class:`Attempt`, watched by the :class:`Stalls` of its sender from its start to its answer.
# Each slice of its body handed to the connection is activity; an attempt that moved nothing
# for the timeout is cut (its cancel scope cancelled), and its sender raises the
# :class:`TransientError` that :meth:`Stalls.stalled` makes, which is retried as any network
# failure. Two waits are not stalls: for ``--max-bandwidth``'s tokens (nothing was queued), and
# the bytes handed over still on their way. Where the socket's send queue can be read (Linux's
# ``SIOCOUTQ``: the bytes the peer has not acknowledged), it is looked at as the body goes (at
# most a second apart): each look that finds it shorter is progress, and one that finds it as
# long as the timeout ago is a stall (a link gone dead with the body in the kernel). Once the
# peer has every byte, the answer is awaited the timeout and an allowance: twice as long as the
# bytes took to get there, or the time the bytes awaiting an answer (every such request's of
# the sender) take at ``ANSWER_FLOOR_B_S``, whichever is longer: a middlebox (a buffering or
# TLS-inspecting proxy) acknowledges bytes it is still forwarding. Where the queue cannot be
# read, twice the time the handing over took stands in. Every allowance is at most the read
# timeout, which bounds the wait for an answer anyway.
#
# The watchdog wakes when the oldest attempt's time would be up, not on a fixed tick: a stall
# is cut after the timeout, not up to a tick later, and an idle watchdog wakes once per timeout.

try:
    import fcntl
    import termios

    _SIOCOUTQ: int | None = termios.TIOCOUTQ  # (Linux: the same request for a socket)
except (ImportError, AttributeError):  # pragma: no cover - not a Unix
    _SIOCOUTQ = None

ANSWER_GRACE_S = 10.0  # how long a stop waits for the answer to a part whose body is all sent
_WATCHDOG_MIN_SLEEP_S = 0.01  # due now but not yet over: look again shortly, never spin
_LOOK_S = 1.0  # how often a send queue is looked at (at most; less than the timeout)
# Bytes acknowledged and awaiting their answer are taken to go on at least this fast (a proxy
# forwarding them): a held answer to a small request is cut after about the timeout.
ANSWER_FLOOR_B_S = 256 << 10


def unacknowledged(sock: Any) -> int | None:
    """The bytes written to ``sock`` that its peer has not acknowledged yet; None where that
    cannot be known (not Linux, not a TCP socket, closed)."""
    if sock is None or _SIOCOUTQ is None:
        return None
    try:
        fd = sock.fileno()
        if fd < 0:
            return None
        queued: int = struct.unpack("i", fcntl.ioctl(fd, _SIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return queued


class Attempt:
    """One request in flight, watched for stalls: no byte sent and no answer for too long.

    ``scope`` is the request's; a shielded one is kept from a stop: :meth:`stop` decides.
    """

    __slots__ = ("body", "body_sent", "draining_s", "emptied", "last_activity", "queued",
                 "scope", "sent", "size", "started", "stopped", "throttled",
                 "waited_s")  # fmt: skip

    def __init__(self, scope: anyio.CancelScope, size: int) -> None:
        self.scope = scope
        self.started = self.last_activity = time.monotonic()
        self.size = size
        self.sent = 0  # bytes of the body handed to the connection
        self.throttled = False
        self.body_sent = size == 0  # every byte handed to the connection: S3 may hold it
        self.stopped = False
        # Once the body is handed over, the kernel's send buffer still drains to a slow link
        # (nothing seen to move): as long again as the handing took, twice, is not a stall.
        self.draining_s = 0.0
        self.waited_s = 0.0  # for --max-bandwidth's tokens: nothing was queued then
        self.body: Any = None  # (its ``sock``, once written: a _body._Body's)
        self.queued: int | None = None  # unacknowledged bytes at the last look
        self.emptied = False  # handed over and all acknowledged: the answer is awaited

    def moved(self, n: int) -> None:
        """``n`` more bytes of the body handed to the connection (a body's ``on_sent``)."""
        self.sent += n
        self.handed(self.sent >= self.size)

    def handed(self, sent_all: bool) -> None:
        self.last_activity = time.monotonic()
        if sent_all and not self.body_sent:
            self.draining_s = 2 * (self.last_activity - self.started - self.waited_s)
            self.body_sent = True
            self.look(self.last_activity)
            return
        self.body_sent = sent_all

    @property
    def watchable(self) -> bool:
        """Its send queue can be looked at, and it is not all acknowledged yet."""
        return getattr(self.body, "sock", None) is not None and not self.emptied

    def look(self, now: float) -> None:
        """Its bytes still unacknowledged in the socket, read: fewer than at the last look is
        progress; none, once the body is all handed over, and the peer has them all."""
        queued = unacknowledged(getattr(self.body, "sock", None))
        if queued is None or self.emptied:
            return  # unknown: the handing's allowance stands
        if self.queued is not None and queued < self.queued:
            self.last_activity = now
        self.queued = queued
        if self.body_sent:
            self.draining_s = 0.0  # the queue is seen: its draining is progress, not allowance
            if queued == 0:
                self.emptied = True
                self.last_activity = now
                self.draining_s = 2 * (now - self.started - self.waited_s)

    def throttle(self, bucket: TokenBucket | None) -> Throttle | None:
        """The body's throttle for ``bucket`` (``--max-bandwidth``): its waits are not stalls."""
        if bucket is None:
            return None

        async def throttle(n: int) -> None:
            self.throttled = True
            began = time.monotonic()
            try:
                await bucket.take(n)
            finally:
                self.throttled = False
                self.last_activity = time.monotonic()
                self.waited_s += self.last_activity - began

        return throttle

    def stop(self) -> None:
        self.stopped = True
        if self.body_sent:
            self.scope.deadline = min(self.scope.deadline, anyio.current_time() + ANSWER_GRACE_S)
        else:
            self.scope.cancel()


class Stalls:
    """The attempts in flight of one sender, and the watchdog that cuts the stalled ones."""

    def __init__(self, timeout_s: float, read_timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.read_timeout_s = read_timeout_s  # the longest drain allowed
        self.attempts: set[Attempt] = set()

    @contextmanager
    def attempt(self, size: int, *, shield: bool = False) -> Iterator[Attempt]:
        """One attempt of ``size`` body bytes, watched while the block runs; afterwards
        :meth:`check` says whether the watchdog cut it."""
        with anyio.CancelScope(shield=shield) as scope:
            watched = Attempt(scope, size)
            self.attempts.add(watched)
            try:
                yield watched
            finally:
                self.attempts.discard(watched)
                # The body's on_sent holds the attempt: without this, attempt and body are a
                # cycle, freed only by a collection, and a stream's parts, each its own
                # memory, piled up (a 1 GiB stream peaked at 453 MiB, its bound 256).
                watched.body = None

    async def check(self, watched: Attempt, what: str) -> None:
        """After an attempt's block: a stop raised if one cut it, :meth:`stalled` if the
        watchdog did."""
        if not watched.scope.cancelled_caught:
            return
        if watched.stopped:
            await anyio.lowlevel.checkpoint()  # raises the stop
        raise self.stalled(what)

    def stalled(self, what: str) -> TransientError:
        return TransientError(f"{what}: nothing moved for {self.timeout_s:.0f}s (stalled)")

    async def beside(self, work: Callable[[], Awaitable[None]]) -> None:
        """``work()`` with the watchdog running beside it; ``work``'s failure raised as it is
        (not in an exception group)."""
        failure: list[Exception] = []
        async with anyio.create_task_group() as tg:
            watchdog = anyio.CancelScope()
            tg.start_soon(self.watch, watchdog)
            try:
                await work()
            except Exception as exc:
                failure.append(exc)
            finally:
                watchdog.cancel()
        if failure:
            raise failure[0]

    async def watch(self, scope: anyio.CancelScope) -> None:
        """Cut attempts that moved nothing for the timeout, until ``scope`` is cancelled;
        then stop the attempts still in flight (a stop, a failure)."""
        try:
            with scope:
                while True:
                    now = time.monotonic()
                    next_check = now + self.timeout_s  # an attempt that starts now is due then
                    look_again = now + min(_LOOK_S, self.timeout_s / 4)
                    watched_now = [
                        watched
                        for watched in self.attempts
                        # waiting for tokens is not a stall; a cut one is ending
                        if not watched.throttled and not watched.scope.cancel_called
                    ]
                    for watched in watched_now:
                        if watched.watchable:
                            watched.look(now)
                    awaiting = sum(a.size for a in self.attempts if a.emptied)
                    for watched in watched_now:
                        allowance = watched.draining_s
                        if watched.emptied:  # (a middlebox may still be forwarding them)
                            allowance = max(allowance, awaiting / ANSWER_FLOOR_B_S)
                        allowance = min(allowance, self.read_timeout_s)
                        due = watched.last_activity + self.timeout_s + allowance
                        if now > due:
                            watched.scope.cancel()
                        else:
                            again = look_again if watched.watchable else due
                            next_check = min(next_check, again)
                    await anyio.sleep(max(next_check - now, _WATCHDOG_MIN_SLEEP_S))
        finally:
            # Cancelled with the sender (a stop, a failure), or at its end (none in flight).
            for watched in list(self.attempts):
                watched.stop()


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
        self.stalls = Stalls(options.stall_timeout_s, options.read_timeout_s)

    async def run(self, feed: Feed) -> int:
        """Send every part ``feed`` gives: workers, each recording a part in the ledger before
        taking another; their buffers are sized here, once. The bytes sent."""
        if feed.count == 0:
            return 0
        workers = min(self.options.concurrency, feed.count or self.options.concurrency)
        buffer_bytes = min(feed.part_size, max(MiB, self.options.buffer_budget_bytes // workers))
        failures: list[PersevereError] = []
        async with anyio.create_task_group() as tg:
            watchdog = anyio.CancelScope()  # (cancelled with tg on a failure: stops attempts)
            tg.start_soon(self.stalls.watch, watchdog)
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

    async def _send_once(self, part: PreparedPart) -> tuple[str, str]:
        """One UploadPart attempt, cut by the watchdog if it stalls; returns the ETag and the
        part's checksum (a trailed part's, from its body)."""
        await anyio.lowlevel.checkpoint_if_cancelled()  # stopping: no attempt starts
        with self.stalls.attempt(part.size, shield=True) as watched:

            def on_sent(n: int) -> None:
                watched.moved(n)
                self.progress.advance(n)

            body = watched.body = part.make_body(on_sent, watched.throttle(self.bandwidth))
            try:
                etag = await self.session.upload_part(
                    part.number, body, part.size, part.checksum, part.md5
                )
            except BaseException as exc:
                self.progress.advance(-watched.sent)  # sent again: progress goes back
                if body.error is not None:  # (every body is a _body._Body)
                    raise body.error from exc  # a local failure, not the network's
                if isinstance(exc, TransientError):
                    if exc.throttle:
                        self.window.throttled()
                    if exc.code == "BadDigest" and part.recheck is not None:
                        await part.recheck()  # the file changed: SourceChanged, no retry
                raise
            if watched.sent < part.size:
                # S3 has every byte; the body's last report was lost (aiohttp cancels the
                # body's writer once the answer is in: a sendfile hop's count went with it)
                self.progress.advance(part.size - watched.sent)
        await self.stalls.check(watched, f"part {part.number}")
        self.bytes_sent += part.size
        self.window.succeeded()
        return etag, part.checksum if part.checksum is not None else b64(body.digest)
