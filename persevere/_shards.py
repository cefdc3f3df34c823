"""Shards of one upload: its parts split among N processes or hosts, no coordinator of ours.

S3 lets any client upload any part of a multipart upload, and ListParts is the ledger, so the
shards need nothing but the state file and a shared view of the file (a parallel filesystem,
NFS, or the same machine)::

                         state file S (the header, written once by `start --shards N`)
                        /            |              \\
    shard 0: parts 1..k      shard 1: k+1..2k   ...  shard N-1        (`upload shard`, one
    journal S.shard-0-of-N   S.shard-1-of-N          S.shard-N-1-of-N  process or host each;
             \\                   |                    /                nobody shares a file)
              `-- `upload resume --state-file S` (or `cp` again): merges every shard journal
                  with ListParts, adopts what a dead shard sent but did not record, sends
                  what is missing, completes.

Each shard takes a contiguous range of parts (each host reads one region of the file), keeps
its own journal (fsync'd per part, locked: two processes cannot run one shard) and is
resumable like a whole upload: kill it and run it again. The engines that schedule shards are
the ones people run: ``--processes N`` on one machine, Kubernetes Indexed Jobs
(``JOB_COMPLETION_INDEX``), Slurm job arrays (``SLURM_ARRAY_TASK_ID``), Dask tasks (the
Python API: :func:`upload_shard`, then :func:`persevere.resume`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from ._completion import attach_state_file, endpoint_of, session_of
from ._errors import (
    PersevereError,
    StateFileError,
    StateFileLocked,
    UploadFinished,
    UsageError,
)
from ._journal import Journal, JournalState, read_state
from ._options import UploadOptions
from ._plan import PartPlan
from ._platform import lock_exclusive
from ._progress import NullProgress, ProgressSink
from ._s3 import Endpoint, open_client
from ._source import SourceFile, inspect_file

log = logging.getLogger("persevere")

_SHARD_FILE = re.compile(r"\.shard-(\d+)-of-(\d+)$")


@dataclass(frozen=True, slots=True)
class ShardResult:
    shard: int
    shards: int
    parts: range
    bytes_sent: int
    elapsed_s: float


def shard_range(part_count: int, shard: int, shards: int) -> range:
    """Shard ``shard`` (0-based) of ``shards``: a contiguous run of part numbers, the runs as
    equal as they can be."""
    base, extra = divmod(part_count, shards)
    start = shard * base + min(shard, extra)
    return range(start + 1, start + base + (1 if shard < extra else 0) + 1)


def shard_journal(state_path: Path, shard: int, shards: int) -> Path:
    return state_path.with_name(f"{state_path.name}.shard-{shard}-of-{shards}")


def shard_from_environment(shards: int | None) -> tuple[int, int] | None:
    """(index, count) from a Kubernetes Indexed Job or a Slurm job array, if running in one."""
    if "JOB_COMPLETION_INDEX" in os.environ and shards:
        return int(os.environ["JOB_COMPLETION_INDEX"]), shards
    if "SLURM_ARRAY_TASK_ID" in os.environ:
        first = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(os.environ.get("SLURM_ARRAY_TASK_COUNT", "0")) or shards
        if count:
            return int(os.environ["SLURM_ARRAY_TASK_ID"]) - first, count
    return None


def _shard_journals(state_path: Path) -> list[Path]:
    paths = sorted(state_path.parent.glob(f"{state_path.name}.shard-*-of-*"))
    # Regular files only: opening a FIFO that took a shard journal's name would block.
    return [path for path in paths if _SHARD_FILE.search(path.name) and path.is_file()]


def refuse_running_shards(state_path: Path) -> None:
    """Completion must wait for the shards still running (each holds its journal's lock): one
    completed under it would then fail, and an Indexed Job count that as a failure."""
    for path in _shard_journals(state_path):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # gone or unreadable: merge_shards says so
        try:
            if not lock_exclusive(fd):
                raise StateFileLocked(
                    f"shard journal {path.name} is in use: that shard is still running",
                    hint="wait for it to finish (or stop it), then complete the upload",
                )
        finally:
            os.close(fd)  # releases the lock at once


def merge_shards(state_path: Path, state: JournalState) -> None:
    """Add to ``state`` the parts its shards' journals recorded (the main journal's own records
    win: they are newer). A shard journal that cannot be read is skipped with a warning: its
    parts are rebuilt from ListParts and the file's bytes, like any unrecorded part."""
    for path in _shard_journals(state_path):
        try:
            shard = read_state(path)
        except StateFileError as exc:
            log.warning("%s (its parts are rebuilt from S3 and the file)", exc)
            continue
        if shard.header.upload_id != state.header.upload_id:
            log.warning("%s belongs to another upload: ignored", path)
            continue
        taken = []
        for number, part in shard.parts.items():
            if number not in state.parts and number not in state.invalid:
                state.parts[number] = part
                taken.append(number)
        if taken:
            state.from_shards[str(path)] = taken


async def upload_shard(
    state_file: str | Path,
    shard: int,
    shards: int,
    *,
    options: UploadOptions | None = None,
    progress: ProgressSink | None = None,
    verify_parts: bool = False,
    file: str | Path | None = None,
    endpoint: Endpoint | None = None,
) -> ShardResult:
    """Upload shard ``shard`` (0-based) of ``shards`` of the upload ``state_file`` records, into
    its own journal beside it. Does not complete: :func:`persevere.resume` does, once every
    shard is done (it sends whatever a shard left, so completion never depends on all of them).
    """
    from ._resume import _Resumption

    options = options or UploadOptions()
    progress = progress or NullProgress()
    options.validate()
    started = time.monotonic()
    state_path = Path(state_file).expanduser().absolute()  # noqa: ASYNC240 - no I/O
    try:
        main = await anyio.to_thread.run_sync(read_state, state_path)
        header = main.header
        if not 0 <= shard < shards:
            raise UsageError(f"shard {shard} is not one of 0..{shards - 1}", param="shard")
        if header.shards is not None and header.shards != shards:
            raise UsageError(
                f"the upload in {state_path} is split into {header.shards} shards, not {shards}",
                param="shard",
            )
        plan = header.plan(state_path)
        if not isinstance(plan, PartPlan):
            raise UsageError("a stream cannot be split into shards: it is read once, in order")
        parts = shard_range(plan.part_count, shard, shards)
        if main.finished == "completed":
            # A restarted pod or a requeued array task after the upload was completed: its
            # shard is done, whoever finished it (exit 0, as cp's "already completed").
            log.warning("the upload in %s already completed: nothing left for shard %d/%d",
                        state_path, shard, shards)  # fmt: skip
            return ShardResult(shard, shards, parts, 0, time.monotonic() - started)
        journal, state = await anyio.to_thread.run_sync(_open_shard, state_path, shard, shards)
        try:
            identity = await anyio.to_thread.run_sync(inspect_file, Path(file or header.file_path))
            with SourceFile(identity) as source:
                where = endpoint_of(header).overridden_by(endpoint)
                async with open_client(where, options) as client:
                    run = _Resumption(
                        session_of(client, header, options.retry), source, journal, state, plan,
                        options, progress, only=parts,
                    )  # fmt: skip
                    sent = await run.send_shard(verify_parts)
        finally:
            progress.close()
            journal.close()
    except PersevereError as exc:
        attach_state_file(exc, state_path)
        raise
    return ShardResult(shard, shards, parts, sent, time.monotonic() - started)


def _open_shard(state_path: Path, shard: int, shards: int) -> tuple[Journal, JournalState]:
    """The shard's own journal: created with a copy of the header, or opened (and locked)."""
    main = read_state(state_path)
    if main.finished is not None:
        raise UploadFinished(f"the upload in {state_path} is already {main.finished}")
    path = shard_journal(state_path, shard, shards)
    if path.exists():
        journal, state = Journal.open(path)
        if state.header.upload_id == main.header.upload_id:
            return journal, state
        # Left by an earlier upload under the same state file name: never send to that one.
        log.warning("%s belongs to another upload: replaced", path)
        journal.discard()
    journal = Journal.create(path)
    journal.write_header(main.header)
    journal.close()
    return Journal.open(path)
