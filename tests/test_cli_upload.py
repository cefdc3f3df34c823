"""End-to-end: the ``persevere`` command against the real local SeaweedFS.

Every test runs the CLI as a subprocess (as a user would), downloads the object and compares
its bytes with the file's, and reads the journal back.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import interrupt_after_parts, persevere, sha256_of_file, sha256_of_object

MiB = 1024 * 1024


def start_args(bucket, key, file, state, *extra):
    return [
        "upload", "start", "--s3-bucket", bucket, "--s3-key", key,
        "--file-to-upload", file, "--state-file", state, "--no-progress", *extra,
    ]  # fmt: skip


def journal(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_bytes().splitlines()]


def assert_clean(result):
    assert "Traceback" not in result.stderr, result.stderr


def assert_object_matches(s3_client, bucket, key, file):
    assert sha256_of_object(s3_client, bucket, key) == sha256_of_file(file)


def assert_no_uploads_left(s3_client, bucket):
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize(
    ("size", "extra"),
    [
        (0, []),
        (1000, []),
        (5 * MiB + 1, ["--part-size", "5MiB"]),
        (23 * MiB + 7, ["--part-size", "5MiB", "--concurrency", "3"]),
        (20 * MiB, ["--concurrency", "1"]),  # buffered path: parts fit the worker's buffer
    ],
)
def test_upload_round_trip(s3_env, bucket, s3_client, make_file, tmp_path, size, extra):
    file = make_file(size)
    state = tmp_path / "up.state"
    result = persevere(s3_env, *start_args(bucket, "obj", file, state, *extra))
    assert result.returncode == 0, result.stderr
    assert_clean(result)
    assert "uploaded s3://" in result.stdout
    assert_object_matches(s3_client, bucket, "obj", file)
    assert_no_uploads_left(s3_client, bucket)

    records = journal(state)
    header, *parts, outcome = records
    assert header["type"] == "header" and header["version"] == 1
    assert header["file_size"] == size and header["file_path"] == str(file.resolve())
    assert header["checksum_algorithm"] == "CRC64NVME"
    assert sorted(p["part_number"] for p in parts) == list(range(1, len(parts) + 1))
    assert sum(p["size"] for p in parts) == size
    assert outcome["type"] == "completed"
    head = s3_client.head_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert head["ContentLength"] == size
    assert head.get("ChecksumCRC64NVME") == outcome["checksum"]


@pytest.mark.process
def test_sigkill_mid_upload_then_resume(rule_proxy, bucket, s3_client, make_file, tmp_path):
    env, proxy = rule_proxy
    file = make_file(30 * MiB, seed=3)
    state = tmp_path / "up.state"
    args = start_args(bucket, "killed", file, state, "--part-size", "5MiB", "-c", "2")
    killed = interrupt_after_parts(env, args, state, 4, proxy=proxy)
    assert killed.returncode == -signal.SIGKILL
    before = journal(state)
    assert before[0]["type"] == "header" and before[-1]["type"] == "part"

    result = persevere(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert_clean(result)
    assert_object_matches(s3_client, bucket, "killed", file)
    assert_no_uploads_left(s3_client, bucket)
    after = journal(state)
    assert after[: len(before)] == before, "earlier lines were rewritten"
    assert after[-1]["type"] == "completed"


@pytest.mark.slow  # (over 3 s in make test: make test-all runs it)
@pytest.mark.process
def test_sigint_exits_130_with_resume_command(rule_proxy, bucket, s3_client, make_file, tmp_path):
    env, proxy = rule_proxy
    file = make_file(30 * MiB, seed=4)
    state = tmp_path / "up.state"
    args = start_args(bucket, "intr", file, state, "--part-size", "5MiB", "-c", "2")
    interrupted = interrupt_after_parts(env, args, state, 3, sig=signal.SIGINT, proxy=proxy)
    stderr = interrupted.stderr
    assert interrupted.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"persevere upload resume --state-file {state}" in stderr
    # The multipart upload is left in place for resume.
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == ["intr"]

    status = persevere(env, "upload", "status", "--state-file", state)
    assert status.returncode == 0, status.stderr
    assert "in progress" in status.stdout and "S3:" in status.stdout

    result = persevere(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert_object_matches(s3_client, bucket, "intr", file)


def _interrupted_upload(s3_env, bucket, file, state, key, parts=4):
    args = start_args(bucket, key, file, state, "--part-size", "5MiB", "-c", "1")
    interrupt_after_parts(s3_env, args, state, parts)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_resume_adopts_parts_missing_from_journal(s3_env, bucket, s3_client, make_file, tmp_path):
    """A crash between S3's answer and the fsync: S3 has parts the journal lacks."""
    file = make_file(60 * MiB, seed=5)
    state = tmp_path / "up.state"
    _interrupted_upload(s3_env, bucket, file, state, "adopt")
    lines = state.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 4
    state.write_bytes(b"".join(lines[:2]))  # forget all parts but the first

    result = persevere(s3_env, "-v", "upload", "resume", "--state-file", state, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "adopted" in result.stderr
    assert_object_matches(s3_client, bucket, "adopt", file)


@pytest.mark.slow  # (over 3 s in make test: make test-all runs it)
@pytest.mark.process
def test_resume_reuploads_part_s3_disagrees_with(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(60 * MiB, seed=6)
    state = tmp_path / "up.state"
    _interrupted_upload(s3_env, bucket, file, state, "lost")
    records = journal(state)
    records[1]["etag"] = '"00000000000000000000000000000000"'
    state.write_text("".join(json.dumps(r) + "\n" for r in records))

    result = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "not on S3" in result.stderr
    assert_object_matches(s3_client, bucket, "lost", file)


def test_resume_after_complete_not_recorded(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(12 * MiB, seed=7)
    state = tmp_path / "up.state"
    assert (
        persevere(
            s3_env, *start_args(bucket, "done", file, state, "--part-size", "5MiB")
        ).returncode
        == 0
    )
    lines = state.read_bytes().splitlines(keepends=True)
    state.write_bytes(b"".join(lines[:-1]))  # the process "died" before recording completion

    result = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "already completed" in result.stdout
    assert journal(state)[-1]["type"] == "completed"


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_torn_journal_tail_is_tolerated(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(30 * MiB, seed=8)
    state = tmp_path / "up.state"
    _interrupted_upload(s3_env, bucket, file, state, "torn", parts=2)
    with state.open("ab") as f:
        f.write(b'{"type":"part","part_numb')  # a crash mid-write
    result = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert_object_matches(s3_client, bucket, "torn", file)
    journal(state)  # every line parses: the torn tail was cut before appending


@pytest.mark.process
def test_abort(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(30 * MiB, seed=9)
    state = tmp_path / "up.state"
    _interrupted_upload(s3_env, bucket, file, state, "abort-me", parts=2)
    result = persevere(s3_env, "upload", "abort", "--state-file", state)
    assert result.returncode == 0, result.stderr
    assert "aborted upload" in result.stdout
    assert_no_uploads_left(s3_client, bucket)
    assert journal(state)[-1]["type"] == "aborted"

    again = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert again.returncode == 1
    assert "was aborted" in again.stderr
    assert_clean(again)


def test_status_of_completed_upload(s3_env, bucket, make_file, tmp_path):
    file = make_file(6 * MiB)
    state = tmp_path / "up.state"
    assert persevere(s3_env, *start_args(bucket, "st", file, state)).returncode == 0
    result = persevere(s3_env, "upload", "status", "--state-file", state)
    assert result.returncode == 0, result.stderr
    assert "1 of 1 done" in result.stdout
    assert "completed" in result.stdout
    assert f"s3://{bucket}/st" in result.stdout


# -- bad input: one clear line, a documented exit code, nothing touched --------------------
def test_start_refuses_existing_state_file(s3_env, bucket, make_file, tmp_path):
    file = make_file(1000)
    state = tmp_path / "up.state"
    state.write_bytes(b"precious")
    result = persevere(s3_env, *start_args(bucket, "k", file, state))
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert state.read_bytes() == b"precious"
    assert_clean(result)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: p.symlink_to("/dev/null"), "not a regular file"),  # a character device
    ],
)
def test_start_refuses_unusable_file(s3_env, bucket, tmp_path, setup, message):
    target = tmp_path / "thing"
    setup(target)
    state = tmp_path / "up.state"
    result = persevere(s3_env, *start_args(bucket, "k", target, state))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not state.exists()
    assert_clean(result)


@pytest.mark.parametrize(
    ("part_size", "file_size", "message"),
    [
        ("1MiB", 1000, "below S3's minimum"),
        ("6GiB", 1000, "above S3's maximum"),
        ("5MiB", 10_001 * 5 * MiB, "at most 10,000"),
        ("lots", 1000, "not a size"),
    ],
)
def test_start_refuses_bad_plans(s3_env, bucket, tmp_path, part_size, file_size, message):
    file = tmp_path / "sparse.bin"
    with file.open("wb") as f:
        f.truncate(file_size)  # sparse: no disk used
    state = tmp_path / "up.state"
    result = persevere(s3_env, *start_args(bucket, "k", file, state, "--part-size", part_size))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not state.exists()
    assert_clean(result)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_resume_of_a_touched_file_rereads_its_parts(s3_env, bucket, s3_client, make_file, tmp_path):
    """A new mtime puts the uploaded parts in doubt: they are re-read, found equal, and the
    upload completes without sending them again."""
    file = make_file(30 * MiB, seed=10)
    state = tmp_path / "up.state"
    _interrupted_upload(s3_env, bucket, file, state, "changed", parts=2)
    done = sum(1 for r in journal(state) if r["type"] == "part")
    os.utime(file, ns=(time.time_ns(), time.time_ns()))
    result = persevere(s3_env, "upload", "resume", "--state-file", state, "--json")
    assert result.returncode == 0, result.stderr
    assert "modification time, change time changed" in result.stderr
    assert f"re-reading the {done} part(s) already uploaded" in result.stderr
    # (parts S3 got but the journal missed are adopted: they are not sent either)
    assert json.loads(result.stdout)["bytes_sent"] <= 30 * MiB - done * 5 * MiB
    assert_object_matches(s3_client, bucket, "changed", file)
    records = journal(state)
    [source] = [r for r in records if r["type"] == "source"]  # the re-read, written down once
    assert records[-1]["type"] == "completed"
    assert source["mtime_ns"] == file.stat().st_mtime_ns and "invalid" not in source


@pytest.mark.process
def test_resume_refuses_a_file_of_another_size(s3_env, bucket, make_file, tmp_path):
    file = make_file(30 * MiB, seed=10)
    state = tmp_path / "up.state"
    _interrupted_upload(s3_env, bucket, file, state, "changed", parts=2)
    before = state.read_bytes()
    with file.open("ab") as grow:
        grow.write(b"more")
    result = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert result.returncode == 1
    assert "changed since the upload started (size 31,457,280 -> 31,457,284 bytes)" in (
        result.stderr
    )
    assert f"persevere upload abort --state-file {state}" in result.stderr
    assert state.read_bytes() == before
    assert_clean(result)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"\x00\xffgarbage\n", "not a persevere state file"),
        (b'{"hello": "world"}\n', "not a persevere state file"),
        (b'{"type":"header","format":"persevere-journal","version":99}\n', "newer persevere"),
    ],
)
def test_resume_refuses_bad_state_file(s3_env, tmp_path, content, message):
    state = tmp_path / "up.state"
    if content is not None:
        state.write_bytes(content)
    result = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert result.returncode == 1
    assert message in result.stderr
    if content is not None:
        assert state.read_bytes() == content
    assert_clean(result)


@pytest.mark.process
def test_second_process_on_same_state_file_is_refused(s3_env, bucket, make_file, tmp_path):
    file = make_file(30 * MiB, seed=11)
    state = tmp_path / "up.state"
    _interrupted_upload(s3_env, bucket, file, state, "locked", parts=2)
    with state.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another persevere resuming it
        result = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert result.returncode == 3  # try again later
    assert "in use by another persevere process" in result.stderr
    assert_clean(result)


def test_wrong_secret_key(s3_env, bucket, make_file, tmp_path):
    env = {**s3_env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    state = tmp_path / "up.state"
    result = persevere(env, *start_args(bucket, "k", make_file(1000), state))
    assert result.returncode == 1
    assert "SignatureDoesNotMatch" in result.stderr
    assert not state.exists()
    assert_clean(result)


def test_access_denied(s3_env, s3_server, bucket, make_file, tmp_path):
    env = {
        **s3_env,
        "AWS_ACCESS_KEY_ID": s3_server.readonly_access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.readonly_secret_key,
    }
    state = tmp_path / "up.state"
    result = persevere(env, *start_args(bucket, "k", make_file(1000), state))
    assert result.returncode == 1
    assert "AccessDenied" in result.stderr
    assert "IAM" in result.stderr
    assert_clean(result)


@pytest.mark.slow
def test_unreachable_endpoint_fails_fast(s3_env, make_file, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    env = {**s3_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    state = tmp_path / "up.state"
    started = time.monotonic()
    result = persevere(env, *start_args("bucket", "k", make_file(1000), state))
    assert time.monotonic() - started < 30
    assert result.returncode == 3  # try again later: a supervisor restarts it
    assert "cannot start the upload" in result.stderr
    assert "nothing was created" in result.stderr and "upload resume" not in result.stderr
    assert not state.exists()
    assert_clean(result)
    # --retry-for asks to ride out an outage: the first request waits for it too.
    started = time.monotonic()
    patient = persevere(env, *start_args("bucket", "k", make_file(1000), state), "--retry-for",
                        "2s")  # fmt: skip
    assert patient.returncode == 3 and time.monotonic() - started >= 2, patient.stderr
    assert "after 4 attempts" not in patient.stderr  # the first call's 4 take at most 1.75 s
    # Write-once asks HeadObject first: that first request fails as fast, and says the same.
    started = time.monotonic()
    once = persevere(env, *start_args("bucket", "k", make_file(1000), state), "--no-overwrite")
    assert once.returncode == 3 and time.monotonic() - started < 30, once.stderr
    assert "nothing was created" in once.stderr and "upload resume" not in once.stderr
    assert not state.exists()


@pytest.mark.process
def test_version_and_help():
    env = dict(os.environ)
    version = subprocess.run(  # the entry point itself, as a process
        [sys.executable, "-m", "persevere", "--version"], capture_output=True, text=True, env=env
    )
    assert version.returncode == 0 and version.stdout.startswith("persevere ")
    for command in ([], ["upload"], ["upload", "start"], ["upload", "resume"],
                    ["upload", "abort"], ["upload", "status"]):  # fmt: skip
        result = persevere(env, *command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


@pytest.mark.process
def test_resume_of_a_completed_upload_is_success(s3_env, bucket, s3_client, make_file,
                                                 tmp_path):  # fmt: skip
    """Already done is done (exit 0, as cp and upload shard say it), while the object is still
    the upload's and the file still the one that made it; not when either changed since."""
    file = make_file(1000)
    state = tmp_path / "up.state"
    assert persevere(s3_env, *start_args(bucket, "k", file, state)).returncode == 0
    before = state.read_bytes()
    result = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"already completed s3://{bucket}/k: 1000 B in 1 part(s), "
                                    "nothing sent;")  # fmt: skip
    assert state.read_bytes() == before
    assert_clean(result)
    as_json = persevere(s3_env, "upload", "resume", "--state-file", state, "--json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["already_completed"] and document["bytes_sent"] == 0
    processes = persevere(s3_env, "upload", "resume", "--state-file", state, "--processes", "2")
    assert processes.returncode == 0 and "already completed" in processes.stdout
    assert_object_matches(s3_client, bucket, "k", file)

    with file.open("r+b") as f:  # other bytes, same size
        f.write(b"other")
    changed = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert changed.returncode == 1
    assert f"was completed from {file} as it was; {file} changed since" in changed.stderr
    s3_client.delete_object(Bucket=bucket, Key="k")
    gone = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert gone.returncode == 1
    assert f"completed, but s3://{bucket}/k is gone" in gone.stderr
    assert_clean(changed)
    assert_clean(gone)


def test_resume_of_an_aborted_upload_says_how_to_start_again(s3_env, bucket, s3_client,
                                                             make_file, tmp_path):  # fmt: skip
    file, state = make_file(12 * MiB, seed=95), tmp_path / "up.state"
    created = persevere(s3_env, *start_args(bucket, "k", file, state, "--shards", "2"))
    assert created.returncode == 0, created.stderr
    assert persevere(s3_env, "upload", "abort", "--state-file", state).returncode == 0
    result = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert result.returncode == 1 and "was aborted: there is nothing to resume" in result.stderr
    again = f"persevere cp {file} s3://{bucket}/k --state-file {state}"
    assert again in result.stderr
    assert_clean(result)
    assert persevere(s3_env, *again.split()[1:], "--no-progress").returncode == 0
    assert_object_matches(s3_client, bucket, "k", file)


@pytest.mark.process
def test_resume_after_upload_aborted_elsewhere(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(30 * MiB, seed=12)
    state = tmp_path / "up.state"
    _interrupted_upload(s3_env, bucket, file, state, "gone", parts=2)
    upload_id = journal(state)[0]["upload_id"]
    s3_client.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=upload_id)
    before = state.read_bytes()
    result = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert result.returncode == 1
    assert "no longer exists on S3" in result.stderr
    assert "lifecycle rule" in result.stderr
    assert state.read_bytes() == before
    assert_clean(result)


def test_checksum_the_endpoint_does_not_support(s3_env, bucket, make_file, tmp_path):
    state = tmp_path / "up.state"
    result = persevere(s3_env, *start_args(bucket, "k", make_file(1000), state),
                       "--checksum", "XXHASH3")  # fmt: skip
    assert result.returncode == 1
    assert "XXHASH3 is not supported by this endpoint" in result.stderr
    assert not state.exists()
    assert_clean(result)
