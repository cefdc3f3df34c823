"""Issue 12's targets, checked against one harness run's tables: met or not, with the numbers.

Every check compares medians measured in the same run (the tools interleaved, on the same
server), as ratios: on a shared 2-core machine absolute wall times move by tens of percent from
one minute to the next, ratios of interleaved runs much less. Wall-time checks also show the
ratios run by run (run i of persevere over run i of the peer, which ran right after it); the
verdict is the ratio of the medians. A target whose settings were not
measured in the run (``--only``, ``--tools``) is reported as "not measured".

The targets (issue 12):

- wall <= 1.00x the fastest peer at the headline size (1 GiB) and the largest (4 GiB), and
  <= 0.95x s5cmd's;
- client CPU per GiB <= obstore's at both sizes, and flat (within 20 %) between the null sink
  and SeaweedFS;
- peak RSS <= obstore's at c=8, any part size;
- fixed start-up CPU (a 0-byte upload, ``persevere upload status``) <= 0.4 s;
- on the emulated link, >= 95 % of the cap at c=8 on a file large enough that start-up (a
  0-byte upload through the same link) is under 5 % of the run.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable
from typing import Any

from benchmarks.model import FILE, SEAWEEDFS, SINK, STATUS, MiB, size_label

TOOL = "persevere"
WALL_VS_FASTEST = 1.00
WALL_VS_S5CMD = 0.95
SINK_FLATNESS = 0.20
STARTUP_CPU_S = 0.4
LINK_SHARE = 0.95
LINK_STARTUP_SHARE = 0.05


@dataclasses.dataclass(frozen=True)
class Check:
    target: str
    met: bool | None  # None: the run did not measure it
    measured: str

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT MET", None: "not measured"}[self.met]


Result = dict[str, Any]


def _key(r: Result) -> tuple[Any, ...]:
    return (
        r["tool"],
        r["file_size"],
        r["concurrency"],
        r["part_size"],
        r["link"],
        r.get("mode", FILE),
        r.get("server", SEAWEEDFS),
    )


class _Results:
    """Every aggregated result of the run, whichever section's table it sits in."""

    def __init__(self, tables: dict[str, Any]) -> None:
        self.by_key: dict[tuple[Any, ...], Result] = {}
        for table in tables.values():
            for r in table["results"]:
                if "wall_s" in r:
                    self.by_key.setdefault(_key(r), r)

    def find(
        self,
        tool: str,
        size: int,
        *,
        concurrency: int = 8,
        part_size: int = 8 * MiB,
        link: bool = False,
        mode: str = FILE,
        server: str = SEAWEEDFS,
    ) -> Result | None:
        return self.by_key.get((tool, size, concurrency, part_size, link, mode, server))

    def tools_at(self, size: int) -> list[Result]:
        """Every tool's plain upload of ``size`` at c=8, 8 MiB parts, on SeaweedFS."""
        return [
            r for k, r in self.by_key.items() if k[1:] == (size, 8, 8 * MiB, False, FILE, SEAWEEDFS)
        ]

    def uploads_of(self, tool: str) -> Iterable[Result]:
        """The tool's plain (non-empty, no link) uploads at c=8 on SeaweedFS, any part size."""
        for k, r in self.by_key.items():
            if k[0] == tool and k[1] > 0 and k[2] == 8 and k[4:] == (False, FILE, SEAWEEDFS):
                yield r


def _spread(r: Result, metric: str, unit: str, digits: int = 2) -> str:
    """``8.09 s [7.43-8.70]``: the median and the runs' range."""
    low, high = r.get(f"{metric}_min"), r.get(f"{metric}_max")
    text = f"{r[metric]:.{digits}f}{unit}"
    if low is not None and high is not None:
        text += f" [{low:.{digits}f}-{high:.{digits}f}]"
    return text


def _paired(mine: Result, other: Result) -> str:
    """The ratios of run i to run i (interleaved, so they ran back to back): median [min-max]."""
    pairs = [
        a / b
        for a, b in zip(mine.get("wall_s_runs", []), other.get("wall_s_runs", []), strict=False)
        if a and b
    ]
    if len(pairs) < 2:
        return ""
    return (
        f"; run by run {statistics.median(pairs):.2f}x "
        f"[{min(pairs):.2f}-{max(pairs):.2f}] over {len(pairs)} pairs"
    )


def _missing(target: str) -> Check:
    return Check(target, None, "not measured in this run")


def _wall_checks(results: _Results, size: int) -> list[Check]:
    label = size_label(size)
    here = results.tools_at(size)
    mine = next((r for r in here if r["tool"] == TOOL), None)
    peers = [r for r in here if r["tool"] != TOOL]
    checks = []
    target = f"wall <= {WALL_VS_FASTEST:.2f}x the fastest peer, {label}"
    if mine is None or not peers:
        checks.append(_missing(target))
    else:
        fastest = min(peers, key=lambda r: r["wall_s"])
        ratio = mine["wall_s"] / fastest["wall_s"]
        busy = ""
        if "machine_busy_cores" in mine and "machine_busy_cores" in fastest:
            busy = (
                f"; machine busy {mine['machine_busy_cores']:.2f} and "
                f"{fastest['machine_busy_cores']:.2f} cores"
            )
        checks.append(
            Check(
                target,
                ratio <= WALL_VS_FASTEST,
                f"{ratio:.2f}x: persevere {_spread(mine, 'wall_s', ' s')}, fastest of "
                f"{', '.join(sorted(r['tool'] for r in peers))}: {fastest['tool']} "
                f"{_spread(fastest, 'wall_s', ' s')}{_paired(mine, fastest)}{busy}",
            )
        )
    target = f"wall <= {WALL_VS_S5CMD:.2f}x s5cmd, {label}"
    s5cmd = next((r for r in peers if r["tool"] == "s5cmd"), None)
    if mine is None or s5cmd is None:
        checks.append(_missing(target))
    else:
        ratio = mine["wall_s"] / s5cmd["wall_s"]
        checks.append(
            Check(
                target,
                ratio <= WALL_VS_S5CMD,
                f"{ratio:.2f}x: persevere {_spread(mine, 'wall_s', ' s')}, s5cmd "
                f"{_spread(s5cmd, 'wall_s', ' s')}{_paired(mine, s5cmd)}",
            )
        )
    return checks


def _cpu_checks(results: _Results, size: int) -> list[Check]:
    label = size_label(size)
    mine = results.find(TOOL, size)
    obstore = results.find("obstore", size)
    checks = []
    target = f"client CPU/GiB <= obstore's, {label}"
    if mine is None or obstore is None:
        checks.append(_missing(target))
    else:
        ratio = mine["cpu_s_per_gib"] / obstore["cpu_s_per_gib"]
        checks.append(
            Check(
                target,
                ratio <= 1.0,
                f"{ratio:.2f}x: persevere {_spread(mine, 'cpu_s_per_gib', '')}, obstore "
                f"{_spread(obstore, 'cpu_s_per_gib', '')} CPU-s/GiB",
            )
        )
    target = (
        f"client CPU/GiB flat (within {SINK_FLATNESS:.0%}) between the null sink and "
        f"SeaweedFS, {label}"
    )
    on_sink = results.find(TOOL, size, server=SINK)
    if mine is None or on_sink is None:
        checks.append(_missing(target))
    else:
        ratio = mine["cpu_s_per_gib"] / on_sink["cpu_s_per_gib"]
        others = []
        for peer in ("obstore", "s5cmd"):
            a, b = results.find(peer, size), results.find(peer, size, server=SINK)
            if a and b:
                others.append(f"{peer} {a['cpu_s_per_gib'] / b['cpu_s_per_gib']:.2f}x")
        checks.append(
            Check(
                target,
                abs(ratio - 1.0) <= SINK_FLATNESS,
                f"SeaweedFS/sink {ratio:.2f}x: persevere {_spread(mine, 'cpu_s_per_gib', '')} "
                f"on SeaweedFS, {_spread(on_sink, 'cpu_s_per_gib', '')} on the sink"
                + (f" (same ratio: {', '.join(others)})" if others else ""),
            )
        )
    return checks


def _rss_check(results: _Results, headline: int) -> Check:
    target = "peak RSS <= obstore's at c=8, any part size"  # as in check_all
    mine = list(results.uploads_of(TOOL))
    obstore = results.find("obstore", headline)
    if not mine or obstore is None:
        return _missing(target)
    worst = max(mine, key=lambda r: r["peak_rss_mib"])
    by_part = {}
    for r in mine:
        part = size_label(r["part_size"])
        by_part[part] = max(by_part.get(part, 0.0), r["peak_rss_mib"])
    return Check(
        target,
        worst["peak_rss_mib"] <= obstore["peak_rss_mib"],
        f"persevere's highest median {worst['peak_rss_mib']:.0f} MiB "
        f"({size_label(worst['file_size'])}, {size_label(worst['part_size'])} parts; by part "
        f"size: {', '.join(f'{p} {v:.0f}' for p, v in by_part.items())}), obstore "
        f"{_spread(obstore, 'peak_rss_mib', ' MiB', 0)} ({size_label(headline)}, 8 MiB parts)",
    )


def _startup_checks(results: _Results) -> list[Check]:
    checks = []
    for mode, what in ((FILE, "a 0-byte upload"), (STATUS, "`persevere upload status`")):
        target = f"fixed start-up CPU <= {STARTUP_CPU_S} s: {what}"
        mine = results.find(TOOL, 0, mode=mode)
        if mine is None:
            checks.append(_missing(target))
            continue
        peers = ""
        if mode == FILE:
            others = [
                f"{r['tool']} {r['cpu_s']:.2f}" for r in results.tools_at(0) if r["tool"] != TOOL
            ]
            peers = f" (others, 0-byte upload: {', '.join(others)} s)" if others else ""
        checks.append(
            Check(
                target,
                mine["cpu_s"] <= STARTUP_CPU_S,
                f"{_spread(mine, 'cpu_s', ' s', 3)} CPU, {mine['peak_rss_mib']:.0f} MiB{peers}",
            )
        )
    return checks


def _link_check(results: _Results, link_size: int | None, cap_mb_per_s: float) -> Check:
    target = (
        f"emulated link >= {LINK_SHARE:.0%} of the cap at c=8, start-up < "
        f"{LINK_STARTUP_SHARE:.0%} of the run"
    )
    if link_size is None:
        return _missing(target)
    mine = results.find(TOOL, link_size, link=True)
    startup = results.find(TOOL, 0, link=True)
    if mine is None:
        return _missing(target)
    share = mine["mb_per_s"] / cap_mb_per_s
    text = (
        f"{share:.1%} of {cap_mb_per_s:g} MB/s: persevere {mine['mb_per_s']:.1f} MB/s, "
        f"{_spread(mine, 'wall_s', ' s')} for {size_label(link_size)}"
    )
    met = share >= LINK_SHARE
    if startup is not None:
        startup_share = startup["wall_s"] / mine["wall_s"]
        text += (
            f"; start-up (a 0-byte upload through the link) {startup['wall_s']:.2f} s = "
            f"{startup_share:.1%} of the run"
        )
        if startup_share >= LINK_STARTUP_SHARE:
            met = False
            text += " (file too small for the target's condition)"
    s5cmd = results.find("s5cmd", link_size, link=True)
    if s5cmd is not None:
        text += f"; s5cmd {s5cmd['mb_per_s'] / cap_mb_per_s:.1%}"
    return Check(target, met, text)


def check_all(tables: dict[str, Any], env: dict[str, Any]) -> list[Check]:
    """Every target of issue 12 against this run's tables (see the module docstring)."""
    results = _Results(tables)
    compare = tables.get("compare", {}).get("results", [])
    headline = compare[0]["file_size"] if compare else None
    file_sizes = [r["file_size"] for r in tables.get("file_size", {}).get("results", [])]
    largest = max(file_sizes) if file_sizes else None
    sizes = [s for s in dict.fromkeys([headline, largest]) if s is not None]
    checks: list[Check] = []
    if not sizes:
        checks += [
            _missing(f"wall <= {WALL_VS_FASTEST:.2f}x the fastest peer"),
            _missing(f"wall <= {WALL_VS_S5CMD:.2f}x s5cmd"),
            _missing("client CPU/GiB <= obstore's"),
            _missing(f"client CPU/GiB flat (within {SINK_FLATNESS:.0%}) sink vs SeaweedFS"),
        ]
    for size in sizes:
        checks += _wall_checks(results, size)
    for size in sizes:
        checks += _cpu_checks(results, size)
    rss_target = "peak RSS <= obstore's at c=8, any part size"
    checks.append(_rss_check(results, headline) if headline else _missing(rss_target))
    checks += _startup_checks(results)
    link_sizes = [
        r["file_size"] for r in tables.get("link_large", {}).get("results", []) if r["file_size"]
    ]
    cap = env.get("link", {}).get("cap_mb_per_s", 0.0)
    checks.append(_link_check(results, max(link_sizes) if link_sizes else None, cap))
    return checks
