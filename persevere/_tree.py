"""``persevere cp DIR s3://BUCKET/PREFIX/``: a whole tree, one resumable command.

Each regular file goes to ``PREFIX`` + its path relative to ``DIR``. The tree's journal
(:mod:`._tree_journal`) records each file S3 confirmed; running the same command again is the
resume:

- a file recorded done whose identity is unchanged is skipped without a request (with
  ``check_remote``, its object is looked at: HeadObject, size and checksum);
- a changed file is sent again, a new file is added; a file removed locally is reported, its
  object kept (nothing is ever deleted);
- a small file (at most :data:`SMALL_MAX` and one part) is one PutObject whose checksum S3
  verifies and echoes (or, where it echoes none, whose Content-MD5 it checks and returns as
  ETag); a larger one is a multipart upload through the same pipeline as ``cp FILE``
  (:func:`._cp.copy`), its journal in the tree journal's files directory, resumed part by
  part after a crash.

One concurrency budget for the whole tree: small files first, ``concurrency`` at a time, then
the large ones one after another, each with ``concurrency`` parts in flight; so memory is
bounded as one file's is (at most ``concurrency`` small files in memory).

A file that cannot be sent (unreadable, changed while read) is listed as failed and the rest
go on; an error that is not the file's (the endpoint unreachable, access refused, a state file
that cannot be written) stops the tree (run again: what is done stays done). Exit 0 only when
every file's object is confirmed.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import glob
import hashlib
import logging
import os
import shlex
import stat
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ._bandwidth import TokenBucket, sharing
from ._body import BufferedBody
from ._checksum_mode import PartDigests, PartVerifier
from ._checksums import ChecksumAlgorithm, b64, get_algorithm
from ._errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_RESUMABLE,
    EXIT_USAGE,
    PersevereError,
    S3Error,
    SourceChanged,
    SourceFileError,
    StateFileError,
    StateFileLocked,
    StateFileUnwritable,
    UsageError,
)
from ._journal import read_state, require_regular
from ._logs import event, one_line, say
from ._object_options import differing, guess_content_type
from ._options import UploadOptions
from ._plan import MAX_PARTS, make_plan
from ._platform import make_dirs
from ._progress import NullProgress, ProgressSink, TreeProgress, guarded
from ._quirks import missing
from ._request import Request, algorithm_of, now
from ._request import Source as Named
from ._retry import Call
from ._s3 import Endpoint, config_endpoint_url, many_clients, open_client, request
from ._sender import Stalls
from ._session import explained, resumable
from ._shard_journals import shard_journal
from ._source import FileIdentity
from ._tree_journal import (
    FileDone,
    TreeHeader,
    TreeJournal,
    files_dir,
    read_done,
    read_header,
    shard_of,
)
from ._tree_walk import Listing, TreeFile, walk
from ._units import MiB, format_size
from ._urls import check_destination
from ._version import __version__

log = logging.getLogger("persevere")

T = TypeVar("T")

SMALL_MAX = 8 * MiB  # a file up to this size (and one part) is one PutObject
DEFAULT_CHECKSUM = "CRC64NVME"


@dataclass(frozen=True, slots=True)
class TreeSpec:
    """A tree, where its objects go and its journal: what ``cp DIR`` and ``verify DIR`` share."""

    root: Path
    bucket: str
    prefix: str
    state_file: Path
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def walk(self) -> Listing:
        """The tree's files (:func:`._tree_walk.walk`), its journal's own left out. Blocking."""
        return walk(self.root, include=self.include, exclude=self.exclude,
                    follow_symlinks=self.follow_symlinks, skip=self.state_file)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TreeRequest(TreeSpec):
    """A tree upload as the user asked for it (``checksum``/``object_options`` None: not
    said, the journal's recorded ones, else the defaults)."""

    check_remote: bool = False
    part_size: int | None = None
    max_parts: int = MAX_PARTS
    checksum: str | None = None
    object_options: dict[str, Any] | None = None
    endpoint: Endpoint | None = None
    transfer: UploadOptions = field(default_factory=UploadOptions)
    shard: tuple[int, int] | None = None  # (index, count): only this shard's files
    # The destination's own journal (DIR.DIGEST.persevere), when ``state_file`` is the
    # DIR.persevere chosen by default: taken instead if a run to another destination started
    # at the same moment took DIR.persevere first (:func:`tree_state_instead`).
    state_instead: Path | None = None

    def takes(self, rel: str) -> bool:
        return self.shard is None or shard_of(rel, self.shard[1]) == self.shard[0]


@dataclass(slots=True)
class TreeResult:
    bucket: str
    prefix: str
    state_file: Path
    files: int = 0  # regular files taken
    sent: list[str] = field(default_factory=list)  # sent this run for the first time
    resent: list[str] = field(default_factory=list)  # changed since they were sent
    skipped: int = 0  # done earlier, unchanged
    by_shards: int = 0  # of the sent and resent, sent by its shard processes (--processes)
    refused: list[tuple[str, str]] = field(default_factory=list)  # not regular files
    removed: list[str] = field(default_factory=list)  # recorded, gone locally (object kept)
    aborted: list[str] = field(default_factory=list)  # unfinished uploads no longer needed
    failed: list[tuple[str, str, int]] = field(default_factory=list)  # (path, why, exit code)
    excluded: int = 0
    bytes_sent: int = 0
    elapsed_s: float = 0.0
    # Recorded by the shards' journals this run took in: (path, recorded done before)
    taken_in: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The first of usage, error and resumable a failed file has, else the highest."""
        codes = {code for _, _, code in self.failed}
        ranked = [code for code in (EXIT_USAGE, EXIT_ERROR, EXIT_RESUMABLE) if code in codes]
        return ranked[0] if ranked else max(codes, default=EXIT_OK)


def locate_tree_state(
    root: Path,
    bucket: str,
    prefix: str,
    endpoint: Endpoint,
    *,
    state_file: Path | None = None,
    state_dir: Path | None = None,
) -> Path:
    """Where the tree's journal is: ``DIR.persevere`` beside the directory, unless that one
    records another destination (then ``DIR.DIGEST.persevere``), or the parent directory is
    not writable (then under the XDG state directory, as ``cp FILE``'s)."""
    from ._cp import known_state_home, long_name, state_home

    if state_file is not None:
        return state_file.expanduser().absolute()
    name = root.name or "root"
    configured = config_endpoint_url(endpoint)
    own = _own_name(root, bucket, prefix, endpoint, configured)
    if state_dir is not None:
        return state_dir.expanduser().absolute() / own
    beside = root.parent / f"{name}.persevere"
    if long_name(beside.name) and read_header(beside) is None:  # (an earlier one: still used)
        beside = root.parent / own  # (its .d and shard journals would be names too long)
    ours = (bucket, prefix, endpoint.endpoint_url, endpoint.profile, configured)
    header = read_header(beside)
    if header is None and _damaged_tree_journal(beside):
        raise StateFileError(
            f"{beside} is a tree journal whose first line cannot be read (damaged): nothing "
            "was sent (a new journal would send every file again, and leave the uploads it "
            f"records in {beside.name}.d unfinished)",
            hint="repair its first line, or remove it (and abort what it records) to start over",
        )
    if header is not None and header.root == str(root) and header.destination() == ours:
        return beside
    if header is None:  # the shards' journals of another destination claim the name too
        shards = root.parent.glob(f"{glob.escape(beside.name)}.shard-*-of-*")
        claims = {h.destination() for p in shards if (h := read_header(p)) is not None}
        if claims and ours not in claims:
            beside = root.parent / own  # (which the other destination's merge needs free)
    home = known_state_home()
    earlier = [root.parent / own] + ([] if home is None else [home / own])
    if found := next((path for path in earlier if path.exists()), None):
        return found
    if not os.access(root.parent, os.W_OK) or root.parent == root:
        return state_home() / own
    return root.parent / own if beside.exists() else beside


def _own_name(
    root: Path, bucket: str, prefix: str, endpoint: Endpoint, configured: str | None
) -> str:
    """``DIR.DIGEST.persevere``: the journal name of this tree and destination alone."""
    from ._cp import fitted

    # (a name without a profile, or a configured endpoint, is kept as it was)
    said = [str(x) for x in (endpoint.profile, configured) if x is not None]
    where = "\n".join([str(root), bucket, prefix, str(endpoint.endpoint_url), *said])
    digest = hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return fitted(root.name or "root", f".{digest}.persevere")


def tree_state_instead(
    root: Path, bucket: str, prefix: str, endpoint: Endpoint, located: Path
) -> Path | None:
    """Where this destination's journal goes if ``located`` (:func:`locate_tree_state`'s
    choice) is the ``DIR.persevere`` a run of the same tree to another destination, started
    at the same moment, took first; None if ``located`` is not that shared name."""
    from ._cp import known_state_home

    if located != root.parent / f"{root.name or 'root'}.persevere":
        return None
    own = _own_name(root, bucket, prefix, endpoint, config_endpoint_url(endpoint))
    if not os.access(root.parent, os.W_OK) or root.parent == root:
        home = known_state_home()
        return None if home is None else home / own
    return root.parent / own


def _taken_by_another(path: Path, draft: TreeHeader, patience_s: float = 2.0) -> bool:
    """Does the journal at ``path``, locked by another run, record another destination (its
    header waited for while that run writes it)?"""
    deadline = time.monotonic() + patience_s
    while (header := read_header(path)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return header is not None and header.destination() != draft.destination()


def _damaged_tree_journal(path: Path) -> bool:
    """Does ``path`` begin as a tree journal's header that cannot be read, with what it
    records after it (or uploads under way in its ``.d``)? A header torn in its first write
    records nothing: not refused."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
            first, more = (f.readline(1 << 20), f.read(1)) if regular else (b"", b"")
    except OSError:
        return False
    recorded = bool(more) or files_dir(path).is_dir()
    return recorded and first.startswith(b"{") and b'"persevere-tree"' in first


def prefix_of(url_prefix: str) -> str:
    """The keys' prefix: ``backups`` and ``backups/`` both put ``a.txt`` at ``backups/a.txt``
    (as ``aws s3 cp --recursive`` does); empty: at the bucket's top."""
    return url_prefix if not url_prefix or url_prefix.endswith("/") else url_prefix + "/"


async def copy_tree(req: TreeRequest, progress: TreeProgress | None = None) -> TreeResult:
    """Make every file of ``req.root`` an object under ``req.prefix`` (see the module)."""
    progress = guarded(progress)
    started = time.monotonic()
    req, endpoint, draft = _draft(req)
    req, journal, made = await anyio.to_thread.run_sync(_open_journal, req, draft)
    own = journal.path
    with contextlib.closing(journal):
        try:
            taken = await anyio.to_thread.run_sync(_take_in, req, journal)
            # (a shard's run reports the journal it writes: DIR.persevere.shard-I-of-N)
            result = TreeResult(req.bucket, req.prefix, journal.path, taken_in=taken)
            # (made first: a journal whose checksum this persevere does not know stops the run)
            sender = _TreeSender(req, endpoint, journal, progress, result)
            todo, unchanged = await anyio.to_thread.run_sync(_todo, req, journal.done, result)
        except PersevereError:  # (a shard's journal refused, filters that take no file...)
            # (a new shard's journal holds nothing yet; a tree's may hold what it took in)
            if made and (req.shard is not None or not journal.done):
                journal.close()  # this run's new journal must not refuse the next
                own.unlink(missing_ok=True)
            raise
        if req.check_remote and unchanged:
            todo += await _gone_remotely(req, endpoint, journal, unchanged)
            todo.sort(key=lambda f: f.rel)
        result.skipped = result.files - len(todo)
        if todo:
            progress.start(sum(f.size for f in todo), 0)
            with contextlib.closing(progress), many_clients():  # (one per large file)
                await sender.send_all(todo)
        if req.shard is None and not result.failed:
            result.aborted = await _abort_unneeded(req.state_file, req.root)
        result.elapsed_s = time.monotonic() - started
        return result


async def _abort_unneeded(state_file: Path, root: Path) -> list[str]:
    """Once every file of the tree is done: the multipart uploads left unfinished (a file
    removed, left out, or small now, while its upload was under way) are aborted, so S3 frees
    their parts, and their journals removed. Best effort; what was aborted."""
    from ._upload import abort_upload

    def unfinished() -> Iterator[tuple[Path, str]]:
        for path in sorted(files_dir(state_file).glob("*.persevere")):
            try:
                state = read_state(path)
            except (PersevereError, OSError):
                continue
            rel = os.path.relpath(state.header.file_path, root)
            if state.finished is None and _absent_by_accident(Path(state.header.file_path)):
                log.warning("kept the unfinished upload of %s: its directory is empty "
                            "(a disk not mounted?); to give it up: persevere upload abort "
                            "--state-file %s", rel, shlex.quote(str(path)))  # fmt: skip
            elif state.finished is None:
                yield path, rel

    aborted = []
    for path, rel in await anyio.to_thread.run_sync(lambda: list(unfinished())):
        try:
            with anyio.fail_after(60):
                await abort_upload(path)
            await anyio.to_thread.run_sync(path.unlink)
        except (PersevereError, OSError, TimeoutError) as exc:
            log.info("could not abort the unfinished upload in %s (%s)", path, exc)
            continue
        log.info("aborted the unfinished upload of %s: its file is not sent that way now", rel)
        aborted.append(rel)
    return aborted


def _unfinished(state_file: Path) -> bool:
    """Does the tree's journal have large files' uploads under way (journals in its ``.d``)?"""
    try:
        return any(files_dir(state_file).glob("*.persevere"))
    except OSError:
        return False


def _absent_by_accident(path: Path) -> bool:
    """Is ``path`` not there with its directory there and empty: a mount point whose disk did
    not mount, where its parts must not be thrown away (a file deleted from a directory that
    still holds others, or with its directory, is gone on purpose)?"""
    if os.path.lexists(path):
        return False
    try:  # (a directory removed is gone on purpose: a mount point stays, empty)
        with os.scandir(path.parent) as entries:
            return next(entries, None) is None
    except OSError:
        return False


async def dry_run_tree(req: TreeRequest) -> TreeResult:
    """What :func:`copy_tree` would send (``sent``, ``resent``) and skip, from the journals
    and the files alone: no request, nothing written."""
    started = time.monotonic()
    req, _, draft = _draft(req)
    done = await anyio.to_thread.run_sync(
        lambda: read_done(req.state_file, draft, checksum_given=req.checksum is not None)
    )
    own = req.state_file if req.shard is None else shard_journal(req.state_file, *req.shard)
    result = TreeResult(req.bucket, req.prefix, own)
    todo, _ = await anyio.to_thread.run_sync(_todo, req, done, result)
    for f in todo:
        try:
            check_key(req.bucket, req.key(f.rel))  # (fails alone in the run, as here)
        except SourceFileError as exc:
            result.failed.append((f.rel, str(exc), exc.exit_code))
            continue
        (result.resent if f.rel in done else result.sent).append(f.rel)
        result.bytes_sent += f.size
    result.skipped = result.files - len(todo)
    result.elapsed_s = time.monotonic() - started
    if req.check_remote and result.skipped:  # (it said "skip N unchanged", and no more)
        log.warning("--check-remote: a dry run makes no request, so the %d unchanged file(s)' "
                    "objects were not looked at; the run sends again each one whose object is "
                    "missing or differs", result.skipped)  # fmt: skip
    return result


def _draft(req: TreeRequest) -> tuple[TreeRequest, Endpoint, TreeHeader]:
    """The request checked (no request to S3) with its root's one name (the real path), its
    endpoint and its journal's header."""
    req = replace(req, root=Path(os.path.realpath(req.root)))
    require_regular(req.state_file)  # (a device, or a place this user may not search: one line)
    check_destination(req.bucket, req.key("x"))
    req.transfer.validate()
    algorithm = algorithm_of(req.checksum)
    endpoint = req.endpoint or Endpoint.from_environment(None, None, None)
    draft = TreeHeader(str(req.root), req.bucket, req.prefix, endpoint.endpoint_url,
                       algorithm.name, now(), __version__, req.object_options or None,
                       endpoint.profile, config_endpoint_url(endpoint))  # fmt: skip
    return req, endpoint, _as_recorded(req, draft)


def _as_recorded(req: TreeRequest, draft: TreeHeader) -> TreeHeader:
    """``draft`` with the options the tree's journal (else a shard's) records where this run
    gives none: a shard, a re-run with ``--processes`` and the run that takes shards in make
    their objects as the tree was started (they made them with none, then every run was
    refused: the journals "record other options"). A shard given options other than another
    shard's journal records is refused (the run taking them in could take in only one).
    Blocking."""
    state = req.state_file
    paths = [state, *sorted(state.parent.glob(f"{glob.escape(state.name)}.shard-*-of-*"))]
    ours = (draft.root, draft.destination())
    headers = [(path, header) for path in paths if (header := read_header(path)) is not None
               and (header.root, header.destination()) == ours]  # fmt: skip
    if not headers:
        return draft
    first = headers[0][1]
    options = draft if req.object_options is not None else first
    checksum = draft if req.checksum is not None else first
    adopted = replace(draft, object_options=options.object_options,
                      checksum_algorithm=checksum.checksum_algorithm)  # fmt: skip
    own = None if req.shard is None else shard_journal(state, *req.shard)
    for path, header in headers if req.shard is not None else []:
        differ = differing(adopted.object_options or {}, header.object_options or {})
        if header.checksum_algorithm != adopted.checksum_algorithm:
            differ.append(f"checksum {header.checksum_algorithm}")
        if differ and path not in (state, own):  # (those two refuse it themselves)
            raise UsageError(
                f"{path} records that a shard of this tree was uploaded with other options "
                f"({', '.join(differ)}): the run that takes the shards in could take in only one",
                hint="give every shard the options the others were given",
            )
    return adopted


def _no_file_at(path: Path) -> bool:
    """Is the file recorded at ``path`` gone: nothing there, or a directory now (``rm x;
    mkdir x``; a link to one may be a file excluded from this run)?"""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:  # (as os.path.lexists: a parent that is no directory any more)
        return True


def _todo(
    req: TreeRequest, done: dict[str, FileDone], result: TreeResult
) -> tuple[list[TreeFile], list[TreeFile]]:
    """The files this run takes (its shard's) as (to send, recorded done and unchanged); what
    it refuses and, for the whole tree, what was removed, noted in ``result``. Blocking."""
    listing = req.walk()
    if req.shard is None and not listing.files and listing.excluded:
        # A typo in a filter must not upload nothing with exit 0, nor abort the unfinished
        # uploads of the files it left out (as a run that leaves them out on purpose does)
        raise UsageError(f"--include/--exclude: they leave out every file of {req.root} "
                         f"({listing.excluded:,} left out, 0 file(s) taken): nothing was "
                         "uploaded")  # fmt: skip
    if req.shard is None and not listing.files and listing.refused:  # (a farm of links)
        rel, why = listing.refused[0]
        raise UsageError(f"{req.root} holds no regular file to upload: "
                         f"{len(listing.refused):,} entries are not (such as {rel}: {why}); "
                         "nothing was uploaded")  # fmt: skip
    if (done or _unfinished(req.state_file)) and not (
        listing.files or listing.refused or listing.excluded or listing.unreadable
    ):  # fmt: skip
        # (cron's backup of a disk that did not mount this time: the mount point, empty)
        raise UsageError(f"{req.root} holds no file, yet its journal ({req.state_file}) records "
                         f"{len(done):,} uploaded (or uploads under way): is it the directory "
                         "that was uploaded (a disk not mounted)? Nothing was changed (every "
                         "file deleted on purpose: abort what `persevere upload list` shows "
                         "under the prefix, remove the journal and its .d directory)")  # fmt: skip
    if req.shard is not None:
        listing.files = [f for f in listing.files if req.takes(f.rel)]
        listing.refused = [(rel, why) for rel, why in listing.refused if req.takes(rel)]
    result.refused, result.excluded, result.files = (listing.refused, listing.excluded,
                                                     len(listing.files))  # fmt: skip
    # What could not be looked at may hold files: never exit 0 over it (every shard says so).
    result.failed += [
        (rel, f"{why} ({_way_out(rel, why)})", EXIT_USAGE)
        if rel in listing.denied
        else (rel, why, EXIT_ERROR)
        for rel, why in listing.unreadable
    ]
    if req.shard is None:  # (a shard's journal does not know the other shards' files)
        # Recorded done, not there any more (their objects are kept).
        listed = {f.rel for f in listing.files}
        gone = (rel for rel in done if rel not in listed)
        result.removed = sorted(rel for rel in gone if _no_file_at(req.root / rel))
    todo: list[TreeFile] = []
    unchanged: list[TreeFile] = []
    for f in listing.files:
        fresh = f.rel in done and done[f.rel].same_file(f.stamp, req.key(f.rel))
        (unchanged if fresh else todo).append(f)
    return todo, unchanged


def _way_out(rel: str, why: str) -> str:
    """What to do about a path of the tree the user may not look at."""
    if rel == ".":
        return "fix its permissions"
    left_out = rel + ("/" if why.startswith("cannot list") else "")
    return f"fix its permissions, or leave it out: --exclude {shlex.quote(left_out)}"


def _holds_something(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _open_journal(req: TreeRequest, draft: TreeHeader) -> tuple[TreeRequest, TreeJournal, bool]:
    """This run's journal: the tree's, or a shard's (:func:`_take_in` reads the others'); the
    request (its journal moved to ``state_instead`` if a run to another destination holds
    DIR.persevere), and whether the journal is new. Blocking."""
    while True:
        own = req.state_file if req.shard is None else shard_journal(req.state_file, *req.shard)
        instead = req.state_instead
        if instead is not None and _taken_by_another(own, draft, patience_s=0):
            # (a shard of another destination's run, started at the same moment, took it)
            req = replace(req, state_file=instead, state_instead=None)
            continue
        made = not _holds_something(own)
        try:
            journal = TreeJournal.open(own, draft, checksum_given=req.checksum is not None)
        except StateFileLocked:
            if instead is None or not _taken_by_another(own, draft):
                raise
            log.info("%s is another destination's, in use: this one's journal is %s",
                     own, instead)  # fmt: skip
            req = replace(req, state_file=instead, state_instead=None)
            continue
        if journal.damaged:
            log.warning("state file %s: %d damaged line(s) skipped; their files are sent again",
                        own, journal.damaged)  # fmt: skip
        return req, journal, made


def _take_in(req: TreeRequest, journal: TreeJournal) -> list[tuple[str, bool]]:
    """The tree's journal takes its shards' in; a shard's counts what the tree's records too
    (a shard run again after the tree was finished sends nothing). Blocking; the files taken
    in (:meth:`TreeJournal.merge_shards`)."""
    if req.shard is None:
        beside = req.root.parent / f"{req.root.name or 'root'}.persevere"
        also = [path for path in (beside, req.state_instead) if path is not None]
        if taken := journal.merge_shards(also):
            log.info("took in %d file(s) recorded by the shards' journals", len(taken))
        return taken
    journal.read_also(req.state_file)
    return []


async def _gone_remotely(
    req: TreeRequest, endpoint: Endpoint, journal: TreeJournal, files: list[TreeFile]
) -> list[TreeFile]:
    """``check_remote``: the unchanged files whose object is not the one recorded (missing,
    or another size, ETag or checksum): sent again. ``concurrency`` HEADs at a time, as many
    tasks: memory does not grow with the tree."""
    differ: list[TreeFile] = []
    async with open_client(endpoint, req.transfer) as client:

        async def check(f: TreeFile, _: _Slot) -> None:
            done = journal.done[f.rel]
            try:
                head: Any = await request(
                    f"HeadObject {done.key}",
                    lambda: client.head_object(
                        Bucket=req.bucket, Key=done.key, ChecksumMode="ENABLED"
                    ),
                )
            except S3Error as exc:
                if not missing(exc):
                    raise
                head = {}  # no object: no size, so not the one recorded
            # The one recorded: its size and ETag, and its checksum where both say one (an
            # object another tool wrote carries its own).
            etag = str(head.get("ETag", "")).strip('"')
            same = head.get("ContentLength") == done.size and etag == done.etag.strip('"')
            stated = {head.get(f"Checksum{journal.header.checksum_algorithm}"), done.checksum}
            if not same or len(stated - {None}) > 1:
                differ.append(f)

        await each(files, req.transfer.concurrency, check)
    return differ


async def each(
    items: list[T],
    limit: int,
    work: Callable[[T, _Slot], Awaitable[None]],
    weight: Callable[[T], int] = lambda _: 1,
) -> None:
    """``work(item, slot)`` for every item while a budget of ``limit`` connections allows,
    each taking its ``weight`` of them (at most all: a large file's parts in flight) as its
    ``slot``, given back once the work ends (or before, by the work itself); the first error
    persevere raises in one stops them all and is raised as it is (one line, its exit code),
    not as a group of them."""
    budget = _Budget(limit)

    async def then_release(item: T, slot: _Slot) -> None:
        with contextlib.closing(slot):
            await work(item, slot)

    try:
        async with anyio.create_task_group() as tg:
            for item in items:
                slot = await budget.take(min(limit, weight(item)))
                tg.start_soon(then_release, item, slot)
    except BaseExceptionGroup as group:
        ours, _ = group.split(PersevereError)
        if ours is None:
            raise
        first: BaseException = ours
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


class _TreeSender:
    """Sends a tree's files: small ones as PutObject, large ones through ``cp``'s pipeline."""

    def __init__(self, req: TreeRequest, endpoint: Endpoint, journal: TreeJournal,
                 progress: TreeProgress, result: TreeResult) -> None:  # fmt: skip
        self.req, self.endpoint, self.journal = req, endpoint, journal
        self.progress, self.result = progress, result
        self.algorithm = get_algorithm(journal.header.checksum_algorithm)
        self.options = journal.header.object_options or {}
        self.verifier = PartVerifier(self.algorithm, pinned=req.checksum is not None)
        # A multipart file's checksum as cp takes it: None (the default, CRC64NVME with its
        # Content-MD5 fallback) unless one was asked for, now or when the tree was started.
        recorded = journal.header.checksum_algorithm
        default = req.checksum is None and recorded == DEFAULT_CHECKSUM
        self.checksum = None if default else req.checksum or recorded
        self.bandwidth: TokenBucket | None = None  # (send_all's, shared by every file)
        self.stalls = Stalls(req.transfer.stall_timeout_s, req.transfer.read_timeout_s)

    async def send_all(self, todo: list[TreeFile]) -> None:
        # --max-bandwidth: one cap for the run, its small files' PutObjects and large files
        with sharing(self.req.transfer.max_bandwidth_bytes_s) as self.bandwidth:
            await self._send_all(todo)

    async def _send_all(self, todo: list[TreeFile]) -> None:
        self.settled, self.todo = 0, len(todo)  # (files sent or failed, of these)
        self.progress.files(0, self.todo)
        most = min(SMALL_MAX, self.req.part_size or SMALL_MAX)  # of a small file
        small = [f for f in todo if f.size <= most]
        if small:
            async with open_client(self.endpoint, self.req.transfer) as client:
                await self.stalls.beside(lambda: each(
                    small,
                    self.req.transfer.concurrency,
                    lambda f, slot: self._guarded(f, self._small, client, slot),
                ))  # fmt: skip
        await each(
            [f for f in todo if f.size > most],
            self.req.transfer.concurrency,
            lambda f, slot: self._guarded(f, self._large, slot.count),
            self._parts_of,
        )

    def _parts_of(self, f: TreeFile) -> int:
        """A large file's parts in flight: as many as it has (at most ``concurrency``), so
        several files go at once while the tree's budget allows (:func:`each`): a file of 4
        parts does not leave half of 8 connections idle."""
        try:
            return make_plan(f.size, self.req.part_size, self.req.max_parts).part_count
        except UsageError:
            return self.req.transfer.concurrency  # refused: copy() says why

    async def _guarded(self, f: TreeFile, send: Callable[..., Awaitable[int]], *args: Any) -> None:
        """``send(f, key, *args)``: ``f`` sent to its key (one S3 can take); the file's own
        failure is listed, any other raised."""
        again = f.rel in self.journal.done  # before the work records it
        key = self.req.key(f.rel)
        try:
            check_key(self.req.bucket, key)
            sent = await send(f, key, *args)
        except (SourceFileError, SourceChanged) as exc:
            why = str(exc)
            if isinstance(exc.__cause__, PermissionError) or "Permission denied" in why:
                why += f" ({_way_out(f.rel, 'cannot read')})"
            log.warning("%s: %s", one_line(f.rel), why)
            self.result.failed.append((f.rel, why, exc.exit_code))
            return
        finally:
            self.settled += 1
            self.progress.files(self.settled, self.todo)
        (self.result.resent if again else self.result.sent).append(f.rel)
        self.result.bytes_sent += sent
        log.info("sent %s -> s3://%s/%s", f.rel, self.req.bucket, key)

    def _options_of(self, f: TreeFile) -> dict[str, Any]:
        """The object options of ``f``'s object: the tree's, and its own ContentType (from
        its name) unless the tree has one."""
        if "ContentType" in self.options:
            return self.options
        return {**self.options, "ContentType": guess_content_type(f.rel.rpartition("/")[2])}

    async def _small(self, f: TreeFile, key: str, client: Any, slot: _Slot) -> int:
        """``f`` read once, one PutObject, S3's answer checked; the slot is given back once
        S3 answered, before the journal's fsync (which batches the records of the files
        waiting for it). A file edited while its PutObject was on its way (the object is
        then older than the file, and another run may have recorded the newer bytes) is
        read and sent once more; edited again, it fails alone."""
        for last in (False, True):
            identity, etag, stated = await self._put(f, key, client)
            # As cp FILE checks before completing: is it still the file that was sent?
            look = os.stat if self.req.follow_symlinks else os.lstat
            try:
                now = FileIdentity.of(f.path, await anyio.to_thread.run_sync(look, f.path))
            except OSError:
                now = None
            if now == identity:
                break
            if last:
                raise SourceChanged("changed while it was uploaded; run again once it is final")
            log.info("%s changed while it was uploaded: sent again", f.rel)
        slot.close()
        done = FileDone.of(f.rel, key, identity, etag, stated)
        await self.journal.record(done)
        self.progress.advance(done.size)
        return done.size

    async def _put(self, f: TreeFile, key: str, client: Any) -> tuple[FileIdentity, str, Any]:
        """``f``'s bytes as read now, one PutObject: the identity they are of, S3's ETag and
        stored checksum."""
        body, identity, digests = await anyio.to_thread.run_sync(
            _read_small, f, self.algorithm, self.verifier.needs_md5(), self.req.follow_symlinks
        )
        fields = self.verifier.request_fields(digests)
        if self.verifier.flexible:
            fields["ChecksumAlgorithm"] = self.algorithm.name
        options = self._options_of(f)
        what = f"PutObject {key}"

        async def put() -> Any:
            """One attempt, cut if its bytes stop moving (--stall-timeout), as a part's is."""
            with self.stalls.attempt(len(body)) as watched:
                watched.body = BufferedBody(
                    memoryview(body), watched.moved, watched.throttle(self.bandwidth)
                )
                response = await client.put_object(
                    Bucket=self.req.bucket, Key=key, Body=watched.body, ContentLength=len(body),
                    **fields, **options,
                )  # fmt: skip
            await self.stalls.check(watched, what)
            return response

        try:
            response = await request(
                what, put, retry=self.req.transfer.policy(Call.UPLOAD),
                exhausted=lambda exc, tries: resumable(what, exc, tries),
            )  # fmt: skip
        except S3Error as exc:  # (said as cp FILE says it: the options the endpoint refused)
            said = await explained(client, self.req.bucket, self.algorithm, options, exc)
            if said is exc:
                raise
            raise said from exc
        etag = self.verifier.check(f"file {f.rel}", digests, response)
        stated = response.get(self.algorithm.param) if self.verifier.flexible else None
        return identity, etag, stated

    async def _large(self, f: TreeFile, key: str, workers: int) -> int:
        """``f`` through ``cp``'s pipeline, with ``workers`` parts in flight and that share
        of the part-buffer budget."""
        from ._cp import copy

        whole = self.req.transfer
        share = replace(whole, concurrency=workers, buffer_budget_bytes=max(
            MiB, whole.buffer_budget_bytes * workers // whole.concurrency))  # fmt: skip

        await anyio.to_thread.run_sync(_still_walked, f)
        state_file = files_dir(self.req.state_file) / journal_name(f.rel)
        await _drop_stale(state_file, self.req.bucket, key)
        upload = Request(state_file, Named(f.path), self.req.bucket, key,
                         part_size=self.req.part_size, max_parts=self.req.max_parts,
                         checksum=self.checksum,
                         object_options=self._options_of(f) or None, endpoint=self.req.endpoint,
                         transfer=share)  # fmt: skip
        try:
            await anyio.to_thread.run_sync(lambda: make_dirs(state_file.parent, 0o775))
        except OSError as exc:  # (a full disk: was a traceback)
            raise StateFileUnwritable(
                f"cannot create {state_file.parent}: {exc.strerror}",
                hint="free space or fix permissions, then run the same command again",
            ) from None
        say("%s (%s): multipart, to s3://%s/%s", f.rel, format_size(f.size), self.req.bucket, key,
            extra=event("tree_file", path=f.rel, key=key, size=f.size))  # fmt: skip
        done = await copy(upload, FileProgress(self.progress))
        # Its client's objects (unfrozen as it closed: many_clients) are cycles that only a
        # full collection frees; without one, each large file kept about 8 MiB until exit.
        gc.collect()
        recorded = (await anyio.to_thread.run_sync(read_state, state_file)).identity
        identity = FileIdentity.of_record(recorded)
        await self.journal.record(FileDone.of(f.rel, key, identity, done.etag, done.checksum))
        return done.bytes_sent


async def _drop_stale(path: Path, bucket: str, key: str) -> None:
    """A file's journal that records another destination is left by a journal of this tree
    removed since (each tree journal has its own directory of these, and names its
    destination): its upload is aborted if unfinished (best effort: else it is only
    reported) and the journal removed, so the file starts afresh. It was exit 2 on every
    run, naming a --state-file no one gave."""
    from ._upload import abort_upload

    try:
        state = await anyio.to_thread.run_sync(read_state, path)
    except (PersevereError, OSError):
        return  # none, or one that cp reports
    header = state.header
    if (header.bucket, header.key) == (bucket, key):
        return
    if state.finished is None:
        try:
            with anyio.fail_after(60):
                await abort_upload(path)
        except (PersevereError, OSError, TimeoutError) as exc:
            log.warning("could not abort the upload to s3://%s/%s left by an earlier journal "
                        "of this tree (%s): upload %s stays until a lifecycle rule or "
                        "'persevere upload abort' frees it", header.bucket, header.key, exc,
                        header.upload_id)  # fmt: skip
    log.info("%s recorded s3://%s/%s, not this tree's destination: removed", path,
             header.bucket, header.key)  # fmt: skip
    await anyio.to_thread.run_sync(path.unlink)


def journal_name(rel: str) -> str:
    return hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".persevere"


def check_key(bucket: str, key: str) -> None:
    """A file whose key S3 cannot take fails alone (its messages name no file: the caller
    does)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise SourceFileError("its name is not UTF-8, so it cannot be an S3 key: leave it "
                              "out with --exclude, or rename it") from None  # fmt: skip
    try:
        check_destination(bucket, key)
    except UsageError as exc:
        raise SourceFileError(f"{exc.message}; leave it out with --exclude") from None


_REPLACED = "replaced while the tree was uploaded (another file is at its path now); run again"


def _still_walked(f: TreeFile) -> None:
    """The path still leads to the file the walk found (its inode): a file, or a directory
    above it, swapped since for a symbolic link (to a file outside the tree, say) is not
    uploaded in its place; a large file's is checked here, just before ``copy()`` opens it
    by its path. Blocking."""
    try:
        st = os.stat(f.path)
    except OSError:
        return  # gone or unreadable: copy() says so
    if (st.st_ino, st.st_dev) != f.stamp[3:]:
        raise SourceChanged(_REPLACED)


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _read_small(
    f: TreeFile, algorithm: ChecksumAlgorithm, with_md5: bool, follow_symlinks: bool
) -> tuple[bytes, FileIdentity, PartDigests]:
    """The file's bytes, read once, with the identity they are of, and their digests; a file
    that changes while read (its identity, or fewer or more bytes than its size), or is not
    a regular file any more (a link not to be followed, a FIFO: never waited on), fails."""
    flags = _OPEN_FLAGS | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(f.path, flags)
    except FileNotFoundError:
        raise SourceChanged("removed while the tree was uploaded") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SourceChanged("replaced by a symbolic link while the tree was uploaded") from None
        raise SourceFileError(f"cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceChanged("not a regular file any more")
        if (st.st_ino, st.st_dev) != f.stamp[3:]:  # (O_NOFOLLOW guards only its own name)
            raise SourceChanged(_REPLACED)
        before = FileIdentity.of(f.path, st, fd)
        if before.size > SMALL_MAX:
            raise SourceChanged("grew while the tree was uploaded; run again")
        body = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        after = FileIdentity.of(f.path, os.fstat(fd), fd)
    except OSError as exc:
        raise SourceFileError(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if before == after and len(body) != after.size and after.mtime_ns == f.stamp[1]:
        # (a /proc or /sys file: it never gives its size, so a run again would not help)
        raise SourceFileError(f"does not give the {after.size:,} bytes its size says (a /proc "
                              "or /sys file: its length is known only once read); leave it "
                              "out with --exclude")  # fmt: skip
    if before != after or len(body) != after.size:
        raise SourceChanged("changed while it was read; run again once it is final")
    md5 = hashlib.md5(body).digest() if with_md5 else None
    return body, after, PartDigests(b64(algorithm.of(body)), md5)


class _Budget:
    """Connections, taken several at a time by one task (:func:`each`'s loop), each taking
    given back by its :class:`_Slot` (at once, without waiting: even by a cancelled task)."""

    def __init__(self, total: int) -> None:
        self.free = total
        self.freed = anyio.Event()

    async def take(self, count: int) -> _Slot:
        await anyio.lowlevel.checkpoint()  # (a stop is seen here, as at a semaphore's)
        while self.free < count:
            await self.freed.wait()
            self.freed = anyio.Event()
        self.free -= count
        return _Slot(self, count)


class _Slot:
    """``count`` connections of a budget, given back once."""

    def __init__(self, budget: _Budget, count: int) -> None:
        self._budget: _Budget | None = budget
        self.count = count

    def close(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget.free += self.count
            budget.freed.set()


class FileProgress(NullProgress):
    """One large file's progress, counted in the tree's bytes."""

    def __init__(self, tree: ProgressSink) -> None:
        self._tree = tree

    def start(self, total_bytes: int, done_bytes: int) -> None:
        self._tree.advance(done_bytes)  # resumed: already sent

    def advance(self, delta_bytes: int) -> None:
        self._tree.advance(delta_bytes)
