"""The commands that upload: ``upload start``, ``cp``, ``upload resume``, ``upload shard``.

Each turns its flags into one :class:`._request.Request` (start and cp:
:meth:`._cli_flags.SendFlags.request`; resume and shard: :meth:`._cli_flags.ContinueFlags.request`,
what the state file records), runs the core's
coroutine on it (:func:`._cli_run._run`) and reports the result; ``--processes`` runs the
shards as processes of their own, then completes the upload here."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from . import _errors
from ._cli_flags import (
    PROCESSES_AUTO,
    ContinueFlags,
    FileArg,
    ObjectUrlArg,
    ProcessesOpt,
    ResumeFlags,
    SendFlags,
    StateFileOpt,
    _auto_processes,
    _target,
    is_directory,
    one_file,
)
from ._cli_run import (
    _emit_json,
    _emitted,
    _print_dry_run,
    _print_result,
    _progress,
    _reported,
    _run,
    _usage_error,
)
from ._cli_tree import TreeFlags, cp_tree, tree_shard_of_parent
from ._logs import NamingStateFile, say_plan, setup
from ._units import format_size


# -- commands --------------------------------------------------------------------------------
def start(
    file_arg: FileArg = None,
    url_arg: ObjectUrlArg = None,
    s3_bucket: Annotated[str | None, typer.Option(
        "--s3-bucket", help="Destination bucket.")] = None,
    s3_key: Annotated[str | None, typer.Option("--s3-key", help="Destination object key.")] = None,
    file_to_upload: Annotated[Path | None, typer.Option(
        "--file-to-upload", help="The local file to upload.")] = None,
    state_file: Annotated[Path | None, typer.Option(
        "--state-file",
        help="The journal of this upload (JSONL); must not exist. Default: FILE.persevere beside "
        "the file (a block device's, or a stream's, under $XDG_STATE_HOME/persevere).")] = None,
    flags: SendFlags = SendFlags(),
    shards: Annotated[int | None, typer.Option(
        "--shards", min=1,
        help="Create the upload for this many shards and send nothing: run 'persevere upload "
        "shard' for each (any host), then 'upload resume' completes.")] = None,
    processes: ProcessesOpt = None,
) -> None:  # fmt: skip
    """Start a new upload: persevere upload start FILE s3://BUCKET/KEY (or the long flags).

    FILE '-' reads standard input: a pipe is uploaded as a stream (see --expected-size); a
    file or block device redirected in (< file) is read as that file.
    """
    from ._cp import journal_kept_apart, locate_state_file, long_name, make_state_dir, own_name
    from ._request import Request, resolve_source
    from ._s3 import Endpoint
    from ._source import inspect_file
    from ._upload import create_sharded, upload

    started = time.monotonic()  # --processes: the summary's time is the whole upload's
    file, bucket, key = _target(
        one_file(file_arg, file_to_upload, "--file-to-upload"),
        url_arg,
        s3_bucket,
        s3_key,
        "--file-to-upload",
    )
    source = _reported(resolve_source, file)  # '-': a stream, or a file redirected in
    progress = _progress(not flags.no_progress and not flags.json_output, "upload")
    explicit = state_file is not None and not flags.dry_run
    if state_file is None:
        if source.stream or journal_kept_apart(source.path):  # under $XDG_STATE_HOME
            state_file = _reported(locate_state_file, source.path, bucket, key)
            if not flags.dry_run:  # (which makes nothing)
                _reported(make_state_dir, state_file)
        else:  # ('.' and '/' have no name to give it: directories, refused as such)
            if not source.path.name:
                _reported(inspect_file, source.path)
            state_file = source.path.with_name(source.path.name + ".persevere").absolute()
            if long_name(state_file.name):  # (its shard journals' names would not fit)
                state_file = state_file.with_name(own_name(state_file.parent / source.path.name,
                                                           bucket, key))  # fmt: skip
        progress = NamingStateFile(progress, state_file)
    if shards is not None and processes is not None and processes != shards:
        # (--processes N runs N shards here; --shards N prints N for other hosts to run)
        given = "auto" if processes == PROCESSES_AUTO else processes
        _usage_error(f"--shards {shards} and --processes {given} disagree: --processes "
                     "runs one shard per process; give one of them", "--processes")  # fmt: skip
    auto = processes == PROCESSES_AUTO  # resolved once the parts are known
    request = flags.request(source, bucket, key, state_file, flags.endpoint_flags.endpoint(),
                            shards or (None if auto else processes))  # fmt: skip
    plan = None  # the file's part plan; none for a stream (its parts follow its own schedule)
    if not source.stream:
        with contextlib.suppress(_errors.PersevereError):  # a plan the core refuses: it says why
            plan = request.layout(inspect_file(source.path))
            say_plan(plan)
    if flags.dry_run:
        from ._dry_run import dry_run_start

        if shards is None and processes is not None:  # (the run gives no more than the parts)
            request = dataclasses.replace(request, shards=None)
        _print_dry_run(_run(dry_run_start, request), flags.json_output)
        return
    if explicit:  # its directory, not made yet: made (as cp makes it) once the input is good
        from ._journal import require_regular

        checked = dataclasses.replace(request, shards=None) if shards is None else request
        _reported(checked.check)  # (what needs no request to S3, refused first)
        if not source.stream:
            _reported(checked.layout, _reported(inspect_file, source.path))
        _reported(require_regular, state_file.expanduser().absolute())  # (a path none can be)
        _reported(make_state_dir, state_file.expanduser().absolute())
    if auto:  # one: the usual run here (a stream; a plan the core refuses, and says why)
        processes = _auto_processes(shards or (plan.part_count if plan else 1))
    if shards is not None or processes is not None:
        if shards is None and processes is not None:  # no more processes than parts
            processes = min(processes, plan.part_count if plan else processes)
            request = dataclasses.replace(request, shards=processes)
        count = request.shards
        header = _run(create_sharded, request, resumable_state=state_file)
        if processes is None:  # the commands to run; for a script, the same as JSON
            quoted = shlex.quote(str(state_file.absolute()))
            if not _emitted({
                "upload_id": header.upload_id, "bucket": bucket, "key": key,
                "state_file": str(state_file.absolute()), "shards": count,
                "shard_commands": [f"persevere upload shard --state-file {quoted} --shard "
                                   f"{index}/{count}" for index in range(count)],
                "complete_command": f"persevere upload resume --state-file {quoted}",
            }, flags.json_output):  # fmt: skip
                typer.echo(
                    f"created upload {header.upload_id} of s3://{bucket}/{key} in {count} "
                    f"shards; on any host that sees the file, run for I in 0..{count - 1}:\n"
                    f"  persevere upload shard --state-file {quoted} --shard I/{count}\n"
                    f"then complete it: persevere upload resume --state-file {quoted}"
                )
            return
        # --no-verify-ssl is never recorded: the shards and the completion are given it too
        # (the warning was said once, as the endpoint was made).
        insecure = Endpoint(verify_ssl=False) if flags.endpoint_flags.no_verify_ssl else None
        _complete_in_processes(Request(state_file, endpoint=insecure, transfer=request.transfer),
                               processes, flags, started)  # fmt: skip
        return
    result = _run(upload, request, progress, resumable_state=state_file,
                  resumed_by=_insecure(flags, state_file))  # fmt: skip
    _print_result(result, flags.json_output, state_file)


def cp(
    file: Annotated[Path, typer.Argument(metavar="FILE", show_default=False)],
    url: Annotated[str, typer.Argument(metavar="s3://BUCKET/KEY", show_default=False)],
    state_file: Annotated[Path | None, typer.Option(
        "--state-file",
        help="The journal of this upload. Default: FILE.persevere beside the file if that "
        "directory is writable (FILE.DIGEST.persevere if FILE.persevere records another "
        "destination), else under $XDG_STATE_HOME/persevere; for '-' (a stream), "
        "stdin.DIGEST.persevere there.")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="Keep the journal in this directory instead.")] = None,
    flags: SendFlags = SendFlags(),
    tree: TreeFlags = TreeFlags(),
) -> None:  # fmt: skip
    """Upload FILE to s3://BUCKET/KEY (a directory: each file under s3://BUCKET/PREFIX/);
    run it again until it exits 0.

    Starts the upload, or resumes the one its state file records, or (already uploaded)
    exits 0 at once. For cron, systemd and Kubernetes: exit 0 done; 3 or 129/130 run again
    later; 1 and 2 need a person.
    """
    from ._cp import copy, locate_state_file
    from ._request import resolve_source

    if state_file is not None and state_dir is not None:
        _usage_error("give --state-file or --state-dir, not both", "--state-dir")
    if is_directory(file):
        cp_tree(file, url, state_file=state_file, state_dir=state_dir, tree=tree, flags=flags)
        return
    if tree.given:
        _usage_error(f"{tree.given} is for a directory; {file} is not one", tree.given)
    given, bucket, key = _target(file, url, None, None, "FILE")
    source = _reported(resolve_source, given)
    journal = _reported(locate_state_file, source.path, bucket, key, state_file=state_file,
                        state_dir=state_dir)  # fmt: skip
    endpoint = flags.endpoint_flags.endpoint()  # checked even when the state file's is used
    named = endpoint.endpoint_url is not None or endpoint.profile is not None
    if not flags.endpoint_flags.given and not named:
        # A new upload's from the environment, a resumed one's recorded; but an endpoint or
        # profile the environment names (AWS_ENDPOINT_URL, AWS_PROFILE) is where the object
        # must be, as a flag's.
        endpoint = None
    request = flags.request(source, bucket, key, journal, endpoint)
    if flags.dry_run:
        from ._dry_run import dry_run_cp
        from ._logs import note_decimal
        from ._plan import PartPlan

        report = _run(dry_run_cp, request)
        if report.action == "start":  # (as the run says it, with its plan)
            note_decimal(PartPlan(report.size, report.part_size))
        _print_dry_run(report, flags.json_output)
        return
    result = _continued(request, "upload", flags, copy, resumed_by=_insecure(flags, journal))
    _print_result(result, flags.json_output, journal)


def resume(
    state_file: StateFileOpt,
    flags: ResumeFlags = ResumeFlags(),
    processes: ProcessesOpt = None,
) -> None:
    """Continue an interrupted upload: reconcile with S3, send what is missing, complete.

    --endpoint-url, --profile and --ca-bundle override what the state file recorded.
    """
    from ._resume import resume as resume_request

    started = time.monotonic()
    request = flags.request(state_file)
    if processes == PROCESSES_AUTO:  # a stream, or an upload that is over: this process
        from ._processes import pieces_of

        processes = _auto_processes(_reported(pieces_of, state_file))
    if processes is not None:
        from ._journal import read_state
        from ._processes import shard_count

        state = _reported(read_state, state_file)
        if state.finished is None:  # finished: nothing to split, the resume below says how
            if state.header.stream:
                _usage_error("a stream cannot be split into shards: it is read once, in order",
                             "--processes")  # fmt: skip
            # as made; no more than its parts
            processes = _reported(shard_count, state_file, processes)
            _complete_in_processes(request, processes, flags, started)
            return
    result = _continued(request, "resume", flags, resume_request,
                        resumed_by=flags.resumed_by(state_file))  # fmt: skip
    _print_result(result, flags.json_output, state_file)


def shard(
    state_file: StateFileOpt,
    shard_spec: Annotated[str | None, typer.Option(
        "--shard", metavar="I/N",
        help="Upload shard I (0-based) of N. Default: from JOB_COMPLETION_INDEX (Kubernetes "
        "Indexed Job, with the header's shard count) or SLURM_ARRAY_TASK_ID.")] = None,
    flags: ContinueFlags = ContinueFlags(),
    under_processes: Annotated[bool, typer.Option(
        "--under-processes", hidden=True,
        help="Run by --processes: the parent passes a stop on (see _run).")] = False,
) -> None:  # fmt: skip
    """Upload one shard of an upload made with 'upload start --shards N' (any host that sees
    the file and the state file's directory); 'upload resume' completes once all are done.

    A shard keeps its own journal beside the state file, and is resumable: run it again.
    """
    if under_processes:  # its request is a value on standard input: see _shard_of_parent
        _shard_of_parent()
        return
    from ._journal import read_state
    from ._shards import send_one, shard_from_environment

    recorded = _reported(read_state, state_file).header.shards
    if shard_spec is not None:
        index_text, _, count_text = shard_spec.partition("/")
        try:
            index, count = int(index_text), int(count_text or recorded or 0)
        except ValueError:
            _usage_error(f"not I/N: {shard_spec!r}", "--shard")
        if count < 1:
            _usage_error("give the shard count: I/N", "--shard")
    else:
        try:
            found = shard_from_environment(recorded)
        except ValueError as exc:  # (JOB_COMPLETION_INDEX=abc: was a traceback)
            _usage_error(f"the job's shard index is not a number ({exc})", "--shard")
        except _errors.UsageError as exc:
            _usage_error(exc.message, "--shard")
        if found is None:
            _usage_error(
                "give --shard I/N (or run as a Kubernetes Indexed Job or a Slurm array task)",
                "--shard",
            )
        index, count = found
    # (where the file is on this host, the endpoint's overrides: the run again needs them)
    again = flags.resumed_by(state_file, "upload", "shard") + f" --shard {index}/{count}"
    result = _continued(flags.request(state_file), f"shard {index}/{count}", flags,
                        lambda given, sink: send_one(given, index, count, sink),
                        resumed_by=again)  # fmt: skip
    parts = [result.parts.start, result.parts.stop - 1]
    if not _emitted({**dataclasses.asdict(result), "parts": parts}, flags.json_output):
        typer.echo(
            f"shard {index}/{count}: parts {parts[0]}..{parts[1]} done, "
            f"{format_size(result.bytes_sent)} sent in {result.elapsed_s:.1f}s"
        )


def _continued(
    request: Any,
    what: str,
    flags: SendFlags | ContinueFlags,
    call: Any,
    resumed_by: str | None = None,
) -> Any:
    """``call(request, progress)`` run as every command's coroutine is (:func:`._cli_run._run`),
    resumable from the request's state file: cp's, resume's, or a shard's (``resumed_by``:
    its own command)."""
    progress = _progress(not flags.no_progress and not flags.json_output, what)
    return _run(call, request, progress, resumable_state=request.state_file,
                resumed_by=resumed_by)  # fmt: skip


def _shard_of_parent() -> None:
    """A shard process of ``--processes``: its :class:`._processes.ShardRequest` (every option
    its parent was given) is read from standard input, not from flags; it logs as its parent
    does, stops under the parent's rules (see :func:`._cli_run._run`: a repeat of the stop is
    the same stop, and the parent names the command to resume, once) and writes what it sent
    as a JSON document on standard output."""
    from ._processes import read_request
    from ._progress import NullProgress
    from ._request import Request
    from ._shards import send_one

    given = read_request(sys.stdin.buffer)
    setup(given.log_level, json_lines=given.json_lines)
    request = given.request
    if not isinstance(request, Request):  # a tree's shard: its files, its own journal
        tree_shard_of_parent(given)
        return
    result = _run(lambda: send_one(request, given.shard, given.shards, NullProgress()),
                  resumable_state=request.state_file, hurried_by_parent=True)  # fmt: skip
    _emit_json({"bytes_sent": result.bytes_sent})


def _complete_in_processes(
    request: Any, processes: int, flags: SendFlags | ContinueFlags, started: float
) -> None:
    """--processes N: :func:`._processes.upload_in_processes` of the request, the completion
    run as every command's coroutine is (:func:`._cli_run._run`); its summary."""
    from ._processes import upload_in_processes

    state_file = request.state_file
    # (resume's flags the next run needs; start's, --no-verify-ssl, which is never recorded)
    again = flags.resumed_by(state_file) if isinstance(flags, ContinueFlags) else _insecure(
        flags, state_file)  # fmt: skip
    result = _reported(
        upload_in_processes, request, processes,
        _progress(not flags.no_progress and not flags.json_output, "complete"),
        runner=lambda complete: _run(complete, resumable_state=state_file, resumed_by=again),
        started=started,
        sending=_progress(not flags.no_progress and not flags.json_output, "upload"),
    )  # fmt: skip
    _print_result(result, flags.json_output, state_file)


def _insecure(flags: SendFlags, state_file: Path) -> str | None:
    """The resume command of a run given --no-verify-ssl (never recorded: the next run needs
    it as much); None: the usual one."""
    if not flags.endpoint_flags.no_verify_ssl:
        return None
    quoted = shlex.quote(os.path.abspath(state_file))
    return f"persevere upload resume --state-file {quoted} --no-verify-ssl"
