"""``persevere verify``: is this object the same bytes as this local file? No download.

What the object offers decides what can be proven (strongest first):
1. a full-object checksum (CRC64NVME, or CRC32/CRC32C of type FULL_OBJECT): the local file's
   CRC, combined from per-part CRCs computed in one pass, must equal it;
2. a composite checksum (``xxx-N``): the checksum of the local parts' checksums;
3. a multipart ETag (``md5-N``, no SSE-KMS/SSE-C): the MD5 of the local parts' MD5s; a
   single-part ETag: the MD5 of the file.
Part boundaries come from GetObjectAttributes (ObjectParts) or HeadObject(PartNumber=1).

To *name* the first differing part, per-part references are needed: S3's per-part checksums
(GetObjectAttributes, where the endpoint reports them), or the upload's journal
(``--state-file``), whose part checksums and ETags are trusted only after they reproduce the
object's own aggregate checksum or ETag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ._checksums import ALGORITHMS, ChecksumAlgorithm, ETag, b64, unb64
from ._errors import S3Error, UsageError
from ._journal import read_state
from ._progress import NullProgress, ProgressSink
from ._s3 import Endpoint, open_client, pages, request
from ._source import FileIdentity, SourceFile, inspect_file
from ._units import MiB

EXIT_MISMATCH = 4
EXIT_UNKNOWN = 5


@dataclass(frozen=True, slots=True)
class VerifyResult:
    outcome: str  # "match", "mismatch" or "unknown"
    reason: str
    method: str | None = None  # what was compared
    first_bad_part: int | None = None
    part_count: int = 0
    object_size: int = 0
    local_size: int = 0

    @property
    def exit_code(self) -> int:
        return {"match": 0, "mismatch": EXIT_MISMATCH}.get(self.outcome, EXIT_UNKNOWN)


@dataclass(slots=True)
class _Layout:
    sizes: list[int]  # part sizes in order; one entry for a single-part object
    part_checksums: dict[int, str] = field(default_factory=dict)  # from S3, if reported


@dataclass(slots=True)
class _LocalParts:
    digests: list[bytes] = field(default_factory=list)  # per part, of ``algorithm``
    md5s: list[str] = field(default_factory=list)  # per part, when an ETag is compared


def parse_s3_url(url: str, name: str | None = None) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key).

    A URL ending in ``/`` names a prefix: given ``name`` (the local file's), the key is the
    prefix plus that name, as the aws cli and s5cmd do; without one it is refused. A bare
    ``s3://bucket`` is refused (a missing key is more likely a mistake than a wish).
    """
    bucket, slash, key = url[5:].partition("/") if url.startswith("s3://") else ("", "", "")
    if not bucket:
        raise UsageError(f"not an S3 URL: {url!r} (expected s3://bucket/key)")
    if not slash or not key or key.endswith("/"):
        if not slash or not name:
            raise UsageError(f"not an object URL: {url!r} (expected s3://bucket/key)")
        key += name
    return bucket, key


async def verify_object(
    file: str | Path,
    bucket: str,
    key: str,
    *,
    endpoint: Endpoint | None = None,
    state_file: str | Path | None = None,
    progress: ProgressSink | None = None,
) -> VerifyResult:
    """Compare a local file with an object using only metadata requests."""
    progress = progress or NullProgress()
    identity = await anyio.to_thread.run_sync(inspect_file, Path(file))
    journal = None
    if state_file is not None:
        journal = await anyio.to_thread.run_sync(read_state, Path(state_file))
    endpoint = endpoint or Endpoint.from_environment(None, None, None)
    async with open_client(endpoint) as typed_client:
        client: Any = typed_client  # requests are built from dicts of parameters
        ids = {"Bucket": bucket, "Key": key}
        head = await request(
            "HeadObject", lambda: client.head_object(**ids, ChecksumMode="ENABLED")
        )
        size = int(head["ContentLength"])
        if size != identity.size:
            return VerifyResult(
                "mismatch",
                f"sizes differ: object {size} bytes, file {identity.size}",
                object_size=size,
                local_size=identity.size,
            )
        layout = await _layout(client, ids, head, size)
    count = len(layout.sizes)

    def result(
        outcome: str, reason: str, method: str | None = None, bad: int | None = None
    ) -> VerifyResult:
        return VerifyResult(outcome, reason, method, bad, count, size, identity.size)

    algorithm, stored, full_object = _stored_checksum(head)
    etag = ETag(str(head.get("ETag", "")))
    encrypted = not ETag.proves_content(head)
    use_etag = algorithm is None and etag.md5 is not None and not encrypted
    if algorithm is None and not use_etag:
        why = (
            "it is encrypted with SSE-KMS/SSE-C"
            if encrypted
            else f"its ETag {etag.text} is not an MD5"
        )
        return result(
            "unknown", f"the object has no checksum and {why}: its content cannot be checked"
        )
    with_md5 = use_etag or _journal_has_md5(journal)
    hash_algorithm = algorithm or ALGORITHMS["CRC64NVME"]
    progress.start(identity.size, 0)
    try:
        local = await anyio.to_thread.run_sync(
            _hash_parts, identity, layout.sizes, hash_algorithm, with_md5, progress.advance
        )
    finally:
        progress.close()

    if algorithm is not None and stored is not None:
        pairs = list(zip(local.digests, layout.sizes, strict=True))
        if full_object and count == 1:
            computed = b64(local.digests[0])  # one part: its digest is the object's (any algo)
            method = f"{algorithm.name} checksum"
        elif full_object:
            computed = b64(algorithm.combine(pairs))
            method = f"{algorithm.name} full-object checksum"
        else:
            computed = f"{b64(algorithm.combine(pairs, composite=True))}-{count}"
            method = f"{algorithm.name} composite checksum of {count} parts"
        stored_cmp = stored if full_object or "-" in stored else f"{stored}-{count}"
        if computed == stored_cmp:
            return result("match", f"{method} {stored} matches", method)
        reason = f"{method} differs: object {stored}, file {computed}"
    else:
        if etag.part_count is None:
            computed_etag = f'"{local.md5s[0]}"' if count == 1 else ETag.multipart(local.md5s)
            method = "ETag (MD5 of the object)"
        else:
            computed_etag = ETag.multipart(local.md5s)
            method = f"multipart ETag (MD5 of {count} part MD5s)"
        if etag.same(computed_etag):
            return result("match", f"{method} {etag.text} matches", method)
        reason = f"{method} differs: object {etag.text}, file {computed_etag}"

    bad = _first_bad_part(layout, local, hash_algorithm, journal, head)
    if bad is not None:
        reason += f"; first differing part: {bad} (bytes {sum(layout.sizes[: bad - 1])}.."
        reason += f"{sum(layout.sizes[:bad]) - 1})"
    else:
        reason += "; the endpoint reports no per-part checksums (pass the upload's --state-file "
        reason += "to name the differing part)"
    return result("mismatch", reason, method, bad)


def _stored_checksum(head: Mapping[str, Any]) -> tuple[ChecksumAlgorithm | None, str | None, bool]:
    for name, algorithm in ALGORITHMS.items():
        value = head.get(f"Checksum{name}")
        if value:
            full = head.get("ChecksumType") == "FULL_OBJECT" or (
                "-" not in value and algorithm.full_object
            )
            return algorithm, str(value), full
    return None, None, False


async def _layout(client: Any, ids: dict[str, str], head: Mapping[str, Any], size: int) -> _Layout:
    """Part sizes (and per-part checksums where reported), without reading any data."""
    count = ETag(str(head.get("ETag", ""))).part_count or 0
    sizes: list[int] = []
    checksums: dict[int, str] = {}

    def fetch(marker: int | None) -> Any:
        return request(
            "GetObjectAttributes",
            lambda: client.get_object_attributes(
                **ids, ObjectAttributes=["ObjectParts"], MaxParts=1000, PartNumberMarker=marker or 0
            ),
        )

    def following(page: Any) -> int | None:
        parts = page.get("ObjectParts") or {}
        return int(parts.get("NextPartNumberMarker") or 0) if parts.get("IsTruncated") else None

    try:
        async for page in pages("GetObjectAttributes", fetch, following, 0):
            for item in (page.get("ObjectParts") or {}).get("Parts") or []:
                sizes.append(int(item["Size"]))
                for name in ALGORITHMS:
                    if item.get(f"Checksum{name}"):
                        checksums[int(item["PartNumber"])] = str(item[f"Checksum{name}"])
    except S3Error:
        sizes, checksums = [], {}  # not supported or not permitted: fall back to HeadObject
    if sizes and sum(sizes) == size and (count in (0, len(sizes))):
        return _Layout(sizes, checksums)
    if count <= 1:
        return _Layout([size])  # a single PutObject, or a multipart upload of one part
    first = await request("HeadObject", lambda: client.head_object(**ids, PartNumber=1))
    part_size = int(first["ContentLength"])
    if part_size <= 0 or not part_size * (count - 1) < size <= part_size * count:
        raise S3Error(
            f"cannot infer the part layout of s3://{ids['Bucket']}/{ids['Key']} "
            f"({count} parts, first {part_size} bytes, {size} in all)"
        )
    return _Layout([part_size] * (count - 1) + [size - part_size * (count - 1)])


def _hash_parts(
    identity: FileIdentity,
    sizes: list[int],
    algorithm: ChecksumAlgorithm,
    with_md5: bool,
    advance: Callable[[int], None],
) -> _LocalParts:
    result = _LocalParts()
    scratch = memoryview(bytearray(8 * MiB))
    offset = 0

    def report(n: int) -> None:
        anyio.from_thread.run_sync(advance, n)

    with SourceFile(identity) as source:
        for size in sizes:
            digest, md5 = source.hash_range(offset, size, scratch, algorithm, with_md5, report)
            result.digests.append(digest)
            if md5 is not None:
                result.md5s.append(md5)
            offset += size
    return result


def _journal_has_md5(journal: Any) -> bool:
    return journal is not None and bool(journal.parts)


def _first_bad_part(
    layout: _Layout,
    local: _LocalParts,
    algorithm: ChecksumAlgorithm,
    journal: Any,
    head: Mapping[str, Any],
) -> int | None:
    if layout.part_checksums:
        for number, reported in sorted(layout.part_checksums.items()):
            if reported.split("-")[0] != b64(local.digests[number - 1]):
                return number
    if journal is None or len(journal.parts) != len(layout.sizes):
        return None
    parts = [journal.parts.get(n) for n in range(1, len(layout.sizes) + 1)]
    if any(p is None for p in parts):
        return None
    # Trust the journal only if it reproduces the object's own aggregate.
    etags = [p.etag for p in parts]
    trusted_etags = ETag(ETag.multipart(etags)).same(str(head.get("ETag", "")))
    if trusted_etags and local.md5s:
        for number, (part, md5) in enumerate(zip(parts, local.md5s, strict=True), start=1):
            if part.etag.strip('"').lower() != md5:
                return number
    stored = head.get(algorithm.param)
    composite = head.get("ChecksumType") == "COMPOSITE" or "-" in str(stored)
    pairs = [(unb64(p.checksum), p.size) for p in parts]
    combined = b64(algorithm.combine(pairs, composite=composite))
    trusted_checksums = (
        ALGORITHMS.get(journal.header.checksum_algorithm) is algorithm
        and stored is not None
        and str(stored).split("-")[0] == combined
    )
    if trusted_checksums:
        for number, part in enumerate(parts, start=1):
            if part.checksum != b64(local.digests[number - 1]):
                return number
    return None
