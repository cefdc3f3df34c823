"""Start, resume, abort and status of one multipart upload tracked by a state file.

These compose the core's nouns: the **plan** (:mod:`._plan`), the **source** (the file,
:mod:`._source`), the **ledger** (the journal, :mod:`._journal`), the **session** (the S3
calls, :mod:`._session`) and the **sender** (the parallel hot path, :mod:`._sender`, whose
docstring draws how the part size and the concurrency reach UploadPart).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from ._checksums import ChecksumAlgorithm, get_algorithm
from ._errors import (
    IntegrityError,
    PersevereError,
    ResumableError,
    S3Error,
    StateFileError,
    StateFileUnwritable,
    UploadFinished,
    UploadGone,
)
from ._journal import Header, Journal, JournalLedger, SourceRecord, read_state
from ._logs import event
from ._object_options import per_request
from ._options import UploadOptions
from ._plan import MAX_PARTS, PartPlan
from ._progress import NullProgress, ProgressSink
from ._quirks import ETag, is_write_conflict
from ._request import Layout, Request, resolve_source
from ._retry import Call, RetryPolicy, TransientError, policy
from ._s3 import Endpoint, S3Client, open_client, resolved_region
from ._sender import PlannedParts, send
from ._session import Completed, MultipartSession
from ._source import FileIdentity, SourceFile
from ._write_once import give_up, refuse_existing

log = logging.getLogger("persevere")

CREATE_SHIELD_S = 15.0  # how long a Ctrl-C waits for CreateMultipartUpload's answer


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


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    reachable: bool
    exists: bool = False
    parts: int = 0
    bytes: int = 0
    error: str | None = None
    # Parts S3 holds that no journal records: their answers were lost as the upload stopped
    # (a crash, or a stop that could not wait for them); the next resume adopts each one that
    # matches the file's bytes.
    unrecorded: int = 0


@dataclass(frozen=True, slots=True)
class UploadStatus:
    state_file: Path
    header: Header
    part_count: int | None  # None: a stream still being read (its length is not known yet)
    parts_done: int
    bytes_done: int
    outcome: dict[str, Any] | None
    remote: RemoteStatus | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def attach_state_file(exc: PersevereError, state_file: Path) -> None:
    """Mark a failure as happening after the upload exists: the CLI prints how to resume."""
    exc.state_file = str(state_file)


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


def endpoint_of(header: Header) -> Endpoint:
    return Endpoint(header.endpoint_url, header.region, header.profile, header.ca_bundle)


# -- start -----------------------------------------------------------------------------------
async def start_upload(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    *,
    part_size: int | None = None,
    checksum: str | None = None,
    endpoint: Endpoint | None = None,
    object_options: dict[str, Any] | None = None,
    options: UploadOptions | None = None,
    progress: ProgressSink | None = None,
    max_parts: int = MAX_PARTS,
    no_overwrite: bool = False,
) -> UploadResult:
    """Create a multipart upload, journal it in ``state_file``, send every part, complete.

    ``file`` '-' is standard input: a pipe is uploaded as a stream (:mod:`._stream`, whose
    parts follow their own schedule: no ``part_size`` or ``max_parts``), a file redirected in
    as that file.

    ``endpoint`` defaults to the standard AWS variables (:meth:`Endpoint.from_environment`).
    ``object_options`` are extra CreateMultipartUpload parameters (StorageClass, ContentType,
    Metadata, Tagging, ServerSideEncryption, SSEKMSKeyId, ACL, ExpectedBucketOwner), recorded
    in the journal; :func:`persevere.object_options` builds them from CLI-style values.

    ``checksum`` None: CRC64NVME, falling back to Content-MD5 per part (one warning) if the
    endpoint does not confirm it; a named algorithm is pinned: unconfirmed, the upload stops
    (:class:`ChecksumNotVerified`). ``"MD5"``: Content-MD5 mode from the start.

    ``max_parts``: the endpoint's part limit when it allows fewer than S3's 10,000 (the plan
    is made within it; resume keeps the plan, so it is not recorded).

    ``no_overwrite``: write-once; an existing key is refused before anything is sent, and
    completion is conditional (:mod:`._write_once`); recorded, so resume honours it.
    """
    request = Request(Path(state_file), resolve_source(file), bucket, key, part_size=part_size,
                      max_parts=max_parts, checksum=checksum, object_options=object_options,
                      no_overwrite=no_overwrite, endpoint=endpoint,
                      transfer=options or UploadOptions())  # fmt: skip
    return await upload(request, progress or NullProgress())


async def upload(request: Request, progress: ProgressSink) -> UploadResult:
    """The new upload ``request`` asks for, sent and completed: a file's parts, or a
    stream's (:func:`._stream.upload_stream`)."""
    if request.source.stream:
        from ._stream import upload_stream

        return await upload_stream(request, progress)
    identity, plan, state_path = await anyio.to_thread.run_sync(request.prepare)
    assert identity is not None
    assert isinstance(plan, PartPlan)
    started = time.monotonic()
    with SourceFile(identity) as source:
        async with created(request, identity, plan, state_path) as (session, header, journal):
            try:
                progress.start(identity.size, 0)
                return await send_and_complete(session, source, JournalLedger(journal, {}),
                                               header, plan, request.transfer, progress,
                                               list(plan.part_numbers()), started)  # fmt: skip
            except PersevereError as exc:
                attach_state_file(exc, state_path)
                raise
            finally:
                progress.close()


@contextlib.asynccontextmanager
async def created(
    request: Request, identity: FileIdentity | None, layout: Layout, state_path: Path
) -> AsyncIterator[tuple[MultipartSession, Header, Journal]]:
    """The upload ``request`` asks for, created on S3 and recorded in a new journal at
    ``state_path`` (see :func:`_create`), for the body to send its parts. A journal left
    empty (nothing was created: the client could not be made) is removed.

    The draft header says everything the session needs (bucket, key, checksum, object
    options, write-once), as the header of an upload being resumed does.
    Write-once (``no_overwrite``): an existing key is refused first, nothing created, the
    empty state file removed (:mod:`._write_once`)."""
    options = request.transfer
    endpoint = request.endpoint or Endpoint.from_environment(None, None, None)
    journal = await anyio.to_thread.run_sync(Journal.create, state_path)
    try:
        async with open_client(endpoint, options) as client:
            draft = request.new_header(endpoint, resolved_region(client), identity, layout)
            session = session_of(client, draft, options.retry)
            if draft.no_overwrite:
                # The first request of the upload: it fails fast, as CreateMultipartUpload does.
                try:
                    await refuse_existing(session_of(client, draft, options.policy(Call.FIRST)))
                except BaseException as exc:
                    journal.discard()
                    if isinstance(exc, ResumableError):  # unreachable: nothing was created
                        exc.next_step = None
                        exc.hint = "nothing was created: check the endpoint and the network, "\
                                   "then run the same command again"  # fmt: skip
                    raise
            yield session, await _create(session, journal, draft, options), journal
    except BaseException:
        journal.discard_unwritten()
        raise
    finally:
        journal.close()


async def create_upload(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    *,
    shards: int,
    part_size: int | None = None,
    checksum: str | None = None,
    endpoint: Endpoint | None = None,
    object_options: dict[str, Any] | None = None,
    options: UploadOptions | None = None,
    max_parts: int = MAX_PARTS,
    no_overwrite: bool = False,
) -> Header:
    """Create the upload and its state file, send nothing: for ``shards`` shards to upload
    (:func:`persevere.upload_shard`), and :func:`persevere.resume` to complete."""
    request = Request(Path(state_file), resolve_source(file), bucket, key, part_size=part_size,
                      max_parts=max_parts, checksum=checksum, object_options=object_options,
                      no_overwrite=no_overwrite, endpoint=endpoint,
                      transfer=options or UploadOptions(), shards=shards)  # fmt: skip
    return await create_sharded(request)


async def create_sharded(request: Request) -> Header:
    """The upload ``request`` asks for, created for its shards, recorded; nothing sent."""
    prepared = await anyio.to_thread.run_sync(request.prepare)
    async with created(request, *prepared) as (_, header, _):
        return header


def _prepare_start(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    part_size: int | None,
    checksum: str | None,
    max_parts: int = MAX_PARTS,
) -> tuple[FileIdentity, PartPlan, ChecksumAlgorithm, Path]:
    """A dry run's checks of a new upload of a file (:meth:`Request.prepare`), until the dry
    run is given a :class:`Request` of its own."""
    request = Request(Path(state_file), resolve_source(file), bucket, key, part_size=part_size,
                      max_parts=max_parts, checksum=checksum)  # fmt: skip
    request.refuse_for_stream(dry_run=True)
    identity, plan, state_path = request.prepare()
    assert identity is not None
    assert isinstance(plan, PartPlan)
    return identity, plan, request.algorithm(), state_path


async def _create(
    session: MultipartSession, journal: Journal, draft: Header, options: UploadOptions
) -> Header:
    """CreateMultipartUpload, then the journal header, fsync'd before any part is sent.

    ``draft`` is the header but for the upload id. Both steps run shielded from cancellation,
    so a Ctrl-C cannot leave an upload on S3 that no state file knows about; once cancelled, S3
    has CREATE_SHIELD_S more seconds to answer. (Without a Ctrl-C there is no time box: a slow
    answer is waited for, never cut and asked again, which could leave a second upload.)
    Until the header is written the state file is empty, and it is removed on any failure.
    """
    shield = anyio.CancelScope(shield=True)
    headers: list[Header] = []
    failure: list[Exception] = []

    async def time_box_once_cancelled() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            shield.deadline = min(shield.deadline, anyio.current_time() + CREATE_SHIELD_S)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(time_box_once_cancelled)
            with shield:
                try:
                    await session.create(
                        draft.object_options or {}, retry=options.policy(Call.FIRST)
                    )
                    header = dataclasses.replace(draft, upload_id=session.upload_id)
                    await _write_header(session, journal, header)
                    headers.append(header)
                except Exception as exc:  # re-raised below, outside the task group
                    failure.append(exc)
            tg.cancel_scope.cancel()
        if failure:
            raise failure[0]
    except BaseException:
        if not headers:
            journal.discard()
        raise
    log.info("created upload %s for %s", session.upload_id, session.where,
             extra=event("start", upload_id=session.upload_id, bucket=session.bucket,
                         key=session.key, state_file=str(journal.path)))  # fmt: skip
    return headers[0]


async def _write_header(session: MultipartSession, journal: Journal, header: Header) -> None:
    try:
        await anyio.to_thread.run_sync(journal.write_header, header)
    except OSError as exc:
        # Nothing records this upload: take it back (best effort, time-boxed) rather than
        # leave it billed.
        session.retry = policy(Call.CLEANUP, session.retry)
        aborted = False
        with anyio.move_on_after(CREATE_SHIELD_S, shield=True), contextlib.suppress(PersevereError):
            await session.abort()
            aborted = True
        leftover = "" if aborted else f" (upload {session.upload_id} could not be aborted)"
        raise StateFileError(
            f"cannot write state file {journal.path}: {exc.strerror or exc}{leftover}",
            hint="free space or choose another state file, then start again",
        ) from exc


# -- sending and completing ------------------------------------------------------------------
async def send_and_complete(
    session: MultipartSession,
    source: SourceFile,
    ledger: JournalLedger,
    header: Header,
    plan: PartPlan,
    options: UploadOptions,
    progress: ProgressSink,
    todo: list[int],
    started: float,
) -> UploadResult:
    sent = await send(session, ledger, options, progress, PlannedParts(session, source, plan, todo))
    await anyio.to_thread.run_sync(source.check_unchanged)
    done = await complete(session, ledger, plan.part_count, header.file_size)
    await record_completed(ledger.journal, done, header.file_size, source.identity.as_record())
    return make_result(header, plan.part_count, header.file_size, done, sent, started)


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


async def check_object(session: MultipartSession, done: Completed, size: int) -> None:
    """HeadObject after completion: size and stored checksum must be ours.

    Needs s3:GetObject; without it the check is skipped with a warning (the parts and
    CompleteMultipartUpload were already verified by S3).
    """
    try:
        head = await session.head_object()
    except S3Error as exc:
        log.warning("could not check the completed object (%s); S3 verified every part", exc)
        return
    stored_size = int(head.get("ContentLength", -1))
    stored = head.get(session.algorithm.param)
    if stored_size != size or (stored is not None and not done.checksum.matches(stored)):
        raise IntegrityError(
            f"{session.where} after completion has size {stored_size} and checksum {stored}; "
            f"expected {size} and {done.checksum}",
            hint="delete the object and upload it again",
        )
    if done.expected_etag and not ETag(done.expected_etag).same(done.etag):
        if ETag.proves_content(head):
            # Not an error: S3-compatible servers may compute ETags their own way; the
            # checksum comparison above is the authority.
            log.warning(
                "S3 returned ETag %s; the parts' MD5s give %s", done.etag, done.expected_etag
            )


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
            at=_now(),
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
    done: Completed,
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
        etag=done.etag,
        checksum_algorithm=header.checksum_algorithm,
        checksum=str(done.checksum),
        bytes_sent=bytes_sent,
        elapsed_s=time.monotonic() - started,
        already_completed=already,
    )


# -- abort and status ------------------------------------------------------------------------
async def abort_upload(state_file: str | Path, *, endpoint: Endpoint | None = None) -> Header:
    """Abort the multipart upload a state file describes (S3 frees its parts), and journal it.

    ``endpoint`` overrides what the state file recorded, field by field (as for resume)."""
    state_path = Path(state_file).expanduser().absolute()  # noqa: ASYNC240 - no I/O
    journal, state = await anyio.to_thread.run_sync(Journal.open, state_path)
    try:
        header = state.header
        if state.finished == "completed":
            raise UploadFinished(
                f"the upload in {state_path} already completed; the object "
                f"s3://{header.bucket}/{header.key} exists (delete it to undo)"
            )
        if state.finished == "aborted":
            return header
        async with open_client(endpoint_of(header).overridden_by(endpoint)) as client:
            try:
                await session_of(client, header, policy(Call.LOOKUP)).abort()
            except UploadGone:
                log.info("upload %s was already gone from S3", header.upload_id)
        await anyio.to_thread.run_sync(lambda: journal.append_outcome("aborted", at=_now()))
        return header
    finally:
        journal.close()


async def upload_status(
    state_file: str | Path, *, query_s3: bool = True, endpoint: Endpoint | None = None
) -> UploadStatus:
    """What the state file knows, and (if the endpoint answers quickly) what ListParts says.

    ``endpoint`` overrides what the state file recorded, field by field (as for resume)."""
    state_path = Path(state_file).expanduser().absolute()  # noqa: ASYNC240 - no I/O
    state = await anyio.to_thread.run_sync(read_state, state_path)
    header = state.header
    if header.shards:  # the parts the shards recorded in their own journals count too
        from ._shards import merge_shards

        await anyio.to_thread.run_sync(merge_shards, state_path, state)
    plan = header.plan(state_path)
    part_count: int | None = len(state.parts) if state.outcome else None  # a stream's, once ended
    if isinstance(plan, PartPlan):
        part_count = plan.part_count
    remote: RemoteStatus | None = None
    if query_s3 and state.outcome is None:
        remote = await _remote_status(header, endpoint, set(state.parts))
    return UploadStatus(
        state_file=state_path,
        header=header,
        part_count=part_count,
        parts_done=len(state.parts),
        bytes_done=sum(p.size for p in state.parts.values()),
        outcome=state.outcome,
        remote=remote,
    )


async def _remote_status(
    header: Header, overrides: Endpoint | None, recorded: set[int]
) -> RemoteStatus:
    try:
        with anyio.fail_after(15):
            endpoint = endpoint_of(header).overridden_by(overrides)
            quick = UploadOptions(connect_timeout_s=5, read_timeout_s=10)
            async with open_client(endpoint, quick) as client:
                session = session_of(client, header, policy(Call.LOOKUP))
                parts = await session.list_parts()
                size = sum(part.size for part in parts.values())
                return RemoteStatus(reachable=True, exists=True, parts=len(parts), bytes=size,
                                    unrecorded=len(set(parts) - recorded))  # fmt: skip
    except UploadGone:
        return RemoteStatus(reachable=True, exists=False)
    except PersevereError as exc:
        return RemoteStatus(reachable=True, error=str(exc))
    except (TransientError, TimeoutError) as exc:
        return RemoteStatus(reachable=False, error=str(exc) or "timed out")
