"""Write-once uploads (``no_overwrite``): never replace an object that already exists.

Backups kept against ransomware or mistakes must not be overwritten by a later run. Two guards:

1. **HeadObject before anything is sent** (before CreateMultipartUpload at start; before any
   part at resume, once ListParts shows the upload still exists): an existing key is refused at
   once, so no bytes are uploaded for nothing. Cheap, but racy (another writer can create the
   key a moment later) and only as good as the permission: answered 403 (no s3:GetObject),
   it cannot tell and goes on.
2. **CompleteMultipartUpload carries ``If-None-Match: *``**: S3 refuses (412) to complete over
   an existing key, atomically; this is the guarantee, and it is the *endpoint's*. AWS, MinIO,
   SeaweedFS and moto honour it; JuiceFS's gateway and ministack ignore it and overwrite
   (probed: /work/notes/compat-findings.md), where only guard 1 remains.

When the key exists, the multipart upload is **aborted** (S3 frees its parts) and the journal
records ``aborted``: the object is left untouched and the run ends with :class:`ObjectExists`
(exit 1). A 412 after a completion whose answer was lost (the retried Complete meets the
object this very upload made) is recognised by the object's size and checksum: that is
success, not a conflict. So is a stream's re-run after its upload completed, piping in the
same stream (read through and compared: :func:`._stream.gives_object`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Literal, NoReturn

import anyio

from ._errors import ObjectExists, PersevereError, S3Error, UploadGone
from ._journal import Journal
from ._quirks import missing, refused
from ._reconcile import RemotePart
from ._request import now
from ._session import MultipartSession

log = logging.getLogger("persevere")

Exists = bool | Literal["ask"] | None  # does the key exist? ("ask": HeadObject)


async def head_or_refusal(session: MultipartSession) -> Mapping[str, Any] | S3Error:
    """HeadObject's answer, or its error when the key is missing or HeadObject was refused (no
    s3:GetObject): :func:`._quirks.missing` tells which. Any other error is raised."""
    try:
        return await session.head_object()
    except S3Error as exc:
        if missing(exc) or refused(exc):
            return exc
        raise


async def key_exists(session: MultipartSession) -> bool | None:
    """HeadObject: True, False, or None when the endpoint will not say (403)."""
    head = await head_or_refusal(session)
    if not isinstance(head, S3Error):
        return True
    if missing(head):
        return False
    guard = "if it does, this upload replaces it"
    if session.no_overwrite:
        guard = (
            "only the endpoint's If-None-Match check at completion keeps it from being overwritten"
        )
    log.warning("cannot tell whether %s exists (HeadObject refused: s3:GetObject); %s",
                session.where, guard)  # fmt: skip
    return None


def left_untouched(where: str, done: str) -> ObjectExists:
    return ObjectExists(
        f"{where} already exists; it was left untouched (write-once), {done}",
        code="ObjectExists",
        param="no_overwrite",
    )


async def refuse_existing(session: MultipartSession, exists: Exists = "ask") -> bool | None:
    """Before CreateMultipartUpload: does the key exist (``exists``, else HeadObject)? If so,
    write-once (the session's ``no_overwrite``), that ends the run, nothing sent or created."""
    if exists == "ask":
        exists = await key_exists(session)
    if session.no_overwrite and exists:
        raise left_untouched(session.where, "nothing was uploaded")
    return exists


async def refuse_existing_key(
    session: MultipartSession, journal: Journal, remote: dict[int, RemotePart] | None
) -> None:
    """At resume, before any part is sent (a file's or a stream's): once ListParts shows the
    upload still exists, an object at the key is not its own but another writer's."""
    if session.no_overwrite and remote is not None and await key_exists(session):
        await give_up(session, journal, "the key exists")


async def give_up(session: MultipartSession, journal: Journal, cause: str) -> NoReturn:
    """The key exists and this upload must not replace it: abort the upload (best effort,
    shielded), record ``aborted``, and raise :class:`ObjectExists`."""
    left = ""
    with anyio.CancelScope(shield=True):
        try:
            await session.abort()
        except UploadGone:
            pass
        except PersevereError as exc:
            left = f" (the abort failed: {exc}; upload {session.upload_id} is left)"
        with contextlib.suppress(PersevereError):
            await anyio.to_thread.run_sync(
                lambda: journal.append_outcome("aborted", at=now(), reason=cause)
            )
    error = left_untouched(session.where, "the upload was aborted")
    error.message += left
    raise error
