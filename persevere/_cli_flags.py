"""Every flag of the ``persevere`` command, declared once.

The flag groups (:mod:`._flag_groups`) declare the flags only they take, as their fields, and
turn them into one core value each: the upload options, an ``Endpoint``, the object's
parameters; start's and cp's ``SendFlags`` (holding the others) a new upload's
:class:`._request.Request`, resume's and shard's ``ContinueFlags`` the one their state file
records. The flags several groups or commands take are ``Annotated`` aliases; a variant that
only describes its flag differently (resume's ``--concurrency`` says start's is not
remembered) is derived from the one declaration with its own help (:func:`_help`). Each flag
is one statement, laid out by hand: its names and checks, then its help. The URL arguments:
``FILE s3://BUCKET/KEY`` or the original tool's long flags.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
import shlex
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from . import _errors
from ._bandwidth import parse_rate
from ._checksums import AlgorithmName
from ._cli_run import _note_json, _reported, _usage_error
from ._object_options import CannedAcl, LegalHold, ObjectLockMode, SseMode, StorageClass
from ._options import MAX_CONCURRENCY, MAX_PROCESSES, UploadOptions
from ._retry import RetryPolicy
from ._units import parse_duration, parse_size
from ._urls import parse_bucket_url, parse_s3_url, require_typed, require_utf8

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


def _help(option: Any, help: str) -> Any:
    """The ``typer.Option`` of ``option`` (an ``...Opt`` alias) with another help: a command
    that describes a flag in its own words takes the flag itself (names, range, parser,
    environment variable) from its one declaration."""
    info = copy.copy(typing.get_args(option)[1])
    info.help = help
    return info


# fmt: off
MaxPartsOpt = Annotated[int, typer.Option(
    "--max-parts", min=1, max=10_000, metavar="N", envvar="PERSEVERE_MAX_PARTS",
    help="The endpoint's part limit, if below S3's 10,000 (Scaleway: 1000): the automatic part "
    "size keeps the file within it, and a plan that exceeds it is refused.")]
StateFileOpt = Annotated[Path, typer.Option(
    "--state-file", help="The journal of this upload (JSONL).")]
ConcurrencyOpt = Annotated[int, typer.Option(
    "--concurrency", "-c", min=1, max=MAX_CONCURRENCY, envvar="PERSEVERE_CONCURRENCY",
    help="Parts in flight at once.")]
NoProgressOpt = Annotated[bool, typer.Option(
    "--no-progress", help="No progress bar or progress lines.")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", callback=_note_json,
    help="Print one JSON document on stdout (for scripts), errors included.")]
BandwidthOpt = Annotated[float | None, typer.Option(
    "--max-bandwidth", parser=_parser(parse_rate), metavar="RATE", envvar="PERSEVERE_MAX_BANDWIDTH",
    show_default=False,
    help="Cap on the upload rate, shared by all parts, e.g. 100MiB/s (binary) or 50MB/s "
    "(decimal).")]
DurationOpt = Annotated[float | None, typer.Option(
    "--older-than", parser=_parser(functools.partial(parse_duration, unit_required=True)),
    metavar="DURATION",
    help="Only uploads started longer ago: a number and its unit (s, m, h, d), e.g. 7d, 12h.")]
ProcessesOpt = Annotated[int | None, typer.Option(
    "--processes", parser=_parser(_processes), metavar="N|auto",
    help="Split the upload into N shards (1..64), each a process of its own (an event loop and a "
    "core each), then complete. 'auto': one per usable core, no more than the file has parts; one "
    "core, a stream or a single part: the usual single process. It pays only when this process is "
    "the limit (CPU-bound), not the server or the link: cores the server shares are not idle "
    "ones.")]
RequestPayerOpt = Annotated[Literal["requester"] | None, typer.Option(
    "--request-payer",
    help="'requester': a requester-pays bucket; this account pays for the requests (sent on every "
    "request of the upload, recorded for resume).")]
# fmt: on


# -- flag groups: each flag declared once, turned into a core value by its group -------------
@dataclasses.dataclass(frozen=True)
class TransferFlags:
    """How fast and how patiently: the upload options (not recorded in the state file)."""

    # fmt: off
    concurrency: ConcurrencyOpt = 8
    max_bandwidth: BandwidthOpt = None
    max_retries: Annotated[int, typer.Option(
        "--max-retries", min=0, envvar="PERSEVERE_MAX_RETRIES",
        help="Retries per part (and per request) after a transient failure.")] = 9
    retry_for: Annotated[float | None, typer.Option(
        "--retry-for", parser=_parser(parse_duration), metavar="DURATION",
        envvar="PERSEVERE_RETRY_FOR", show_default=False,
        help="Keep retrying a failing request for this long instead (e.g. 30m, 2h).")] = None
    stall_timeout: Annotated[float, typer.Option(
        "--stall-timeout", min=1, envvar="PERSEVERE_STALL_TIMEOUT",
        help="Seconds without progress before a part's connection is cut and retried.")] = 60.0
    # fmt: on

    def options(self) -> Any:
        # --retry-for: the patience decides, not a count
        attempts = self.max_retries + 1 if self.retry_for is None else None
        return UploadOptions(
            concurrency=self.concurrency,
            retry=RetryPolicy(max_attempts=attempts, patience_s=self.retry_for),
            stall_timeout_s=self.stall_timeout,
            max_bandwidth_bytes_s=self.max_bandwidth,
        )


@dataclasses.dataclass(frozen=True)
class ResumeTransferFlags(TransferFlags):
    """resume's: the same flags, whose help says that start's are not remembered (the state
    file records what the object is, not how fast it went)."""

    # fmt: off
    concurrency: Annotated[int, _help(
        ConcurrencyOpt, "Parts in flight at once (not remembered from start: give it again).")] = 8
    max_bandwidth: Annotated[float | None, _help(
        BandwidthOpt,
        "Cap on the upload rate (e.g. 50MB/s). Not remembered from start: give it again, or none "
        "applies.")] = None
    # fmt: on


@dataclasses.dataclass(frozen=True)
class EndpointFlags:
    """Where and as whom: the commands that are given the endpoint (not a state file)."""

    # fmt: off
    endpoint_url: Annotated[str | None, typer.Option(
        "--endpoint-url",
        help="S3 endpoint (default: AWS, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL).")] = None
    region: Annotated[str | None, typer.Option("--region", help="AWS region.")] = None
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile.")] = None
    ca_bundle: Annotated[str | None, typer.Option(
        "--ca-bundle",
        help="CA certificates (PEM) to verify the endpoint's TLS with (default: AWS_CA_BUNDLE, "
        "the profile's ca_bundle, or the system's).")] = None
    no_verify_ssl: Annotated[bool, typer.Option(
        "--no-verify-ssl",
        help="Do not verify the endpoint's TLS certificate (INSECURE: anyone on the path can read "
        "and alter the traffic; prefer --ca-bundle). Never recorded: give it to every "
        "command.")] = False
    # fmt: on

    @property
    def given(self) -> bool:
        return any(getattr(self, field.name) for field in dataclasses.fields(self))

    def endpoint(self) -> Any:
        from ._s3 import Endpoint

        where = (self.endpoint_url, self.region, self.profile, self.ca_bundle)
        endpoint = _reported(Endpoint.from_environment, *where, verify_ssl=not self.no_verify_ssl)
        if self.no_verify_ssl:
            log.warning(
                "WARNING: --no-verify-ssl: the endpoint's TLS certificate is NOT verified; anyone "
                "on the network path can read and alter this traffic (use --ca-bundle instead)"
            )
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
class PayerFlags:
    """Where, as whom and who pays: the bucket tools' (a key's uploads; by state file, what
    it recorded applies)."""

    # fmt: off
    endpoint_flags: EndpointFlags = EndpointFlags()
    request_payer: Annotated[Literal["requester"] | None, _help(
        RequestPayerOpt, "'requester': a requester-pays bucket; this account pays for the "
        "requests (with s3://BUCKET/KEY; with --state-file, what the state file recorded "
        "applies).")] = None
    # fmt: on

    def where(self, bucket: str) -> Any:
        from ._orphans import Where

        return Where(bucket, self.endpoint_flags.endpoint(), self.request_payer)


@dataclasses.dataclass(frozen=True)
class ListPayerFlags(PayerFlags):
    """upload list's: the same flags, described for a listing."""

    # fmt: off
    request_payer: Annotated[Literal["requester"] | None, _help(
        RequestPayerOpt, "'requester': a requester-pays bucket; this account pays for the "
        "requests (sent on each of them).")] = None
    # fmt: on


@dataclasses.dataclass(frozen=True)
class OverrideFlags(EndpointFlags):
    """What resume and shard change about the endpoint their state file records: the
    endpoint's flags but --region (the recorded one applies)."""

    region: str | None = dataclasses.field(default=None, init=False)

    endpoint = EndpointFlags.overrides


@dataclasses.dataclass(frozen=True)
class ContinueFlags:
    """The flags of an upload its state file records (shard's; resume's below): how fast,
    what to show, where the file and the endpoint are now."""

    # fmt: off
    transfer: TransferFlags = TransferFlags()
    no_progress: NoProgressOpt = False
    json_output: JsonOpt = False
    verify_parts: Annotated[bool, typer.Option(
        "--verify-parts",
        help="Re-read the parts already uploaded and compare their checksums even when the file's "
        "identity (size, times, inode) is unchanged; changed parts are sent again.")] = False
    file: Annotated[Path | None, typer.Option(
        "--file", help="The file is at this path on this host.")] = None
    endpoint_flags: OverrideFlags = OverrideFlags()
    # fmt: on

    def resumed_by(self, state_file: Path, *command: str) -> str:
        """``persevere upload resume`` (or ``command``) of ``state_file`` with the flags of
        these that the next run needs as much as this one did: where the file is now, and the
        endpoint's overrides (the state file records neither)."""
        words = ["persevere", *(command or ("upload", "resume")), "--state-file",
                 os.path.abspath(state_file)]  # fmt: skip
        where = self.endpoint_flags
        for flag, value in (("--file", self.file and os.path.abspath(self.file)),
                            ("--endpoint-url", where.endpoint_url), ("--profile", where.profile),
                            ("--ca-bundle", where.ca_bundle and os.path.abspath(where.ca_bundle))
                            ):  # fmt: skip
            words += [flag, str(value)] if value else []
        words += ["--no-verify-ssl"] if where.no_verify_ssl else []
        return " ".join(shlex.quote(word) for word in words)

    def request(self, state_file: Path) -> Any:
        """The Request the state file records, with what these flags change."""
        from ._request import Request

        return Request.resumed(state_file, self.file, self.transfer.options(),
                               verify_parts=self.verify_parts,
                               endpoint=self.endpoint_flags.endpoint())  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ResumeFlags(ContinueFlags):
    """resume's: the same flags, described for resume."""

    # fmt: off
    transfer: ResumeTransferFlags = ResumeTransferFlags()
    file: Annotated[Path | None, typer.Option(
        "--file", help="The file is here now (moved, or another machine); its uploaded parts "
        "are re-read.")] = None
    # fmt: on


@dataclasses.dataclass(frozen=True)
class ObjectFlags:
    """What the object is (type, metadata, encryption, lock): CreateMultipartUpload's."""

    # fmt: off
    storage_class: Annotated[StorageClass | None, typer.Option(
        "--storage-class", case_sensitive=False, help="Storage class.")] = None
    content_type: Annotated[str | None, typer.Option(
        "--content-type",
        help="Default: guessed from the file name (a compressed file, e.g. .gz, gets its "
        "compressed type, application/gzip).")] = None
    content_encoding: Annotated[str | None, typer.Option(
        "--content-encoding",
        help="Stored as the object's Content-Encoding; none unless given (with 'gzip', browsers "
        "and HTTP libraries hand back decompressed bytes).")] = None
    metadata: Annotated[list[str] | None, typer.Option(
        "--metadata", help="key=value (repeatable).")] = None
    tagging: Annotated[list[str] | None, typer.Option(
        "--tagging", help="key=value (repeatable, or k=v&k2=v2).")] = None
    sse: Annotated[SseMode | None, typer.Option(
        "--sse", case_sensitive=False, help="Server-side encryption.")] = None
    sse_kms_key_id: Annotated[str | None, typer.Option(
        "--sse-kms-key-id", help="KMS key for --sse aws:kms.")] = None
    acl: Annotated[CannedAcl | None, typer.Option(
        "--acl", case_sensitive=False, help="Canned ACL.")] = None
    expected_bucket_owner: Annotated[str | None, typer.Option(
        "--expected-bucket-owner", help="Refuse a bucket of another account.")] = None
    request_payer: RequestPayerOpt = None
    object_lock_mode: Annotated[ObjectLockMode | None, typer.Option(
        "--object-lock-mode", case_sensitive=False,
        help="Object lock retention mode (with --object-lock-retain-until); the bucket must have "
        "object lock enabled.")] = None
    object_lock_retain_until: Annotated[str | None, typer.Option(
        "--object-lock-retain-until", metavar="DATE",
        help="Retain the object until this ISO 8601 date or date and time (2030-01-31, "
        "2030-01-31T12:00:00Z; UTC unless an offset is given).")] = None
    object_lock_legal_hold: Annotated[LegalHold | None, typer.Option(
        "--object-lock-legal-hold", case_sensitive=False, help="Legal hold: ON or OFF.")] = None
    # fmt: on

    def parameters(self, file: Path) -> dict[str, Any]:
        from ._object_options import build_object_options

        values = dataclasses.asdict(self)
        values.update(metadata=self.metadata or (), tagging=self.tagging or ())
        return _reported(build_object_options, file, **values)


@dataclasses.dataclass(frozen=True)
class SendFlags:
    """A new upload's flags (start's and cp's, but the source, the destination and the state
    file): how it is sent, cut, checked, where to and what the object is; with the others,
    one :class:`._request.Request`."""

    # fmt: off
    transfer: TransferFlags = TransferFlags()
    part_size: Annotated[int | None, typer.Option(
        "--part-size", parser=_parser(_part_size), metavar="SIZE", envvar="PERSEVERE_PART_SIZE",
        help="Part size: 'auto' or 5MiB..5GiB, e.g. 64MiB (K/M/G and KiB/MiB/GiB are binary, "
        "KB/MB/GB decimal: 8MB is 8,000,000 bytes), or bytes.")] = None
    max_parts: MaxPartsOpt = 10_000
    checksum: Annotated[AlgorithmName | None, typer.Option(
        "--checksum", "--checksum-algorithm", case_sensitive=False, envvar="PERSEVERE_CHECKSUM",
        show_default=False,
        help="Per-part checksum S3 verifies: CRC64NVME, CRC32C, CRC32 (full-object); SHA256, SHA1 "
        "(composite); SHA512, XXHASH64, XXHASH3, XXHASH128 where the endpoint supports them; MD5: "
        "Content-MD5 per part, checked against the ETag (endpoints without flexible checksums). "
        "Default: CRC64NVME, falling back to MD5 (one warning) when the endpoint does not confirm "
        "it; a chosen algorithm is never replaced: unconfirmed, the upload stops.")] = None
    no_overwrite: Annotated[bool, typer.Option(
        "--no-overwrite",
        help="Write-once: never replace an existing object. Checked before anything is sent "
        "(HeadObject), and the completion is conditional (If-None-Match: *, where the endpoint "
        "honours it); if the key exists, the upload is aborted and the object left untouched "
        "(exit 1). Recorded: resume honours it.")] = False
    expected_size: Annotated[int | None, typer.Option(
        "--expected-size", parser=_parser(parse_size), metavar="SIZE",
        help="FILE is '-' (a stream): its length, if known. Parts are planned for it, and a "
        "stream that ends earlier is an error (a producer that failed). Without it, parts grow "
        "along a fixed schedule (up to 7.8 TiB). With a file, it must be the file's size.")] = None
    endpoint_flags: EndpointFlags = EndpointFlags()
    object_flags: ObjectFlags = ObjectFlags()
    dry_run: Annotated[bool, typer.Option(
        "--dry-run",
        help="Print the plan, the state file, the endpoint and whether S3 would accept the upload "
        "(a CreateMultipartUpload aborted at once; for an upload cp would resume, its ListParts), "
        "with no part sent and no state file written; then exit 0, or fail as the run "
        "would.")] = False
    no_progress: NoProgressOpt = False
    json_output: JsonOpt = False
    # fmt: on

    def request(
        self, source: Any, bucket: str, key: str, state_file: Path, endpoint: Any,
        shards: int | None = None,
    ) -> Any:  # fmt: skip
        """The Request of these flags, checked as far as it can be before anything is read
        or sent: a stream's refusals as a usage error naming the flag, the rest as the core
        says them."""
        from ._request import Request

        options = self.object_flags.parameters(source.path)
        request = Request(state_file, source, bucket, key, self.part_size, self.max_parts,
                          self.expected_size, self.checksum, options, self.no_overwrite,
                          endpoint, self.transfer.options(), shards=shards)  # fmt: skip
        try:
            request.refuse_for_stream(dry_run=self.dry_run)
        except _errors.UsageError as exc:
            _usage_error(exc.message, _STREAM_FLAGS[exc.param or ""])
        _reported(request.check)
        return request


_STREAM_FLAGS = {"part_size": "--part-size", "max_parts": "--max-parts", "shards": "FILE",
                 "dry_run": "--dry-run", "source": "FILE"}  # fmt: skip


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

    if url is not None and (bucket or key):
        _usage_error(f"give {url} or --s3-bucket and --s3-key, not both")
    if url is not None:
        if url.startswith("s3://") and url.endswith("/") and names_stdin(file):
            _usage_error(
                f"{url} names a prefix, to which the file's name is appended, but stdin (-) "
                "has no name: give the whole key (s3://BUCKET/KEY)"
            )
        bucket, key = _checked(parse_s3_url, url, file.name if file is not None else None)
    if file is None or not bucket or not key:
        _usage_error(f"give FILE s3://BUCKET/KEY, or {flag}, --s3-bucket and --s3-key")
    _checked(require_utf8, bucket, key)  # (the long flags' names, as a URL's)
    if url is None:
        _checked(require_typed, key)
    return file, bucket, key


def one_file(arg: Path | None, option: Path | None, flag: str) -> Path | None:
    """FILE given as the argument or as ``flag``; both, naming two files: refused (the one
    typed first was dropped, and the other checked or sent, exit 0)."""
    if arg is not None and option is not None and not _same_file(arg, option):
        _usage_error(f"give FILE ({arg}) or {flag} ({option}), not both", flag)
    return option or arg


def is_directory(path: Path) -> bool:
    """Is ``path`` a directory? One that cannot be looked at (under a directory the user may
    not search: another user's home) is not: the file's own checks then say why, in one line."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _same_file(one: Path, other: Path) -> bool:
    """Do two paths name one file (``f``, ``./x/../f``, ``$PWD/f``)?"""
    try:
        return os.path.samefile(one, other)
    except (OSError, ValueError):  # (not there: as written, made absolute)
        return os.path.abspath(one) == os.path.abspath(other)


def _bucket_url(url: str | None, bucket: str | None, prefix: str | None) -> tuple[str, str]:
    """s3://BUCKET[/PREFIX], or --s3-bucket (and --prefix)."""
    if url is None:
        if not bucket:
            _usage_error("give s3://BUCKET[/PREFIX] (or --s3-bucket)")
        _checked(require_utf8, bucket, prefix or "", "prefix")
        if prefix:
            _checked(require_typed, prefix, "prefix")
        return bucket, prefix or ""
    if bucket or prefix:
        _usage_error(f"give {url} or --s3-bucket/--prefix, not both")
    return _checked(parse_bucket_url, url)


def _checked(check: Callable[..., T], *given: str | None, flag: str | None = None) -> T:
    """``check(*given)``, what it refuses (a URL, a name, a value of ``flag``) a usage error
    (click's, or --json's)."""
    try:
        return check(*given)
    except (_errors.UsageError, ValueError) as exc:
        _usage_error(str(exc), flag)
