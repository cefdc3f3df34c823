"""What the command says at its edges: -q is errors only, --json is always one document on
stdout (errors included), the state file is named only once it exists, and bench cleans up
after a second Ctrl-C too, or prints the exact command that does."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import interrupt_after_parts, persevere
from tests.proxybase import Hold
from tests.ruleproxy import Rule, RuleProxy

MiB = 1024 * 1024


# -- -q and the state file line -----------------------------------------------------------------
def test_quiet_prints_errors_only(s3_env, bucket, make_file):
    file = make_file(6 * MiB)
    done = persevere(s3_env, "-q", "upload", "start", file, f"s3://{bucket}/k", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # was: "persevere: state file: ..."
    missing = persevere(s3_env, "-q", "verify", file, f"s3://{bucket}/nothing")
    assert missing.returncode == 1
    assert missing.stderr.startswith("persevere: error:")


def test_state_file_is_named_only_once_it_exists(s3_env, bucket, make_file):
    file = make_file(6 * MiB)
    state = file.with_name(file.name + ".persevere")
    refused = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--part-size",
                        "1MiB", "--no-progress")  # fmt: skip
    assert refused.returncode == 2
    assert not state.exists()
    assert "state file" not in refused.stderr, refused.stderr  # none was created
    done = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(f"persevere: state file: {state}\n") == 1, done.stderr


def test_cp_names_the_state_file_only_once_it_exists(s3_env, bucket, s3_client, make_file):
    file = make_file(6 * MiB)
    state = file.with_name(file.name + ".persevere")
    refused = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--part-size", "1MiB")
    assert refused.returncode == 2
    assert not state.exists()
    assert "state file" not in refused.stderr, refused.stderr  # none was created
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"another writer's")
    kept = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--no-overwrite", "--no-progress")
    assert kept.returncode == 1 and "already exists" in kept.stderr, kept.stderr
    assert not state.exists()
    assert "state file" not in kept.stderr, kept.stderr
    for run in ("uploads", "finds it uploaded"):
        done = persevere(s3_env, "cp", file, f"s3://{bucket}/k2", "--no-progress")
        assert done.returncode == 0, (run, done.stderr)
        assert done.stderr.count(f"persevere: state file: {state}\n") == 1, (run, done.stderr)


def test_json_lines_say_the_state_file_and_the_plan_as_info(s3_env, bucket, make_file):
    file = make_file(7 * MiB)
    result = persevere(s3_env, "--log-format", "json", "cp", file, f"s3://{bucket}/k",
                       "--part-size", "6MB", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = {e["event"]: e for e in map(json.loads, result.stderr.splitlines())}
    assert events["state_file"]["level"] == "info"  # was "warning": nothing is wrong
    assert events["plan"]["level"] == "info"
    assert events["plan"]["part_size"] == 6_000_000
    quiet = persevere(s3_env, "-q", "--log-format", "json", "cp", make_file(7 * MiB, seed=1),
                      f"s3://{bucket}/k2", "--part-size", "6MB", "--no-progress")  # fmt: skip
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize(("typo", "meant"), [(["uplod"], "upload"), (["verfy"], "verify"),
                                             (["upload", "strat"], "start")])  # fmt: skip
def test_a_typo_is_answered_once(typo, meant):
    result = persevere({}, *typo)
    assert result.returncode == 2
    assert result.stderr.count("Did you mean") == 1, result.stderr
    assert f"'{meant}'" in result.stderr


def test_verify_help_lists_every_exit_code():
    text = " ".join(persevere({}, "verify", "--help").stdout.split())
    assert "Exit 0: same bytes; 1: the object or its bucket does not exist, or another error " \
           "(access refused, S3 unreachable); 2: bad input; 4: they differ" in text  # fmt: skip


@pytest.mark.parametrize("command", [["cp"], ["upload", "start"]])
def test_help_of_dry_run_and_expected_size_says_what_they_do(command):
    text = " ".join(persevere({}, *command, "--help").stdout.split())
    assert "(a CreateMultipartUpload aborted at once; for an upload cp would resume, its " \
           "ListParts), with no part sent and no state file written; then exit 0, or fail as " \
           "the run would." in text  # fmt: skip
    assert "(up to 7.8 TiB). With a file, it must be the file's size." in text


@pytest.mark.parametrize("command", [["upload", "list"], ["upload", "abort"], ["upload", "status"]])
def test_request_payer_help_of_commands_that_record_nothing(command):
    text = " ".join(persevere({}, *command, "--help").stdout.split())
    assert "--request-payer [requester] 'requester': a requester-pays bucket; this account pays " \
           "for the requests" in text  # fmt: skip
    assert "recorded for resume" not in text


def test_resume_says_it_does_not_remember_the_rate(s3_env):
    shown = persevere(s3_env, "upload", "resume", "--help")
    text = " ".join(shown.stdout.split())
    assert "--max-bandwidth RATE Cap on the upload rate (e.g. 50MB/s). Not remembered from " \
           "start: give it again" in text  # fmt: skip


# -- --json: one document on stdout, whatever happens --------------------------------------------
@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        (["upload", "start", "{file}", "s3://{bucket}/k", "--part-size", "1MiB"], 2),
        (["upload", "start", "{file}", "--s3-bucket", "{bucket}"], 2),
        (["upload", "resume", "--state-file", "{missing}"], 1),
        (["upload", "status", "--state-file", "{missing}"], 1),
        (["upload", "list", "--s3-bucket", "no-such-bucket-{bucket}"], 1),
        (["verify", "{file}", "s3://{bucket}/nothing"], 1),
        (["verify", "{file}", "https://example/x"], 2),
        (["verify", "{missing}", "s3://{bucket}/k"], 2),
        (["bench", "--s3-bucket", "{bucket}", "--size", "lots"], 2),
        (["bench", "--s3-bucket", "{bucket}", "--size", "0"], 2),
    ],
)
def test_json_errors_are_one_document_on_stdout(s3_env, bucket, make_file, tmp_path, args,
                                                exit_code):  # fmt: skip
    values = {"file": make_file(10), "bucket": bucket, "missing": tmp_path / "missing"}
    result = persevere(s3_env, *[arg.format(**values) for arg in args], "--json")
    assert result.returncode == exit_code, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"error", "exit_code", "hint", "next_command"}
    assert document["exit_code"] == exit_code
    assert document["error"] and document["error"] in result.stderr  # stderr says it too


def test_json_usage_errors_the_commands_find_are_one_document_too(
    s3_env, bucket, make_file, tmp_path, monkeypatch
):
    """Bad input a command finds after click has read the line (a prefix for standard input,
    a --shard that is no I/N) was click's text under --json, with nothing on stdout."""
    for name in ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    state = tmp_path / "s"
    made = persevere(s3_env, "upload", "start", make_file(10 * MiB), f"s3://{bucket}/k",
                     "--state-file", state, "--part-size", "5MiB", "--shards", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    shard = ["upload", "shard", "--state-file", state]
    for args, says in [
        (["cp", "-", f"s3://{bucket}/prefix/"], "stdin (-) has no name"),
        ([*shard, "--shard", "x/2"], "--shard: not I/N: 'x/2'"),
        ([*shard, "--shard", "0/0"], "--shard: give the shard count: I/N"),
        (shard, "--shard: give --shard I/N (or run as a Kubernetes Indexed Job"),
    ]:
        result = persevere(s3_env, *args, "--json")
        assert result.returncode == 2, (args, result.stdout + result.stderr)
        document = json.loads(result.stdout)
        assert document["exit_code"] == 2 and says in document["error"], document
        assert document["error"] in result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--size", "lots", "not a size: 'lots'"),
        ("--concurrency", "1,x", "not comma-separated whole numbers from 1 to 256: '1,x'"),
        ("--concurrency", "0", "not comma-separated whole numbers from 1 to 256: '0'"),
        ("--part-size", "8MiB,zz", "not a size: 'zz'"),
    ],
)
def test_bench_names_the_flag_of_a_bad_value(s3_env, bucket, flag, value, says):
    result = persevere(s3_env, "bench", "--s3-bucket", bucket, flag, value)
    assert result.returncode == 2, result.stderr
    assert f"Invalid value for {flag}: {says}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.process
def test_json_interrupted_upload_names_the_resume_command(s3_env, bucket, make_file, tmp_path):
    file, state = make_file(60 * MiB), tmp_path / "s"
    args = ["upload", "start", file, f"s3://{bucket}/k", "--state-file", state, "--part-size",
            "5MiB", "-c", "1", "--json"]  # fmt: skip
    stopped = interrupt_after_parts(s3_env, args, state, 2, sig=signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    document = json.loads(stopped.stdout)
    assert document["exit_code"] == 130
    assert document["next_command"] == f"persevere upload resume --state-file {state}"


# -- bench: cleans up, a second Ctrl-C included ---------------------------------------------------
def _uploads(s3_client, bucket):
    return s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def _interrupted_bench(s3_env, s3_server, s3_client, bucket, signals, release):
    """A bench through a proxy that holds its AbortMultipartUpload, sent ``signals`` SIGINTs:
    the first once its upload exists, the second once the abort is held, the third once the
    bench has said it finishes the cleanup first. ``release``: let the abort through then."""
    held = Hold()
    rule = Rule("DELETE", "uploadId", hold=held)
    with RuleProxy.in_front_of(s3_server.endpoint_url, [rule]) as proxy:
        env = {**os.environ, **s3_env, "AWS_ENDPOINT_URL": proxy.url}
        bench = subprocess.Popen(
            [sys.executable, "-m", "persevere", "bench", "--s3-bucket", bucket, "--size", "4GiB",
             "-c", "1", "--part-size", "5MiB"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not _uploads(s3_client, bucket) and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        bench.send_signal(signal.SIGINT)
        said = []
        if signals >= 2:
            held.wait()  # the cleanup is under way: its abort is held
            bench.send_signal(signal.SIGINT)
            assert bench.stderr is not None
            while line := bench.stderr.readline():
                said.append(line)
                if "again: finishing the cleanup first" in line:
                    break
        if signals >= 3:
            bench.send_signal(signal.SIGINT)
        if release:
            held.release()
        _, stderr = bench.communicate(timeout=60)
        return bench.returncode, "".join(said) + stderr, time.monotonic() - started


@pytest.mark.process
def test_bench_second_ctrl_c_lets_the_cleanup_finish(s3_env, s3_server, s3_client, bucket):
    code, stderr, _ = _interrupted_bench(s3_env, s3_server, s3_client, bucket, 2, True)
    assert code == 130, stderr
    assert "SIGINT again: finishing the cleanup first" in stderr
    assert "persevere: error: interrupted (SIGINT); cleaned up: nothing was left behind" in stderr
    assert "journal" not in stderr and "state file" not in stderr
    assert _uploads(s3_client, bucket) == []


@pytest.mark.process
def test_bench_third_ctrl_c_prints_the_exact_abort_command(s3_env, s3_server, s3_client, bucket):
    code, stderr, seconds = _interrupted_bench(s3_env, s3_server, s3_client, bucket, 3, False)
    assert code == 130, stderr
    assert seconds < 10, stderr  # at once, not after the held abort
    (upload,) = _uploads(s3_client, bucket)
    command = (
        f"persevere upload abort --s3-bucket {bucket} --s3-key {upload['Key']} "
        f"--upload-id {upload['UploadId']}"
    )
    assert "persevere: SIGINT again: exiting now; left behind:" in stderr
    assert command in stderr, stderr
    assert "journal" not in stderr and "state file" not in stderr
    aborted = persevere(s3_env, *shlex.split(command)[1:])  # as the user would paste it
    assert aborted.returncode == 0, aborted.stderr
    assert _uploads(s3_client, bucket) == []


def test_quiet_bench_prints_nothing(s3_env, bucket, s3_client):
    done = persevere(s3_env, "-q", "bench", "--s3-bucket", bucket, "--size", "6MiB", "-c", "1")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "<- fastest" in done.stdout
