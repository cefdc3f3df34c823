"""Every flag of the ``persevere`` command, declared once.

The options, as ``Annotated`` aliases that the commands' parameters take; a variant that only
describes its flag differently (resume's ``--concurrency`` says start's is not remembered) is
derived from the one declaration with its own help (:func:`_help`). The flag groups
(:mod:`._flag_groups`) turn the flags several commands share into one core value each (the
upload options, an ``Endpoint``, the object's parameters; start's and cp's ``SendFlags``, with
the others, a new upload's :class:`._request.Request`). The URL arguments: ``FILE
s3://BUCKET/KEY`` or the original tool's long flags.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from . import _errors
from ._checksums import AlgorithmName
from ._cli_run import _note_json, _reported, _usage_error
from ._object_options import CannedAcl, LegalHold, ObjectLockMode, SseMode, StorageClass
from ._options import MAX_CONCURRENCY, MAX_PROCESSES
from ._units import parse_duration, parse_size

T = TypeVar("T")

log = logging.getLogger("persevere")


# -- value parsers: click reports a bad value as "Invalid value for '--flag': ..." -----------
def _parser(parse: Callable[[str], T]) -> Callable[[str], T]:
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return convert


def _part_size(text: str) -> int | None:
    return None if text.strip().lower() == "auto" else parse_size(text)


# What ``--processes auto`` parses to: each command resolves it, knowing what it can split
# (:func:`._processes.auto_processes`); never a count (they are 1..MAX_PROCESSES).
PROCESSES_AUTO = -1


def _processes(text: str) -> int:
    """``--processes``: a count, as click's IntRange took it (its words), or 'auto'."""
    if text.strip().lower() == "auto":
        return PROCESSES_AUTO
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid integer or 'auto'.") from None
    if not 1 <= count <= MAX_PROCESSES:
        raise ValueError(f"{count} is not in the range 1<=x<={MAX_PROCESSES} or 'auto'.")
    return count


def _auto_processes(pieces: int) -> int | None:
    """``--processes auto`` for what can be shared out as ``pieces`` (a file's parts, the
    shards an upload was made for, a tree's files): :func:`._processes.auto_processes`, said
    with ``-v``; None for one: the usual run, in this process."""
    from ._processes import auto_processes, usable_cores

    count = auto_processes(pieces)
    log.info("--processes auto: %d process(es), %d usable core(s)", count, usable_cores())
    return count if count > 1 else None


def _rate(text: str) -> float:
    from ._bandwidth import parse_rate

    return parse_rate(text)


def _help(option: Any, help: str) -> Any:
    """The ``typer.Option`` of ``option`` (an ``...Opt`` alias) with another help: a command
    that describes a flag in its own words takes the flag itself (names, range, parser,
    environment variable) from its one declaration."""
    info = copy.copy(typing.get_args(option)[1])
    info.help = help
    return info


PartSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--part-size",
        parser=_parser(_part_size),
        metavar="SIZE",
        envvar="PERSEVERE_PART_SIZE",
        help="Part size: 'auto' or 5MiB..5GiB, e.g. 64MiB (K/M/G and KiB/MiB/GiB are binary, "
        "KB/MB/GB decimal: 8MB is 8,000,000 bytes), or bytes.",
    ),
]
MaxPartsOpt = Annotated[
    int,
    typer.Option(
        "--max-parts",
        min=1,
        max=10_000,
        metavar="N",
        envvar="PERSEVERE_MAX_PARTS",
        help="The endpoint's part limit, if below S3's 10,000 (Scaleway: 1000): the automatic "
        "part size keeps the file within it, and a plan that exceeds it is refused.",
    ),
]
StateFileOpt = Annotated[
    Path, typer.Option("--state-file", help="The journal of this upload (JSONL).")
]
ConcurrencyOpt = Annotated[
    int,
    typer.Option(
        "--concurrency",
        "-c",
        min=1,
        max=MAX_CONCURRENCY,
        help="Parts in flight at once.",
        envvar="PERSEVERE_CONCURRENCY",
    ),
]
NoProgressOpt = Annotated[
    bool, typer.Option("--no-progress", help="No progress bar or progress lines.")
]
MaxRetriesOpt = Annotated[
    int,
    typer.Option(
        "--max-retries",
        min=0,
        envvar="PERSEVERE_MAX_RETRIES",
        help="Retries per part (and per request) after a transient failure.",
    ),
]
RetryForOpt = Annotated[
    float | None,
    typer.Option(
        "--retry-for",
        parser=_parser(parse_duration),
        metavar="DURATION",
        envvar="PERSEVERE_RETRY_FOR",
        show_default=False,
        help="Keep retrying a failing request for this long instead (e.g. 30m, 2h).",
    ),
]
StallOpt = Annotated[
    float,
    typer.Option(
        "--stall-timeout",
        min=1,
        envvar="PERSEVERE_STALL_TIMEOUT",
        help="Seconds without progress before a part's connection is cut and retried.",
    ),
]
CaBundleOpt = Annotated[
    str | None,
    typer.Option(
        "--ca-bundle",
        help="CA certificates (PEM) to verify the endpoint's TLS with "
        "(default: AWS_CA_BUNDLE, the profile's ca_bundle, or the system's).",
    ),
]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        help="S3 endpoint (default: AWS, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL).",
    ),
]
NoVerifySslOpt = Annotated[
    bool,
    typer.Option(
        "--no-verify-ssl",
        help="Do not verify the endpoint's TLS certificate (INSECURE: anyone on the path can "
        "read and alter the traffic; prefer --ca-bundle). Never recorded: give it to every "
        "command.",
    ),
]
RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region.")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="AWS profile.")]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        callback=_note_json,
        help="Print one JSON document on stdout (for scripts), errors included.",
    ),
]
BandwidthOpt = Annotated[
    float | None,
    typer.Option(
        "--max-bandwidth",
        parser=_parser(_rate),
        metavar="RATE",
        envvar="PERSEVERE_MAX_BANDWIDTH",
        show_default=False,
        help="Cap on the upload rate, shared by all parts, e.g. 100MiB/s (binary) or 50MB/s "
        "(decimal).",
    ),
]
# resume does not remember these from start (the state file records what the object is, not
# how fast it went): their help says so.
ResumeConcurrencyOpt = Annotated[
    int,
    _help(ConcurrencyOpt, "Parts in flight at once (not remembered from start: give it again)."),
]
ResumeBandwidthOpt = Annotated[
    float | None,
    _help(
        BandwidthOpt,
        "Cap on the upload rate (e.g. 50MB/s). Not remembered from start: give it again, or "
        "none applies.",
    ),
]
DurationOpt = Annotated[
    float | None,
    typer.Option(
        "--older-than",
        parser=_parser(functools.partial(parse_duration, unit_required=True)),
        metavar="DURATION",
        help="Only uploads started longer ago: a number and its unit (s, m, h, d), e.g. 7d, 12h.",
    ),
]


ExpectedSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--expected-size",
        parser=_parser(parse_size),
        metavar="SIZE",
        help="FILE is '-' (a stream): its length, if known. Parts are planned for it, and a "
        "stream that ends earlier is an error (a producer that failed). Without it, parts "
        "grow along a fixed schedule (up to 7.8 TiB). With a file, it must be the file's "
        "size.",
    ),
]
ProcessesOpt = Annotated[
    int | None,
    typer.Option(
        "--processes",
        parser=_parser(_processes),
        metavar="N|auto",
        help="Split the upload into N shards (1..64), each a process of its own (an event "
        "loop and a core each), then complete. 'auto': one per usable core, no more than the "
        "file has parts; one core, a stream or a single part: the usual single process. It "
        "pays only when this process is the limit (CPU-bound), not the server or the link: "
        "cores the server shares are not idle ones.",
    ),
]
VerifyPartsOpt = Annotated[
    bool,
    typer.Option(
        "--verify-parts",
        help="Re-read the parts already uploaded and compare their checksums even when the "
        "file's identity (size, times, inode) is unchanged; changed parts are sent again.",
    ),
]
ChecksumOpt = Annotated[
    AlgorithmName | None,
    typer.Option(
        "--checksum",
        "--checksum-algorithm",
        case_sensitive=False,
        envvar="PERSEVERE_CHECKSUM",
        show_default=False,
        help="Per-part checksum S3 verifies: CRC64NVME, CRC32C, CRC32 (full-object); SHA256, "
        "SHA1 (composite); SHA512, XXHASH64, XXHASH3, XXHASH128 where the endpoint supports "
        "them; MD5: Content-MD5 per part, checked against the ETag (endpoints without flexible "
        "checksums). Default: CRC64NVME, falling back to MD5 (one warning) when the endpoint "
        "does not confirm it; a chosen algorithm is never replaced: unconfirmed, the upload "
        "stops.",
    ),
]
StorageClassOpt = Annotated[
    StorageClass | None,
    typer.Option("--storage-class", case_sensitive=False, help="Storage class."),
]
ContentTypeOpt = Annotated[
    str | None,
    typer.Option(
        "--content-type",
        help="Default: guessed from the file name (a compressed file, e.g. .gz, gets its "
        "compressed type, application/gzip).",
    ),
]
ContentEncodingOpt = Annotated[
    str | None,
    typer.Option(
        "--content-encoding",
        help="Stored as the object's Content-Encoding; none unless given (with 'gzip', "
        "browsers and HTTP libraries hand back decompressed bytes).",
    ),
]
MetadataOpt = Annotated[
    list[str] | None, typer.Option("--metadata", help="key=value (repeatable).")
]
TaggingOpt = Annotated[
    list[str] | None, typer.Option("--tagging", help="key=value (repeatable, or k=v&k2=v2).")
]
SseOpt = Annotated[
    SseMode | None, typer.Option("--sse", case_sensitive=False, help="Server-side encryption.")
]
SseKeyOpt = Annotated[
    str | None, typer.Option("--sse-kms-key-id", help="KMS key for --sse aws:kms.")
]
AclOpt = Annotated[
    CannedAcl | None, typer.Option("--acl", case_sensitive=False, help="Canned ACL.")
]
OwnerOpt = Annotated[
    str | None,
    typer.Option("--expected-bucket-owner", help="Refuse a bucket of another account."),
]
LockModeOpt = Annotated[
    ObjectLockMode | None,
    typer.Option(
        "--object-lock-mode",
        case_sensitive=False,
        help="Object lock retention mode (with --object-lock-retain-until); the bucket must "
        "have object lock enabled.",
    ),
]
LockUntilOpt = Annotated[
    str | None,
    typer.Option(
        "--object-lock-retain-until",
        metavar="DATE",
        help="Retain the object until this ISO 8601 date or date and time (2030-01-31, "
        "2030-01-31T12:00:00Z; UTC unless an offset is given).",
    ),
]
LegalHoldOpt = Annotated[
    LegalHold | None,
    typer.Option("--object-lock-legal-hold", case_sensitive=False, help="Legal hold: ON or OFF."),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the plan, the state file, the endpoint and whether S3 would accept the "
        "upload (a CreateMultipartUpload aborted at once; for an upload cp would resume, its "
        "ListParts), with no part sent and no state file written; then exit 0, or fail as "
        "the run would.",
    ),
]
NoOverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--no-overwrite",
        help="Write-once: never replace an existing object. Checked before anything is sent "
        "(HeadObject), and the completion is conditional (If-None-Match: *, where the endpoint "
        "honours it); if the key exists, the upload is aborted and the object left untouched "
        "(exit 1). Recorded: resume honours it.",
    ),
]
RequestPayerOpt = Annotated[
    Literal["requester"] | None,
    typer.Option(
        "--request-payer",
        help="'requester': a requester-pays bucket; this account pays for the requests "
        "(sent on every request of the upload, recorded for resume).",
    ),
]
ListRequestPayerOpt = Annotated[
    Literal["requester"] | None,
    _help(
        RequestPayerOpt,
        "'requester': a requester-pays bucket; this account pays for the requests (sent on "
        "each of them).",
    ),
]
KeyRequestPayerOpt = Annotated[  # abort and status: a state file's upload has it recorded
    Literal["requester"] | None,
    _help(
        RequestPayerOpt,
        "'requester': a requester-pays bucket; this account pays for the requests (with "
        "s3://BUCKET/KEY; with --state-file, what the state file recorded applies).",
    ),
]


def _warn_insecure() -> None:
    log.warning(
        "WARNING: --no-verify-ssl: the endpoint's TLS certificate is NOT verified; anyone on "
        "the network path can read and alter this traffic (use --ca-bundle instead)"
    )


# -- flag groups: each flag declared once, turned into a core value by its group -------------
@dataclasses.dataclass(frozen=True)
class TransferFlags:
    """How fast and how patiently: the upload options (not recorded in the state file)."""

    concurrency: ConcurrencyOpt = 8
    max_bandwidth: BandwidthOpt = None
    max_retries: MaxRetriesOpt = 9
    retry_for: RetryForOpt = None
    stall_timeout: StallOpt = 60.0

    def options(self) -> Any:
        from ._options import UploadOptions
        from ._retry import RetryPolicy

        if self.retry_for is not None:  # the patience decides
            retry = RetryPolicy(max_attempts=None, patience_s=self.retry_for)
        else:
            retry = RetryPolicy(max_attempts=self.max_retries + 1)
        return UploadOptions(
            concurrency=self.concurrency,
            retry=retry,
            stall_timeout_s=self.stall_timeout,
            max_bandwidth_bytes_s=self.max_bandwidth,
        )


@dataclasses.dataclass(frozen=True)
class ResumeTransferFlags(TransferFlags):
    """resume's: the same flags, whose help says that start's are not remembered."""

    concurrency: ResumeConcurrencyOpt = 8
    max_bandwidth: ResumeBandwidthOpt = None


@dataclasses.dataclass(frozen=True)
class EndpointFlags:
    """Where and as whom: the commands that are given the endpoint (not a state file)."""

    endpoint_url: EndpointOpt = None
    region: RegionOpt = None
    profile: ProfileOpt = None
    ca_bundle: CaBundleOpt = None
    no_verify_ssl: NoVerifySslOpt = False

    @property
    def given(self) -> bool:
        return any(getattr(self, field.name) for field in dataclasses.fields(self))

    def endpoint(self) -> Any:
        from ._s3 import Endpoint

        where = (self.endpoint_url, self.region, self.profile, self.ca_bundle)
        endpoint = _reported(Endpoint.from_environment, *where, verify_ssl=not self.no_verify_ssl)
        if self.no_verify_ssl:
            _warn_insecure()
        return endpoint

    def overrides(self) -> Any:
        """What the flags given change about the endpoint a state file recorded (resume,
        shard, and status and abort by state file): each one replaces its field; the
        environment is not read, the recorded endpoint being the upload's."""
        from ._s3 import Endpoint

        ca_bundle = self.ca_bundle
        if ca_bundle is not None or self.no_verify_ssl:
            # checked (absolute, exists, not with --no-verify-ssl); the warning said once
            given = EndpointFlags(ca_bundle=ca_bundle, no_verify_ssl=self.no_verify_ssl)
            ca_bundle = given.endpoint().ca_bundle
        where = (self.endpoint_url, self.region, self.profile, ca_bundle)
        return _reported(Endpoint, *where, not self.no_verify_ssl)  # the URL checked as made


@dataclasses.dataclass(frozen=True)
class OverrideFlags:
    """What resume and shard change about the endpoint their state file records."""

    endpoint_url: EndpointOpt = None
    profile: ProfileOpt = None
    ca_bundle: CaBundleOpt = None
    no_verify_ssl: NoVerifySslOpt = False

    def endpoint(self) -> Any:
        given = (self.endpoint_url, None, self.profile, self.ca_bundle, self.no_verify_ssl)
        return EndpointFlags(*given).overrides()


@dataclasses.dataclass(frozen=True)
class ObjectFlags:
    """What the object is (type, metadata, encryption, lock): CreateMultipartUpload's."""

    storage_class: StorageClassOpt = None
    content_type: ContentTypeOpt = None
    content_encoding: ContentEncodingOpt = None
    metadata: MetadataOpt = None
    tagging: TaggingOpt = None
    sse: SseOpt = None
    sse_kms_key_id: SseKeyOpt = None
    acl: AclOpt = None
    expected_bucket_owner: OwnerOpt = None
    request_payer: RequestPayerOpt = None
    object_lock_mode: LockModeOpt = None
    object_lock_retain_until: LockUntilOpt = None
    object_lock_legal_hold: LegalHoldOpt = None

    def parameters(self, file: Path) -> dict[str, Any]:
        from ._object_options import build_object_options

        values = dataclasses.asdict(self)
        values.update(metadata=self.metadata or (), tagging=self.tagging or ())
        return _reported(build_object_options, file, **values)


@dataclasses.dataclass(frozen=True)
class SendFlags:
    """How a new upload is cut and checked (start and cp): with the destination, the source
    and the other groups' values, one :class:`._request.Request`."""

    part_size: PartSizeOpt = None
    max_parts: MaxPartsOpt = 10_000
    checksum: ChecksumOpt = None
    no_overwrite: NoOverwriteOpt = False
    expected_size: ExpectedSizeOpt = None

    def request(
        self,
        source: Any,
        bucket: str,
        key: str,
        state_file: Path,
        transfer: Any,
        endpoint: Any,
        object_flags: ObjectFlags,
        shards: int | None = None,
        dry_run: bool = False,
    ) -> Any:
        """The Request of these flags, checked as far as it can be before anything is read
        or sent: a stream's refusals as a usage error naming the flag, the rest as the core
        says them."""
        from ._request import Request

        options = object_flags.parameters(source.path)
        request = Request(state_file, source, bucket, key, self.part_size, self.max_parts,
                          self.expected_size, self.checksum, options, self.no_overwrite,
                          endpoint, transfer.options(), shards=shards)  # fmt: skip
        try:
            request.refuse_for_stream(dry_run=dry_run)
        except _errors.UsageError as exc:
            _usage_error(exc.message, _STREAM_FLAGS[exc.param or ""])
        _reported(request.check)
        return request


_STREAM_FLAGS = {"part_size": "--part-size", "max_parts": "--max-parts", "shards": "FILE",
                 "dry_run": "--dry-run"}  # fmt: skip


# -- URL arguments: FILE s3://BUCKET/KEY, or the original tool's long flags -----------------
FileArg = Annotated[Path | None, typer.Argument(metavar="[FILE]", show_default=False)]
BucketUrlArg = Annotated[
    str | None, typer.Argument(metavar="[s3://BUCKET[/PREFIX]]", show_default=False)
]
ObjectUrlArg = Annotated[
    str | None, typer.Argument(metavar="[s3://BUCKET/KEY]", show_default=False)
]


def _target(
    file: Path | None, url: str | None, bucket: str | None, key: str | None, flag: str
) -> tuple[Path, str, str]:
    """FILE s3://BUCKET/KEY, or the long flags (the original tool's).

    A URL ending in ``/`` takes the file's name (s3://b/backups/ + db.dump); stdin (``-``) has
    no name, so it needs the whole key.
    """
    from ._request import names_stdin
    from ._urls import parse_s3_url

    if url is not None and (bucket or key):
        _usage_error(f"give {url} or --s3-bucket and --s3-key, not both")
    if url is not None:
        if url.startswith("s3://") and url.endswith("/") and names_stdin(file):
            _usage_error(
                f"{url} names a prefix, to which the file's name is appended, but stdin (-) "
                "has no name: give the whole key (s3://BUCKET/KEY)"
            )
        try:
            bucket, key = parse_s3_url(url, file.name if file is not None else None)
        except _errors.UsageError as exc:
            _usage_error(str(exc))
    if file is None or not bucket or not key:
        _usage_error(f"give FILE s3://BUCKET/KEY, or {flag}, --s3-bucket and --s3-key")
    return file, *_utf8(bucket, key)


def _object_url(url: str | None, bucket: str | None, key: str | None) -> tuple[str, str] | None:
    """s3://BUCKET/KEY, or --s3-bucket and --s3-key (not both ways); None if neither."""
    from ._urls import parse_s3_url

    if url is None:
        return _utf8(bucket, key) if bucket and key else None
    if bucket or key:
        _usage_error(f"give {url} or --s3-bucket/--s3-key, not both")
    try:
        return parse_s3_url(url)
    except _errors.UsageError as exc:
        _usage_error(str(exc))


def _utf8(bucket: str, key: str, what: str = "key") -> tuple[str, str]:
    """The long flags' names, refused if not UTF-8 as the URLs' are."""
    from ._urls import require_utf8

    try:
        require_utf8(bucket, key, what)
    except _errors.UsageError as exc:
        _usage_error(str(exc))
    return bucket, key


def _bucket_url(url: str | None, bucket: str | None, prefix: str | None) -> tuple[str, str]:
    """s3://BUCKET[/PREFIX], or --s3-bucket (and --prefix)."""
    from ._urls import parse_bucket_url

    if url is None:
        if not bucket:
            _usage_error("give s3://BUCKET[/PREFIX] (or --s3-bucket)")
        return _utf8(bucket, prefix or "", "prefix")
    if bucket or prefix:
        _usage_error(f"give {url} or --s3-bucket/--prefix, not both")
    try:
        return parse_bucket_url(url)
    except _errors.UsageError as exc:
        _usage_error(str(exc))
