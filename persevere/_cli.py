"""The ``persevere`` command: a thin layer over the coroutines of the API.

It parses flags (typer; choices, sizes, rates and durations are checked by click before any
request, with click's usual error; flags several commands share come as one group each, see
:mod:`._flag_groups`), runs one coroutine with SIGINT/SIGTERM turned into a clean
stop, and reports: results on stdout, progress and errors on stderr. It catches persevere's own
errors only (naming the flag of the parameter a core error names); anything else is a bug and
keeps its traceback.

This module is the app and its root options; the commands are plain functions registered here
from :mod:`._cli_upload` (start, cp, resume, shard) and :mod:`._cli_admin` (abort, list,
status, verify, bench), their flags declared in :mod:`._cli_flags`, the running and the words in
:mod:`._cli_run`.

Exit codes: 0 ok, 1 error, 2 bad usage/input, 3 failed but resumable, 130 interrupted
(Ctrl-C, SIGTERM), 129 hung up (SIGHUP: the terminal closed, the ssh session dropped).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from typing import Annotated, Literal

import click
import typer

from . import _cli_run, _errors
from ._cli_admin import abort, bench, list_uploads, status, verify
from ._cli_run import _exit_code, _reported, _say, _to_devnull
from ._cli_upload import cp, resume, shard, start
from ._flag_groups import flag_groups
from ._logs import setup
from ._platform import STOP_SIGNALS, require_supported
from ._version import __version__

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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"persevere {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more detail.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Only errors on stderr (no warnings).")] = False,
    log_format: Annotated[Literal["text", "json"], typer.Option(
        "--log-format", envvar="PERSEVERE_LOG_FORMAT",
        help="stderr as text, or one JSON object per line (start, progress, retry, throttle, "
        "completed, error...) for log collectors.")] = "text",
) -> None:  # fmt: skip
    """Resumable, parallel, checksummed multipart uploads of huge files to S3."""
    # JSON lines are for collectors: their events (start, progress, completed) are info.
    # While a command runs on a terminal, tqdm.contrib.logging routes the handler through the bar
    # (see _run), so log lines never tear it.
    detail = verbose or log_format == "json"
    setup(logging.ERROR if quiet else logging.INFO if detail else logging.WARNING,
          json_lines=log_format == "json")  # fmt: skip
    _reported(require_supported)  # Windows: one line before any command starts (._platform)


# The commands, in the order help lists them: each a plain function of its own module, named
# after it (but list), its flag groups spread into their options (._flag_groups).
for upload_command in (start, resume, shard, abort):
    upload_app.command()(flag_groups(upload_command))
upload_app.command("list")(flag_groups(list_uploads))
upload_app.command()(flag_groups(status))
for command in (cp, verify, bench):
    app.command()(flag_groups(command))


def main() -> None:
    from . import _s3
    from ._loop import fill_closed_stdio, pause_collector, resume_collector

    fill_closed_stdio()  # (<&-, >&-, 2>&-: see there)
    _names_not_utf8_printable()
    pause_collector()  # until the command's work starts: see _loop.pause_collector

    _s3.FROZEN_UNTIL_EXIT = True  # the process ends with the command: see _s3.open_client
    _s3.CA_FILE_UNUSED = True  # no request here uses aiohttp's default TLS contexts
    _s3.MODELS_CACHE_DIR = _models_cache_dir()
    # Until a command's work starts (its event loop then watches the signals), a stop signal
    # finds nothing begun: exit as interrupted, with its code, not as killed.
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stopped_before_starting)
    if hasattr(signal, "pthread_sigmask"):  # a shard of --processes starts with them held
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        app(prog_name="persevere")
    except OSError as exc:  # click stops an EPIPE itself (exit 1); ENOSPC, EIO would be a traceback
        if any(arg.startswith("--install-completion") for arg in sys.argv[1:]):
            # typer's installer, where HOME or the shell's startup file cannot take it
            where = f" ({exc.filename})" if exc.filename else ""
            print(f"persevere: error: cannot install the shell completion: {exc.strerror or exc}"
                  f"{where}", file=sys.stderr)  # fmt: skip
            print("persevere: --show-completion prints it: add that to the shell's startup "
                  "file yourself", file=sys.stderr)  # fmt: skip
            raise SystemExit(_errors.EXIT_ERROR) from None
        if isinstance(exc, FileNotFoundError):
            _refuse_if_working_directory_gone()
        if not _writing_stdout(exc):
            raise
        _stdout_lost(exc.strerror or str(exc))
        raise SystemExit(_cli_run.failed_with or _errors.EXIT_ERROR) from None
    except BaseExceptionGroup as group:  # (from a command's task group)
        if group.subgroup(FileNotFoundError) is not None:
            _refuse_if_working_directory_gone()
        raise
    except SystemExit as exc:
        if exc.code == _errors.EXIT_ERROR and _stdout_reader_gone():  # click's EPIPE: silent
            _stdout_lost("its reader is gone")
            if _cli_run.failed_with:
                raise SystemExit(_cli_run.failed_with) from None
        raise
    finally:
        resume_collector(freeze=False)  # nothing ran on the loop (a usage error, --help)


def _refuse_if_working_directory_gone() -> None:
    """A file not found because the working directory was removed (a shell left in a
    directory a deploy deleted): every relative path fails, in the first place that makes
    it absolute. One line and exit 2, not that place's traceback."""
    try:
        os.getcwd()
    except FileNotFoundError:
        from ._cli_run import _fail

        gone = _errors.UsageError(
            "the working directory no longer exists (it was removed): a relative path "
            "cannot be found from it",
            hint="cd to a directory that exists, or give absolute paths",
        )
        try:
            _fail(gone)
        except click.exceptions.Exit as done:  # (the command has left click, which ends it)
            raise SystemExit(done.exit_code) from None


def _names_not_utf8_printable() -> None:
    """A file name that is not UTF-8 (``os.fsdecode``'s surrogates) printed as ``\\udcff``, as
    Python prints it on stderr, rather than a UnicodeEncodeError: under a UTF-8 locale other
    than C.UTF-8 (en_US.UTF-8) standard output's errors are "strict", and ``cp DIR`` died
    listing such a file as failed."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(OSError, ValueError):
                stream.reconfigure(errors="backslashreplace")


def _writing_stdout(exc: OSError) -> bool:
    """Whether ``exc`` was raised writing to standard output (by ``echo``, into its ``file``)."""
    import traceback

    for frame, _ in traceback.walk_tb(exc.__traceback__):
        stream = frame.f_locals.get("file") if frame.f_code.co_name == "echo" else None
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if stream is not None and stream.fileno() == 1:
                return True
    return False


def _stdout_reader_gone() -> bool:
    """Standard output is a pipe whose reader closed it (``| head -c1``)."""
    import select

    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _stdout_lost(why: str) -> None:
    """One line for a result standard output did not take; it then goes to /dev/null, so that
    the interpreter's last flush does not fail on it again."""
    _say(f"persevere: error: the result could not be written to standard output ({why}); "
         "what the command did stands: run it again to see it",
         exit_code=_cli_run.failed_with or _errors.EXIT_ERROR, hint=None,
         next_command=None)  # fmt: skip
    with contextlib.suppress(OSError):
        _to_devnull(1)


def _models_cache_dir() -> str | None:
    """``$XDG_CACHE_HOME/persevere/botocore``, else under ``~/.cache``; None if neither is an
    absolute path (a relative one would put the cache in whatever directory the command ran)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.expanduser(os.path.join("~", ".cache"))
    return os.path.join(base, "persevere", "botocore") if os.path.isabs(base) else None


def _stopped_before_starting(signum: int, frame: object) -> None:
    name = signal.Signals(signum).name
    message = f"{name} received before anything started; nothing to resume"
    fields = {"exit_code": _exit_code(name), "hint": None, "next_command": None}
    if "--under-processes" not in sys.argv:  # a shard's parent says it, for all
        _say(f"persevere: {message}", **fields)
        if _cli_run._json_output:  # --json was read: its one document, as for any error
            with contextlib.suppress(OSError):
                sys.stdout.flush()
                os.write(1, (json.dumps({"error": message, **fields}, indent=2) + "\n").encode())
    os._exit(_exit_code(name))
