"""The state file: an append-only JSONL journal of one multipart upload.

Line 1 is a versioned header (written and fsync'd right after CreateMultipartUpload, before any
part is sent): the upload, and the identity of the file (size, times, inode). Then one line per
part S3 accepted, written with a single ``write`` on an ``O_APPEND`` descriptor and fsync'd
before the part counts as done; a ``source`` line when resume has checked the recorded parts
against a file whose identity changed (so the next resume trusts that identity), naming the
parts that differed (not done any more until recorded again); and a final
``completed`` or ``aborted``. Earlier lines are never rewritten.

A crash can leave only the last line torn (a prefix of the final ``write``): replay drops it.
A damaged line elsewhere (bit rot, an editor) is skipped and reported (``damaged_lines``): the
part it recorded is then rebuilt from S3's ListParts and checked against the file's bytes
before it counts, so nothing is guessed. A damaged header cannot be rebuilt and is refused.
Replay (:func:`replay`) is pure; :class:`Journal` owns the file, its lock and the fsyncs.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shlex
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._errors import (
    EXIT_USAGE,
    PersevereError,
    StateFileError,
    StateFileExists,
    StateFileLocked,
    StateFileUnwritable,
    UsageError,
)
from ._plan import PartPlan, StreamSchedule
from ._platform import full_fsync, lock_exclusive, require_supported

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

FORMAT = "persevere-journal"
FORMAT_VERSION = 1

R = TypeVar("R", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class Header:
    bucket: str
    key: str
    upload_id: str
    endpoint_url: str | None
    region: str | None
    profile: str | None
    file_path: str
    file_size: int
    mtime_ns: int
    part_size: int
    checksum_algorithm: str
    checksum_type: str
    created_at: str
    tool_version: str
    ca_bundle: str | None = None  # optional fields (with defaults) may be absent from old files
    object_options: dict[str, Any] | None = None  # CreateMultipartUpload's parameters
    ctime_ns: int | None = None  # the file's identity beyond size and mtime (format 1.1)
    inode: int | None = None
    device: int | None = None
    # The caller chose checksum_algorithm: no Content-MD5 fallback (see _checksum_mode).
    checksum_pinned: bool = False
    stream_every: int | None = None  # a stream: parts double every this many (StreamSchedule)
    expected_size: int | None = None  # a stream's announced length (file_size is then that)
    shards: int | None = None  # split among this many shard journals (upload start --shards)
    # Write-once: never replace an existing object (see _write_once); resume honours it.
    no_overwrite: bool = False

    @property
    def stream(self) -> bool:
        return self.file_path == "-"

    @property
    def source(self) -> SourceRecord:
        """The identity of the file, as the header records it (the same fields, by name)."""
        return SourceRecord(*(getattr(self, spec.name) for spec in fields(SourceRecord)))

    def plan(self, where: object = "the state file") -> PartPlan | StreamSchedule:
        """The parts this upload was planned with: a file's plan, or a stream's schedule.

        A stream's header without its schedule is corrupt (every stream recorded one): it is
        refused, not guessed (a guess could accept parts the stream is never read into)."""
        if not self.stream:
            return PartPlan(self.file_size, self.part_size)
        if self.stream_every is None:
            raise StateFileError(
                f"{where}: the header is a stream's without its part schedule (stream_every): "
                "corrupt state file"
            )
        return StreamSchedule(self.part_size, self.stream_every)


def other_source(
    path: Path, header: Header, file: Path | None, finished: str | None = None
) -> UsageError:
    """A state file records one kind of source: a file (by its path, or redirected in with
    ``<``) or a stream (a pipe). Given the other kind, a file's upload would be completed
    from the recorded file, never reading the stream given now, and a stream's would be read
    by a file's plan, which its parts do not follow: refused, before any request. ``file``
    None: this run's source is a stream. ``finished``: the recorded upload's end, if it has
    one (then there is nothing to resume)."""
    url = shlex.quote(f"s3://{header.bucket}/{header.key}")
    to = f"{url} --state-file {shlex.quote(str(path))}"
    if file is None:
        recorded, given = f"the file {header.file_path}", "standard input (a stream)"
        hint = (
            f"to resume it: persevere cp {shlex.quote(header.file_path)} {to}; to upload the "
            "stream instead, give another state file"
        )
    else:
        recorded, given = "standard input (a stream)", f"the file {file}"
        hint = (
            f"to resume it, pipe the same stream in: PRODUCER | persevere cp - {to}; to upload "
            "the file instead, give another state file"
        )
        if finished is not None:
            hint = f"that upload {finished}: to upload the file, give another state file"
    return UsageError(
        f"state file {path} records an upload of {recorded}, not of {given}",
        hint=hint,
        param="state_file",
    )


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """The identity of the file the recorded parts were read from (or checked against)."""

    file_path: str
    file_size: int
    mtime_ns: int
    ctime_ns: int | None = None
    inode: int | None = None
    device: int | None = None


@dataclass(frozen=True, slots=True)
class PartRecord:
    part_number: int
    etag: str
    checksum: str  # base64, as S3 shows it
    size: int


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """The fields a ``completed`` (or ``aborted``) record may have, to check their types: each
    may be absent (older files, an aborted upload's)."""

    size: int = 0
    etag: str | None = None
    expected_etag: str | None = None
    checksum: str | None = None
    at: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class JournalState:
    header: Header
    parts: dict[int, PartRecord] = field(default_factory=dict)
    outcome: dict[str, Any] | None = None  # the "completed"/"aborted" record, if any
    valid_length: int = 0  # bytes of the file up to the end of the last whole line
    torn_tail: bool = False
    source: SourceRecord | None = None  # the latest identity the parts were checked against
    damaged_lines: list[int] = field(default_factory=list)  # skipped: rebuilt from ListParts
    invalid: set[int] = field(default_factory=set)  # found to differ, not recorded again since
    # Parts merged from shard journals (see _shards.merge_shards), by journal: the identity
    # of the file that shard read them from, and their numbers.
    from_shards: dict[str, tuple[SourceRecord, list[int]]] = field(default_factory=dict)

    @property
    def identity(self) -> SourceRecord:
        return self.source or self.header.source

    @property
    def finished(self) -> str | None:
        return None if self.outcome is None else str(self.outcome["type"])


def _header_line(header: Header) -> dict[str, Any]:
    return {"type": "header", "format": FORMAT, "version": FORMAT_VERSION, **asdict(header)}


def _dumps(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n").encode()


def _parse_header(record: Any, where: str) -> Header:
    if isinstance(record, dict) and record.get("format") == "persevere-tree":  # _tree_journal's
        raise StateFileError(
            f"{where} is the journal of a directory's upload (cp DIR), not of one file's",
            hint="run the same 'persevere cp DIR s3://BUCKET/PREFIX/' again: it resumes it",
        )
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise StateFileError(f"{where} is not a persevere state file")
    version = record.get("version")
    if not isinstance(version, int):
        raise StateFileError(f"{where}: header has no format version")
    if version > FORMAT_VERSION:
        raise StateFileError(
            f"{where} was written by a newer persevere (format {version}; this one reads "
            f"{FORMAT_VERSION}): upgrade persevere to resume it"
        )
    header = _typed(Header, record, f"{where}: header")
    for name, least in _LEAST.items():  # (a part size of 0 divided by zero)
        value = getattr(header, name)
        if value is not None and value < least:
            raise StateFileError(f"{where}: header field {name!r} is {value}, below {least}")
    return header


# The header's sizes: no file is shorter than 0 bytes, no part or doubling step than 1.
_LEAST = {"file_size": 0, "part_size": 1, "stream_every": 1, "expected_size": 0}


def _typed(cls: type[R], record: dict[str, Any], what: str) -> R:
    """``record``'s fields of the dataclass ``cls``: each one without a default present, and
    each one present of its declared type (a damaged or edited line is refused, never
    half-read: ``"shards": "4"``, a ``part_size`` of ``true``); keys the dataclass does not
    have are ignored. (A field of a type not in ``_KINDS`` is a KeyError, never a field left
    unchecked.)"""
    values = {}
    for spec in fields(cls):
        kinds, said = _KINDS[str(spec.type)]
        if spec.name not in record:
            if spec.default is MISSING:
                raise StateFileError(f"{what} lacks {spec.name!r}")
            continue
        value = values[spec.name] = record[spec.name]
        if type(value) not in kinds:  # (exact: JSON's true is no integer here)
            raise StateFileError(f"{what} field {spec.name!r} is not {said}")
    return cls(**values)


# The types a journal's dataclass fields are declared with (as ``from __future__ import
# annotations`` leaves them: strings), the JSON values each takes, and their name in words.
_KINDS: dict[str, tuple[frozenset[type], str]] = {
    "int": (frozenset({int}), "an integer"),
    "str": (frozenset({str}), "a string"),
    "bool": (frozenset({bool}), "true or false"),
    "int | None": (frozenset({int, type(None)}), "an integer"),
    "str | None": (frozenset({str, type(None)}), "a string"),
    "dict[str, Any] | None": (frozenset({dict, type(None)}), "an object"),
}


# How every persevere journal (a file's, a tree's) begins: its header's first fields.
_HEADER_START = b'{"type":"header","format":"persevere'


def may_be_journal(data: bytes) -> bool:
    """Could ``data`` be a persevere journal (its first line a header of ours), or one whose
    header a crash tore (a prefix of it, maybe followed by the zeros a crash can leave)?
    Anything else is some other file, given as the state file by mistake: refused, never
    cut or replaced."""
    first, newline, _ = data.partition(b"\n")
    if not newline:
        return _HEADER_START.startswith(first[: len(_HEADER_START)].rstrip(b"\0"))
    record = _loads(first)
    return isinstance(record, dict) and str(record.get("format")).startswith("persevere")


def _loads(line: bytes) -> Any:
    """A line's JSON value; None if it is not JSON (a damaged line, or no journal's)."""
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None


def replay(data: bytes, name: str = "state file") -> JournalState:
    """Rebuild the upload's state from the journal's bytes.

    A last line without its newline is a torn write and is ignored (``torn_tail``); a damaged
    line after the header is skipped and listed in ``damaged_lines``; a bad header, or a
    record after the final one, raises :class:`StateFileError` naming the line.
    """
    if not data.strip():
        raise StateFileError(
            f"{name} is empty: the run that made it stopped before it recorded its upload "
            "(which S3 may have created all the same)",
            hint="delete it and start the upload again; 'persevere upload list s3://BUCKET/KEY' "
            "shows an upload left on S3, to abort",
        )
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline; else a torn last line
    if not lines and not may_be_journal(data):  # ("hello": no torn header, not to replace)
        raise StateFileError(f"{name} is not a persevere state file")
    if not lines:
        raise HeaderTorn(
            f"{name}: the header line is incomplete (crash while writing it?)",
            hint="nothing to resume: delete it and start again (the bucket's list of multipart "
            "uploads in progress shows the one it may have created)",
        )
    # (A header that is no JSON: refused as not a persevere state file.)
    state = JournalState(header=_parse_header(_loads(lines[0]), name))
    for index, raw in enumerate(lines[1:], start=2):
        where = f"{name}, line {index}"
        record = _loads(raw)
        kind = record.get("type") if isinstance(record, dict) else None
        if state.outcome is not None and kind in ("part", "completed", "aborted"):
            # (A source line may follow: the file re-checked against a completed upload; a
            # damaged line is skipped below, as anywhere.)
            raise StateFileError(f"{where} follows the upload's final '{state.finished}' record")
        try:
            if kind == "part":
                part = _typed(PartRecord, record, f"{where}: part record")
                # A later line for the same part wins: it was uploaded again after S3 lost it.
                state.parts[part.part_number] = part
                state.invalid.discard(part.part_number)
            elif kind == "source":
                source = _typed(SourceRecord, record, f"{where}: source record")
                # Parts found to differ from the file when it was checked: not done any more
                # (until a later line records them sent again).
                invalid = record.get("invalid") or []
                if not isinstance(invalid, list) or not all(type(n) is int for n in invalid):
                    raise StateFileError(f"{where}: source record's 'invalid' is not part numbers")
                state.source = source
                for number in invalid:
                    state.parts.pop(number, None)
                    state.invalid.add(number)
            elif kind in ("completed", "aborted"):
                _typed(OutcomeRecord, record, f"{where}: {kind} record")
                state.outcome = record
            else:
                raise StateFileError(f"{where} is not a journal record")
        except StateFileError:
            state.damaged_lines.append(index)
    state.valid_length = len(data) - len(tail)
    state.torn_tail = bool(tail)
    return state


class Journal:
    """An open, locked state file that records progress durably.

    Every append is one ``os.write`` on an ``O_APPEND`` descriptor followed by a flush to
    stable storage (``fsync``; ``F_FULLFSYNC`` on macOS, see :mod:`._platform`); when the call
    returns, the record survives a crash or power cut. Thread-safe, because
    parts finish on worker threads.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._lock = threading.Lock()
        self._broken: str | None = None  # why appends stopped, after a failed one
        self.source: SourceRecord | None = None  # the file identity the journal records now

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path) -> Journal:
        """Create a new, empty, locked state file; refuse an existing one."""
        require_supported()  # before the file exists: nothing to clean up on Windows
        require_regular(path)
        try:
            # (0664 less the umask: a team's umask 002 lets its members resume; never writable
            # by others, whatever the umask: what a journal records is trusted)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o664)
        except FileExistsError:  # (in use: another start is creating it, or a run holds it)
            raise (in_use(path) if being_made(path) else already_exists(path)) from None
        except OSError as exc:
            raise unwritable("create", path, exc.strerror) from None
        _COMPLETED_HERE.discard(os.path.abspath(path))  # (a new upload: its stop is obeyed)
        journal = cls(path, fd)
        journal.lock(patience_s=1.0)  # (another start's locked_elsewhere lets go at once)
        try:
            _fsync_dir(path.parent)
        except OSError as exc:  # the new name might not survive a crash: give it back
            journal.discard()
            raise StateFileError(f"cannot create state file {path}: {exc.strerror}") from None
        return journal

    @classmethod
    def open(cls, path: Path) -> tuple[Journal, JournalState]:
        """Lock an existing state file, replay it, and drop a torn last line."""
        with cls._opened(path) as (journal, data):
            state = replay(data, str(path))
            journal.source = state.identity
            if state.torn_tail:
                journal._cut(state.valid_length)
                state.torn_tail = False
        return journal, state

    @classmethod
    def open_log(cls, path: Path) -> tuple[Journal, list[bytes]]:
        """Lock an existing journal of another kind (a tree's), cut a torn last line, and
        give back its whole lines (the caller replays them)."""
        with cls._opened(path) as (journal, data):
            whole = data.rfind(b"\n") + 1
            if not may_be_journal(data):  # another file: its last line is not ours to cut
                raise StateFileError(f"state file {path} is not a persevere state file")
            if whole < len(data):
                journal._cut(whole)
        return journal, data[:whole].splitlines()

    @classmethod
    @contextlib.contextmanager
    def _opened(cls, path: Path) -> Iterator[tuple[Journal, bytes]]:
        """An existing journal, locked, and its bytes; closed if the block fails."""
        require_supported()
        require_regular(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except OSError as exc:
            raise _unusable(path, exc, "open") from None
        journal = cls(path, fd)
        try:
            journal.lock()
            # (closefd=False: the journal keeps its descriptor.)
            yield journal, io.FileIO(fd, closefd=False).readall()
        except BaseException:
            journal.close()
            raise

    def _cut(self, length: int) -> None:
        """Cut a torn last line: it never counted (its fsync did not return), and the next
        append must start on a line of its own."""
        os.ftruncate(self._fd, length)
        full_fsync(self._fd)

    def lock(self, patience_s: float = 0.0) -> None:
        deadline = time.monotonic() + patience_s
        while not lock_exclusive(self._fd):
            if time.monotonic() >= deadline:
                self.close()
                raise in_use(self.path)
            time.sleep(0.01)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1

    def discard(self) -> None:
        """Remove a state file that never got its header (the upload was never created)."""
        os.unlink(self.path)
        self.close()

    def discard_unwritten(self) -> None:
        """:meth:`discard` this new state file if its header was not written (the start failed
        before it created anything, e.g. the client could not be made, or the header could not
        be written: the upload then aborted); else leave it."""
        if self._fd >= 0 and self.source is None:
            self.discard()

    # -- appending -------------------------------------------------------------------------
    def write_header(self, header: Header) -> None:
        self.append(_header_line(header))
        self.source = header.source

    def append_part(self, part: PartRecord) -> None:
        self.append({"type": "part", **asdict(part)})

    def append_outcome(self, kind: str, **details: Any) -> None:
        self.append({"type": kind, **details})
        if kind == "completed":
            _COMPLETED_HERE.add(os.path.abspath(self.path))

    def append(self, *records: dict[str, Any]) -> None:
        """Append records durably: one write, one fsync for all of them (a group commit, for
        a tree's journal), or fail leaving the file as it was before the call.

        After a failure the journal refuses further appends: a torn line followed by whole
        ones (other workers' parts) would no longer be the tolerated torn *last* line.
        """
        self._write(b"".join(map(_dumps, records)))

    def check_writable(self) -> None:
        """Raise if an earlier append failed (the journal takes no more)."""
        if self._broken is not None:
            self._write(b"")

    def append_source(self, source: SourceRecord, invalid: list[int] | None = None) -> None:
        """The file was checked against the recorded parts with this identity; ``invalid``:
        the parts that differed (no longer done)."""
        self.append(
            {"type": "source", **asdict(source), **({"invalid": invalid} if invalid else {})}
        )
        self.source = source

    def _write(self, line: bytes) -> None:
        with self._lock:
            if self._broken is None:
                end: int | None = None
                try:
                    end = os.fstat(self._fd).st_size
                    written = os.write(self._fd, line)
                    if written != len(line):
                        raise OSError(
                            errno.ENOSPC,
                            f"short write ({written} of {len(line)} bytes; disk full?)",
                        )
                    full_fsync(self._fd)
                    return
                except OSError as exc:
                    self._broken = exc.strerror or str(exc)
                    if end is not None:
                        with contextlib.suppress(OSError):
                            os.ftruncate(self._fd, end)  # drop the torn line now, if we can
            raise StateFileUnwritable(
                f"cannot write state file {self.path}: {self._broken}",
                hint="free space or fix permissions, then resume",
            )


class JournalLedger:
    """The journal as the sender's ledger: a part counts once its line is fsync'd.

    ``parts`` starts with what resume kept and grows with every part recorded.
    """

    def __init__(self, journal: Journal, parts: dict[int, PartRecord]) -> None:
        self.journal = journal
        self.parts = parts

    async def record(self, part: PartRecord) -> None:
        # Shielded: once S3 has the part, recording it must not be lost to a Ctrl-C.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.journal.append_part, part)
        self.parts[part.part_number] = part


def read_state(path: Path) -> JournalState:
    """Replay a state file without locking it (for ``status``)."""
    require_regular(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _unusable(path, exc, "read") from None
    return replay(data, str(path))


def already_exists(path: Path) -> StateFileExists:
    """Why a start (or its dry run) refuses the state file at ``path``: the upload it records
    (one to resume, or one that is over: "completed" or "aborted"), or why it records none
    (empty, a torn header, unreadable), so that no resume command is offered for nothing to
    resume."""
    try:
        finished = read_state(path).finished
    except StateFileError as exc:
        why, hint = f": {exc.message}", exc.hint
    else:
        if finished is None:
            exists = StateFileExists(
                f"state file {path} already exists",
                hint="resume the upload it records, or choose another state file",
            )
            exists.state_file = str(path)
            return exists
        why = f": it records an upload that {finished}"
        hint = "choose another state file (or remove this one)"
    refused = StateFileExists(f"state file {path} already exists{why}", hint=hint)
    refused.next_step = None
    return refused


def in_use(path: Path) -> StateFileLocked:
    return StateFileLocked(
        f"state file {path} is in use by another persevere process",
        hint="wait for it to finish, or stop it first",
    )


def being_made(path: Path, patience_s: float = 0.5) -> bool:
    """Is the state file at ``path`` another process's: locked, or empty for a moment (a start
    that created it and has not locked it yet: told "delete it", a loser of that race would
    unlink the journal the winner is writing)?"""
    deadline = time.monotonic() + patience_s
    while not locked_elsewhere(path):
        try:
            empty = os.stat(path).st_size == 0
        except OSError:
            return False
        if not empty or time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def locked_elsewhere(path: Path) -> bool:
    """Does another process hold the lock of the file at ``path`` (False: no file to open)? A
    start that finds the state file it was to create is then not to be told it is empty (its
    header not written yet) and should be deleted: that would unlink the journal of the start
    running. A shard journal's lock says its shard still runs."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return not lock_exclusive(fd)
    finally:
        os.close(fd)  # (flock's lock is this open file's: the holder's stays)


class HeaderTorn(StateFileError):
    """The state file stops inside its first line: a crash while the header was written, after
    CreateMultipartUpload answered (that upload's id is lost: ListMultipartUploads shows it)."""


def followed(path: Path) -> Path:
    """The state file ``path`` names: a symbolic link given as one (to a volume's journal, not
    there yet on a first run) is written where it points, never replaced by a file."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else path  # (never raises)


class StateFileUntrusted(StateFileError):
    """A journal another user may have written, where anyone may write (:func:`require_regular`)."""


def _require_trusted(path: Path, st: os.stat_result) -> None:
    """A journal another user (not root) owns, where anyone may write it (it, or its directory:
    /tmp, /var/tmp, a shared scratch space) is not trusted: its "done" records could be
    anyone's (another user plants ``DIR.persevere`` before the first run: every file
    "unchanged", exit 0, no object). In a directory shared by a group, a member's is."""
    if not hasattr(os, "geteuid"):
        return
    ours = (os.geteuid(), 0)
    owner = st.st_uid
    # Who could have written it: its owner, and the owner of every directory on its way up
    # to one of ours (or root's); anyone, where the file or one of those directories is
    # writable by all (a directory another user made in /tmp, with a journal in it).
    shared = bool(st.st_mode & stat.S_IWOTH) and owner not in ours
    others = owner not in ours
    directory = path.parent
    while not shared:
        try:
            dst = os.stat(directory)
        except OSError:
            break
        if dst.st_uid in ours and not (others and dst.st_mode & stat.S_IWOTH):
            break  # (ours: another user's file in it was put there by someone we let)
        shared = others and bool(dst.st_mode & stat.S_IWOTH)
        others = others or dst.st_uid not in ours
        if directory.parent == directory:
            break
        directory = directory.parent
    if not shared:
        return
    error = StateFileUntrusted(
        f"state file {path} may have been written by another user (uid {owner}, or a "
        "directory on its way that is not this user's, in one anyone may write): what it "
        "records cannot be trusted",
        hint="keep this journal in a directory of your own: --state-dir DIR (or --state-file)",
    )
    error.exit_code = EXIT_USAGE
    raise error


def require_regular(path: Path) -> None:
    """A state file is a regular file, or nothing yet: a device, FIFO or socket at its path
    (``--state-file /dev/null``) is refused, never written to, and never removed to make room
    for a journal; so is a path no file can be at (a symbolic-link loop: ``cp`` would have
    replaced the link). Every command checks its state file path here first."""
    try:
        st = os.stat(path)
        mode = st.st_mode
    except OSError as exc:
        if exc.errno == errno.EACCES:  # (under a directory this user may not search: /root)
            raise StateFileError(
                f"cannot use state file {path}: {exc.strerror} (a directory on its way this "
                "user may not search)",
                hint="give --state-dir (or --state-file) a place of your own",
            ) from None
        # Nothing there (or the caller's own open says why); else no file can ever be made or
        # read at this path (a symbolic-link loop, a name too long, a file where a directory
        # should be): bad input, like a directory or a device at the path.
        if exc.errno not in (errno.ELOOP, errno.ENAMETOOLONG, errno.ENOTDIR):
            return
        why, hint = f"cannot be used: {exc.strerror}", None
    else:
        if stat.S_ISREG(mode):
            _require_trusted(path, st)
            return
        why, hint = "is a directory", "give --state-file the path of a file in it"
        if not stat.S_ISDIR(mode):
            why = (
                "is not a regular file (a device, FIFO or socket): a journal must be a file of "
                "its own"
            )
            hint = "give --state-file the path of a file (it need not exist yet)"
    error = StateFileError(f"state file {path} {why}", hint=hint)
    error.exit_code = EXIT_USAGE  # bad input, like a flag's
    raise error


def unwritable(doing: str, path: Path, why: str | None) -> StateFileError:
    return StateFileError(
        f"cannot {doing} state file {path}: {why}",
        hint="give --state-dir (or --state-file) a writable place",
    )


def _unusable(path: Path, exc: OSError, doing: str) -> StateFileError:
    """Why an existing state file cannot be opened or read, in words."""
    if isinstance(exc, FileNotFoundError):
        return StateFileError(f"state file {path} does not exist")
    if isinstance(exc, IsADirectoryError):
        return StateFileError(f"state file {path} is a directory")
    hint = None
    if isinstance(exc, PermissionError):  # (another user's: root's cron job, a teammate's)
        hint = (
            "run as its owner (or have them make it writable to you); to start over instead, "
            "give another --state-file (the upload it records stays billed until aborted: "
            "persevere upload list)"
        )
    return StateFileError(f"cannot {doing} state file {path}: {exc.strerror}", hint=hint)


def records_stream(path: Path) -> bool:
    """Does the journal at ``path`` record a stream's upload (False: not one, or unreadable)?"""
    try:
        with open(path, "rb") as f:
            return _parse_header(_loads(f.readline()), str(path)).stream
    except (OSError, PersevereError):
        return False


def holds_upload(path: Path) -> bool:
    """Does this state file record a created upload (a header), i.e. is there anything to
    resume? An empty one means the process stopped before CreateMultipartUpload answered."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


# The journals whose completion this process recorded: a stop signal after that finds the
# work done (:func:`completed_here`).
_COMPLETED_HERE: set[str] = set()


def completed_here(path: str | os.PathLike[str]) -> bool:
    """Has this process recorded the completion of the upload the journal at ``path`` holds?
    Then the object is complete and verified: a stop signal must not undo that (exit 0)."""
    return os.path.abspath(path) in _COMPLETED_HERE


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        full_fsync(fd)
    finally:
        os.close(fd)
