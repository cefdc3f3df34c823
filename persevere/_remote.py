"""What S3 holds of an upload being resumed (a file's, a stream's or a shard's): ListParts,
and the one fallback when it is refused."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ._errors import S3Error, UploadGone
from ._quirks import refused
from ._reconcile import RemotePart
from ._session import MultipartSession

log = logging.getLogger("persevere")


async def remote_parts(session: MultipartSession) -> dict[int, RemotePart] | None:
    """ListParts (UploadGone if the upload is gone); None when it is not permitted."""
    try:
        return await session.list_parts()
    except S3Error as exc:
        if not refused(exc):
            raise
        log.warning(
            "ListParts was refused (%s): resuming from the state file alone; parts S3 "
            "received but the journal missed are sent again",
            exc.code,
        )
        return None


def gone(session: MultipartSession, causes: str) -> UploadGone:
    """The upload being resumed is no longer on S3, for one of ``causes``."""
    return UploadGone(
        f"multipart upload {session.upload_id} for {session.where} no longer exists on S3 "
        f"({causes})",
        code="NoSuchUpload",
        hint="start a new upload with a new state file",
    )


@contextlib.contextmanager
def unreconciled(remote: dict[int, RemotePart] | None) -> Iterator[None]:
    """Without ListParts (``remote`` None), a later S3 failure names the permission that lets
    resume compare the journal with S3."""
    try:
        yield
    except S3Error as exc:
        if remote is None and not isinstance(exc, UploadGone) and exc.hint is None:
            exc.hint = (
                "resume could not compare the state file with S3 (ListParts was refused): "
                "granting s3:ListMultipartUploadParts lets it reconcile the two"
            )
        raise
