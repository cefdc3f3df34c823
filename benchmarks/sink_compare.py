"""Each client's ceiling: uploads to the S3 null sink, and the same uploads to SeaweedFS.

    python -m benchmarks.sink_compare [--size 1GiB] [--runs 5] [--tools persevere,s5cmd,obstore]
                                      [--servers sink,seaweedfs] [--json FILE]
    python -m benchmarks.sink_compare --tools persevere,persevere@/tmp/old   # A/B two versions
    python -m benchmarks.sink_compare --tools persevere,persevere+2 --servers sink  # --processes 2
    python -m benchmarks.sink_compare --part-size 64MiB                # 8 MiB parts by default

Runs are interleaved (tool A, B, C, A, B, C ...) on one fresh server of each kind; persevere
goes first. Every figure is the median of the runs with [min-max]: wall time, the client's CPU
(rusage of the process, exact), its peak RSS, and the server's CPU during the run (nginx's one
process, or ``weed``). The last column, CPU per GiB on SeaweedFS over that on the sink, is the
"does the client's cost grow when the server pushes back" ratio.

The sink answers a part only after reading its whole body (see ``nullsink.py``): a sink that
answers early lets aiohttp-based clients stop sending, which flatters them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.measure import measure
from benchmarks.model import BUCKET, SEAWEEDFS, SINK, GiB, MiB
from benchmarks.peers import PEERS, Target
from benchmarks.servers import BenchServer

SIZES = {"MiB": MiB, "GiB": GiB}
SERVERS = {"sink": SINK, "seaweedfs": SEAWEEDFS}


def _size(text: str) -> int:
    for unit, factor in SIZES.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def _file(root: Path, size: int) -> Path:
    path = root / f"data-{size}.bin"
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 16 * MiB))
            out.write(chunk)
            left -= len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return path


def _tool(spec: str) -> tuple[str, str, list[str]]:
    """``NAME[+PROCESSES][@PYTHONPATH]`` -> the peer, its PYTHONPATH, extra arguments
    (``persevere+2``: ``--processes 2``)."""
    name, _, source = spec.partition("@")
    name, _, processes = name.partition("+")
    return name, source, (["--processes", processes] if processes else [])


def run(
    tools: list[str],
    servers: list[str],
    size: int,
    runs: int,
    root: Path,
    failures: list[str],
    part_size: int = 8 * MiB,
) -> list[dict[str, Any]]:
    data = _file(root, size)
    rows: list[dict[str, Any]] = []
    for kind in servers:
        server = BenchServer(SERVERS[kind], root / kind)
        try:
            for index in range(-1, runs):  # run -1: unmeasured warm-up of every tool
                for tool in tools:
                    scratch = Path(tempfile.mkdtemp(dir=root))
                    key = server.key(f"sink-compare/{tool.replace(' ', '-')}", size)
                    target = Target(
                        data,
                        BUCKET,
                        key,
                        server.endpoint_url,
                        server.access_key,
                        server.secret_key,
                        server.region,
                        8,
                        part_size,
                        scratch,
                    )
                    name, source, extra = _tool(tool)
                    invocation = PEERS[name].build(target)
                    env = invocation.env | ({"PYTHONPATH": source} if source else {})
                    argv = invocation.argv + extra
                    time.sleep(0.5)
                    before = server.cpu_s()
                    m = measure(argv, env, scratch / "out.log", cwd=scratch)
                    server_cpu = server.cpu_s() - before
                    error = (
                        f"exit {m.returncode}: {m.output_tail[-500:]}"
                        if m.returncode != 0
                        else server.check_size(key, size)
                    )
                    if error is None:
                        server.drop(key)
                    shutil.rmtree(scratch, ignore_errors=True)
                    if error is not None:
                        failures.append(f"{tool} on {kind}, run {index + 1}: {error}")
                        print(f"FAILED: {failures[-1]}", file=sys.stderr, flush=True)
                        continue
                    if index < 0:
                        continue
                    row = {
                        "server": kind,
                        "tool": tool,
                        "run": index + 1,
                        "wall_s": m.wall_s,
                        "cpu_s": m.cpu_s,
                        "peak_rss_mib": m.peak_rss_mib,
                        "server_cpu_s": server_cpu,
                    }
                    rows.append(row)
                    print(
                        f"{kind:9} {tool:9} run {index + 1}: wall {m.wall_s:6.2f} s, "
                        f"cpu {m.cpu_s:5.2f} s, rss {m.peak_rss_mib:4.0f} MiB, "
                        f"server cpu {server_cpu:5.2f} s",
                        flush=True,
                    )
        finally:
            server.stop()
    return rows


def _cell(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def table(rows: list[dict[str, Any]], size: int, tools: list[str], servers: list[str]) -> str:
    gib = size / GiB
    lines = [
        "| server | tool | wall s | client CPU s/GiB | peak RSS MiB | server CPU s/GiB |",
        "|---|---|---|---|---|---|",
    ]
    per_gib: dict[tuple[str, str], float] = {}
    for kind in servers:
        for tool in tools:
            mine = [r for r in rows if r["server"] == kind and r["tool"] == tool]
            if not mine:
                continue
            cpu = [r["cpu_s"] / gib for r in mine]
            per_gib[(kind, tool)] = statistics.median(cpu)
            lines.append(
                f"| {kind} | {tool} | {_cell([r['wall_s'] for r in mine], '.2f')} | "
                f"{_cell(cpu, '.2f')} | {_cell([r['peak_rss_mib'] for r in mine], '.0f')} | "
                f"{_cell([r['server_cpu_s'] / gib for r in mine], '.2f')} |"
            )
    if "sink" in servers and "seaweedfs" in servers:
        lines.append("")
        lines.append(
            "Client CPU per GiB, SeaweedFS / null sink: "
            + ", ".join(
                f"{tool} {per_gib[('seaweedfs', tool)] / per_gib[('sink', tool)]:.2f}x"
                for tool in tools
                if ("seaweedfs", tool) in per_gib and ("sink", tool) in per_gib
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sink_compare")
    parser.add_argument("--size", default="1GiB", help="file size, e.g. 1GiB, 256MiB")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--tools",
        default="persevere,s5cmd,obstore",
        help="peers (benchmarks/peers.py); TOOL@DIR runs TOOL with PYTHONPATH=DIR, e.g. "
        "persevere@/tmp/old to compare a copy of another version's persevere/",
    )
    parser.add_argument("--servers", default="sink,seaweedfs", help="sink and/or seaweedfs")
    parser.add_argument("--part-size", default="8MiB", help="part size, a whole number of MiB")
    parser.add_argument("--tmp-dir", default=None)
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [t for t in tools if _tool(t)[0] not in PEERS] + [
        s for s in servers if s not in ("sink", "seaweedfs")
    ]
    if unknown:
        parser.error(f"unknown tool or server: {', '.join(unknown)}")
    size = _size(args.size)
    root = Path(tempfile.mkdtemp(prefix="sink-compare-", dir=args.tmp_dir))
    failures: list[str] = []
    try:
        rows = run(tools, servers, size, args.runs, root, failures, _size(args.part_size))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print()
    print(
        f"{args.size}, concurrency 8, {args.part_size} parts, {args.runs} interleaved runs: "
        "median [min-max]"
    )
    print(table(rows, size, tools, servers))
    for failure in failures:
        print(f"FAILED (left out of the medians): {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
