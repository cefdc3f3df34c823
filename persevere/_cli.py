"""The ``persevere`` command: a thin layer over the coroutines of the API.

It parses flags (typer; choices, sizes, rates and durations are checked by click before any
request, with click's usual error; flags several commands share come as one group each, see
:mod:`._flag_groups`), runs one coroutine with SIGINT/SIGTERM turned into a clean
stop, and reports: results on stdout, progress and errors on stderr. It catches persevere's own
errors only (naming the flag of the parameter a core error names); anything else is a bug and
keeps its traceback.

Exit codes: 0 ok, 1 error, 2 bad usage/input, 3 failed but resumable, 130 interrupted
(Ctrl-C, SIGTERM), 129 hung up (SIGHUP: the terminal closed, the ssh session dropped).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import click
import typer

from . import _errors
from ._checksums import AlgorithmName
from ._flag_groups import flag_groups
from ._object_options import CannedAcl, LegalHold, ObjectLockMode, SseMode, StorageClass
from ._options import MAX_CONCURRENCY
from ._platform import require_supported
from ._units import format_duration, format_size, parse_duration, parse_size
from ._version import __version__

T = TypeVar("T")

app = typer.Typer(
    name="persevere",
    help="Resumable, parallel, checksummed multipart uploads of huge files to S3.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    rich_markup_mode=None,
)
upload_app = typer.Typer(
    help="Start, resume, abort or inspect a multipart upload tracked by a state file.",
    no_args_is_help=True,
)
app.add_typer(upload_app, name="upload")
# click (8.4+) suggests a command for a typo itself: typer's own suggestion would say it twice.
if hasattr(click.exceptions, "NoSuchCommand"):
    app.suggest_commands = upload_app.suggest_commands = False

log = logging.getLogger("persevere")

# The flag of each API parameter a core error may name.
_FLAGS = {
    "part_size": "--part-size",
    "max_parts": "--max-parts",
    "no_overwrite": "--no-overwrite",
    "concurrency": "--concurrency",
    "checksum": "--checksum",
    "state_file": "--state-file",
    "endpoint_url": "--endpoint-url",
    "profile": "--profile",
    "ca_bundle": "--ca-bundle",
    "metadata": "--metadata",
    "tagging": "--tagging",
    "sse_kms_key_id": "--sse-kms-key-id",
    "expected_bucket_owner": "--expected-bucket-owner",
    "expected_size": "--expected-size",
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"persevere {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more detail.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors on stderr (no warnings).")
    ] = False,
    log_format: Annotated[
        Literal["text", "json"],
        typer.Option(
            "--log-format",
            envvar="PERSEVERE_LOG_FORMAT",
            help="stderr as text, or one JSON object per line (start, progress, retry, "
            "throttle, completed, error...) for log collectors.",
        ),
    ] = "text",
) -> None:
    """Resumable, parallel, checksummed multipart uploads of huge files to S3."""
    from ._logs import setup

    # JSON lines are for collectors: their events (start, progress, completed) are info.
    # While a command runs, tqdm.contrib.logging routes the handler through the progress bar
    # (see _run), so log lines never tear it.
    detail = verbose or log_format == "json"
    setup(logging.ERROR if quiet else logging.INFO if detail else logging.WARNING,
          json_lines=log_format == "json")  # fmt: skip
    try:
        require_supported()  # Windows: one line before any command starts (._platform)
    except _errors.UsageError as exc:
        _fail(exc)


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


def _rate(text: str) -> float:
    from ._bandwidth import parse_rate

    return parse_rate(text)


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
_json_output = False  # the running command was given --json: its errors are JSON on stdout too


def _note_json(value: bool) -> bool:
    global _json_output
    _json_output = value
    return value


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
    typer.Option(
        "--concurrency",
        "-c",
        min=1,
        max=MAX_CONCURRENCY,
        help="Parts in flight at once (not remembered from start: give it again).",
        envvar="PERSEVERE_CONCURRENCY",
    ),
]
ResumeBandwidthOpt = Annotated[
    float | None,
    typer.Option(
        "--max-bandwidth",
        parser=_parser(_rate),
        metavar="RATE",
        envvar="PERSEVERE_MAX_BANDWIDTH",
        show_default=False,
        help="Cap on the upload rate (e.g. 50MB/s). Not remembered from start: give it "
        "again, or none applies.",
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
        min=1,
        max=64,
        help="Split the upload into this many shards, each a process of its own (an event "
        "loop and a core each), then complete: when one process is CPU-bound.",
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
    typer.Option(
        "--request-payer",
        help="'requester': a requester-pays bucket; this account pays for the requests "
        "(sent on each of them).",
    ),
]
KeyRequestPayerOpt = Annotated[  # abort and status: a state file's upload has it recorded
    Literal["requester"] | None,
    typer.Option(
        "--request-payer",
        help="'requester': a requester-pays bucket; this account pays for the requests "
        "(with s3://BUCKET/KEY; with --state-file, what the state file recorded applies).",
    ),
]


# -- running a coroutine, and reporting ------------------------------------------------------
def _fail(exc: _errors.PersevereError) -> NoReturn:
    from ._logs import event, json_lines

    flag = _FLAGS.get(exc.param or "")
    where = f"{flag}: " if flag and flag not in exc.message else ""
    lines = [f"error: {where}{exc.message}", *([exc.hint] if exc.hint else [])]
    command = None
    if exc.state_file and exc.exit_code != _errors.EXIT_USAGE:
        state = f"--state-file {shlex.quote(exc.state_file)}"
        if exc.next_step == "resume":
            command = f"persevere upload resume {state}"
            lines.append(f"the upload is resumable: {command}")
        elif exc.next_step == "abort":
            command = f"persevere upload abort {state}"
            lines.append(f"to give it up: {command}")
    if json_lines():
        log.error(f"{where}{exc.message}", extra=event("error", exit_code=exc.exit_code,
                  hint=exc.hint, next_command=command))  # fmt: skip
    else:
        for line in lines:
            _say(f"persevere: {line}")
    _json_error(exc, f"{where}{exc.message}", command)
    raise typer.Exit(exc.exit_code)


def _json_error(exc: _errors.PersevereError, message: str, command: str | None) -> None:
    """Under --json, the error is also the one JSON document on stdout: a script that parses
    stdout always gets one (the exit code is the same)."""
    if not _json_output:
        return
    _emit_json(
        {"error": message, "exit_code": exc.exit_code, "hint": exc.hint, "next_command": command}
    )


def _usage_error(message: str, flag: str | None = None) -> NoReturn:
    """Bad input a command finds itself (not click while parsing): click's usual report, or
    under --json persevere's JSON one; exit 2 either way."""
    if _json_output:
        _fail(_errors.UsageError(f"{flag}: {message}" if flag else message))
    raise typer.BadParameter(message, param_hint=flag)


def _parsed(parse: Callable[[str], T], text: str, flag: str) -> T:
    try:
        return parse(text)
    except ValueError as exc:
        _usage_error(str(exc), flag)


def _levels(text: str) -> list[int]:
    """bench's --concurrency: comma-separated settings, each within --concurrency's range."""
    levels = [x.strip() for x in text.split(",") if x.strip()]
    if not levels or not all(x.isdigit() and 1 <= int(x) <= MAX_CONCURRENCY for x in levels):
        raise ValueError(f"not comma-separated whole numbers from 1 to {MAX_CONCURRENCY}: {text!r}")
    return [int(x) for x in levels]


@dataclasses.dataclass(frozen=True)
class _Cleanup:
    """A command that removes what it made (bench): ``left()`` says, as exact commands, what
    would stay behind if it ended now. A second signal gives the cleanup ``grace_s`` more
    seconds; a third, or the end of the grace, exits at once, printing ``left()``."""

    left: Callable[[], list[str]]
    grace_s: float


def _run(
    fn: Callable[[], Awaitable[T]],
    *,
    resumable_state: Path | None = None,
    cleanup: _Cleanup | None = None,
    hurried_by_parent: bool = False,
) -> T:
    """Run ``fn`` on the event loop; Ctrl-C/SIGTERM (exit 130) and SIGHUP (129) cancel it.

    A result that was reached before the signal took effect is still the result: a Ctrl-C
    after the upload completed does not turn success into "interrupted".

    ``hurried_by_parent``: a shard process of ``--processes``. One Ctrl-C reaches it twice
    (from the terminal, to the whole process group, and passed on by its parent), so a
    signal after the first is not a second stop: the parent, which gets the user's second
    Ctrl-C too, ends it at once if the user insists.
    """
    import anyio

    from ._journal import holds_upload
    from ._sync import run

    interrupted: str | None = None
    hurried = False  # a second signal came: the cleanup's grace is running
    if resumable_state is not None:
        settling = "the journal is being settled"
        again_note = "every recorded part is safe in the state file"
    else:
        settling, again_note = "cleaning up", "cleanup cut short"

    def exit_now(name: str) -> NoReturn:
        lines = cleanup.left() if cleanup is not None else []
        note = again_note
        if cleanup is not None:
            note = "left behind:" if lines else "nothing was left behind"
        _say(f"persevere: {name} again: exiting now; {note}")
        for line in lines:
            _say(f"persevere:   {line}")
        os._exit(_exit_code(interrupted))

    async def main() -> T:
        nonlocal interrupted
        result: list[T] = []
        failure: list[_errors.PersevereError] = []
        work = anyio.CancelScope()
        async with anyio.create_task_group() as tg:

            async def exit_after_grace(name: str, grace_s: float) -> None:
                await anyio.sleep(grace_s)
                exit_now(name)

            async def watch_signals(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                # Watches for the whole run: the first signal stops the work cleanly (the
                # journal settles); a second one, while that is under way, exits at once
                # (a cleanup first gets its grace, and a third signal cuts that short).
                nonlocal interrupted, hurried
                with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
                    task_status.started()
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if signum == signal.SIGHUP:
                            _hung_up()
                        if interrupted and cleanup is not None and not hurried:
                            hurried = True
                            log.warning(
                                "%s again: finishing the cleanup first (at most %.0fs; once "
                                "more to exit at once)",
                                name,
                                cleanup.grace_s,
                            )
                            tg.start_soon(exit_after_grace, name, cleanup.grace_s)
                            continue
                        if interrupted and hurried_by_parent:
                            log.info("%s again: already stopping", name)
                            continue
                        if interrupted:
                            exit_now(name)
                        interrupted = name
                        log.warning("%s received: stopping, %s", name, settling)
                        work.cancel()

            await tg.start(watch_signals)
            with work:
                try:
                    result.append(await fn())
                except _errors.PersevereError as exc:
                    failure.append(exc)  # raised below, not wrapped in the task group's group
            tg.cancel_scope.cancel()
        for signum in _STOP_SIGNALS:  # (the receiver put the defaults back: see _run's finally)
            signal.signal(signum, signal.SIG_IGN)
        if result:
            return result[0]
        if failure and not interrupted:
            raise failure[0]
        stop = _errors.Interrupted(f"interrupted ({interrupted})")
        stop.exit_code = _exit_code(interrupted)
        raise stop

    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        try:
            with logging_redirect_tqdm(loggers=[log]):
                return run(main)
        finally:
            # The work is over (done, failed or stopped; the journal settled): what is left is
            # saying so. A signal now must not turn that into death by signal: a supervisor
            # would take a success for a failure, or a clean error for a crash.
            for signum in _STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
    except _errors.Interrupted as exc:
        if hurried_by_parent:  # a shard of --processes: the parent says it once, for all
            raise typer.Exit(exc.exit_code) from None
        if resumable_state is not None and holds_upload(resumable_state):
            exc.message = "interrupted; the upload is intact"
            exc.state_file = str(resumable_state)
        elif resumable_state is not None:
            exc.message = "interrupted before the upload was created; nothing to resume"
        elif cleanup is not None and not cleanup.left():
            exc.message = f"{exc.message}; cleaned up: nothing was left behind"
        _fail(_left_behind(exc, cleanup))
    except _errors.PersevereError as exc:
        _fail(_left_behind(exc, cleanup))


def _left_behind(exc: _errors.PersevereError, cleanup: _Cleanup | None) -> _errors.PersevereError:
    """A failure of a command that cleans up, with what its cleanup could not remove."""
    lines = cleanup.left() if cleanup is not None else []
    if lines:
        exc.hint = "; ".join([*filter(None, [exc.hint]), "left behind: " + "; ".join(lines)])
    return exc


# getattr: Windows has no SIGHUP, and this module must import there to refuse it with one line.
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _exit_code(signal_name: str | None) -> int:
    return 129 if signal_name == "SIGHUP" else _errors.EXIT_INTERRUPTED


def _say(line: str) -> None:
    """A line on stderr that never raises: after SIGHUP the terminal may be gone."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _hung_up() -> None:
    """The terminal is gone (SIGHUP): send what would have gone to it nowhere, rather than fail
    on the next write; a supervisor's log (a file, a pipe) keeps working."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream.isatty():
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
        except (OSError, ValueError):
            pass


def _warn_insecure() -> None:
    log.warning(
        "WARNING: --no-verify-ssl: the endpoint's TLS certificate is NOT verified; anyone on "
        "the network path can read and alter this traffic (use --ca-bundle instead)"
    )


def _from_stdin(file: Path) -> Path:
    """FILE as given, except '-': the file redirected into standard input (``< disk.img``, a
    regular file or a block device, read as that file), or '-' itself for a pipe."""
    if str(file) != "-":
        return file
    from ._stream import stdin_kind

    try:
        kind, path = stdin_kind()
    except _errors.UsageError as exc:
        _fail(exc)
    return path if kind == "file" and path is not None else file


def _check_expected_size(file: Path, expected_size: int | None) -> None:
    """--expected-size with a file (not a stream): it must be the file's size."""
    if expected_size is None or str(file) == "-":
        return
    from ._source import check_expected_size, inspect_file

    try:
        check_expected_size(inspect_file(file), expected_size)
    except _errors.PersevereError as exc:
        _fail(exc)


def _refuse_part_size_for_streams(part_size: int | None) -> None:
    if part_size is not None:
        _usage_error(
            "a stream's parts follow its schedule: give --expected-size instead", "--part-size"
        )


def _refuse_dry_run_for_streams(file: Path) -> None:
    if str(file) == "-":
        _usage_error("a stream can be read only once: --dry-run needs a file", "--dry-run")


def _refuse_max_parts_for_streams(max_parts: int) -> None:
    if max_parts != 10_000:
        _usage_error(
            "a stream's parts follow its schedule within 10,000 parts; a lower part limit is "
            "not supported for streams yet: upload a file",
            "--max-parts",
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

        try:
            where = (self.endpoint_url, self.region, self.profile, self.ca_bundle)
            endpoint = Endpoint.from_environment(*where, verify_ssl=not self.no_verify_ssl)
        except _errors.UsageError as exc:
            _fail(exc)
        if self.no_verify_ssl:
            _warn_insecure()
        return endpoint


@dataclasses.dataclass(frozen=True)
class OverrideFlags:
    """What resume and shard change about the endpoint their state file records."""

    endpoint_url: EndpointOpt = None
    profile: ProfileOpt = None
    ca_bundle: CaBundleOpt = None
    no_verify_ssl: NoVerifySslOpt = False

    def endpoint(self) -> Any:
        from ._s3 import Endpoint

        ca_bundle = self.ca_bundle
        if ca_bundle is not None or self.no_verify_ssl:
            # checked (absolute, exists, not with --no-verify-ssl); the warning said once
            given = EndpointFlags(ca_bundle=ca_bundle, no_verify_ssl=self.no_verify_ssl)
            ca_bundle = given.endpoint().ca_bundle
        try:  # an endpoint URL the core refuses (a path, credentials in it): one line
            return Endpoint(
                self.endpoint_url, None, self.profile, ca_bundle, not self.no_verify_ssl
            )
        except _errors.UsageError as exc:
            _fail(exc)


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
        try:
            return build_object_options(file, **values)
        except _errors.UsageError as exc:
            _fail(exc)


def _insecure() -> Any:
    """The override of a command given --no-verify-ssl (the warning said once, elsewhere)."""
    from ._s3 import Endpoint

    return Endpoint(verify_ssl=False)


def _overrides(no_verify_ssl: bool) -> Any:
    """What a command that reads the endpoint from a state file changes about it."""
    if not no_verify_ssl:
        return None
    _warn_insecure()
    return _insecure()


def _progress(enabled: bool, description: str) -> Any:
    from ._logs import LogLineProgress, json_lines
    from ._progress import NullProgress, TqdmProgress

    if not enabled or log.level >= logging.ERROR:  # --no-progress, --json or --quiet
        return NullProgress()
    if sys.stderr.isatty() and not json_lines():
        return TqdmProgress(description)
    return LogLineProgress(description)


def _emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _target(
    file: Path | None, url: str | None, bucket: str | None, key: str | None, flag: str
) -> tuple[Path, str, str]:
    """FILE s3://BUCKET/KEY, or the long flags (the original tool's).

    A URL ending in ``/`` takes the file's name (s3://b/backups/ + db.dump); stdin (``-``) has
    no name, so it needs the whole key.
    """
    from ._urls import parse_s3_url

    if url is not None and (bucket or key):
        _usage_error(f"give {url} or --s3-bucket and --s3-key, not both")
    if url is not None:
        if url.startswith("s3://") and url.endswith("/") and str(file) == "-":
            raise typer.BadParameter(
                f"{url} names a prefix, to which the file's name is appended, but stdin (-) "
                "has no name: give the whole key (s3://BUCKET/KEY)"
            )
        try:
            bucket, key = parse_s3_url(url, file.name if file is not None else None)
        except _errors.UsageError as exc:
            _usage_error(str(exc))
    if file is None or not bucket or not key:
        _usage_error(f"give FILE s3://BUCKET/KEY, or {flag}, --s3-bucket and --s3-key")
    return file, bucket, key


def _say_plan(file: Path, part_size: int | None, max_parts: int = 10_000) -> None:
    """The plan on stderr before anything is sent (see :func:`._logs.say_plan`); nothing for
    a stream, or a plan the core refuses (with the reason)."""
    from ._logs import say_plan

    plan = _plan_of(file, part_size, max_parts)
    if plan is not None:
        say_plan(plan)


def _plan_of(file: Path, part_size: int | None, max_parts: int) -> Any:
    """The file's part plan, or None if it has none (a stream; the core then says why)."""
    from ._plan import make_plan
    from ._source import inspect_file

    if str(file) == "-":
        return None  # a stream: its parts follow its own schedule
    try:
        return make_plan(inspect_file(file).size, part_size, max_parts)
    except _errors.PersevereError:
        return None


def _object_url(url: str | None, bucket: str | None, key: str | None) -> tuple[str, str] | None:
    """s3://BUCKET/KEY, or --s3-bucket and --s3-key (not both ways); None if neither."""
    from ._urls import parse_s3_url

    if url is None:
        return (bucket, key) if bucket and key else None
    if bucket or key:
        _usage_error(f"give {url} or --s3-bucket/--s3-key, not both")
    try:
        return parse_s3_url(url)
    except _errors.UsageError as exc:
        _usage_error(str(exc))


def _bucket_url(url: str | None, bucket: str | None, prefix: str | None) -> tuple[str, str]:
    """s3://BUCKET[/PREFIX], or --s3-bucket (and --prefix)."""
    from ._urls import parse_bucket_url

    if url is None:
        if not bucket:
            _usage_error("give s3://BUCKET[/PREFIX] (or --s3-bucket)")
        return bucket, prefix or ""
    if bucket or prefix:
        _usage_error(f"give {url} or --s3-bucket/--prefix, not both")
    try:
        return parse_bucket_url(url)
    except _errors.UsageError as exc:
        _usage_error(str(exc))


BucketUrlArg = Annotated[
    str | None, typer.Argument(metavar="[s3://BUCKET[/PREFIX]]", show_default=False)
]
ObjectUrlArg = Annotated[
    str | None, typer.Argument(metavar="[s3://BUCKET/KEY]", show_default=False)
]


# -- commands --------------------------------------------------------------------------------
@upload_app.command("start")
@flag_groups
def start(
    file_arg: Annotated[Path | None, typer.Argument(metavar="[FILE]", show_default=False)] = None,
    url_arg: Annotated[
        str | None, typer.Argument(metavar="[s3://BUCKET/KEY]", show_default=False)
    ] = None,
    s3_bucket: Annotated[
        str | None, typer.Option("--s3-bucket", help="Destination bucket.")
    ] = None,
    s3_key: Annotated[str | None, typer.Option("--s3-key", help="Destination object key.")] = None,
    file_to_upload: Annotated[
        Path | None, typer.Option("--file-to-upload", help="The local file to upload.")
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(
            "--state-file",
            help="The journal of this upload (JSONL); must not exist. Default: FILE.persevere "
            "beside the file (a block device's, or a stream's, under $XDG_STATE_HOME/persevere).",
        ),
    ] = None,
    transfer: TransferFlags = TransferFlags(),
    part_size: PartSizeOpt = None,
    max_parts: MaxPartsOpt = 10_000,
    checksum: ChecksumOpt = None,
    endpoint_flags: EndpointFlags = EndpointFlags(),
    object_flags: ObjectFlags = ObjectFlags(),
    no_overwrite: NoOverwriteOpt = False,
    dry_run: DryRunOpt = False,
    no_progress: NoProgressOpt = False,
    json_output: JsonOpt = False,
    expected_size: ExpectedSizeOpt = None,
    shards: Annotated[
        int | None,
        typer.Option(
            "--shards",
            min=1,
            help="Create the upload for this many shards and send nothing: run 'persevere "
            "upload shard' for each (any host), then 'upload resume' completes.",
        ),
    ] = None,
    processes: ProcessesOpt = None,
) -> None:
    """Start a new upload: persevere upload start FILE s3://BUCKET/KEY (or the long flags).

    FILE '-' reads standard input: a pipe is uploaded as a stream (see --expected-size); a
    file or block device redirected in (< file) is read as that file.
    """
    from ._upload import start_upload

    started = time.monotonic()  # --processes: the summary's time is the whole upload's
    file, bucket, key = _target(
        file_to_upload or file_arg, url_arg, s3_bucket, s3_key, "--file-to-upload"
    )
    file = _from_stdin(file)
    _check_expected_size(file, expected_size)
    progress = _progress(not no_progress and not json_output, "upload")
    if state_file is None:
        from ._source import is_block_device

        if str(file) == "-" or is_block_device(file):  # under $XDG_STATE_HOME, not in /dev
            from ._cp import locate_state_file

            state_file = locate_state_file(file, bucket, key)
        else:
            state_file = file.with_name(file.name + ".persevere").absolute()
        from ._logs import NamingStateFile

        progress = NamingStateFile(progress, state_file)
    _say_plan(file, part_size, max_parts)
    options = transfer.options()
    endpoint = endpoint_flags.endpoint()
    object_options = object_flags.parameters(file)
    target = state_file
    if dry_run:
        from ._dry_run import dry_run_start

        _refuse_dry_run_for_streams(file)
        report = _run(
            lambda: dry_run_start(
                file, bucket, key, target, part_size=part_size, max_parts=max_parts,
                checksum=checksum, endpoint=endpoint, object_options=object_options,
                no_overwrite=no_overwrite, options=options,
            )
        )  # fmt: skip
        _print_dry_run(report, json_output)
        return
    if shards is not None or processes is not None:
        from ._upload import create_upload

        if str(file) == "-":
            _usage_error("a stream cannot be split into shards", "FILE")
        count = shards or processes or 1
        if shards is None and processes is not None:  # no more processes than parts
            plan = _plan_of(file, part_size, max_parts)
            processes = count = min(processes, plan.part_count if plan else count)
        header = _run(
            lambda: create_upload(
                file, bucket, key, target, shards=count, part_size=part_size, checksum=checksum,
                endpoint=endpoint, object_options=object_options, options=options,
                max_parts=max_parts, no_overwrite=no_overwrite,
            ),
            resumable_state=state_file,
        )  # fmt: skip
        if processes is None:
            quoted = shlex.quote(str(target))
            typer.echo(
                f"created upload {header.upload_id} of s3://{bucket}/{key} in {count} shards; "
                f"on any host that sees the file, run for I in 0..{count - 1}:\n"
                f"  persevere upload shard --state-file {quoted} --shard I/{count}\n"
                f"then complete it: persevere upload resume --state-file {quoted}"
            )
            return
        # --no-verify-ssl is never recorded: the shards and the completion are given it too.
        insecure = endpoint_flags.no_verify_ssl
        _complete_in_processes(target, processes, transfer, OverrideFlags(no_verify_ssl=insecure),
                               _insecure() if insecure else None,
                               json_output, no_progress, started=started)  # fmt: skip
        return
    if str(file) == "-":
        from ._stream import start_stream

        _refuse_part_size_for_streams(part_size)
        _refuse_max_parts_for_streams(max_parts)
        run: Callable[[], Awaitable[Any]] = lambda: start_stream(  # noqa: E731
            bucket, key, target, expected_size=expected_size, checksum=checksum,
            endpoint=endpoint, object_options=object_options, options=options, progress=progress,
            no_overwrite=no_overwrite,
        )  # fmt: skip
    else:
        run = lambda: start_upload(  # noqa: E731
            file, bucket, key, target, part_size=part_size, checksum=checksum,
            endpoint=endpoint, object_options=object_options, options=options, progress=progress,
            max_parts=max_parts,
            no_overwrite=no_overwrite,
        )  # fmt: skip
    result = _run(run, resumable_state=state_file)
    _print_result(result, json_output, state_file)


@app.command("cp")
@flag_groups
def cp(
    file: Annotated[Path, typer.Argument(metavar="FILE", show_default=False)],
    url: Annotated[str, typer.Argument(metavar="s3://BUCKET/KEY", show_default=False)],
    state_file: Annotated[
        Path | None,
        typer.Option(
            "--state-file",
            help="The journal of this upload. Default: FILE.persevere beside the file if that "
            "directory is writable (FILE.DIGEST.persevere if FILE.persevere records another "
            "destination), else under $XDG_STATE_HOME/persevere; for '-' (a stream), "
            "stdin.DIGEST.persevere there.",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Keep the journal in this directory instead."),
    ] = None,
    transfer: TransferFlags = TransferFlags(),
    part_size: PartSizeOpt = None,
    max_parts: MaxPartsOpt = 10_000,
    checksum: ChecksumOpt = None,
    endpoint_flags: EndpointFlags = EndpointFlags(),
    object_flags: ObjectFlags = ObjectFlags(),
    no_overwrite: NoOverwriteOpt = False,
    dry_run: DryRunOpt = False,
    no_progress: NoProgressOpt = False,
    json_output: JsonOpt = False,
    expected_size: ExpectedSizeOpt = None,
) -> None:
    """Upload FILE to s3://BUCKET/KEY; run it again until it exits 0.

    Starts the upload, or resumes the one its state file records, or (already uploaded)
    exits 0 at once. For cron, systemd and Kubernetes: exit 0 done; 3 or 129/130 run again
    later; 1 and 2 need a person.
    """
    from ._cp import copy_file, locate_state_file

    source, bucket, key = _target(file, url, None, None, "FILE")
    source = _from_stdin(source)
    _check_expected_size(source, expected_size)
    journal = locate_state_file(source, bucket, key, state_file=state_file, state_dir=state_dir)
    options = transfer.options()
    endpoint = endpoint_flags.endpoint()  # checked even when the state file's is used
    if not endpoint_flags.given:
        endpoint = None  # a new upload's from the environment, a resumed one's recorded
    object_options = object_flags.parameters(source)
    if dry_run:
        from ._dry_run import dry_run_cp

        _refuse_dry_run_for_streams(source)
        report = _run(
            lambda: dry_run_cp(
                source, bucket, key, journal, part_size=part_size, max_parts=max_parts,
                checksum=checksum, endpoint=endpoint,
                object_options=object_options, no_overwrite=no_overwrite, options=options,
            )
        )  # fmt: skip
        _print_dry_run(report, json_output)
        return
    if str(source) == "-":
        _refuse_part_size_for_streams(part_size)
        _refuse_max_parts_for_streams(max_parts)
    result = _run(
        lambda: copy_file(
            source,
            bucket,
            key,
            journal,
            part_size=part_size,
            max_parts=max_parts,
            no_overwrite=no_overwrite,
            checksum=checksum,
            endpoint=endpoint,
            object_options=object_options,
            options=options,
            progress=_progress(not no_progress and not json_output, "upload"),
            expected_size=expected_size,
        ),
        resumable_state=journal,
    )
    _print_result(result, json_output, journal)


@upload_app.command("resume")
@flag_groups
def resume(
    state_file: StateFileOpt,
    transfer: ResumeTransferFlags = ResumeTransferFlags(),
    no_progress: NoProgressOpt = False,
    json_output: JsonOpt = False,
    verify_parts: VerifyPartsOpt = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="The file is here now (moved, or another machine); its uploaded parts are "
            "re-read.",
        ),
    ] = None,
    endpoint_flags: OverrideFlags = OverrideFlags(),
    processes: ProcessesOpt = None,
) -> None:
    """Continue an interrupted upload: reconcile with S3, send what is missing, complete.

    --endpoint-url, --profile and --ca-bundle override what the state file recorded.
    """
    from ._resume import resume_upload

    started = time.monotonic()
    overrides = endpoint_flags.endpoint()
    if processes is not None:
        from ._journal import read_state

        try:
            state = read_state(state_file)
        except _errors.PersevereError as exc:
            _fail(exc)
        if state.finished is None:  # finished: nothing to split, the resume below says how
            if state.header.stream:
                _usage_error("a stream cannot be split into shards: it is read once, in order",
                             "--processes")  # fmt: skip
            recorded = state.header.shards
            if recorded and recorded != processes:  # its shards, as they were made
                log.warning("the upload is split into %d shards: %d processes", recorded, recorded)
                processes = recorded
            _complete_in_processes(state_file, processes, transfer, endpoint_flags, overrides,
                                   json_output, no_progress, verify_parts, file,
                                   started)  # fmt: skip
            return
    result = _run(
        lambda: resume_upload(
            state_file,
            options=transfer.options(),
            progress=_progress(not no_progress and not json_output, "resume"),
            verify_parts=verify_parts,
            file=file,
            endpoint=overrides,
        ),
        resumable_state=state_file,
    )
    _print_result(result, json_output, state_file)


@upload_app.command("shard")
@flag_groups
def shard(
    state_file: StateFileOpt,
    shard_spec: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Upload shard I (0-based) of N. Default: from JOB_COMPLETION_INDEX "
            "(Kubernetes Indexed Job, with the header's shard count) or SLURM_ARRAY_TASK_ID.",
        ),
    ] = None,
    transfer: TransferFlags = TransferFlags(),
    no_progress: NoProgressOpt = False,
    json_output: JsonOpt = False,
    verify_parts: VerifyPartsOpt = False,
    file: Annotated[
        Path | None, typer.Option("--file", help="The file is at this path on this host.")
    ] = None,
    endpoint_flags: OverrideFlags = OverrideFlags(),
    under_processes: Annotated[
        bool,
        typer.Option(
            "--under-processes",
            hidden=True,
            help="Run by --processes: the parent passes a stop on (see _run).",
        ),
    ] = False,
) -> None:
    """Upload one shard of an upload made with 'upload start --shards N' (any host that sees
    the file and the state file's directory); 'upload resume' completes once all are done.

    A shard keeps its own journal beside the state file, and is resumable: run it again.
    """
    from ._journal import read_state
    from ._shards import shard_from_environment, upload_shard

    try:
        recorded = read_state(state_file).header.shards
    except _errors.PersevereError as exc:
        _fail(exc)
    if shard_spec is not None:
        index_text, _, count_text = shard_spec.partition("/")
        try:
            index, count = int(index_text), int(count_text or recorded or 0)
        except ValueError:
            raise typer.BadParameter(f"not I/N: {shard_spec!r}", param_hint="--shard") from None
        if count < 1:
            raise typer.BadParameter("give the shard count: I/N", param_hint="--shard")
    else:
        found = shard_from_environment(recorded)
        if found is None:
            raise typer.BadParameter(
                "give --shard I/N (or run as a Kubernetes Indexed Job or a Slurm array task)",
                param_hint="--shard",
            )
        index, count = found
    overrides = endpoint_flags.endpoint()
    result = _run(
        lambda: upload_shard(
            state_file, index, count, options=transfer.options(), file=file, endpoint=overrides,
            verify_parts=verify_parts,
            progress=_progress(not no_progress and not json_output, f"shard {index}/{count}"),
        ),
        resumable_state=state_file,
        hurried_by_parent=under_processes,
    )  # fmt: skip
    if json_output:
        _emit_json({**dataclasses.asdict(result), "parts": [result.parts.start,
                    result.parts.stop - 1]})  # fmt: skip
    else:
        typer.echo(
            f"shard {index}/{count}: parts {result.parts.start}..{result.parts.stop - 1} done, "
            f"{format_size(result.bytes_sent)} sent in {result.elapsed_s:.1f}s"
        )


def _complete_in_processes(
    state_file: Path,
    processes: int,
    transfer: TransferFlags,
    endpoint_flags: OverrideFlags,
    overrides: Any,
    json_output: bool,
    no_progress: bool,
    verify_parts: bool = False,
    file: Path | None = None,
    started: float | None = None,
) -> None:
    """--processes N: the shards as N processes of their own, then completion here, each with
    every transfer flag given (the bandwidth cap shared among them), resume's ``file`` and
    ``verify_parts``, and the endpoint's ``overrides`` (``endpoint_flags``, as the shards are
    given them). The summary counts what the shards sent, and the time since ``started``
    (the command's start)."""
    from ._flag_groups import flag_argv
    from ._resume import resume_upload
    from ._shards import run_local_shards

    started = time.monotonic() if started is None else started
    per_shard = transfer
    if transfer.max_bandwidth is not None:  # whole bytes a second: what the flag's parser reads
        per_shard = dataclasses.replace(
            transfer, max_bandwidth=max(1.0, float(transfer.max_bandwidth // processes))
        )
    shard_args = [*flag_argv(per_shard), *flag_argv(endpoint_flags), "--no-progress",
                  *(["--verify-parts"] if verify_parts else []),
                  *(["--file", str(file)] if file else [])]  # fmt: skip
    try:
        shards = run_local_shards(state_file, processes, shard_args)
    except _errors.PersevereError as exc:
        exc.state_file = str(state_file)
        _fail(exc)
    codes = [shard.exit_code for shard in shards]
    if any(code != 0 for code in codes):
        log.warning("shard exit codes %s: completing sends what they left", codes)
    result = _run(
        lambda: resume_upload(
            state_file, options=transfer.options(), file=file, endpoint=overrides,
            progress=_progress(not no_progress and not json_output, "complete"),
        ),
        resumable_state=state_file,
    )  # fmt: skip
    result = dataclasses.replace(
        result,
        bytes_sent=result.bytes_sent + sum(shard.bytes_sent for shard in shards),
        elapsed_s=time.monotonic() - started,
    )
    _print_result(result, json_output, state_file)


@upload_app.command("abort")
@flag_groups
def abort(
    url_arg: ObjectUrlArg = None,
    state_file: Annotated[
        Path | None, typer.Option("--state-file", help="The journal of the upload to abort.")
    ] = None,
    s3_bucket: Annotated[
        str | None,
        typer.Option(
            "--s3-bucket",
            help="With --s3-key and --upload-id (or s3://BUCKET/KEY --upload-id ID): an "
            "upload that has no state file (see 'upload list').",
        ),
    ] = None,
    s3_key: Annotated[str | None, typer.Option("--s3-key", help="Object key.")] = None,
    upload_id: Annotated[str | None, typer.Option("--upload-id", help="Upload id.")] = None,
    endpoint_flags: EndpointFlags = EndpointFlags(),
    request_payer: KeyRequestPayerOpt = None,
) -> None:
    """Abort an upload (S3 deletes its parts): by --state-file, or s3://BUCKET/KEY --upload-id
    ID (or --s3-bucket, --s3-key, --upload-id)."""
    from ._orphans import abort_by_id
    from ._upload import abort_upload

    if state_file is not None:
        if url_arg or s3_bucket or s3_key or upload_id:
            _usage_error("give either --state-file or s3://BUCKET/KEY --upload-id")
        overrides = _overrides(endpoint_flags.no_verify_ssl)
        header = _run(lambda: abort_upload(state_file, endpoint=overrides))
        typer.echo(f"aborted upload {header.upload_id} of s3://{header.bucket}/{header.key}")
        return
    target = _object_url(url_arg, s3_bucket, s3_key)
    if target is None or not upload_id:
        _usage_error("give --state-file, or s3://BUCKET/KEY and --upload-id")
    (bucket, key), uid = target, upload_id
    endpoint = endpoint_flags.endpoint()
    _run(lambda: abort_by_id(bucket, key, uid, endpoint=endpoint, request_payer=request_payer))
    typer.echo(f"aborted upload {uid} of s3://{bucket}/{key}")


@upload_app.command("list")
@flag_groups
def list_uploads(
    url_arg: BucketUrlArg = None,
    s3_bucket: Annotated[
        str | None, typer.Option("--s3-bucket", help="The bucket to look in.")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Only keys under this prefix.")
    ] = None,
    older_than: DurationOpt = None,
    endpoint_flags: EndpointFlags = EndpointFlags(),
    request_payer: ListRequestPayerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List multipart uploads in progress (their parts are billed until aborted):
    persevere upload list s3://BUCKET[/PREFIX]."""
    from ._orphans import list_uploads as list_in_progress

    bucket, under = _bucket_url(url_arg, s3_bucket, prefix)
    endpoint = endpoint_flags.endpoint()
    listing = _run(
        lambda: list_in_progress(
            bucket,
            prefix=under,
            older_than_s=older_than,
            endpoint=endpoint,
            request_payer=request_payer,
        )
    )
    uploads = listing.uploads
    if json_output:
        _emit_json({"bucket": bucket, "uploads": uploads})
        return
    older = f" older than {format_duration(older_than)}" if older_than is not None else ""
    younger = f" ({listing.younger} younger, not listed)" if listing.younger else ""
    if not uploads:
        typer.echo(f"no multipart uploads in progress{older} in s3://{bucket}/{under}{younger}")
        return
    typer.echo(f"{'initiated':<26} {'parts':>6} {'bytes':>12}  key / upload id")
    for u in uploads:
        when = u.initiated.isoformat(timespec="seconds") if u.initiated else "?"
        typer.echo(f"{when:<26} {u.parts:>6} {format_size(u.bytes):>12}  {u.key}  {u.upload_id}")
    total = sum(u.bytes for u in uploads)
    typer.echo(
        f"{len(uploads)} upload(s){older}, {format_size(total)} billed until aborted{younger}: "
        f"persevere upload abort s3://{bucket}/KEY --upload-id ID"
    )


@upload_app.command("status")
@flag_groups
def status(
    url_arg: ObjectUrlArg = None,
    state_file: Annotated[
        Path | None, typer.Option("--state-file", help="The journal of the upload.")
    ] = None,
    json_output: JsonOpt = False,
    endpoint_flags: EndpointFlags = EndpointFlags(),
    request_payer: KeyRequestPayerOpt = None,
) -> None:
    """Show what the state file knows and what S3's ListParts says; or, for s3://BUCKET/KEY,
    what S3 holds for that key (the object, and the uploads in progress to it)."""
    from ._upload import upload_status

    if (url_arg is None) == (state_file is None):
        _usage_error("give --state-file, or s3://BUCKET/KEY")
    if url_arg is not None:
        endpoint = endpoint_flags.endpoint()
        _key_status(url_arg, endpoint, request_payer, json_output)
        return
    assert state_file is not None
    overrides = _overrides(endpoint_flags.no_verify_ssl)
    st = _run(lambda: upload_status(state_file, endpoint=overrides))
    if json_output:
        _emit_json(st)
        return
    h = st.header
    source = f"{h.file_path} ({format_size(h.file_size)}, {h.file_size} bytes)"
    done = f"{st.parts_done} of {st.part_count} done ({format_size(st.bytes_done)} of " \
           f"{format_size(h.file_size)})"  # fmt: skip
    if h.stream:
        expected = f", {h.expected_size:,} bytes expected" if h.expected_size else ""
        source = f"standard input (a stream{expected})"
        done = f"{st.parts_done} done ({format_size(st.bytes_done)})"
    lines = [
        f"state file:  {st.state_file}",
        f"file:        {source}",
        f"object:      s3://{h.bucket}/{h.key}",
        f"endpoint:    {h.endpoint_url or 'AWS default'}  region: {h.region or '-'}"
        f"  profile: {h.profile or '-'}",
        f"upload id:   {h.upload_id}",
        f"parts:       {done}, part size {format_size(h.part_size)}, checksum "
        f"{h.checksum_algorithm}",
        f"created:     {h.created_at}",
    ]
    if st.outcome is not None:
        lines.append(f"state:       {st.outcome['type']} at {st.outcome.get('at', '?')}")
    else:
        lines.append("state:       in progress (resumable)")
    remote = st.remote
    if remote is not None:
        if not remote.reachable:
            lines.append(f"S3:          not reachable ({remote.error})")
        elif remote.error:
            lines.append(f"S3:          {remote.error}")
        elif not remote.exists:
            lines.append("S3:          the multipart upload no longer exists")
        else:
            held = f"S3:          {remote.parts} parts ({format_size(remote.bytes)})"
            if remote.unrecorded:  # taken by S3, their answers lost as the upload stopped
                it, matches = ("it", "it matches") if remote.unrecorded == 1 else \
                              ("them", "they match")  # fmt: skip
                held += (f"; {remote.unrecorded} of them not in the state file yet (taken by "
                         f"S3 as the upload stopped): the next resume keeps {it} if {matches} "
                         "the file")  # fmt: skip
            lines.append(held)
    typer.echo("\n".join(lines))


def _key_status(url: str, endpoint: Any, request_payer: str | None, json_output: bool) -> None:
    from ._orphans import key_status

    target = _object_url(url, None, None)
    assert target is not None
    bucket, key = target
    st = _run(lambda: key_status(bucket, key, endpoint=endpoint, request_payer=request_payer))
    if json_output:
        _emit_json(st)
        return
    if st.exists is None:
        held = "cannot tell (HeadObject refused: s3:GetObject)"
    elif not st.exists:
        held = "does not exist"
    else:
        when = st.last_modified.isoformat(timespec="seconds") if st.last_modified else "?"
        held = (
            f"{format_size(st.size or 0)} ({st.size} bytes), ETag {st.etag}, "
            f"{st.checksum or 'no checksum'}, modified {when}"
        )
    lines = [f"object:      s3://{bucket}/{key}", f"S3:          {held}"]
    if st.uploads is None:
        lines.append("uploads:     cannot tell (ListMultipartUploads refused)")
    elif not st.uploads:
        lines.append("uploads:     none in progress")
    for u in st.uploads or []:
        started = u.initiated.isoformat(timespec="seconds") if u.initiated else "?"
        lines.append(
            f"upload:      {u.upload_id} started {started}, {u.parts} parts "
            f"({format_size(u.bytes)}) billed until aborted"
        )
    typer.echo("\n".join(lines))


@app.command("verify")
@flag_groups
def verify(
    file_arg: Annotated[Path | None, typer.Argument(metavar="[FILE]", show_default=False)] = None,
    url_arg: Annotated[
        str | None, typer.Argument(metavar="[s3://BUCKET/KEY]", show_default=False)
    ] = None,
    s3_bucket: Annotated[str | None, typer.Option("--s3-bucket", help="Bucket.")] = None,
    s3_key: Annotated[str | None, typer.Option("--s3-key", help="Object key.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="The local file.")] = None,
    state_file: Annotated[
        Path | None,
        typer.Option("--state-file", help="The upload's journal: lets verify name the part."),
    ] = None,
    endpoint_flags: EndpointFlags = EndpointFlags(),
    no_progress: NoProgressOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Check an object against a local file without downloading it.

    Exit 0: same bytes; 1: the object or its bucket does not exist, or another error (access
    refused, S3 unreachable); 2: bad input; 4: they differ (the first differing part is named
    when known); 5: cannot tell, and why (e.g. an SSE-KMS ETag and no checksum, or part sizes
    the endpoint will not tell).
    """
    from ._verify import verify_object

    if str(file or file_arg) == "-":
        _usage_error("verify needs the path of a file, not - (standard input)", "FILE")
    local, target_bucket, target_key = _target(
        file or file_arg, url_arg, s3_bucket, s3_key, "--file"
    )
    endpoint = endpoint_flags.endpoint()
    result = _run(
        lambda: verify_object(
            local,
            target_bucket,
            target_key,
            endpoint=endpoint,
            state_file=state_file,
            progress=_progress(not no_progress and not json_output, "verify"),
        )
    )
    if json_output:
        document = {"bucket": target_bucket, "key": target_key, "file": str(local)}
        _emit_json({**document, **dataclasses.asdict(result)})
    else:
        label = {"match": "match", "mismatch": "MISMATCH"}.get(result.outcome, "cannot tell")
        typer.echo(f"{label}: s3://{target_bucket}/{target_key} vs {local}: {result.reason}")
    raise typer.Exit(result.exit_code)


@app.command("bench")
@flag_groups
def bench(
    url_arg: BucketUrlArg = None,
    s3_bucket: Annotated[
        str | None, typer.Option("--s3-bucket", help="A bucket you may write to.")
    ] = None,
    size: Annotated[
        str, typer.Option("--size", help="Bytes uploaded per setting (generated, no file).")
    ] = "1GiB",
    concurrency: Annotated[
        str, typer.Option("--concurrency", "-c", help="Comma-separated settings to try.")
    ] = "1,4,8,16",
    part_size: Annotated[
        str, typer.Option("--part-size", help="Comma-separated part sizes, or 'auto'.")
    ] = "auto",
    max_parts: MaxPartsOpt = 10_000,
    endpoint_flags: EndpointFlags = EndpointFlags(),
    json_output: JsonOpt = False,
) -> None:
    """Measure upload speed to your endpoint per --concurrency / --part-size setting:
    persevere bench s3://BUCKET[/PREFIX].

    Uploads generated data under [PREFIX/]persevere-bench/ and deletes every object afterwards
    (or aborts the upload if a run fails or is interrupted), so nothing is left behind.
    A second Ctrl-C gives that cleanup a few more seconds; a third exits at once, printing
    the exact command that removes what is left.
    """
    from ._bench import CLEANUP_TIMEOUT_S, BenchLeftover, format_table, run_bench

    bucket, prefix = _bucket_url(url_arg, s3_bucket, None)
    under = f"{prefix.rstrip('/')}/persevere-bench/" if prefix.strip("/") else "persevere-bench/"

    def show(row: Any) -> None:
        if not json_output and log.isEnabledFor(logging.WARNING):  # not under -q
            _say(
                f"c={row.concurrency:<3} part {format_size(row.part_size):>9}: "
                f"{row.mb_per_s:8.1f} MB/s"
            )

    total = _parsed(parse_size, size, "--size")
    levels = _parsed(_levels, concurrency, "--concurrency")
    parts = _parsed(lambda text: [_part_size(x) for x in text.split(",") if x.strip()], part_size,
                    "--part-size")  # fmt: skip
    endpoint = endpoint_flags.endpoint()
    leftovers: dict[str, BenchLeftover] = {}

    def left() -> list[str]:
        return [_removal(item) for item in list(leftovers.values())]

    rows = _run(
        lambda: run_bench(
            bucket,
            size=total,
            concurrencies=levels,
            part_sizes=parts,
            endpoint=endpoint,
            on_row=show,
            leftovers=leftovers,
            max_parts=max_parts,
            key_prefix=under,
        ),
        cleanup=_Cleanup(left, CLEANUP_TIMEOUT_S),
    )
    if json_output:
        _emit_json({"bucket": bucket, "size": total, "rows": rows})
    else:
        typer.echo(format_table(rows))


def _removal(item: Any) -> str:
    """The exact command that removes a bench upload the bench could not clean up."""
    bucket, key = shlex.quote(item.bucket), shlex.quote(item.key)
    if item.upload_id is None:
        return (
            f"an upload of s3://{item.bucket}/{item.key} may have been created: "
            f"persevere upload list --s3-bucket {bucket} --prefix {key}"
        )
    command = (
        f"upload {item.upload_id} of s3://{item.bucket}/{item.key}: persevere upload abort "
        f"--s3-bucket {bucket} --s3-key {key} --upload-id {shlex.quote(item.upload_id)}"
    )
    if item.completing:
        command += f" (and delete s3://{item.bucket}/{item.key} if it was completed)"
    return command


_DRY_ACTIONS = {
    "start": "start the upload",
    "resume": "resume the upload",
    "check": "check the upload completed earlier",
}


def _print_dry_run(report: Any, json_output: bool) -> None:
    if json_output:
        _emit_json({"dry_run": True, **dataclasses.asdict(report)})
        return
    r = report
    if r.object_exists is None:
        exists = "cannot tell (HeadObject refused)"
    else:
        exists = "exists" if r.object_exists else "does not exist yet"
    checksum = r.checksum_algorithm + (
        "" if r.checksum_pinned else " (default; Content-MD5 if the endpoint does not confirm it)"
    )
    parts = f"{r.part_count:,} part(s) of {format_size(r.part_size)}"
    lines = [
        f"dry run: would {_DRY_ACTIONS[r.action]}; nothing sent, no state file written",
        f"file:        {r.file} ({format_size(r.size)}, {r.size} bytes)",
        f"object:      s3://{r.bucket}/{r.key} ({exists})",
        f"plan:        {parts} ({r.part_size} bytes), checksum {checksum}",
        f"state file:  {r.state_file} ({r.state})",
        f"endpoint:    {r.endpoint_url or 'AWS default'}  region: {r.region or '-'}"
        f"  profile: {r.profile or '-'}",
        f"probe:       {r.probe}",
    ]
    if r.leftover:
        lines.append(f"left over:   the probe's upload: {r.leftover}")
    typer.echo("\n".join(lines))


def _print_result(result: Any, json_output: bool, state_file: Path) -> None:
    from ._logs import event

    fields = {**dataclasses.asdict(result), "state_file": str(state_file.absolute())}
    log.info("done", extra=event("completed", **fields))
    if json_output:
        _emit_json({**dataclasses.asdict(result), "state_file": str(state_file.absolute())})
        return
    rate = result.bytes_sent / result.elapsed_s if result.elapsed_s > 0 else 0.0
    verb, how = "uploaded", f"{result.elapsed_s:.1f}s ({format_size(rate)}/s)"
    if result.already_completed:  # by an earlier run: this one read and sent nothing
        verb, how = "already completed", "nothing sent"
    typer.echo(
        f"{verb} s3://{result.bucket}/{result.key}: {format_size(result.size)} in "
        f"{result.part_count} part(s), {how}; "
        f"{result.checksum_algorithm} {result.checksum}, ETag {result.etag}"
    )


def main() -> None:
    from . import _s3

    _s3.FROZEN_UNTIL_EXIT = True  # the process ends with the command: see _s3.open_client
    # Until a command's work starts (its event loop then watches the signals), a stop signal
    # finds nothing begun: exit as interrupted, with its code, not as killed.
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _stopped_before_starting)
    if hasattr(signal, "pthread_sigmask"):  # a shard of --processes starts with them held
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    app(prog_name="persevere")


def _stopped_before_starting(signum: int, frame: object) -> None:
    name = signal.Signals(signum).name
    if "--under-processes" not in sys.argv:  # a shard's parent says it, for all
        _say(f"persevere: {name} received before anything started; nothing to resume")
    os._exit(_exit_code(name))
