"""Resume: continue the upload a state file records, so that exit 0 means the object equals
the file as it is now.

What is trusted, and what is read again (the README's "resume policy"):

1. S3 first. ListParts says which parts S3 holds; if the upload is gone but the journal has
   every part, HeadObject says whether an earlier run completed it (its answer lost in a
   crash). Without ListParts permission, the journal alone is used (with a warning): S3 still
   verifies every part's checksum, and CompleteMultipartUpload refuses unknown parts.
2. The file. Its identity (size, mtime, ctime, inode, device) is compared with the one the
   journal recorded. A different size cannot be resumed (the parts would not line up).
   - Everything matches: the recorded parts are trusted, after a spot check that re-reads
     ``SPOT_CHECK_PARTS`` of them chosen at random (a mismatch there re-reads them all).
   - Anything else differs (a touched file, a restored mtime that still moved the ctime, a
     copy on another machine), or ``verify_parts``: every recorded part is re-read and
     compared with its recorded checksum; the ones that changed are sent again.
   - A shard's parts (:mod:`._shards`) get a spot check of their own, or are all re-read if
     its journal records that it read a file of another identity (``upload shard --file``).
3. Parts S3 holds that the journal missed (a crash between S3's answer and the fsync) are
   adopted only if their ETag or checksum matches the file's bytes.
4. Completion checks the file once more (nothing may have changed since it was read) and S3
   checks the combined checksum of every part.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shlex
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import anyio

from ._checksums import b64
from ._completed import changed_since, recheck, result_of, why_reread
from ._completion import (
    UploadResult,
    completed_unrecorded,
    continuing,
    make_result,
    record_completed,
    recorded_session,
)
from ._errors import IntegrityError, SourceChanged, SourceFileError, UploadFinished, UsageError
from ._journal import (
    Header,
    Journal,
    JournalLedger,
    JournalState,
    PartRecord,
    SourceRecord,
    other_source,
    read_state,
)
from ._logs import event
from ._options import UploadOptions
from ._pipeline import adopted, gone, run, start_again
from ._plan import PartPlan
from ._progress import ProgressSink, guarded
from ._reconcile import RemotePart, reconcile
from ._request import Continued, Request, given, refuse_dev_null, stdin_kind
from ._sender import PlannedParts
from ._session import MultipartSession
from ._shard_journals import (
    merge_shards,
    refuse_misfits,
    refuse_running_shards,
    refuse_shard_journal,
)
from ._source import FileIdentity, SourceFile, inspect_file
from ._stream import StreamParts, gives_object
from ._units import MiB, format_size

log = logging.getLogger("persevere")

SPOT_CHECK_PARTS = 2


async def resume_upload(
    state_file: str | Path, *, progress: ProgressSink | None = None, **asked: Unpack[Continued]
) -> UploadResult:
    """Continue the upload a state file describes: reconcile with S3, check the file, send the
    rest, complete (see the module docstring for what is trusted).

    ``verify_parts`` re-reads every part already uploaded even when the file's identity has
    not changed. ``file`` reads the file from another path (it was moved, or this is another
    machine): its identity then differs, so every uploaded part is re-read. ``endpoint``
    overrides what the state file recorded, field by field (its ``None`` fields keep the
    recorded ones).

    An upload that already completed is not an error: its result (``already_completed``), as
    ``cp`` gives it, while the object and the file are still what made it (:mod:`._completed`;
    else :class:`UploadFinished` or :class:`SourceChanged`, saying which changed). An aborted
    one raises :class:`UploadFinished`.
    """
    request = Request.resumed(state_file, **given(asked, Continued, "resume_upload"))
    return await resume(request, guarded(progress))


async def resume(request: Request, progress: ProgressSink) -> UploadResult:
    """:func:`resume_upload` of ``request``: its state file, transfer options, endpoint
    overrides, ``verify_parts``, and its source's path if given (the file is there now)."""
    with continuing(request, progress) as (state_path, started):
        journal, state = await anyio.to_thread.run_sync(Journal.open, state_path)
        with contextlib.closing(journal):
            await anyio.to_thread.run_sync(_ready, journal, state)
            header = state.header
            if header.stream and request.file() is not None:
                raise other_source(state_path, header, request.file())
            if not header.stream and request.source is not None and request.source.stream:
                raise other_source(state_path, header, None)  # (--file -: a stream)
            if state.finished == "completed":
                journal.close()  # a re-checked identity is recorded under its own lock
                return await _already_completed(request, journal, state, started, progress)
            if header.stream:
                if stdin_kind()[0] != "stream":
                    raise UsageError("this upload is of a stream: pipe the same stream in to "
                                     "resume it")  # fmt: skip
                refuse_dev_null(0)
                async with recorded_session(header, request.endpoint, request.transfer) as session:
                    kind = StreamParts(session, journal, header, state.parts, progress)
                    return await run(kind, request.transfer, started)
            async with opened(request, journal, state, progress) as parts:
                return await parts.resume(started)


async def _already_completed(
    request: Request,
    journal: Journal,
    state: JournalState,
    started: float,
    progress: ProgressSink,
) -> UploadResult:
    """Nothing left to resume: success, as for ``cp``, if the object is still the one the
    upload made and the file still makes it (a stream cannot be read again: its object is
    checked, and a stream piped in read through and compared with it). A HeadObject refused
    (no s3:GetObject) leaves the journal's word for the object, the file checked all the same."""
    identity = None if state.header.stream else await _inspect(request, state.header, journal.path)
    found = await recheck(state, journal.path, identity, request.endpoint,
                          verify_parts=request.verify_parts, options=request.transfer,
                          file_if_unreadable=True)  # fmt: skip
    if found.outcome == "unreadable":
        log.warning("%s: the state file records it completed, and it is not checked", found.why)
    elif found.outcome == "changed":
        raise changed_since(state.header, found.why)
    elif found.outcome != "same":
        raise UploadFinished(
            f"the upload in {journal.path} completed, but {found.why}",
            hint="upload the file again, as a new upload (persevere cp does)",
        )
    if state.header.stream and _piped_in() and not await gives_object(state, 0, progress):
        # A stream given this time (a pipe, a file redirected in) must be the object's
        why = "the stream piped in is not the one it was completed from"
        raise changed_since(state.header, why, hint="upload it as a new upload: persevere cp -")
    return result_of(state, started)


def _piped_in() -> bool:
    """Is a stream given on standard input (a pipe, a socket, a file redirected in), not
    nothing (a terminal, closed, ``/dev/null`` as supervisors leave it)?"""
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISREG(mode)


async def _inspect(request: Request, header: Header, state_path: Path | None) -> FileIdentity:
    """The file's identity now: the request's, else at the path the header records; gone from
    there, the hint says how to go on with the file where it is now (and ``state_path``'s
    resume command; None: a shard's, whose command the shard's caller knows)."""
    return await anyio.to_thread.run_sync(_identity, request.file(), header, state_path)


def _identity(given: Path | None, header: Header, state_path: Path | None) -> FileIdentity:
    try:
        identity = inspect_file(given or Path(header.file_path))
        if given is not None and not header.stream and identity.size != header.file_size:
            # (a typo, another host's copy: the upload's own file did not change)
            raise UsageError(f"{given} has {identity.size:,} bytes, but the upload is of "
                             f"{header.file_size:,} ({header.file_path}): not its file",
                             hint="give the upload's file with --file (if that file has another "
                             "size now, its upload cannot be completed: persevere cp starts "
                             "again)", param="file")  # fmt: skip
        return identity
    except SourceFileError as exc:
        if given is None and not os.path.lexists(header.file_path):
            # Not at the path the header records: the upload is intact, and ``--file`` resumes
            # it from where the file is now.
            how = "give where the file is now with --file (every uploaded part is read again)"
            exc.hint = f"the upload is intact: {how}, or put the file back"
            if state_path is not None:  # (absolute: the journal's)
                command = f"persevere upload resume --state-file {shlex.quote(str(state_path))}"
                exc.hint = f"the upload is intact: {how}: {command} --file PATH; or put it " \
                           f"back and run {command}"  # fmt: skip
                exc.next_command = command
        raise


def _ready(journal: Journal, state: JournalState) -> None:
    """Refuse an upload that was aborted or does not fit its plan; merge its shards' journals
    (one that completed is left as it is). A shard's own journal is not the upload's."""
    refuse_shard_journal(journal.path, state.header)
    if state.finished == "completed":
        return
    if state.finished == "aborted":
        raise start_again(
            UploadFinished(f"the upload in {journal.path} was aborted: there is nothing to resume"),
            state.header,
            journal.path,
        )
    if state.header.shards:
        refuse_running_shards(journal.path)
    merge_shards(journal.path, state)
    refuse_misfits(journal.path, state)
    if state.damaged_lines:
        log.warning(
            "%s: line(s) %s damaged; what they recorded is rebuilt from S3 and the file",
            journal.path,
            ", ".join(map(str, state.damaged_lines)),
        )


@contextlib.asynccontextmanager
async def opened(
    request: Request,
    journal: Journal,
    state: JournalState,
    progress: ProgressSink,
    only: range | None = None,
) -> AsyncIterator[FileParts]:
    """The file (the request's, else the recorded path) open, and a session on the recorded
    endpoint (the request's overrides it field by field)."""
    header = state.header
    plan = header.plan()
    assert isinstance(plan, PartPlan)
    main = journal.path if only is None else None  # a shard's journal is its own
    with SourceFile(await _inspect(request, header, main)) as source:
        async with recorded_session(header, request.endpoint, request.transfer) as session:
            yield FileParts(session, source, journal, state, plan, request.transfer, progress,
                            only, request.verify_parts)  # fmt: skip


@dataclass
class FileParts:
    """A file (or block device) as :func:`._pipeline.run` drives it: the parts the journal
    recorded checked against its bytes (see the module docstring), reconciled with S3, what
    S3 holds unrecorded adopted if the bytes match, the rest read and sent; complete if the
    file did not change meanwhile."""

    session: MultipartSession
    source: SourceFile
    journal: Journal
    state: JournalState
    plan: PartPlan
    options: UploadOptions
    progress: ProgressSink
    only: range | None = None  # a shard: these parts alone, and no completion
    verify_parts: bool = False  # every recorded part re-read (set too once a record is wrong)

    @property
    def header(self) -> Header:
        return self.state.header

    async def prepare(
        self, remote: dict[int, RemotePart] | None
    ) -> tuple[JournalLedger, JournalLedger, PlannedParts]:
        """Check the file against the recorded parts, reconcile them with S3, adopt what S3 has
        that the journal missed: the ledger of what is done, and the parts still to send."""
        self._refuse_other_size()
        numbers = self.plan.part_numbers() if self.only is None else self.only  # may be empty
        done = {n: p for n, p in self.state.parts.items() if n in numbers}
        changed = await self._check_file(done)
        if remote is None:
            kept, adopt, missing = done, {}, [n for n in numbers if n not in done]
        else:
            found = reconcile(self.plan, done, remote)
            if found.lost:
                log.warning(
                    "%d part(s) in the journal are not on S3; uploading them again",
                    len(found.lost),
                )
            kept = dict(found.kept)
            adopt = {n: r for n, r in found.adopt.items() if n in numbers}
            missing = [n for n in found.missing if n in numbers]
        ledger = JournalLedger(self.journal, kept)
        rejected = await self._adopt(ledger, adopt)
        todo = sorted(set(missing) | set(rejected) | set(changed))
        total = self.header.file_size if self.only is None else sum(map(self.plan.size_of, numbers))
        self.progress.start(total, sum(p.size for p in ledger.parts.values()))
        return ledger, ledger, PlannedParts(self.session, self.source, self.plan, todo)

    async def settle(self) -> tuple[int, int, SourceRecord]:
        await anyio.to_thread.run_sync(self.source.check_unchanged)
        return self.plan.part_count, self.header.file_size, self.source.identity.as_record()

    async def resume(self, started: float) -> UploadResult:
        try:
            return await run(self, self.options, started)
        except IntegrityError as exc:
            if self.verify_parts or "BadDigest" not in str(exc):
                raise
            # The parts S3 holds do not combine into the checksum their records give: a record
            # is wrong (a journal line altered but still valid). Re-reading every part finds it.
            log.warning("%s; re-reading every recorded part and sending again any that differ",
                        exc)  # fmt: skip
            self.state = await anyio.to_thread.run_sync(read_state, self.journal.path)
            await anyio.to_thread.run_sync(merge_shards, self.journal.path, self.state)
            self.verify_parts = True
            return await run(self, self.options, started)

    async def gone(self, started: float) -> UploadResult:
        """The upload is gone from S3 and the journal has every part: did an earlier run
        complete it (and crash before recording it)? Then the object is the recorded parts,
        and it equals the file if the file still gives those parts."""
        header = self.header
        done = await completed_unrecorded(self.session, self.plan, self.state.parts)
        if done is None:
            raise gone(self, "aborted elsewhere, expired by a lifecycle rule, or completed by "
                       "another client: the key may hold an object it did not make")  # fmt: skip
        self._refuse_other_size()
        changed = await self._check_file(dict(self.state.parts))
        part_count, size, source = await self.settle()  # (the file unchanged while read)
        await record_completed(self.journal, done, size, source)
        if changed:
            why = f"the file has changed since (part {changed[0]} differs)"
            raise changed_since(header, why, hint="upload it again, as a new upload")
        return make_result(
            header, part_count, size, done.etag, str(done.checksum), 0, started, already=True
        )

    def _refuse_other_size(self) -> None:
        now = self.source.identity
        if now.size != self.header.file_size:
            raise SourceChanged(
                f"{now.path} changed since the upload started (size "
                f"{self.header.file_size:,} -> {now.size:,} bytes): its parts on S3 cannot "
                "make it",
                hint="abort the upload and start again",
            )

    async def _check_file(self, done: dict[int, PartRecord]) -> list[int]:
        """Apply the identity policy to the recorded parts; forget (and return) the numbers
        of those whose bytes changed."""
        differ = self.source.identity.differences(FileIdentity.of_record(self.state.identity))
        if not done:
            if differ:  # the parts sent from now on are read from this file: say which
                await self._record_checked([])
            return []
        # nothing but its bytes vouch for a block device
        verify_parts = self.verify_parts or self.source.identity.block_device
        if differ or verify_parts:
            why = why_reread(self.source.identity, differ, "its parts were")
            changed = await self._reread(done, sorted(done), why)
        else:
            changed = await self._spot_check(done, sorted(done))
            # Parts other processes or hosts read (shards) were read through their own view
            # of the file (another mount, a stale cache): a spot check per shard; all of them
            # re-read if that shard read another file (`upload shard --file`: a copy).
            for path, (read, numbers) in sorted(self.state.from_shards.items()):
                mine = [n for n in numbers if n in done]
                name = Path(path).name
                # Of what differs, what says it is another file (or the same one changed): its
                # size, times or inode. A path and a device alone are another host's view of the
                # same file (a shared file system mounted elsewhere, its own device number).
                differ_then = self.source.identity.differences(FileIdentity.of_record(read))
                if other := [what for what in differ_then if what not in ("path", "device")]:
                    why = (f"the parts of {name} were read from {read.file_path}, whose "
                           f"{', '.join(other)} differ from this file's")  # fmt: skip
                    changed += await self._reread(done, mine, why) if mine else []
                else:
                    changed += await self._spot_check(done, mine, f"(read by {name})")
        if changed or differ or verify_parts:
            await self._record_checked(changed)
        return changed

    async def _spot_check(
        self, done: dict[int, PartRecord], numbers: list[int], whose: str = ""
    ) -> list[int]:
        """Re-read a few of ``numbers``; if one differs, all of them: the ones that changed."""
        if not numbers:
            return []
        sample = random.SystemRandom().sample(numbers, min(SPOT_CHECK_PARTS, len(numbers)))
        if not await self._reread(dict(done), sample, None):
            log.info("spot check: parts %s still match the file %s", sample, whose)
            return []
        why = f"a spot check found a part {whose} that differs although size and times match"
        return await self._reread(done, numbers, why.replace("  ", " "))

    async def _record_checked(self, changed: list[int]) -> None:
        """Every recorded part was just re-read: write down the identity they were checked
        against, and which differed, so the next resume trusts the one and not the others
        (without this, every later resume would re-read everything again). Only if the file
        did not change while it was read: then it proved nothing."""
        await anyio.to_thread.run_sync(self.source.check_unchanged)
        await anyio.to_thread.run_sync(
            lambda: self.journal.append_source(self.source.identity.as_record(), changed)
        )

    async def _reread(
        self, done: dict[int, PartRecord], numbers: list[int], why: str | None
    ) -> list[int]:
        """Re-read ``numbers``, forget (and return) those that changed; ``why`` None: quietly
        (a spot check: no warning, no progress)."""
        total = sum(done[n].size for n in numbers)
        if why is not None:
            log.warning(
                "%s: %s; re-reading the %d part(s) already uploaded (%s)",
                self.source.identity.path,
                why,
                len(numbers),
                format_size(total),
                extra=event("reread", parts=len(numbers), bytes=total),
            )
            self.progress.start(total, 0)
        changed = []
        scratch = memoryview(bytearray(min(self.plan.part_size, 8 * MiB)))
        for number in numbers:
            digest, _ = await anyio.to_thread.run_sync(
                self.source.hash_range, self.plan.offset(number), done[number].size, scratch,
                self.session.algorithm, False, None if why is None else self._advance_from_thread,
            )  # fmt: skip
            if b64(digest) != done[number].checksum:
                changed.append(number)
                del done[number]
        if changed and why is not None:
            log.warning(
                "%d part(s) changed in the file since they were uploaded (first: part %d); "
                "sending them again",
                len(changed),
                changed[0],
                extra=event("reread", changed_parts=changed),
            )
        return changed

    def _advance_from_thread(self, n: int) -> None:
        anyio.from_thread.run_sync(self.progress.advance, n)

    async def _adopt(self, ledger: JournalLedger, candidates: dict[int, RemotePart]) -> list[int]:
        """Keep S3's parts that match the local bytes; return the numbers to upload again."""
        if not candidates:
            return []
        rejected = []
        scratch = memoryview(bytearray(min(self.plan.part_size, 8 * MiB)))
        for number, remote in sorted(candidates.items()):
            digest, md5 = await anyio.to_thread.run_sync(
                self.source.hash_range, self.plan.offset(number), remote.size, scratch,
                self.session.algorithm, True,
            )  # fmt: skip
            if not await adopted(ledger, remote, b64(digest), md5, "file"):
                rejected.append(number)
        return rejected
