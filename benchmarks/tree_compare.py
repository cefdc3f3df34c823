"""Uploading a directory tree: persevere against ``aws s3 cp --recursive``, ``s5cmd cp`` and
``rclone copy`` on the same trees (issue 27).

    python -m benchmarks.tree_compare [--trees big,small] [--tools persevere,aws,s5cmd,rclone]
                                      [--runs 3] [--scale 1] [--concurrency 8] [--rerun]
    python -m benchmarks.tree_compare --quick          # --scale 0.1 --runs 1 --rerun
    python -m benchmarks.tree_compare --tools persevere,persevere@/tmp/old --trees small

Trees (``trees.py``): ``big`` is 10 files of 256 MiB, ``small`` 20,000 files of 16 KiB in
directories of 1,000; ``--big``/``--small`` change them, ``--scale`` shrinks both (the small
tree's count, the big tree's file size). Each tree is written once, deterministically, and
every tool uploads it to a fresh prefix of one fresh SeaweedFS (``tests/s3server.py``), warmed
up by one unmeasured upload. Runs are interleaved (A B C D, A B C D, ...). Every run is checked
by listing its prefix (every key ``PREFIX + relative path``, every size), then its objects are
deleted and the volumes vacuumed, so every tool does the full work every time.

Per run: wall time, the tool's CPU and peak RSS (``measure.py``'s stub: ``wait4`` rusage), and
the server's CPU. Tables give the median [min-max]. A tool that fails is reported with its exit
code and the last line of its output, and the other tools go on; the harness exits 1.

``--rerun``: persevere uploads the tree once more through a recording proxy
(``tests/httpproxy.py``), then runs the same ``persevere cp`` again ``--runs`` times: the wall
time and CPU of a re-run after completion, and every request it sent, by S3 operation (from the
proxy's log). Issue 27's targets (persevere ahead of every peer on both trees, peak RSS at most
150 MiB on the 20,000-file tree, a re-run at most 3 s with no request per file) close the
report, each met / not met / not measured. Concurrency is the same for every tool: see
``tree_command``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.measure import Measurement, measure
from benchmarks.model import BUCKET, SEAWEEDFS, MiB
from benchmarks.peers import (
    PEERS,
    VENV_BIN,
    Invocation,
    Target,
    aws_command,
    rclone_command,
    s5cmd_command,
)
from benchmarks.servers import BenchServer
from benchmarks.trees import (
    TreeSpec,
    cell,
    last_line,
    listing_problem,
    log_line,
    parse_spec,
    per_object_requests,
    request_counts,
    write_tree,
)

TOOLS = ("persevere", "aws", "s5cmd", "rclone")
PEER_NAMES = {"aws": "aws cli"}  # this harness's tool names -> benchmarks.peers' names
DEFAULT_TREES = {"big": "10x256MiB", "small": "20000x16KiB"}
PART_SIZE = 8 * MiB
SETTLE_S = 0.5  # between runs, so the server's background work does not leak into the next
RSS_TARGET_MIB = 150.0  # issue 27: peak RSS on the 20,000-file tree
RERUN_TARGET_S = 3.0  # issue 27: a re-run after completion on the 20,000-file tree
RESULTS = Path("benchmarks/results")
WARMERS = ("s5cmd", "rclone", "aws")  # the warm-up upload: a peer first, persevere may fail


@dataclasses.dataclass(frozen=True)
class TreeRun:
    """Where one tree upload goes and how hard it may push."""

    directory: Path
    prefix: str  # ends with "/"
    endpoint_url: str
    credentials: tuple[str, str, str]  # access key, secret key, region
    concurrency: int  # requests in flight, for every tool
    parts_per_file: int  # for the tools with two levels (s5cmd, rclone): see tree_command
    scratch: Path  # state dir, configs, output log


def tree_command(tool: str, run: TreeRun) -> Invocation:
    """The command line and environment of one tool uploading ``run.directory``.

    Every tool gets 8 MiB parts (persevere's automatic size for these files) and at most
    ``concurrency`` requests in flight:

    - persevere: ``persevere cp DIR s3://B/PREFIX/ --concurrency C --state-dir S``;
    - aws cli: ``aws s3 cp DIR s3://B/PREFIX/ --recursive``, ``max_concurrent_requests = C``,
      ``multipart_chunksize``/``multipart_threshold = 8MB`` (MiB) in its ``AWS_CONFIG_FILE``;
    - s5cmd: ``s5cmd --numworkers C cp --concurrency P --part-size 8 'DIR/*' s3://B/PREFIX/``
      (its own glob: keys keep the path below DIR);
    - rclone: ``rclone copy DIR BENCH:B/PREFIX/ --transfers C --checkers C
      --s3-upload-concurrency P --s3-chunk-size 8M --s3-upload-cutoff 8M`` (remote from
      ``RCLONE_CONFIG_BENCH_*`` variables).

    s5cmd and rclone have two levels, files in parallel (C) and parts in flight per file (P,
    ``--parts-per-file``, default 1): C x P requests in flight at most. With P = 1 the big tree's
    last files go up with fewer parts in flight than C (10 files, C = 8: 8, then 2).
    ``persevere@DIR`` runs persevere with ``PYTHONPATH=DIR`` (another version's copy).
    """
    name, _, source = tool.partition("@")
    target = Target(
        file=run.directory,
        bucket=BUCKET,
        key=run.prefix,
        endpoint_url=run.endpoint_url,
        access_key=run.credentials[0],
        secret_key=run.credentials[1],
        region=run.credentials[2],
        concurrency=run.concurrency,
        part_size=PART_SIZE,
        scratch=run.scratch,
    )
    per_file = dataclasses.replace(target, concurrency=run.parts_per_file)
    if name == "persevere":
        argv = [
            str(VENV_BIN / "persevere"),
            "cp",
            str(run.directory),
            f"s3://{BUCKET}/{run.prefix}",
            "--concurrency",
            str(run.concurrency),
            "--state-dir",
            str(run.scratch / "state"),
            "--endpoint-url",
            run.endpoint_url,
            "--no-progress",
        ]
        env = PEERS["persevere"].build(target).env
        return Invocation(argv, env | ({"PYTHONPATH": source} if source else {}))
    if name == "aws":
        invocation = aws_command(target)
        return Invocation([*invocation.argv, "--recursive"], invocation.env)
    if name == "s5cmd":
        invocation = s5cmd_command(dataclasses.replace(per_file, file=run.directory / "*"))
        argv = invocation.argv
        assert argv[3] == "cp", argv
        return Invocation(
            [*argv[:3], "--numworkers", str(run.concurrency), *argv[3:]], invocation.env
        )
    if name == "rclone":
        invocation = rclone_command(per_file)
        argv = invocation.argv
        assert argv[1] == "copyto", argv
        return Invocation(
            [
                argv[0],
                "copy",
                str(run.directory),
                f"BENCH:{BUCKET}/{run.prefix}",
                *argv[4:],
                "--s3-upload-cutoff",
                f"{PART_SIZE // MiB}M",
                "--transfers",
                str(run.concurrency),
                "--checkers",
                str(run.concurrency),
            ],
            invocation.env,
        )
    raise ValueError(f"unknown tool {tool!r}")


def missing(tool: str) -> str | None:
    name = tool.partition("@")[0]
    return PEERS[PEER_NAMES.get(name, name)].missing()


class Bench:
    def __init__(
        self, args: argparse.Namespace, tools: list[str], rerun_tools: list[str], root: Path
    ) -> None:
        self.args = args
        self.tools = tools
        self.rerun_tools = rerun_tools
        self.root = root
        self.rows: list[dict[str, Any]] = []
        self.reruns: list[dict[str, Any]] = []
        self.failures: list[str] = []

    def _tree_run(self, server: BenchServer, directory: Path, tree: str, tool: str) -> TreeRun:
        slug = tool.replace("@", "-at-").replace("/", "_").strip("_")
        scratch = Path(tempfile.mkdtemp(prefix="run-", dir=self.root))
        (scratch / "state").mkdir()
        return TreeRun(
            directory=directory,
            prefix=f"tree-{tree}/{slug}/{uuid.uuid4().hex[:12]}/",
            endpoint_url=server.endpoint_url,
            credentials=(server.access_key, server.secret_key, server.region),
            concurrency=self.args.concurrency,
            parts_per_file=self.args.parts_per_file,
            scratch=scratch,
        )

    def _measure(self, tool: str, run: TreeRun) -> Measurement:
        invocation = tree_command(tool, run)
        return measure(invocation.argv, invocation.env, run.scratch / "output.log", cwd=run.scratch)

    def _fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"FAILED: {message}", file=sys.stderr, flush=True)

    def upload(
        self, spec: TreeSpec, server: BenchServer, directory: Path, tool: str, index: int
    ) -> bool:
        """One measured upload of the tree (index -1: the unmeasured warm-up)."""
        run = self._tree_run(server, directory, spec.name, tool)
        time.sleep(SETTLE_S)
        before = server.cpu_s()
        m = self._measure(tool, run)
        server_cpu = server.cpu_s() - before
        error = (
            f"exit {m.returncode}: {last_line(m.output_tail)}"
            if m.returncode != 0
            else listing_problem(spec, run.prefix, server.listing(run.prefix))
        )
        server.drop_prefix(run.prefix)
        shutil.rmtree(run.scratch, ignore_errors=True)
        label = "warm-up" if index < 0 else f"run {index + 1}"
        if error is not None:
            self._fail(f"{spec.name} tree, {tool}, {label}: {error}")
            if index >= 0:
                self.rows.append(
                    {"tree": spec.name, "tool": tool, "run": index + 1, "error": error}
                )
            return False
        print(
            f"{spec.name:5} {tool:10} {label}: wall {m.wall_s:7.2f} s, cpu {m.cpu_s:6.2f} s, "
            f"rss {m.peak_rss_mib:5.0f} MiB, server cpu {server_cpu:6.2f} s",
            flush=True,
        )
        if index >= 0:
            self.rows.append(
                {
                    "tree": spec.name,
                    "tool": tool,
                    "run": index + 1,
                    "wall_s": round(m.wall_s, 3),
                    "cpu_s": round(m.cpu_s, 3),
                    "peak_rss_mib": round(m.peak_rss_mib, 1),
                    # a tool of several processes: their summed RSS, sampled at 10 Hz
                    "processes": m.max_processes,
                    "tree_rss_mib": round(m.sampled_tree_rss_mib, 1),
                    "server_cpu_s": round(server_cpu, 3),
                    "error": None,
                }
            )
        return True

    def tree(self, spec: TreeSpec) -> None:
        started = time.monotonic()
        print(f"\n== {spec.name} tree: {spec.label()}; writing it", flush=True)
        directory = write_tree(self.root / "trees", spec)
        server = BenchServer(SEAWEEDFS, self.root / f"server-{spec.name}")
        try:
            # SeaweedFS allocates volumes on the first writes: one unmeasured upload first,
            # by the fastest peer available (persevere may not work yet).
            for tool in sorted(self.tools, key=lambda t: (*WARMERS, t).index(t)):
                if self.upload(spec, server, directory, tool, -1):
                    break
            for index in range(self.args.runs):
                for tool in self.tools:
                    self.upload(spec, server, directory, tool, index)
            for tool in self.rerun_tools:
                self.rerun(spec, server, directory, tool)
        finally:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)
        print(f"== {spec.name} tree took {time.monotonic() - started:.0f} s", flush=True)

    def rerun(self, spec: TreeSpec, server: BenchServer, directory: Path, tool: str) -> None:
        """A complete upload through the recording proxy, then ``--runs`` re-runs of the same
        command (same prefix, same state dir), each request of each re-run logged and counted."""
        from tests.httpproxy import HttpProxy

        with HttpProxy.in_front_of(server.endpoint_url) as proxy:
            run = dataclasses.replace(
                self._tree_run(server, directory, spec.name, tool), endpoint_url=proxy.url
            )
            m = self._measure(tool, run)
            first = request_counts(log_line(e.method, e.target, e.status) for e in proxy.requests())
            error = (
                f"exit {m.returncode}: {last_line(m.output_tail)}"
                if m.returncode != 0
                else listing_problem(spec, run.prefix, server.listing(run.prefix))
            )
            if error is not None:
                self._fail(f"{spec.name} tree, {tool}, the upload before the re-runs: {error}")
            else:
                print(
                    f"{spec.name:5} {tool:10} upload through the proxy: wall {m.wall_s:.2f} s, "
                    f"{sum(first.values())} requests ({_operations(first)})",
                    flush=True,
                )
                for index in range(self.args.runs):
                    proxy.clear()
                    time.sleep(SETTLE_S)
                    m = self._measure(tool, run)
                    log = run.scratch / f"rerun-{index + 1}.log"
                    log.write_text(
                        "".join(
                            log_line(e.method, e.target, e.status) + "\n" for e in proxy.requests()
                        )
                    )
                    counts = request_counts(log.read_text().splitlines())
                    row: dict[str, Any] = {
                        "tree": spec.name,
                        "tool": tool,
                        "files": spec.count,
                        "run": index + 1,
                        "wall_s": round(m.wall_s, 3),
                        "cpu_s": round(m.cpu_s, 3),
                        "peak_rss_mib": round(m.peak_rss_mib, 1),
                        "requests": sum(counts.values()),
                        "per_object_requests": per_object_requests(counts),
                        "by_operation": dict(counts),
                        "error": None,
                    }
                    if m.returncode != 0:
                        row["error"] = f"exit {m.returncode}: {last_line(m.output_tail)}"
                        self._fail(f"{spec.name} tree, {tool}, re-run {index + 1}: {row['error']}")
                    self.reruns.append(row)
                    print(
                        f"{spec.name:5} {tool:10} re-run {index + 1}: wall {m.wall_s:.2f} s, "
                        f"cpu {m.cpu_s:.2f} s, rss {m.peak_rss_mib:.0f} MiB, "
                        f"{row['requests']} requests ({_operations(counts) or 'none'})",
                        flush=True,
                    )
        server.drop_prefix(run.prefix)
        shutil.rmtree(run.scratch, ignore_errors=True)


def _operations(counts: dict[str, int] | Any) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items(), key=lambda kv: -kv[1]))


# --- the report ------------------------------------------------------------------------------


def _ok(rows: list[dict[str, Any]], tree: str, tool: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["tree"] == tree and r["tool"] == tool and r["error"] is None]


def _median(rows: list[dict[str, Any]], field: str) -> float | None:
    values = [r[field] for r in rows]
    return statistics.median(values) if values else None


def _rate(per_s: float) -> str:
    return f"{per_s:,.0f}" if per_s >= 10 else f"{per_s:.2f}"


def _memory(row: dict[str, Any]) -> float:
    """The run's peak RSS: ``ru_maxrss`` of the tool, or for a tool that ran several processes
    at once the larger of that and their summed RSS (sampled)."""
    if row.get("processes", 1) <= 1:
        return float(row["peak_rss_mib"])
    return max(float(row["peak_rss_mib"]), float(row["tree_rss_mib"]))


def tree_table(rows: list[dict[str, Any]], spec: TreeSpec, tools: list[str]) -> list[str]:
    """One tree's table: medians [min-max] per tool, and failed runs below it."""
    lines = [
        f"### {spec.name}: {spec.label()} ({spec.total / MiB:,.0f} MiB)",
        "",
        "| tool | runs | wall s | MB/s | files/s | CPU s | peak RSS MiB | server CPU s "
        "| wall vs persevere |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    reference = next(
        (t for t in tools if t.startswith("persevere") and _ok(rows, spec.name, t)), None
    )
    ref_wall = _median(_ok(rows, spec.name, reference), "wall_s") if reference else None
    for tool in tools:
        mine = _ok(rows, spec.name, tool)
        tried = [r for r in rows if r["tree"] == spec.name and r["tool"] == tool]
        if not mine:
            lines.append(f"| {tool} | 0 of {len(tried)} | failed | | | | | | |")
            continue
        wall = _median(mine, "wall_s")
        assert wall is not None
        ratio = f"{wall / ref_wall:.2f}x" if ref_wall else "-"
        lines.append(
            f"| {tool} | {len(mine)} of {len(tried)} | {cell(r['wall_s'] for r in mine)} "
            f"| {spec.total / 1e6 / wall:.1f} | {_rate(spec.count / wall)} "
            f"| {cell(r['cpu_s'] for r in mine)} "
            f"| {cell(map(_memory, mine), '.0f')} "
            f"| {cell(r['server_cpu_s'] for r in mine)} | {ratio} |"
        )
    failed: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        if r["tree"] == spec.name and r["error"] is not None:
            failed.setdefault((r["tool"], r["error"]), []).append(r["run"])
    if failed:
        lines.append("")
    for (tool, error), runs in failed.items():
        lines.append(f"- FAILED: {tool}, run {', '.join(map(str, runs))}: {error}")
    return lines


def rerun_table(reruns: list[dict[str, Any]]) -> list[str]:
    if not reruns:
        return []
    lines = [
        "### Re-run after a complete upload (through the recording proxy)",
        "",
        "| tree | tool | runs | wall s | CPU s | peak RSS MiB | requests | naming one object "
        "| by operation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tree in dict.fromkeys(r["tree"] for r in reruns):
        for tool in dict.fromkeys(r["tool"] for r in reruns if r["tree"] == tree):
            mine = [r for r in reruns if r["tree"] == tree and r["tool"] == tool]
            ops: dict[str, list[int]] = {}
            for r in mine:
                for op, n in r["by_operation"].items():
                    ops.setdefault(op, []).append(n)
            by_operation = ", ".join(f"{op} {cell(ns, '.0f')}" for op, ns in sorted(ops.items()))
            lines.append(
                f"| {tree} ({mine[0]['files']:,} files) | {tool} | {len(mine)} "
                f"| {cell(r['wall_s'] for r in mine)} | {cell(r['cpu_s'] for r in mine)} "
                f"| {cell((r['peak_rss_mib'] for r in mine), '.0f')} "
                f"| {cell((r['requests'] for r in mine), '.0f')} "
                f"| {cell((r['per_object_requests'] for r in mine), '.0f')} "
                f"| {by_operation or 'none'} |"
            )
    return lines


def targets(
    rows: list[dict[str, Any]],
    reruns: list[dict[str, Any]],
    specs: list[TreeSpec],
    tools: list[str],
) -> list[str]:
    """Issue 27's targets, each met / not met / not measured, with the medians compared."""
    persevere = next((t for t in tools if t.startswith("persevere")), None)
    peers = [t for t in tools if not t.startswith("persevere")]
    lines = ["| target | verdict | figures |", "|---|---|---|"]

    def verdict(met: bool | None) -> str:
        return "not measured" if met is None else ("**met**" if met else "**not met**")

    for spec in specs:
        mine = _median(_ok(rows, spec.name, persevere), "wall_s") if persevere else None
        walls = {t: _median(_ok(rows, spec.name, t), "wall_s") for t in peers}
        measured = {t: w for t, w in walls.items() if w is not None}
        fastest = min(measured, key=lambda t: measured[t]) if measured else None
        met = None if mine is None or fastest is None else mine < measured[fastest]
        figures = (
            f"persevere {mine:.2f} s, fastest peer {fastest} {measured[fastest]:.2f} s"
            if mine is not None and fastest is not None
            else f"persevere {'failed' if mine is None else f'{mine:.2f} s'}; peers: "
            + (", ".join(f"{t} {w:.2f} s" for t, w in measured.items()) or "none")
        )
        lines.append(f"| {spec.name} tree: wall < every peer's | {verdict(met)} | {figures} |")
    small = next((s for s in specs if s.name == "small"), None)
    if small is not None:
        memory = [_memory(r) for r in _ok(rows, "small", persevere or "")]
        rss = statistics.median(memory) if memory else None
        peak = max(memory, default=None)
        lines.append(
            f"| small tree: peak RSS <= {RSS_TARGET_MIB:.0f} MiB | "
            f"{verdict(None if peak is None else peak <= RSS_TARGET_MIB)} | "
            + (f"median {rss:.0f} MiB, highest {peak:.0f} MiB |" if peak is not None else "- |")
        )
        again = [
            r
            for r in reruns
            if r["tree"] == "small" and r["tool"] == persevere and r["error"] is None
        ]
        wall = _median(again, "wall_s")
        lines.append(
            f"| small tree: re-run after completion <= {RERUN_TARGET_S:.0f} s wall | "
            f"{verdict(None if wall is None else wall <= RERUN_TARGET_S)} | "
            + (f"{cell(r['wall_s'] for r in again)} s |" if again else "- |")
        )
        most = max((r["per_object_requests"] for r in again), default=None)
        total = max((r["requests"] for r in again), default=None)
        lines.append(
            "| small tree: re-run sends no request per file | "
            f"{verdict(None if most is None else most == 0)} | "
            + (
                f"at most {total} requests in all, {most} naming one object "
                f"({small.count:,} files) |"
                if most is not None
                else "- |"
            )
        )
    if small is not None and small.count != int(DEFAULT_TREES["small"].split("x")[0]):
        lines.append("")
        lines.append(f"(The small tree here has {small.count:,} files, not 20,000: --scale.)")
    return lines


def render(
    env: dict[str, Any],
    specs: list[TreeSpec],
    tools: list[str],
    rows: list[dict[str, Any]],
    reruns: list[dict[str, Any]],
    failures: list[str],
) -> str:
    lines = [
        "# Tree uploads: persevere, aws cli, s5cmd, rclone",
        "",
        f"{env['date']}, {env['cores']} cores, load {env['load_start']:.2f} -> "
        f"{env['load_end']:.2f}; SeaweedFS; concurrency {env['concurrency']} (parts per file "
        f"for s5cmd and rclone: {env['parts_per_file']}), 8 MiB parts; {env['runs']} interleaved "
        "runs, median [min-max].",
        "",
        "## Issue 27's targets",
        "",
        *targets(rows, reruns, specs, tools),
        "",
        "## Trees",
        "",
    ]
    for spec in specs:
        lines += [*tree_table(rows, spec, tools), ""]
    lines += [*rerun_table(reruns), ""]
    lines += ["## Versions", ""] + [f"- {t}: {v}" for t, v in env["versions"].items()]
    if failures:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


def write(out: Path, env: dict[str, Any], specs: list[TreeSpec], data: dict[str, Any]) -> str:
    """Write tree.md and tree.json into ``out``; return the Markdown."""
    text = render(env, specs, env["tools"], data["runs"], data["reruns"], data["failures"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "tree.md").write_text(text)
    (out / "tree.json").write_text(json.dumps({"environment": env, **data}, indent=1) + "\n")
    return text


def rerender(path: Path, out: Path) -> int:
    data = json.loads(path.read_text())
    env = data.pop("environment")
    specs = [TreeSpec(name, t["count"], t["size"]) for name, t in env["trees"].items()]
    write(out, env, specs, data)
    print(f"wrote {out / 'tree.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tree_compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--trees", default="big,small", help="big and/or small")
    parser.add_argument("--big", default=DEFAULT_TREES["big"], help="COUNTxSIZE of the big tree")
    parser.add_argument("--small", default=DEFAULT_TREES["small"], help="COUNTxSIZE of the small")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink the trees: the small tree's count, the "
        "big tree's file size (0.1: 2,000 files, 10 x 26 MiB)",
    )
    parser.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help="persevere, aws, s5cmd, rclone; persevere@DIR runs persevere with PYTHONPATH=DIR",
    )
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument(
        "--parts-per-file",
        type=int,
        default=1,
        help="s5cmd's cp --concurrency and rclone's "
        "--s3-upload-concurrency (files in parallel: --concurrency); default 1",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="also time persevere's re-run after a complete upload, and count its requests",
    )
    parser.add_argument(
        "--rerun-tools",
        default=None,
        help="tools to re-run with --rerun (default: the first persevere of --tools); a peer's "
        "re-run, e.g. rclone's copy (which compares sizes and times), for comparison",
    )
    parser.add_argument("--quick", action="store_true", help="--scale 0.1 --runs 1 --rerun")
    parser.add_argument("--tmp-dir", type=Path, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where tree.md and tree.json go (default "
        "benchmarks/results, or benchmarks/results/tmp/tree when scaled)",
    )
    parser.add_argument(
        "--from-json", type=Path, metavar="TREE_JSON", help="measure nothing: rewrite tree.md"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        return rerender(args.from_json, args.out or args.from_json.parent)
    if args.quick:
        args.scale, args.runs, args.rerun = min(args.scale, 0.1), 1, True
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    tools = ["aws" if t == "aws cli" else t for t in tools]
    if args.rerun_tools is not None:
        rerun_tools = [t.strip() for t in args.rerun_tools.split(",") if t.strip()]
        args.rerun = True
    else:
        rerun_tools = [t for t in tools if t.startswith("persevere")][:1]
    rerun_tools = ["aws" if t == "aws cli" else t for t in rerun_tools] if args.rerun else []
    unknown = [t for t in tools + rerun_tools if t.partition("@")[0] not in TOOLS]
    names = [n.strip() for n in args.trees.split(",") if n.strip()]
    unknown += [n for n in names if n not in DEFAULT_TREES]
    if unknown:
        parser.error(f"unknown tool or tree: {', '.join(unknown)}")
    try:
        specs = [parse_spec(n, getattr(args, n)).scaled(args.scale) for n in names]
    except ValueError as exc:
        parser.error(str(exc))
    out = args.out or (RESULTS if args.scale == 1 else RESULTS / "tmp" / "tree")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    skipped = {t: why for t in tools if (why := missing(t))}
    for tool, why in skipped.items():
        print(f"NOTE: {tool}: {why}", flush=True)
    tools = [t for t in tools if t not in skipped]
    rerun_tools = [t for t in rerun_tools if not missing(t)]
    root = Path(tempfile.mkdtemp(prefix="tree-compare-", dir=args.tmp_dir))
    bench = Bench(args, tools, rerun_tools, root)
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    try:
        for spec in specs:
            bench.tree(spec)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    env = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "elapsed_s": round(time.monotonic() - started),
        "concurrency": args.concurrency,
        "parts_per_file": args.parts_per_file,
        "runs": args.runs,
        "tools": tools,
        "trees": {s.name: {"count": s.count, "size": s.size} for s in specs},
        "versions": {
            t: PEERS[PEER_NAMES.get(n, n)].version()
            for t in dict.fromkeys(tools + rerun_tools)
            if (n := t.partition("@")[0])
        },
        "skipped": skipped,
    }
    data = {"runs": bench.rows, "reruns": bench.reruns, "failures": bench.failures}
    text = write(out, env, specs, data)
    print(
        f"\n{text}\nwrote {out / 'tree.md'}, {out / 'tree.json'} ({env['elapsed_s'] / 60:.1f} min)"
    )
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
