"""The benchmark harness: ``python -m benchmarks.run [--quick] [--runs N] [--out DIR]``.

Sections (each on a fresh server, runs interleaved A B C ... A B C ...):

- ``compare``: every tool uploads the same file at the same concurrency and part size;
- ``file_size``: persevere, s5cmd and obstore at 256 MiB, 1 GiB and 4 GiB;
- ``sink``: persevere, s5cmd and obstore to the S3 null sink (nullsink.py): each client's
  ceiling, and its CPU per GiB when the server pushes back nowhere;
- ``startup``: the fixed cost: every tool's 0-byte upload, and ``persevere upload status``;
- ``streams``: ``cat FILE | tool`` for the tools that upload standard input;
- ``concurrency``, ``part_size``: sweeps of persevere and s5cmd;
- ``link``: persevere and s5cmd through ``linkproxy`` (latency + shared bandwidth cap), at
  concurrency 1 to 8; ``link_large``: c=8 on a file large enough that start-up is under 5 % of
  the run, and a 0-byte upload through the link (start-up, on its own line).

A setting measured in one section is reused by the next rather than run again (the headline
setting, 1 GiB at c=8 with 8 MiB parts, appears in several). Every upload is checked with
HeadObject, a stream's also by downloading it and comparing SHA-256s; a failed or short upload
is reported loudly and makes the harness exit 1. The summary opens with issue 12's targets,
each met or not with its numbers (targets.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks import report
from benchmarks.linkproxy import LinkProxy
from benchmarks.measure import (
    foreign_cpu_s,
    foreign_cpu_snapshot,
    machine_busy_cpu_s,
    measure,
    rss_floor_mib,
)
from benchmarks.model import (
    BUCKET,
    FILE,
    LINK_DELAY_MS,
    LINK_RATE_MBPS,
    NOISY_CORES,
    SEAWEEDFS,
    SINK,
    STATUS,
    STREAM,
    GiB,
    MiB,
    Run,
    Section,
    Setting,
    size_label,
)
from benchmarks.peers import PEERS, Invocation, Target, command_template, persevere_status_command
from benchmarks.servers import BenchServer

PREFLIGHT_SIZE = 20 * MiB
DISK_MARGIN = 4 * GiB  # left free beyond what the benchmark stores (--disk-margin): shared disk
SETTLE_S = 0.5  # pause between runs so the server's background work does not leak into the next
QUIET_CORES = 0.15  # start a run only once other people's processes use less CPU than this...
QUIET_MAX_WAIT_S = 90.0  # ...or this long has passed (the run's foreign_cpu_s then shows it)
QUIET_TOTAL_WAIT_S = 180.0  # and stop waiting at all once this much was spent waiting
NOISY_RETRIES = 2  # a run above NOISY_CORES is run again, up to this many times...
NOISY_RETRY_BUDGET_S = 240.0  # ...while re-runs have taken less than this in all
# Below this, "the rest of the machine" is mostly the harness's own bookkeeping around the run
# (listing every process twice) and tick rounding: a start-up run is not judged noisy.
NOISY_MIN_WALL_S = 2.0
QUIET_SAMPLE_S = 0.5
WARMUP_MAX_SIZE = GiB
SWEEP_TOOLS = ("persevere", "s5cmd")
SIZE_TOOLS = ("persevere", "s5cmd", "obstore")  # obstore: the fastest peer at 1 GiB
SECTIONS = (
    "compare",
    "file_size",
    "sink",
    "startup",
    "streams",
    "concurrency",
    "part_size",
    "link",
    "link_large",
)
# `persevere upload status` needs an upload in progress: one started with a rate cap and
# killed once a part is recorded.
STATUS_FILE_SIZE = 32 * MiB
STATUS_RATE = "4MiB/s"
REPO_ROOT = Path(__file__).resolve().parent.parent


class NotEnoughDisk(Exception):
    """Free space ran short: the section stops (and says so), the others go on."""


def plan(quick: bool, tools: list[str]) -> list[Section]:
    headline = 256 * MiB if quick else GiB
    file_sizes = [64 * MiB, 256 * MiB, GiB] if quick else [256 * MiB, GiB, 4 * GiB]
    link_size = 64 * MiB if quick else 256 * MiB
    # At 40 MB/s, 1 GiB takes 27 s: start-up (~0.5-1 s) is then under 5 % of the run.
    link_large = 256 * MiB if quick else GiB
    sweep_tools = [tool for tool in SWEEP_TOOLS if tool in tools]
    size_tools = [tool for tool in SIZE_TOOLS if tool in tools]
    stream_tools = [tool for tool in tools if PEERS[tool].stream is not None]

    def grid(
        sizes: list[int],
        concs: list[int],
        parts: list[int],
        link: bool = False,
        who: list[str] = sweep_tools,
        server: str = SEAWEEDFS,
    ) -> list[Setting]:
        return [
            Setting(tool, size, conc, part, link, FILE, server)
            for size in sizes
            for conc in concs
            for part in parts
            for tool in who
        ]

    link_title = (
        f"Emulated link ({LINK_DELAY_MS:.0f} ms one-way, {LINK_RATE_MBPS:.0f} MB/s shared cap)"
    )
    startup = [Setting(tool, 0, 8, 8 * MiB) for tool in tools]
    if "persevere" in tools:
        startup.insert(1, Setting("persevere", 0, 8, 8 * MiB, mode=STATUS))
    return [
        Section(
            "compare",
            f"All tools, {size_label(headline)}, concurrency 8, 8 MiB parts",
            [Setting(tool, headline, 8, 8 * MiB) for tool in tools],
        ),
        Section(
            "file_size",
            "File-size sweep, concurrency 8, 8 MiB parts",
            grid(file_sizes, [8], [8 * MiB], who=size_tools),
        ),
        Section(
            "sink",
            "The S3 null sink (nginx, stores nothing), concurrency 8, 8 MiB parts",
            grid([headline, file_sizes[-1]], [8], [8 * MiB], who=size_tools, server=SINK),
        ),
        Section("startup", "Start-up: the fixed cost of one run (SeaweedFS)", startup),
        Section(
            "streams",
            f"Streams: `cat FILE | tool`, {size_label(headline)}, concurrency 8, 8 MiB parts",
            [Setting(tool, headline, 8, 8 * MiB, mode=STREAM) for tool in stream_tools],
        ),
        Section(
            "concurrency",
            f"Concurrency sweep, {size_label(headline)}, 8 MiB parts",
            grid([headline], [1, 2, 4, 8, 16], [8 * MiB]),
        ),
        Section(
            "part_size",
            # 1 GiB even with --quick: a 512 MiB part needs a file larger than one part
            "Part-size sweep, 1 GiB, concurrency 8",
            grid([GiB], [8], [8 * MiB, 64 * MiB, 512 * MiB]),
        ),
        Section(
            "link",
            f"{link_title}, {size_label(link_size)}, 8 MiB parts",
            grid([link_size], [1, 2, 4, 8], [8 * MiB], link=True),
        ),
        Section(
            "link_large",
            f"{link_title}, {size_label(link_large)} at concurrency 8, and start-up",
            grid([link_large, 0], [8], [8 * MiB], link=True),
        ),
    ]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="persevere-bench-", dir=args.tmp_dir))
        # The servers' data: under root, or elsewhere (--server-dir, e.g. a tmpfs when the
        # disk is short; the test files stay on disk, read from its page cache).
        self.server_root = (
            Path(tempfile.mkdtemp(prefix="persevere-bench-servers-", dir=args.server_dir))
            if args.server_dir
            else self.root
        )
        self.disk_margin = int(args.disk_margin * GiB)
        self.files: dict[int, Path] = {}
        self.sha256: dict[int, str] = {}
        self.runs: list[Run] = []
        self.failures: list[str] = []
        self.skipped: dict[str, str] = {}
        self.server: BenchServer | None = None
        self.status_state: Path | None = None  # an upload in progress (the startup section)
        self._run_counter = 0
        self.tools: list[str] = []
        self.waited_total_s = 0.0
        self.noisy_retry_s = 0.0
        self.noisy_discarded = 0
        self.env_overrides: dict[str, dict[str, str]] = {}

    # --- fixtures ------------------------------------------------------------------------

    def file_of_size(self, size: int) -> Path:
        """Random bytes, written once per size and fsync'd so writeback does not skew run 1."""
        if size not in self.files:
            path = self.root / f"data-{size_label(size).replace(' ', '')}.bin"
            self._need_disk(size, self.root)
            print(f"generating {path} ({size_label(size)} of random bytes)", flush=True)
            digest = hashlib.sha256()
            with path.open("wb") as out:
                left = size
                while left:
                    chunk = os.urandom(min(left, 16 * MiB))
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
                out.flush()
                os.fsync(out.fileno())
            self.files[size] = path
            self.sha256[size] = digest.hexdigest()
        return self.files[size]

    def start_server(self, name: str, kind: str = SEAWEEDFS) -> BenchServer:
        self.stop_server()
        self.server = BenchServer(kind, self.server_root / f"s3-{name}")
        return self.server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.status_state = None

    def pin_persevere(self, source: str) -> dict[str, str]:
        """Copy persevere/ now and run that copy (PYTHONPATH) for the whole benchmark.

        The package is installed editable and others may be changing it while the benchmark
        runs; without a snapshot, runs of one setting could measure different code. ``source``
        is ``worktree`` (the files as they are) or ``head`` (the last commit's).
        """
        snapshot = self.root / "persevere-snapshot"
        if source == "head":
            snapshot.mkdir()
            archive = subprocess.run(
                ["git", "archive", "HEAD", "persevere"],
                cwd=REPO_ROOT,
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(snapshot)], input=archive, check=True)
        else:
            shutil.copytree(
                REPO_ROOT / "persevere",
                snapshot / "persevere",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        digest = hashlib.sha256()
        for path in sorted((snapshot / "persevere").rglob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        self.env_overrides["persevere"] = {"PYTHONPATH": str(snapshot)}

        def git(*args: str) -> str:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
            return done.stdout.strip() if done.returncode == 0 else "unknown"

        dirty = source == "worktree" and git("status", "--porcelain", "--", "persevere")
        return {
            "commit": git("rev-parse", "--short=12", "HEAD"),
            "commit_date": git("log", "-1", "--format=%cI", "HEAD"),
            # The last commit that changed persevere/ (the code measured, if not dirty): a
            # benchmarks-only commit on top does not change what is measured.
            "persevere_changed_in": git("log", "-1", "--format=%h %cs %s", "--", "persevere"),
            "uncommitted_changes": "yes" if dirty else "no",
            "sources_sha256": digest.hexdigest()[:16],
        }

    def wait_until_quiet(self) -> None:
        """Other work on these 2 cores (a test suite, a build) would be charged to nobody and
        slow whichever tool runs then; wait for it to stop, within reason."""
        waited_s = 0.0
        while True:
            before = foreign_cpu_snapshot()
            time.sleep(QUIET_SAMPLE_S)
            busy_cores = foreign_cpu_s(before, foreign_cpu_snapshot()) / QUIET_SAMPLE_S
            if (
                busy_cores < QUIET_CORES
                or waited_s >= QUIET_MAX_WAIT_S
                or self.waited_total_s + waited_s >= QUIET_TOTAL_WAIT_S
            ):
                break
            waited_s += QUIET_SAMPLE_S
        self.waited_total_s += waited_s
        if waited_s >= 5:
            state = "quiet" if busy_cores < QUIET_CORES else f"still busy ({busy_cores:.2f} cores)"
            print(f"  (waited {waited_s:.0f} s for the machine to be quiet: {state})", flush=True)

    def warm_up(self, sizes: list[int], endpoint_url: str) -> None:
        """One unmeasured upload on a fresh server: SeaweedFS allocates its volumes on first
        writes, which would otherwise slow whichever tool happens to run first."""
        tool = "s5cmd" if "s5cmd" in self.tools else self.tools[0]
        size = max(PREFLIGHT_SIZE, min(max(sizes), WARMUP_MAX_SIZE))
        run = self.upload("warmup", Setting(tool, size, 8, 8 * MiB), 0, endpoint_url)
        if not run.ok:
            self._fail(f"warm-up upload with {tool} failed: {run.error}")

    def prepare_status(self, endpoint_url: str) -> None:
        """An upload in progress for ``persevere upload status``: started with a rate cap and
        killed (SIGKILL) once its journal records a part."""
        assert self.server is not None
        file = self.file_of_size(STATUS_FILE_SIZE)
        scratch = self.root / "status-upload"
        scratch.mkdir(exist_ok=True)
        state = scratch / "in-progress.persevere"
        target = self._target(file, "startup/in-progress", endpoint_url, 1, 8 * MiB, scratch)
        invocation = PEERS["persevere"].build(target)
        argv = [*invocation.argv, "--max-bandwidth", STATUS_RATE]
        argv[argv.index("--state-file") + 1] = str(state)
        env = invocation.env | self.env_overrides.get("persevere", {})
        with (scratch / "output.log").open("wb") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                if state.exists() and b'"type":"part"' in state.read_bytes():
                    break
                time.sleep(0.05)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait()
        if b'"type":"part"' not in state.read_bytes() or b'"completed"' in state.read_bytes():
            self._fail(f"could not leave an upload in progress for `upload status` ({scratch})")
            return
        self.status_state = state

    def _need_disk(self, size: int, where: Path) -> None:
        """Keep the margin free beyond what the next write stores: the disk is shared."""
        free = shutil.disk_usage(where).free
        if free < size + self.disk_margin:
            raise NotEnoughDisk(
                f"only {free / GiB:.1f} GiB free under {where}, need "
                f"{(size + self.disk_margin) / GiB:.1f} GiB; free some space, or pass "
                "--tmp-dir / --server-dir"
            )

    def keep_files(self, sizes: set[int]) -> None:
        """Delete the test files of other sizes (no later section needs them)."""
        for size in [s for s in self.files if s not in sizes]:
            self.files.pop(size).unlink(missing_ok=True)

    # --- one upload ----------------------------------------------------------------------

    def _target(
        self, file: Path, key: str, endpoint_url: str, concurrency: int, part: int, scratch: Path
    ) -> Target:
        assert self.server is not None
        return Target(
            file=file,
            bucket=BUCKET,
            key=key,
            endpoint_url=endpoint_url,
            access_key=self.server.access_key,
            secret_key=self.server.secret_key,
            region=self.server.region,
            concurrency=concurrency,
            part_size=part,
            scratch=scratch,
        )

    def _invocation(self, setting: Setting, target: Target) -> Invocation:
        peer = PEERS[setting.tool]
        if setting.mode == STREAM:
            assert peer.stream is not None, f"{setting.tool} cannot upload a stream"
            return peer.stream(target)
        if setting.mode == STATUS:
            assert self.status_state is not None, "no upload in progress for `upload status`"
            return persevere_status_command(target, self.status_state)
        return peer.build(target)

    def upload(self, section: str, setting: Setting, index: int, endpoint_url: str) -> Run:
        """Measure one run of ``setting`` and check what it uploaded."""
        assert self.server is not None
        server = self.server
        self._run_counter += 1
        file = self.file_of_size(setting.file_size)
        if setting.server == SEAWEEDFS:
            self._need_disk(setting.file_size, self.server_root)
        scratch = self.root / "runs" / f"{self._run_counter:04d}"
        scratch.mkdir(parents=True)
        key = server.key(f"{section}/{setting.tool.replace(' ', '-')}", setting.file_size)
        target = self._target(
            file, key, endpoint_url, setting.concurrency, setting.part_size, scratch
        )
        invocation = self._invocation(setting, target)
        server_cpu_before = server.cpu_s()
        busy_before = machine_busy_cpu_s()
        foreign_before = foreign_cpu_snapshot()
        env = invocation.env | self.env_overrides.get(setting.tool, {})
        m = measure(
            invocation.argv, env, scratch / "output.log", cwd=scratch, stdin=invocation.stdin
        )
        foreign_s = foreign_cpu_s(foreign_before, foreign_cpu_snapshot())
        busy_s = machine_busy_cpu_s() - busy_before
        run = Run(
            section=section,
            setting=setting,
            index=index,
            wall_s=m.wall_s,
            user_s=m.user_s,
            sys_s=m.sys_s,
            peak_rss_mib=m.peak_rss_mib,
            sampled_tree_rss_mib=m.sampled_tree_rss_mib,
            max_processes=m.max_processes,
            server_cpu_s=server.cpu_s() - server_cpu_before,
            producer_cpu_s=m.producer_cpu_s,
        )
        run.other_cpu_s = max(0.0, busy_s - run.cpu_s - run.server_cpu_s - run.producer_cpu_s)
        run.foreign_cpu_s = foreign_s
        if m.returncode != 0:
            run.error = f"exit code {m.returncode}; output tail:\n{m.output_tail}"
        elif setting.mode == STATUS:
            run.verified = "exit 0"
        else:
            run.error = self._check(setting, key, m.output_tail)
            run.verified = "HeadObject size"
            if setting.mode == STREAM and run.ok:
                run.verified = "HeadObject size and the SHA-256 of the download"
            if run.ok:
                server.drop(key)
        if run.ok:
            shutil.rmtree(scratch, ignore_errors=True)
        return run

    def _check(self, setting: Setting, key: str, output: str) -> str | None:
        """What is wrong with the uploaded object, or None: HeadObject's size, and for a
        stream (read once, nothing to compare it with afterwards) the downloaded bytes."""
        assert self.server is not None
        problem = self.server.check_size(key, setting.file_size)
        if problem is None and setting.mode == STREAM:
            problem = self.server.check_bytes(key, self.sha256[setting.file_size])
        return None if problem is None else f"exited 0 but {problem}\noutput:\n{output}"

    # --- sections ------------------------------------------------------------------------

    def preflight(self, tools: list[str]) -> list[str]:
        """One small multipart upload per tool: proves it works here, and warms it up."""
        server = self.start_server("preflight")
        working = []
        for tool in tools:
            setting = Setting(tool, PREFLIGHT_SIZE, 2, 8 * MiB)
            run = self.upload("preflight", setting, 0, server.endpoint_url)
            if run.ok:
                working.append(tool)
                print(f"preflight {tool}: ok ({run.wall_s:.2f} s)", flush=True)
            else:
                self._fail(f"preflight of {tool} failed, excluded from every section: {run.error}")
        self.stop_server()
        return working

    def run_section(self, section: Section, runs: int) -> None:
        started = time.monotonic()
        done = {(r.setting, r.index) for r in self.runs if r.ok}  # earlier sections' samples
        todo = [
            (i, setting)
            for i in range(runs)
            for setting in section.settings
            if (setting, i) not in done
        ]
        print(f"\n== {section.title}: {len(todo)} runs", flush=True)
        if not todo:
            return
        try:
            self._run_section(section, todo)
        except NotEnoughDisk as exc:
            self._fail(f"section {section.name} stopped: {exc}")
        print(f"== {section.name} took {time.monotonic() - started:.0f} s", flush=True)

    def _run_section(self, section: Section, todo: list[tuple[int, Setting]]) -> None:
        for size in sorted({s.file_size for s in section.settings}):
            try:
                self.file_of_size(size)
            except NotEnoughDisk as exc:  # the other sizes of the section still run
                self._fail(f"{section.name}: {size_label(size)} left out: {exc}")
                todo[:] = [(i, s) for i, s in todo if s.file_size != size]
        if not todo:
            return
        kind = SINK if any(s.server == SINK for s in section.settings) else SEAWEEDFS
        server = self.start_server(section.name, kind)
        try:
            if any(s.link for s in section.settings):
                proxy_log = self.root / f"linkproxy-{section.name}.log"
                with LinkProxy(
                    server.endpoint_url, LINK_DELAY_MS, LINK_RATE_MBPS, proxy_log
                ) as proxy:
                    self._prepare(section, proxy.endpoint_url)
                    self._run_all(section, todo, proxy.endpoint_url)
            else:
                self._prepare(section, server.endpoint_url)
                self._run_all(section, todo, server.endpoint_url)
        finally:
            self.stop_server()

    def _prepare(self, section: Section, endpoint_url: str) -> None:
        self.warm_up([s.file_size for s in section.settings], endpoint_url)
        if any(s.mode == STATUS for s in section.settings):
            self.prepare_status(endpoint_url)

    def _run_all(self, section: Section, todo: list[tuple[int, Setting]], endpoint: str) -> None:
        for n, (index, setting) in enumerate(todo, 1):
            if setting.mode == STATUS and self.status_state is None:
                continue  # prepare_status failed and said so
            run = None
            for attempt in range(NOISY_RETRIES + 1):
                time.sleep(SETTLE_S)
                self.wait_until_quiet()
                try:
                    run = self.upload(section.name, setting, index, endpoint)
                except NotEnoughDisk as exc:
                    self._fail(f"{section.name}: {setting.tool} run {index + 1} left out: {exc}")
                    break
                if attempt:
                    self.noisy_retry_s += run.wall_s
                noise_cores = run.other_cpu_s / run.wall_s if run.wall_s else 0.0
                if (
                    not run.ok
                    or run.wall_s < NOISY_MIN_WALL_S
                    or noise_cores <= NOISY_CORES
                    or attempt == NOISY_RETRIES
                    or self.noisy_retry_s >= NOISY_RETRY_BUDGET_S
                ):
                    break
                self.noisy_discarded += 1
                print(
                    f"  (noisy: the rest of the machine used {noise_cores:.2f} cores during "
                    f"{setting.tool}'s {run.wall_s:.1f} s run; running it again)",
                    flush=True,
                )
            if run is None:
                continue
            self.runs.append(run)
            mode = "" if setting.mode == FILE else f" {setting.mode}"
            label = (
                f"[{section.name} {n}/{len(todo)}] {setting.tool + mode:<16} "
                f"{size_label(setting.file_size):>8} c={setting.concurrency:<2} "
                f"part={size_label(setting.part_size)}"
            )
            if run.ok:
                rate = f"{setting.file_size / 1e6 / run.wall_s:6.1f} MB/s" if run.wall_s else ""
                print(
                    f"{label}: {run.wall_s:6.2f} s {rate} cpu {run.cpu_s:5.2f} s "
                    f"rss {run.peak_rss_mib:5.0f} MiB server cpu {run.server_cpu_s:5.2f} s",
                    flush=True,
                )
            else:
                self._fail(f"{label}: {run.error}")

    def _fail(self, message: str) -> None:
        self.failures.append(message)
        bar = "!" * 78
        print(f"\n{bar}\nFAILED: {message}\n{bar}\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.stop_server()
        if self.args.keep_tmp:
            print(f"scratch kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        if self.server_root != self.root:
            shutil.rmtree(self.server_root, ignore_errors=True)


def environment(tools: list[str], skipped: dict[str, str]) -> dict[str, object]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from tests.s3server import find_weed

    weed = subprocess.run([str(find_weed()), "version"], capture_output=True, text=True)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GiB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "s3_server": (weed.stdout.strip().splitlines() or ["unknown"])[0],
        "versions": {tool: PEERS[tool].version() for tool in tools},
        "commands": {tool: command_template(tool) for tool in tools},
        "stream_commands": {
            tool: command_template(tool, stream=True)
            for tool in tools
            if PEERS[tool].stream is not None
        },
        "skipped": skipped,
        "link": {"one_way_delay_ms": LINK_DELAY_MS, "cap_mb_per_s": LINK_RATE_MBPS},
    }


def rerender(json_path: Path, out: Path) -> int:
    data = json.loads(json_path.read_text())
    env = data["environment"]
    runs = [Run.from_row(row) for row in data["runs"]]
    sections = plan(env["quick"], list(env["versions"]))
    paths = report.write_all(out, env, sections, runs, data["failures"])
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: smaller files, 1 run each, no 4 GiB file"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs of each setting (default 5, or 1 with --quick)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results directory (default benchmarks/results, "
        "or benchmarks/results/tmp/quick with --quick)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="SECTION",
        choices=SECTIONS,
        help="run only this section (repeatable): " + ", ".join(SECTIONS),
    )
    parser.add_argument("--tools", help="comma-separated subset of: " + ", ".join(PEERS))
    parser.add_argument(
        "--tmp-dir",
        type=Path,
        default=None,
        help="where the test files and the S3 server's data go (default: $TMPDIR)",
    )
    parser.add_argument(
        "--server-dir",
        type=Path,
        default=None,
        help="where the S3 servers keep their data (default: under --tmp-dir)",
    )
    parser.add_argument(
        "--disk-margin",
        type=float,
        default=DISK_MARGIN / GiB,
        metavar="GIB",
        help=f"GiB to leave free beyond what is written (default {DISK_MARGIN / GiB:g})",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--persevere-source",
        choices=["worktree", "head"],
        default="worktree",
        help="measure persevere/ as it is now (default) or as in the last commit",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="LATEST_JSON",
        help="measure nothing: rewrite the CSV, Markdown and charts from a results JSON",
    )
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 5)
    out = args.out or Path("benchmarks/results") / ("tmp/quick" if args.quick else "")
    if args.from_json:
        return rerender(args.from_json, args.out or args.from_json.parent)

    wanted = args.tools.split(",") if args.tools else list(PEERS)
    unknown = set(wanted) - set(PEERS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    # A SIGTERM (a supervisor, `kill`) unwinds like Ctrl-C: servers stopped, scratch removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    bench = Bench(args)
    tools = []
    for tool in wanted:
        why = PEERS[tool].missing()
        if why:
            print(f"NOTE: {tool}: {why}", flush=True)
            bench.skipped[tool] = why
        else:
            tools.append(tool)

    started = time.monotonic()
    load_start = os.getloadavg()[0]
    sections = plan(args.quick, tools)
    floor_mib = 0.0
    persevere_source: dict[str, str] = {}
    try:
        floor_mib = rss_floor_mib(bench.root)
        persevere_source = (
            bench.pin_persevere(args.persevere_source) if "persevere" in tools else {}
        )
        tools = bench.preflight(tools)
        bench.tools = tools
        sections = plan(args.quick, tools)
        chosen = [s for s in sections if not args.only or s.name in args.only]
        for n, section in enumerate(chosen):
            later = {st.file_size for sec in chosen[n:] for st in sec.settings}
            bench.keep_files(later | {PREFLIGHT_SIZE, STATUS_FILE_SIZE})
            bench.run_section(section, runs)
    finally:
        bench.close()
    elapsed_s = time.monotonic() - started

    env = environment(tools, bench.skipped)
    env["runs"] = runs
    env["rss_floor_mib"] = round(floor_mib, 1)
    env["persevere_source"] = persevere_source
    env["noise"] = {
        "noisy_cores": NOISY_CORES,
        "runs_discarded_as_noisy": bench.noisy_discarded,
        "waited_for_quiet_s": round(bench.waited_total_s),
    }
    env["load_average"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    env["quick"] = args.quick
    env["server_dir"] = str(args.server_dir) if args.server_dir else "under the scratch directory"
    env["only"] = args.only or []
    env["elapsed_s"] = round(elapsed_s)
    paths = report.write_all(out, env, sections, bench.runs, bench.failures)
    print(f"\nwrote {', '.join(str(p) for p in paths)} ({elapsed_s / 60:.1f} min)")
    print((out / "summary.md").read_text())
    if bench.failures:
        print(
            f"\n{len(bench.failures)} FAILURE(S); see above and {out / 'summary.md'}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
