"""An upload its state file records as completed: is that still so?

``cp`` re-run, ``upload resume`` and :func:`persevere.resume` meet a journal whose last line
says ``completed``. That is success (exit 0, ``UploadResult.already_completed``, nothing read
or sent) while it is still true: the object still has the size and checksum the completion
recorded (one HeadObject), and the file still gives the recorded parts (its identity is the
recorded one, or every part is re-read and matches). ``cp``, whose job is to make the object
equal the file, uploads again when it is not; resume, which continues one upload, says why.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio

from ._checksums import ObjectChecksum, b64, get_algorithm
from ._completion import UploadResult, endpoint_of, make_result, planned, session_of
from ._errors import PersevereError, ResumableError, S3Error, SourceChanged, StateFileError
from ._journal import Header, Journal, JournalState
from ._options import UploadOptions
from ._plan import PartPlan
from ._quirks import credentials_expired, missing, object_matches
from ._retry import Call, TransientError
from ._s3 import Endpoint, open_client
from ._shard_journals import merge_shards
from ._source import FileIdentity, SourceFile
from ._write_once import head_or_refusal

log = logging.getLogger("persevere")

# "same": still done. "unreadable": HeadObject was refused (no s3:GetObject), so the object
# cannot be checked (the file is: it still gives the parts). "gone" or "replaced": the
# object is not the upload's any more. "changed": the file no longer gives the recorded parts.
Outcome = Literal["same", "unreadable", "gone", "replaced", "changed"]


@dataclass(frozen=True, slots=True)
class Recheck:
    outcome: Outcome
    why: str = ""  # what is no longer so, in words


async def recheck(
    state: JournalState,
    state_path: Path,
    identity: FileIdentity | None,
    endpoint: Endpoint | None,
    *,
    verify_parts: bool = False,
    options: UploadOptions | None = None,
    file_if_unreadable: bool = False,
) -> Recheck:
    """Is the completed upload ``state`` records still the object, and ``identity`` (None: a
    stream, which cannot be read again) still its file? ``options``: the run's (its retry
    policy, for the first call). ``file_if_unreadable``: the file is checked even when the
    object cannot be (resume, for which nothing else would check it).

    The object is asked for its size and stored checksum (or ETag); the file's identity is
    compared with the recorded one and, only if it changed (or ``verify_parts``, or a block
    device, which no time dates), the recorded parts are re-read; a file proven equal has
    its identity recorded, so the next run trusts it.
    """
    header = state.header
    outcome = state.outcome or {}
    async with open_client(endpoint_of(header).overridden_by(endpoint)) as client:
        session = session_of(client, header, (options or UploadOptions()).policy(Call.FIRST))
        session.exhausted = _unanswered
        head = await head_or_refusal(session)
    # The file is checked all the same when the object cannot be (no s3:GetObject): then
    # the best it can be is "unreadable", the journal's word for the object.
    same = Recheck("same")
    if isinstance(head, S3Error):
        if missing(head):
            return Recheck("gone", f"{session.where} is gone ({head.code})")
        same = Recheck("unreadable", f"{session.where} cannot be read ({head.code})")
        if not file_if_unreadable:  # (cp uploads it again: reading the file first is waste)
            return same
    else:
        recorded = ObjectChecksum.parse(session.algorithm, str(outcome.get("checksum")))
        etag = str(outcome.get("etag") or "-")
        if not object_matches(head, outcome.get("size"), recorded, etag):
            source = "a stream" if identity is None else str(identity.path)
            return Recheck("replaced", f"{session.where} is no longer the object uploaded from "
                           f"{source} (replaced since)")  # fmt: skip
    if state.invalid:
        # A resume found parts of the file (as recorded last) to differ from the parts the
        # object was completed from: the identity recorded is not the object's.
        return Recheck("changed", f"{header.file_path} was found to differ from the object "
                       f"(part {min(state.invalid)}) when it was last read")  # fmt: skip
    if identity is None:
        return same
    differ = identity.differences(FileIdentity.of_record(state.identity))
    if not differ and not identity.block_device and not verify_parts:
        return same
    log.warning("%s: %s; re-reading it", identity.path, why_reread(identity, differ, "it was"))
    if header.shards:  # its parts were recorded by its shards, in journals of their own
        await anyio.to_thread.run_sync(merge_shards, state_path, state)
    if not await anyio.to_thread.run_sync(_file_gives_parts, state, identity):
        return Recheck("changed", f"{identity.path} changed since it was uploaded")
    await anyio.to_thread.run_sync(_record_identity, state_path, identity)
    return same


def _unanswered(what: str, exc: TransientError, attempts: int) -> PersevereError:
    """HeadObject of the completed upload's object got no answer: nothing to resume, nothing
    changed; the same command, later."""
    error = ResumableError(f"{what} failed {attempts} times, last: {exc}")
    return run_again(error, exc.code, "the upload completed earlier and nothing was changed:")


def run_again(error: PersevereError, code: str | None, unchanged: str) -> PersevereError:
    """``error``, S3's answer missing (retries exhausted) where ``unchanged`` says nothing was
    changed: no upload to speak of, the same command to run later (``code``: the last failure's,
    expired credentials to renew first)."""
    error.hint = (
        "renew the credentials (aws sso login, a new session...), then run again"
        if credentials_expired(code)
        else f"{unchanged} check the endpoint and the network, then run the same command again"
    )
    error.next_step = None
    return error


def why_reread(identity: FileIdentity, differ: list[str], what: str) -> str:
    """Why the recorded parts are all read again: ``differ`` (what changed in the file's
    identity, since ``what`` uploaded), a block device, or asked to."""
    if differ:
        return f"its {', '.join(differ)} changed since {what} uploaded"
    return "a block device (no time of it dates its bytes)" if identity.block_device else "as asked"


def result_of(state: JournalState, started: float) -> UploadResult:
    """The result of an upload found already completed: nothing sent by this run. A stream's
    size and part count are known once it ended: what the completion recorded."""
    header = state.header
    outcome = state.outcome or {}
    plan = header.plan()
    part_count = plan.part_count if isinstance(plan, PartPlan) else max(len(state.parts), 1)
    size = int(outcome.get("size", header.file_size))
    etag = str(outcome.get("etag") or "")
    return make_result(
        header, part_count, size, etag, outcome.get("checksum"), 0, started, already=True
    )


def changed_since(
    header: Header, why: str, hint: str = "upload it again, as a new upload (persevere cp does)"
) -> SourceChanged:
    """The object is the completed upload's, but the file is not what made it any more."""
    newer = SourceChanged(
        f"s3://{header.bucket}/{header.key} was completed from {header.file_path} as it was; {why}",
        hint=hint,
    )
    newer.next_step = None  # the upload is finished: nothing to resume or abort
    return newer


def _record_identity(state_path: Path, identity: FileIdentity) -> None:
    """The file was proven equal to the object: the next run trusts this identity."""
    with contextlib.suppress(StateFileError):  # locked by another run, or a full disk: later
        journal, _ = Journal.open(state_path)
        with contextlib.closing(journal):
            journal.append_source(identity.as_record())


def _file_gives_parts(state: JournalState, identity: FileIdentity) -> bool:
    header = state.header
    if identity.size != header.file_size:
        return False
    plan = planned(header, PartPlan)  # a file never stands for a stream (other_source)
    algorithm = get_algorithm(header.checksum_algorithm)
    scratch = memoryview(bytearray(min(plan.part_size, 8 << 20)))
    with SourceFile(identity) as source:
        for number in plan.part_numbers():
            part = state.parts.get(number)
            if part is None:
                return False
            digest, _ = source.hash_range(plan.offset(number), part.size, scratch, algorithm)
            if b64(digest) != part.checksum:
                return False
        try:
            source.check_unchanged()  # a write during the re-read: it proves nothing
        except SourceChanged:
            return False
    return True
