"""``persevere verify``: is this object the same bytes as this local file? No download.

The answer comes from what the object states (HeadObject), never from what an endpoint leaves
out. Each *reading* of its value is a way to compute that value from the file:
- its checksum (:class:`ObjectChecksum`). ``digest-N`` is composite: the checksum of its N
  part checksums, so the N part sizes are needed. A digest without ``-N`` is of every byte (a
  single PUT, whatever the algorithm, or a full-object CRC of a multipart upload) unless
  ChecksumType says COMPOSITE. When the endpoint says neither (SeaweedFS gives no ChecksumType
  for a single PUT) and the ETag says N parts, both readings are tried.
- failing a checksum, its ETag (:class:`ETag`): the MD5 of the bytes, or ``md5-N``, the MD5
  of the N part MD5s; never under SSE-KMS/SSE-C, where it is no MD5 of the bytes.

A reading that reproduces the object's value proves a match. A mismatch is declared only once
every reading the object allows was computed and none reproduces it; if one could not be
computed (the part sizes of an object whose endpoint will not tell them), the answer is
"cannot tell", with why.

Part sizes are not assumed equal (other tools make unequal ones). They come from the upload's
state file when it reproduces the object, else from GetObjectAttributes (ObjectParts), else
(refused, as without ``s3:GetObjectAttributes``, or unsupported) from HeadObject with
PartNumber=N for each part.

To *name* the first differing part, per-part references are needed: S3's per-part checksums
(GetObjectAttributes, where the endpoint reports them), or the state file's part checksums or
ETags, trusted only when they reproduce the object's own value. The file is read once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ._checksums import ALGORITHMS, MD5, ChecksumAlgorithm, ObjectChecksum, b64
from ._errors import S3Error, SourceChanged, UsageError
from ._journal import JournalState, read_state
from ._progress import ProgressSink, guarded
from ._quirks import ETag, digest_of, missing, refused
from ._request import a_path, an_endpoint
from ._retry import RetryPolicy
from ._s3 import Endpoint, open_client, pages, request
from ._shard_journals import merge_shards
from ._source import FileIdentity, SourceFile, inspect_file
from ._units import MiB
from ._urls import check_destination

EXIT_MISMATCH = 4
EXIT_UNKNOWN = 5
HEAD_CONCURRENCY = 16  # HeadObject(PartNumber) requests in flight when asking part sizes
_SSE_C = "HeadObject answers 400 without its key, which verify does not take"
_NOT_THAT_UPLOAD = "the object was not written by that upload (replaced since?)"
_ONCE = RetryPolicy(max_attempts=1)  # a probe on a failure path: it only picks the message


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


@dataclass(frozen=True, slots=True)
class _Reading:
    """One way to compute the object's stated value from the file's bytes."""

    algorithm: ChecksumAlgorithm  # MD5 for the ETag
    stated: str  # the object's value, as HeadObject gave it
    parts: int | None  # None: a digest of every byte; N: of the digests of its N parts
    etag: bool = False

    @property
    def method(self) -> str:
        if self.etag:
            if self.parts is None:
                return "ETag (MD5 of the object)"
            return f"multipart ETag (MD5 of {self.parts} part MD5s)"
        if self.parts is None:
            return f"{self.algorithm.name} checksum"
        return f"{self.algorithm.name} composite checksum of {self.parts} parts"

    def computed(self, local: _LocalDigests) -> str:
        """The value the file gives, in the object's notation."""
        name = self.algorithm.name
        if self.parts is None:
            digest = local.whole[name]
            return f'"{digest.hex()}"' if self.etag else b64(digest)
        values = [d.hex() if self.etag else b64(d) for d in local.parts[name]]
        return self.of_parts(values, [0] * len(values))  # lengths do not enter a composite

    def of_parts(self, values: list[str], sizes: list[int]) -> str:
        """The value parts give (hex MD5s, or base64 checksums, and their sizes), in the
        object's notation: a multipart ETag, a composite checksum, or a combined full one."""
        if self.etag:
            return ETag.multipart(values)
        pairs = list(zip(values, sizes, strict=True))
        return str(ObjectChecksum.of_parts(self.algorithm, pairs, composite=self.parts is not None))


def _same(etag: bool, stated: str, computed: str) -> bool:
    """An ETag, or a checksum (a dropped -N is no news), and what the file gives."""
    return ETag(stated).same(computed) if etag else digest_of(stated) == digest_of(computed)


@dataclass(frozen=True, slots=True)
class _PartValues:
    """Per-part values known to be this object's (S3's per-part checksums, or a state file
    that reproduces the object): what names the first differing part."""

    algorithm: ChecksumAlgorithm
    # position of the part in the object (1: its first bytes) -> base64 checksum, or hex MD5
    # for ETags. A position, not S3's part number: numbers may have gaps (1, 2, 4).
    values: dict[int, str]
    etag: bool = False

    def first_difference(self, local: _LocalDigests) -> int | None:
        """The position of the first part whose digest differs, if any."""
        digests = local.parts[self.algorithm.name]  # hashed per part for these references
        for position, value in sorted(self.values.items()):
            digest = digests[position - 1]
            if not _same(self.etag, value, digest.hex() if self.etag else b64(digest)):
                return position
        return None


@dataclass(frozen=True, slots=True)
class _Layout:
    """The object's part sizes, where they came from, and per-part values if known."""

    sizes: list[int]
    source: str
    references: _PartValues | None = None
    numbers: list[int] | None = None  # S3's part numbers in order; None: 1..N

    def number(self, position: int) -> int:
        """S3's number of the part at ``position`` (1: the object's first bytes)."""
        return self.numbers[position - 1] if self.numbers else position

    def named(self, position: int) -> str:
        """That part by its S3 number, and the bytes it covers."""
        first = sum(self.sizes[: position - 1])
        last = first + self.sizes[position - 1] - 1
        return f"{self.number(position)} (bytes {first}..{last})"


@dataclass(frozen=True, slots=True)
class _LocalDigests:
    parts: dict[str, list[bytes]]  # per algorithm, per part
    whole: dict[str, bytes]  # per algorithm, of every byte


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What the object states, and what was learnt of its parts, before the file is read."""

    size: int
    part_count: int
    readings: list[_Reading]
    layout: _Layout | None
    why_no_sizes: str  # why its part sizes could not be had (when they could not)
    why_not_state_file: str  # why a given state file does not describe it (when it does not)

    @property
    def computable(self) -> list[_Reading]:
        """The readings of every byte or of one part, and those of as many parts as known."""
        known = len(self.layout.sizes) if self.layout else None
        return [r for r in self.readings if r.parts in (None, 1, known)]

    def result(
        self, outcome: str, reason: str, bad: int | None = None, by: _Reading | None = None
    ) -> VerifyResult:
        method = (by or self.readings[0]).method
        return VerifyResult(outcome, reason, method, bad, self.part_count, self.size, self.size)

    def cannot_tell(self, differences: list[str]) -> VerifyResult:
        needed = " or ".join(r.method for r in self.readings if r not in self.computable)
        why = f"the {needed} needs the sizes of the object's parts: {self.why_no_sizes}"
        return self.result("unknown", "; ".join([*differences, why]))


async def verify_object(
    file: str | Path,
    bucket: str,
    key: str,
    *,
    endpoint: Endpoint | None = None,
    state_file: str | Path | None = None,
    progress: ProgressSink | None = None,
    client: Any = None,
) -> VerifyResult:
    """Compare a local file with an object using only metadata requests.

    ``client``: an open S3 client to ask with (a tree's files share one), else one is opened
    for ``endpoint`` and closed before the file is read.
    """
    progress = guarded(progress)
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise UsageError(f"bucket and key must be non-empty strings, not {bucket!r} and {key!r}")
    check_destination(bucket, key)  # (a key cp would not write: no object of ours is there)
    identity = await anyio.to_thread.run_sync(inspect_file, a_path(file, "file"), "local file")
    journal = None
    if state_file is not None:
        state_file = a_path(state_file, "state_file")
        journal = await anyio.to_thread.run_sync(read_state, Path(state_file))
        if journal.header.shards:  # (its parts were recorded by its shards' journals)
            await anyio.to_thread.run_sync(merge_shards, Path(state_file), journal)
    asking = (
        nullcontext(client)
        if client
        else open_client(an_endpoint(endpoint) or Endpoint.from_environment())
    )
    async with asking as client:  # requests are built from dicts of parameters: Any
        ids = {"Bucket": bucket, "Key": key}
        head = await _head(client, ids)
        if head is None:
            why = f"the object is encrypted with SSE-C: {_SSE_C}: its content cannot be checked"
            return VerifyResult("unknown", why, local_size=identity.size)
        size = int(head["ContentLength"])
        if size != identity.size:
            differ = f"sizes differ: object {size} bytes, file {identity.size}"
            return VerifyResult("mismatch", differ, object_size=size, local_size=identity.size)
        readings, why_none = _readings(head)
        if not readings:
            return VerifyResult("unknown", why_none, object_size=size, local_size=size)
        layout, why_not_state_file = _journal_layout(journal, readings, size)
        why_no_sizes = ""
        if layout is None:
            layout, why_no_sizes = await _asked_layout(client, ids, head, readings)
    stated = ETag(str(head.get("ETag", ""))).part_count or max(r.parts or 1 for r in readings)
    count = len(layout.sizes) if layout else stated
    evidence = _Evidence(size, count, readings, layout, why_no_sizes, why_not_state_file)
    if not evidence.computable:
        return evidence.cannot_tell([])  # without reading the file: nothing to compare
    progress.start(size, 0)
    try:
        local = await anyio.to_thread.run_sync(_hash_file, identity, evidence, progress.advance)
    except SourceChanged:  # an edit while it was read: the digests prove nothing
        why = "the file changed while it was read (its size, times or path): verify it once final"
        return VerifyResult("unknown", why, object_size=size, local_size=size)
    finally:
        progress.close()
    return _verdict(evidence, local, state_file is not None)


def _verdict(evidence: _Evidence, local: _LocalDigests, with_state_file: bool) -> VerifyResult:
    """A match if any reading reproduces the object; MISMATCH only if every one was computed."""
    differences = []
    layout = evidence.layout
    for reading in evidence.computable:
        computed = reading.computed(local)
        if _same(reading.etag, reading.stated, computed):
            sizes = f" (part sizes from {layout.source})" if layout and reading.parts else ""
            reason = f"{reading.method} {reading.stated} matches{sizes}"
            return evidence.result("match", reason, by=reading)
        differences.append(f"{reading.method} differs: object {reading.stated}, file {computed}")
    if len(evidence.computable) < len(evidence.readings):
        return evidence.cannot_tell(differences)
    reason = "; ".join(differences)
    references = layout.references if layout else None
    position = references.first_difference(local) if references else None
    bad = None
    if position is not None and layout is not None:
        bad = layout.number(position)
        reason += f"; first differing part: {layout.named(position)}"
    elif with_state_file:
        reason += f"; {evidence.why_not_state_file or 'the state file names no differing part'}"
    elif evidence.part_count > 1:  # (one part: the object is the part that differs)
        reason += (
            "; the endpoint reports no per-part checksums (pass the upload's --state-file "
            "to name the differing part)"
        )
    return evidence.result("mismatch", reason, bad)


async def _head(client: Any, ids: dict[str, str]) -> Mapping[str, Any] | None:
    """HeadObject's answer; None for an object encrypted with SSE-C (no key to give)."""
    where = f"s3://{ids['Bucket']}/{ids['Key']}"
    try:
        return await request(
            "HeadObject", lambda: client.head_object(**ids, ChecksumMode="ENABLED")
        )
    except S3Error as exc:
        if missing(exc) and await _bucket_missing(client, ids["Bucket"]):
            raise no_bucket(where, ids["Bucket"]) from exc
        if missing(exc):
            raise S3Error(f"{where} does not exist ({exc})", code="NoSuchKey") from exc
        if exc.code in ("400", "BadRequest") and await _sse_c(client, ids):
            return None
        if refused(exc):  # a HEAD's 403 has no body to say AccessDenied
            exc.hint = (
                "verify needs s3:GetObject on the object (HeadObject); on AWS a missing "
                "object also answers AccessDenied without s3:ListBucket on the bucket"
            )
        raise


def no_bucket(where: str, bucket: str) -> S3Error:
    return S3Error(
        f"{where}: the bucket {bucket} does not exist",
        code="NoSuchBucket",
        hint="check the bucket's name, and the endpoint and region it is on",
    )


async def _sse_c(client: Any, ids: dict[str, str]) -> bool:
    """Is HeadObject's 400 (no body to say why) an object encrypted with SSE-C? A GetObject of
    its first byte says so in words (on this failure path only; one byte at most is read)."""
    try:
        answer = await request(
            "GetObject", lambda: client.get_object(**ids, Range="bytes=0-0"), retry=_ONCE
        )
    except S3Error as exc:
        return "server side encryption" in str(exc).lower()
    async with answer["Body"] as body:  # (no SSE-C after all: the 400 stands)
        await body.read()
    return False


async def _bucket_missing(client: Any, bucket: str) -> bool:
    """Is it the bucket that is missing? HeadObject's 404 has no body to say NoSuchBucket or
    NoSuchKey; HeadBucket tells (one request, on this failure path only). Refused or failed:
    not known to be missing."""
    try:
        await request("HeadBucket", lambda: client.head_bucket(Bucket=bucket), retry=_ONCE)
    except S3Error as exc:
        return missing(exc) or exc.code == "NoSuchBucket"
    return False


def _readings(head: Mapping[str, Any]) -> tuple[list[_Reading], str]:
    """Every reading the object's stated value allows, most likely first; or why none."""
    checksum = ObjectChecksum.stored(head)
    etag = ETag(str(head.get("ETag", "")))
    if checksum is not None:
        algorithm, stated, declared = checksum.algorithm, str(checksum), head.get("ChecksumType")
        if checksum.part_count is not None:
            return [_Reading(algorithm, stated, checksum.part_count)], ""
        whole = _Reading(algorithm, stated, None)
        if etag.part_count is None or not algorithm.may_be_composite or declared == "FULL_OBJECT":
            return [whole], ""
        composite = _Reading(algorithm, stated, etag.part_count)  # with its -N left out?
        return ([composite] if declared == "COMPOSITE" else [whole, composite]), ""
    proves = ETag.proves_content(head)
    if etag.md5 is not None and proves:
        return [_Reading(MD5, etag.text, etag.part_count, etag=True)], ""
    why = f"its ETag {etag.text} is not an MD5" if proves else "it is encrypted with SSE-KMS/SSE-C"
    return [], f"the object has no checksum and {why}: its content cannot be checked"


def _journal_layout(
    journal: JournalState | None, readings: list[_Reading], size: int
) -> tuple[_Layout | None, str]:
    """The state file's parts, if they reproduce the object's stated value; else why not.

    Only then do they describe this object: it may have been replaced since that upload, by
    another tool, with another algorithm (whose values are never combined as this one's).
    """
    if journal is None:
        return None, ""
    if not journal.header.stream and journal.header.file_size != size:  # (a stream's: 0)
        return None, (
            f"the state file's upload was of {journal.header.file_size} bytes, the object "
            f"has {size}: {_NOT_THAT_UPLOAD}"
        )
    records = [journal.parts.get(n) for n in range(1, len(journal.parts) + 1)]
    parts = [p for p in records if p is not None]
    if not parts or len(parts) < len(records) or sum(p.size for p in parts) != size:
        return None, "the state file does not hold every part of its upload"
    recorded = ALGORITHMS.get(journal.header.checksum_algorithm)
    for reading in [r for r in readings if r.parts in (None, len(parts))]:
        if not reading.etag and not (
            reading.algorithm is recorded and (reading.parts or recorded.full_object)
        ):
            continue
        values = [p.etag if reading.etag else p.checksum for p in parts]
        try:
            value = reading.of_parts(values, [p.size for p in parts])
        except ValueError:  # a value that is no hex or base64: not this object's
            continue
        if _same(reading.etag, reading.stated, value):
            references = _PartValues(reading.algorithm, dict(enumerate(values, 1)), reading.etag)
            return _Layout([p.size for p in parts], "the state file", references), ""
    stated = readings[0]
    what = "ETag" if stated.etag else "checksum"
    why = f"the state file's parts do not reproduce the object's {what}"
    if recorded is not None and not stated.etag and stated.algorithm is not recorded:
        why = f"the state file's parts carry {recorded.name} checksums, the object "
        why += stated.algorithm.name
    return None, f"{why}: {_NOT_THAT_UPLOAD}"


async def _asked_layout(
    client: Any, ids: dict[str, str], head: Mapping[str, Any], readings: list[_Reading]
) -> tuple[_Layout | None, str]:
    """The object's part sizes, asked of S3 without reading any data; else None and why not.

    GetObjectAttributes whenever the object says it has parts (one request per 1,000 parts,
    and it may report per-part checksums); HeadObject part by part only when a reading cannot
    be computed without the sizes.
    """
    size = int(head["ContentLength"])
    count = max(r.parts or 0 for r in readings) or ETag(str(head.get("ETag", ""))).part_count
    if count is None or count <= 1:
        return (_Layout([size], "a single part") if count == 1 else None), ""
    layout, why = await _attributes_layout(client, ids, size, count)
    if layout is not None or not any(r.parts == count for r in readings):
        return layout, why
    return await _per_part_layout(client, ids, size, count, why)


def _adds_up(sizes: list[int], size: int, count: int) -> bool:
    return len(sizes) == count and sum(sizes) == size and all(s >= 0 for s in sizes)


async def _attributes_layout(
    client: Any, ids: dict[str, str], size: int, count: int
) -> tuple[_Layout | None, str]:
    sizes: list[int] = []
    numbers: list[int] = []  # as listed: they may have gaps (1, 2, 4), the k-th part is k-th
    checksums: dict[int, str] = {}  # by position in the listing
    algorithm: ChecksumAlgorithm | None = None

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
                numbers.append(int(item.get("PartNumber") or len(sizes)))
                reported = ObjectChecksum.stored(item)
                if reported is not None:
                    algorithm = reported.algorithm
                    checksums[len(sizes)] = reported.digest
    except S3Error as exc:  # refused (no s3:GetObjectAttributes) or not supported
        return None, f"GetObjectAttributes answers {exc.code or exc}"
    if not _adds_up(sizes, size, count):
        return None, "GetObjectAttributes lists no parts"
    references = _PartValues(algorithm, checksums) if algorithm is not None else None
    return _Layout(sizes, "GetObjectAttributes", references, numbers), ""


async def _per_part_layout(
    client: Any, ids: dict[str, str], size: int, count: int, why_not_attributes: str
) -> tuple[_Layout | None, str]:
    """Each part's size from HeadObject(PartNumber=N): all that s3:GetObject alone allows."""
    sizes = [-1] * count
    counts: set[int] = set()  # the PartsCount each answer states
    failures: list[S3Error] = []
    numbers = iter(range(1, count + 1))  # shared by the workers: each number is taken once

    async def ask() -> None:
        for number in numbers:
            try:
                call = functools.partial(client.head_object, **ids, PartNumber=number)
                answer = await request("HeadObject", call)
            except S3Error as exc:
                failures.append(exc)
                return
            sizes[number - 1] = int(answer["ContentLength"])
            counts.add(int(answer.get("PartsCount") or count))

    async with anyio.create_task_group() as tg:
        for _ in range(min(HEAD_CONCURRENCY, count)):
            tg.start_soon(ask)
    why = f"{why_not_attributes}, and HeadObject with PartNumber "
    if failures:
        if not failures[0].code:
            raise failures[0]  # the network, not the endpoint's answer: an error, no verdict
        gaps = ""
        if failures[0].code in ("416", "InvalidPartNumber", "InvalidRange"):
            gaps = " (its part numbers may have gaps, which only GetObjectAttributes lists)"
        return None, why + f"answers {failures[0].code}{gaps}"
    if counts != {count} or not _adds_up(sizes, size, count):
        return None, why + "answers sizes that are not the parts' (it ignores PartNumber?)"
    return _Layout(sizes, "HeadObject per part"), ""


def _hash_file(
    identity: FileIdentity, evidence: _Evidence, advance: Callable[[int], None]
) -> _LocalDigests:
    """One pass over the file: each algorithm's digest per part (for composite readings, and
    to name the first bad part) and of every byte, as the computable readings ask."""
    layout, readings = evidence.layout, evidence.computable
    per_part = {r.algorithm for r in readings if r.parts is not None}
    if layout is not None and layout.references is not None:
        per_part.add(layout.references.algorithm)
    parts: dict[str, list[bytes]] = {a.name: [] for a in per_part}
    every_byte = {r.algorithm.name: r.algorithm.new() for r in readings if r.parts is None}
    scratch = memoryview(bytearray(8 * MiB))
    offset = 0
    with SourceFile(identity) as source:
        for size in layout.sizes if layout else [evidence.size]:
            part = {a.name: a.new() for a in per_part}
            hashers = [*part.values(), *every_byte.values()]
            for view in source.iter_range(offset, size, scratch):
                for hasher in hashers:
                    hasher.update(view)
                anyio.from_thread.run_sync(advance, len(view))
            for name, hasher in part.items():
                parts[name].append(hasher.digest())
            offset += size
        source.check_unchanged()
    return _LocalDigests(parts, {name: hasher.digest() for name, hasher in every_byte.items()})
