"""Multipart uploads in progress on a bucket, whoever started them: list and abort by id.

Parts of an unfinished upload are billed until it is aborted; these find the forgotten ones
(``persevere upload list``) and remove one that has no state file (``upload abort --upload-id``).
:func:`key_status` says what S3 holds for one key without a state file (``upload status
s3://bucket/key``): the object, if any, and the uploads in progress to it.
"""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import unquote_plus

import anyio

from ._checksums import CRC64NVME, ObjectChecksum
from ._errors import PersevereError, S3Error, UploadGone
from ._logs import one_line
from ._quirks import missing, refused
from ._retry import Call, policy
from ._s3 import Endpoint, S3Client, open_client, pages, request
from ._session import MultipartSession
from ._write_once import head_or_refusal


@dataclass(frozen=True, slots=True)
class Where:
    """A bucket as these tools reach it: through ``endpoint`` (None: the environment's), and
    for a requester-pays bucket with ``request_payer="requester"``, said on every request."""

    bucket: str
    endpoint: Endpoint | None = None
    request_payer: str | None = None

    def client(self) -> AbstractAsyncContextManager[S3Client]:
        return open_client(self.endpoint or Endpoint.from_environment())

    def payer(self) -> dict[str, str]:
        return {"RequestPayer": self.request_payer} if self.request_payer else {}

    def session(self, client: S3Client, key: str, upload_id: str) -> MultipartSession:
        """Another tool's upload: its checksum algorithm is unknown, and only sizes are read."""
        return MultipartSession(client, self.bucket, key, upload_id, CRC64NVME,
                                retry=policy(Call.LOOKUP), per_request=self.payer())  # fmt: skip


# Why an upload listed by ListMultipartUploads has no parts to show (ListParts cannot find it).
NOT_DESCRIBED = (
    "ListParts: NoSuchUpload: completed or aborted since it was listed, or its key cannot be "
    "given back"
)


@dataclass(frozen=True, slots=True)
class InProgressUpload:
    """One upload as ListMultipartUploads lists it, and its parts as ListParts gives them.

    ``parts`` and ``bytes`` are None, and ``parts_unknown`` says why, when ListParts cannot
    find it: it may have ended meanwhile, or the endpoint gave its key back altered (an XML
    answer cannot carry a control character; SeaweedFS puts U+FFFD in its place). It is
    listed all the same: leaving it out would hide parts that may still be billed."""

    key: str
    upload_id: str
    initiated: datetime | None
    parts: int | None
    bytes: int | None
    storage_class: str | None
    parts_unknown: str | None = None


@dataclass(frozen=True, slots=True)
class UploadListing:
    uploads: list[InProgressUpload]
    younger: int = 0  # in progress too, but started within ``older_than_s``: not listed
    undated: int = 0  # in progress too, the endpoint says not when started: not listed either


async def list_uploads(
    where: Where, *, prefix: str = "", older_than_s: float | None = None, key: str | None = None
) -> UploadListing:
    """Every in-progress multipart upload under ``prefix``, with its parts and bytes so far;
    with ``older_than_s``, those started longer ago (and how many others there are, so that
    "none" is not said of a bucket that has younger ones). An upload whose start the endpoint
    does not say (no ``Initiated``) may be younger: it is not listed then, and counted apart
    (never as younger: that is not known).

    With ``key``, only the uploads to exactly that key, including one whose key the listing
    gave back altered (U+FFFD for a character XML cannot carry): it is described as ``key``'s.
    """
    if key is not None:
        prefix = key
    bucket, payer = where.bucket, where.payer()
    try:
        cutoff = (
            None if older_than_s is None else datetime.now(UTC) - timedelta(seconds=older_than_s)
        )
    except OverflowError:  # before year 1: no upload is that old
        cutoff = datetime.min.replace(tzinfo=UTC)
    async with where.client() as client:

        def fetch(markers: dict[str, str] | None) -> Any:
            return request(
                "ListMultipartUploads",
                lambda: cast(Any, client).list_multipart_uploads(
                    Bucket=bucket, Prefix=prefix, EncodingType="url", **(markers or {}), **payer
                ),
            )

        def following(page: Any) -> dict[str, str] | None:
            if not page.get("IsTruncated"):
                return None
            return {
                "KeyMarker": _decoded(page, page.get("NextKeyMarker") or "")[0],
                "UploadIdMarker": page.get("NextUploadIdMarker") or "",
            }

        found: list[Any] = []
        try:
            async for page in pages("ListMultipartUploads", fetch, following):
                for listed in page.get("Uploads") or []:
                    keys = _decoded(page, listed["Key"])
                    if key is not None:  # (the exact key, if the listing may have altered it)
                        keys = [key] if any(_may_be(k, key) for k in keys) else []
                    if keys:
                        found.append({**listed, "Keys": keys})
        except S3Error as exc:
            if exc.code == "AccessDenied":
                exc.hint = ("listing uploads needs s3:ListBucketMultipartUploads on the bucket "
                            "(arn:aws:s3:::BUCKET)")  # fmt: skip
            raise
        younger = undated = 0
        if cutoff is not None:
            dated = [u for u in found if u.get("Initiated")]
            undated = len(found) - len(dated)
            found = [u for u in dated if u["Initiated"] < cutoff]
            younger = len(dated) - len(found)

        results: list[InProgressUpload | None] = [None] * len(found)
        limiter = anyio.CapacityLimiter(8)

        async def describe(index: int, upload: dict[str, Any]) -> None:
            async with limiter:
                keys, upload_id = upload["Keys"], str(upload["UploadId"])
                key, parts, size, why = keys[0], None, None, NOT_DESCRIBED
                for tried in keys:  # (the key as given, if its decoding finds no upload)
                    try:
                        parts_found = await where.session(client, tried, upload_id).list_parts()
                    except UploadGone:  # ended while we looked, or a key the listing altered
                        continue
                    except PersevereError as exc:  # refused (s3:ListMultipartUploadParts)...
                        why = one_line(str(exc))  # (listed all the same, its parts unknown)
                        if getattr(exc, "code", None) in ("AccessDenied", "403"):
                            why += " (needs s3:ListMultipartUploadParts)"
                        break
                    key, parts = tried, len(parts_found)
                    size = sum(p.size for p in parts_found.values())
                    break
                results[index] = InProgressUpload(
                    key, upload_id, upload.get("Initiated"), parts, size,
                    upload.get("StorageClass"), None if parts is not None else why,
                )  # fmt: skip

        async with anyio.create_task_group() as tg:
            for index, upload in enumerate(found):
                tg.start_soon(describe, index, upload)
    return UploadListing([r for r in results if r is not None], younger, undated)


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """What S3 holds for one key: the object (if any) and the uploads in progress to it."""

    bucket: str
    key: str
    exists: bool | None  # None: HeadObject was refused (no s3:GetObject)
    size: int | None = None
    etag: str | None = None
    checksum: str | None = None  # "ALGORITHM value", when the object states one
    last_modified: datetime | None = None
    uploads: list[InProgressUpload] | None = None  # None: ListMultipartUploads was refused


def _decoded(page: Any, text: str) -> list[str]:
    """What a key or marker from ListMultipartUploads may be, most likely first: decoded, and
    as given, when the answer says it is URL-encoded (``EncodingType``, asked for: XML cannot
    carry every character a key may hold). botocore decodes only the ListObjects* answers.

    SeaweedFS (4.48) echoes ``EncodingType=url`` yet gives its keys raw: a space, a ``%`` not
    followed by two hex digits, or a character no encoder leaves (non-ASCII, controls) says
    so; a raw ``+`` does not, hence the key as given too."""
    if page.get("EncodingType") != "url" or not _URL_ENCODED.fullmatch(text):
        return [text]
    decoded = unquote_plus(text)
    return [decoded] if decoded == text else [decoded, text]


def _may_be(listed: str, key: str) -> bool:
    """Is ``listed`` ``key`` as a listing gives it back, each character XML cannot carry
    replaced by U+FFFD (as SeaweedFS does)?"""
    if len(listed) != len(key):
        return False
    return all(a in (b, "\ufffd") for a, b in zip(listed, key, strict=True))


_URL_ENCODED = re.compile(r"(?:[!-$&-~]|%[0-9A-Fa-f]{2})*")  # printable ASCII, no space


async def key_status(where: Where, key: str) -> KeyStatus:
    """HeadObject for the key, and the multipart uploads in progress to exactly that key."""
    bucket, uploads = where.bucket, None
    try:
        uploads = (await list_uploads(where, key=key)).uploads
    except S3Error as exc:
        if not refused(exc):  # no s3:ListBucketMultipartUploads: the object alone
            raise
    async with where.client() as client:
        head = await head_or_refusal(where.session(client, key, ""))
    if isinstance(head, S3Error):
        return KeyStatus(bucket, key, False if missing(head) else None, uploads=uploads)
    stated = ObjectChecksum.stored(head)
    checksum = f"{stated.algorithm.name} {stated}" if stated is not None else None
    return KeyStatus(
        bucket, key, True, int(head.get("ContentLength", 0)), str(head.get("ETag") or ""),
        checksum, head.get("LastModified"), uploads,
    )  # fmt: skip


async def abort_by_id(where: Where, key: str, upload_id: str) -> None:
    """Abort one multipart upload that has no state file. An unknown id is an error here (it
    was probably mistyped, and saying "done" would hide that), so the upload is looked up
    first: some servers answer an abort of an unknown id with success."""
    async with where.client() as client:
        session = where.session(client, key, upload_id)
        try:
            await session.list_parts(max_parts=1)
        except UploadGone:
            raise UploadGone(
                f"no multipart upload {upload_id} for s3://{where.bucket}/{key}",
                code="NoSuchUpload",
                hint="the bucket's list of multipart uploads in progress shows their ids",
            ) from None
        except S3Error as exc:
            if not refused(exc):  # abort may be allowed where listing is not
                raise
        await session.abort()
