"""The directory trees of ``tree_compare.py``: their shape, their bytes, and what a proxy saw.

A tree is ``count`` files of ``size`` bytes each, spread over subdirectories of at most
``FILES_PER_DIR`` files (``d000/f00000.bin``, ...), as a real tree would be: 20,000 files in
one directory is a directory listing benchmark more than an upload one. Its bytes are
pseudo-random (incompressible, no two files alike) and deterministic: the same spec and seed
give the same files, so a run on another day uploads the same tree.

Also here, pure and tested without a server (``tests/test_tree_bench.py``): the check of an
uploaded prefix against the tree, the median [min-max] cells of the tables, and the count of
the requests a recording proxy logged, by S3 operation. Standard library only.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from benchmarks.model import GiB, MiB

FILES_PER_DIR = 1000
WRITE_CHUNK = 16 * MiB
SEED = "persevere-tree-bench"
_UNITS = {"KiB": 1024, "MiB": MiB, "GiB": GiB, "B": 1}
_LISTING_QUERY = re.compile(r"[?&](delimiter|prefix|marker|max-keys|encoding-type)=")
# Operations that name one object: a re-run that sends any of them pays per file.
PER_OBJECT_OPERATIONS = frozenset(
    {
        "HeadObject",
        "GetObject",
        "GetObjectAttributes",
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "ListParts",
        "DeleteObject",
    }
)


@dataclasses.dataclass(frozen=True)
class TreeSpec:
    """``count`` files of ``size`` bytes, called ``name`` (``big``, ``small``)."""

    name: str
    count: int
    size: int

    @property
    def total(self) -> int:
        return self.count * self.size

    def label(self) -> str:
        return f"{self.count:,} x {size_text(self.size)}"

    def scaled(self, factor: float) -> TreeSpec:
        """A smaller (or larger) tree of the same kind: a tree of many files keeps its file size
        and has fewer of them; a tree of few files keeps its count and has smaller ones."""
        if factor == 1:
            return self
        if self.count >= 100:
            return dataclasses.replace(self, count=max(1, round(self.count * factor)))
        return dataclasses.replace(self, size=max(1, round(self.size * factor / MiB)) * MiB)


def parse_size(text: str) -> int:
    """``256MiB``, ``16KiB``, ``1GiB``, ``100B`` or plain bytes."""
    for unit, factor in _UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def size_text(size: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]} {unit}"
    return f"{size} B"


def parse_spec(name: str, text: str) -> TreeSpec:
    """``10x256MiB`` (count x size)."""
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\S+)\s*", text)
    if match is None:
        raise ValueError(f"tree {name}: expected COUNTxSIZE (e.g. 10x256MiB), got {text!r}")
    return TreeSpec(name, int(match.group(1)), parse_size(match.group(2)))


def layout(spec: TreeSpec) -> list[str]:
    """The relative POSIX paths of the tree's files, in order."""
    return [f"d{i // FILES_PER_DIR:03d}/f{i:05d}.bin" for i in range(spec.count)]


def write_tree(root: Path, spec: TreeSpec, seed: str = SEED) -> Path:
    """Write the tree under ``root / spec.name`` and return that directory.

    Each file's bytes come from a generator seeded with the seed, the spec and its path: the
    same call writes the same bytes. One ``os.sync`` at the end rather than an fsync per file
    (20,000 fsyncs take minutes): the tools then read the files from the page cache, like a
    tree that was just written.
    """
    top = root / spec.name
    for relative in layout(spec):
        path = top / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(f"{seed}/{spec.count}x{spec.size}/{relative}")
        with path.open("wb") as out:
            left = spec.size
            while left:
                chunk = rng.randbytes(min(left, WRITE_CHUNK))
                out.write(chunk)
                left -= len(chunk)
    os.sync()
    return top


def listing_problem(spec: TreeSpec, prefix: str, listing: Mapping[str, int]) -> str | None:
    """None if the objects under ``prefix`` (key -> size) are exactly the tree's files, with
    keys ``prefix + relative path`` and the files' sizes; else what is wrong, briefly."""
    expected = {prefix + relative for relative in layout(spec)}
    missing = sorted(expected - listing.keys())
    extra = sorted(listing.keys() - expected)
    wrong = sorted(k for k in expected & listing.keys() if listing[k] != spec.size)
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(expected)} objects missing (first: {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} unexpected objects (first: {extra[0]})")
    if wrong:
        problems.append(
            f"{len(wrong)} objects of the wrong size "
            f"(first: {wrong[0]}, {listing[wrong[0]]} bytes, not {spec.size})"
        )
    return "; ".join(problems) or None


def cell(values: Iterable[float], fmt: str = ".2f") -> str:
    """``median [min-max]``; the value alone if all are the same; ``-`` for none."""
    values = list(values)
    if not values:
        return "-"
    middle = f"{statistics.median(values):{fmt}}"
    if min(values) == max(values):
        return middle
    return f"{middle} [{min(values):{fmt}}-{max(values):{fmt}}]"


def last_line(output: str) -> str:
    """The last non-empty line of a tool's output: what it said when it failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def log_line(method: str, target: str, status: int | None) -> str:
    """One request as the harness logs it from the recording proxy: ``METHOD TARGET STATUS``."""
    return f"{method} {target} {status if status is not None else '-'}"


def request_counts(log_lines: Iterable[str]) -> Counter[str]:
    """Requests of a proxy log, by S3 operation (``tests.httpproxy.s3_operation``)."""
    from tests.httpproxy import s3_operation

    counts: Counter[str] = Counter()
    for line in log_lines:
        parts = line.split()
        if len(parts) >= 2:
            operation = s3_operation(parts[0], parts[1])
            if operation.startswith("GetBucket") and _LISTING_QUERY.search(parts[1]):
                operation = "ListObjects"  # v1, e.g. ?delimiter=/&prefix=... (rclone)
            counts[operation] += 1
    return counts


def per_object_requests(counts: Mapping[str, int]) -> int:
    """How many of the requests each name one object (a HEAD, a PUT, ...): a re-run that skips
    done files from its own records sends none."""
    return sum(n for operation, n in counts.items() if operation in PER_OBJECT_OPERATIONS)
