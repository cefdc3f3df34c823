"""``persevere verify DIR s3://BUCKET/PREFIX/``: is every file of a tree its object? No download.

Each regular file the walk gives (:func:`._tree_walk.walk`, the same patterns and links as
``cp DIR``) is checked against the object ``PREFIX`` + its relative path by the single file's
check (:func:`._verify.verify_object`: the object's checksum, ETag and part layout against the
file's bytes, read once). A file uploaded in parts by ``cp DIR`` has a journal of its own in
the tree journal's files directory: given to that check, it names the first differing part.

A file whose object does not exist is *missing*: for a tree, that is a difference (the tree is
not in S3), not an error. A file that cannot be read is *cannot tell*, with why. An error that is
not one file's (the endpoint unreachable, access refused, the bucket missing) stops the whole
check and is raised.

Objects under the prefix that no file of the walk names are listed as *only in S3* (one
ListObjectsV2 listing; refused: said, never fatal; keys ending in ``/``, folder markers, left
out): a note, not a difference.

All files share one S3 client; ``concurrency`` files are checked at once, each hashed one
8 MiB buffer at a time, so memory is about ``concurrency`` x 8 MiB whatever the tree's size.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from ._errors import (
    EXIT_OK,
    S3Error,
    SourceChanged,
    SourceFileError,
    StateFileError,
    UsageError,
)
from ._options import UploadOptions
from ._progress import ProgressSink, guarded
from ._s3 import Endpoint, open_client, pages, request
from ._tree import FileProgress, TreeSpec, check_key, each, journal_name
from ._tree_journal import files_dir, read_header, recorded_files
from ._tree_walk import Listing, TreeFile, wanted
from ._urls import check_destination
from ._verify import EXIT_MISMATCH, EXIT_UNKNOWN, no_bucket, verify_object

SAME, DIFFERS, MISSING, UNKNOWN = "match", "mismatch", "missing", "unknown"


@dataclass(frozen=True, slots=True)
class TreeVerifyRequest(TreeSpec):
    """A tree to check (``state_file``: where ``cp DIR`` keeps its journal, maybe none there;
    ``state_file_given``: the user named it, so it must be one)."""

    state_file_given: bool = False
    concurrency: int = 8
    endpoint: Endpoint | None = None


@dataclass(frozen=True, slots=True)
class FileVerdict:
    """One file's answer: ``outcome`` is match, mismatch, missing or unknown (cannot tell)."""

    path: str  # relative to the tree's root
    key: str
    outcome: str
    reason: str
    method: str | None = None
    first_bad_part: int | None = None
    object_size: int | None = None
    local_size: int = 0


@dataclass(slots=True)
class TreeVerifyResult:
    root: Path
    bucket: str
    prefix: str
    state_file: Path | None  # the tree journal used (None: none)
    files: list[FileVerdict] = field(default_factory=list)  # every regular file, by path
    refused: list[tuple[str, str]] = field(default_factory=list)  # not regular files
    excluded: int = 0
    recorded: int = 0  # files the tree's journal records uploaded, when the walk found none
    only_in_s3: list[str] | None = None  # keys no file names (None: not listed)
    why_not_listed: str = ""
    elapsed_s: float = 0.0

    @property
    def nothing_checked(self) -> bool:
        """No file to check, yet objects under the prefix, files the filters left out (a
        typo in ``--include``) or entries not checked (links not followed: their objects are
        not "only in S3"): not a tree that verifies."""
        return not self.files and bool(self.only_in_s3 or self.excluded or self.refused
                                       or self.recorded)  # fmt: skip

    def count(self, outcome: str) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)

    @property
    def exit_code(self) -> int:
        """0 every file the same; 4 any differs or is missing, or no file was checked while
        objects are under the prefix, the filters left every file out or none could be
        checked (an unmounted disk, the wrong directory, a typo in a filter, links not
        followed: nothing is said to match); 5 else if any
        cannot tell."""
        outcomes = {f.outcome for f in self.files}
        if outcomes & {DIFFERS, MISSING} or self.nothing_checked:
            return EXIT_MISMATCH
        return EXIT_UNKNOWN if UNKNOWN in outcomes else EXIT_OK


async def verify_tree(
    req: TreeVerifyRequest, progress: ProgressSink | None = None
) -> TreeVerifyResult:
    """Check every file of ``req.root`` against its object under ``req.prefix`` (see the
    module)."""
    progress = guarded(progress)
    started = time.monotonic()
    check_destination(req.bucket, req.key("x"))
    req, parts_dir, listing = await anyio.to_thread.run_sync(_walk, req)
    result = TreeVerifyResult(req.root, req.bucket, req.prefix,
                              req.state_file if parts_dir else None, refused=listing.refused,
                              excluded=listing.excluded)  # fmt: skip
    if not listing.files:  # (ListObjectsV2 may be refused: a disk not mounted?)
        result.recorded = await anyio.to_thread.run_sync(_recorded, req)
    # A directory or entry that cannot be looked at: what it holds cannot be told.
    result.files += [FileVerdict(rel, req.key(rel), UNKNOWN, why)
                     for rel, why in listing.unreadable]  # fmt: skip
    endpoint = req.endpoint or Endpoint.from_environment(None, None, None)
    options = UploadOptions(concurrency=req.concurrency, read_timeout_s=60.0)
    sink = FileProgress(progress)  # each file's bytes, counted in the tree's
    async with open_client(endpoint, options) as client:

        async def check(f: TreeFile, _: object) -> None:
            key = req.key(f.rel)
            journal = parts_dir / journal_name(f.rel) if parts_dir else None  # cp DIR's, if any
            verify = partial(verify_object, f.path, req.bucket, key, client=client, progress=sink)
            try:
                check_key(req.bucket, key)
                if journal is not None and not await anyio.to_thread.run_sync(journal.is_file):
                    journal = None
                try:
                    found = await verify(state_file=journal)
                except StateFileError:  # its own journal unreadable: checked without it
                    if journal is None:
                        raise
                    found = await verify(state_file=None)
                verdict = FileVerdict(f.rel, key, found.outcome, found.reason, found.method,
                                      found.first_bad_part, found.object_size,
                                      found.local_size)  # fmt: skip
            except S3Error as exc:
                if exc.code != "NoSuchKey":
                    raise
                why = f"no object s3://{req.bucket}/{key}"
                verdict = FileVerdict(f.rel, key, MISSING, why, local_size=f.size)
            except (SourceFileError, SourceChanged) as exc:
                verdict = FileVerdict(f.rel, key, UNKNOWN, str(exc), local_size=f.size)
            result.files.append(verdict)

        progress.start(sum(f.size for f in listing.files), 0)
        with contextlib.closing(progress):
            # (each() checks concurrency files at once; the first error that is no file's own
            # stops them all and is raised)
            await each(listing.files, req.concurrency, check)
        # (with the unreadable ones noted above: a tree with one is never exit 0)
        result.files.sort(key=lambda f: f.path)
        named = {f.rel for f in listing.files} | {rel for rel, _ in listing.refused}
        result.only_in_s3, result.why_not_listed = await _only_in_s3(client, req, named)
    result.elapsed_s = time.monotonic() - started
    return result


def _recorded(req: TreeVerifyRequest) -> int:
    """How many files a journal of this tree and prefix records uploaded: its own, or the
    one beside it (made through another endpoint URL: a proxy's). Blocking."""
    for path in (req.state_file, req.root.parent / f"{req.root.name}.persevere"):
        header = read_header(path)
        if header is not None and (header.root, header.bucket, header.prefix) == (
            str(req.root), req.bucket, req.prefix
        ):  # fmt: skip
            return recorded_files(path)
    return 0


def _walk(req: TreeVerifyRequest) -> tuple[TreeVerifyRequest, Path | None, Listing]:
    """The tree's files, and where its multipart files' journals are. A journal of this tree
    and destination found inside the tree (``cp DIR --state-dir DIR/...``), when none was
    named or is at the default place, is the tree's: it and its own files are not listed
    (``cp DIR`` never sends them), and it is used."""
    journal = read_header(req.state_file) is not None
    if not journal and req.state_file_given:  # named, so it must be one
        what = "is not the journal of a directory's upload" if req.state_file.exists() else \
               "does not exist"  # fmt: skip
        raise UsageError(f"state file {req.state_file} {what}", param="state_file")
    listing = req.walk()
    if journal:
        return req, files_dir(req.state_file), listing
    for f in listing.files:
        header = read_header(f.path) if f.rel.endswith(".persevere") else None
        if header is not None and (header.root, header.bucket, header.prefix) == (
            str(req.root), req.bucket, req.prefix
        ):  # fmt: skip
            return _walk(replace(req, state_file=f.path))
    return req, None, listing


async def _only_in_s3(
    client: Any, req: TreeVerifyRequest, named: set[str]
) -> tuple[list[str] | None, str]:
    """The keys under the prefix that no file of the walk names (the patterns applied to
    their relative paths); None and why when the listing is refused."""
    keys: list[str] = []

    def fetch(token: str | None) -> Any:
        more = {"ContinuationToken": token} if token else {}
        return request("ListObjectsV2", lambda: client.list_objects_v2(
            Bucket=req.bucket, Prefix=req.prefix, **more))  # fmt: skip

    def following(page: Any) -> str | None:
        return page.get("NextContinuationToken") if page.get("IsTruncated") else None

    try:
        async for page in pages("ListObjectsV2", fetch, following):
            keys += [item["Key"] for item in page.get("Contents") or []]
    except S3Error as exc:
        if exc.code == "NoSuchBucket":  # (no file asked first: an empty tree, or all excluded)
            raise no_bucket(f"s3://{req.bucket}/{req.prefix}", req.bucket) from exc
        return None, f"ListObjectsV2 answers {exc.code or exc}"
    rels = ((key, key[len(req.prefix) :]) for key in keys if not key.endswith("/"))
    return sorted(key for key, rel in rels
                  if rel not in named and wanted(rel, req.include, req.exclude)), ""  # fmt: skip
