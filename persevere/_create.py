"""Creating an upload: CreateMultipartUpload and the journal's header, one scaffold for a
file, a stream and a sharded start, shielded so no upload is left that no state file knows."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from ._completion import session_of
from ._errors import PersevereError, ResumableError, StateFileError, StateFileUnwritable
from ._journal import Header, Journal
from ._logs import event
from ._options import UploadOptions
from ._request import Layout, Request
from ._retry import Call, policy
from ._s3 import Endpoint, open_client, resolved_region
from ._session import MultipartSession
from ._source import FileIdentity
from ._write_once import refuse_existing

log = logging.getLogger("persevere")

CREATE_SHIELD_S = 15.0  # how long a Ctrl-C waits for CreateMultipartUpload's answer


@contextlib.asynccontextmanager
async def created(
    request: Request, identity: FileIdentity | None, layout: Layout, state_path: Path
) -> AsyncIterator[tuple[MultipartSession, Header, Journal]]:
    """The upload ``request`` asks for, created on S3 and recorded in a new journal at
    ``state_path`` (see :func:`_create`), for the body to send its parts. A journal left
    without its header (nothing was created, or the upload was taken back) is removed.

    The draft header says everything the session needs (bucket, key, checksum, object
    options, write-once), as the header of an upload being resumed does.
    Write-once (``no_overwrite``): an existing key is refused first, nothing created, the
    empty state file removed (:mod:`._write_once`)."""
    options = request.transfer
    endpoint = request.endpoint or Endpoint.from_environment()
    journal = await anyio.to_thread.run_sync(Journal.create, state_path)
    try:
        async with open_client(endpoint, options) as client:
            draft = request.new_header(endpoint, resolved_region(client), identity, layout)
            session = session_of(client, draft, options.retry)
            if draft.no_overwrite:
                # The first request of the upload: it fails fast, as CreateMultipartUpload does.
                try:
                    await refuse_existing(session_of(client, draft, options.policy(Call.FIRST)))
                except ResumableError as exc:  # unreachable: nothing was created
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


async def _create(
    session: MultipartSession, journal: Journal, draft: Header, options: UploadOptions
) -> Header:
    """CreateMultipartUpload, then the journal header, fsync'd before any part is sent.

    ``draft`` is the header but for the upload id. Both steps run shielded from cancellation,
    so a Ctrl-C cannot leave an upload on S3 that no state file knows about; once cancelled, S3
    has CREATE_SHIELD_S more seconds to answer. (Without a Ctrl-C there is no time box: a slow
    answer is waited for, never cut and asked again, which could leave a second upload.)
    Until the header is written the state file is empty, and it is removed on any failure
    (at once, before the client closes).
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
            if shield.cancelled_caught:  # stopped, and S3 did not answer in time
                log.warning(
                    "no answer to CreateMultipartUpload within %.0fs of the stop: an upload "
                    "of %s may be created all the same, recorded nowhere (persevere upload "
                    "list shows it; abort it by its id)",
                    CREATE_SHIELD_S,
                    session.where,
                )
            tg.cancel_scope.cancel()
        if failure:
            raise failure[0]
    except BaseException:
        journal.discard_unwritten()  # at once: not after the client's close (an await)
        raise
    log.info("created upload %s for %s", session.upload_id, session.where,
             extra=event("start", upload_id=session.upload_id, bucket=session.bucket,
                         key=session.key, state_file=str(journal.path)))  # fmt: skip
    return headers[0]


async def _write_header(session: MultipartSession, journal: Journal, header: Header) -> None:
    try:
        await anyio.to_thread.run_sync(journal.write_header, header)
    except (OSError, StateFileUnwritable) as exc:  # (the journal's own, for a full disk)
        # Nothing records this upload: take it back (best effort, time-boxed) rather than
        # leave it billed.
        session.retry = policy(Call.CLEANUP, session.retry)
        leftover = f" (upload {session.upload_id} could not be aborted)"
        with anyio.move_on_after(CREATE_SHIELD_S, shield=True), contextlib.suppress(PersevereError):
            await session.abort()
            leftover = ""
        why = exc.message if isinstance(exc, StateFileUnwritable) else (
            f"cannot write state file {journal.path}: {exc.strerror or exc}")  # fmt: skip
        error = type(exc) if isinstance(exc, StateFileUnwritable) else StateFileError
        failed = error(
            f"{why}{leftover}", hint="free space or choose another state file, then start again"
        )
        failed.next_step = None  # nothing to resume: the same command starts again
        raise failed from exc
