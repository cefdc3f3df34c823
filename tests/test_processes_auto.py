"""``--processes auto``: one process per usable core, no more than there is to share out (a
file's parts, the shards an upload was made for, a tree's files); 1 is the usual run in this
process. A test not marked ``process`` fails if a shard process is started (tests/conftest.py):
those prove the in-process run."""

from __future__ import annotations

import json
import os

import pytest

from persevere import _processes
from persevere._processes import auto_processes, usable_cores
from tests.conftest import persevere as cli
from tests.conftest import sha256_of_file, sha256_of_object
from tests.test_shards import assert_done, create
from tests.test_tree import assert_tree_uploaded, clean, write

MiB = 1024 * 1024


@pytest.mark.parametrize("cores", [1, 2, 8])
@pytest.mark.parametrize("parts", [1, 3, 100])
def test_auto_is_one_process_per_core_no_more_than_the_parts(cores, parts):
    assert auto_processes(parts, cores=cores) == min(cores, parts)


def test_auto_is_at_least_one_and_at_most_the_flag_allows():
    assert auto_processes(0, cores=8) == 1  # nothing to split: this process
    assert auto_processes(10_000, cores=256) == 64


def test_usable_cores_are_this_process_s_affinity_else_the_machine_s(monkeypatch):
    assert usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS and Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert usable_cores() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cores() == 1


def _header(state):
    return json.loads(state.read_bytes().splitlines()[0])


def _shard_journals(state):
    return sorted(state.parent.glob(f"{state.name}.shard-*"))


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_auto_splits_a_file_of_many_parts(s3_env, bucket, s3_client, make_file, tmp_path):
    file, state = make_file(12 * MiB, seed=160), tmp_path / "s"  # 3 parts
    done = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--processes", "auto", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_done(s3_client, bucket, file)
    expected = min(usable_cores(), 3)
    assert _header(state).get("shards") == (expected if expected > 1 else None)


def test_auto_of_a_file_of_one_part_runs_here(s3_env, bucket, s3_client, make_file, tmp_path):
    file, state = make_file(2 * MiB + 1, seed=161), tmp_path / "s"
    done = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--processes", "auto", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_done(s3_client, bucket, file)
    assert _header(state).get("shards") is None and _shard_journals(state) == []


def test_auto_on_one_core_runs_here(s3_env, bucket, s3_client, make_file, tmp_path,
                                    monkeypatch):  # fmt: skip
    monkeypatch.setattr(_processes, "usable_cores", lambda: 1)
    file, state = make_file(12 * MiB, seed=162), tmp_path / "s"
    done = cli(s3_env, "-v", "upload", "start", file, f"s3://{bucket}/k", "--state-file",
               state, "--part-size", "5MiB", "--processes", "auto", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--processes auto: 1 process(es), 1 usable core(s)" in done.stderr
    assert_done(s3_client, bucket, file)
    assert _header(state).get("shards") is None and _shard_journals(state) == []
    # resume of an upload made for 2 shards, on one core: the usual resume sends them all
    second, made = make_file(10 * MiB, seed=163), tmp_path / "m"
    create(s3_env, bucket, second, made, 2)
    resumed = cli(s3_env, "upload", "resume", "--state-file", made, "--processes", "auto",
                  "--no-progress")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert_done(s3_client, bucket, second)
    assert _shard_journals(made) == []
    over = cli(s3_env, "upload", "resume", "--state-file", made, "--processes", "auto")
    assert over.returncode == 0 and "already completed" in over.stdout, over.stderr


@pytest.mark.process
def test_auto_of_a_stream_runs_here(s3_env, bucket, s3_client, tmp_path):
    data = os.urandom(3 * MiB)
    state = tmp_path / "s"
    done = cli(s3_env, "upload", "start", "-", f"s3://{bucket}/k", "--state-file", state,
               "--processes", "auto", "--no-progress", input=data)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    assert _header(state).get("shards") is None and _shard_journals(state) == []


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_auto_resume_runs_the_shards_an_upload_was_made_for(s3_env, bucket, s3_client,
                                                            make_file, tmp_path):  # fmt: skip
    file, state = make_file(10 * MiB, seed=164), tmp_path / "s"
    create(s3_env, bucket, file, state, 2)
    done = cli(s3_env, "upload", "resume", "--state-file", state, "--processes", "auto",
               "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_done(s3_client, bucket, file)
    assert "processes" not in done.stderr  # no warning: as many as it was made for, or here
    ran = [p.name for p in _shard_journals(state)]
    assert ran == (["s.shard-0-of-2", "s.shard-1-of-2"] if usable_cores() > 1 else [])


@pytest.mark.parametrize("value", ["0", "-3", "65", "two", "2.5", ""])
@pytest.mark.parametrize("command", ["upload start FILE s3://b/k", "upload resume --state-file S",
                                     "cp DIR s3://b/p/"])  # fmt: skip
def test_a_bad_value_names_auto(tmp_path, command, value):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_bytes(b"x")
    args = [{"FILE": tmp_path / "f", "DIR": tmp_path / "d", "S": tmp_path / "s"}.get(a, a)
            for a in command.split()]  # fmt: skip
    refused = cli({}, *args, "--processes", value)
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.splitlines()[-1]
    assert line.startswith("Error: Invalid value for '--processes': ") and "or 'auto'." in line
    assert ("not a valid integer" in line) == (value in ("two", "2.5", ""))


def test_auto_of_a_tree_of_one_file_runs_here(s3_env, bucket, s3_client, tmp_path):
    files = {"only": write(tmp_path / "t" / "only", 1000, 165)}
    done = clean(cli(s3_env, "cp", tmp_path / "t", f"s3://{bucket}/o/", "--processes", "auto",
                     "--no-progress"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_tree_uploaded(s3_client, bucket, "o/", files)
    both = clean(cli(s3_env, "cp", tmp_path / "t", f"s3://{bucket}/o/", "--processes", "auto",
                     "--shard", "0/2"))  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_auto_splits_a_tree_of_many_files(s3_env, bucket, s3_client, tmp_path):
    files = {f"n/{i}": write(tmp_path / "t" / "n" / str(i), 1000 + i, 170 + i) for i in range(6)}
    done = clean(cli(s3_env, "cp", tmp_path / "t", f"s3://{bucket}/m/", "--processes", "auto",
                     "--json", process=True))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert_tree_uploaded(s3_client, bucket, "m/", files)
    if usable_cores() > 1:  # the shards sent them all
        # (sent by the shards: listed as sent, by_shards says by whom; was skipped, sent [])
        assert report["skipped"] == 0 and sorted(report["sent"]) == sorted(files)
        assert report["by_shards"] == len(files)
    assert sha256_of_object(s3_client, bucket, "m/n/0") == sha256_of_file(files["n/0"])
