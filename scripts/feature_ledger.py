"""Measure issue 25's reshape on the same features: the base count plus the reshape's own deltas.

Issue 25 asks for persevere/'s code lines at least 15 % below its starting point (3d573e8) on
the same features. Features and fixes landed in the same session, so each commit since the
base is classified in ``docs/issue25-ledger.tsv`` (reshape, feature, fix or mixed, with the
reshape's part of a mixed one) and its delta counted apart::

    measure = code lines at the base + the reshape deltas (a mixed commit's reshape part)

``python scripts/feature_ledger.py`` recomputes each listed commit's delta from git (per
changed ``persevere/*.py`` file, the commit against its first parent, counted by
:func:`code_lines.code_lines`), reports a delta that differs from the ledger's, warns of a
non-merge commit touching persevere/ that the ledger does not list, and prints the base, the
sum of each kind, the merges' residue (what merge commits' own resolutions changed: the total
now minus the base minus every listed delta), the measure against the goal, and the total now.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from code_lines import as_ruff_formats, code_lines

BASE = "3d573e8"
SHARE = 85  # per cent of the base the measure may reach
KINDS = ("reshape", "feature", "fix", "mixed")


class Git:
    """Reads a repository's trees and counts its blobs' code lines (each blob once)."""

    def __init__(self, repo: Path, *, formatted: bool = False) -> None:
        self.repo = repo
        self.formatted = formatted  # count as ruff format writes it, fmt markers gone
        self.counts: dict[str, int] = {}

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.repo), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def count(self, blob: str) -> int:
        if blob not in self.counts:
            data = subprocess.run(
                ["git", "-C", str(self.repo), "cat-file", "blob", blob],
                capture_output=True,
                check=True,
            ).stdout
            text = data.decode("utf-8", "replace")
            self.counts[blob] = len(code_lines(as_ruff_formats(text) if self.formatted else text))
        return self.counts[blob]

    def total(self, commit: str) -> int:
        """The code lines of persevere/*.py at ``commit``."""
        total = 0
        for line in self.run("ls-tree", "-r", commit, "--", "persevere/").splitlines():
            meta, path = line.split("\t", 1)
            if path.endswith(".py"):
                total += self.count(meta.split()[2])
        return total

    def delta(self, commit: str) -> int:
        """What ``commit`` changed in persevere/'s code lines, against its first parent."""
        raw = self.run("diff-tree", "-r", "--no-commit-id", "--no-renames", "--raw",
                       f"{commit}^", commit, "--", "persevere/")  # fmt: skip
        delta = 0
        for line in raw.splitlines():
            meta, path = line.split("\t", 1)
            if not path.endswith(".py"):
                continue
            _, _, old, new, _ = meta.split()
            delta += (self.count(new) if set(new) != {"0"} else 0) - (
                self.count(old) if set(old) != {"0"} else 0
            )
        return delta


def read_ledger(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", type=Path, default=Path("docs/issue25-ledger.tsv"))
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--head", default="HEAD", help="the commit whose total is 'now'")
    parser.add_argument(
        "--as-ruff-formats",
        action="store_true",
        help="count every version as ruff format writes it without fmt markers "
        "(hand-packed lines count as spread; deltas then differ from the ledger's)",
    )
    args = parser.parse_args(argv)
    git = Git(args.repo, formatted=args.as_ruff_formats)
    rows = read_ledger(args.ledger)
    problems = 0
    listed: set[str] = set()
    per_kind: dict[str, int] = defaultdict(int)
    reshape = 0
    for row in rows:
        commit, kind = row["commit"], row["kind"]
        delta, reshape_delta = int(row["delta"]), int(row["reshape_delta"])
        full = git.run("rev-parse", "--verify", f"{commit}^{{commit}}").strip()
        listed.add(full)
        actual = git.delta(full)
        if kind not in KINDS:
            print(f"{commit}: unknown kind {kind!r}", file=sys.stderr)
            problems += 1
        if actual != delta and not args.as_ruff_formats:
            print(f"{commit}: ledger says {delta:+}, git says {actual:+}", file=sys.stderr)
            problems += 1
        expected = {"reshape": delta, "feature": 0, "fix": 0}.get(kind)
        if expected is not None and reshape_delta != expected:
            print(f"{commit}: a {kind} commit's reshape_delta must be {expected}", file=sys.stderr)
            problems += 1
        if args.as_ruff_formats:  # (a mixed commit's share taken in the ledger's proportion)
            reshape_delta = round(actual * reshape_delta / delta) if delta else 0
            delta = actual
        per_kind[kind] += delta
        reshape += reshape_delta
    since = git.run("rev-list", "--no-merges", f"{BASE}..{args.head}", "--", "persevere/").split()
    for commit in since:
        if commit not in listed:
            subject = git.run("log", "-1", "--format=%s", commit).strip()
            print(f"warning: {commit[:7]} not in the ledger: {subject[:80]}", file=sys.stderr)
            problems += 1
    base, now = git.total(BASE), git.total(args.head)
    listed_sum = sum(per_kind.values())
    goal = base * SHARE // 100
    measure = base + reshape
    print(f"base at {BASE}: {base:,} code lines")
    for kind in KINDS:
        count = sum(1 for row in rows if row["kind"] == kind)
        print(f"  {kind:<8} {count:>4} commits  {per_kind[kind]:>+7,}")
    print(f"  merges' residue        {now - base - listed_sum:>+7,}")
    print(f"now ({args.head}): {now:,} code lines")
    print(f"measure = base + reshape deltas = {base:,} {reshape:+,} = {measure:,}")
    verdict = "met" if measure <= goal else f"not met: {measure - goal:,} lines over"
    print(f"goal <= {goal:,} ({SHARE} % of {base:,}): {verdict} ({measure / base - 1:+.1%})")
    if problems:
        print(f"{problems} problem(s), listed on stderr", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
