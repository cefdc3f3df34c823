"""Conventions users bring from the aws cli: ``--request-payer``, ``s3://`` URLs everywhere,
``--dry-run``. Requests are checked through the recording proxy (:mod:`tests.httpproxy`), in
front of the local SeaweedFS, and the outcome on the server itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import interrupt_after_parts, sha256_of_file, sha256_of_object
from tests.httpproxy import HttpProxy

MiB = 1024 * 1024


def persevere(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "persevere", *map(str, args)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def recorded(s3_server, s3_env):
    """(env pointing at a recording proxy in front of the local S3, the proxy)."""
    with HttpProxy.in_front_of(s3_server.endpoint_url) as proxy:
        yield {**s3_env, "AWS_ENDPOINT_URL": proxy.url}, proxy


def _journal(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_text().splitlines()]


# -- --request-payer -----------------------------------------------------------------------------
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
