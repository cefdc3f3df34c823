"""Multipart uploads in progress on a bucket, whoever started them: list and abort by id.

Parts of an unfinished upload are billed until it is aborted; these find the forgotten ones
(``persevere upload list``) and remove one that has no state file (``upload abort --upload-id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from ._errors import S3Error, UploadGone
from ._s3 import Endpoint, list_all_parts, open_client, request


@dataclass(frozen=True, slots=True)
class InProgressUpload:
    key: str
    upload_id: str
    initiated: datetime | None
    parts: int
    bytes: int
    storage_class: str | None


async def list_uploads(
    bucket: str,
    *,
    prefix: str = "",
    older_than_s: float | None = None,
    endpoint: Endpoint | None = None,
) -> list[InProgressUpload]:
    """Every in-progress multipart upload under ``prefix``, with its parts and bytes so far."""
    endpoint = endpoint or Endpoint.from_environment(None, None, None)
    cutoff = None
    if older_than_s is not None:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    async with open_client(endpoint) as client:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            page = await request(
                "ListMultipartUploads",
                lambda p=dict(params): client.list_multipart_uploads(**p),  # type: ignore[misc]
            )
            found += page.get("Uploads") or []
            if not page.get("IsTruncated"):
                break
            params["KeyMarker"] = page.get("NextKeyMarker")
            params["UploadIdMarker"] = page.get("NextUploadIdMarker")
        if cutoff is not None:
            found = [u for u in found if u.get("Initiated") and u["Initiated"] < cutoff]

        results: list[InProgressUpload | None] = [None] * len(found)
        limiter = anyio.CapacityLimiter(8)

        async def describe(index: int, upload: dict[str, Any]) -> None:
            async with limiter:
                try:
                    items = await list_all_parts(
                        client,
                        request,
                        Bucket=bucket,
                        Key=upload["Key"],
                        UploadId=upload["UploadId"],
                    )
                except UploadGone:
                    return  # completed or aborted while we looked
                parts, size = len(items), sum(int(item["Size"]) for item in items)
                results[index] = InProgressUpload(
                    key=str(upload["Key"]),
                    upload_id=str(upload["UploadId"]),
                    initiated=upload.get("Initiated"),
                    parts=parts,
                    bytes=size,
                    storage_class=upload.get("StorageClass"),
                )

        async with anyio.create_task_group() as tg:
            for index, upload in enumerate(found):
                tg.start_soon(describe, index, upload)
    return [r for r in results if r is not None]


async def abort_by_id(
    bucket: str, key: str, upload_id: str, *, endpoint: Endpoint | None = None
) -> None:
    """Abort one multipart upload that has no state file. An unknown id is an error here (it
    was probably mistyped, and saying "done" would hide that), so the upload is looked up
    first: some servers answer an abort of an unknown id with success."""
    endpoint = endpoint or Endpoint.from_environment(None, None, None)
    async with open_client(endpoint) as client:
        try:
            await request(
                "ListParts",
                lambda: client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=1),
            )
        except UploadGone:
            raise UploadGone(
                f"no multipart upload {upload_id} for s3://{bucket}/{key}",
                code="NoSuchUpload",
                hint=f"'persevere upload list --s3-bucket {bucket}' shows the uploads in progress",
            ) from None
        except S3Error as exc:
            if exc.code != "AccessDenied":  # abort may be allowed where listing is not
                raise
        await request(
            "AbortMultipartUpload",
            lambda: client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
        )
