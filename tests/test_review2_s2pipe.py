"""Review of the s2pipe shrink (one session on a recorded upload, one adoption of S3's
unrecorded part, journals closed by contextlib.closing): behaviour pinned as it was before it.

Each test passes on the base (2d120e5) and on the branch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

import persevere
from persevere import Endpoint, RetryPolicy, UploadOptions
from persevere._cp import copy_file
from persevere._journal import Journal
from tests.conftest import persevere as cli
from tests.conftest import sha256_of_file, sha256_of_object
from tests.test_resume_paths import SIZE, _interrupted
from tests.test_stream import pipe_into, produced

# Pins of the 2026-12-05 review (they pass on the shrink's base too): run by make test-all.
pytestmark = pytest.mark.slow

DEAD = "http://127.0.0.1:1"  # nothing listens: every call fails at once, retried as its kind
UNREACHABLE = f'Could not connect to the endpoint URL: "{DEAD}"'


def _records(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_bytes().splitlines()]


def _without_part(state: Path, number: int) -> dict:
    """Cut part ``number``'s record from the journal (S3 answered, the record never made it:
    a kill -9 between the two); the record cut."""
    lines = state.read_bytes().splitlines(keepends=True)
    [cut] = [line for line in lines if f'"part_number":{number},'.encode() in line]
    state.write_bytes(b"".join(line for line in lines if line is not cut))
    return json.loads(cut)


@pytest.mark.process
@pytest.mark.parametrize("source", ["file", "stream"])
def test_a_part_s3_holds_unrecorded_is_adopted_logged_and_recorded(
    s3_env, bucket, s3_client, make_file, tmp_path, source
):
    """A file's resume and a stream's (the same stream piped in again) adopt S3's part that
    the journal lost, with the same log line (naming the source's kind) and the same record
    (S3's ETag and size, the source's checksum): nothing of it is sent again."""
    state = tmp_path / "s"
    file = _interrupted(s3_env, bucket, state, source, make_file)
    cut = _without_part(state, 2)
    args = ["-v", "upload", "resume", "--state-file", state, "--no-progress", "--json"]
    if file is None:
        result, _ = pipe_into(s3_env, SIZE, 78, *args)
    else:
        result = cli(s3_env, *args, process=True)
    assert result.returncode == 0, result.stderr
    assert f"part 2: found on S3 and matches the {source}, adopted" in result.stderr
    assert result.stderr.count("adopted") == 1, result.stderr
    [again] = [r for r in _records(state) if r.get("part_number") == 2]
    assert again == cut
    digest = sha256_of_file(Path(file)) if file is not None else produced(SIZE, 78)
    assert sha256_of_object(s3_client, bucket, "k") == digest


@pytest.mark.process
@pytest.mark.parametrize(
    ("command", "source", "code", "said"),
    [
        (["upload", "resume", "--max-retries", "0"], "file", 3, "ListParts failed 1 times"),
        (["upload", "resume", "--max-retries", "0"], "stream", 3, "ListParts failed 1 times"),
        (["upload", "abort"], "file", 3, "AbortMultipartUpload failed 5 times"),
        (["upload", "status"], "file", 0, "(attempt 5 of 5)"),
        (["cp", "--dry-run", "--max-retries", "0"], "file", 3, "ListParts failed 4 times"),
    ],
)
def test_a_recorded_upload_is_asked_at_the_endpoint_given_with_its_calls_retries(
    s3_env, bucket, make_file, tmp_path, command, source, code, said
):
    """--endpoint-url overrides the recorded endpoint for resume (a file's, a stream's),
    abort, status and cp's dry run; each call retries as its kind does (resume: the user's
    --max-retries; abort and status: a lookup's 5 attempts; the dry run's ListParts: a first
    call's 4, whatever --max-retries). The journal is left as it was."""
    state = tmp_path / "s"
    file = _interrupted(s3_env, bucket, state, source, make_file)
    before = state.read_bytes()
    args = list(command)
    if command[0] == "cp":
        args = ["cp", file, f"s3://{bucket}/k", "--part-size", "5MiB", *command[1:]]
    args = [*args, "--state-file", state, "--endpoint-url", DEAD]
    if command[0] != "upload" or command[1] == "resume":
        args.append("--no-progress")
    if source == "stream":
        result, _ = pipe_into(s3_env, SIZE, 78, *args)
    else:
        result = cli(s3_env, *args, process=True)
    assert result.returncode == code, result.stderr
    assert said in result.stderr and UNREACHABLE in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    if command == ["upload", "status"]:
        assert "S3:          not reachable" in result.stdout, result.stdout
    assert state.read_bytes() == before


@pytest.mark.process
def test_a_profile_given_to_resume_keeps_the_recorded_endpoint(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """--profile overrides only the recorded profile: the profile's own endpoint_url (a dead
    one here) does not replace the endpoint the journal records."""
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text(f"[profile other]\nendpoint_url = {DEAD}\nregion = eu-west-3\n")
    credentials.write_text(
        f"[other]\naws_access_key_id = {s3_env['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {s3_env['AWS_SECRET_ACCESS_KEY']}\n"
    )
    state = tmp_path / "s"
    file = _interrupted(s3_env, bucket, state, "file", make_file)
    env = {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(credentials)}
    result = cli({**s3_env, **env}, "upload", "resume", "--state-file", state, "--profile",
                 "other", "--max-retries", "0", "--no-progress", process=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(Path(file))


def test_error_paths_on_a_recorded_upload_leave_no_descriptor_open(
    s3_env, bucket, make_file, tmp_path
):
    """In a library loop, resume, abort, status, a shard and cp failing (the endpoint down,
    the journal locked by another holder) close every journal they opened."""
    file = make_file(12 * 1024 * 1024, seed=3)
    state = tmp_path / "s"
    persevere.create_upload_sync(file, bucket, "k", state, part_size=5 * 1024 * 1024, shards=2)
    dead, once = Endpoint(endpoint_url=DEAD), UploadOptions(retry=RetryPolicy(max_attempts=1))

    def locked(call):
        holder = Journal(state, os.open(state, os.O_RDWR))
        holder.lock()
        try:
            call()
        finally:
            holder.close()

    def cp(**asked):
        anyio.run(lambda: copy_file(file, bucket, "k", state, part_size=5 * 1024 * 1024,
                                    options=once, **asked))  # fmt: skip

    calls = [
        lambda: persevere.resume_sync(state, endpoint=dead, options=once),
        lambda: locked(lambda: persevere.resume_sync(state, options=once)),
        lambda: persevere.resume_sync(state, file=tmp_path / "absent", options=once),
        lambda: persevere.abort_sync(state, endpoint=Endpoint(endpoint_url=DEAD)),
        lambda: locked(lambda: persevere.abort_sync(state)),
        lambda: persevere.status_sync(state, endpoint=Endpoint(endpoint_url=DEAD)),
        lambda: persevere.upload_shard_sync(state, 1, 2, endpoint=dead, options=once),
        lambda: persevere.upload_shard_sync(state, 1, 2, file=tmp_path / "absent", options=once),
        lambda: cp(endpoint=dead),
        lambda: locked(cp),
    ]
    before = state.read_bytes()

    def opened() -> int:
        return len(os.listdir("/proc/self/fd"))

    def unlocked() -> None:  # no descriptor left holding a journal's lock
        for path in [state, *tmp_path.glob("s.shard-*")]:
            journal = Journal(path, os.open(path, os.O_RDWR))
            journal.lock()  # StateFileLocked while another descriptor holds it
            journal.close()

    for call in calls:
        for attempt in range(3):
            try:
                call()
            except (persevere.PersevereError, OSError):
                pass
            if attempt == 0:
                settled = opened()
            unlocked()
        assert opened() == settled, call
    assert state.read_bytes() == before
