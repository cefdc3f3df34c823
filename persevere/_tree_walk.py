"""The files of a directory tree to upload, in a stable order, with the ones that cannot be.

A regular file is uploaded under its path relative to the root (``/``-separated). What is not
a regular file is never fatal for the tree: a symbolic link is not followed unless asked
(``follow_symlinks``: then a link to a file is that file and a link to a directory is walked
under the link's name too, unless it leads back to a directory it is in: that loop is not
walked again), and FIFOs, sockets and devices are listed as refused, by
name, with why. ``include``/``exclude`` are glob patterns (:mod:`fnmatch`; ``*`` matches across
``/``, as the aws cli's filters do) on the relative path: a file is taken when it matches an
include pattern (or none was given) and no exclude pattern.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Stamp = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


@dataclass(frozen=True, slots=True)
class TreeFile:
    """A regular file of the tree: its relative path (the key's tail), its path, and its
    identity as a tuple (a Path made only for the files sent)."""

    rel: str
    where: str
    stamp: Stamp

    @property
    def path(self) -> Path:
        return Path(self.where)

    @property
    def size(self) -> int:
        return self.stamp[0]


@dataclass(slots=True)
class Listing:
    files: list[TreeFile] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    # Could not be looked at (permission refused...): files maybe missed, so no exit 0.
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    # Of those, the ones refused for want of permission: no later run does better until the
    # permission is fixed, or the path left out (--exclude 'DIR/').
    denied: set[str] = field(default_factory=set)
    excluded: int = 0  # files left out by the include/exclude patterns


# What a file that is not a regular one is, by its type (else "not a regular file").
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFBLK: "a device",
    stat.S_IFCHR: "a device",
}


def wanted(rel: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Is ``rel`` taken by the patterns (see the module docstring)?"""
    if include and not any(_matches(rel, pattern) for pattern in include):
        return False
    return not any(_matches(rel, pattern) for pattern in exclude)


def _matches(rel: str, pattern: str) -> bool:
    """``pattern`` ending in ``/`` names a directory: every file under it (``secrets/``
    matched no file, and uploaded the directory it was meant to leave out); a file's own
    name matches too, whatever glob characters it holds (``copy[1].txt``)."""
    if pattern.endswith("/"):
        return rel.startswith(pattern) or fnmatch.fnmatchcase(rel, pattern + "*")
    return rel == pattern or fnmatch.fnmatchcase(rel, pattern)


def _left_out(rel_dir: str, exclude: Sequence[str]) -> bool:
    """Does an exclude pattern leave out every path under the directory ``rel_dir`` (``dir/``,
    ``dir/*``)? Then it is not listed at all: one the user may not read (a disk's
    ``lost+found``) left out does not fail the tree."""
    slashed = rel_dir + "/"
    for pattern in exclude:
        if pattern.endswith("/") and (
            slashed.startswith(pattern) or fnmatch.fnmatchcase(slashed, pattern + "*")
        ):
            return True
        if pattern.endswith("*") and fnmatch.fnmatchcase(slashed, pattern):
            return True  # (the last * takes whatever follows)
    return False


def _count_files(directory: str, follow_symlinks: bool) -> int:
    """The files under a directory the patterns leave out, counted as excluded; what cannot be
    listed (a disk's ``lost+found``) counts nothing and fails nothing."""
    count = 0
    pending = [directory]
    while pending:
        try:
            with os.scandir(pending.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif follow_symlinks or not entry.is_symlink():
                            count += 1
                    except OSError:
                        continue
        except OSError:
            continue
    return count


def walk(
    root: Path,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    follow_symlinks: bool = False,
    skip: Path | None = None,
) -> Listing:
    """Every file under ``root`` (an absolute directory), sorted by relative path; ``skip``:
    the tree's journal, never listed with what is named after it (its shards' journals, its
    files' directory) when they live inside the tree."""
    own = _own_names(skip)
    listing = Listing()
    root_stat = os.stat(root)
    root_id = (root_stat.st_dev, root_stat.st_ino)
    # (directory, its path under root, its (device, inode), those of it and the ones it is in)
    pending: list[tuple[Path, str, tuple[int, int], frozenset[tuple[int, int]]]] = [
        (root, "", root_id, frozenset({root_id}))
    ]
    while pending:
        directory, prefix, dev_ino, ancestors = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError as exc:
            rel_dir = prefix.rstrip("/") or "."
            listing.unreadable.append((rel_dir, f"cannot list: {exc.strerror}"))
            if isinstance(exc, PermissionError):
                listing.denied.add(rel_dir)
            continue
        journal_here = own is not None and own[0] == dev_ino
        for entry in entries:
            rel = prefix + entry.name
            if journal_here and own is not None and own[1](entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    if not follow_symlinks:
                        if wanted(rel, include, exclude):
                            listing.refused.append(
                                (rel, "a symbolic link (not followed: give --follow-symlinks)")
                            )
                        continue
                    st = os.stat(entry.path)
            except FileNotFoundError:
                if entry.is_symlink():
                    listing.refused.append((rel, "a broken symbolic link"))
                continue  # removed while listed
            except OSError as exc:
                if not wanted(rel, include, exclude) or _left_out(rel, exclude):
                    continue  # (left out by the patterns: whatever it is, not looked at)
                listing.unreadable.append((rel, f"cannot read: {exc.strerror}"))
                if isinstance(exc, PermissionError):
                    listing.denied.add(rel)
                continue
            if stat.S_ISDIR(st.st_mode):
                # Each path is walked (a link to a directory seen elsewhere too: skipping it
                # left that directory's own path out when the link came first); only a way
                # back to a directory it is in is not, which ends every loop.
                here = (st.st_dev, st.st_ino)
                if _left_out(rel, exclude):
                    listing.excluded += _count_files(entry.path, follow_symlinks)
                    continue
                if here not in ancestors:
                    pending.append((Path(entry.path), rel + "/", here, ancestors | {here}))
                continue
            if not wanted(rel, include, exclude):
                listing.excluded += 1
                continue
            if not stat.S_ISREG(st.st_mode):
                why = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
                listing.refused.append((rel, why))
                continue
            stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
            listing.files.append(TreeFile(rel, entry.path, stamp))
    listing.files.sort(key=lambda f: f.rel)
    listing.refused.sort()
    listing.unreadable.sort()
    return listing


def _own_names(journal: Path | None) -> tuple[tuple[int, int], Callable[[str], bool]] | None:
    """The directory of the tree's journal (device, inode) and which names in it are the
    journals of this tree: itself, its files' directory ``NAME.d``, its shards'
    ``NAME.shard-I-of-N``, and those of the tree's other destinations beside it
    (``DIR.DIGEST.persevere``: a --state-dir inside the tree, shared), nothing else."""
    if journal is None:
        return None
    try:
        st = os.stat(journal.parent)
    except OSError:
        return None
    stem = re.sub(r"(\.[0-9a-f]{16})?\.persevere$", "", journal.name)
    ours = re.compile(re.escape(stem) + r"(\.[0-9a-f]{16})?\.persevere(\.d|\.shard-\d+-of-\d+)?")
    names = {journal.name, journal.name + ".d"}

    def own(name: str) -> bool:  # (a name shaped like one: only if it is a tree journal)
        if name in names:
            return True
        if not ours.fullmatch(name):
            return False
        path = journal.parent / name
        return _a_tree_journal(path.with_suffix("") if name.endswith(".d") else path)

    return (st.st_dev, st.st_ino), own


def _a_tree_journal(path: Path) -> bool:
    """Does the regular file at ``path`` begin as a tree journal (``cp DIR``'s)?"""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW), "rb") as f:
            first = f.readline(4096) if stat.S_ISREG(os.fstat(f.fileno()).st_mode) else b""
    except OSError:
        return False
    return first.startswith(b"{") and b'"persevere-tree"' in first
