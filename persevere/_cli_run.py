"""Running a command's coroutine, and putting what came of it into words.

:func:`_run` runs one coroutine with SIGINT/SIGTERM turned into a clean stop (exit 130;
SIGHUP 129), :func:`_fail` reports one of persevere's own errors as one line (naming the flag
of the parameter the error names, and the command that resumes or aborts) and exits with its
code; under ``--json`` the error is also the one JSON document on stdout. Progress, and the
printing of results and dry runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

from . import _errors
from ._logs import LogLineProgress, event, json_line, json_lines, one_line
from ._platform import STOP_SIGNALS
from ._units import format_size

T = TypeVar("T")

log = logging.getLogger("persevere")

# The API parameters a core error may name whose flag is their name (part_size: --part-size).
_FLAGGED = {"part_size", "max_parts", "no_overwrite", "concurrency", "checksum", "state_file",
            "endpoint_url", "profile", "ca_bundle", "metadata", "tagging", "sse_kms_key_id",
            "expected_bucket_owner", "expected_size"}  # fmt: skip

# What an error's next step is said with, before its command (persevere upload STEP ...).
_NEXT_STEPS = {"resume": "the upload is resumable", "abort": "to give it up"}

_json_output = False  # the running command was given --json: its errors are JSON on stdout too
# The exit code of a command that failed (or found a mismatch) while it says so: kept when
# standard output cannot take what it says (a full disk, a reader gone), so that a supervisor
# still reads "run again later" (3) or "needs a person" (1, 2). 0: none yet.
failed_with = 0


def failing(code: int) -> int:
    """Note the command's exit code before its result is printed (see :data:`failed_with`)."""
    global failed_with
    failed_with = code
    return code


def _note_json(value: bool) -> bool:
    global _json_output
    _json_output = value
    return value


# -- running a coroutine, and reporting ------------------------------------------------------
def _fail(exc: _errors.PersevereError) -> NoReturn:
    flag = f"--{exc.param.replace('_', '-')}" if exc.param in _FLAGGED else None
    where = f"{flag}: " if flag and flag not in exc.message else ""
    lines = [f"error: {where}{exc.message}", *([exc.hint] if exc.hint else [])]
    command = exc.next_command
    if exc.state_file and exc.exit_code != _errors.EXIT_USAGE and exc.next_step in _NEXT_STEPS:
        # (absolute: the command is run later, from a supervisor's or a shell's own directory)
        state = shlex.quote(os.path.abspath(exc.state_file))
        if command is None or exc.next_step != "resume":  # (a shard's: its own, set by _run)
            command = f"persevere upload {exc.next_step} --state-file {state}"
        from ._journal import records_stream

        if exc.next_step == "resume" and records_stream(Path(exc.state_file)):
            command = f"PRODUCER | {command}"  # (a stream resumes from the stream piped in)
        lines.append(f"{_NEXT_STEPS[exc.next_step]}: {command}")
    fields = {"exit_code": failing(exc.exit_code), "hint": exc.hint, "next_command": command}
    if json_lines():
        log.error(f"{where}{exc.message}", extra=event("error", **fields))
    else:
        for line in lines:
            _say(f"persevere: {line}")
    if _json_output:  # the one JSON document on stdout too: a script parsing it always gets one
        _emit_json({"error": f"{where}{exc.message}", **fields})
    raise typer.Exit(exc.exit_code)


def _reported(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, one of persevere's own errors reported (:func:`_fail`)."""
    try:
        return fn(*args, **kwargs)
    except _errors.PersevereError as exc:
        _fail(exc)


def _usage_error(message: str, flag: str | None = None) -> NoReturn:
    """Bad input a command finds itself (not click while parsing): click's usual report, or
    under --json persevere's JSON one; exit 2 either way."""
    if _json_output:
        _fail(_errors.UsageError(f"{flag}: {message}" if flag else message))
    raise typer.BadParameter(message, param_hint=flag)


def _run(
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    resumable_state: Path | None = None,
    left_behind: Callable[[], list[str]] | None = None,
    grace_s: float = 0.0,
    hurried_by_parent: bool = False,
    stopped: tuple[str, str] | None = None,
    resumed_by: str | None = None,
    **kwargs: Any,
) -> T:
    """Run ``fn(*args, **kwargs)`` on the event loop; Ctrl-C/SIGTERM (exit 130) and SIGHUP
    (129) cancel it. (``fn``'s own keywords are none of the ones below.)

    A result that was reached before the signal took effect is still the result: a Ctrl-C
    after the upload completed does not turn success into "interrupted".

    ``stopped``: the message and hint of a stop signal, when the command has its own.
    ``resumed_by``: the command that resumes this run, when it is not ``upload resume`` (a
    shard's).

    ``left_behind``: a command that removes what it made (bench) says with it, as exact
    commands, what would stay behind if it ended now. A second signal gives its cleanup
    ``grace_s`` more seconds; a third, or the end of the grace, exits at once, printing them.

    ``hurried_by_parent``: a shard process of ``--processes``. One Ctrl-C reaches it twice
    (from the terminal, to the whole process group, and passed on by its parent), so a
    signal after the first is not a second stop: the parent, which gets the user's second
    Ctrl-C too, ends it at once if the user insists. Its errors name no command to run next:
    the parent names it, once.
    """
    import anyio

    from ._journal import completed_here, holds_upload
    from ._loop import run

    interrupted: str | None = None
    hurried = False  # a second signal came: the cleanup's grace is running
    journal = resumable_state is not None or stopped is not None  # else: a cleanup, or nothing
    settling = "the journal is being settled" if journal else "cleaning up"
    again_note = "every recorded part is safe in the state file" if journal else "cleanup cut short"

    def exit_now(name: str) -> NoReturn:
        lines = left_behind() if left_behind is not None else []
        note = again_note
        if left_behind is not None:
            note = "left behind:" if lines else "nothing was left behind"
        _say(f"persevere: {name} again: exiting now; {note}")
        for line in lines:
            _say(f"persevere:   {line}")
        os._exit(_exit_code(interrupted))

    async def main() -> T:
        result: list[T] = []
        failure: list[_errors.PersevereError] = []
        work = anyio.CancelScope()
        async with anyio.create_task_group() as tg:

            async def exit_after_grace(name: str) -> None:
                await anyio.sleep(grace_s)
                exit_now(name)

            async def watch_signals(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                # Watches for the whole run: the first signal stops the work cleanly (the
                # journal settles); a second one, while that is under way, exits at once
                # (a cleanup first gets its grace, and a third signal cuts that short).
                nonlocal interrupted, hurried
                with _ignored_once_closed(anyio.open_signal_receiver(*STOP_SIGNALS)) as signals:
                    task_status.started()
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if signum == signal.SIGHUP:
                            _hung_up()
                        if resumable_state is not None and completed_here(resumable_state):
                            # (the object complete and recorded: what is left is saying so)
                            log.info("%s received: the upload is complete, finishing", name)
                            continue
                        if not interrupted:
                            interrupted = name
                            log.warning("%s received: stopping, %s", name, settling)
                            work.cancel()
                        elif left_behind is not None and not hurried:
                            hurried = True
                            log.warning(
                                "%s again: finishing the cleanup first (at most %.0fs; once "
                                "more to exit at once)",
                                name,
                                grace_s,
                            )
                            tg.start_soon(exit_after_grace, name)
                        elif hurried_by_parent:
                            log.info("%s again: already stopping", name)
                        else:
                            exit_now(name)

            await tg.start(watch_signals)
            with work:
                try:
                    result.append(await fn(*args, **kwargs))
                except _errors.PersevereError as exc:
                    failure.append(exc)  # raised below, not wrapped in the task group's group
            tg.cancel_scope.cancel()
        if result:
            return result[0]
        if failure and not interrupted:
            raise failure[0]
        stop = _errors.Interrupted(f"interrupted ({interrupted})")
        stop.exit_code = _exit_code(interrupted)
        raise stop

    try:
        try:
            with _logging_around_bars():
                return run(main)
        finally:
            # The work is over (done, failed or stopped; the journal settled): what is left is
            # saying so. A signal now must not turn that into death by signal: a supervisor
            # would take a success for a failure, or a clean error for a crash.
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
    except _errors.PersevereError as exc:
        if isinstance(exc, _errors.Interrupted):
            if hurried_by_parent:  # a shard of --processes: the parent says it once, for all
                raise typer.Exit(exc.exit_code) from None
            if stopped is not None:  # (message, hint): a command's own words (cp DIR)
                exc.message, exc.hint = stopped
            elif resumable_state is not None and holds_upload(resumable_state):
                exc.message = "interrupted; the upload is intact"
                exc.state_file = str(resumable_state)
            elif resumable_state is not None:
                exc.message = "interrupted before the upload was created; nothing to resume"
            elif left_behind is not None and not left_behind():
                exc.message = f"{exc.message}; cleaned up: nothing was left behind"
        if hurried_by_parent:  # a shard of --processes names no command to run next: its
            exc.state_file = None  # parent does, once (it completes or says how to resume)
        elif resumed_by is not None and exc.next_step == "resume" and exc.state_file:
            exc.next_command = resumed_by  # (what resumes this run: a shard's own command)
        # what the cleanup could not remove
        lines = left_behind() if left_behind is not None else []
        if lines:
            exc.hint = "; ".join([*filter(None, [exc.hint]), "left behind: " + "; ".join(lines)])
        _fail(exc)


@contextlib.contextmanager
def _ignored_once_closed(receiver: contextlib.AbstractContextManager[T]) -> Iterator[T]:
    """``receiver`` (anyio's signal receiver), the stop signals ignored the moment it closes.

    Closing it puts the defaults back (asyncio's and uvloop's ``remove_signal_handler``):
    SIGINT raising KeyboardInterrupt, SIGTERM killing. The work is over then, but the task
    group still awaits its end: a signal there was a traceback (a shard of ``--processes``
    gets Ctrl-C twice, from the terminal and from its parent) or a death by signal."""
    try:
        with receiver as signals:
            yield signals
    finally:  # (no await between the defaults put back and this)
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def _exit_code(signal_name: str | None) -> int:
    return 129 if signal_name == "SIGHUP" else _errors.EXIT_INTERRUPTED


def _say(line: str, **error: Any) -> None:
    """A line on stderr that never raises: after SIGHUP the terminal may be gone. Under
    ``--log-format json`` it is one JSON object: an ``error`` event when ``error`` gives its
    fields (``exit_code``...), else a warning."""
    if json_lines():  # (only an error's line says "error: ")
        message = line.removeprefix("persevere: ").removeprefix("error: ")
        name = "error" if error else "log"
        line = json_line("error" if error else "warning", name, message, error, time.time())
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


def _hung_up() -> None:
    """The terminal is gone (SIGHUP): send what would have gone to it nowhere, rather than fail
    on the next write; a supervisor's log (a file, a pipe) keeps working."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            if stream.isatty():
                _to_devnull(stream.fileno())


def _to_devnull(fd: int) -> None:
    """``fd`` writes to /dev/null from now on."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _logging_around_bars() -> contextlib.AbstractContextManager[Any]:
    """Log lines written through tqdm while a command runs, so they never tear its bar.

    A bar is drawn on a terminal only (see :func:`_progress`): elsewhere nothing to route, and
    tqdm (about 15 modules) stays unimported.
    """
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm(loggers=[log])  # type: ignore[no-any-return]


def _progress(enabled: bool, description: str) -> Any:
    from ._progress import NullProgress, TqdmProgress

    if not enabled or log.level >= logging.ERROR:  # --no-progress, --json or --quiet
        return NullProgress()
    if sys.stderr.isatty() and not json_lines():
        return TqdmProgress(description)
    return LogLineProgress(description)


def _emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=_json_default))


def _emitted(document: Any, json_output: bool) -> bool:
    """``document`` printed as the command's one JSON document if ``json_output`` (--json);
    whether it was (if not, the command prints its words)."""
    if json_output:
        _emit_json(document)
    return json_output


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


_DRY_ACTIONS = {
    "start": "start the upload",
    "resume": "resume the upload",
    "check": "check the upload completed earlier",
}


def _print_dry_run(r: Any, json_output: bool) -> None:
    """A dry run's report ``r``."""
    if _emitted({"dry_run": True, **dataclasses.asdict(r)}, json_output):
        return
    exists = "exists" if r.object_exists else "does not exist yet"
    if r.object_exists is None:
        exists = "cannot tell (HeadObject refused)"
    checksum = r.checksum_algorithm + (
        "" if r.checksum_pinned else " (default; Content-MD5 if the endpoint does not confirm it)"
    )
    parts = f"{r.part_count:,} part(s) of {format_size(r.part_size)}"
    lines = [
        f"dry run: would {_DRY_ACTIONS[r.action]}; nothing sent, no state file written",
        f"file:        {one_line(str(r.file))} ({format_size(r.size)}, {r.size} bytes)",
        f"object:      s3://{r.bucket}/{one_line(r.key)} ({exists})",
        f"plan:        {parts} ({r.part_size} bytes), checksum {checksum}",
        f"state file:  {one_line(str(r.state_file))} ({r.state})",
        f"endpoint:    {r.endpoint_url or 'AWS default'}  region: {r.region or '-'}"
        f"  profile: {r.profile or '-'}",
        f"probe:       {r.probe}",
    ]
    if r.leftover:
        lines.append(f"left over:   the probe's upload: {r.leftover}")
    typer.echo("\n".join(lines))


def _print_result(result: Any, json_output: bool, state_file: Path) -> None:
    fields = {**dataclasses.asdict(result), "state_file": str(state_file.absolute())}
    log.info("done", extra=event("completed", **fields))
    if _emitted(fields, json_output):
        return
    rate = result.bytes_sent / result.elapsed_s if result.elapsed_s > 0 else 0.0
    verb, how = "uploaded", f"{result.elapsed_s:.1f}s ({format_size(rate)}/s)"
    if result.already_completed:  # by an earlier run: this one read and sent nothing
        verb, how = "already completed", "nothing sent"
    typer.echo(
        f"{verb} s3://{result.bucket}/{one_line(result.key)}: {format_size(result.size)} in "
        f"{result.part_count} part(s), {how}; "
        f"{result.checksum_algorithm} {result.checksum}, ETag {result.etag}"
    )
