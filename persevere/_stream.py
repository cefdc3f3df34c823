"""Streams in: ``producer | persevere cp - s3://B/K``, bounded memory, resumable.

A stream is read once, in order, so a part must stay in memory until S3 has acknowledged it
(it cannot be read again for a retry). Memory is bounded by a byte budget
(:data:`DEFAULT_STREAM_BUDGET`, 128 MiB): a worker takes a part's size from the budget
before reading it and gives it back once the part is recorded, so the parts in flight shrink
to one as the schedule's parts grow (:class:`._plan.StreamSchedule`). Peak part data is
``max(budget, largest part)``: 128 MiB for the first 242 GiB of a stream at the defaults.

Resuming a stream means running the same producer into the same command again: the prefix
already uploaded is read from the new stream part by part and checksummed against the journal;
matching parts are skipped (or sent again if S3 lost them), the first differing part stops the
upload (exit 1; it stays resumable with the right stream), and the rest is uploaded. Until every
recorded part has been matched, the parts this run sends are not recorded (:class:`_ProvenFirst`):
a stream that differs late leaves nothing of its own in the journal.

A stream ends where its reads do (EOF): persevere cannot see its producer's exit status, so a
producer that dies looks like a stream that ended. With an expected size, a stream that ends
short of it is an error, and its last, cut-off part is neither sent nor recorded: piped in again
whole, the stream gives that part whole. A short last part recorded by an earlier run (whose
stream ended there: without an expected size, or by an older persevere) is sent again whole
when the new stream goes on past it with the same bytes.

A write-once stream (``--no-overwrite``) whose upload completed cannot be uploaded again over
its own object: run again, its stream is read through and compared with the object the
completion recorded (:func:`gives_object`), so the same stream is success and another refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import select
import threading
from dataclasses import dataclass

import anyio

from ._body import BufferedBody, PreparedPart
from ._checksums import ChecksumAlgorithm, ObjectChecksum, b64, get_algorithm
from ._completion import UploadResult, make_result, planned, record_completed
from ._errors import PersevereError, SourceChanged
from ._journal import Header, Journal, JournalLedger, JournalState, PartRecord, SourceRecord
from ._logs import event
from ._pipeline import adopted, gone
from ._plan import MAX_PARTS, StreamSchedule
from ._progress import ProgressSink
from ._reconcile import RemotePart, agrees
from ._request import STDIN
from ._sender import Feed, Ledger
from ._session import MultipartSession
from ._units import MiB, format_size

log = logging.getLogger("persevere")

DEFAULT_STREAM_BUDGET = 128 * MiB


class _ByteBudget:
    """Bytes of part data allowed in memory at once (a part larger than all of it waits for
    all of it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = anyio.Condition()

    async def take(self, n: int) -> int:
        n = min(n, self.limit)
        async with self._changed:
            while self.used + n > self.limit:
                await self._changed.wait()
            self.used += n
        return n

    async def give(self, n: int) -> None:
        async with self._changed:
            self.used -= n
            self._changed.notify_all()


class _ProvenFirst:
    """The ledger of a resumed stream: a part sent is recorded only once every part the
    journal holds has been read from the new stream and matched. A stream that differs at a
    later part must leave nothing of its own in the journal (the right stream, piped in next,
    could not match it there): the records of parts sent before then wait here, and are
    dropped with the upload's error. S3 keeps those parts, unrecorded: a later run adopts one
    only if its stream gives the same bytes."""

    def __init__(self, ledger: JournalLedger, unproven: set[int]) -> None:
        self._ledger = ledger
        self._unproven = unproven
        self._held: list[PartRecord] = []

    async def record(self, part: PartRecord) -> None:
        if self._unproven:
            self._held.append(part)
        else:
            await self._ledger.record(part)

    async def proven(self, number: int) -> None:
        """Part ``number`` of the journal was read from the new stream and matched."""
        self._unproven.discard(number)
        if not self._unproven:
            held, self._held = self._held, []
            for part in held:
                await self._ledger.record(part)


@dataclass
class StreamParts:
    """A stream as :func:`._pipeline.run` drives it: the parts the journal ``recorded`` (none
    for a new upload) reconciled with S3, then the stream cut into the schedule's parts, each
    in its own memory until recorded, its prefix matched against them, and the rest sent;
    complete once it ended as long as promised (the header's expected size: a stream that ends
    earlier is an error; a longer one goes on with larger parts; without it the parts follow
    the default schedule, up to 7.8 TiB)."""

    session: MultipartSession
    journal: Journal
    header: Header
    # What a resumed stream must reproduce: the parts the journal recorded; which of them S3
    # still holds, and S3's parts the journal missed (adopted if the new stream gives them)
    # are set by prepare.
    recorded: dict[int, PartRecord]
    progress: ProgressSink  # told of the bytes skipped too
    fd: int = 0

    def __post_init__(self) -> None:
        # a header without its schedule is refused here, up front
        self.schedule = planned(self.header, StreamSchedule)
        self._budget = _ByteBudget(DEFAULT_STREAM_BUDGET)
        self._lock = anyio.Lock()
        self._ended = False
        self.total = 0  # bytes read so far
        self.part_count = 0  # parts read so far (the object's, once the stream ended)
        self.skipped_bytes = 0  # already on S3: read, checked, not sent
        # The sender's feed (:class:`._sender.Feed`): parts until the stream ends, each holding
        # its own memory until recorded.
        self.count: int | None = None
        self.part_size = 0

    async def prepare(
        self, remote: dict[int, RemotePart] | None
    ) -> tuple[JournalLedger, Ledger, Feed]:
        parts = self.recorded
        self.kept = {n for n, p in parts.items()
                     if remote is None or (n in remote and agrees(p, remote[n]))}  # fmt: skip
        self.adopt = {n: r for n, r in (remote or {}).items() if n not in parts}
        ledger = JournalLedger(self.journal, {n: parts[n] for n in self.kept})
        # Where the sender records the parts it sent (see _ProvenFirst).
        self.ledger = _ProvenFirst(ledger, set(parts))
        self.progress.start(self.header.expected_size or 0, 0)
        return ledger, self.ledger, self

    async def next(self, buffer: memoryview) -> PreparedPart | None:
        algorithm, with_md5 = self.session.algorithm, self.session.verifier.needs_md5()
        while True:
            size = self.schedule.size_of(min(self.part_count + 1, MAX_PARTS))
            taken = await self._budget.take(size)
            async with self._lock:
                if self._ended:
                    await self._budget.give(taken)
                    return None
                number = self.part_count + 1
                if self.schedule.size_of(min(number, MAX_PARTS)) != size:
                    # Another worker took the part this one was sized for, at a step of the
                    # schedule: read at the wrong size, every later part would sit elsewhere
                    # than the schedule says (a resume, a write-once check could not match)
                    await self._budget.give(taken)
                    continue
                data = bytearray(size)
                got = await _read_full_or_stop(self.fd, memoryview(data))
                self.total += got
                if got < size:
                    self._ended = True
                    # Resuming, the journal recorded parts past the stream's last: it is not
                    # the stream being uploaded (it would complete a truncated object).
                    last = number if got else number - 1
                    if beyond := [n for n in self.recorded if n > last]:
                        raise _resumable(
                            f"the stream ended after {self.total:,} bytes (part {last}), "
                            f"but the upload already holds part {max(beyond)} of the stream "
                            "being uploaded; nothing was completed"
                        )
                    if (got == 0 and number > 1) or self._short_of_promise(self.total):
                        # Not a part: the stream ended before it, or before its promised
                        # length, in it (settle says so once the parts in flight are
                        # recorded). Cut off, it would be recorded as other bytes than the
                        # whole stream gives there: no resume could ever match it.
                        await self._budget.give(taken)
                        return None
                if number > MAX_PARTS:
                    # (found once the parts are sent: not bad input, exit 2, but an upload
                    # that cannot be completed, its parts billed until it is aborted)
                    more = (
                        "a larger --expected-size (at least the stream's length)"
                        if (self.header.expected_size is not None)
                        else "--expected-size (the stream's length, or more)"
                    )
                    too_long = PersevereError(
                        f"the stream is longer than {format_size(self.schedule.capacity)}, "
                        "what fits in S3's 10,000 parts with this part schedule: this upload "
                        "cannot be completed",
                        hint=f"abort it, then upload the stream again with {more}",
                    )
                    too_long.next_step = "abort"
                    raise too_long
                self.part_count = number
            view = memoryview(data)[:got]
            digest, md5 = await anyio.to_thread.run_sync(_digests, view, algorithm, with_md5)
            checksum = b64(digest)
            if await self._already_there(number, view, checksum, algorithm):
                self.skipped_bytes += got
                self.progress.advance(got)
                await self._budget.give(taken)
                continue
            make_body = functools.partial(BufferedBody, view)
            release = functools.partial(self._budget.give, taken)
            return PreparedPart(number, got, checksum, make_body, release=release, md5=md5)

    async def _already_there(
        self, number: int, view: memoryview, checksum: str, algorithm: ChecksumAlgorithm
    ) -> bool:
        """Resuming: is this part of the new stream one the upload already has?"""
        recorded = self.recorded.get(number)
        if recorded is not None:
            if recorded.checksum == checksum and recorded.size == len(view):
                await self.ledger.proven(number)
                return number in self.kept
            if recorded.size < len(view):  # does this one begin with the shorter one's bytes?
                prefix = await anyio.to_thread.run_sync(algorithm.of, view[: recorded.size])
                if b64(prefix) == recorded.checksum:
                    log.warning(
                        "part %d: an earlier run's stream ended in it, after %s; this one gives "
                        "the same bytes and goes on: sending it again whole",
                        number,
                        format_size(self.schedule.offset(number) + recorded.size),
                    )
                    await self.ledger.proven(number)
                    return False
            start = self.schedule.offset(number)
            if len(view) < recorded.size:  # (a part shorter than recorded: the stream ended)
                raise _resumable(
                    f"the stream ended after {start + len(view):,} bytes, in part {number}, "
                    f"which the upload holds with {recorded.size:,} bytes: it is shorter than "
                    "the one being uploaded (did the producer fail?); nothing of this stream "
                    "was recorded"
                )
            end = start + max(len(view), recorded.size) - 1
            raise _resumable(
                f"the stream differs from the one being uploaded: part {number} (bytes "
                f"{start:,}..{end:,}) gives other bytes; nothing of this stream was recorded"
            )
        remote = self.adopt.get(number)
        if remote is None or remote.size != len(view):
            return False
        md5 = await anyio.to_thread.run_sync(lambda: hashlib.md5(view).hexdigest())
        return await adopted(self.ledger, remote, checksum, md5, "stream")

    def _short_of_promise(self, length: int) -> bool:
        return self.header.expected_size is not None and length < self.header.expected_size

    async def settle(self) -> tuple[int, int, SourceRecord]:
        if self._short_of_promise(self.total):
            raise _resumable(
                f"the stream ended after {self.total:,} bytes, before the expected "
                f"{self.header.expected_size:,} (did the producer fail?); nothing was "
                "completed, and the parts recorded are whole",
                hint="pipe the whole stream in again to resume (if that was all of it, the "
                "expected size was wrong: abort the upload and start again)",
            )
        if self.header.expected_size is None:
            log.warning(
                "the stream ended after %s (%s bytes); without an expected size its length "
                "was not checked: a producer that failed would look the same (check its exit "
                "status)",
                format_size(self.total),
                f"{self.total:,}",
            )
        if self.skipped_bytes:
            log.info("%s of the stream were already on S3 and checked, not sent",
                     format_size(self.skipped_bytes),
                     extra=event("reread", bytes=self.skipped_bytes))  # fmt: skip
        return self.part_count, self.total, SourceRecord(STDIN, self.total, 0)

    async def gone(self, started: float) -> UploadResult:
        """The upload is gone from S3. Write-once (a new upload of the key would be refused):
        if the object is the parts the journal records (an earlier run completed it, and
        stopped before recording that) and the stream piped in gives that object, it is done.
        Else ``cp`` starts again with the stream unread."""
        parts = [self.recorded[n] for n in range(1, len(self.recorded) + 1) if n in self.recorded]
        done = self.session.expected(parts)
        size = sum(p.size for p in parts)
        whole = self.header.no_overwrite and parts and len(parts) == len(self.recorded)
        if not whole or not await self.session.holds(done, size):
            causes = "aborted elsewhere, expired by a lifecycle rule, or completed"
            raise gone(self, causes) from None
        outcome = {"checksum": str(done.checksum), "size": size}
        if not await gives_object(JournalState(self.header, outcome=outcome), self.fd,
                                  self.progress):  # fmt: skip
            raise SourceChanged(
                f"{self.session.where} was completed by an earlier run with a stream of "
                f"{size:,} bytes, and the stream piped in is not that one",
                hint="pipe in the stream it was uploaded from, or upload this one under "
                "another key",
            )
        await record_completed(self.journal, done, size, SourceRecord(STDIN, size, 0))
        return make_result(self.header, len(parts), size, done.etag, str(done.checksum), 0,
                           started, already=True)  # fmt: skip


async def gives_object(state: JournalState, fd: int, progress: ProgressSink) -> bool:
    """Does the stream on ``fd`` give the object ``state``'s completion recorded: its size and
    checksum? Read through (stopping once longer), cut into the parts the upload's schedule
    cut, each hashed as it is read: memory is one buffer, whatever the stream's length."""
    header, outcome = state.header, state.outcome or {}
    schedule = planned(header, StreamSchedule)
    algorithm = get_algorithm(header.checksum_algorithm)
    recorded = ObjectChecksum.parse(algorithm, str(outcome.get("checksum")))
    size = int(outcome.get("size", -1))
    progress.start(max(size, 0), 0)
    buffer = memoryview(bytearray(8 * MiB))
    parts: list[tuple[bytes, int]] = []
    total = 0
    for number in range(1, MAX_PARTS + 1):
        hasher, length, wanted = algorithm.new(), 0, schedule.size_of(number)
        while length < wanted:
            got = await _read_full_or_stop(fd, buffer[: min(len(buffer), wanted - length)])
            await anyio.to_thread.run_sync(hasher.update, buffer[:got])
            length += got
            progress.advance(got)
            if got == 0 or total + length > size:
                break
        total += length
        if length or number == 1:  # (an empty stream is one empty part)
            parts.append((hasher.digest(), length))
        if length < wanted or total > size:
            break
    else:  # as long as S3's 10,000 parts hold: is there more?
        total += await _read_full_or_stop(fd, buffer[:1])
    checksum = ObjectChecksum(algorithm, b64(algorithm.combine(parts, composite=bool(
        recorded.part_count))), len(parts) if recorded.part_count else None)  # fmt: skip
    return total == size and recorded.matches(str(checksum))


def _resumable(
    message: str,
    hint: str = "pipe in the same stream (the same producer, deterministic) to resume, or abort "
    "the upload and start again",
) -> SourceChanged:
    """The stream piped in is not (all of) the one being uploaded: the upload stays resumable
    with the right one."""
    other = SourceChanged(message, hint=hint)
    other.next_step = "resume"
    return other


async def _read_full_or_stop(fd: int, view: memoryview) -> int:
    """Fill ``view`` from ``fd`` (a pipe gives what it has): the bytes read, short at the end;
    on a daemon thread of its own: a stop (Ctrl-C, SIGTERM) while the producer is silent (a
    dump that pauses, a stalled ``zfs send``) leaves the read behind rather than wait for the
    producer's next bytes; an anyio worker thread would be waited for (its cancellation, then
    the process's exit, joins it)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()

    def settle(got: int, error: BaseException | None) -> None:
        if future.done():  # cancelled: the stop went on without this read
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(got)

    def read() -> None:
        got = 0
        error: BaseException | None = None
        try:
            while got < len(view):
                try:
                    n = os.readv(fd, [view[got:]])
                except BlockingIOError:  # (a non-blocking stdin: wait for the producer)
                    select.select([fd], [], [])
                    continue
                if not n:
                    break
                got += n
        except OSError as exc:  # (a socket reset, an I/O error of a device)
            error = _resumable(f"cannot read the stream: {exc.strerror or exc}; the parts "
                               "recorded are whole")  # fmt: skip
        except BaseException as exc:  # handed to the waiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, got, error)

    threading.Thread(target=read, name="persevere stream reader", daemon=True).start()
    return await future


def _digests(
    view: memoryview, algorithm: ChecksumAlgorithm, with_md5: bool
) -> tuple[bytes, bytes | None]:
    return algorithm.of(view), (hashlib.md5(view).digest() if with_md5 else None)
