"""File and stream resume share one path (docs/one-path.md, step 8b): the differences between
their copies that were bugs, each shown on both kinds of source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import interrupt_after_parts, sha256_of_file, sha256_of_object
from tests.conftest import persevere as cli
from tests.httpproxy import HttpProxy, Reply
from tests.ruleproxy import Rule
from tests.test_stream import cp_args, pipe_into, produced

MiB = 1024 * 1024
SIZE = 40 * MiB


def _interrupted(env, bucket, state, source, make_file, proxy=None, *extra):
    """An upload of a file (5 MiB parts) or a stream (8 MiB parts) stopped after 2 parts: the
    file, or None for the stream (``_resumed`` pipes the same one in again)."""
    if source == "stream":
        pipe_into(env, SIZE, 78, *cp_args(bucket, state, *extra), kill_after_parts=2,
                  state=state)  # fmt: skip
        return None
    file = make_file(SIZE, seed=78)
    interrupt_after_parts(env, ["upload", "start", file, f"s3://{bucket}/k", "--state-file",
                                state, "--part-size", "5MiB", "-c", "1", "--no-progress",
                                *extra], state, 2, proxy=proxy)  # fmt: skip
    return file


def _resumed(env, state, file, *extra):
    args = ["upload", "resume", "--state-file", state, "--no-progress", *extra]
    if file is None:
        return pipe_into(env, SIZE, 78, *args)[0]
    return cli(env, *args, process=True)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize("source", ["file", "stream"])
def test_list_parts_refused_one_warning_and_one_hint(rule_proxy, bucket, make_file, tmp_path,
                                                     source):  # fmt: skip
    """Difference H: without s3:ListMultipartUploadParts, both kinds resume from the journal
    with the same warning, and a later S3 failure names the permission for both."""
    env, proxy = rule_proxy
    state = tmp_path / "s"
    file = _interrupted(env, bucket, state, source, make_file, proxy)
    proxy.rules[:0] = [Rule("GET", "uploadId", refuse=(403, "AccessDenied")),
                       Rule("POST", "uploadId", refuse=(400, "InvalidPart"))]  # fmt: skip
    result = _resumed(env, state, file)
    assert result.returncode == 1, result.stderr
    assert (
        "ListParts was refused (AccessDenied): resuming from the state file alone; parts S3 "
        "received but the journal missed are sent again" in result.stderr
    )
    assert "granting s3:ListMultipartUploadParts lets it reconcile the two" in result.stderr
    assert "Traceback" not in result.stderr


def _stating_other_checksums(s3_client, bucket):
    """A ``reply`` for :class:`HttpProxy`: ListParts as S3 answers it, but every part stating a
    CRC64NVME other than its bytes' (as an endpoint that reports part checksums would, had the
    bytes changed); the ETags stay the MD5s of the bytes."""

    def reply(exchange):
        if exchange.operation != "ListParts":
            return None
        upload_id = exchange.query["uploadId"][0]
        parts = s3_client.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)["Parts"]
        items = "".join(
            f"<Part><PartNumber>{p['PartNumber']}</PartNumber><ETag>{p['ETag']}</ETag>"
            f"<Size>{p['Size']}</Size><ChecksumCRC64NVME>AAAAAAAAAAA=</ChecksumCRC64NVME></Part>"
            for p in parts
        )
        return Reply(200, (
            '<?xml version="1.0" encoding="UTF-8"?><ListPartsResult xmlns="http://s3.amazonaws'
            f'.com/doc/2006-03-01/"><Bucket>{bucket}</Bucket><Key>k</Key><UploadId>{upload_id}'
            f"</UploadId><IsTruncated>false</IsTruncated>{items}</ListPartsResult>"
        ).encode())  # fmt: skip

    return reply


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize("source", ["file", "stream"])
def test_a_part_whose_stated_checksum_differs_is_sent_again(rule_proxy, s3_server, bucket,
                                                            s3_client, make_file, tmp_path,
                                                            source):  # fmt: skip
    """Differences C and D, one matcher: S3 states a part checksum other than the bytes' while
    its ETag is their MD5. A recorded part (1) is not kept, an unrecorded one (2, its record
    cut from the journal) is not adopted: both are sent again, for a file as for a stream."""
    env, proxy = rule_proxy
    state = tmp_path / "s"
    file = _interrupted(env, bucket, state, source, make_file, proxy)
    lines = state.read_bytes().splitlines(keepends=True)
    kept = [line for line in lines if b'"part_number":2,' not in line]
    assert len(kept) == len(lines) - 1
    state.write_bytes(b"".join(kept))  # part 2: on S3, not in the journal
    with HttpProxy.in_front_of(
        s3_server.endpoint_url, reply=_stating_other_checksums(s3_client, bucket)
    ) as lying:
        result = _resumed(env, state, file, "--endpoint-url", lying.url)
        sent = {int(e.query["partNumber"][0]) for e in lying.requests("UploadPart")}
    assert result.returncode == 0, result.stderr
    assert {1, 2} <= sent, sent
    digest = sha256_of_file(Path(file)) if file is not None else produced(SIZE, 78)
    assert sha256_of_object(s3_client, bucket, "k") == digest


@pytest.mark.process
def test_a_stream_whose_retries_run_out_says_how_to_resume(rule_proxy, bucket, tmp_path):
    """Difference O: a stream start names the next command for every failure after the upload
    exists, as a file's does (retries exhausted, exit 3, printed none)."""
    env, proxy = rule_proxy
    state = tmp_path / "s"
    proxy.rules.insert(0, Rule("PUT", "partNumber", value="2", refuse=(500, "InternalError")))
    result, _ = pipe_into(env, SIZE, 79, *cp_args(bucket, state, "--max-retries", "1"))
    assert result.returncode == 3, result.stderr
    assert f"persevere upload resume --state-file {state}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_a_streams_progress_ends_at_its_whole_size(s3_env, bucket, tmp_path):
    """Difference P: a stream's progress is closed (its last line, in logs, says 100 %), and a
    resumed stream counts the parts it skipped (already on S3) as done."""

    def args(state):
        return ["cp", "-", f"s3://{bucket}/k", "--state-file", state, "-c", "4",
                "--expected-size", str(SIZE)]  # fmt: skip

    started, _ = pipe_into(s3_env, SIZE, 80, *args(tmp_path / "s"))
    assert started.returncode == 0, started.stderr
    assert "(100.0%)" in started.stderr, started.stderr
    state = tmp_path / "s2"
    pipe_into(s3_env, SIZE, 80, *args(state), kill_after_parts=2, state=state)
    resumed, _ = pipe_into(s3_env, SIZE, 80, *args(state))
    assert resumed.returncode == 0, resumed.stderr
    assert "(100.0%)" in resumed.stderr, resumed.stderr


class _FirstParts:
    """The spot check's choice made deterministic: the lowest part numbers."""

    def sample(self, population, k):
        return sorted(population)[:k]


def test_verify_parts_rereads_an_upload_completed_earlier(s3_env, bucket, make_file, tmp_path,
                                                          monkeypatch):  # fmt: skip
    """Difference Q: the upload completed, the crash came before the journal said so, and the
    file's last part changed since with its identity as recorded (a filesystem without
    trustworthy times): ``--verify-parts`` re-reads every part there too (it spot-checked)."""
    file = make_file(12 * MiB, seed=81)
    state = tmp_path / "s"
    done = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = state.read_bytes().splitlines(keepends=True)[:-1]  # no "completed" line
    with file.open("r+b") as f:
        f.seek(11 * MiB)
        f.write(b"changed")  # part 3
    header = json.loads(lines[0])
    st = file.stat()
    header.update(mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)
    state.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    monkeypatch.setattr("persevere._resume.random.SystemRandom", _FirstParts)
    result = cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress",
                 "--verify-parts")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "the file has changed since (part 3 differs)" in result.stderr


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("source", ["file", "stream"])
def test_an_upload_aborted_elsewhere_gives_the_cp_that_starts_again(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch, source
):
    """Audit 8, finding 12: resume of an upload aborted by id (or a lifecycle rule) names the
    `cp` that starts again over the same state file (absolute, with the write-once flag it was
    started with), in the hint and as `next_command`; run, it uploads the object."""
    import shlex

    state = tmp_path / "s"
    file = _interrupted(s3_env, bucket, state, source, make_file, None, "--no-overwrite")
    upload_id = json.loads(state.read_text().splitlines()[0])["upload_id"]
    aborted = cli(s3_env, "upload", "abort", f"s3://{bucket}/k", "--upload-id", upload_id)
    assert aborted.returncode == 0, aborted.stderr
    monkeypatch.chdir(tmp_path)  # the state file given relative: the command names it whole
    resumed = _resumed(s3_env, Path("s"), file, "--json")
    assert resumed.returncode == 1, resumed.stderr
    failure = json.loads(resumed.stdout)
    command = failure["next_command"]
    assert command in failure["hint"] and command in resumed.stderr, failure
    assert f"s3://{bucket}/k --state-file {state}" in command and "--no-overwrite" in command
    if file is None:
        feed, args = command.split(" | ", 1)
        assert feed == "..." and args.startswith("persevere cp - ")
        again, _ = pipe_into(s3_env, SIZE, 78, *shlex.split(args)[1:], "--no-progress")
        assert again.returncode == 0, again.stderr
        assert sha256_of_object(s3_client, bucket, "k") == produced(SIZE, 78)
    else:
        assert command.startswith(f"persevere cp {file} ")
        again = cli(s3_env, *shlex.split(command)[1:], "--no-progress")
        assert again.returncode == 0, again.stderr
        assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.parametrize("when", ["in-progress", "completed", "shard"])
def test_a_file_that_moved_is_resumed_with_the_command_the_hint_gives(
    s3_env, bucket, s3_client, make_file, tmp_path, when
):
    """Audit 8, finding 13: the file gone from the path the state file records (exit 2, as
    any missing file), the hint says the upload is intact and names --file; resume's (in
    progress, or completed: checked against the file) gives its command, as next_command too;
    a shard's names --file alone (its command is its caller's). The command with --file works."""
    file, state, url = make_file(12 * MiB), tmp_path / "s", f"s3://{bucket}/k"
    args = ("upload", "start", file, url, "--state-file", state)
    made = cli(s3_env, *args, *(() if when == "completed" else ("--shards", "2")))
    assert made.returncode == 0, made.stderr
    if when == "completed":
        assert cli(s3_env, "upload", "resume", "--state-file", state).returncode == 0
    moved = file.rename(tmp_path / "moved.bin")
    command = ["upload", "resume", "--state-file", state]
    if when == "shard":
        command = ["upload", "shard", "--state-file", state, "--shard", "0/2"]
    done = cli(s3_env, *command, "--json")
    assert done.returncode == 2, done.stderr
    failure = json.loads(done.stdout)
    assert "the upload is intact" in failure["hint"] and "--file" in failure["hint"], failure
    if when == "shard":
        assert failure["next_command"] is None, failure
    else:
        assert failure["next_command"] == f"persevere upload resume --state-file {state}"
        assert f"{failure['next_command']} --file PATH" in failure["hint"], failure
    again = cli(s3_env, *command, "--file", moved)
    assert again.returncode == 0, again.stderr
    if when != "shard":
        assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(moved)
