"""The ``persevere`` command: a thin layer over the coroutines in :mod:`._upload`.

It parses flags, runs one coroutine under anyio (uvloop where available) with SIGINT/SIGTERM
turned into a clean stop, and reports: results on stdout, progress and errors on stderr.
It catches persevere's own errors only; anything else is a bug and keeps its traceback.

Exit codes: 0 ok, 1 error, 2 bad usage/input, 3 failed but resumable, 130 interrupted.
"""

from __future__ import annotations

import logging
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from . import _errors
from ._units import format_size, parse_duration, parse_size
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

log = logging.getLogger("persevere")


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
) -> None:
    """Resumable, parallel, checksummed multipart uploads of huge files to S3."""
    _setup_logging(logging.INFO if verbose else logging.WARNING)


class _TqdmSafeHandler(logging.Handler):
    """Log lines that do not tear an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(f"persevere: {self.format(record)}", file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _setup_logging(level: int) -> None:
    log.handlers[:] = [_TqdmSafeHandler()]
    log.setLevel(level)
    log.propagate = False


def _size_option(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _progress(enabled: bool, description: str) -> Any:
    from ._progress import LogLineProgress, NullProgress, TqdmProgress

    if not enabled:
        return NullProgress()
    if sys.stderr.isatty():
        return TqdmProgress(description)
    return LogLineProgress(description)


def _fail(exc: _errors.PersevereError) -> None:
    typer.echo(f"persevere: error: {exc.message}", err=True)
    if exc.hint:
        typer.echo(f"persevere: {exc.hint}", err=True)
    if exc.state_file and exc.exit_code != _errors.EXIT_USAGE:
        command = f"persevere upload resume --state-file {shlex.quote(exc.state_file)}"
        if isinstance(exc, _errors.ResumableError | _errors.S3Error | _errors.Interrupted):
            typer.echo(f"persevere: the upload is resumable: {command}", err=True)
    raise typer.Exit(exc.exit_code)


def _run(fn: Callable[[], Awaitable[T]], *, resumable_state: Path | None = None) -> T:
    """Run ``fn`` on the event loop; Ctrl-C/SIGTERM cancel it and exit 130."""
    import anyio

    interrupted = False

    async def main() -> T:
        nonlocal interrupted
        result: list[T] = []
        failure: list[_errors.PersevereError] = []
        async with anyio.create_task_group() as tg:

            async def watch_signals(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                nonlocal interrupted
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    task_status.started()
                    async for signum in signals:
                        interrupted = True
                        name = signal.Signals(signum).name
                        log.warning("%s received: stopping, the journal is being settled", name)
                        tg.cancel_scope.cancel()
                        return

            await tg.start(watch_signals)
            try:
                result.append(await fn())
            except _errors.PersevereError as exc:
                failure.append(exc)  # raised below, not wrapped in the task group's group
            tg.cancel_scope.cancel()
        if failure and not interrupted:
            raise failure[0]
        if interrupted or not result:
            raise _errors.Interrupted("interrupted")
        return result[0]

    try:
        return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": _uvloop()})
    except _errors.Interrupted as exc:
        if resumable_state is not None and _has_header(resumable_state):
            exc.message = "interrupted; the upload is intact"
            exc.state_file = str(resumable_state)
        elif resumable_state is not None:
            exc.message = "interrupted before the upload was created; nothing to resume"
        _fail(exc)
        raise AssertionError("unreachable") from None
    except _errors.PersevereError as exc:
        _fail(exc)
        raise AssertionError("unreachable") from None


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - platforms without uvloop
        return False
    return True


def _has_header(state_file: Path) -> bool:
    try:
        return state_file.stat().st_size > 0
    except OSError:
        return False


def _options(
    concurrency: int, max_retries: int, retry_for: str | None, stall_timeout: float
) -> Any:
    from ._retry import RetryPolicy
    from ._upload import UploadOptions

    retry = RetryPolicy(max_attempts=max_retries + 1)
    if retry_for is not None:
        try:
            retry.patience_s = parse_duration(retry_for)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--retry-for") from None
        retry.max_attempts = 1_000_000  # the patience decides
    return UploadOptions(concurrency=concurrency, retry=retry, stall_timeout_s=stall_timeout)


_SIZE_HELP = "Part size: 'auto' or 5MiB..5GiB (units: 8MiB, 64M, 5GiB, or bytes)."
StateFileOpt = Annotated[
    Path, typer.Option("--state-file", help="The journal of this upload (JSONL).")
]
ConcurrencyOpt = Annotated[
    int,
    typer.Option(
        "--concurrency",
        "-c",
        min=1,
        max=256,
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
    str | None,
    typer.Option(
        "--retry-for",
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


@upload_app.command("start")
def start(
    s3_bucket: Annotated[str, typer.Option("--s3-bucket", help="Destination bucket.")],
    s3_key: Annotated[str, typer.Option("--s3-key", help="Destination object key.")],
    file_to_upload: Annotated[
        Path, typer.Option("--file-to-upload", help="The local file to upload.")
    ],
    state_file: StateFileOpt,
    concurrency: ConcurrencyOpt = 8,
    part_size: Annotated[
        str, typer.Option("--part-size", help=_SIZE_HELP, envvar="PERSEVERE_PART_SIZE")
    ] = "auto",
    checksum: Annotated[
        str,
        typer.Option(
            "--checksum",
            help="CRC64NVME, CRC32C, CRC32 (full-object); SHA256, SHA1 (composite); SHA512, "
            "MD5, XXHASH64, XXHASH3, XXHASH128 where the endpoint supports them.",
        ),
    ] = "CRC64NVME",
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--endpoint-url",
            help="S3 endpoint (default: AWS, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL).",
        ),
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="AWS region.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile.")] = None,
    ca_bundle: CaBundleOpt = None,
    no_progress: NoProgressOpt = False,
    max_retries: MaxRetriesOpt = 9,
    retry_for: RetryForOpt = None,
    stall_timeout: StallOpt = 60.0,
) -> None:
    """Start a new upload, recorded in --state-file (which must not exist)."""
    from ._upload import start_upload

    size = _size_option(part_size)
    result = _run(
        lambda: start_upload(
            file_to_upload,
            s3_bucket,
            s3_key,
            state_file,
            part_size=size,
            checksum=checksum,
            endpoint_url=endpoint_url,
            region=region,
            profile=profile,
            ca_bundle=ca_bundle,
            options=_options(concurrency, max_retries, retry_for, stall_timeout),
            progress=_progress(not no_progress, "upload"),
        ),
        resumable_state=state_file,
    )
    _print_result(result)


@upload_app.command("resume")
def resume(
    state_file: StateFileOpt,
    concurrency: ConcurrencyOpt = 8,
    no_progress: NoProgressOpt = False,
    max_retries: MaxRetriesOpt = 9,
    retry_for: RetryForOpt = None,
    stall_timeout: StallOpt = 60.0,
    verify_parts: Annotated[
        bool,
        typer.Option(
            "--verify-parts",
            help="Re-read the parts already uploaded and compare their checksums (catches a "
            "file changed in place with its mtime kept); changed parts are sent again.",
        ),
    ] = False,
) -> None:
    """Continue an interrupted upload: reconcile with S3, send what is missing, complete."""
    from ._upload import resume_upload

    result = _run(
        lambda: resume_upload(
            state_file,
            options=_options(concurrency, max_retries, retry_for, stall_timeout),
            progress=_progress(not no_progress, "resume"),
            verify_parts=verify_parts,
        ),
        resumable_state=state_file,
    )
    _print_result(result)


@upload_app.command("abort")
def abort(state_file: StateFileOpt) -> None:
    """Abort the upload (S3 deletes its parts) and mark the state file aborted."""
    from ._upload import abort_upload

    header = _run(lambda: abort_upload(state_file))
    typer.echo(f"aborted upload {header.upload_id} of s3://{header.bucket}/{header.key}")


@upload_app.command("status")
def status(state_file: StateFileOpt) -> None:
    """Show what the state file knows and what S3's ListParts says."""
    from ._upload import upload_status

    st = _run(lambda: upload_status(state_file))
    h = st.header
    lines = [
        f"state file:  {st.state_file}",
        f"file:        {h.file_path} ({format_size(h.file_size)}, {h.file_size} bytes)",
        f"object:      s3://{h.bucket}/{h.key}",
        f"endpoint:    {h.endpoint_url or 'AWS default'}  region: {h.region or '-'}"
        f"  profile: {h.profile or '-'}",
        f"upload id:   {h.upload_id}",
        f"parts:       {st.parts_done} of {st.part_count} done "
        f"({format_size(st.bytes_done)} of {format_size(h.file_size)}), "
        f"part size {format_size(h.part_size)}, checksum {h.checksum_algorithm}",
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
            lines.append(
                "S3:          the multipart upload no longer exists (completed or aborted)"
            )
        else:
            lines.append(
                f"S3:          {remote.parts} parts ({format_size(remote.bytes)}) uploaded"
            )
    typer.echo("\n".join(lines))


@app.command("verify")
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
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url", help="S3 endpoint.")] = None,
    region: Annotated[str | None, typer.Option("--region", help="AWS region.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile.")] = None,
    ca_bundle: CaBundleOpt = None,
    no_progress: NoProgressOpt = False,
) -> None:
    """Check an object against a local file without downloading it.

    Exit 0: same bytes; 4: they differ (the first differing part is named when known);
    5: the object offers nothing to compare (e.g. SSE-KMS ETag and no checksum).
    """
    from ._verify import parse_s3_url, verify_object

    local = file or file_arg
    bucket, key = s3_bucket, s3_key
    if url_arg is not None:
        bucket, key = _run(lambda: _parse_url(parse_s3_url, url_arg))
    if local is None or not bucket or not key:
        raise typer.BadParameter("give FILE s3://BUCKET/KEY, or --file, --s3-bucket and --s3-key")
    result = _run(
        lambda: verify_object(
            local,
            bucket,
            key,
            endpoint_url=endpoint_url,
            region=region,
            profile=profile,
            ca_bundle=ca_bundle,
            state_file=state_file,
            progress=_progress(not no_progress, "verify"),
        )
    )
    label = {"match": "match", "mismatch": "MISMATCH"}.get(result.outcome, "cannot tell")
    typer.echo(f"{label}: s3://{bucket}/{key} vs {local}: {result.reason}")
    raise typer.Exit(result.exit_code)


async def _parse_url(parse: Callable[[str], tuple[str, str]], url: str) -> tuple[str, str]:
    return parse(url)


def _print_result(result: Any) -> None:
    rate = result.bytes_sent / result.elapsed_s if result.elapsed_s > 0 else 0.0
    verb = "already completed" if result.already_completed else "uploaded"
    typer.echo(
        f"{verb} s3://{result.bucket}/{result.key}: {format_size(result.size)} in "
        f"{result.part_count} part(s), {result.elapsed_s:.1f}s ({format_size(rate)}/s); "
        f"{result.checksum_algorithm} {result.checksum}, ETag {result.etag}"
    )


def main() -> None:
    app(prog_name="persevere")
