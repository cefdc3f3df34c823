"""The one path every upload takes once its journal is open, whatever its source (a file, a
block device, a stream) and however it began (a new upload, a resume, ``cp``)::

    reconcile with S3 ──> prove the source ──> send what is missing ──> settle ──> complete
    (ListParts; gone:      (a file's recorded    (one sender,           (unchanged, or   (checked,
     the kind says what)    parts, a stream's     :func:`._sender.send`) as long as       recorded)
                            prefix as it reads)                          promised)

What differs between kinds is a :class:`Kind`: a file's (:class:`._resume.FileParts`) or a
stream's (:class:`._stream.StreamParts`). A shard runs the same steps but the last two
(:func:`._shards.send_one`). What S3 holds of an upload being resumed comes from ListParts,
with its one fallback when ListParts is refused (:func:`remote_parts`).
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Protocol, TypeVar

from ._completion import UploadResult, complete, make_result, record_completed
from ._errors import PersevereError, S3Error, UploadGone
from ._journal import Header, Journal, JournalLedger, PartRecord, SourceRecord
from ._object_options import as_flags
from ._options import UploadOptions
from ._plan import MAX_PARTS
from ._progress import ProgressSink
from ._quirks import refused
from ._reconcile import RemotePart, holds
from ._sender import Feed, Ledger, send
from ._session import MultipartSession
from ._write_once import refuse_existing_key

log = logging.getLogger("persevere")

Remote = dict[int, RemotePart] | None  # what ListParts gave; None: it was refused


class Kind(Protocol):
    """A source kind as the pipeline drives it."""

    session: MultipartSession
    journal: Journal
    progress: ProgressSink

    @property
    def header(self) -> Header: ...

    async def prepare(self, remote: Remote) -> tuple[JournalLedger, Ledger, Feed]:
        """Prove what the journal and S3 hold against the source (``remote`` empty: a new
        upload, nothing to prove) and start the progress: the ledger of the parts done, the
        one the sender records into, and the parts still to send."""
        ...

    async def settle(self) -> tuple[int, int, SourceRecord]:
        """Everything is sent: the object's part count and size, and the identity of what it
        now equals, once the source proved it gave what was sent (else raises)."""
        ...

    async def gone(self, started: float) -> UploadResult:
        """The upload is gone from S3 (UploadGone from ListParts): what that means here."""
        ...


async def run(
    kind: Kind, options: UploadOptions, started: float, *, new: bool = False
) -> UploadResult:
    """Reconcile (``new``: nothing to reconcile), prove, send, settle, complete, record."""
    session, journal = kind.session, kind.journal
    remote: Remote = {}
    if not new:
        try:
            remote = await remote_parts(session)
        except UploadGone:
            return await kind.gone(started)
        await refuse_existing_key(session, journal, remote)
    ledger, recorder, feed = await kind.prepare(remote)
    try:
        sent = await send(session, recorder, options, kind.progress, feed)
        part_count, size, source = await kind.settle()
        done = await complete(session, ledger, part_count, size)
    except S3Error as exc:
        # Without ListParts (``remote`` None), a later S3 failure names the permission that
        # lets resume compare the journal with S3.
        if remote is None and not isinstance(exc, UploadGone) and exc.hint is None:
            exc.hint = (
                "resume could not compare the state file with S3 (ListParts was refused): "
                "granting s3:ListMultipartUploadParts lets it reconcile the two"
            )
        raise
    await record_completed(journal, done, size, source)
    return make_result(kind.header, part_count, size, done.etag, str(done.checksum), sent, started)


async def remote_parts(session: MultipartSession) -> Remote:
    """ListParts (UploadGone if the upload is gone); None when it is not permitted."""
    try:
        return await session.list_parts()
    except S3Error as exc:
        if not refused(exc):
            raise
        log.warning(
            "ListParts was refused (%s): resuming from the state file alone; parts S3 "
            "received but the journal missed are sent again",
            exc.code,
        )
        return None


async def adopted(
    ledger: Ledger, remote: RemotePart, checksum: str, md5: str | None, source: str
) -> bool:
    """Is S3's part, which no journal records, the ``source``'s bytes of ``checksum`` and
    ``md5`` (:func:`._reconcile.holds`)? Then it is recorded as sent."""
    if not holds(remote, checksum, md5):
        return False
    log.info("part %d: found on S3 and matches the %s, adopted", remote.part_number, source)
    await ledger.record(PartRecord(remote.part_number, remote.etag, checksum, remote.size))
    return True


def gone(kind: Kind, causes: str) -> UploadGone:
    """The upload ``kind`` resumes is no longer on S3, for one of ``causes``: ``cp`` starts a
    new one over the same state file."""
    error = UploadGone(
        f"multipart upload {kind.session.upload_id} for {kind.session.where} no longer exists "
        f"on S3 ({causes})",
        code="NoSuchUpload",
    )
    return start_again(error, kind.header, kind.journal.path)


def _still_fits(header: Header) -> bool:
    """Does the file, as it is now, fit the part size the upload had (10,000 parts at most)?
    A file that grew past it is given the part size cp chooses for it."""
    try:
        size = os.stat(header.file_path).st_size
    except OSError:
        return True  # (cp says what is wrong with the file)
    return -(-size // header.part_size) <= MAX_PARTS


E = TypeVar("E", bound=PersevereError)


def start_again(error: E, header: Header, state_path: Path) -> E:
    """``error``, whose upload is over (aborted), with the ``cp`` that uploads its source
    again, a new upload over the same state file, with the options a re-run could lose."""
    feed, source = ("... | ", "-") if header.stream else ("", header.file_path)  # (quoted below)
    words = [f"{feed}persevere cp", source, f"s3://{header.bucket}/{header.key}",
             "--state-file", str(state_path.absolute())]  # fmt: skip
    recorded = (("--endpoint-url", header.endpoint_url), ("--region", header.region),
                ("--profile", header.profile), ("--ca-bundle", header.ca_bundle))  # fmt: skip
    for flag, value in recorded:
        words += [flag, value] if value else []
    if header.stream:  # (its guard against a producer that ends early)
        words += ["--expected-size", str(header.expected_size)] if header.expected_size else []
    elif _still_fits(header):  # the plan it had, within the part limit it was made for (not
        words += ["--part-size", str(header.part_size)]  # recorded): while the file fits it
    words += ["--no-overwrite"] if header.no_overwrite else []
    words += ["--checksum", header.checksum_algorithm] if header.checksum_pinned else []
    # (the object's options it was created with: cp refuses a state file's other options)
    words += as_flags(header.object_options or {}, Path(header.file_path).name)
    command = " ".join([words[0], *map(shlex.quote, words[1:])])
    error.hint = f"to upload it again (a new upload over this state file): {command}"
    error.next_command = command
    return error
