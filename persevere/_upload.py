"""Start, abort and status of one multipart upload tracked by a state file (resume:
:mod:`._resume`; both run :func:`._pipeline.run`).

These compose the core's nouns: the **plan** (:mod:`._plan`), the **source** (a file,
:mod:`._source` and :class:`._resume.FileParts`, or a stream, :mod:`._stream`), the
**ledger** (the journal, :mod:`._journal`), the **session** (the S3 calls,
:mod:`._session`) and the **sender** (the parallel hot path, :mod:`._sender`, whose
docstring draws how the part size and the concurrency reach UploadPart).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

import anyio

from ._completion import UploadResult, continuing, recorded_session
from ._create import created
from ._errors import PersevereError, ResumableError, S3Error, UploadFinished, UploadGone
from ._journal import Header, Journal, JournalState, PartRecord, read_state
from ._options import UploadOptions
from ._pipeline import Kind, run
from ._plan import PartPlan
from ._progress import ProgressSink, guarded
from ._request import Asked, Request, a_path, an_endpoint, given, now
from ._resume import FileParts
from ._retry import Call, TransientError
from ._s3 import Endpoint
from ._session import MultipartSession
from ._shard_journals import being_run, merge_shards, refuse_running_shards, refuse_shard_journal
from ._source import SourceFile
from ._stream import StreamParts

log = logging.getLogger("persevere")


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
    # Parts numbered past the plan's last: not this upload's (another client's), left out of
    # the object.
    outside: int = 0
    # Gone from S3 (not ``exists``) because it was completed: the object at the key is the
    # parts the journal records (a run killed once S3 answered, before it recorded that).
    completed: bool = False


@dataclass(frozen=True, slots=True)
class UploadStatus:
    state_file: Path
    header: Header
    part_count: int | None  # None: a stream still being read (its length is not known yet)
    parts_done: int
    bytes_done: int
    outcome: dict[str, Any] | None
    remote: RemoteStatus | None
    running: bool = False  # another process holds the state file: the upload is being run


# -- start -----------------------------------------------------------------------------------
async def start_upload(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    *,
    progress: ProgressSink | None = None,
    **asked: Unpack[Asked],
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
    request = Request.of(file, bucket, key, state_file, **given(asked, Asked, "start_upload"))
    return await upload(request, guarded(progress))


async def upload(request: Request, progress: ProgressSink) -> UploadResult:
    """The new upload ``request`` asks for, created, sent and completed (:func:`._pipeline.run`):
    a file's parts, or a stream's (:class:`._stream.StreamParts`)."""
    identity, layout, state_path = await anyio.to_thread.run_sync(request.prepare)
    started = time.monotonic()
    with contextlib.ExitStack() as files:  # a file is opened before anything is created
        source = None if identity is None else files.enter_context(SourceFile(identity))
        async with created(request, identity, layout, state_path) as (session, header, journal):
            with continuing(request, progress):  # a failure names the state file now
                kind: Kind
                if source is None:
                    kind = StreamParts(session, journal, header, {}, progress,
                                       fd=request.reads().fd)  # fmt: skip
                else:
                    assert isinstance(layout, PartPlan)
                    kind = FileParts(session, source, journal, JournalState(header), layout,
                                     request.transfer, progress)  # fmt: skip
                return await run(kind, request.transfer, started, new=True)


async def create_upload(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    *,
    shards: int,
    **asked: Unpack[Asked],
) -> Header:
    """Create the upload and its state file, send nothing: for ``shards`` shards to upload
    (:func:`persevere.upload_shard`), and :func:`persevere.resume` to complete."""
    keywords = given(asked, Asked, "create_upload")
    request = Request.of(file, bucket, key, state_file, shards=shards, **keywords)
    return await create_sharded(request)


async def create_sharded(request: Request) -> Header:
    """The upload ``request`` asks for, created for its shards, recorded; nothing sent."""
    prepared = await anyio.to_thread.run_sync(request.prepare)
    async with created(request, *prepared) as (_, header, _):
        return header


# -- abort and status ------------------------------------------------------------------------
async def abort_upload(state_file: str | Path, *, endpoint: Endpoint | None = None) -> Header:
    """Abort the multipart upload a state file describes (S3 frees its parts), and journal it.

    ``endpoint`` overrides what the state file recorded, field by field (as for resume)."""
    state_path = a_path(state_file, "state_file").expanduser().absolute()
    an_endpoint(endpoint)
    journal, state = await anyio.to_thread.run_sync(Journal.open, state_path)
    with contextlib.closing(journal):
        header = state.header
        refuse_shard_journal(state_path, header)
        await anyio.to_thread.run_sync(refuse_running_shards, state_path)  # (as cp's lock)
        if state.finished == "completed":
            raise UploadFinished(
                f"the upload in {state_path} already completed; the object "
                f"s3://{header.bucket}/{header.key} exists (delete it to undo)"
            )
        if state.finished == "aborted":
            return header
        if header.shards:  # (their parts count too)
            await anyio.to_thread.run_sync(merge_shards, state_path, state)
        async with recorded_session(header, endpoint, kind=Call.LOOKUP) as session:
            # Every part recorded: a run may have completed it, killed before recording that.
            # ListParts tells first (SeaweedFS answers an abort of a completed upload with
            # success, AWS with NoSuchUpload).
            try:
                if _object_parts(state_path, state) is not None:
                    await _listed_unless_refused(session)
                await session.abort()
            except UploadGone:
                if await _completed_unrecorded(session, state_path, state):
                    # (nothing tells that from another upload of the same bytes, completed
                    # there: either way the object is these parts, and it is kept)
                    raise UploadFinished(
                        f"the upload in {state_path} is gone from S3, and the object "
                        f"s3://{header.bucket}/{header.key} is the parts it records: a run "
                        "completed it and stopped before recording that (or another upload "
                        "of the same bytes made it); nothing to abort, the object is kept"
                    ) from None
                log.info("upload %s was already gone from S3", header.upload_id)
        await anyio.to_thread.run_sync(lambda: journal.append_outcome("aborted", at=now()))
        return header


async def _listed_unless_refused(session: MultipartSession) -> None:
    """ListParts, to tell whether the upload is gone (UploadGone); refused or failing, nothing
    is learnt (the abort that follows tells what it can)."""
    try:
        await session.list_parts()
    except UploadGone:
        raise
    except (S3Error, ResumableError, TransientError):  # (refused, or failing: 503, no answer)
        pass


async def _completed_unrecorded(
    session: MultipartSession, state_path: Path, state: JournalState
) -> bool:
    """Is the upload, gone from S3, one an earlier run completed and did not record
    (:func:`._completion.completed_unrecorded`; ``state`` with its shards' parts merged)?"""
    parts = _object_parts(state_path, state)
    if parts is None:
        return False
    return await session.holds(session.expected(parts), sum(part.size for part in parts))


def _object_parts(state_path: Path, state: JournalState) -> list[PartRecord] | None:
    """The parts the journal records that could make the whole object: every part of a
    file's plan; a stream's parts 1..n with none missing (its end unknown: these are what a
    completion was given); None if a part of them is missing."""
    plan = state.header.plan(state_path)
    numbers = list(plan.part_numbers()) if isinstance(plan, PartPlan) else list(
        range(1, len(state.parts) + 1))  # fmt: skip
    if not numbers or any(n not in state.parts for n in numbers):
        return None
    return [state.parts[n] for n in numbers]


async def upload_status(
    state_file: str | Path, *, query_s3: bool = True, endpoint: Endpoint | None = None
) -> UploadStatus:
    """What the state file knows, and (if the endpoint answers quickly) what ListParts says.

    ``endpoint`` overrides what the state file recorded, field by field (as for resume)."""
    state_path = a_path(state_file, "state_file").expanduser().absolute()
    an_endpoint(endpoint)
    state = await anyio.to_thread.run_sync(read_state, state_path)
    header = state.header
    refuse_shard_journal(state_path, header)
    if header.shards:  # the parts the shards recorded in their own journals count too
        await anyio.to_thread.run_sync(merge_shards, state_path, state)
    plan = header.plan(state_path)
    part_count: int | None = len(state.parts) if state.outcome else None  # a stream's, once ended
    if isinstance(plan, PartPlan):
        part_count = plan.part_count
    remote: RemoteStatus | None = None
    if query_s3 and state.outcome is None:
        try:
            with anyio.fail_after(15):
                quick = UploadOptions(connect_timeout_s=5, read_timeout_s=10)
                async with recorded_session(header, endpoint, quick, Call.LOOKUP) as session:
                    parts = await session.list_parts()
                    size = sum(part.size for part in parts.values())
                    outside = {n for n in parts if part_count is not None and n > part_count}
                    remote = RemoteStatus(reachable=True, exists=True, parts=len(parts), bytes=size,
                                          unrecorded=len(parts.keys() - state.parts - outside),
                                          outside=len(outside))  # fmt: skip
        except UploadGone:
            remote = RemoteStatus(reachable=True, exists=False)
            with contextlib.suppress(PersevereError, TransientError, TimeoutError):
                with anyio.fail_after(15):
                    async with recorded_session(header, endpoint, quick, Call.LOOKUP) as session:
                        if await _completed_unrecorded(session, state_path, state):
                            remote = RemoteStatus(reachable=True, exists=False, completed=True)
        except ResumableError as exc:  # the retries ran out: no answer, so nothing known of it
            remote = RemoteStatus(reachable=False, error=str(exc))
        except PersevereError as exc:
            remote = RemoteStatus(reachable=True, error=str(exc))
        except (TransientError, TimeoutError) as exc:
            remote = RemoteStatus(reachable=False, error=str(exc) or "timed out")
    return UploadStatus(
        running=await anyio.to_thread.run_sync(being_run, state_path),
        state_file=state_path,
        header=header,
        part_count=part_count,
        parts_done=len(state.parts),
        bytes_done=sum(p.size for p in state.parts.values()),
        outcome=state.outcome,
        remote=remote,
    )
