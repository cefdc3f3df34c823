"""One multipart upload's S3 calls: create, upload a part, list, complete, abort, head.

Every request S3 receives for an upload goes through a :class:`MultipartSession`, which holds
what they all repeat (bucket, key, upload id, ``ExpectedBucketOwner``), the checksum algorithm,
and the retry policy. Uploads, resumes, ``bench`` and the bucket tools (``upload list``,
``abort --upload-id``) share it, so each S3 rule is written once: the part list and checksums
sent with CompleteMultipartUpload, the ListParts pager, the abort.

``upload_part`` is one attempt (the sender retries it, around its congestion window and stall
watchdog); every other call is retried here with the session's policy.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ._checksum_mode import PartDigests, PartVerifier
from ._checksums import ChecksumAlgorithm, ObjectChecksum, b64, checksum_type
from ._errors import IntegrityError, PersevereError, ResumableError, S3Error, UsageError
from ._journal import PartRecord
from ._object_options import LOCK_FIELDS
from ._quirks import (
    TRAILED_DAMAGE_CODES,
    UNSUPPORTED_CODES,
    ETag,
    answered,
    credentials_expired,
    object_matches,
)
from ._reconcile import RemotePart
from ._retry import RetryPolicy, TransientError, call_with_retry, refused_throughout
from ._s3 import S3Client, attempt, pages, request
from ._trailer import TrailerRefused, Trailers

T = TypeVar("T")

# Algorithms every S3 endpoint with flexible checksums knows; the rest (added in 2026) may be
# refused as unsupported.
CLASSIC_ALGORITHMS = frozenset({"CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1"})

# The longest file name most file systems take, hence the longest path segment a server that
# stores keys as files does (S3 itself takes one of 1,024).
MAX_NAME_BYTES = 255


def resumable(what: str, exc: TransientError, attempts: int) -> PersevereError:
    hint = "the upload is intact and resumable"
    if credentials_expired(exc.code):
        hint = (
            "S3 refused the credentials and the credential chain has no newer ones: renew them "
            "(aws sso login, a new session...); the upload is intact and resumable"
        )
    return ResumableError(f"{what} failed {attempts} times, last: {exc}", hint=hint)


@dataclass(frozen=True, slots=True)
class Completed:
    """What CompleteMultipartUpload produced, as checked against the parts."""

    etag: str
    checksum: ObjectChecksum
    expected_etag: str | None  # MD5 of the part MD5s, when every part ETag is an MD5
    answered: bool = False  # etag is the server's answer to CompleteMultipartUpload


class MultipartSession:
    """The S3 side of one multipart upload (see the module docstring)."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        upload_id: str | None,
        algorithm: ChecksumAlgorithm,
        *,
        retry: RetryPolicy | None = None,
        per_request: Mapping[str, Any] | None = None,
        exhausted: Callable[[str, TransientError, int], PersevereError] = resumable,
        pinned: bool = True,
        no_overwrite: bool = False,
    ) -> None:
        """``upload_id`` None: a new upload, which :meth:`create` creates. ``pinned``: the
        algorithm was chosen, so an endpoint that does not echo it is refused; unpinned, the
        session falls back to Content-MD5 per part (see :mod:`._checksum_mode`).
        ``no_overwrite``: CompleteMultipartUpload only if the key does not exist
        (``If-None-Match: *``; see :mod:`._write_once`). ``exhausted(what, last failure,
        attempts)``: what a retried call raises when its attempts run out."""
        # Parameters built at run time (the checksum's field name, ExpectedBucketOwner) do not
        # fit the typed client's keyword arguments; responses are read as plain mappings.
        self.client: Any = client
        self.bucket = bucket
        self.key = key
        self.upload_id = upload_id or ""
        self.algorithm = algorithm
        self.checksum_type = checksum_type(algorithm)
        # What proves each part (one per run: a resume checks the endpoint again).
        self.verifier = PartVerifier(algorithm, pinned=pinned)
        # Whether the endpoint takes checksums as trailers (found out once per client).
        self.trailers = Trailers.of(client)
        self.retry = retry or RetryPolicy()
        self.exhausted = exhausted
        self.no_overwrite = no_overwrite
        # Bucket, key and what S3 wants repeated on every request of the upload.
        self.object_ids: dict[str, Any] = {"Bucket": bucket, "Key": key, **(per_request or {})}

    @property
    def ids(self) -> dict[str, Any]:
        return {**self.object_ids, "UploadId": self.upload_id}

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    async def create(self, object_options: Mapping[str, Any], *, retry: RetryPolicy) -> None:
        """CreateMultipartUpload, retried by ``retry`` (``Call.FIRST``'s: an unreachable
        endpoint fails fast)."""

        def unreachable(exc: TransientError, tries: int) -> PersevereError:
            # "Try again later" for a supervisor (exit 3): a network that is down when the timer
            # fires must not stop the service for good. Nothing was created, nothing is lost.
            again = ResumableError(
                f"cannot start the upload after {tries} attempts: {exc}",
                hint="renew the credentials (aws sso login, a new session...), then run again"
                if credentials_expired(exc.code)
                else "nothing was created: check the endpoint and the network, then run the "
                "same command again",
            )
            again.next_step = None  # no upload to resume: the same command starts it
            return again

        model = getattr(getattr(self.client, "meta", None), "service_model", None)
        if model is not None:  # (parameter_validation is off: botocore's KeyError otherwise)
            known = model.operation_model("CreateMultipartUpload").input_shape.members
            if unknown := sorted(set(object_options) - set(known)):
                raise UsageError(f"object_options: CreateMultipartUpload takes no "
                                 f"{', '.join(unknown)}", param="object_options")  # fmt: skip
        fields = self.verifier.create_fields(self.checksum_type)
        params = {**self.object_ids, **object_options, **fields}
        try:
            response = await request(
                "CreateMultipartUpload",
                lambda: self.client.create_multipart_upload(**params),
                retry=retry,
                exhausted=unreachable,
            )
        except S3Error as exc:
            said = await explained(self.client, self.bucket, self.algorithm, object_options, exc)
            if said is exc:
                raise
            raise said from exc
        self.upload_id = answered(response, "UploadId", "CreateMultipartUpload")

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """One request, retried with the session's policy."""
        exhausted = functools.partial(self.exhausted, what)
        return await request(what, fn, retry=self.retry, exhausted=exhausted)

    # -- parts ---------------------------------------------------------------------------------
    def takes_trailers(self) -> bool:
        """Whether a part prepared now may carry its checksum as a trailer (:mod:`._trailer`):
        the endpoint has not refused them (until it took one, one part at a time), and the
        part needs no Content-MD5 (a header)."""
        if self.verifier.flexible and not self.verifier.needs_md5():
            return self.trailers.claim(self.algorithm)
        return False

    async def upload_part(
        self, number: int, body: Any, size: int, checksum: str | None, md5: bytes | None = None
    ) -> str:
        """One UploadPart attempt; the ETag, once the answer proves S3 saw our bytes (its
        checksum echo agrees with ours, or its ETag is our MD5: :class:`PartVerifier`).

        ``checksum`` None: ``body`` computes it and sends it as a trailer;
        :class:`TrailerRefused` if the endpoint refused it or ignored it (no echo), before it
        ever took one."""
        if checksum is not None:
            digests = PartDigests(checksum, md5)
            response = await self._put(number, body, size, self.verifier.request_fields(digests))
            return self.verifier.check(number, digests, response)
        try:
            response = await self._put(number, body, size, {})
        except S3Error as exc:
            if body.error is not None:
                raise
            if self.trailers.on_refusal(f"{exc.code}: {exc}"):
                raise TrailerRefused(str(exc)) from exc
            # The endpoint takes trailers: this one was damaged (its checksum or framing).
            if exc.code in TRAILED_DAMAGE_CODES:
                raise TransientError(f"part {number}: {exc}", code="BadDigest") from exc
            raise
        if response.get(self.algorithm.param) is not None:  # echoed
            self.trailers.taken()
        elif self.trailers.on_refusal("its answer has no checksum"):
            raise TrailerRefused(f"part {number}: no {self.algorithm.param} in the answer")
        return self.verifier.check(number, PartDigests(b64(body.digest)), response)

    async def _put(self, number: int, body: Any, size: int, proof: Mapping[str, Any]) -> Any:
        """The UploadPart request, ``proof`` its checksum or Content-MD5 fields (none: a
        trailer), its failure translated."""
        return await attempt(
            f"part {number}",
            lambda: self.client.upload_part(
                **self.ids, PartNumber=number, Body=body, ContentLength=size, **proof
            ),
        )

    async def list_parts(self, *, max_parts: int | None = None) -> dict[int, RemotePart]:
        """Every part S3 holds for the upload (all pages; or the first ``max_parts``)."""
        limit = {"MaxParts": max_parts} if max_parts else {}

        def fetch(marker: int | None) -> Awaitable[Any]:
            return self.call(
                "ListParts",
                lambda: self.client.list_parts(**self.ids, PartNumberMarker=marker or 0, **limit),
            )

        def following(page: Any) -> int | None:
            if max_parts or not page.get("IsTruncated"):
                return None
            return int(page.get("NextPartNumberMarker") or 0)

        parts: dict[int, RemotePart] = {}
        async for page in pages("ListParts", fetch, following, 0):
            for item in page.get("Parts") or []:
                number = int(item["PartNumber"])
                checksum = item.get(self.algorithm.param)
                parts[number] = RemotePart(number, str(item["ETag"]), int(item["Size"]), checksum)
        return parts

    # -- the object ----------------------------------------------------------------------------
    def expected(self, parts: Sequence[PartRecord]) -> Completed:
        """The object CompleteMultipartUpload should make of ``parts`` (in order)."""
        checksum = ObjectChecksum.of_parts(
            self.algorithm,
            [(p.checksum, p.size) for p in parts],
            composite=self.checksum_type == "COMPOSITE",
        )
        etags = [p.etag for p in parts]
        md5s = all(ETag(e).md5 is not None and ETag(e).part_count is None for e in etags)
        expected_etag = ETag.multipart(etags) if md5s else None
        return Completed(expected_etag or "", checksum, expected_etag)

    async def complete(self, parts: Sequence[PartRecord], object_size: int) -> Completed:
        """CompleteMultipartUpload with every part's checksum, the object's combined checksum
        (full-object) and its size; S3 refuses a mismatch, and so does persevere."""
        expected = self.expected(parts)
        param = self.algorithm.param
        listed = [{"PartNumber": p.part_number, "ETag": p.etag} for p in parts]
        params: dict[str, Any] = {**self.ids, "MultipartUpload": {"Parts": listed}}
        params["MpuObjectSize"] = object_size
        if self.no_overwrite:
            params["IfNoneMatch"] = "*"  # S3 answers 412 if the key exists: see _write_once
        if self.verifier.flexible:  # Content-MD5 mode sends no checksum fields
            params["ChecksumType"] = self.checksum_type
            for entry, part in zip(listed, parts, strict=True):
                entry[param] = part.checksum
            if self.checksum_type == "FULL_OBJECT":
                params[param] = str(expected.checksum)

        failures: list[TransientError] = []

        async def complete_attempt() -> Any:
            try:
                return await attempt(
                    "CompleteMultipartUpload",
                    lambda: self.client.complete_multipart_upload(**params),
                )
            except TransientError as exc:
                if exc.code == "BadDigest":
                    # Every part was verified on arrival: the whole disagreeing with them is
                    # not a transfer error that another attempt could cure.
                    raise IntegrityError(
                        f"S3 refused to complete {self.where}: the parts' combined checksum "
                        f"{expected.checksum} does not match the object it assembled "
                        "(BadDigest)",
                        hint="abort the upload and start again",
                    ) from exc
                failures.append(exc)
                raise

        def exhausted(exc: TransientError, tries: int) -> PersevereError:
            if not refused_throughout(failures):
                return self.exhausted("CompleteMultipartUpload", exc, tries)
            # The server answered every Complete with the same error (see :mod:`._retry`):
            # exit 1 with its words, not "try again later" forever.
            error = S3Error(
                f"{exc} (the same answer to all {tries} attempts: the server does not complete "
                "this upload)",
                code=exc.code,
                hint="the parts are kept on S3; look at the server's log, and resume once the "
                "cause is fixed, or abort",
            )
            longest = max(len(segment.encode("utf-8", "surrogateescape"))
                          for segment in self.key.split("/"))  # fmt: skip
            if longest > MAX_NAME_BYTES:
                error.hint = (
                    f"the key has a path segment of {longest:,} bytes: S3-compatible servers "
                    f"that keep keys as file names (SeaweedFS among them) take at most "
                    f"{MAX_NAME_BYTES}; upload under a shorter key, and abort this upload"
                )
                error.next_step = "abort"
            return error

        response = await call_with_retry(
            self.retry, "CompleteMultipartUpload", complete_attempt, exhausted
        )
        returned = response.get(param)
        if returned is not None and not expected.checksum.matches(returned):
            raise IntegrityError(
                f"S3 reports checksum {returned} for {self.where}, the parts give "
                f"{expected.checksum}: the object may be corrupt",
                hint="delete the object and upload it again",
            )
        etag = str(response.get("ETag") or "")  # (none: a gateway's page, not S3's answer)
        return Completed(etag or expected.expected_etag or "", expected.checksum,
                         expected.expected_etag, answered=bool(etag))  # fmt: skip

    async def head_object(self) -> Mapping[str, Any]:
        """HeadObject with the stored checksum (``ChecksumMode=ENABLED``)."""
        head: Mapping[str, Any] = await self.call(
            "HeadObject", lambda: self.client.head_object(**self.object_ids, ChecksumMode="ENABLED")
        )
        return head

    async def holds(self, expected: Completed, size: int) -> bool:
        """Is the object there with this size and checksum (or ETag)? For an upload whose
        completion may have happened without its answer reaching us."""
        try:
            head = await self.head_object()
        except S3Error:
            return False
        return object_matches(head, size, expected.checksum, expected.expected_etag)

    async def abort(self) -> None:
        """AbortMultipartUpload: S3 frees the parts."""
        await self.call(
            "AbortMultipartUpload", lambda: self.client.abort_multipart_upload(**self.ids)
        )


async def explained(
    api: S3Client,
    bucket: str,
    algorithm: ChecksumAlgorithm,
    options: Mapping[str, Any],
    exc: S3Error,
) -> S3Error:
    """``exc``, S3's refusal of an upload's first request (CreateMultipartUpload, or a tree's
    PutObject), said in one line with its fix when it refused what the endpoint does not
    take: a newer checksum algorithm, or object lock options on a bucket without it
    (AWS: "Bucket is missing Object Lock Configuration"; SeaweedFS: a bare "Invalid
    Request"). The bucket's lock configuration is asked for, to say for sure (without the
    permission, "probably")."""
    if exc.code not in UNSUPPORTED_CODES:
        return exc
    if algorithm.name not in CLASSIC_ALGORITHMS:
        return S3Error(
            f"checksum algorithm {algorithm.name} is not supported by this endpoint ({exc.code})",
            code=exc.code,
            hint="use CRC64NVME (the default), CRC32C, CRC32, SHA256 or SHA1",
        )
    if not LOCK_FIELDS & options.keys():
        return exc
    enabled: bool | None = None  # not known
    try:
        config = await attempt(
            "GetObjectLockConfiguration",
            lambda: api.get_object_lock_configuration(Bucket=bucket),
        )
        enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
    except S3Error as lookup:
        if lookup.code == "ObjectLockConfigurationNotFoundError":
            enabled = False
    except TransientError:
        pass
    if enabled:
        return exc  # refused for another reason: S3's own words
    said = "probably has no object lock" if enabled is None else "has no object lock"
    return S3Error(
        f"S3 refused the object lock options ({exc}): bucket {bucket} {said}; enable "
        "it (versioning on, then aws s3api put-object-lock-configuration, or a new bucket "
        "created with --object-lock-enabled-for-bucket), or upload without object lock",
        code=exc.code,
    )
