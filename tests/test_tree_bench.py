"""The tree benchmark's pure parts (benchmarks/trees.py, benchmarks/tree_compare.py): the trees
are the same bytes every time, an uploaded prefix is checked key by key, the cells read
median [min-max], requests are counted by S3 operation from the proxy's log, every tool gets
the same concurrency, and issue 27's targets say met, not met or not measured."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from benchmarks import tree_compare, trees
from benchmarks.model import MiB
from benchmarks.tree_compare import TreeRun, targets, tree_command
from benchmarks.trees import (
    TreeSpec,
    cell,
    last_line,
    layout,
    listing_problem,
    log_line,
    parse_spec,
    per_object_requests,
    request_counts,
    write_tree,
)


def _digests(top: Path) -> dict[str, str]:
    return {
        p.relative_to(top).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(top.rglob("*"))
        if p.is_file()
    }


def test_a_tree_is_the_same_bytes_every_time_and_no_two_files_alike(tmp_path, monkeypatch):
    assert layout(TreeSpec("small", 1001, 1))[-2:] == ["d000/f00999.bin", "d001/f01000.bin"]
    monkeypatch.setattr(trees, "FILES_PER_DIR", 4)  # a few files, still several directories
    spec = TreeSpec("small", 10, 100)
    first = _digests(write_tree(tmp_path / "a", spec))
    second = _digests(write_tree(tmp_path / "b", spec))
    assert first == second
    assert list(first) == layout(spec) and len(set(first.values())) == 10
    assert layout(spec)[3:5] == ["d000/f00003.bin", "d001/f00004.bin"]
    assert all(p.stat().st_size == 100 for p in (tmp_path / "a" / "small").rglob("*.bin"))
    other = _digests(write_tree(tmp_path / "c", spec, seed="another"))
    assert not set(other.values()) & set(first.values())
    big = write_tree(tmp_path / "d", TreeSpec("big", 1, 2 * trees.WRITE_CHUNK + 5))
    assert (big / "d000" / "f00000.bin").stat().st_size == 2 * trees.WRITE_CHUNK + 5


def test_specs_parse_and_scale_their_count_or_their_size():
    assert parse_spec("big", "10x256MiB") == TreeSpec("big", 10, 256 * MiB)
    small = parse_spec("small", "20000 x 16KiB")
    assert small == TreeSpec("small", 20000, 16 * 1024) and small.label() == "20,000 x 16 KiB"
    assert small.scaled(0.1) == TreeSpec("small", 2000, 16 * 1024)
    assert parse_spec("big", "10x256MiB").scaled(0.1) == TreeSpec("big", 10, 26 * MiB)
    with pytest.raises(ValueError, match="COUNTxSIZE"):
        parse_spec("big", "256MiB")


def test_cells_are_median_and_spread():
    assert cell([3.0, 1.0, 2.5]) == "2.50 [1.00-3.00]"
    assert cell([96.4, 101.2], ".0f") == "99 [96-101]"
    assert cell([7.0]) == "7.00" and cell([3, 3], ".0f") == "3" and cell([]) == "-"


def test_a_prefix_is_checked_key_by_key():
    spec = TreeSpec("small", 3, 10)
    good = {f"p/{rel}": 10 for rel in layout(spec)}
    assert listing_problem(spec, "p/", good) is None
    short = {k: v for k, v in good.items() if not k.endswith("f00002.bin")}
    assert listing_problem(spec, "p/", short) == (
        "1 of 3 objects missing (first: p/d000/f00002.bin)"
    )
    flattened = {f"p/{rel.split('/')[1]}": 10 for rel in layout(spec)}
    problem = listing_problem(spec, "p/", flattened)
    assert problem is not None and "3 of 3 objects missing" in problem
    assert "3 unexpected objects (first: p/f00000.bin)" in problem
    truncated = good | {"p/d000/f00001.bin": 4}
    assert "1 objects of the wrong size (first: p/d000/f00001.bin, 4 bytes" in str(
        listing_problem(spec, "p/", truncated)
    )


def test_requests_are_counted_by_operation_from_the_proxy_log():
    log = [
        log_line("GET", "/bench?list-type=2&prefix=tree-small%2F", 200),
        log_line("GET", "/bench?delimiter=%2F&max-keys=1000&prefix=t%2F", 200),
        log_line("HEAD", "/bench/tree-small/d000/f00000.bin", 200),
        log_line("HEAD", "/bench/tree-small/d000/f00001.bin", 404),
        log_line("PUT", "/bench/tree-small/d000/f00001.bin", None),
        log_line("PUT", "/bench/t/big.bin?partNumber=1&uploadId=abc", 200),
        "",
    ]
    counts = request_counts(log)
    assert counts == {"ListObjects": 2, "HeadObject": 2, "PutObject": 1, "UploadPart": 1}
    assert per_object_requests(counts) == 4
    assert per_object_requests(request_counts([log[0]])) == 0
    assert request_counts([]) == {}
    assert log[4] == "PUT /bench/tree-small/d000/f00001.bin -"


def test_a_failed_tool_is_reported_by_its_last_line():
    assert last_line("starting\nERROR: it broke\n\n  ") == "ERROR: it broke"
    assert last_line("") == "(no output)"


def _run(tmp_path: Path) -> TreeRun:
    return TreeRun(
        directory=tmp_path / "tree",
        prefix="tree-small/x/",
        endpoint_url="http://127.0.0.1:1",
        credentials=("KEY", "SECRET", "us-east-1"),
        concurrency=6,
        parts_per_file=2,
        scratch=tmp_path,
    )


def test_every_tool_gets_the_same_requests_in_flight_and_the_prefix(tmp_path):
    run = _run(tmp_path)
    persevere = tree_command("persevere", run).argv
    assert persevere[1:4] == ["cp", str(run.directory), "s3://bench/tree-small/x/"]
    assert persevere[persevere.index("--concurrency") + 1] == "6"
    assert persevere[persevere.index("--state-dir") + 1] == str(tmp_path / "state")
    aws = tree_command("aws", run)
    assert aws.argv[-1] == "--recursive" and str(run.directory) in aws.argv
    config = Path(aws.env["AWS_CONFIG_FILE"]).read_text()
    assert "max_concurrent_requests = 6" in config and "multipart_chunksize = 8MB" in config
    s5cmd = tree_command("s5cmd", run).argv
    assert s5cmd[s5cmd.index("--numworkers") + 1] == "6"
    assert s5cmd[s5cmd.index("--concurrency") + 1] == "2"
    assert s5cmd[-2:] == [f"{run.directory}/*", "s3://bench/tree-small/x/"]
    rclone = tree_command("rclone", run)
    argv = rclone.argv
    assert argv[1:4] == ["copy", str(run.directory), "BENCH:bench/tree-small/x/"]
    assert argv[argv.index("--transfers") + 1] == argv[argv.index("--checkers") + 1] == "6"
    assert argv[argv.index("--s3-upload-concurrency") + 1] == "2"
    assert rclone.env["RCLONE_CONFIG_BENCH_ENDPOINT"] == "http://127.0.0.1:1"
    old = tree_command("persevere@/tmp/old", run)
    assert old.env["PYTHONPATH"] == "/tmp/old" and old.argv == persevere


def _row(tree: str, tool: str, wall: float, rss: float = 90.0, error: str | None = None):
    return {
        "tree": tree,
        "tool": tool,
        "run": 1,
        "wall_s": wall,
        "cpu_s": 1.0,
        "peak_rss_mib": rss,
        "server_cpu_s": 1.0,
        "error": error,
    }


def test_issue_27_targets_say_met_not_met_or_not_measured():
    specs = [TreeSpec("big", 10, 256 * MiB), TreeSpec("small", 20000, 16 * 1024)]
    tools = ["persevere", "aws", "s5cmd"]
    rows = [
        _row("big", "persevere", 20.0),
        _row("big", "aws", 30.0),
        _row("big", "s5cmd", 21.0),
        _row("small", "persevere", 40.0, rss=160.0),
        _row("small", "s5cmd", 35.0),
    ]
    rerun = {"tree": "small", "tool": "persevere", "files": 20000, "error": None}
    reruns = [rerun | {"wall_s": 1.2, "requests": 1, "per_object_requests": 0}]
    text = "\n".join(targets(rows, reruns, specs, tools))
    assert (
        "| big tree: wall < every peer's | **met** | persevere 20.00 s, fastest peer s5cmd" in text
    )
    assert "| small tree: wall < every peer's | **not met** |" in text
    assert "| small tree: peak RSS <= 150 MiB | **not met** | median 160 MiB" in text
    assert "re-run after completion <= 3 s wall | **met** | 1.20 s |" in text
    assert "| small tree: re-run sends no request per file | **met** | at most 1 requests" in text

    two_processes = [r | {"processes": 2, "tree_rss_mib": 180.0} for r in rows]
    text = "\n".join(targets(two_processes, reruns, specs, tools))
    assert "| small tree: peak RSS <= 150 MiB | **not met** | median 180 MiB" in text

    failed = [
        _row(r["tree"], r["tool"], 0, error="exit 2: no") if r["tool"] == "persevere" else r
        for r in rows
    ]
    text = "\n".join(targets(failed, [], specs, tools))
    assert text.count("not measured") == 5
    assert "persevere failed; peers: aws 30.00 s, s5cmd 21.00 s" in text
    assert tree_compare.RSS_TARGET_MIB == 150 and tree_compare.RERUN_TARGET_S == 3
