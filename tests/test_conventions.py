"""Conventions users bring from the aws cli: ``--request-payer``, ``s3://`` URLs everywhere,
``--dry-run``. Requests are checked through the recording proxy (:mod:`tests.httpproxy`), in
front of the local SeaweedFS, and the outcome on the server itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import interrupt_after_parts, persevere, sha256_of_file, sha256_of_object
from tests.httpproxy import HttpProxy, Reply

MiB = 1024 * 1024


@pytest.fixture
def recorded(s3_server, s3_env):
    """(env pointing at a recording proxy in front of the local S3, the proxy)."""
    with HttpProxy.in_front_of(s3_server.endpoint_url) as proxy:
        yield {**s3_env, "AWS_ENDPOINT_URL": proxy.url}, proxy


def _journal(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_text().splitlines()]


# -- --request-payer -----------------------------------------------------------------------------
@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_request_payer_goes_on_every_request_of_the_upload(
    recorded, bucket, s3_client, make_file, tmp_path
):
    """start (killed), status, resume, and a second upload listed and aborted by id: every
    request says who pays, because the state file recorded it."""
    env, proxy = recorded
    file = make_file(20 * MiB, seed=51)
    state = tmp_path / "s"
    interrupt_after_parts(env, ["upload", "start", file, f"s3://{bucket}/k", "--state-file",
                                state, "--part-size", "5MiB", "-c", "1", "--no-progress",
                                "--request-payer", "requester"], state, 1)  # fmt: skip
    assert _journal(state)[0]["object_options"]["RequestPayer"] == "requester"
    assert persevere(env, "upload", "status", "--state-file", state).returncode == 0
    resumed = persevere(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)

    other = tmp_path / "other"
    interrupt_after_parts(env, ["cp", file, f"s3://{bucket}/other", "--state-file", other,
                                "--part-size", "5MiB", "-c", "1", "--no-progress",
                                "--request-payer", "requester"], other, 1)  # fmt: skip
    upload_id = _journal(other)[0]["upload_id"]
    listed = persevere(env, "upload", "list", "--s3-bucket", bucket, "--request-payer",
                       "requester", "--json")  # fmt: skip
    assert [u["upload_id"] for u in json.loads(listed.stdout)["uploads"]] == [upload_id]
    aborted = persevere(env, "upload", "abort", "--s3-bucket", bucket, "--s3-key", "other",
                        "--upload-id", upload_id, "--request-payer", "requester")  # fmt: skip
    assert aborted.returncode == 0, aborted.stderr

    operations = {e.operation for e in proxy.requests()}
    assert {"CreateMultipartUpload", "UploadPart", "ListParts", "CompleteMultipartUpload",
            "HeadObject", "ListMultipartUploads", "AbortMultipartUpload"} <= operations  # fmt: skip
    unpaid = [e.operation for e in proxy.requests() if e.header("x-amz-request-payer") is None]
    assert unpaid == []
    assert all(e.header("x-amz-request-payer") == "requester" for e in proxy.requests())


def test_request_payer_takes_only_requester(s3_env, bucket, make_file, tmp_path):
    result = persevere(s3_env, "upload", "start", make_file(1), f"s3://{bucket}/k",
                       "--request-payer", "owner")  # fmt: skip
    assert result.returncode == 2 and "--request-payer" in result.stderr


# -- s3:// URLs ----------------------------------------------------------------------------------
@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_every_command_takes_s3_urls(recorded, bucket, s3_client, make_file, tmp_path):
    env, proxy = recorded
    file = make_file(20 * MiB, seed=52)
    state = tmp_path / "s"
    interrupt_after_parts(env, ["upload", "start", file, f"s3://{bucket}/pre/k", "--state-file",
                                state, "--part-size", "5MiB", "-c", "1", "--no-progress",
                                "--max-bandwidth", "10MiB/s"], state, 1)  # fmt: skip
    upload_id = _journal(state)[0]["upload_id"]

    def run(*args):
        result = persevere(env, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stdout

    listed = json.loads(run("upload", "list", f"s3://{bucket}/pre/", "--json"))
    assert listed["bucket"] == bucket and [u["upload_id"] for u in listed["uploads"]] == [upload_id]
    assert json.loads(run("upload", "list", f"s3://{bucket}/other", "--json"))["uploads"] == []
    assert len(json.loads(run("upload", "list", f"s3://{bucket}", "--json"))["uploads"]) == 1
    assert f"{upload_id}" in run("upload", "list", f"s3://{bucket}")

    held = json.loads(run("upload", "status", f"s3://{bucket}/pre/k", "--json"))
    assert held["exists"] is False and [u["upload_id"] for u in held["uploads"]] == [upload_id]
    assert held["uploads"][0]["parts"] >= 1
    text = run("upload", "status", f"s3://{bucket}/pre/k")
    assert "S3:          does not exist" in text and f"upload:      {upload_id}" in text

    run("upload", "abort", f"s3://{bucket}/pre/k", "--upload-id", upload_id)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    s3_client.put_object(Bucket=bucket, Key="pre/k", Body=b"x" * 10)
    held = json.loads(run("upload", "status", f"s3://{bucket}/pre/k", "--json"))
    assert held["exists"] is True and held["size"] == 10 and held["uploads"] == []
    assert "10 bytes" in run("upload", "status", f"s3://{bucket}/pre/k")

    proxy.clear()
    rows = json.loads(run("bench", f"s3://{bucket}/tmp/", "--size", "6MiB", "-c", "1", "--json"))
    assert rows["bucket"] == bucket and len(rows["rows"]) == 1
    [create] = proxy.requests("CreateMultipartUpload")
    assert create.target.startswith(f"/{bucket}/tmp/persevere-bench/")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["pre/k"]  # the bench left nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upload", "list", "http://bucket"], "not an S3 URL"),
        (["upload", "list", "s3://"], "not an S3 URL"),
        (["upload", "list", "s3://b", "--s3-bucket", "b"], "not both"),
        (["upload", "list"], "give s3://BUCKET[/PREFIX]"),
        (["upload", "abort", "s3://b", "--upload-id", "x"], "not an object URL"),
        (["upload", "abort", "s3://b/k"], "--upload-id"),
        (["upload", "status"], "give --state-file, or s3://BUCKET/KEY"),
        (["upload", "status", "s3://b/k", "--state-file", "s"], "give --state-file, or"),
        (["bench", "ftp://b"], "not an S3 URL"),
    ],
)
def test_bad_urls_are_usage_errors(s3_env, args, message):
    result = persevere(s3_env, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


# -- --dry-run -----------------------------------------------------------------------------------
PROBE = ["HeadObject", "CreateMultipartUpload", "AbortMultipartUpload"]


@pytest.mark.parametrize("command", ["start", "cp"])
def test_dry_run_sends_no_part_and_writes_no_state_file(
    recorded, bucket, s3_client, make_file, command
):
    env, proxy = recorded
    file = make_file(20 * MiB, seed=53)
    args = ["upload", "start"] if command == "start" else ["cp"]
    result = persevere(env, *args, file, f"s3://{bucket}/k", "--dry-run", "--max-parts", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    state = file.with_name(file.name + ".persevere")
    assert "dry run: would start the upload; nothing sent, no state file written" in out
    assert f"object:      s3://{bucket}/k (does not exist yet)" in out
    assert "plan:        2 part(s) of 10.0 MiB (10485760 bytes), checksum CRC64NVME" in out
    assert f"state file:  {state} (would be created)" in out
    assert f"endpoint:    {proxy.url}" in out
    assert "probe:       CreateMultipartUpload accepted" in out
    assert [e.operation for e in proxy.requests()] == PROBE
    assert not state.exists()
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)


@pytest.mark.process
def test_dry_run_of_cp_on_an_upload_in_progress_lists_its_parts(
    recorded, bucket, make_file, tmp_path
):
    env, proxy = recorded
    file = make_file(20 * MiB, seed=54)
    state = tmp_path / "s"
    interrupt_after_parts(env, ["cp", file, f"s3://{bucket}/k", "--state-file", state,
                                "--part-size", "5MiB", "-c", "1", "--no-progress",
                                "--max-bandwidth", "10MiB/s"], state, 1)  # fmt: skip
    recorded_bytes = state.read_bytes()
    done = sum(1 for line in _journal(state) if line["type"] == "part")
    proxy.clear()
    result = persevere(env, "cp", file, f"s3://{bucket}/k", "--state-file", state, "--dry-run",
                       "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["action"] == "resume"
    assert report["part_count"] == 4 and report["part_size"] == 5 * MiB
    assert report["state"] == f"in progress: {done} of 4 parts recorded; resumed"
    assert report["probe"].startswith(f"ListParts: upload {_journal(state)[0]['upload_id']} ")
    assert [e.operation for e in proxy.requests()] == ["ListParts", "HeadObject"]
    assert state.read_bytes() == recorded_bytes


@pytest.mark.parametrize(
    ("case", "code", "message", "operations"),
    [
        ("bad plan", 2, "--part-size 10MiB or more", []),
        ("no overwrite", 1, "already exists; it was left untouched", ["HeadObject"]),
        ("state file exists", 1, "already exists", []),
        ("read-only identity", 1, "AccessDenied", ["HeadObject", "CreateMultipartUpload"]),
    ],
)
def test_dry_run_fails_as_the_run_would(
    recorded, s3_server, bucket, s3_client, make_file, tmp_path, case, code, message, operations
):
    env, proxy = recorded
    file = make_file(20 * MiB, seed=55)
    state = tmp_path / "s"
    extra: list[str] = []
    if case == "bad plan":
        extra = ["--part-size", "5MiB", "--max-parts", "2"]
    elif case == "no overwrite":
        s3_client.put_object(Bucket=bucket, Key="k", Body=b"keep")
        extra = ["--no-overwrite"]
    elif case == "state file exists":
        state.write_text("")
    else:
        env = {**env, "AWS_ACCESS_KEY_ID": s3_server.readonly_access_key,
               "AWS_SECRET_ACCESS_KEY": s3_server.readonly_secret_key}  # fmt: skip
    result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                       "--dry-run", *extra)  # fmt: skip
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert [e.operation for e in proxy.requests()] == operations
    assert proxy.requests("UploadPart") == []


def test_dry_run_fails_as_fast_as_the_run_when_s3_does_not_answer(
    s3_server, s3_env, bucket, make_file, tmp_path
):
    """Its first request (HeadObject) has the first call's budget, as the run's first request
    has (4 tries), not an upload's (10, over a minute of backoff; issue 25, L)."""

    def unavailable(exchange):
        return Reply(503, b"", ()) if exchange.operation == "HeadObject" else None

    with HttpProxy.in_front_of(s3_server.endpoint_url, reply=unavailable) as proxy:
        result = persevere({**s3_env, "AWS_ENDPOINT_URL": proxy.url}, "upload", "start",
                           make_file(MiB, seed=57), f"s3://{bucket}/k", "--state-file",
                           tmp_path / "s", "--dry-run")  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "HeadObject failed 4 times" in result.stderr and "Traceback" not in result.stderr
    assert [e.operation for e in proxy.requests()] == ["HeadObject"] * 4


@pytest.mark.parametrize("records", ["nothing", "an upload in progress", "a completed upload"])
def test_a_start_and_its_dry_run_refuse_an_existing_state_file_alike(
    recorded, bucket, make_file, tmp_path, records
):
    """``upload start --dry-run`` said "the upload is resumable: persevere upload resume ..."
    of any existing state file, where the start says its upload completed; and both said so
    of an empty one (a start killed before its upload was created), which resume then calls
    empty: nothing to resume."""
    from persevere._journal import Header, Journal

    env, proxy = recorded
    file, state = make_file(MiB, seed=57), tmp_path / "s"
    if records == "nothing":
        state.write_text("")
    else:
        journal = Journal.create(state)
        journal.write_header(Header(
            bucket=bucket, key="k", upload_id="u", endpoint_url=None, region=None, profile=None,
            file_path=str(file), file_size=MiB, mtime_ns=0, part_size=8 * MiB,
            checksum_algorithm="CRC64NVME", checksum_type="FULL_OBJECT", created_at="now",
            tool_version="0",
        ))  # fmt: skip
        if records == "a completed upload":
            journal.append_outcome("completed", etag='"e-1"', checksum="c", size=MiB, at="now")
        journal.close()
    before = state.read_bytes()
    start = ["upload", "start", file, f"s3://{bucket}/k", "--state-file", state]
    run, dry = persevere(env, *start), persevere(env, *start, "--dry-run")
    for result in (run, dry):
        assert result.returncode == 1, result.stderr
    assert dry.stderr == run.stderr
    errors = run.stderr.splitlines()[1:]  # after the plan
    assert errors[0].startswith(f"persevere: error: state file {state} already exists")
    resumable = f"persevere: the upload is resumable: persevere upload resume --state-file {state}"
    assert (resumable in errors) == (records == "an upload in progress"), errors
    if records == "nothing":
        # (audit 23 #5: it was "interrupted before it was created on S3", which S3 may have)
        said = "is empty: the run that made it stopped before it recorded its upload"
        assert errors[0].endswith(f"{said} (which S3 may have created all the same)")
    assert proxy.requests() == [] and state.read_bytes() == before


def test_dry_run_of_cp_after_completion_is_a_check(recorded, bucket, make_file, tmp_path):
    """cp would find its own object: write-once does not object to that."""
    env, proxy = recorded
    file = make_file(MiB, seed=56)
    state = tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-overwrite"]
    assert persevere(env, *args).returncode == 0
    proxy.clear()
    result = persevere(env, *args, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run: would check the upload completed earlier" in result.stdout
    assert f"object:      s3://{bucket}/k (exists)" in result.stdout
    assert _journal(state)[-1]["type"] == "completed"
    assert [e.operation for e in proxy.requests()] == PROBE
