"""A tree's journal: append-only JSONL, each line fsync'd before it counts (as a file's).

Line 1 is the header: the directory, the destination (bucket, prefix, endpoint) and the
options every object is made with (checksum algorithm, object options). Then one ``done``
line per file whose object S3 has confirmed: its relative path, key, identity (size, times,
inode, device) and the proof (ETag, full-object checksum). A later line for the same path
wins. A file's multipart upload in progress has a journal of its own (the files' directory
beside this one, :func:`files_dir`), resumed by the same pipeline as ``cp FILE``.

A re-run skips a file whose identity is the one recorded without a request: the change time
moves with every write and every ``utime``, so a file edited with its mtime put back is sent
again. A torn last line (a crash while it was written) is cut; a damaged line is skipped (the
file it recorded is sent again).
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import stat
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ._errors import PersevereError, StateFileError, StateFileLocked, UsageError
from ._journal import Journal, _typed, being_made, in_use, require_regular, unwritable
from ._object_options import differing
from ._platform import make_dirs
from ._source import FileIdentity

log = logging.getLogger("persevere")

FORMAT = "persevere-tree"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class TreeHeader:
    root: str
    bucket: str
    prefix: str
    endpoint_url: str | None
    checksum_algorithm: str
    created_at: str = ""
    tool_version: str = ""
    object_options: dict[str, Any] | None = None
    # The AWS profile the run was given (its config may name another endpoint or account):
    # a run as another profile is another destination, never "unchanged".
    profile: str | None = None
    # The endpoint the AWS config file named (a profile's or a services section's
    # endpoint_url) when no flag or variable did: a config edited to name another endpoint
    # is another destination too.
    config_endpoint_url: str | None = None

    def destination(self) -> tuple[str, str, str | None, str | None, str | None]:
        return self.bucket, self.prefix, self.endpoint_url, self.profile, self.config_endpoint_url


@dataclass(frozen=True, slots=True)
class FileDone:
    """A file whose object S3 confirmed, with the identity it had when it was read."""

    rel: str
    key: str
    size: int
    mtime_ns: int
    ctime_ns: int | None
    inode: int | None
    device: int | None
    etag: str
    checksum: str | None = None  # base64 full-object checksum S3 stated (None: ETag proof)

    @classmethod
    def of(cls, rel: str, key: str, identity: FileIdentity, etag: str, checksum: str | None
           ) -> FileDone:  # fmt: skip
        return cls(rel, key, identity.size, identity.mtime_ns, identity.ctime_ns,
                   identity.inode, identity.device, etag, checksum)  # fmt: skip

    def same_file(self, stamp: tuple[int, int, int, int, int], key: str) -> bool:
        """Is ``stamp`` (size, mtime, ctime, inode, device) the identity recorded, sent to
        ``key``? The device number is not compared: the kernel numbers a file system anew at
        each mount (a pod's volume attached on another node, an NFS share mounted again, a
        disk plugged in after another), and the change time, which no tool can set back,
        already tells an edit or a copy (a restore onto another disk makes a new one)."""
        recorded = (self.size, self.mtime_ns, self.ctime_ns, self.inode)
        return key == self.key and recorded == stamp[:4]


def files_dir(state_file: Path) -> Path:
    """Where the journals of a tree's multipart uploads live: ``STATE_FILE.d``."""
    return state_file.with_name(state_file.name + ".d")


def shard_of(rel: str, count: int) -> int:
    """Which of ``count`` shards a file is in: by its path alone, so every host and every
    run agrees whatever else the tree holds."""
    return zlib.crc32(rel.encode("utf-8", "surrogateescape")) % count


def read_header(path: Path) -> TreeHeader | None:
    """The header of the tree journal at ``path`` (None: none there, or not a tree's)."""
    try:
        # O_NONBLOCK: a FIFO there (DIR.persevere, or --state-file) is no journal, never a
        # reader waiting for a writer: cp DIR and verify DIR hung on one
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            return _parse_header(json.loads(f.readline()), str(path))
    except (OSError, ValueError, StateFileError):
        return None


def read_done(path: Path, draft: TreeHeader, *, checksum_given: bool = True) -> dict[str, FileDone]:
    """What the tree journal at ``path`` and its shards' record done, read only (a dry run);
    a journal of another tree, destination or options is refused as :meth:`TreeJournal.open`
    does; one that is not there must be one the run could create. Blocking."""
    parent = next(p for p in path.parents if p.exists())
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):  # (a read-only mount)
        raise unwritable("create", path, f"{parent} is not writable")
    if path.exists() and path.stat().st_size == 0:
        _refuse_tree_file(path, draft.root)
    done: dict[str, FileDone] = {}
    for each in [path, *sorted(path.parent.glob(f"{glob.escape(path.name)}.shard-*-of-*"))]:
        done.update(_read_only(each, draft, checksum_given))
    return done


def _read_only(path: Path, draft: TreeHeader, checksum_given: bool) -> dict[str, FileDone]:
    require_regular(path)  # a FIFO: refused, never waited on (--dry-run and --shard hung)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from None
    lines = data[: data.rfind(b"\n") + 1].splitlines()
    return _read_lines(path, lines, draft, checksum_given)[1] if lines else {}


def _read_lines(
    path: Path, lines: list[bytes], draft: TreeHeader, checksum_given: bool
) -> tuple[TreeHeader, dict[str, FileDone], int]:
    """The header of the journal at ``path`` (its ``lines``, the header's at least), what it
    records done and how many lines are damaged; one of another tree, destination or options
    is refused (:func:`_refuse_other`)."""
    try:
        header = _parse_header(json.loads(lines[0]), f"state file {path}")
    except ValueError:
        raise StateFileError(f"state file {path} is not a persevere state file") from None
    _refuse_other(path, header, draft, checksum_given)
    return header, *_replay(lines[1:], str(path))


def _parse_header(record: Any, where: str) -> TreeHeader:
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise StateFileError(f"{where} is not the journal of a directory's upload",
                             hint="give each upload its own state file")  # fmt: skip
    version = record.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StateFileError(f"{where} was written by a newer persevere (format {version}): "
                             "upgrade persevere to resume it")  # fmt: skip
    return _typed(TreeHeader, record, f"{where}: header")


@dataclass
class TreeJournal:
    """An open, locked tree journal: what is done, and appending what becomes done."""

    _journal: Journal
    header: TreeHeader
    done: dict[str, FileDone]
    damaged: int = 0
    _pending: list[FileDone] = field(default_factory=list, init=False)
    # (made on the event loop, at first use)
    _writing: anyio.Lock | None = field(default=None, init=False)

    @classmethod
    def open(cls, path: Path, draft: TreeHeader, *, checksum_given: bool = True) -> TreeJournal:
        """The journal at ``path`` if there is one (its destination and options must be
        ``draft``'s; its checksum too if ``checksum_given``), else a new one with ``draft`` as
        its header. Blocking."""
        require_regular(path)  # a device or FIFO at the path is refused, never unlinked
        if (parts := files_dir(path)).exists() and not parts.is_dir():  # (not "try again")
            raise UsageError(f"{parts} is not a directory: the journals of a tree's large "
                             "files go there", hint="move it, or give another --state-file",
                             param="state_file")  # fmt: skip
        new = not path.exists() or path.stat().st_size == 0
        if new:
            _refuse_tree_file(path, draft.root)
            try:
                make_dirs(path.parent, _dir_mode(path))
            except OSError as exc:  # (a read-only file system: was a traceback)
                raise unwritable("create", path, exc.strerror) from None
            if path.exists():  # (a dangling symbolic link is kept: Journal.create refuses it)
                if being_made(path):  # (another run's, its header not written yet: in use)
                    raise in_use(path)
                path.unlink()  # empty: a run stopped before its header was written
        journal, lines = (Journal.create(path), []) if new else Journal.open_log(path)
        try:
            # (a header torn by a crash, cut by open_log: it recorded nothing, no file is sent
            # before it is whole; written again, as a new journal's)
            if new or not lines:
                journal.append({"type": "header", "format": FORMAT, "version": FORMAT_VERSION,
                                **asdict(draft)})  # fmt: skip
                return cls(journal, draft, {})
            return cls(journal, *_read_lines(path, lines, draft, checksum_given))
        except BaseException:
            journal.close()
            raise

    @property
    def path(self) -> Path:
        return self._journal.path

    def read_also(self, path: Path) -> None:
        """Count as done what the journal at ``path`` records (a shard's view of the whole
        tree's journal): read only, not locked (its lines are appended whole). Blocking."""
        self.done = {**_read_only(path, self.header, True), **self.done}

    def merge_shards(self, also: Iterable[Path] = ()) -> list[tuple[str, bool]]:
        """Take in the shards' journals (shard I's files, :func:`shard_of`, recorded in
        ``STATE.shard-I-of-N``) and remove them: what they record done is recorded here. A
        shard still running (its journal locked) is refused, exit 3: run again once it ended.
        ``also``: the tree's other journal names (``DIR.persevere``, ``DIR.DIGEST.persevere``),
        whose shard journals are taken in too when they record this destination (shards of
        two destinations started together may have taken either). Blocking; the files taken,
        each with whether this journal recorded it done before."""
        taken: list[tuple[str, bool]] = []
        own = self._journal.path

        def shards_of(base: Path) -> set[Path]:
            return set(base.parent.glob(f"{glob.escape(base.name)}.shard-*-of-*"))

        mine = shards_of(own)
        others = {path for base in set(also) - {own} for path in shards_of(base)} - mine
        for path in sorted(mine | others):
            other = read_header(path)
            if path in others and other is None:
                continue  # (not known to be of this destination: left as it is)
            if other is not None and other.destination() != self.header.destination():
                log.info("%s is a shard of an upload to another destination: left", path)
                continue
            try:
                journal, lines = Journal.open_log(path)
            except StateFileLocked:
                raise StateFileLocked(
                    f"a shard of this tree is still running (state file {path})",
                    hint="run this command again once every shard has ended",
                ) from None
            with contextlib.closing(journal):
                recorded = _read_lines(path, lines, self.header, True)[1] if lines else {}
                new = [d for d in recorded.values() if self.done.get(d.rel) != d]
                if new:
                    self._journal.append(*({"type": "done", **asdict(d)} for d in new))
                    taken += [(d.rel, d.rel in self.done) for d in new]
                    self.done.update((d.rel, d) for d in new)
                path.unlink()
        return taken

    async def record(self, done: FileDone) -> None:
        """Record ``done`` durably (fsync'd before it returns). Records that come while one
        is written are written together next, with one fsync (a group commit): thousands
        of small files do not wait for thousands of fsyncs in a row."""
        self._pending.append(done)
        self._writing = self._writing or anyio.Lock()
        async with self._writing:
            if not any(waiting is done for waiting in self._pending):
                self._journal.check_writable()  # written by the batch before: did it fail?
                return
            batch, self._pending = self._pending, []
            lines = [{"type": "done", **asdict(entry)} for entry in batch]
            await anyio.to_thread.run_sync(lambda: self._journal.append(*lines))
            self.done.update((entry.rel, entry) for entry in batch)

    def close(self) -> None:
        self._journal.close()


def _dir_mode(path: Path) -> int:
    """The mode of a directory made for a journal: private under $XDG_STATE_HOME, else the
    umask's (never writable by others)."""
    from ._cp import known_state_home

    home = known_state_home()
    return 0o700 if home is not None and path.parent.is_relative_to(home) else 0o775


def _refuse_tree_file(path: Path, root: str) -> None:
    """An empty file of the tree given as its state file (``--state-file DIR/marker``) is
    refused, never taken for a journal a crash left without its header and replaced (the walk
    leaves the journal's own name out: it would never have been uploaded either)."""
    if path.exists() and Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
        raise UsageError(
            f"state file {path} is an empty file of the tree being uploaded: a journal "
            "would replace it",
            hint="give --state-file a path outside the tree (or, if a run stopped as it was "
            "creating this journal, remove it)",
        )


def _refuse_other(path: Path, header: TreeHeader, draft: TreeHeader, checksum_given: bool
                  ) -> None:  # fmt: skip
    """A journal of another tree, destination or options is refused, never mixed in."""
    if header.root != draft.root or header.destination() != draft.destination():
        where = f"s3://{header.bucket}/{header.prefix}"
        if header.endpoint_url != draft.endpoint_url:
            where += f" at {header.endpoint_url or 'AWS'}"
        if header.profile != draft.profile:
            where += f" as profile {header.profile or '(none)'}"
        if header.config_endpoint_url != draft.config_endpoint_url:
            where += f" at {header.config_endpoint_url or 'AWS'} (AWS config file)"
        raise UsageError(
            f"state file {path} records an upload of {header.root} to {where}, not this one",
            hint="give each directory and destination its own state file",
            param="state_file",
        )
    differ = []
    if checksum_given and draft.checksum_algorithm != header.checksum_algorithm:
        differ.append(f"checksum {header.checksum_algorithm}, not {draft.checksum_algorithm}")
    if draft.object_options is not None and (
        names := differing(draft.object_options, header.object_options or {})
    ):
        differ.append(f"object options: {', '.join(names)}")
    if differ:
        raise UsageError(
            f"state file {path} records that s3://{header.bucket}/{header.prefix} is being "
            f"uploaded with other options than these ({', '.join(differ)}): they would not "
            "apply to the objects already sent",
            hint="give the options it was started with, or another state file",
        )  # (no param: --state-file may not have been given)


def _replay(lines: list[bytes], where: str) -> tuple[dict[str, FileDone], int]:
    done: dict[str, FileDone] = {}
    damaged = 0
    for number, raw in enumerate(lines, start=2):
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or record.get("type") != "done":
                raise StateFileError("not a record")
            entry = _typed(FileDone, record, f"{where}, line {number}")
            done[entry.rel] = entry
        except (ValueError, StateFileError):
            damaged += 1  # its file is sent again
    return done, damaged


def recorded_files(path: Path) -> int:
    """How many files the tree journal at ``path`` records done (0: none, or unreadable).
    Blocking."""
    try:
        require_regular(path)
        data = path.read_bytes()
    except (OSError, PersevereError):
        return 0
    lines = data[: data.rfind(b"\n") + 1].splitlines()
    return len(_replay(lines[1:], str(path))[0]) if lines else 0
