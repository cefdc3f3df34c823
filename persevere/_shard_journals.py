"""The journals of a sharded upload's shards: named beside the state file, each a shard's own.

Every shard (:mod:`._shards`) records its parts in ``STATE.shard-I-of-N``, a journal of its own
that starts with a copy of the upload's header. Whoever completes the upload (resume, ``cp``)
or reports on it (status, a completed upload re-checked) merges them into the main journal's
state; completion is refused while a shard still holds its journal's lock.
"""

from __future__ import annotations

import glob
import logging
import re
from pathlib import Path

from ._errors import StateFileError, StateFileLocked, UploadFinished, UsageError
from ._journal import Header, Journal, JournalState, locked_elsewhere, read_state
from ._plan import PartPlan

log = logging.getLogger("persevere")

_SHARD_FILE = re.compile(r"\.shard-(\d+)-of-(\d+)$")


def shard_journal(state_path: Path, shard: int, shards: int) -> Path:
    return state_path.with_name(f"{state_path.name}.shard-{shard}-of-{shards}")


def _shard_journals(state_path: Path) -> list[Path]:
    paths = sorted(state_path.parent.glob(f"{glob.escape(state_path.name)}.shard-*-of-*"))
    # Regular files only: opening a FIFO that took a shard journal's name would block.
    return [path for path in paths if _SHARD_FILE.search(path.name) and path.is_file()]


def journals_of(state_path: Path) -> list[Path]:
    """The shard journals beside ``state_path`` (regular files named as a shard's)."""
    return _shard_journals(state_path)


def refuse_shard_journal(path: Path, header: Header) -> None:
    """A shard's own journal given as the upload's state file (the name beside it a user
    tab-completes to): completing, aborting or reporting from it would skip the other shards'
    journals and their locks, and leave the state file saying "in progress"."""
    found = _SHARD_FILE.search(path.name)
    if found and header.shards == int(found[2]):
        main = path.with_name(path.name[: found.start()])
        raise UsageError(
            f"{path} is the journal of shard {found[1]}/{found[2]} of the upload in {main}, "
            "not its state file",
            hint=f"give the upload's state file, {main}",
            param="state_file",
        )


def being_run(state_path: Path) -> bool:
    """Is the upload ``state_path`` records being run: its journal, or a shard's, locked by
    another process?"""
    return locked_elsewhere(state_path) or any(map(locked_elsewhere, _shard_journals(state_path)))


def refuse_running_shards(state_path: Path) -> None:
    """Completion must wait for the shards still running (each holds its journal's lock): one
    completed under it would then fail, and an Indexed Job count that as a failure."""
    for path in _shard_journals(state_path):
        if locked_elsewhere(path):  # (gone or unreadable: merge_shards says so)
            raise StateFileLocked(
                f"shard journal {path.name} is in use: that shard is still running",
                hint="wait for it to finish (or stop it), then complete the upload",
            )


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
        taken = [n for n in shard.parts if n not in state.parts and n not in state.invalid]
        state.parts.update((number, shard.parts[number]) for number in taken)
        if taken:
            state.from_shards[str(path)] = (shard.identity, taken)


def refuse_misfits(path: Path, state: JournalState) -> None:
    """A journal (the main one, its shards' merged in, or a shard's own) whose part does not
    fit the upload's plan is corrupt: a line altered but still valid."""
    plan = state.header.plan(path)
    for number, part in state.parts.items():
        if not plan.fits(number, part.size):
            layout = (
                f"plan of {plan.part_count} parts of {plan.part_size} bytes"
                if isinstance(plan, PartPlan)
                else f"stream schedule of parts of {plan.first} bytes, doubling every "
                f"{plan.every} parts"
            )
            raise StateFileError(
                f"{path}: part {number} (size {part.size}) does not fit the upload's "
                f"{layout}: corrupt state file"
            )


def open_shard_journal(state_path: Path, shard: int, shards: int) -> tuple[Journal, JournalState]:
    """The shard's own journal: created with a copy of the header, or opened (and locked)."""
    main = read_state(state_path)
    if main.finished is not None:
        raise UploadFinished(f"the upload in {state_path} is already {main.finished}")
    path = shard_journal(state_path, shard, shards)
    if path.exists():
        try:
            journal, state = Journal.open(path)
        except StateFileLocked:
            raise
        except StateFileError:
            if locked_elsewhere(path):  # (another run of this shard, making it now)
                raise StateFileLocked(
                    f"state file {path} is in use by another persevere process",
                    hint="wait for it to finish, or stop it first",
                ) from None
            if b"\n" in path.read_bytes():
                raise
            # Empty, or its header torn: a stop as it was made (a kill -9, a power cut). It
            # recorded nothing: made again (it said "start the upload again", which would
            # throw away every other shard's parts).
            log.warning("%s records nothing (a stop as it was made): made again", path)
            path.unlink()
        else:
            if state.header.upload_id == main.header.upload_id:
                return journal, state
            # Left by an earlier upload under the same state file name: never send to that one.
            log.warning("%s belongs to another upload: replaced", path)
            journal.discard()
    journal = Journal.create(path)  # (kept open and locked: no other run takes it meanwhile)
    journal.write_header(main.header)
    return journal, JournalState(main.header)
