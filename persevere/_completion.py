"""The end every upload shares: complete, check the object, record it, and say what was made.

A file (start or resume), a stream and the completion of a sharded upload all finish here:
CompleteMultipartUpload with its write-once refusal and its lost answers (:func:`complete`),
the HeadObject check (:func:`check_object`), the journal's last line (:func:`record_completed`)
and the :class:`UploadResult`. The session and the endpoint a state file's header describes
are made here too, for every command that continues an upload (:func:`session_of`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio

from ._checksums import get_algorithm
from ._errors import IntegrityError, PersevereError, S3Error, StateFileUnwritable, UploadGone
from ._journal import Header, Journal, JournalLedger, PartRecord, SourceRecord
from ._object_options import per_request
from ._options import UploadOptions
from ._plan import PartPlan, StreamSchedule
from ._progress import ProgressSink
from ._quirks import ETag, is_write_conflict, missing
from ._request import Request, now
from ._retry import Call, RetryPolicy
from ._s3 import Endpoint, S3Client, open_client
from ._session import Completed, MultipartSession
from ._write_once import give_up

log = logging.getLogger("persevere")


@dataclass(frozen=True, slots=True)
class UploadResult:
    bucket: str
    key: str
    upload_id: str
    size: int
    part_count: int
    etag: str
    checksum_algorithm: str
    checksum: str | None
    bytes_sent: int  # by this run (resumed parts are not counted)
    elapsed_s: float
    already_completed: bool = False  # resume found the object completed by an earlier run


@contextlib.contextmanager
def continuing(request: Request, progress: ProgressSink) -> Iterator[tuple[Path, float]]:
    """An entry that continues the upload a state file holds (resume, a shard): the absolute
    path and when it started, the options checked and the progress closed at the end; every
    failure names the state file (it happened once the upload exists: the CLI prints how to
    resume it)."""
    request.transfer.validate()
    state_path = request.state_file.expanduser().absolute()
    try:
        yield state_path, time.monotonic()
    except PersevereError as exc:
        exc.state_file = str(state_path)
        raise
    finally:
        progress.close()


def session_of(client: S3Client, header: Header, retry: RetryPolicy) -> MultipartSession:
    return MultipartSession(
        client,
        header.bucket,
        header.key,
        header.upload_id,
        get_algorithm(header.checksum_algorithm),
        retry=retry,
        per_request=per_request(header.object_options),
        pinned=header.checksum_pinned,
        no_overwrite=header.no_overwrite,
    )


P = TypeVar("P", PartPlan, StreamSchedule)


def planned(header: Header, kind: type[P], where: object = "the state file") -> P:
    """``header``'s plan (:meth:`Header.plan`, ``where`` naming its state file), which its
    caller knows to be of ``kind``: a file's :class:`PartPlan`, a stream's schedule."""
    plan = header.plan(where)
    assert isinstance(plan, kind)
    return plan


def endpoint_of(header: Header) -> Endpoint:
    return Endpoint(header.endpoint_url, header.region, header.profile, header.ca_bundle)


@contextlib.asynccontextmanager
async def recorded_session(
    header: Header,
    overrides: Endpoint | None,
    options: UploadOptions | None = None,
    kind: Call = Call.UPLOAD,
) -> AsyncIterator[MultipartSession]:
    """A session on the upload ``header`` records, at its recorded endpoint (``overrides``
    replace it field by field): the client's pool and timeouts ``options``' (None: a small
    pool, :func:`._s3.open_client`), its retries their policy for ``kind``."""
    async with open_client(endpoint_of(header).overridden_by(overrides), options) as client:
        yield session_of(client, header, (options or UploadOptions()).policy(kind))


async def complete(
    session: MultipartSession, ledger: JournalLedger, part_count: int, size: int
) -> Completed:
    """CompleteMultipartUpload with parts 1..part_count, then the object checked."""
    parts = [ledger.parts[n] for n in range(1, part_count + 1)]
    try:
        done = await session.complete(parts, size)
    except UploadGone:
        # A previous attempt may have completed it and lost the answer.
        done = session.expected(parts)
        if not await session.holds(done, size):
            raise
    except S3Error as exc:
        if not (session.no_overwrite and is_write_conflict(exc)):
            raise
        # The key exists: this upload's own object (an attempt completed it, its answer
        # lost), or another writer's, which stays (see _write_once).
        done = session.expected(parts)
        if not await session.holds(done, size):
            await give_up(session, ledger.journal, f"completion refused: {exc.code}")
        with contextlib.suppress(PersevereError):
            await session.abort()  # 412 leaves the upload in place: free its parts
    else:
        await check_object(session, done, size)
    return done


async def completed_unrecorded(
    session: MultipartSession, plan: PartPlan, parts: dict[int, PartRecord]
) -> Completed | None:
    """For an upload gone from S3 (NoSuchUpload) whose journal records every part: the
    completion an earlier run got and did not record (killed once S3 answered
    CompleteMultipartUpload), if the object at the key is those parts (size and checksum or
    ETag, :meth:`MultipartSession.holds`); else None (aborted, expired, another's object)."""
    if any(n not in parts for n in plan.part_numbers()):
        return None
    done = session.expected([parts[n] for n in plan.part_numbers()])
    return done if await session.holds(done, plan.file_size) else None


async def check_object(session: MultipartSession, done: Completed, size: int) -> None:
    """HeadObject after completion: size and stored checksum must be ours.

    Needs s3:GetObject; without it the check is skipped with a warning (the parts and
    CompleteMultipartUpload were already verified by S3).
    """
    for pause in (0.5, 1.5, 0.0):  # (a gateway slower to show the object than S3)
        try:
            head = await session.head_object()
            break
        except S3Error as exc:
            if not missing(exc):
                log.warning("could not check the completed object (%s); S3 verified every part",
                            exc)  # fmt: skip
                return
            if not pause and done.answered and ETag(str(done.expected_etag)).same(done.etag):
                # The server's own answer (its ETag is the parts'): the object was there, and
                # was taken away since (a consumer deleting what arrives)
                log.warning("%s was completed, and is gone already (HeadObject: %s)",
                            session.where, exc.code)  # fmt: skip
                return
            if not pause:
                raise IntegrityError(
                    f"{session.where}: CompleteMultipartUpload answered, but there is no object "
                    f"there (HeadObject: {exc.code}): something between persevere and S3 (a "
                    "proxy, a gateway) answered for it",
                    hint="check the endpoint, then run the same command again",
                ) from None
            await anyio.sleep(pause)
    stored_size = int(head.get("ContentLength", -1))
    stored = head.get(session.algorithm.param)
    if stored_size != size or (stored is not None and not done.checksum.matches(stored)):
        raise IntegrityError(
            f"{session.where} after completion has size {stored_size} and checksum {stored}; "
            f"expected {size} and {done.checksum}",
            hint="delete the object and upload it again",
        )
    stored_etag = str(head.get("ETag") or "")
    if (
        stored is None
        and stored_etag
        and not any(ETag(stored_etag).same(e or "") for e in (done.etag, done.expected_etag))
    ):
        # Only the size vouched for it (no stored checksum of ours), and the ETag is neither
        # CompleteMultipartUpload's nor the parts': another object is there (written since
        # by someone else, or an answer that was not the server's)
        raise IntegrityError(
            f"{session.where} after completion has ETag {stored_etag}, not the completed "
            f"object's {done.etag}: another object is at the key",
            hint="check what else writes to this key (and the endpoint), then upload again",
        )
    differs = done.expected_etag and not ETag(done.expected_etag).same(done.etag)
    if differs and ETag.proves_content(head):
        # Not an error: S3-compatible servers may compute ETags their own way; the checksum
        # comparison above is the authority.
        log.warning("S3 returned ETag %s; the parts' MD5s give %s", done.etag, done.expected_etag)


async def record_completed(
    journal: Journal, done: Completed, size: int, source: SourceRecord
) -> None:
    """The final line, after the identity of the file the object now equals (when it is not
    the one already recorded). The object is complete and verified whatever happens here: a
    state file that cannot take these lines (disk full) is a warning, and a later resume,
    finding the upload complete on S3, records it."""

    def append() -> None:
        if journal.source != source:
            journal.append_source(source)
        journal.append_outcome(
            "completed",
            etag=done.etag,
            expected_etag=done.expected_etag,
            checksum=str(done.checksum),
            size=size,
            at=now(),
        )

    try:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(append)
    except StateFileUnwritable as exc:
        log.warning("the object is complete and verified, but %s (a resume records it)", exc)


def make_result(
    header: Header,
    part_count: int,
    size: int,
    etag: str,
    checksum: str | None,
    bytes_sent: int,
    started: float,
    *,
    already: bool = False,
) -> UploadResult:
    return UploadResult(
        bucket=header.bucket,
        key=header.key,
        upload_id=header.upload_id,
        size=size,
        part_count=part_count,
        etag=etag,
        checksum_algorithm=header.checksum_algorithm,
        checksum=checksum,
        bytes_sent=bytes_sent,
        elapsed_s=time.monotonic() - started,
        already_completed=already,
    )
