"""The benchmark harness's own pieces: its module graph, the measuring stub feeding a stream,
the rows it stores, issue 12's target checks, the summary, and every stream peer uploading a
pipe byte-identical to the local SeaweedFS (what the streams section relies on)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import model, targets
from benchmarks.model import FILE, SINK, STATUS, STREAM, GiB, MiB, Run, Setting

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
RUNNER = BENCHMARKS / "runner.py"


# -- the module graph -------------------------------------------------------------------------
def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in a file, relative imports resolved to benchmarks."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module if not node.level else f"benchmarks.{node.module}"
            found.append((module, [alias.name for alias in node.names]))
    return found


def _benchmark_modules() -> dict[str, Path]:
    return {f"benchmarks.{p.stem}": p for p in BENCHMARKS.glob("*.py") if p.stem != "__init__"}


def test_benchmark_modules_import_no_circle():
    modules = _benchmark_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = set()
        for module, names in _imports(path):
            if module in modules:
                graph[name].add(module)
            elif module == "benchmarks":  # from benchmarks import report
                graph[name] |= {f"benchmarks.{n}" for n in names if f"benchmarks.{n}" in modules}
    assert "benchmarks.run" not in set().union(*graph.values()), "nothing imports the harness"
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import circle: {' -> '.join([*path, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_benchmarks_use_no_private_persevere_names_and_no_copied_constants():
    for name, path in _benchmark_modules().items():
        for module, names in _imports(path):
            if module.startswith("persevere"):
                private = [n for n in names if n.startswith("_")]
                assert not private, f"{name} imports private {private} from {module}"
        if name != "benchmarks.model":
            assigned = {
                target.id
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
            copied = assigned & {"MiB", "GiB", "NOISY_CORES", "BUCKET", "LINK_RATE_MBPS"}
            assert not copied, f"{name} defines {copied} again (they live in benchmarks.model)"


# -- the measuring stub -----------------------------------------------------------------------
def _stub(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    log = tmp_path / "out.log"
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(RUNNER), str(log), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout), log.read_text()


@pytest.mark.process
def test_stub_feeds_a_stream_through_a_pipe(tmp_path, make_file):
    data = make_file(3 * MiB + 17)
    script = (
        "import hashlib, os, stat, sys; "
        "print(stat.S_ISFIFO(os.fstat(0).st_mode), hashlib.sha256(sys.stdin.buffer.read())"
        ".hexdigest())"
    )
    result, output = _stub(tmp_path, "--stdin-from", str(data), sys.executable, "-c", script)
    assert result["returncode"] == 0 and result["producer_returncode"] == 0
    assert output.split() == ["True", hashlib.sha256(data.read_bytes()).hexdigest()]
    assert result["producer_cpu_s"] >= 0 and result["wall_s"] > 0


@pytest.mark.process
def test_stub_gives_a_plain_command_an_empty_stdin_and_its_exit_code(tmp_path):
    result, output = _stub(
        tmp_path, sys.executable, "-c", "import sys; print(len(sys.stdin.read())); sys.exit(3)"
    )
    assert result["returncode"] == 3 and output.strip() == "0"
    assert "producer_cpu_s" not in result


# -- rows and targets -------------------------------------------------------------------------
def test_run_rows_round_trip_and_old_rows_read_as_file_uploads_to_seaweedfs():
    run = Run("streams", Setting("s5cmd", GiB, 8, 8 * MiB, mode=STREAM), 2, wall_s=6.5)
    run.user_s, run.sys_s, run.producer_cpu_s, run.verified = 1.5, 0.5, 0.1, "sha256"
    row = run.to_row()
    assert row["cpu_s_per_gib"] == 2.0 and row["run"] == 3
    back = Run.from_row(row)
    assert back.setting == run.setting and back.cpu_s == run.cpu_s and back.ok
    assert back.producer_cpu_s == 0.1 and back.verified == "sha256"
    old = {k: v for k, v in row.items() if k not in ("mode", "server", "producer_cpu_s")}
    old["ok"], old["error"] = False, "exit code 1"
    legacy = Run.from_row(old)
    assert legacy.setting.mode == FILE and legacy.setting.server == model.SEAWEEDFS
    assert legacy.error == "exit code 1" and Run.from_row(row).to_row() == row


def _result(tool: str, size: int, wall: float, cpu: float, rss: float = 90.0, **kw: Any):
    gib = size / GiB
    r = {
        "tool": tool,
        "file_size": size,
        "concurrency": 8,
        "part_size": 8 * MiB,
        "link": False,
        "mode": FILE,
        "server": model.SEAWEEDFS,
        "runs": 5,
        "wall_s": wall,
        "wall_s_min": wall * 0.9,
        "wall_s_max": wall * 1.1,
        "cpu_s": cpu,
        "cpu_s_min": cpu,
        "cpu_s_max": cpu,
        "peak_rss_mib": rss,
        "mb_per_s": size / 1e6 / wall if wall else 0.0,
    }
    if gib:
        r["cpu_s_per_gib"] = cpu / gib
    r.update(kw)
    return r


def _tables() -> dict[str, Any]:
    big = 4 * GiB
    link = {"link": True}
    return {
        "compare": {"results": [
            _result("persevere", GiB, 7.0, 1.0, 100, wall_s_runs=[7.0, 7.0, None, 7.0]),
            _result("s5cmd", GiB, 7.5, 2.0, 22),
            _result("obstore", GiB, 6.5, 1.1, 94, wall_s_runs=[6.5, 7.0, 6.6, 6.0]),
        ]},
        "file_size": {"results": [
            _result("persevere", big, 24.0, 3.0, 104), _result("s5cmd", big, 26.0, 8.0, 30),
            _result("obstore", big, 25.0, 3.6, 94),
        ]},
        "sink": {"results": [
            _result("persevere", GiB, 1.0, 0.9, server=SINK),
            _result("persevere", big, 3.0, 2.0, server=SINK),
        ]},
        "startup": {"results": [
            _result("persevere", 0, 0.5, 0.39), _result("persevere", 0, 0.4, 0.41, mode=STATUS),
            _result("obstore", 0, 0.05, 0.04),
        ]},
        "link_large": {"results": [
            _result("persevere", GiB, 28.0, 1.5, **link), _result("persevere", 0, 1.0, 0.4, **link),
        ]},
    }  # fmt: skip


def test_targets_say_met_or_not_with_the_numbers():
    checks = {c.target: c for c in targets.check_all(_tables(), {"link": {"cap_mb_per_s": 40}})}
    verdicts = {t: c.met for t, c in checks.items()}
    assert verdicts == {
        "wall <= 1.00x the fastest peer, 1 GiB": False,  # 7.0 vs obstore's 6.5
        "wall <= 0.95x s5cmd, 1 GiB": True,  # 7.0 / 7.5 = 0.93
        "wall <= 1.00x the fastest peer, 4 GiB": True,
        "wall <= 0.95x s5cmd, 4 GiB": True,
        "client CPU/GiB <= obstore's, 1 GiB": True,
        "client CPU/GiB flat (within 20%) between the null sink and SeaweedFS, 1 GiB": True,
        "client CPU/GiB <= obstore's, 4 GiB": True,
        "client CPU/GiB flat (within 20%) between the null sink and SeaweedFS, 4 GiB": False,
        "peak RSS <= obstore's at c=8, any part size": False,  # 104 MiB at 4 GiB
        "fixed start-up CPU <= 0.4 s: a 0-byte upload": True,
        "fixed start-up CPU <= 0.4 s: `persevere upload status`": False,
        "emulated link >= 95% of the cap at c=8, start-up < 5% of the run": True,  # 95.9 %, 3.6 %
    }
    fastest = checks["wall <= 1.00x the fastest peer, 1 GiB"].measured
    assert fastest.startswith("1.08x") and "obstore 6.50 s [5.85-7.15]" in fastest
    assert "run by run 1.08x [1.00-1.17] over 3 pairs" in fastest  # run 3 of persevere failed
    assert (
        "1.50x"
        in checks[
            "client CPU/GiB flat (within 20%) between the null sink and SeaweedFS, 4 GiB"
        ].measured
    )
    assert (
        "3.6% of the run"
        in checks["emulated link >= 95% of the cap at c=8, start-up < 5% of the run"].measured
    )


def test_targets_not_measured_are_said_so():
    checks = targets.check_all({}, {})
    assert checks and all(c.met is None and c.verdict == "not measured" for c in checks)


@pytest.fixture
def fonts_listed():
    """The report draws with matplotlib, which lists the machine's fonts with ``fc-list`` the
    first time it runs there (then caches them): done here, so the test starts no process."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("psutil")
    import matplotlib.font_manager  # noqa: F401  (its import builds the font cache)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
def test_summary_has_the_targets_and_every_section(tmp_path, fonts_listed):
    from benchmarks import report
    from benchmarks.run import plan

    tools = ["persevere", "s5cmd", "aws cli", "obstore"]
    runs = []
    for section in plan(True, tools):
        for setting in section.settings:
            for i in range(2):
                run = Run(section.name, setting, i, wall_s=1.0 + i, user_s=0.3, sys_s=0.1)
                run.peak_rss_mib, run.verified = 90.0, "HeadObject size"
                runs.append(run)
    env = {
        "date": "2026-11-26 12:00 UTC", "machine": "x86_64", "cpu_model": "cpu", "cores": 2,
        "memory_gib": 8, "kernel": "6", "python": "3.11", "s3_server": "weed", "runs": 2,
        "quick": True, "elapsed_s": 60, "rss_floor_mib": 7.0, "skipped": {},
        "versions": {t: "1" for t in tools}, "commands": {t: t for t in tools},
        "link": {"cap_mb_per_s": 40.0}, "persevere_source": {},
    }  # fmt: skip
    report.write_all(tmp_path, env, plan(True, tools), runs, [])
    summary = (tmp_path / "summary.md").read_text()
    for heading in ("Issue 12's targets", "null sink", "Start-up", "Streams", "Emulated link"):
        assert heading in summary
    assert "| persevere | 0-byte upload | 0.400 [0.400-0.400] |" in summary
    data = json.loads((tmp_path / "latest.json").read_text())
    assert {r["mode"] for r in data["runs"]} == {FILE, STREAM, STATUS}
    assert len(data["targets"]) == 12  # 2 sizes x (2 wall + 2 CPU), RSS, 2 start-up, link


# -- the stream peers against SeaweedFS -------------------------------------------------------
@pytest.mark.process
@pytest.mark.parametrize("tool", ["persevere", "s5cmd", "aws cli", "rclone"])
def test_stream_peer_uploads_a_pipe_byte_identical(
    tool, s3_server, s3_client, bucket, make_file, tmp_path
):
    pytest.importorskip("psutil")
    from benchmarks.measure import measure
    from benchmarks.peers import PEERS, Target

    peer = PEERS[tool]
    if peer.missing():
        pytest.skip(peer.missing())
    data = make_file(20 * MiB + 5)
    target = Target(
        data, bucket, f"stream/{tool}", s3_server.endpoint_url, s3_server.access_key,
        s3_server.secret_key, s3_server.region, 8, 8 * MiB, tmp_path,
    )  # fmt: skip
    assert peer.stream is not None
    invocation = peer.stream(target)
    assert invocation.stdin == data and str(data) not in invocation.argv
    env = invocation.env | {"PYTHONPATH": str(ROOT)}
    m = measure(invocation.argv, env, tmp_path / "out.log", cwd=tmp_path, stdin=invocation.stdin)
    assert m.returncode == 0, m.output_tail
    assert m.producer_returncode == 0 and m.producer_cpu_s < m.cpu_s + 1
    digest = hashlib.sha256()
    body = s3_client.get_object(Bucket=bucket, Key=f"stream/{tool}")["Body"]
    for chunk in body.iter_chunks(MiB):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data.read_bytes()).hexdigest()
    parts = s3_client.head_object(Bucket=bucket, Key=f"stream/{tool}", PartNumber=1)
    assert parts["PartsCount"] == 3  # 8 + 8 + 4 MiB: the part size reached the tool


def test_rclone_is_on_path_or_the_harness_says_why():
    from benchmarks.peers import PEERS

    why = PEERS["rclone"].missing()
    assert (why is None) == (shutil.which("rclone") is not None)
    if why:
        assert "apt-get install rclone" in why
    assert os.path.exists(RUNNER)
