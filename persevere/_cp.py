"""``persevere cp``: the one command a supervisor re-runs until it exits 0.

Each run does whatever moves the object towards being the file:

- no state file yet: start the upload;
- a state file in progress: resume it (see :mod:`._resume` for what is trusted);
- a state file that records completion: if the object still has the recorded size and
  checksum and the file still has the recorded identity, exit 0 at once, reading and sending
  nothing ("already uploaded"); if the identity changed, the recorded parts are re-read and
  compared first; if the object or the file is another one now, upload again (a stream: it
  is uploaded again, or write-once, read through and compared with the object);
- an upload that cannot go on (aborted elsewhere, the file has another size, or completed
  from an older version of the file): abort what is left of it and start again, once; a
  stream's too, while standard input is not read yet.

The choice is :func:`._decide.decide`'s (pure), made again after each thing learnt; the
dry run makes it the same way.

Where the state lives: ``FILE.persevere`` beside the file when that directory is writable,
otherwise under the XDG state directory (``$XDG_STATE_HOME/persevere/``, else
``~/.local/state/persevere/``), named after the file and destination so the same command
finds it again; a destination whose ``FILE.persevere`` records another has a journal of its
own (:func:`locate_state_file`). A state file given that belongs to another destination is
refused; one of another file of the same size (moved, or replaced) is used only after every
part it records is read again from this file (:mod:`._resume`, :func:`_still_uploaded`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import Unpack

import anyio

from ._completed import recheck, result_of
from ._completion import UploadResult
from ._decide import Decision, Found, Learnt, Source, decide
from ._errors import (
    SourceChanged,
    StateFileError,
    StateFileExists,
    StateFileLocked,
    UploadGone,
    UsageError,
)
from ._journal import (
    HeaderTorn,
    Journal,
    JournalState,
    StateFileUntrusted,
    being_made,
    followed,
    other_source,
    read_state,
    require_regular,
    unwritable,
)
from ._logs import NamingStateFile, say, say_plan
from ._plan import make_plan
from ._platform import make_dirs
from ._progress import ProgressSink, guarded
from ._request import Copied, Request, given, names_stdin, refuse_source_as_state
from ._request import Source as Named
from ._resume import resume
from ._source import FileIdentity, check_expected_size, inspect_file, is_block_device
from ._stream import gives_object
from ._upload import abort_upload, upload
from ._write_once import left_untouched

log = logging.getLogger("persevere")


def state_home() -> Path:
    """``$XDG_STATE_HOME/persevere``, else ``~/.local/state/persevere``. A relative
    ``XDG_STATE_HOME`` is ignored, as the XDG spec says: the same command run from another
    directory (cron's, a unit's ``WorkingDirectory``) would not find its state file again."""
    home = known_state_home()
    if home is None:  # (a relative ~ would be a journal the next run, elsewhere, misses)
        given = os.environ.get("HOME")
        why = "HOME is unset and this user has none, as for a uid with no passwd entry"
        if given:
            why = f"HOME ({given!r}) is not an absolute path"
        raise UsageError(
            f"no home directory to keep the journal in ({why}): give --state-dir DIR, or set "
            "HOME or XDG_STATE_HOME to an absolute path",
            param="state_dir",
        )
    return home


def known_state_home() -> Path | None:
    """:func:`state_home`, or None where the user has no home (``HOME`` unset and no passwd
    entry: ``~`` is not expanded) and ``XDG_STATE_HOME`` names none."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".local", "state")
    return Path(base).absolute() / "persevere"


def locate_state_file(
    file: str | Path,
    bucket: str,
    key: str,
    *,
    state_file: str | Path | None = None,
    state_dir: str | Path | None = None,
) -> Path:
    """Where ``cp`` keeps the journal of this file and destination (see the module docstring).

    The same command finds the same state file again; nothing is created here. By default
    that is ``FILE.persevere`` beside the file, unless it records another destination: then
    the destination's own, ``FILE.DIGEST.persevere`` (DIGEST of the file's path, bucket and
    key), beside the file or under :func:`state_home`, wherever an earlier run put it. So a
    second destination of the same file is a second upload, not a refusal, and a
    ``FILE.persevere`` of an earlier version, which records its destination, is still found.
    """
    if state_file is not None:
        return followed(Path(state_file).expanduser().absolute())
    if names_stdin(file):  # a stream: named after its destination alone
        digest = hashlib.sha256(f"-\n{bucket}\n{key}".encode()).hexdigest()[:16]
        return Path(state_dir or state_home()).expanduser().absolute() / f"stdin.{digest}.persevere"
    path = Path(file).expanduser().absolute()
    # Named after the file's resolved path, so that another spelling of it (a symbolic link
    # to it or to its directory, ``a/../a/f``) finds the same journal; an earlier version's,
    # named after the path as typed, is still found. (A ``latest`` link rotated to another
    # file names another journal: the earlier upload is left to ``upload list``.)
    try:
        resolved = Path(os.path.realpath(path))
    except (OSError, ValueError):
        resolved = path
    names = list(dict.fromkeys([own_name(resolved, bucket, key), own_name(path, bucket, key)]))
    named = names[0]
    if state_dir is not None:
        given = Path(state_dir).expanduser().absolute()
        return next((given / n for n in names[1:] if _exists(given / n)), given / named)
    own, home = path.with_name(named), known_state_home()
    homes: tuple[Path, ...] = () if home is None else (home,)
    if journal_kept_apart(path):
        home = state_home()
        return next((home / n for n in names[1:] if _exists(home / n)), home / named)
    beside = path.with_name(path.name + ".persevere")
    if long_name(beside.name) and not _exists(beside):  # (an earlier version's: still found)
        beside = own  # FILE.persevere would be a name too long: the own name is cut to fit
    taken = _exists(beside)
    if taken and not _records_another_destination(beside, bucket, key):
        return beside
    for earlier in (
        own,
        *(h / named for h in homes),
        *(d / n for n in names[1:] for d in (path.parent, *homes)),
    ):
        if _exists(earlier):
            return earlier
    if not os.access(path.parent, os.W_OK):
        return state_home() / named
    return own if taken else beside


def journal_kept_apart(path: Path) -> bool:
    """Is ``path`` a block device, or a name in /dev or /proc (``/dev/fd/3``, a descriptor
    handed over): no place for its journal beside it (a tmpfs, gone at reboot; /proc takes
    no file), which goes under :func:`state_home`."""
    return is_block_device(path) or path.absolute().parts[1:2] in (("dev",), ("proc",))


_MAX_NAME_BYTES = 255  # a file name, in most file systems
_ROOM = 24  # what names made from a journal's add to it: ".shard-I-of-N", a tree's ".d"


def fitted(name: str, suffix: str) -> str:
    """``name + suffix``, ``name`` cut short so that the names made from it fit too."""
    cut = os.fsencode(name)[: _MAX_NAME_BYTES - _ROOM - len(os.fsencode(suffix))]
    return cut.decode("utf-8", "ignore") + suffix


def long_name(name: str) -> bool:
    """Would the names made from this journal name be names too long?"""
    return len(os.fsencode(name)) > _MAX_NAME_BYTES - _ROOM


def own_name(path: Path, bucket: str, key: str) -> str:
    """``FILE.DIGEST.persevere``, FILE cut short if the whole would be a name too long."""
    where = f"{path}\n{bucket}\n{key}".encode("utf-8", "surrogateescape")
    return fitted(path.name, f".{hashlib.sha256(where).hexdigest()[:16]}.persevere")


def _records_another_destination(path: Path, bucket: str, key: str) -> bool:
    """Does this state file record an upload to another object? (One that cannot be read
    is taken as is: ``cp`` says what is wrong with it.)"""
    deadline = time.monotonic() + _HEADER_PATIENCE_S
    while True:
        try:
            header = read_state(path).header
        except StateFileUntrusted:
            return True  # (another user's, where anyone may write: this run takes its own name)
        except (StateFileError, OSError):
            # Another run making it (two destinations of one file started together): its
            # header comes once S3 answered its CreateMultipartUpload.
            if time.monotonic() < deadline and being_made(path):
                time.sleep(0.05)
                continue
            return False
        return (header.bucket, header.key) != (bucket, key)


_HEADER_PATIENCE_S = 5.0  # a CreateMultipartUpload's answer, on a slow link


def _exists(path: Path) -> bool:
    """Whether something is at ``path``; a path that cannot be looked at (a symbolic-link
    loop, a name too long) counts as nothing: the file is checked next, and the state file
    path by the journal (:func:`._journal.require_regular`), each saying why in one line."""
    try:
        return path.exists()
    except OSError:
        return False


async def copy_file(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    *,
    progress: ProgressSink | None = None,
    **asked: Unpack[Copied],
) -> UploadResult:
    """:func:`copy`, given :func:`persevere.upload_file`'s keywords and ``expected_size`` (a
    stream's length; ``file`` '-': standard input, see :mod:`._stream`)."""
    request = Request.of(file, bucket, key, state_file, **given(asked, Copied, "copy_file"))
    return await copy(request, guarded(progress))


async def copy(request: Request, progress: ProgressSink) -> UploadResult:
    """Make the request's object equal its source, whatever state an earlier run left: start,
    resume, or find it done (``UploadResult.already_completed``).

    Its state file is typically :func:`locate_state_file`'s answer; its directory is created.
    A stream (``-``, a pipe; its ``expected_size``): an upload in progress is resumed by
    piping in the same stream; a finished one is uploaded again (a stream cannot be proven
    equal to the object without being read), unless write-once: then the stream is read
    through and compared with the object (the same: done; another: refused).
    """
    stream = request.reads().stream
    request.refuse_for_stream()  # what a stream cannot be given, refused as upload_file does
    started = time.monotonic()
    identity, state_path = None, request.state_file
    if not stream:
        identity = await anyio.to_thread.run_sync(inspect_file, request.reads().path)
        check_expected_size(identity, request.expected_size)
        # The path as given: a link swapped before completion is seen (check_unchanged)
        request = replace(request, source=Named(identity.given or identity.path))
        # (before an empty state file is taken for a torn journal and removed)
        refuse_source_as_state(state_path, identity.path)
    found = await anyio.to_thread.run_sync(_existing, state_path)
    if found == "empty" or isinstance(found, HeaderTorn):
        shown = shlex.quote(f"s3://{request.bucket}/{request.key}")
        log.warning("%s was left empty by a run stopped as S3 created its upload: that upload may "
                    "be on S3, recorded nowhere ('persevere upload list %s' shows it, to abort)",
                    state_path, shown)  # fmt: skip
    naming = _Naming(progress, state_path)
    conflicts = conflicts_of(found, request, identity)
    size = None if identity is None else identity.size
    source, learnt = Source(stream, size, write_once=request.no_overwrite), Learnt()
    while (decision := decide(found, source, conflicts, learnt)).action in ("check", "resume"):
        assert isinstance(found, JournalState)
        if decision.action == "check":
            checked = await recheck(found, state_path, identity, request.endpoint,
                                    options=request.transfer)  # fmt: skip
            if stream and checked.outcome == "same":
                await _same_stream(found, request.reads().fd, naming)
            learnt = Learnt(checked.outcome == "same", why=checked.why)
            continue
        try:
            return await resume(request, naming)  # (a stream's source: what it pipes in)
        except StateFileLocked as exc:
            raise _already_running(state_path) from exc
        except (UploadGone, SourceChanged) as exc:
            unread = isinstance(exc, UploadGone) and not naming.started  # a stream, not read
            if exc.next_step == "resume" or (stream and not unread):
                raise  # changing while read (run again once final), or a stream being read
            # (a file's resume checked whether an earlier run completed it: it did not)
            learnt = Learnt(False, upload_gone=True, why=str(exc))
    if decision.action == "done":
        assert isinstance(found, JournalState)
        naming.name()
        return result_of(found, started)
    if decision.action == "refuse":
        raise refusal(found, state_path, decision)
    if decision.action == "restart":
        log.warning("%s; starting the upload again", decision.why)
        await _abort_previous(state_path)
    elif decision.why:
        log.warning("%s", decision.why)
    await anyio.to_thread.run_sync(_make_room, state_path)
    if identity is not None:
        with contextlib.suppress(UsageError):  # refused: upload says why
            say_plan(make_plan(identity.size, request.part_size, request.max_parts))
    try:
        try:
            return await upload(request, naming)
        except UploadGone as exc:  # aborted while this run sent it (a colleague, a lifecycle rule)
            if stream:
                raise  # (its bytes are read: they cannot be sent again)
            log.warning("%s; starting the upload again", exc)
            await _abort_previous(state_path)  # (an answer S3 did not give: its parts billed)
            await anyio.to_thread.run_sync(_make_room, state_path)
            return await upload(request, naming)  # once: gone again, the error stands
    except (StateFileExists, StateFileLocked) as exc:  # another cp created it a moment ago
        raise _already_running(state_path) from exc


async def _abort_previous(state_path: Path) -> None:
    """The upload ``state_path`` records, aborted before it is replaced: S3 frees its parts
    (best effort: it may be gone already; the new upload matters now)."""
    with anyio.move_on_after(30):
        try:
            await abort_upload(state_path)
        except Exception as exc:
            log.info("could not abort the previous upload (%s)", exc)


async def _same_stream(state: JournalState, fd: int, progress: ProgressSink) -> None:
    """A write-once stream whose upload completed: the same stream again is its object (exit
    0); another is refused, as an existing key is."""
    where = f"s3://{state.header.bucket}/{state.header.key}"
    if not await gives_object(state, fd, progress):
        raise left_untouched(where, "nothing was uploaded: the stream piped in is not the one "
                             "it was completed from")  # fmt: skip
    say("the stream piped in is the one %s was completed from: unchanged, nothing sent", where)


class _Naming(NamingStateFile):
    """Notes whether the upload started (a stream: whether standard input is being read)."""

    started = False

    def start(self, total_bytes: int, done_bytes: int) -> None:
        self.started = True
        super().start(total_bytes, done_bytes)


def read_found(path: Path) -> Found:
    """What the state file holds, read only (the dry run's view, and cp's before it acts)."""
    require_regular(path)  # a device at the path is refused, never unlinked
    if not path.exists():
        return "none"
    try:
        return read_state(path) if path.stat().st_size > 0 else "empty"
    except HeaderTorn as exc:
        return exc


def _existing(path: Path) -> Found:
    found = read_found(path)
    if isinstance(found, JournalState) or found == "none":
        return found
    # Empty (or its header torn): a run stopped before its upload was recorded (nothing to
    # resume), or one that is creating it right now, holding the lock: that one must not lose
    # its file.
    with contextlib.suppress(FileNotFoundError):
        journal = Journal(path, os.open(path, os.O_RDONLY))
        with contextlib.closing(journal):
            try:
                journal.lock()
            except StateFileLocked as exc:
                raise _already_running(path) from exc
            try:
                path.unlink()
            except OSError as exc:  # read-only: cannot be replaced, so cannot be used
                raise unwritable("replace", path, exc.strerror) from None
    return found


def _make_room(state_path: Path) -> None:
    """Replace a finished journal, and make sure the state directory exists."""
    require_regular(state_path)
    try:
        state_path.unlink(missing_ok=True)
    except OSError as exc:
        raise unwritable("create", state_path, exc.strerror) from None
    make_state_dir(state_path)


def make_state_dir(state_path: Path) -> None:
    """The directory of a state file where persevere chose to put it (a new machine has no
    ``~/.local/state/persevere``)."""
    # (under $XDG_STATE_HOME: private; elsewhere, --state-dir's: as the umask says)
    home = known_state_home()
    private = home is not None and state_path.parent.is_relative_to(home)
    try:
        make_dirs(state_path.parent, 0o700 if private else 0o775)
    except OSError as exc:  # a read-only file system, a file where the directory should be
        raise unwritable("create", state_path, exc.strerror) from None


def conflicts_of(state: Found, request: Request, identity: FileIdentity | None) -> list[str]:
    """Refuse a state file of another destination, or another source (``identity`` None: a
    stream, which may only go on with a stream's upload in progress); else what ``request``
    asks that it recorded otherwise (:meth:`Request.conflicts_with`; none if it records no
    upload)."""
    if not isinstance(state, JournalState):
        return []
    header, path, bucket, key = state.header, request.state_file, request.bucket, request.key
    if (header.bucket, header.key) != (bucket, key):
        raise UsageError(
            f"state file {path} records an upload to s3://{header.bucket}/{header.key}, not "
            f"to s3://{bucket}/{key}",
            hint=None if identity is None else "give each destination its own state file",
            param="state_file",
        )
    if identity is None:
        if state.finished is None and not header.stream:
            raise other_source(path, header, None)
        return request.conflicts_with(state, path)
    if header.stream:
        raise other_source(path, header, identity.path, state.finished)
    if header.file_path != str(identity.path) and identity.size != header.file_size:  # moved
        raise UsageError(
            f"state file {path} records an upload of {header.file_path} "
            f"({header.file_size:,} bytes), not of {identity.path} ({identity.size:,} bytes)",
            hint="give each file its own state file",
            param="state_file",
        )
    return request.conflicts_with(state, path)


def refusal(state: Found, path: Path, decision: Decision) -> UsageError:
    """The run would resume ``state``'s upload, or find it done, with options it ignores (what
    ``decision`` refuses)."""
    assert isinstance(state, JournalState)  # (only a recorded upload is refused)
    header, differ = state.header, decision.why or ""
    doing = "was uploaded" if state.finished == "completed" else "is being uploaded"
    return UsageError(
        f"state file {path} records that s3://{header.bucket}/{header.key} {doing} with "
        f"other options than these ({differ}): they would not apply to it",
        hint="give the options it was started with; to upload with these instead, give "
        "another state file, or remove this one (abort its upload first if unfinished)",
    )  # (no param: the flags that differ are named, --state-file may not have been given)


def _already_running(path: Path) -> StateFileLocked:
    return StateFileLocked(
        f"already running: another persevere is uploading with state file {path}",
        hint="let it finish (this command exits 0 once the upload is complete)",
    )
