"""Shards of one upload: N processes (or hosts, or Dask tasks), each with its own journal,
killed and re-run at will; completion merges them with ListParts."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

import persevere
from persevere._shards import shard_from_environment, shard_range
from tests.conftest import persevere as cli
from tests.conftest import sha256_of_file, sha256_of_object
from tests.ruleproxy import Rule, RuleProxy

MiB = 1024 * 1024


def create(env, bucket, file, state, shards):
    done = cli(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--shards", shards)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def assert_done(s3_client, bucket, file):
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize(("parts", "shards"), [(20, 3), (7, 7), (10_000, 64), (1, 1)])
def test_shard_ranges_cover_every_part_once(parts, shards):
    ranges = [shard_range(parts, i, shards) for i in range(shards)]
    numbers = [n for r in ranges for n in r]
    assert numbers == list(range(1, parts + 1))
    assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_shard_index_from_the_engines(monkeypatch):
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert shard_from_environment(8) is None
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    assert shard_from_environment(8) == (3, 8)
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert shard_from_environment(None) == (2, 4)


@pytest.mark.slow  # 6-10 s: the default run stays under 3 minutes (make test-all runs it)
@pytest.mark.process
def test_shards_killed_at_random_and_run_again(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(80 * MiB + 333, seed=140)
    state = tmp_path / "s"
    create(s3_env, bucket, file, state, 3)
    rng = random.Random(140)
    done: set[int] = set()
    for _ in range(12):
        procs = {
            index: subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "persevere",
                    "upload",
                    "shard",
                    "--state-file",
                    str(state),
                    "--shard",
                    f"{index}/3",
                    "--no-progress",
                    "-c",
                    "2",
                    "--max-bandwidth",
                    "20MiB/s",
                ],
                env={**os.environ, **s3_env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for index in range(3)
            if index not in done
        }
        time.sleep(rng.uniform(0.3, 1.5))
        for index, proc in procs.items():
            if proc.poll() is None and rng.random() < 0.7:
                proc.send_signal(signal.SIGKILL)
            _, stderr = proc.communicate(timeout=120)
            assert "Traceback" not in stderr, stderr
            if proc.returncode == 0:
                done.add(index)
        if len(done) == 3:
            break
    # One shard may still be unfinished: completion sends what it left.
    result = cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress", "--json")
    assert result.returncode == 0, result.stderr
    assert_done(s3_client, bucket, file)
    assert sorted(p.name for p in tmp_path.glob("s.shard-*")) == [
        f"s.shard-{i}-of-3" for i in range(3)
    ]
    # A pod restarted (or an array task requeued) after completion: done, exit 0, nothing sent.
    again = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "1/3", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["bytes_sent"] == 0 and "already completed" in again.stderr


def test_status_counts_the_shards_parts(s3_env, bucket, s3_client, make_file, tmp_path):
    file, state = make_file(20 * MiB, seed=141), tmp_path / "s"
    create(s3_env, bucket, file, state, 2)
    shard = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2")
    assert shard.returncode == 0, shard.stderr
    status = cli(s3_env, "upload", "status", "--state-file", state, "--json")
    assert json.loads(status.stdout)["parts_done"] == 2  # parts 1..2 of 4, in shard 0's journal
    assert cli(s3_env, "upload", "resume", "--state-file", state).returncode == 0
    done = json.loads(cli(s3_env, "upload", "status", "--state-file", state, "--json").stdout)
    assert done["parts_done"] == done["part_count"] == 4


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_completion_waits_for_a_shard_still_running(rule_proxy, bucket, s3_client,
                                                   make_file, tmp_path):  # fmt: skip
    file, state = make_file(30 * MiB, seed=142), tmp_path / "s"
    env, proxy = rule_proxy  # recorded: every run goes through it
    create(env, bucket, file, state, 2)
    held = proxy.hold_parts_but(1)  # shard 0 runs on, part 2 in flight
    running = subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "shard", "--state-file", str(state),
         "--shard", "0/2", "--no-progress", "-c", "1"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    journal = tmp_path / "s.shard-0-of-2"
    end = time.monotonic() + 60
    while b'"type":"part"' not in (journal.read_bytes() if journal.exists() else b""):
        assert time.monotonic() < end and running.poll() is None
        time.sleep(0.01)
    early = cli(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert early.returncode == 3, early.stderr
    assert "s.shard-0-of-2 is in use: that shard is still running" in early.stderr
    held.release()
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 0, stderr
    done = cli(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_shard_processes_stop_when_their_parent_is_killed(rule_proxy, bucket, make_file,
                                                          tmp_path):  # fmt: skip
    file, state = make_file(40 * MiB, seed=143), tmp_path / "s"

    def shards_running() -> int:
        found = subprocess.run(["pgrep", "-f", f"upload shard --state-file {state}"],
                               capture_output=True, text=True)  # fmt: skip
        return len(found.stdout.split())

    env, proxy = rule_proxy  # recorded: every run goes through it
    held = proxy.hold_parts_but(1)  # shard 0 sends part 1; every other part waits in flight
    parent = subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "start", str(file), f"s3://{bucket}/k",
         "--state-file", str(state), "--part-size", "5MiB", "--processes", "2", "-c", "1",
         "--no-progress"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    journal = tmp_path / "s.shard-0-of-2"
    end = time.monotonic() + 60
    while b'"type":"part"' not in (journal.read_bytes() if journal.exists() else b""):
        assert time.monotonic() < end and parent.poll() is None
        time.sleep(0.01)
    assert shards_running() == 2
    parent.kill()
    parent.wait()
    held.release()  # held, a part sent whole would have the stop wait 10 s for its answer
    end = time.monotonic() + 20
    while shards_running() and time.monotonic() < end:
        time.sleep(0.1)
    assert shards_running() == 0  # not uploading on, orphaned
    done = cli(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_a_stale_shard_journal_of_an_earlier_upload_is_replaced(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    state = tmp_path / "s"
    first = make_file(12 * MiB, seed=144)
    create(s3_env, bucket, first, state, 2)
    for index in range(2):
        assert cli(s3_env, "upload", "shard", "--state-file", state, "--shard", f"{index}/2",
                   ).returncode == 0  # fmt: skip
    assert cli(s3_env, "upload", "resume", "--state-file", state).returncode == 0
    state.unlink()  # the shard journals stay behind
    second = make_file(12 * MiB, seed=145)
    second.replace(first)
    create(s3_env, bucket, first, state, 2)
    shard = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2")
    assert shard.returncode == 0, shard.stderr
    assert "belongs to another upload: replaced" in shard.stderr
    done = cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_done(s3_client, bucket, first)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_processes_on_one_machine(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(40 * MiB, seed=141)
    result = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                 tmp_path / "s", "--part-size", "5MiB", "--processes", "2",
                 "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_done(s3_client, bucket, file)
    header = json.loads((tmp_path / "s").read_bytes().splitlines()[0])
    assert header["shards"] == 2


@pytest.mark.process
def test_shard_bad_input(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(30 * MiB, seed=142)
    state = tmp_path / "s"
    create(s3_env, bucket, file, state, 3)
    out_of_range = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "3/3")
    assert out_of_range.returncode == 2 and "shard 3 is not one of 0..2" in out_of_range.stderr
    other_count = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/4")
    assert other_count.returncode == 2 and "split into 3 shards, not 4" in other_count.stderr
    for result in (out_of_range, other_count):
        assert "Traceback" not in result.stderr
    first = subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "shard", "--state-file", str(state),
         "--shard", "0/3", "--no-progress", "--max-bandwidth", "5MiB/s"],
        env={**os.environ, **s3_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    journal = Path(f"{state}.shard-0-of-3")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (journal.exists() and journal.stat().st_size):
        time.sleep(0.02)
    twin = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/3")
    assert twin.returncode == 3, twin.stderr  # another process holds it: try later
    assert "in use by another persevere process" in twin.stderr
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)


@pytest.mark.slow  # (over 3 s in make test: make test-all runs it)
def test_a_lost_shard_journal_is_rebuilt_from_s3(s3_env, bucket, s3_client, make_file,
                                                 tmp_path):  # fmt: skip
    file = make_file(30 * MiB, seed=143)
    state = tmp_path / "s"
    create(s3_env, bucket, file, state, 2)
    for index in range(2):
        done = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", f"{index}/2",
                   "--no-progress")  # fmt: skip
        assert done.returncode == 0, done.stderr
    Path(f"{state}.shard-0-of-2").unlink()  # lost
    Path(f"{state}.shard-1-of-2").write_bytes(b"\x00garbage\n")  # corrupt
    result = cli(s3_env, "-v", "upload", "resume", "--state-file", state, "--no-progress",
                 "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bytes_sent"] == 0  # every part adopted from S3
    assert "found on S3 and matches the file, adopted" in result.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.timeout(300)
def test_dask_tasks(s3_env, bucket, s3_client, make_file, tmp_path):
    """The example of examples/dask/shards.py, on a local cluster of worker processes."""
    file = make_file(40 * MiB, seed=144)
    example = Path(__file__).parent.parent / "examples" / "dask" / "shards.py"
    result = subprocess.run(
        [sys.executable, str(example), str(file), f"s3://{bucket}/k", str(tmp_path / "s"),
         "--shards", "4"],
        env={**os.environ, **s3_env}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "UploadResult(" in result.stdout
    assert_done(s3_client, bucket, file)
    assert len(list(tmp_path.glob("s.shard-*-of-4"))) == 4


def test_the_api(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(12 * MiB, seed=145)
    state = tmp_path / "s"
    persevere.create_upload_sync(file, bucket, "k", state, shards=2, part_size=5 * MiB)
    results = [persevere.upload_shard_sync(state, i, 2) for i in range(2)]
    assert [list(r.parts) for r in results] == [[1, 2], [3]]
    assert sum(r.bytes_sent for r in results) == 12 * MiB
    completed = persevere.resume_sync(state)  # (async: persevere.complete, the same function)
    assert completed.bytes_sent == 0
    assert_done(s3_client, bucket, file)


def _shard_that_dies_once(state_file: str, index: int, shards: int, marks: str) -> object:
    """A Dask task: the first time it runs, its worker process dies 0.3-0.9 s into the shard
    (as a preempted node would); Dask then runs it again elsewhere."""
    import threading

    mark = Path(marks) / f"died-{index}"
    if not mark.exists():
        mark.touch()
        delay = random.Random(index).uniform(0.3, 0.9)
        threading.Timer(delay, lambda: os._exit(137)).start()
    return persevere.upload_shard_sync(state_file, index, shards)


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.timeout(300)
def test_dask_tasks_whose_workers_die(s3_env, bucket, s3_client, make_file, tmp_path):
    from dask.distributed import Client, LocalCluster

    file = make_file(60 * MiB, seed=146)
    state = str(tmp_path / "s")
    marks = tmp_path / "marks"
    marks.mkdir()
    persevere.create_upload_sync(file, bucket, "k", state, shards=3, part_size=5 * MiB)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:  # fmt: skip
        client.run(lambda env=dict(s3_env): os.environ.update(env))
        futures = [
            client.submit(_shard_that_dies_once, state, i, 3, str(marks), pure=False, retries=3)
            for i in range(3)
        ]
        results = client.gather(futures, errors="skip")
    assert len(list(marks.iterdir())) == 3  # every shard's worker died once
    assert len(results) >= 1
    completed = persevere.resume_sync(state)
    assert completed.size == 60 * MiB
    assert_done(s3_client, bucket, file)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_resume_processes_takes_the_overrides_to_its_shards(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path
):
    """The upload was created through an address that is gone; resume --processes with
    --endpoint-url must give it to the shards and to the completion."""
    from tests.faultproxy import FaultProxy
    from tests.test_faults import upstream

    file = make_file(30 * MiB, seed=147)
    state = tmp_path / "s"
    with FaultProxy(upstream(s3_server)) as proxy:
        made = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                   "--part-size", "5MiB", "--shards", "2", "--endpoint-url", proxy.url)  # fmt: skip
        assert made.returncode == 0, made.stderr
    result = cli(s3_env, "upload", "resume", "--state-file", state, "--processes", "2",
                 "--no-progress", "--endpoint-url", s3_server.endpoint_url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.process
def test_processes_for_a_file_of_fewer_parts(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(2 * MiB + 1, seed=146)  # one part
    done = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
               tmp_path / "s", "--processes", "4", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_resume_processes_for_an_upload_of_fewer_parts(s3_env, s3_server, bucket, s3_client,
                                                       make_file, tmp_path):  # fmt: skip
    """An upload not made for shards: resume --processes runs no more shard processes than it
    has parts, as start does (it ran the empty ones too)."""
    from tests.test_faults import upstream

    file, state = make_file(12 * MiB, seed=151), tmp_path / "s"  # 3 parts
    refused = Rule("PUT", "partNumber", refuse=(500, "InternalError"))
    with RuleProxy(upstream(s3_server), [refused]) as proxy:
        begun = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                    "--part-size", "5MiB", "--max-retries", "0", "--no-progress",
                    "--endpoint-url", proxy.url)  # fmt: skip
        assert begun.returncode == 3, begun.stderr
    done = cli(s3_env, "upload", "resume", "--state-file", state, "--processes", "8",
               "--no-progress", "--endpoint-url", s3_server.endpoint_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    shard_journals = sorted(path.name for path in tmp_path.glob("s.shard-*"))
    assert shard_journals == [f"s.shard-{i}-of-3" for i in range(3)]
    assert_done(s3_client, bucket, file)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_resume_processes_keeps_the_recorded_shard_count(s3_env, bucket, s3_client, make_file,
                                                         tmp_path):  # fmt: skip
    file, state = make_file(20 * MiB, seed=147), tmp_path / "s"
    create(s3_env, bucket, file, state, 2)
    done = cli(s3_env, "upload", "resume", "--state-file", state, "--processes", "3",
               "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "split into 2 shards: 2 processes" in done.stderr and "not 3" not in done.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_resume_processes_of_a_finished_upload_or_a_stream_starts_no_shard(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """resume --processes N of a completed upload started N shard processes, each saying
    "nothing left for shard i/N", before it said "already completed"; of an aborted one, N
    errors and "shard exit codes [1, 1]: completing sends what they left", of which nothing
    was; of a stream (which start --processes refuses), N errors and then a plain resume.
    (A shard process here would fail this test: it is not marked ``process``.)"""
    import anyio

    from tests.conftest import start_stream

    file, done_state, aborted_state = make_file(10 * MiB, seed=149), tmp_path / "d", tmp_path / "a"
    made = cli(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", done_state,
               "--part-size", "5MiB", "--no-progress")  # fmt: skip
    assert made.returncode == 0, made.stderr
    create(s3_env, bucket, file, aborted_state, 2)
    assert cli(s3_env, "upload", "abort", "--state-file", aborted_state).returncode == 0
    resume = ["upload", "resume", "--processes", "2", "--no-progress", "--state-file"]
    done = cli(s3_env, *resume, done_state)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"already completed s3://{bucket}/k: 10.0 MiB in 2 part(s)")
    assert done.stderr == ""
    aborted = cli(s3_env, *resume, aborted_state)
    assert aborted.returncode == 1, aborted.stderr
    assert aborted.stderr.splitlines()[0] == (
        f"persevere: error: the upload in {aborted_state} was aborted: there is nothing to resume"
    )
    assert "shard" not in aborted.stderr
    stream_state = tmp_path / "st"
    with file.open("rb") as source, pytest.raises(persevere.SourceChanged):  # cut short
        anyio.run(lambda: start_stream(bucket, "st", stream_state, source.fileno(),
                                       expected_size=20 * MiB))  # fmt: skip
    stream = cli(s3_env, *resume, stream_state)
    assert stream.returncode == 2, stream.stderr
    assert stream.stderr.endswith("Error: Invalid value for --processes: a stream cannot be "
                                  "split into shards: it is read once, in order\n")  # fmt: skip
    assert "shard exit codes" not in stream.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


def test_a_completed_sharded_upload_of_a_touched_file_is_still_done(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """The parts of an upload made by shards are in the shards' journals: once the file was
    touched (same bytes, a new mtime), resume re-read it against the main journal's parts,
    of which there are none, and said it "changed since it was uploaded" (exit 1); cp
    uploaded it all again."""
    file, state = make_file(10 * MiB, seed=153), tmp_path / "s"
    create(s3_env, bucket, file, state, 2)
    for shard in ("0/2", "1/2"):
        ran = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", shard)
        assert ran.returncode == 0, ran.stderr
    assert cli(s3_env, "upload", "resume", "--state-file", state).returncode == 0
    os.utime(file, ns=(1, 1))  # touched: its identity differs, its bytes do not
    resumed = cli(s3_env, "upload", "resume", "--state-file", state, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["already_completed"] is True
    assert "changed since it was uploaded; re-reading it" in resumed.stderr
    os.utime(file, ns=(2, 2))
    copied = cli(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", state, "--json")
    assert copied.returncode == 0, copied.stderr
    assert json.loads(copied.stdout)["bytes_sent"] == 0
    assert_done(s3_client, bucket, file)


def recorded_parts(state: Path) -> dict[int, str]:
    """Every part the state file and its shard journals record (number -> ETag), each journal
    read back whole: a torn line or an unreadable journal fails the test."""
    from persevere._journal import read_state

    parts: dict[int, str] = {}
    for journal in [state, *sorted(state.parent.glob(f"{state.name}.shard-*"))]:
        replayed = read_state(journal)
        assert not replayed.torn_tail and not replayed.damaged_lines, journal
        parts.update({n: p.etag for n, p in replayed.parts.items()})
    return parts


def parts_on_s3(s3_client, bucket: str, state: Path) -> dict[int, str]:
    upload_id = json.loads(state.read_bytes().splitlines()[0])["upload_id"]
    listed = s3_client.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    return {p["PartNumber"]: p["ETag"] for p in listed.get("Parts", [])}


def proc_status(pid: int) -> str:
    """/proc/PID/status; empty once the process is gone (reaped)."""
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return ""


def has_signal(pid: int, sig: int, *masks: str) -> bool:
    """Is ``sig`` in one of the signal masks ``masks`` ("SigPnd:", ...) of process ``pid``?"""
    return any(int(line.split()[1], 16) & (1 << (sig - 1))
               for line in proc_status(pid).splitlines() if line.startswith(masks))  # fmt: skip


def pending(pid: int, sig: int) -> bool:
    """Is ``sig`` sent to process ``pid`` and not yet delivered (its handler not yet run)?"""
    return has_signal(pid, sig, "SigPnd:", "ShdPnd:")


def ignores(pid: int, sig: int) -> bool:
    """Does ``pid`` ignore ``sig``? persevere does once its stop is over (_run's end): a stop
    signal sent to it then is discarded, never pending."""
    return has_signal(pid, sig, "SigIgn:")


def stopped(pid: int) -> bool:
    return "\nState:\tT" in proc_status(pid)


def ended(pid: int) -> bool:
    status = proc_status(pid)
    return not status or "\nState:\tZ" in status or "\nState:\tX" in status


def wait_until(condition, proc, deadline_s=60.0):
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end
        if proc.poll() is not None:  # ended: what it said may still be on its way to the
            time.sleep(1.0)  # reader thread (a loaded machine): the condition, once more
            assert condition()
            return
        time.sleep(0.001)


@pytest.mark.parametrize(
    ("whom", "sig"),
    [
        pytest.param("group", signal.SIGINT, id="ctrl-c"),
        pytest.param("shards first", signal.SIGINT, id="ctrl-c-reaching-the-shards-first",
                     marks=pytest.mark.skipif(not sys.platform.startswith("linux"),
                                              reason="reads /proc")),
        pytest.param("parent", signal.SIGTERM, id="kill-parent"),
    ],
)  # fmt: skip
@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_one_stop_signal_is_one_orderly_stop_of_every_shard(
    rule_proxy, bucket, s3_client, make_file, tmp_path, whom, sig
):
    """Ctrl-C reaches the terminal's whole process group (the parent and its shards), and the
    parent passes the stop on too: still one stop each, and every shard settles its journal.
    Which process runs its handler first is the scheduler's choice: "shards first" makes the
    parent's forwarding come after the shards took the terminal's signal (the parent stopped
    meanwhile; each shard stopped once its handler ran, until the forwarded signal waits for
    it; on a loaded machine a shard's whole stop may be over first, and the forwarded signal
    finds it ignoring the stop signals). A supervisor's SIGTERM to the parent alone is passed
    on once."""
    file, state = make_file(40 * MiB, seed=148), tmp_path / "s"
    env, proxy = rule_proxy  # recorded: every run goes through it
    waiting = proxy.hold_parts_but(1, 5)  # each shard's first part (1-4, 5-8); others wait
    parent = subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "start", str(file), f"s3://{bucket}/k",
         "--state-file", str(state), "--part-size", "5MiB", "--processes", "2", "-c", "2",
         "--no-progress"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # its own process group, as a terminal's job
    )  # fmt: skip
    lines: list[str] = []  # the parent's and the shards' stderr (they share it)
    reader = threading.Thread(target=lambda: lines.extend(parent.stderr), daemon=True)
    reader.start()
    journals = [tmp_path / f"s.shard-{i}-of-2" for i in range(2)]
    try:
        wait_until(lambda: all(b'"type":"part"' in (j.read_bytes() if j.exists() else b"")
                               for j in journals), parent)  # fmt: skip
        stop(parent, whom, sig)
        # The held parts go on once each shard says it is stopping: an orderly stop waits
        # 10 s for the answer to a part whose body is all sent, and a held one may be.
        wait_until(lambda: "".join(lines).count("received: stopping") >= 2, parent)
        waiting.release()
        parent.wait(timeout=60)
    finally:
        waiting.release()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # what is left of them, after a failure
    reader.join(timeout=10)
    parent.stderr.close()
    stderr = "".join(lines)
    name = signal.Signals(sig).name
    assert parent.returncode == 130, stderr
    assert "again: exiting now" not in stderr
    assert stderr.count(f"{name} received: stopping") == 2  # each shard, once
    assert "the shards settled their journals" in stderr
    # Said once, by the parent (each shard said it too, and printed the resume command).
    assert stderr.count("persevere: error:") == 1, stderr
    assert stderr.count("persevere upload resume --state-file") == 1, stderr
    assert "Traceback" not in stderr
    recorded, held = recorded_parts(state), parts_on_s3(s3_client, bucket, state)
    assert recorded and all(held[n] == etag for n, etag in recorded.items())
    done = cli(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_ctrl_c_as_the_shards_start_is_an_orderly_stop(s3_env, bucket, s3_client, make_file,
                                                         tmp_path):  # fmt: skip
    """A Ctrl-C while the shard processes were still starting (Python importing, half a
    second or so) was a KeyboardInterrupt traceback in each of them, under the parent's
    "the shards settled their journals"."""
    file, state = make_file(10 * MiB, seed=152), tmp_path / "s"
    parent = subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "start", str(file), f"s3://{bucket}/k",
         "--state-file", str(state), "--part-size", "5MiB", "--processes", "2",
         "--no-progress"],
        env={**os.environ, **s3_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # its own process group, as a terminal's job
    )  # fmt: skip

    def shards_started() -> bool:
        found = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True)
        return len(found.stdout.split()) == 2

    try:
        wait_until(shards_started, parent)
        os.killpg(parent.pid, signal.SIGINT)  # the terminal's Ctrl-C
        _, stderr = parent.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # what is left of them, after a failure
    assert parent.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.count("persevere upload resume --state-file") == 1, stderr
    done = cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_done(s3_client, bucket, file)


def stop(parent: subprocess.Popen, whom: str, sig: int) -> None:
    if whom == "group":
        os.killpg(parent.pid, sig)
    elif whom == "parent":
        parent.send_signal(sig)
    else:
        found = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True)
        shards = [int(pid) for pid in found.stdout.split()]
        assert len(shards) == 2
        os.kill(parent.pid, signal.SIGSTOP)
        wait_until(lambda: stopped(parent.pid), parent)
        os.killpg(parent.pid, sig)
        waiting, end = set(shards), time.monotonic() + 60
        while waiting:  # each shard stopped as soon as its handler has taken the signal
            assert time.monotonic() < end
            for pid in list(waiting):
                if not pending(pid, sig):
                    os.kill(pid, signal.SIGSTOP)
                    waiting.discard(pid)
        for pid in shards:
            wait_until(lambda pid=pid: stopped(pid) or ended(pid), parent)
        os.kill(parent.pid, signal.SIGCONT)  # it passes the same Ctrl-C on
        # Pending in each shard, unless that shard's stop was over before this test could
        # stop it (a loaded machine): it then ignores the stop signals, and the one passed on
        # is discarded, never pending; then the forwarding comes after its whole stop.
        wait_until(lambda: all(pending(pid, sig) or ignores(pid, sig) or ended(pid)
                               for pid in shards), parent)  # fmt: skip
        for pid in shards:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


# A non-default value of every flag of `upload resume` that its shard processes take: a flag
# added to resume must be put here (a shard takes it) or in PARENT_ONLY.
SHARD_FLAG_SAMPLES = {
    "concurrency": ["--concurrency", "3"],
    "max_bandwidth": ["--max-bandwidth", "6MiB/s"],
    "max_retries": ["--max-retries", "2"],
    "retry_for": ["--retry-for", "90m"],
    "stall_timeout": ["--stall-timeout", "7"],
    "verify_parts": ["--verify-parts"],
    "file": ["--file", "/elsewhere/data.bin"],
    "endpoint_url": ["--endpoint-url", "http://127.0.0.1:9"],
    "profile": ["--profile", "other"],
    "ca_bundle": ["--ca-bundle", "CA"],  # a file made by the test
    "no_verify_ssl": ["--no-verify-ssl"],  # (not with --ca-bundle: a run of its own)
}
PARENT_ONLY = {"state_file", "processes", "no_progress", "json_output"}


def test_every_flag_of_resume_reaches_each_shard_process(tmp_path, monkeypatch):
    """resume --processes gives its flags to N shard processes as one value each (a
    ShardRequest on their standard input): each flag the user gave must reach each of them with
    its value (the bandwidth cap shared among them), the ones added later too. Compared with
    the values the same flags give a shard of its own (``upload shard``) and resume itself."""
    from typer.main import get_command
    from typer.testing import CliRunner

    from persevere import _cli, _errors, _processes
    from persevere._cli_flags import OverrideFlags, ResumeTransferFlags, TransferFlags
    from persevere._journal import Header, Journal

    upload = get_command(_cli.app).commands["upload"]
    resume, shard = upload.commands["resume"], upload.commands["shard"]  # type: ignore[attr-defined]
    assert {p.name for p in resume.params} == set(SHARD_FLAG_SAMPLES) | PARENT_ONLY
    state, ca = tmp_path / "s", tmp_path / "ca.pem"
    ca.write_text("not read here\n")
    journal = Journal.create(state)
    journal.write_header(Header(
        bucket="b", key="k", upload_id="u", endpoint_url=None, region=None, profile=None,
        file_path=str(tmp_path / "f"), file_size=20 * MiB, mtime_ns=0, part_size=5 * MiB,
        checksum_algorithm="CRC64NVME", checksum_type="FULL_OBJECT", created_at="now",
        tool_version="0", shards=2,
    ))  # fmt: skip
    journal.close()
    given: list[list[_processes.ShardRequest]] = []

    def run_children(requests, watch=None):
        given.append(requests)
        raise _errors.ResumableError("the shards are not run here")

    monkeypatch.setattr(_processes, "run_children", run_children)

    def fields(params, group):
        return group(**{f.name: params[f.name] for f in dataclasses.fields(group) if f.init})

    def knobs(options):  # the options' values (a retry policy's random source aside)
        retry = {f.name: getattr(options.retry, f.name) for f in dataclasses.fields(options.retry)
                 if f.name != "rng"}  # fmt: skip
        return {**{f.name: getattr(options, f.name) for f in dataclasses.fields(options)},
                "retry": retry}  # fmt: skip

    for left_out in (["no_verify_ssl"], ["ca_bundle", "retry_for"]):  # (--max-retries counts)
        samples = {n: a for n, a in SHARD_FLAG_SAMPLES.items() if n not in left_out}
        args = [x.replace("CA", str(ca)) for a in samples.values() for x in a]
        head = ["--state-file", str(state)]
        ran = CliRunner().invoke(_cli.app, ["upload", "resume", *head, "--processes", "2", *args])
        assert ran.exit_code == 3 and given, ran.output
        expected = resume.make_context("resume", [*head, *args]).params
        alone = shard.make_context("shard", [*head, "--shard", "0/2", *args]).params
        assert [(r.shard, r.shards) for r in given[-1]] == [(0, 2), (1, 2)]
        jitter = [r.request.transfer.retry.rng.getstate() for r in given[-1]]
        assert jitter[0] != jitter[1]  # each its own: shards never retry in step
        for sent in given[-1]:  # each a Request, with the shard it is for
            request = sent.request
            assert request.state_file == state
            options = fields(expected, ResumeTransferFlags).options()
            assert knobs(options) == knobs(fields(alone, TransferFlags).options())
            options.max_bandwidth_bytes_s //= 2  # each its share
            assert knobs(request.transfer) == knobs(options)
            assert request.endpoint == fields(expected, OverrideFlags).endpoint()
            assert request.verify_parts and str(request.file()) == expected["file"]
            for name in samples:  # each flag's value is in the request (a flag added later too)
                want = expected[name] // 2 if name == "max_bandwidth" else expected[name]
                if name == "max_retries" and "retry_for" in samples:
                    continue  # --retry-for decides
                assert (
                    want
                    == {
                        "concurrency": request.transfer.concurrency,
                        "max_bandwidth": request.transfer.max_bandwidth_bytes_s,
                        "max_retries": (request.transfer.retry.max_attempts or 0) - 1,
                        "retry_for": request.transfer.retry.patience_s,
                        "stall_timeout": request.transfer.stall_timeout_s,
                        "verify_parts": request.verify_parts,
                        "file": str(request.file()),
                        "endpoint_url": request.endpoint.endpoint_url,
                        "profile": request.endpoint.profile,
                        "ca_bundle": request.endpoint.ca_bundle,
                        "no_verify_ssl": not request.endpoint.verify_ssl,
                    }[name]
                ), name


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_processes_log_as_their_parent_is_told(s3_env, bucket, s3_client, make_file, tmp_path):
    """--log-format json and -q reach the shard processes: with JSON lines every line on
    stderr (the shards' too) is one JSON object; with -q the shards say no warning either."""
    file, state = make_file(20 * MiB, seed=151), tmp_path / "s"
    create(s3_env, bucket, file, state, 2)
    first = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2")
    assert first.returncode == 0, first.stderr
    done = cli(s3_env, "--log-format", "json", "upload", "resume", "--state-file", state,
               "--processes", "2", "--verify-parts", "--no-progress", process=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]  # each line JSON
    assert any(e["event"] == "reread" for e in events), events  # shard 0's, re-reading
    assert_done(s3_client, bucket, file)
    again = make_file(20 * MiB, seed=152)
    made = cli(s3_env, "upload", "start", again, f"s3://{bucket}/k", "--state-file",
               tmp_path / "t", "--part-size", "5MiB", "--shards", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    for index in range(2):  # a warning in each shard: its journal is left by another upload
        (tmp_path / f"t.shard-{index}-of-2").write_bytes(state.read_bytes().splitlines()[0] + b"\n")
    quiet = cli(s3_env, "-q", "upload", "resume", "--state-file", tmp_path / "t", "--processes",
                "2", "--no-progress", process=True)  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert_done(s3_client, bucket, again)


@dataclasses.dataclass(frozen=True)
class RefusedAtFirst(Rule):
    """An outage, as each part meets it: its first ``times`` attempts are answered 500."""

    times: int = 4
    seen: Counter = dataclasses.field(default_factory=Counter)  # attempts, by part number
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def matches(self, method: bytes, target: bytes) -> bool:
        if not super().matches(method, target):
            return False
        number = dict(parse_qsl(urlsplit(target.decode()).query))["partNumber"]
        with self.lock:
            self.seen[number] += 1
            return self.seen[number] <= self.times


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_processes_give_each_shard_the_retry_flags(s3_env, s3_server, bucket, s3_client,
                                                   make_file, tmp_path):  # fmt: skip
    """Each part fails 4 times before S3 takes it: --max-retries 1 (2 attempts) gives up in
    every shard process (and in the completion), --retry-for outlasts it; and the summary
    counts what the shards sent, in the time the whole upload took."""
    from tests.test_faults import upstream

    file, state = make_file(20 * MiB, seed=149), tmp_path / "s"
    rule = RefusedAtFirst("PUT", "partNumber", refuse=(500, "InternalError"))
    with RuleProxy(upstream(s3_server), [rule]) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        given_up = cli(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                       "--part-size", "5MiB", "--processes", "2", "--max-retries", "1",
                       "--no-progress")  # fmt: skip
        assert given_up.returncode == 3, given_up.stderr
        assert "(attempt 2 of 2)" in given_up.stderr and " of 10)" not in given_up.stderr
        assert max(rule.seen.values()) <= 4  # 2 in a shard, 2 in the completion
        rule.seen.clear()  # the outage again, from the start
        began = time.monotonic()
        done = cli(env, "upload", "resume", "--state-file", state, "--processes", "2",
                   "--max-retries", "1", "--retry-for", "1m", "--no-progress",
                   "--json")  # fmt: skip
        took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert min(rule.seen.values()) == 5  # every part outlasted the outage
    assert_done(s3_client, bucket, file)
    summary = json.loads(done.stdout)
    assert summary["bytes_sent"] == 20 * MiB  # by the shards
    assert took / 2 < summary["elapsed_s"] <= took


@pytest.mark.process
@pytest.mark.parametrize("talk", [["--log-format", "json"], ["-q"]])
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_processes_give_each_shard_the_way_to_talk(s3_env, s3_server, bucket, s3_client,
                                                   make_file, tmp_path, talk):  # fmt: skip
    """The global flags did not reach the shard processes, which share the parent's stderr:
    under --log-format json their warnings (a retry, a stop) were plain lines in the
    collector's stream of JSON lines; under -q ("only errors on stderr") they were printed."""
    from tests.test_faults import upstream

    file, state = make_file(20 * MiB, seed=151), tmp_path / "s"
    rule = RefusedAtFirst("PUT", "partNumber", refuse=(500, "InternalError"), times=1)
    with RuleProxy(upstream(s3_server), [rule]) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        done = cli(env, *talk, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                   state, "--part-size", "5MiB", "--processes", "2", "--no-progress",
                   process=True)  # the shards' stderr too  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(rule.seen.values()) == [2, 2, 2, 2]  # each part retried once, in its shard
    if talk == ["-q"]:
        assert done.stderr == ""
    else:
        events = [json.loads(line) for line in done.stderr.splitlines()]  # every line
        assert [e["event"] for e in events].count("retry") == 4, done.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_resume_processes_verify_parts_rereads_in_the_shards(s3_env, bucket, s3_client,
                                                              make_file, tmp_path):  # fmt: skip
    file, state = make_file(20 * MiB, seed=150), tmp_path / "s"
    create(s3_env, bucket, file, state, 2)
    first = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2")
    assert first.returncode == 0, first.stderr
    done = cli(s3_env, "upload", "resume", "--state-file", state, "--processes", "2",
               "--verify-parts", "--no-progress", process=True)  # the shards' stderr  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "as asked; re-reading the 2 part(s) already uploaded" in done.stderr  # shard 0's
    assert_done(s3_client, bucket, file)


def test_a_shard_journal_whose_part_does_not_fit_the_plan_is_refused(s3_env, bucket, make_file,
                                                                     tmp_path):  # fmt: skip
    """Difference S: a shard's journal is checked like the main one: a part that does not fit
    the plan (a corrupt line that still parses) is refused when the shard runs again, not
    only at completion."""
    file, state = make_file(20 * MiB, seed=142), tmp_path / "s"
    create(s3_env, bucket, file, state, 2)
    assert cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2").returncode == 0
    journal = state.with_name(f"{state.name}.shard-0-of-2")
    records = [json.loads(line) for line in journal.read_bytes().splitlines()]
    bad = next(r for r in records if r.get("type") == "part")
    bad["size"] = 1234
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    again = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2")
    assert again.returncode == 1, again.stderr
    assert f"part {bad['part_number']} (size 1234) does not fit the upload's plan" in again.stderr
    assert "corrupt state file" in again.stderr


def _stale_copy(file, tmp_path, part):
    """A copy of ``file`` of the same size whose part ``part`` (of 5 MiB) differs."""
    stale = tmp_path / "stale.bin"
    data = bytearray(file.read_bytes())
    data[(part - 1) * 5 * MiB + 7] ^= 0xFF
    stale.write_bytes(data)
    return stale


def _shard_zero_from(env, state, read):
    """Shard 0/2 run with ``--file read`` (its journal records it), shard 1/2 on the file,
    then the completion: its result."""
    shard = cli(env, "upload", "shard", "--state-file", state, "--shard", "0/2", "--file", read)
    assert shard.returncode == 0, shard.stderr
    assert [s["file_path"] for s in _sources(Path(f"{state}.shard-0-of-2"))] == [str(read)]
    assert cli(env, "upload", "shard", "--state-file", state, "--shard", "1/2").returncode == 0
    done = cli(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr
    return done


def _sources(journal):
    return [r for r in map(json.loads, journal.read_bytes().splitlines()) if r["type"] == "source"]


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_the_parts_of_a_shard_that_read_another_file_are_all_reread(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """Audit 8, finding 1: a shard given `--file` (a copy) records the identity of the file it
    read, so completion re-reads every part it sent (a spot check may miss the one that
    differs) and sends again those the file does not give; a shard that read the file itself
    gets only its spot check."""
    file, state = make_file(30 * MiB, seed=151), tmp_path / "s"
    stale = _stale_copy(file, tmp_path, 2)
    create(s3_env, bucket, file, state, 2)
    done = _shard_zero_from(s3_env, state, stale)
    assert _sources(Path(f"{state}.shard-1-of-2")) == []  # the file itself: nothing to say
    assert f"the parts of s.shard-0-of-2 were read from {stale}, whose " in done.stderr
    # (the upload's own spot check samples every recorded part, the shards' too: when it
    # draws part 2 it re-reads them all first, and the shard's re-read finds 2 parts left)
    assert re.search(r"differ from this file's; re-reading the [23] part\(s\)", done.stderr)
    assert "changed in the file since they were uploaded (first: part 2)" in done.stderr
    assert "s.shard-1-of-2 were read" not in done.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_a_shard_run_again_on_the_file_rereads_what_it_read_from_a_copy(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """The other way round: a shard that read a copy, run again on the file (the mount
    fixed), re-reads its parts against it and sends again the one that differs; it then
    records the file's identity, and completion trusts a spot check of its parts."""
    file, state = make_file(30 * MiB, seed=152), tmp_path / "s"
    stale = _stale_copy(file, tmp_path, 3)
    create(s3_env, bucket, file, state, 2)
    shard = ("upload", "shard", "--state-file", state, "--shard", "0/2")
    assert cli(s3_env, *shard, "--file", stale).returncode == 0
    again = cli(s3_env, *shard)
    assert again.returncode == 0, again.stderr
    assert "first: part 3" in again.stderr
    assert [s["file_path"] for s in _sources(Path(f"{state}.shard-0-of-2"))] == [
        str(stale),
        str(file),
    ]
    assert cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "1/2").returncode == 0
    done = cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "were read from" not in done.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.process
def test_a_shards_journal_is_never_taken_for_the_upload_s_state_file(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """Audit 8, finding 5: status, abort, a shard, `resume --processes` and `cp` given a shard's
    own journal for the state file are refused (exit 2), naming the upload's; nothing changes."""
    file, state = make_file(12 * MiB, seed=153), tmp_path / "s"
    create(s3_env, bucket, file, state, 2)
    assert cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2").returncode == 0
    journal = Path(f"{state}.shard-0-of-2")
    before = journal.read_bytes(), state.read_bytes()
    given = ("--state-file", journal)
    for args in [
        ("upload", "status", *given),
        ("upload", "abort", *given),
        ("upload", "shard", *given, "--shard", "1/2"),
        ("upload", "resume", *given, "--processes", "2", "--no-progress"),
        ("upload", "resume", *given, "--json"),
        ("cp", file, f"s3://{bucket}/k", *given, "--no-progress"),
    ]:
        done = cli(s3_env, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert f"is the journal of shard 0/2 of the upload in {state}" in done.stderr, args
        assert f"give the upload's state file, {state}" in done.stderr, args
        assert "Traceback" not in done.stderr
    assert (journal.read_bytes(), state.read_bytes()) == before
    assert not list(tmp_path.glob("s.shard-0-of-2.*"))
    finished = cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert finished.returncode == 0, finished.stderr
    assert_done(s3_client, bucket, file)


@pytest.mark.slow  # (over 3 s in make test: make test-all runs it)
def test_start_with_shards_json_gives_commands_that_run(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """Audit 8, finding 7: `upload start --shards N --json` is one JSON document: the upload,
    its state file (absolute, though given relative) and the commands to run, which run."""
    import shlex

    file = make_file(12 * MiB, seed=154)
    made = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", "s",
               "--shards", "2", "--json", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    document = json.loads(made.stdout)
    state = tmp_path / "s"
    assert document["state_file"] == str(state) and document["shards"] == 2
    assert (document["bucket"], document["key"]) == (bucket, "k")
    assert document["upload_id"] == json.loads(state.read_bytes().splitlines()[0])["upload_id"]
    assert len(document["shard_commands"]) == 2
    for command in [*document["shard_commands"], document["complete_command"]]:
        words = shlex.split(command)
        assert words[0] == "persevere"
        done = cli(s3_env, *words[1:], "--no-progress")
        assert done.returncode == 0, (command, done.stderr)
    assert_done(s3_client, bucket, file)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_a_shard_that_read_the_file_by_another_path_gets_its_spot_check(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """A shard run where the shared file system is mounted elsewhere (`--file` another path
    to the same file; on another host its device number may differ too) read the file
    itself: completion spot-checks its parts, as before, and does not re-read them all."""
    file, state = make_file(30 * MiB, seed=153), tmp_path / "s"
    (tmp_path / "mnt").mkdir()
    elsewhere = tmp_path / "mnt" / file.name
    os.link(file, elsewhere)  # the same inode by another name (before start: its ctime moved)
    create(s3_env, bucket, file, state, 2)
    done = _shard_zero_from(s3_env, state, elsewhere)
    assert "were read from" not in done.stderr and "re-reading" not in done.stderr, done.stderr
    assert_done(s3_client, bucket, file)
