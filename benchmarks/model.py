"""The benchmarks' nouns and shared numbers: what is measured, one measured run, units.

``run.py`` (the harness) produces :class:`Run` s, ``report.py`` turns them into tables and
charts, ``targets.py`` checks the tables against issue 12's targets. Each of them imports this
module and none imports another's internals, so there is no import circle and no constant is
written twice. Standard library only (the null sink and the tests use it too).
"""

from __future__ import annotations

import dataclasses
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB

BUCKET = "bench"
# A run during which the rest of the machine (everything but the tool and the S3 server) used
# more CPU than this many cores is run again; a median that still stands on one is "noisy".
NOISY_CORES = 0.3
# The link emulator (linkproxy.py): one-way delay and the shared bandwidth cap.
LINK_DELAY_MS = 25.0
LINK_RATE_MBPS = 40.0

# Where a run uploads to: SeaweedFS (tests/s3server.py) or the null sink (nullsink.py).
SEAWEEDFS = "seaweedfs"
SINK = "sink"
# How the tool gets its data (or what it does):
FILE = "file"  # the file's path on the command line
STREAM = "stream"  # ``cat FILE | tool ...``: standard input is a pipe
STATUS = "status"  # ``persevere upload status`` of an upload in progress (start-up cost)
MODES = (FILE, STREAM, STATUS)


@dataclasses.dataclass(frozen=True, order=True)
class Setting:
    """One thing to measure: a tool uploading a file of some size with some settings.

    Two sections that need the same setting share its runs (the headline 1 GiB, c=8, 8 MiB
    parts appears in several), so everything that changes what is measured is a field here.
    """

    tool: str
    file_size: int
    concurrency: int
    part_size: int
    link: bool = False  # through the link emulator
    mode: str = FILE
    server: str = SEAWEEDFS


@dataclasses.dataclass(frozen=True)
class Section:
    name: str
    title: str
    settings: list[Setting]


@dataclasses.dataclass
class Run:
    """One measured invocation of one tool (see benchmarks/README.md for each number)."""

    section: str
    setting: Setting
    index: int
    wall_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    peak_rss_mib: float = 0.0
    sampled_tree_rss_mib: float = 0.0
    max_processes: int = 0
    server_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # the rest of the machine: kernel, harness, proxy, foreign
    foreign_cpu_s: float = 0.0  # other people's processes (see measure.foreign_cpu_snapshot)
    producer_cpu_s: float = 0.0  # a stream's producer (``cat``), not counted as the tool's
    verified: str = ""  # how the upload was checked, e.g. "sha256 of the download"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def to_row(self) -> dict[str, Any]:
        """One flat row (JSON and CSV)."""
        s = self.setting
        gib = s.file_size / GiB
        return {
            "section": self.section,
            "tool": s.tool,
            "mode": s.mode,
            "server": s.server,
            "file_size": s.file_size,
            "concurrency": s.concurrency,
            "part_size": s.part_size,
            "link": s.link,
            "run": self.index + 1,
            "ok": self.ok,
            "wall_s": round(self.wall_s, 3),
            "mb_per_s": round(s.file_size / 1e6 / self.wall_s, 1) if self.wall_s else None,
            "user_s": round(self.user_s, 3),
            "sys_s": round(self.sys_s, 3),
            "cpu_s_per_gib": round(self.cpu_s / gib, 3) if gib else None,
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "sampled_tree_rss_mib": round(self.sampled_tree_rss_mib, 1),
            "max_processes": self.max_processes,
            "server_cpu_s": round(self.server_cpu_s, 3),
            "other_cpu_s": round(self.other_cpu_s, 3),
            "foreign_cpu_s": round(self.foreign_cpu_s, 3),
            "producer_cpu_s": round(self.producer_cpu_s, 3),
            "verified": self.verified,
            "error": (self.error or "").splitlines()[0] if self.error else "",
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        """The inverse of :meth:`to_row` (rows of older results lack the newer fields)."""
        setting = Setting(
            row["tool"],
            row["file_size"],
            row["concurrency"],
            row["part_size"],
            row["link"],
            row.get("mode", FILE),
            row.get("server", SEAWEEDFS),
        )
        run = cls(row["section"], setting, row["run"] - 1)
        for name in (
            "wall_s user_s sys_s peak_rss_mib sampled_tree_rss_mib max_processes "
            "server_cpu_s other_cpu_s foreign_cpu_s producer_cpu_s verified"
        ).split():
            if name in row:
                setattr(run, name, row[name])
        run.error = None if row["ok"] else (row["error"] or "failed")
        return run


def size_label(size: int) -> str:
    if size >= GiB and size % GiB == 0:
        return f"{size // GiB} GiB"
    if size == 0:
        return "0 B"
    return f"{size / MiB:g} MiB"
