"""Write-once uploads (``--no-overwrite``) against the local SeaweedFS, which honours
``If-None-Match: *`` on CompleteMultipartUpload (412 when the key exists).

The recording proxy shows what was sent; where a test needs the key to appear *after* the
early HeadObject check (another writer racing the upload), the proxy answers that HeadObject
with a 404 itself, so the conditional completion is what meets the existing object.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import (
    delete_bucket,
    interrupt_after_parts,
    persevere,
    sha256_of_file,
    sha256_of_object,
)
from tests.httpproxy import HttpProxy, Reply

MiB = 1024 * 1024
EXISTING = b"the backup that must stay"


def _error_lines(stderr: str) -> list[str]:
    """stderr but for what start and cp announce before anything is sent (the plan, the state
    file's path): the error's lines."""
    notes = ("persevere: plan:", "persevere: state file:")
    return [line for line in stderr.strip().splitlines() if not line.startswith(notes)]


def _journal(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_text().splitlines()]


def _hide_object(exchange):
    """The key looks absent to HeadObject: as if another writer created it just after."""
    return Reply(404, b"", ()) if exchange.operation == "HeadObject" else None


@pytest.fixture
def proxied(s3_server, s3_env):
    """``proxied(**HttpProxy kwargs) -> (env, proxy)``, proxies closed at teardown."""
    proxies = []

    def make(**kwargs):
        proxy = HttpProxy.in_front_of(s3_server.endpoint_url, **kwargs).__enter__()
        proxies.append(proxy)
        return {**s3_env, "AWS_ENDPOINT_URL": proxy.url}, proxy

    yield make
    for proxy in proxies:
        proxy.__exit__(None, None, None)


def _unchanged(s3_client, bucket, key="k"):
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body == EXISTING


def _no_uploads(s3_client, bucket):
    return s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("command", ["start", "cp"])
def test_existing_key_is_refused_before_anything_is_sent(
    proxied, bucket, s3_client, make_file, tmp_path, command
):
    s3_client.put_object(Bucket=bucket, Key="k", Body=EXISTING)
    env, proxy = proxied()
    state = tmp_path / "s"
    args = ["upload", "start"] if command == "start" else ["cp"]
    result = persevere(env, *args, make_file(6 * MiB, seed=71), f"s3://{bucket}/k",
                       "--state-file", state, "--no-overwrite", "--no-progress")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert _error_lines(result.stderr) == [
        f"persevere: error: --no-overwrite: s3://{bucket}/k already exists; it was left "
        "untouched (write-once), nothing was uploaded"
    ]
    assert "Traceback" not in result.stderr
    assert [e.operation for e in proxy.requests()] == ["HeadObject"]
    assert not state.exists()
    assert _unchanged(s3_client, bucket) and _no_uploads(s3_client, bucket)


@pytest.mark.process
def test_a_stream_to_an_existing_key_is_refused_before_anything_is_sent(
    proxied, bucket, s3_client, tmp_path
):
    s3_client.put_object(Bucket=bucket, Key="k", Body=EXISTING)
    env, proxy = proxied()
    state = tmp_path / "s"
    result = persevere(env, "cp", "-", f"s3://{bucket}/k", "--state-file", state,
                       "--no-overwrite", input="streamed bytes\n" * 1000)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "already exists; it was left untouched (write-once), nothing was uploaded" in (
        result.stderr
    )
    assert [e.operation for e in proxy.requests()] == ["HeadObject"]
    assert not state.exists()
    assert _unchanged(s3_client, bucket)


def test_a_new_key_is_uploaded_with_a_conditional_completion(
    proxied, bucket, s3_client, make_file, tmp_path
):
    env, proxy = proxied()
    file = make_file(11 * MiB, seed=72)
    state = tmp_path / "s"
    result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                       "--part-size", "5MiB", "--no-overwrite", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _journal(state)[0]["no_overwrite"] is True
    assert [e.header("if-none-match") for e in proxy.requests("CompleteMultipartUpload")] == ["*"]
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


def test_key_created_during_the_upload_is_not_overwritten(
    proxied, bucket, s3_client, make_file, tmp_path
):
    """The endpoint refuses the conditional completion (412): the upload is aborted, the
    journal says so, the object stays as it was."""
    s3_client.put_object(Bucket=bucket, Key="k", Body=EXISTING)
    env, proxy = proxied(reply=_hide_object)
    state = tmp_path / "s"
    result = persevere(env, "upload", "start", make_file(11 * MiB, seed=73), f"s3://{bucket}/k",
                       "--state-file", state, "--part-size", "5MiB", "--no-overwrite",
                       "--no-progress")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert _error_lines(result.stderr) == [
        f"persevere: error: --no-overwrite: s3://{bucket}/k already exists; it was left "
        "untouched (write-once), the upload was aborted"
    ]
    [complete] = proxy.requests("CompleteMultipartUpload")
    assert complete.header("if-none-match") == "*" and complete.status == 412
    assert len(proxy.requests("AbortMultipartUpload")) == 1
    assert _journal(state)[-1]["type"] == "aborted"
    assert _unchanged(s3_client, bucket) and _no_uploads(s3_client, bucket)
    # Run again, cp-style: the state records the abort, and the key still exists.
    again = persevere(env, "upload", "resume", "--state-file", state)
    assert again.returncode == 1 and "was aborted" in again.stderr


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize("where", ["before sending", "at completion"])
def test_resume_honours_no_overwrite(
    proxied, s3_env, bucket, s3_client, make_file, tmp_path, where
):
    file = make_file(20 * MiB, seed=74)
    state = tmp_path / "s"
    interrupt_after_parts(s3_env, ["upload", "start", file, f"s3://{bucket}/k", "--state-file",
                                   state, "--part-size", "5MiB", "-c", "1", "--no-progress",
                                   "--no-overwrite", "--max-bandwidth", "10MiB/s"],
                          state, 1)  # fmt: skip
    s3_client.put_object(Bucket=bucket, Key="k", Body=EXISTING)  # someone else's, meanwhile
    env, proxy = proxied(reply=_hide_object if where == "at completion" else None)
    result = persevere(env, "upload", "resume", "--state-file", state, "--no-progress",
                       "--endpoint-url", proxy.url)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "already exists; it was left untouched (write-once)" in result.stderr
    sent = proxy.requests("UploadPart")
    assert proxy.requests("ListParts")  # through the proxy
    if where == "before sending":
        assert sent == [] and proxy.requests("CompleteMultipartUpload") == []
    else:
        assert sent
        assert proxy.requests("CompleteMultipartUpload")[0].header("if-none-match") == "*"
    assert _journal(state)[-1]["type"] == "aborted"
    assert _unchanged(s3_client, bucket) and _no_uploads(s3_client, bucket)


def test_a_completion_whose_answer_was_lost_is_not_a_conflict(
    proxied, bucket, s3_client, make_file, tmp_path
):
    """The first Complete reaches S3 and completes the upload, but its answer is lost (the
    proxy completes it, then answers 500): the retry meets this upload's own object."""
    file = make_file(11 * MiB, seed=75)
    done = []

    def complete_then_fail(exchange):
        if exchange.operation != "CompleteMultipartUpload" or done:
            return None
        upload_id = exchange.query["uploadId"][0]
        parts = s3_client.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)["Parts"]
        s3_client.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
                                       for p in parts]},
        )  # fmt: skip
        done.append(upload_id)
        return Reply.s3_error(500, "InternalError", "answer lost")

    env, proxy = proxied(reply=complete_then_fail)
    state = tmp_path / "s"
    result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                       "--part-size", "5MiB", "--no-overwrite", "--no-progress")  # fmt: skip
    assert done, "the proxy did not complete the upload"
    assert result.returncode == 0, result.stderr
    assert _journal(state)[-1]["type"] == "completed"
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
    # SeaweedFS answers the retried, conditional Complete with 412: the object exists.
    assert [e.status for e in proxy.requests("CompleteMultipartUpload")] == [500, 412]


# -- object lock ---------------------------------------------------------------------------------
def _lock_args(until):
    return ["--object-lock-mode", "GOVERNANCE", "--object-lock-retain-until", until,
            "--object-lock-legal-hold", "ON"]  # fmt: skip


@pytest.fixture
def lock_bucket(s3_client):
    """A bucket created with object lock (hence versioning); emptied at teardown by lifting
    the legal holds and bypassing the GOVERNANCE retention, version by version."""
    name = f"lock-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    for page in s3_client.get_paginator("list_object_versions").paginate(Bucket=name):
        for version in page.get("Versions") or []:
            ids = {"Bucket": name, "Key": version["Key"], "VersionId": version["VersionId"]}
            s3_client.put_object_legal_hold(**ids, LegalHold={"Status": "OFF"})
            s3_client.delete_object(**ids, BypassGovernanceRetention=True)
    delete_bucket(s3_client, name)


def _in(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def test_object_lock_is_applied_and_recorded(proxied, lock_bucket, s3_client, make_file, tmp_path):
    env, proxy = proxied()
    file = make_file(11 * MiB, seed=76)
    state = tmp_path / "s"
    until = _in(1).replace(microsecond=0)
    result = persevere(env, "upload", "start", file, f"s3://{lock_bucket}/k", "--state-file",
                       state, "--part-size", "5MiB", *_lock_args(until.isoformat()),
                       "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    stamp = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    options = _journal(state)[0]["object_options"]
    assert {k: v for k, v in options.items() if k.startswith("ObjectLock")} == {
        "ObjectLockMode": "GOVERNANCE",
        "ObjectLockRetainUntilDate": stamp,
        "ObjectLockLegalHoldStatus": "ON",
    }
    [create] = proxy.requests("CreateMultipartUpload")
    assert create.header("x-amz-object-lock-mode") == "GOVERNANCE"
    assert create.header("x-amz-object-lock-retain-until-date") == stamp
    assert create.header("x-amz-object-lock-legal-hold") == "ON"
    head = s3_client.head_object(Bucket=lock_bucket, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    assert sha256_of_object(s3_client, lock_bucket, "k") == sha256_of_file(file)
    with pytest.raises(ClientError) as refused:  # the point of the lock
        s3_client.delete_object(Bucket=lock_bucket, Key="k", VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_object_lock_on_a_bucket_without_it_is_one_line_with_the_fix(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    state = tmp_path / "s"
    result = persevere(s3_env, "upload", "start", make_file(MiB, seed=77), f"s3://{bucket}/k",
                       "--state-file", state, *_lock_args(_in(1).isoformat()))  # fmt: skip
    assert result.returncode == 1, result.stderr
    [line] = _error_lines(result.stderr)
    assert line.startswith("persevere: error: S3 refused the object lock options (")
    assert f"bucket {bucket} has no object lock; enable it (versioning on, then aws s3api " in line
    assert not state.exists()
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--object-lock-mode", "GOVERNANCE"], "go together"),
        (["--object-lock-retain-until", "2099-01-01"], "go together"),
        (["--object-lock-mode", "COMPLIANCE", "--object-lock-retain-until", "2001-01-01"],
         "2001-01-01T00:00:00+00:00 is not in the future"),
        (["--object-lock-mode", "COMPLIANCE", "--object-lock-retain-until", "soon"],
         "wants an ISO 8601 date"),
        (["--object-lock-mode", "FOREVER", "--object-lock-retain-until", "2099-01-01"],
         "--object-lock-mode"),
        (["--object-lock-legal-hold", "MAYBE"], "--object-lock-legal-hold"),
    ],
)  # fmt: skip
def test_object_lock_options_are_checked_before_any_request(
    proxied, bucket, make_file, tmp_path, args, message
):
    env, proxy = proxied()
    result = persevere(env, "upload", "start", make_file(1), f"s3://{bucket}/k", "--state-file",
                       tmp_path / "s", *args)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert proxy.requests() == []


def test_retain_until_dates_are_read_as_utc_unless_they_say_otherwise():
    from persevere import object_options

    def until(text):
        return object_options(Path("f"), object_lock_mode="compliance",
                              object_lock_retain_until=text)  # fmt: skip

    assert until("2099-01-31")["ObjectLockRetainUntilDate"] == "2099-01-31T00:00:00Z"
    assert until("2099-01-31T12:30")["ObjectLockRetainUntilDate"] == "2099-01-31T12:30:00Z"
    assert until("2099-01-31T12:30:00+02:00")["ObjectLockRetainUntilDate"] == (
        "2099-01-31T10:30:00Z"
    )
    assert until("2099-01-31T12:30:00Z")["ObjectLockMode"] == "COMPLIANCE"
    assert (
        object_options(Path("f"), object_lock_legal_hold="off")["ObjectLockLegalHoldStatus"]
        == "OFF"
    )


@pytest.mark.process
def test_a_resumed_stream_is_refused_before_sending_when_the_key_now_exists(
    proxied, s3_env, bucket, s3_client, tmp_path
):
    """Difference G: a stream's resume checks HeadObject before it sends, as a file's does
    (it used to send every remaining part and meet only Complete's If-None-Match)."""
    from tests.test_stream import cp_args, pipe_into

    size, state = 40 * MiB, tmp_path / "s"
    pipe_into(s3_env, size, 76, *cp_args(bucket, state, "--no-overwrite"), kill_after_parts=2,
              state=state)  # fmt: skip
    assert _journal(state)[-1]["type"] == "part"
    s3_client.put_object(Bucket=bucket, Key="k", Body=EXISTING)  # someone else's, meanwhile
    env, proxy = proxied()
    result, _ = pipe_into(env, size, 76, "upload", "resume", "--state-file", state,
                          "--no-progress", "--endpoint-url", proxy.url)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "already exists; it was left untouched (write-once)" in result.stderr
    assert proxy.requests("ListParts")  # through the proxy
    assert proxy.requests("UploadPart") == [] and proxy.requests("CompleteMultipartUpload") == []
    assert _journal(state)[-1]["type"] == "aborted"
    assert _unchanged(s3_client, bucket) and _no_uploads(s3_client, bucket)


STREAM = bytes(range(256)) * 40_000  # 10 MB: two parts of the stream schedule


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize(
    ("checksum", "data"),
    [("CRC64NVME", STREAM), ("SHA256", STREAM), ("CRC32", STREAM), ("CRC64NVME", b"")],
    ids=["crc64nvme", "sha256-composite", "crc32", "empty"],
)
def test_a_write_once_streams_rerun_with_the_same_stream_sends_nothing(
    proxied, s3_env, bucket, tmp_path, checksum, data
):
    """Audit 8, finding 4: the same stream piped into a write-once cp whose upload completed
    is read through and compared with the object (its size, its checksum, composite or
    full-object): exit 0, "unchanged", only HeadObject sent."""
    state = tmp_path / "s"
    args = ("cp", "-", f"s3://{bucket}/k", "--state-file", state, "--no-overwrite",
            "--checksum", checksum)  # fmt: skip
    assert persevere(s3_env, *args, input=data).returncode == 0
    env, proxy = proxied()
    again = persevere(env, *args, "--json", input=data)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["already_completed"] is True
    assert b"unchanged, nothing sent" in again.stderr, again.stderr
    assert [e.operation for e in proxy.requests()] == ["HeadObject"]
    assert _journal(state)[-1]["type"] == "completed"


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize(
    "other",
    [STREAM[:-1] + b"x", STREAM + b"more", STREAM[:-1], STREAM[: 8 * MiB]],
    ids=["a-byte-differs", "longer", "shorter", "one-part-short"],
)
def test_a_write_once_streams_rerun_with_another_stream_is_refused(
    proxied, s3_env, bucket, s3_client, tmp_path, other
):
    """Another stream is not the object: refused as an existing key is (exit 1), the object
    and the state file left as they were, nothing sent."""
    state = tmp_path / "s"
    args = ("cp", "-", f"s3://{bucket}/k", "--state-file", state, "--no-overwrite")
    assert persevere(s3_env, *args, input=STREAM).returncode == 0
    env, proxy = proxied()
    again = persevere(env, *args, input=other)
    assert again.returncode == 1, again.stderr
    assert (
        f"s3://{bucket}/k already exists; it was left untouched (write-once), nothing was "
        "uploaded: the stream piped in is not the one it was completed from"
    ).encode() in again.stderr
    assert b"Traceback" not in again.stderr
    assert [e.operation for e in proxy.requests()] == ["HeadObject"]
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == STREAM
    assert _journal(state)[-1]["type"] == "completed"


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_write_once_streams_rerun_after_its_object_was_deleted_uploads_it_again(
    s3_env, bucket, s3_client, tmp_path
):
    """The object gone, nothing is read to compare: the stream is uploaded again."""
    state = tmp_path / "s"
    args = ("cp", "-", f"s3://{bucket}/k", "--state-file", state, "--no-overwrite")
    assert persevere(s3_env, *args, input=STREAM).returncode == 0
    s3_client.delete_object(Bucket=bucket, Key="k")
    again = persevere(s3_env, *args, input=STREAM[::-1])
    assert again.returncode == 0, again.stderr
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == STREAM[::-1]


@pytest.mark.slow
@pytest.mark.process
def test_a_write_once_streams_rerun_holds_no_more_than_a_buffer_of_it(s3_env, bucket, tmp_path):
    """The stream compared is hashed as it is read, never held: the re-run's peak memory is
    well under half the stream's length (Python and botocore take about 80 MiB)."""
    from tests.test_stream import cp_args, pipe_into

    size, state = 256 * MiB, tmp_path / "s"
    first, _ = pipe_into(s3_env, size, 5, *cp_args(bucket, state, "--no-overwrite"))
    assert first.returncode == 0, first.stderr
    again, rss_kib = pipe_into(s3_env, size, 5, *cp_args(bucket, state, "--no-overwrite"))
    assert again.returncode == 0, again.stderr
    assert "unchanged, nothing sent" in again.stderr
    assert 0 < rss_kib < size // 2 // 1024, rss_kib
