"""``persevere cp DIR s3://BUCKET/PREFIX/``: the tree's flags, and its summary."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli_flags import (
    PROCESSES_AUTO,
    ProcessesOpt,
    SendFlags,
    _auto_processes,
    _checked,
    _help,
)
from ._cli_run import (
    _emit_json,
    _emitted,
    _progress,
    _reported,
    _run,
    _say,
    _usage_error,
    failing,
)
from ._errors import EXIT_USAGE
from ._logs import one_line as shown
from ._units import format_size
from ._urls import parse_bucket_url

log = logging.getLogger("persevere")

# fmt: off
IncludeOpt = Annotated[list[str] | None, typer.Option(
    "--include", metavar="GLOB",
    help="A directory: upload only the files whose path under it matches (repeatable; * matches "
    "across /).")]
ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--exclude", metavar="GLOB",
    help="A directory: leave out the files whose path under it matches (repeatable).")]
FollowOpt = Annotated[bool, typer.Option(
    "--follow-symlinks",
    help="A directory: follow symbolic links (default: listed as not uploaded).")]
CheckRemoteOpt = Annotated[bool, typer.Option(
    "--check-remote",
    help="A directory: look at the object of each file recorded as done and unchanged "
    "(HeadObject: size and checksum), and send again what differs.")]
ShardOpt = Annotated[str | None, typer.Option(
    "--shard", metavar="I/N",
    help="A directory: upload only shard I (0-based) of N, its files chosen by their path, with a "
    "journal of its own (for job arrays: --shard $SLURM_ARRAY_TASK_ID/N); the same command "
    "without --shard then takes the shards' journals in and sends what is left.")]
TreeProcessesOpt = Annotated[int | None, _help(
    ProcessesOpt,
    "A directory: split it into N shards (1..64, by file path), each a process of its own (an "
    "event loop and a core each), then take their journals in and send what is left. 'auto': one "
    "per usable core, no more than the tree has files (one: the usual single process). It pays "
    "only when this process is the limit (CPU-bound: many small files), not the server or the "
    "link: cores the server shares are not idle ones.")]
# fmt: on


@dataclasses.dataclass(frozen=True)
class TreeFlags:
    """What only a directory takes."""

    include: IncludeOpt = None
    exclude: ExcludeOpt = None
    follow_symlinks: FollowOpt = False
    check_remote: CheckRemoteOpt = False
    shard: ShardOpt = None
    processes: TreeProcessesOpt = None

    def shard_spec(self) -> tuple[int, int] | None:
        """``--shard I/N`` as (I, N); None: the whole tree."""
        if self.shard is None:
            return None
        index, slash, count = self.shard.partition("/")
        try:
            spec = int(index), int(count)
        except ValueError:
            _usage_error(f"not I/N: {self.shard!r}", "--shard")
        if not slash or not 0 <= spec[0] < spec[1]:
            _usage_error(f"not I/N with 0 <= I < N: {self.shard!r}", "--shard")
        return spec

    @property
    def given(self) -> str | None:
        """The first of these flags given (None: none): each is its field's name."""
        given = (field.name for field in dataclasses.fields(self) if getattr(self, field.name))
        return next((f"--{name.replace('_', '-')}" for name in given), None)


def cp_tree(
    root: Path,
    url: str,
    *,
    state_file: Path | None,
    state_dir: Path | None,
    tree: TreeFlags,
    flags: SendFlags,
) -> None:
    from ._tree import (
        TreeRequest,
        copy_tree,
        dry_run_tree,
        locate_tree_state,
        prefix_of,
        tree_state_instead,
    )

    for flag, given in (("--no-overwrite", flags.no_overwrite),
                        ("--expected-size", flags.expected_size is not None)):  # fmt: skip
        if given:
            _usage_error(f"{flag} is not supported for a directory yet", flag)
    bucket, url_prefix = _checked(parse_bucket_url, url)
    prefix = prefix_of(url_prefix)
    root = Path(os.path.realpath(root.expanduser()))  # one name for it: the journal's
    endpoint, object_flags = flags.endpoint_flags.endpoint(), flags.object_flags
    options = object_flags.parameters(root)
    if object_flags.content_type is None:
        options.pop("ContentType", None)  # each file's, from its name
    journal = _reported(locate_tree_state, root, bucket, prefix, endpoint,
                        state_file=state_file, state_dir=state_dir)  # fmt: skip
    request = TreeRequest(root, bucket, prefix, journal, tuple(tree.include or ()),
                          tuple(tree.exclude or ()), tree.follow_symlinks, tree.check_remote,
                          flags.part_size, flags.max_parts, flags.checksum, options or None,
                          endpoint if flags.endpoint_flags.given else None,
                          flags.transfer.options(), shard=tree.shard_spec(),
                          state_instead=None if state_file or state_dir else tree_state_instead(
                              root, bucket, prefix, endpoint, journal))  # fmt: skip
    if tree.processes not in (None, 1) and request.shard is not None:  # (a dry run too)
        _usage_error("give --shard or --processes, not both", "--processes")
    if flags.dry_run:
        dry = _run(dry_run_tree, request)
        failing(dry.exit_code)
        _print_tree(dry, flags.json_output, dry_run=True)
        if dry.exit_code:  # (what the run would fail with, as it would)
            raise typer.Exit(dry.exit_code)
        return
    progress = _progress(not flags.no_progress and not flags.json_output, "upload")
    stopped = (
        "interrupted; every file recorded done is kept",
        f"run the same command again: it sends what is not done (state file {journal})",
    )
    processes = tree.processes
    if processes == PROCESSES_AUTO:  # no more than the files (not walked for one core)
        from ._processes import usable_cores

        processes = _auto_processes(len(_reported(request.walk).files) if usable_cores() > 1 else 1)
    started = time.monotonic()
    runs: list[Any] = []
    if processes is not None and processes > 1:
        # --processes N: the tree's N shards as processes of their own (each given its request
        # as a value, :mod:`._processes`), then the whole run here: it takes their journals in
        # and sends what they left. Its result counts what the shards sent.
        from ._processes import run_children, shard_requests

        runs = _reported(run_children, shard_requests(request, processes))
        codes = [run.exit_code for run in runs]
        if any(codes):
            log.warning("shard exit codes %s: the whole run sends what they left", codes)
    result = _run(copy_tree, request, progress, stopped=stopped)
    if runs:
        result.bytes_sent += sum(run.bytes_sent for run in runs)
        # What the shards sent, the whole run found done: listed as sent by this run, not
        # skipped.
        # (a shard process killed says nothing: its journal, taken in, says what it sent)
        sent = {rel for run in runs for rel in run.sent} | {r for r, b in result.taken_in if not b}
        resent = {rel for run in runs for rel in run.resent} | {r for r, b in result.taken_in if b}
        sent -= set(result.sent)
        resent -= {*result.resent, *result.sent, *sent}
        result.by_shards = min(result.skipped, len(sent) + len(resent))
        result.skipped -= result.by_shards
        result.sent = sorted({*result.sent, *sent})
        result.resent = sorted({*result.resent, *resent})
        result.elapsed_s = time.monotonic() - started
    failing(result.exit_code)
    _print_tree(result, flags.json_output)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def tree_shard_of_parent(given: Any) -> None:
    """A shard process of ``cp DIR --processes``, ``given`` its
    :class:`._processes.ShardRequest`: its files, its journal; what it sent, as JSON on
    standard output (the parent reads it)."""
    from ._progress import NullProgress
    from ._tree import copy_tree

    mine = dataclasses.replace(given.request, shard=(given.shard, given.shards))
    result = _run(copy_tree, mine, NullProgress(), hurried_by_parent=True)
    _emit_json({"bytes_sent": result.bytes_sent, "exit_code": result.exit_code,
                "sent": result.sent, "resent": result.resent})  # fmt: skip
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _print_tree(result: Any, json_output: bool, dry_run: bool = False) -> None:
    where = f"s3://{result.bucket}/{result.prefix}"
    if _emitted({**dataclasses.asdict(result), "destination": where, "dry_run": dry_run,
                 "failed": [{"path": p, "error": e, "exit_code": c} for p, e, c in result.failed],
                 "refused": [{"path": p, "why": w} for p, w in result.refused],
                 "exit_code": result.exit_code}, json_output):  # fmt: skip
        return
    if dry_run:
        head = (
            f"dry run: {where}: {result.files:,} file(s): would send {len(result.sent):,}, send "
            f"again {len(result.resent):,}, skip {result.skipped:,} unchanged; "
            f"{format_size(result.bytes_sent)} to send; nothing sent, no request made, no "
            "state file written"
        )
    else:
        rate = result.bytes_sent / result.elapsed_s if result.elapsed_s > 0 else 0.0
        # (--processes: of the files sent, those the shard processes sent)
        by_shards = f" ({result.by_shards:,} by the shard processes)" if result.by_shards else ""
        head = (
            f"{'uploaded' if not result.failed else 'not complete'}: {where}: {result.files:,} "
            f"file(s): {len(result.sent):,} sent, {len(result.resent):,} sent again{by_shards}, "
            f"{result.skipped:,} unchanged, {len(result.failed):,} failed; "
            f"{format_size(result.bytes_sent)} in {result.elapsed_s:.1f}s"
            + (f" ({format_size(rate)}/s)" if result.sent or result.resent else "")
        )
    lines = [head, *(f"not uploaded: {path} ({why})" for path, why in result.refused)]
    lines += [f"removed locally, object kept: {path}" for path in result.removed]
    lines += [f"{'would fail' if dry_run else 'failed'}: {path}: {why}"
              for path, why, _ in result.failed]  # fmt: skip
    if not dry_run:
        lines += [f"unfinished upload aborted (not needed now): {path}"
                  for path in result.aborted]  # fmt: skip
    lines.append(f"state file: {result.state_file}")
    typer.echo("\n".join(map(shown, lines)))  # (one line each, whatever a name holds)
    if result.failed and dry_run:  # (as the run would: the same exit code)
        _say(f"persevere: {len(result.failed):,} file(s) would not be uploaded",
             exit_code=result.exit_code, hint=None, next_command=None)  # fmt: skip
    elif result.failed:
        # (a name S3 cannot take, exit 2, fails again until it is renamed or left out)
        how = (
            "fix or leave out (--exclude) the files said, then "
            if result.exit_code == EXIT_USAGE
            else ""
        )
        _say(f"persevere: {len(result.failed):,} file(s) not uploaded; {how}run the same command "
             "again (files done are not sent again)", exit_code=result.exit_code, hint=None,
             next_command=None)  # fmt: skip
