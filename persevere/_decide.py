"""cp's choice, pure: what to do with what the state file holds and what I/O found since.

cp (:func:`._cp.copy`) and its ``--dry-run`` both loop on :func:`decide`: decide, act (start,
resume, check the object, or probe it), learn, decide again. The dry run acts by asking S3
read-only questions instead, so it can no longer disagree with cp. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._journal import HeaderTorn, JournalState

Action = Literal["start", "resume", "check", "done", "restart", "refuse"]
# What the state file holds: nothing, an empty file, a header torn by a crash (what the
# journal said of it), or the replayed journal.
Found = JournalState | HeaderTorn | Literal["none", "empty"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    why: str | None = None  # logged (start, restart), or what is refused


@dataclass(frozen=True, slots=True)
class Source:
    """What this run uploads: a stream, or a file of ``size`` bytes. ``write_once``: a stream
    that may not replace an object, so one its upload completed is read through and compared."""

    stream: bool
    size: int | None = None
    write_once: bool = False


@dataclass(frozen=True, slots=True)
class Learnt:
    """What I/O found since the state file was read.

    ``object_ours``: the object is still the upload's own (its completion was recorded, or an
    earlier run completed it and crashed before recording it) and the file still gives its
    parts; None: not asked yet. ``upload_gone``: the upload no longer exists on S3.
    ``why``: what was found, in words."""

    object_ours: bool | None = None
    upload_gone: bool = False
    why: str | None = None


def decide(
    found: Found, source: Source, conflicts: list[str], learnt: Learnt = Learnt()
) -> Decision:
    """``conflicts``: what this run asks that the journal recorded otherwise (refused where
    the upload would go on, or be found done; moot for an object that is not its own)."""
    if isinstance(found, HeaderTorn):
        return Decision(
            "start",
            f"{found}: nothing to resume, starting again (an upload it "
            "created is not recorded: 'persevere upload list' shows it, to abort)",
        )
    if isinstance(found, str) or found.finished == "aborted":
        return Decision("start")
    header = found.header
    if found.finished == "completed":
        if source.stream and (not source.write_once or conflicts):
            return Decision("start")  # sent again: proving it the object would read it all
        if learnt.object_ours is None:
            return Decision("check")
        if learnt.object_ours:
            return _refuse(conflicts) or Decision("done")  # found done: options must agree
        return Decision("start", None if source.stream else f"{learnt.why}: uploading it again")
    if refused := _refuse(conflicts):  # the upload would go on with options it ignores
        return refused
    if not source.stream and source.size != header.file_size:
        return Decision(
            "restart",
            f"{header.file_path} changed since the upload started (size "
            f"{header.file_size:,} -> {source.size:,} bytes): its parts on S3 cannot make it",
        )
    if learnt.upload_gone:
        if source.stream or learnt.object_ours is False:
            return Decision("restart", learnt.why)
        if learnt.object_ours is None:
            return Decision("check")  # did an earlier run complete it, and crash?
        return Decision("done")
    return Decision("resume")


def _refuse(conflicts: list[str]) -> Decision | None:
    return Decision("refuse", "; ".join(conflicts)) if conflicts else None
