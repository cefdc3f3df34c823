"""The uploader: start, resume, abort and status of one multipart upload.

One task group per upload: ``concurrency`` workers pull part numbers from a shared iterator,
plus one watchdog that cuts attempts whose bytes stopped moving.

Memory is bounded by streaming, whatever the part size. Each worker owns a buffer of
``buffer_bytes = min(part_size, max(1 MiB, buffer_budget_bytes // concurrency))``:
- a part that fits the buffer is read once into it and sent from it;
- a larger part is checksummed in a first pass through the buffer (S3 needs the checksum in
  the request headers, before the body), then streamed in 1 MiB slices, about two of which
  are alive per worker. The second read comes from the page cache: at the default sizes it
  costs less than 0.1 s of CPU per GiB, and memory stays flat from 5 MiB to 5 GiB parts.
Peak part-data memory is therefore about ``concurrency * (buffer_bytes + 2 MiB)``: 32 MiB at
the defaults (c=8, 16 MiB budget), on top of the ~80 MiB the Python/botocore stack needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ._body import BufferedBody, StreamingBody, Throttle
from ._checksums import (
    ChecksumAlgorithm,
    b64,
    get_algorithm,
    is_md5_etag,
    multipart_etag,
    unb64,
)
from ._errors import (
    IntegrityError,
    PersevereError,
    ResumableError,
    S3Error,
    SourceChanged,
    StateFileError,
    UploadFinished,
    UploadGone,
    UsageError,
)
from ._journal import Header, Journal, JournalState, PartRecord, read_state
from ._object_options import per_request
from ._plan import PartPlan, make_plan
from ._progress import NullProgress, ProgressSink
from ._reconcile import RemotePart, reconcile
from ._retry import RetryPolicy, TransientError, call_with_retry
from ._s3 import Endpoint, list_all_parts, open_client, request, resolved_region
from ._s3 import attempt as _s3
from ._scheduler import PartSender, PreparedPart
from ._source import FileIdentity, SourceFile, inspect_file
from ._units import MiB
from ._version import __version__

log = logging.getLogger("persevere")

T = TypeVar("T")

MAX_CONCURRENCY = 256
CREATE_SHIELD_S = 15.0  # how long a Ctrl-C waits for CreateMultipartUpload's answer
# Algorithms every S3 endpoint with flexible checksums knows; the rest (added in 2026) may be
# refused with one of these codes.
_CLASSIC_ALGORITHMS = frozenset({"CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1"})
_UNSUPPORTED_CODES = frozenset({"InvalidRequest", "InvalidArgument", "NotImplemented"})


@dataclass(slots=True)
class UploadOptions:
    """Tuning knobs. Part-data memory is about ``concurrency * (buffer_bytes + 2 MiB)`` with
    ``buffer_bytes = min(part_size, max(1 MiB, buffer_budget_bytes // concurrency))``."""

    concurrency: int = 8
    buffer_budget_bytes: int = 16 * MiB
    stall_timeout_s: float = 60.0
    max_bandwidth_bytes_s: float | None = None  # shared by all parts; None: unlimited
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # The first call of a new upload fails fast: an unreachable endpoint is reported in
    # seconds, not after minutes of retrying.
    first_call_attempts: int = 4

    def validate(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")


@dataclass(frozen=True, slots=True)
class UploadResult:
    bucket: str
    key: str
    upload_id: str
    size: int
    part_count: int
    etag: str
    checksum_algorithm: str
    checksum: str | None
    bytes_sent: int  # by this run (resumed parts are not counted)
    elapsed_s: float
    already_completed: bool = False  # resume found the object completed by an earlier run


@dataclass(frozen=True, slots=True)
class RemoteStatus:
    reachable: bool
    exists: bool = False
    parts: int = 0
    bytes: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class UploadStatus:
    state_file: Path
    header: Header
    part_count: int
    parts_done: int
    bytes_done: int
    outcome: dict[str, Any] | None
    remote: RemoteStatus | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Upload:
    """A multipart upload whose header is in the journal: sends parts and completes."""

    def __init__(
        self,
        client: Any,
        journal: Journal,
        header: Header,
        source: SourceFile,
        options: UploadOptions,
        progress: ProgressSink,
    ) -> None:
        self.client = client
        self.journal = journal
        self.header = header
        self.source = source
        self.options = options
        self.progress = progress
        self.plan = PartPlan(header.file_size, header.part_size)
        self.algorithm: ChecksumAlgorithm = get_algorithm(header.checksum_algorithm)
        self.done: dict[int, PartRecord] = {}
        self.sender = PartSender(
            client,
            {**self._ids, "UploadId": header.upload_id},
            self.algorithm,
            concurrency=options.concurrency,
            retry=options.retry,
            stall_timeout_s=options.stall_timeout_s,
            exhausted=self._exhausted,
            max_bandwidth_bytes_s=options.max_bandwidth_bytes_s,
            progress=progress,
        )

    @property
    def _ids(self) -> dict[str, str]:
        """Bucket, key, and what every request must repeat (ExpectedBucketOwner)."""
        return {
            "Bucket": self.header.bucket,
            "Key": self.header.key,
            **per_request(self.header.object_options),
        }

    def _exhausted(self, what: str) -> Callable[[TransientError, int], PersevereError]:
        def make(exc: TransientError, attempts: int) -> PersevereError:
            return ResumableError(
                f"{what} failed {attempts} times, last: {exc}",
                hint="the upload is intact and resumable",
            )

        return make

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await call_with_retry(
            self.options.retry, what, lambda: _s3(what, call), self._exhausted(what)
        )

    async def _record(self, part: PartRecord) -> None:
        # Shielded: once S3 has the part, recording it must not be lost to a Ctrl-C.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(self.journal.append_part, part)
            except OSError as exc:
                raise ResumableError(
                    f"cannot write state file {self.journal.path}: {exc.strerror or exc}",
                    hint="free space or fix permissions, then resume",
                ) from exc
        self.done[part.part_number] = part

    # -- sending parts ---------------------------------------------------------------------
    @property
    def bytes_sent(self) -> int:
        return self.sender.bytes_sent

    async def upload_parts(self, todo: list[int]) -> None:
        """Upload ``todo`` with up to ``concurrency`` parts in flight; stop on the first error."""
        workers = max(1, min(self.options.concurrency, len(todo)))
        buffer_bytes = min(
            self.plan.part_size, max(MiB, self.options.buffer_budget_bytes // workers)
        )
        await self.sender.send(todo, buffer_bytes, self._prepare, self._part_done)

    async def _prepare(self, number: int, buffer: memoryview) -> PreparedPart:
        """Checksum a part; keep it in ``buffer`` if it fits, else stream it per attempt."""
        size = self.plan.size_of(number)
        offset = self.plan.offset(number)
        if size <= len(buffer):
            view = buffer[:size]
            digest = await anyio.to_thread.run_sync(
                self.source.read_and_hash, view, offset, self.algorithm
            )

            def make_body(on_sent: Callable[[int], None], throttle: Throttle | None) -> Any:
                return BufferedBody(view, on_sent, throttle)
        else:
            digest, _ = await anyio.to_thread.run_sync(
                self.source.hash_range, offset, size, buffer, self.algorithm
            )

            def make_body(on_sent: Callable[[int], None], throttle: Throttle | None) -> Any:
                return StreamingBody(self.source, offset, size, on_sent, throttle)

        return PreparedPart(number, size, b64(digest), make_body)

    async def _part_done(self, part: PreparedPart, etag: str) -> None:
        await self._record(PartRecord(part.number, etag, part.checksum, part.size))

    # -- adopting parts S3 has but the journal lacks -----------------------------------------
    async def adopt(self, candidates: dict[int, RemotePart]) -> list[int]:
        """Keep S3's parts that match the local bytes; return the numbers to upload again."""
        rejected = []
        scratch = memoryview(bytearray(min(self.plan.part_size, 8 * MiB)))
        for number, remote in sorted(candidates.items()):
            digest, md5 = await anyio.to_thread.run_sync(
                self.source.hash_range,
                self.plan.offset(number),
                remote.size,
                scratch,
                self.algorithm,
                True,
            )
            checksum = b64(digest)
            if remote.checksum is not None:
                matches = remote.checksum.split("-")[0] == checksum
            else:
                matches = is_md5_etag(remote.etag) and remote.etag.strip('"').lower() == md5
            if matches:
                log.info("part %d: found on S3 and matches the file, adopted", number)
                await self._record(PartRecord(number, remote.etag, checksum, remote.size))
            else:
                rejected.append(number)
        return rejected

    async def recheck_done_parts(self) -> list[int]:
        """Re-read every done part; forget (and return) those whose bytes changed."""
        changed = []
        scratch = memoryview(bytearray(min(self.plan.part_size, 8 * MiB)))
        for number, part in sorted(self.done.items()):
            digest, _ = await anyio.to_thread.run_sync(
                self.source.hash_range, self.plan.offset(number), part.size, scratch,
                self.algorithm,
            )  # fmt: skip
            if b64(digest) != part.checksum:
                changed.append(number)
                del self.done[number]
        if changed:
            log.warning(
                "%d part(s) changed in the file since they were uploaded (first: part %d); "
                "uploading them again",
                len(changed),
                changed[0],
            )
        else:
            log.info("all %d uploaded parts still match the file", len(self.done))
        return changed

    # -- completing ------------------------------------------------------------------------
    def _expected(self) -> tuple[list[PartRecord], str, str | None]:
        parts = [self.done[n] for n in self.plan.part_numbers()]
        composite = self.header.checksum_type == "COMPOSITE"
        pairs = [(unb64(p.checksum), p.size) for p in parts]
        full = b64(self.algorithm.combine(pairs, composite=composite))
        if composite:
            full += f"-{len(parts)}"  # composite checksums carry the part count, like ETags
        etags = [p.etag for p in parts]
        etag = multipart_etag(etags) if all(is_md5_etag(e) for e in etags) else None
        return parts, full, etag

    async def complete(self) -> tuple[str, str | None]:
        await anyio.to_thread.run_sync(self.source.check_unchanged)
        parts, full, expected_etag = self._expected()
        algorithm = self.algorithm
        params: dict[str, Any] = {
            **self._ids,
            "UploadId": self.header.upload_id,
            "MultipartUpload": {
                "Parts": [
                    {"PartNumber": p.part_number, "ETag": p.etag, algorithm.param: p.checksum}
                    for p in parts
                ]
            },
            "ChecksumType": self.header.checksum_type,
            "MpuObjectSize": self.header.file_size,
        }
        if self.header.checksum_type == "FULL_OBJECT":
            params[algorithm.param] = full
        try:
            response = await self._retrying(
                "CompleteMultipartUpload",
                lambda: self.client.complete_multipart_upload(**params),
            )
        except UploadGone:
            # A previous attempt may have completed it and lost the answer.
            if await self.already_completed():
                return str(expected_etag or ""), full
            raise
        returned = response.get(algorithm.param)
        if returned is not None and returned != full:
            raise IntegrityError(
                f"S3 reports checksum {returned} for s3://{self.header.bucket}/{self.header.key}, "
                f"the local file gives {full}: the object may be corrupt",
                hint="delete the object and upload it again",
            )
        await self._check_object(full)
        etag = str(response.get("ETag") or expected_etag or "")
        encrypted = response.get("ServerSideEncryption") == "aws:kms" or (
            "SSECustomerAlgorithm" in response
        )
        if expected_etag and etag != expected_etag and not encrypted:
            # Not an error: S3-compatible servers may compute ETags their own way; the checksum
            # comparison above is the authority.
            log.warning("S3 returned ETag %s; the parts' MD5s give %s", etag, expected_etag)
        return etag, full

    async def _check_object(self, full: str) -> None:
        """HeadObject after completion: size and stored checksum must be ours.

        Needs s3:GetObject; without it the check is skipped with a warning (the parts and
        CompleteMultipartUpload were already verified by S3).
        """
        try:
            head = await self._retrying(
                "HeadObject", lambda: self.client.head_object(**self._ids, ChecksumMode="ENABLED")
            )
        except S3Error as exc:
            log.warning("could not check the completed object (%s); S3 verified every part", exc)
            return
        size = int(head.get("ContentLength", -1))
        stored = head.get(self.algorithm.param)
        if size != self.header.file_size or (stored is not None and stored != full):
            raise IntegrityError(
                f"s3://{self.header.bucket}/{self.header.key} after completion has size {size} "
                f"and checksum {stored}; expected {self.header.file_size} and {full}",
                hint="delete the object and upload it again",
            )

    async def already_completed(self) -> bool:
        """After NoSuchUpload: is the object there, with our size and our parts' ETag/checksum?"""
        if len(self.done) != self.plan.part_count:
            return False
        _, full, expected_etag = self._expected()
        try:
            head = await self._retrying(
                "HeadObject",
                lambda: self.client.head_object(**self._ids, ChecksumMode="ENABLED"),
            )
        except S3Error:
            return False
        if int(head.get("ContentLength", -1)) != self.header.file_size:
            return False
        stored = head.get(self.algorithm.param)
        if stored is not None:
            return bool(stored == full)
        return expected_etag is not None and head.get("ETag") == expected_etag

    async def list_remote_parts(self) -> dict[int, RemotePart]:
        items = await list_all_parts(
            self.client, self._retrying, **self._ids, UploadId=self.header.upload_id
        )
        return {
            int(item["PartNumber"]): RemotePart(
                int(item["PartNumber"]),
                str(item["ETag"]),
                int(item["Size"]),
                item.get(self.algorithm.param),
            )
            for item in items
        }

    async def finish(self, started: float) -> UploadResult:
        etag, full = await self.complete()
        _, _, expected_etag = self._expected()
        await anyio.to_thread.run_sync(
            lambda: self.journal.append_outcome(
                "completed",
                etag=etag,
                expected_etag=expected_etag,
                checksum=full,
                size=self.header.file_size,
                at=_now(),
            )
        )
        return self.result(etag, full, started)

    def result(
        self, etag: str, full: str | None, started: float, already: bool = False
    ) -> UploadResult:
        return UploadResult(
            bucket=self.header.bucket,
            key=self.header.key,
            upload_id=self.header.upload_id,
            size=self.header.file_size,
            part_count=self.plan.part_count,
            etag=etag,
            checksum_algorithm=self.algorithm.name,
            checksum=full,
            bytes_sent=self.bytes_sent,
            elapsed_s=time.monotonic() - started,
            already_completed=already,
        )


def _attach_state_file(exc: PersevereError, state_file: Path) -> None:
    """Mark a failure as happening after the upload exists: the CLI prints how to resume."""
    exc.state_file = str(state_file)


# -- the public operations -------------------------------------------------------------------
async def start_upload(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    *,
    part_size: int | None = None,
    checksum: str = "CRC64NVME",
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    ca_bundle: str | None = None,
    object_options: dict[str, Any] | None = None,
    options: UploadOptions | None = None,
    progress: ProgressSink | None = None,
) -> UploadResult:
    """Create a multipart upload, journal it in ``state_file``, send every part, complete.

    ``object_options`` are extra CreateMultipartUpload parameters (StorageClass, ContentType,
    Metadata, Tagging, ServerSideEncryption, SSEKMSKeyId, ACL, ExpectedBucketOwner), recorded
    in the journal; :func:`persevere.object_options` builds them from CLI-style values.
    """
    options = options or UploadOptions()
    progress = progress or NullProgress()
    options.validate()
    identity, plan, algorithm, state_path = await anyio.to_thread.run_sync(
        _prepare_start, file, bucket, key, state_file, part_size, checksum
    )
    endpoint = Endpoint.from_environment(endpoint_url, region, profile, ca_bundle)
    started = time.monotonic()
    source = SourceFile(identity)
    try:
        journal = await anyio.to_thread.run_sync(Journal.create, state_path)
        try:
            async with open_client(
                endpoint,
                max_connections=options.concurrency + 2,
                connect_timeout_s=options.connect_timeout_s,
                read_timeout_s=options.read_timeout_s,
            ) as client:
                header = await _create(
                    client,
                    bucket,
                    key,
                    identity,
                    plan,
                    algorithm,
                    endpoint,
                    options,
                    journal,
                    object_options or {},
                )
                upload = _Upload(client, journal, header, source, options, progress)
                try:
                    progress.start(identity.size, 0)
                    await upload.upload_parts(list(plan.part_numbers()))
                    return await upload.finish(started)
                except PersevereError as exc:
                    _attach_state_file(exc, state_path)
                    raise
                finally:
                    progress.close()
        finally:
            journal.close()
    finally:
        source.close()


def _prepare_start(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    part_size: int | None,
    checksum: str,
) -> tuple[FileIdentity, PartPlan, ChecksumAlgorithm, Path]:
    """Every check that needs no request: a plan that cannot work is refused here."""
    if not bucket or not key:
        raise UsageError("bucket and key must not be empty")
    try:
        algorithm = get_algorithm(checksum)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    identity = inspect_file(Path(file))
    plan = make_plan(identity.size, part_size)
    state_path = Path(state_file).expanduser().absolute()
    if state_path.resolve() == identity.path:
        raise UsageError("the state file cannot be the file being uploaded")
    return identity, plan, algorithm, state_path


async def _create(
    client: Any,
    bucket: str,
    key: str,
    identity: FileIdentity,
    plan: PartPlan,
    algorithm: ChecksumAlgorithm,
    endpoint: Endpoint,
    options: UploadOptions,
    journal: Journal,
    object_options: dict[str, Any],
) -> Header:
    """CreateMultipartUpload, then the journal header, fsync'd before any part is sent.

    Until the header is written the state file is empty and is removed on any failure.
    """
    checksum_type = "FULL_OBJECT" if algorithm.full_object else "COMPOSITE"
    policy = RetryPolicy(
        max_attempts=options.first_call_attempts,
        base_delay_s=options.retry.base_delay_s,
        max_delay_s=options.retry.max_delay_s,
        clock=options.retry.clock,
        sleep=options.retry.sleep,
        rng=options.retry.rng,
    )

    async def create_once() -> Any:
        # Shielded, so a Ctrl-C does not leave an upload on S3 that no state file knows about;
        # time-boxed, so a Ctrl-C is obeyed within CREATE_SHIELD_S even if S3 never answers.
        with anyio.move_on_after(CREATE_SHIELD_S, shield=True):
            return await _s3(
                "CreateMultipartUpload",
                lambda: client.create_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    ChecksumAlgorithm=algorithm.name,
                    ChecksumType=checksum_type,
                    **object_options,
                ),
            )

        raise TransientError(f"CreateMultipartUpload: no answer in {CREATE_SHIELD_S:.0f}s")

    def unreachable(exc: TransientError, attempts: int) -> PersevereError:
        return S3Error(f"cannot start the upload after {attempts} attempts: {exc}")

    try:
        try:
            response = await call_with_retry(
                policy, "CreateMultipartUpload", create_once, unreachable
            )
        except S3Error as exc:
            if exc.code in _UNSUPPORTED_CODES and algorithm.name not in _CLASSIC_ALGORITHMS:
                raise S3Error(
                    f"checksum algorithm {algorithm.name} is not supported by this endpoint "
                    f"({exc.code})",
                    code=exc.code,
                    hint="use --checksum CRC64NVME (the default), CRC32C, CRC32, SHA256 or SHA1",
                ) from exc
            raise
        header = Header(
            bucket=bucket,
            key=key,
            upload_id=str(response["UploadId"]),
            endpoint_url=endpoint.endpoint_url,
            region=endpoint.region or resolved_region(client),
            profile=endpoint.profile,
            ca_bundle=endpoint.ca_bundle,
            object_options=object_options or None,
            file_path=str(identity.path),
            file_size=identity.size,
            mtime_ns=identity.mtime_ns,
            part_size=plan.part_size,
            checksum_algorithm=algorithm.name,
            checksum_type=checksum_type,
            created_at=_now(),
            tool_version=__version__,
        )
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(journal.write_header, header)
            except OSError as exc:
                # Nothing records this upload: take it back rather than leave it billed.
                await _abort_unrecorded(client, header)
                raise StateFileError(
                    f"cannot write state file {journal.path}: {exc.strerror or exc}",
                    hint="free space or choose another --state-file, then start again",
                ) from exc
    except BaseException:
        journal.discard()
        raise
    log.info("created upload %s for s3://%s/%s", header.upload_id, bucket, key)
    return header


async def _abort(client: Any, header: Header, *, attempts: int = 5) -> None:
    """AbortMultipartUpload of the upload a header describes (S3 frees its parts)."""
    await request(
        "AbortMultipartUpload",
        lambda: client.abort_multipart_upload(
            Bucket=header.bucket,
            Key=header.key,
            UploadId=header.upload_id,
            **per_request(header.object_options),
        ),
        attempts=attempts,
    )


async def _abort_unrecorded(client: Any, header: Header) -> None:
    """Best effort, time-boxed: abort an upload whose header could not be journaled."""
    with anyio.move_on_after(CREATE_SHIELD_S, shield=True) as scope:
        try:
            await _abort(client, header, attempts=3)
            return
        except PersevereError as exc:
            reason = str(exc)
    if scope.cancelled_caught:
        reason = "no answer"
    log.warning(
        "could not abort the unrecorded upload %s (%s): abort it with 'persevere upload abort "
        "--s3-bucket %s --s3-key %s --upload-id %s'",
        header.upload_id,
        reason,
        header.bucket,
        header.key,
        header.upload_id,
    )


async def resume_upload(
    state_file: str | Path,
    *,
    options: UploadOptions | None = None,
    progress: ProgressSink | None = None,
    verify_parts: bool = False,
) -> UploadResult:
    """Continue the upload a state file describes: reconcile with S3, send the rest, complete.

    ``verify_parts`` re-reads the parts the journal says are done and compares them with
    their recorded checksums (a file changed in place with its mtime preserved); parts that
    differ are uploaded again. Without it, resume trusts size and mtime.
    """
    options = options or UploadOptions()
    progress = progress or NullProgress()
    options.validate()
    started = time.monotonic()
    journal, state, identity, state_path = await anyio.to_thread.run_sync(
        _prepare_resume, state_file
    )
    try:
        header = state.header
        plan = PartPlan(header.file_size, header.part_size)
        with SourceFile(identity) as source:
            async with open_client(
                _endpoint_of(header),
                max_connections=options.concurrency + 2,
                connect_timeout_s=options.connect_timeout_s,
                read_timeout_s=options.read_timeout_s,
            ) as client:
                upload = _Upload(client, journal, header, source, options, progress)
                upload.done = dict(state.parts)
                try:
                    return await _resume(upload, plan, started, verify_parts)
                except PersevereError as exc:
                    _attach_state_file(exc, state_path)
                    raise
                finally:
                    progress.close()
    finally:
        journal.close()


def _prepare_resume(state_file: str | Path) -> tuple[Journal, JournalState, FileIdentity, Path]:
    """Lock and replay the journal, and check the file is the one the upload started with."""
    state_path = Path(state_file).expanduser().absolute()
    journal, state = Journal.open(state_path)
    try:
        _refuse_finished(state, state_path)
        identity = _check_source(state.header, state_path)
        _check_parts(state, PartPlan(state.header.file_size, state.header.part_size), state_path)
    except BaseException:
        journal.close()
        raise
    return journal, state, identity, state_path


async def _resume(
    upload: _Upload, plan: PartPlan, started: float, verify_parts: bool
) -> UploadResult:
    header = upload.header
    try:
        remote = await upload.list_remote_parts()
    except UploadGone:
        if await upload.already_completed():
            _, full, etag = upload._expected()
            await anyio.to_thread.run_sync(
                lambda: upload.journal.append_outcome(
                    "completed", etag=etag, checksum=full, size=header.file_size, at=_now()
                )
            )
            return upload.result(str(etag or ""), full, started, already=True)
        raise UploadGone(
            f"multipart upload {header.upload_id} for s3://{header.bucket}/{header.key} no "
            "longer exists on S3 (aborted elsewhere, or expired by a lifecycle rule)",
            code="NoSuchUpload",
            hint="start a new upload with 'persevere upload start' and a new state file",
        ) from None
    plan_result = reconcile(plan, upload.done, remote)
    upload.done = dict(plan_result.kept)
    if plan_result.lost:
        log.warning(
            "%d part(s) in the journal are not on S3; uploading them again", len(plan_result.lost)
        )
    rejected = await upload.adopt(plan_result.adopt)
    if verify_parts:
        rejected += await upload.recheck_done_parts()
    todo = sorted(set(plan_result.missing) | set(rejected))
    done_bytes = sum(p.size for p in upload.done.values())
    upload.progress.start(header.file_size, done_bytes)
    await upload.upload_parts(todo)
    return await upload.finish(started)


def _endpoint_of(header: Header) -> Endpoint:
    return Endpoint(header.endpoint_url, header.region, header.profile, header.ca_bundle)


def _refuse_finished(state: JournalState, state_path: Path) -> None:
    if state.finished == "completed":
        raise UploadFinished(
            f"the upload in {state_path} already completed: "
            f"s3://{state.header.bucket}/{state.header.key} exists",
            hint="nothing to do; use a new state file for a new upload",
        )
    if state.finished == "aborted":
        raise UploadFinished(
            f"the upload in {state_path} was aborted",
            hint="start a new upload with 'persevere upload start' and a new state file",
        )


def _check_source(header: Header, state_path: Path) -> FileIdentity:
    identity = inspect_file(Path(header.file_path))
    if identity.size != header.file_size or identity.mtime_ns != header.mtime_ns:
        what = "size" if identity.size != header.file_size else "modification time"
        raise SourceChanged(
            f"{header.file_path} changed since the upload started ({what} differs): "
            "its parts on S3 may not match it",
            hint=f"abort with 'persevere upload abort --state-file {state_path}' and start again",
        )
    return identity


def _check_parts(state: JournalState, plan: PartPlan, state_path: Path) -> None:
    for number, part in state.parts.items():
        if not 1 <= number <= plan.part_count or part.size != plan.size_of(number):
            raise StateFileError(
                f"{state_path}: part {number} (size {part.size}) does not fit the upload's "
                f"plan of {plan.part_count} parts of {plan.part_size} bytes: corrupt state file"
            )


async def abort_upload(state_file: str | Path) -> Header:
    """Abort the multipart upload a state file describes (S3 frees its parts), and journal it."""
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
        async with open_client(_endpoint_of(header)) as client:
            try:
                await _abort(client, header)
            except UploadGone:
                log.info("upload %s was already gone from S3", header.upload_id)
        await anyio.to_thread.run_sync(lambda: journal.append_outcome("aborted", at=_now()))
        return header
    finally:
        journal.close()


async def upload_status(state_file: str | Path, *, query_s3: bool = True) -> UploadStatus:
    """What the state file knows, and (if the endpoint answers quickly) what ListParts says."""
    state_path = Path(state_file).expanduser().absolute()  # noqa: ASYNC240 - no I/O
    state = await anyio.to_thread.run_sync(read_state, state_path)
    header = state.header
    plan = PartPlan(header.file_size, header.part_size)
    remote: RemoteStatus | None = None
    if query_s3 and state.outcome is None:
        remote = await _remote_status(header)
    return UploadStatus(
        state_file=state_path,
        header=header,
        part_count=plan.part_count,
        parts_done=len(state.parts),
        bytes_done=sum(p.size for p in state.parts.values()),
        outcome=state.outcome,
        remote=remote,
    )


async def _remote_status(header: Header) -> RemoteStatus:
    endpoint = _endpoint_of(header)
    try:
        with anyio.fail_after(15):
            async with open_client(endpoint, connect_timeout_s=5, read_timeout_s=10) as client:
                items = await list_all_parts(
                    client,
                    _s3,
                    Bucket=header.bucket,
                    Key=header.key,
                    UploadId=header.upload_id,
                    **per_request(header.object_options),
                )
                size = sum(int(item["Size"]) for item in items)
                return RemoteStatus(reachable=True, exists=True, parts=len(items), bytes=size)
    except UploadGone:
        return RemoteStatus(reachable=True, exists=False)
    except PersevereError as exc:
        return RemoteStatus(reachable=True, error=str(exc))
    except (TransientError, TimeoutError) as exc:
        return RemoteStatus(reachable=False, error=str(exc) or "timed out")
