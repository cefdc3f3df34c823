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
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ._checksums import ChecksumAlgorithm, checksum_type, get_algorithm
from ._completion import (
    UploadResult,
    attach_state_file,
    complete,
    endpoint_of,
    make_result,
    record_completed,
    session_of,
)
from ._completion import now as _now
from ._errors import (
    PersevereError,
    ResumableError,
    StateFileError,
    UploadFinished,
    UploadGone,
    UsageError,
)
from ._journal import Header, Journal, JournalLedger, read_state, require_regular
from ._logs import event
from ._options import UploadOptions
from ._plan import MAX_PARTS, PartPlan, make_plan
from ._progress import NullProgress, ProgressSink
from ._retry import Call, TransientError, policy
from ._s3 import Endpoint, S3Client, open_client, resolved_region
from ._sender import PlannedParts, send
from ._session import MultipartSession
from ._shard_journals import merge_shards
from ._source import FileIdentity, SourceFile, inspect_file
from ._urls import check_destination
from ._version import __version__
from ._write_once import refuse_existing

log = logging.getLogger("persevere")

CREATE_SHIELD_S = 15.0  # how long a Ctrl-C waits for CreateMultipartUpload's answer


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
    options = options or UploadOptions()
    pinned = checksum is not None
    progress = progress or NullProgress()
    options.validate()
    identity, plan, algorithm, state_path = await anyio.to_thread.run_sync(
        _prepare_start, file, bucket, key, state_file, part_size, checksum, max_parts
    )
    endpoint = endpoint or Endpoint.from_environment(None, None, None)
    started = time.monotonic()
    with SourceFile(identity) as source:
        journal = await anyio.to_thread.run_sync(Journal.create, state_path)
        try:
            async with open_client(endpoint, options) as client:
                draft = new_header(
                    bucket, key, endpoint, resolved_region(client), str(identity.path), identity,
                    plan.part_size, algorithm, object_options, pinned=pinned,
                    no_overwrite=no_overwrite,
                )  # fmt: skip
                session, header = await create_recorded(client, journal, draft, options)
                try:
                    progress.start(identity.size, 0)
                    ledger = JournalLedger(journal, {})
                    return await send_and_complete(
                        session,
                        source,
                        ledger,
                        header,
                        plan,
                        options,
                        progress,
                        list(plan.part_numbers()),
                        started,
                    )
                except PersevereError as exc:
                    attach_state_file(exc, state_path)
                    raise
                finally:
                    progress.close()
        except BaseException:
            journal.discard_unwritten()
            raise
        finally:
            journal.close()


def new_header(
    bucket: str,
    key: str,
    endpoint: Endpoint,
    region: str | None,
    file_path: str,
    identity: FileIdentity | None,
    part_size: int,
    algorithm: ChecksumAlgorithm,
    object_options: dict[str, Any] | None,
    *,
    pinned: bool,
    stream_every: int | None = None,
    expected_size: int | None = None,
    shards: int | None = None,
    no_overwrite: bool = False,
) -> Header:
    """The journal's header of a new upload, but for its id (``identity`` None: a stream)."""
    return Header(
        bucket=bucket,
        key=key,
        upload_id="",  # filled in once CreateMultipartUpload answers
        endpoint_url=endpoint.endpoint_url,
        region=endpoint.region or region,
        profile=endpoint.profile,
        ca_bundle=endpoint.ca_bundle,
        object_options=object_options or None,
        file_path=file_path,
        file_size=identity.size if identity else (expected_size or 0),
        mtime_ns=identity.mtime_ns if identity else 0,
        ctime_ns=identity.ctime_ns if identity else None,
        inode=identity.inode if identity else None,
        device=identity.device if identity else None,
        part_size=part_size,
        checksum_algorithm=algorithm.name,
        checksum_type=checksum_type(algorithm),
        created_at=_now(),
        tool_version=__version__,
        checksum_pinned=pinned,
        stream_every=stream_every,
        expected_size=expected_size,
        shards=shards,
        no_overwrite=no_overwrite,
    )


async def create_recorded(
    client: S3Client, journal: Journal, draft: Header, options: UploadOptions
) -> tuple[MultipartSession, Header]:
    """A session for a new upload, created on S3 and recorded in the journal (see _create).

    The draft header says everything the session needs (bucket, key, checksum, object
    options, write-once), as the header of an upload being resumed does.
    Write-once (``draft.no_overwrite``): an existing key is refused first, nothing created,
    the empty state file removed (:mod:`._write_once`)."""
    session = session_of(client, draft, options.retry)
    if draft.no_overwrite:
        # The first request of the upload: it fails fast, as CreateMultipartUpload does.
        try:
            await refuse_existing(session_of(client, draft, options.policy(Call.FIRST)))
        except ResumableError as exc:  # unreachable: nothing was created, try again later
            journal.discard()
            exc.next_step = None
            exc.hint = "nothing was created: check the endpoint and the network, then run the "\
                       "same command again"  # fmt: skip
            raise
        except BaseException:
            journal.discard()
            raise
    return session, await _create(session, journal, draft, options)


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
    options = options or UploadOptions()
    if not 1 <= shards <= 10_000:
        raise UsageError(f"shards must be between 1 and 10,000, not {shards}", param="shards")
    identity, plan, algorithm, state_path = await anyio.to_thread.run_sync(
        _prepare_start, file, bucket, key, state_file, part_size, checksum, max_parts
    )
    if shards > plan.part_count:
        raise UsageError(
            f"{shards} shards for {plan.part_count} part(s): each shard needs a part",
            param="shards",
        )
    endpoint = endpoint or Endpoint.from_environment(None, None, None)
    journal = await anyio.to_thread.run_sync(Journal.create, state_path)
    try:
        async with open_client(endpoint, options) as client:
            draft = new_header(
                bucket, key, endpoint, resolved_region(client), str(identity.path), identity,
                plan.part_size, algorithm, object_options, pinned=checksum is not None,
                shards=shards, no_overwrite=no_overwrite,
            )  # fmt: skip
            _, header = await create_recorded(client, journal, draft, options)
            return header
    except BaseException:
        journal.discard_unwritten()
        raise
    finally:
        journal.close()


def _prepare_start(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    part_size: int | None,
    checksum: str | None,
    max_parts: int = MAX_PARTS,
) -> tuple[FileIdentity, PartPlan, ChecksumAlgorithm, Path]:
    """Every check that needs no request: a plan that cannot work is refused here.
    ``checksum`` None: the default, CRC64NVME."""
    check_destination(bucket, key)
    try:
        algorithm = get_algorithm(checksum or "CRC64NVME")
    except ValueError as exc:
        raise UsageError(str(exc), param="checksum") from None
    identity = inspect_file(Path(file))
    plan = make_plan(identity.size, part_size, max_parts)
    state_path = Path(state_file).expanduser().absolute()
    require_regular(state_path)
    if Path(os.path.realpath(state_path)) == identity.path:
        raise UsageError("the state file cannot be the file being uploaded", param="state_file")
    return identity, plan, algorithm, state_path


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
