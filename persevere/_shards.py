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

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import anyio

from ._completion import completed_unrecorded, continuing
from ._errors import UploadGone, UsageError
from ._journal import read_state
from ._pipeline import remote_parts
from ._plan import PartPlan
from ._progress import ProgressSink, guarded
from ._request import Continued, Request, given
from ._resume import opened
from ._sender import send
from ._shard_journals import merge_shards, open_shard_journal, refuse_misfits, refuse_shard_journal

log = logging.getLogger("persevere")


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


def shard_from_environment(shards: int | None) -> tuple[int, int] | None:
    """(index, count) from a Kubernetes Indexed Job or a Slurm job array, if running in one."""
    if "JOB_COMPLETION_INDEX" in os.environ and shards:
        return int(os.environ["JOB_COMPLETION_INDEX"]), shards
    if "SLURM_ARRAY_TASK_ID" in os.environ:
        task = int(os.environ["SLURM_ARRAY_TASK_ID"])
        first = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(os.environ.get("SLURM_ARRAY_TASK_COUNT", "0")) or shards
        if shards and count != shards:
            # Not the whole array: a task resubmitted alone (--array=2) is shard 2 of the
            # upload's, the array numbered from 0 as the examples submit it
            return task, shards
        if shards and first != 0:  # (resubmitted alone, its task 3 would be another shard)
            raise UsageError(f"the array is numbered from {first}: number it from 0 "
                             f"(--array=0-{shards - 1}), so that a task is the same shard "
                             "when it is resubmitted alone")  # fmt: skip
        if count:
            return task - first, count
    return None


async def upload_shard(
    state_file: str | Path,
    shard: int,
    shards: int,
    *,
    progress: ProgressSink | None = None,
    **asked: Unpack[Continued],
) -> ShardResult:
    """Upload shard ``shard`` (0-based) of ``shards`` of the upload ``state_file`` records, into
    its own journal beside it. Does not complete: :func:`persevere.resume` does, once every
    shard is done (it sends whatever a shard left, so completion never depends on all of them).
    """
    for name, value in (("shard", shard), ("shards", shards)):
        if type(value) is not int:  # (True ran shard 1; "0", from the environment: TypeError)
            raise UsageError(f"{name} must be a whole number, not {value!r}", param=name)
    request = Request.resumed(state_file, **given(asked, Continued, "upload_shard"))
    return await send_one(request, shard, shards, guarded(progress))


async def send_one(
    request: Request, shard: int, shards: int, progress: ProgressSink
) -> ShardResult:
    """:func:`upload_shard` of ``request`` (as :func:`._resume.resume` takes it)."""
    with continuing(request, progress) as (state_path, started):
        main = await anyio.to_thread.run_sync(read_state, state_path)
        header = main.header
        refuse_shard_journal(state_path, header)
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
        journal, state = await anyio.to_thread.run_sync(
            open_shard_journal, state_path, shard, shards
        )
        with contextlib.closing(journal):
            refuse_misfits(journal.path, state)  # its own journal, checked as the main one is
            # Its parts sent as a resume sends them (reconciled with S3, the file checked), and
            # recorded in its own journal; not completed.
            async with opened(request, journal, state, progress, parts) as kind:
                try:
                    remote = await remote_parts(kind.session)
                except UploadGone:
                    # Completed by a run killed before it recorded that (then every part is
                    # recorded, here or in another shard's journal): done, as above.
                    await anyio.to_thread.run_sync(merge_shards, state_path, main)
                    if await completed_unrecorded(kind.session, plan, main.parts) is None:
                        raise
                    log.warning("the upload in %s was completed (S3 holds its object; "
                                "'upload resume' records it): nothing left for shard %d/%d",
                                state_path, shard, shards)  # fmt: skip
                    return ShardResult(shard, shards, parts, 0, time.monotonic() - started)
                _, ledger, feed = await kind.prepare(remote)
                sent = await send(kind.session, ledger, request.transfer, progress, feed)
    return ShardResult(shard, shards, parts, sent, time.monotonic() - started)
