"""Write-once on every server of the matrix: ``--no-overwrite`` and object lock.

What persevere sends is the same everywhere (the recording proxy checks it); what the server
does with it differs, and the tests state it per server (:class:`ServerTraits`):
``If-None-Match: *`` on CompleteMultipartUpload is honoured by SeaweedFS and moto (412), and
ignored by JuiceFS's gateway, which overwrites. persevere's HeadObject before it sends anything
catches an existing key everywhere; only a key created *during* the upload depends on the
server. Object lock options go on CreateMultipartUpload everywhere; on a bucket without object
lock SeaweedFS and JuiceFS refuse them, moto accepts them and applies nothing (SeaweedFS
applying them on a lock bucket: tests/test_write_once.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compat.conftest import ServerTraits
from tests.conftest import persevere, sha256_of_file, sha256_of_object
from tests.httpproxy import HttpProxy, Reply

# Slow (make test-all, CI): the compatibility matrix (moto, JuiceFS).
pytestmark = pytest.mark.slow

MiB = 1024 * 1024
EXISTING = b"the backup that must stay"


def _error_lines(stderr: str) -> list[str]:
    """stderr but for what start and cp announce before anything is sent (the plan, the state
    file's path): the error's lines."""
    notes = ("persevere: plan:", "persevere: state file:")
    return [line for line in stderr.strip().splitlines() if not line.startswith(notes)]


def _journal(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_text().splitlines()]


def _body(s3_client, bucket: str, key: str) -> bytes:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_an_existing_key_is_refused_before_anything_is_sent(
    compat_server, s3_env, bucket, s3_client, make_file, tmp_path
):
    s3_client.put_object(Bucket=bucket, Key="k", Body=EXISTING)
    state = tmp_path / "s"
    with HttpProxy.in_front_of(compat_server.endpoint_url) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = persevere(env, "upload", "start", make_file(MiB, seed=81), f"s3://{bucket}/k",
                           "--state-file", state, "--no-overwrite")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "already exists; it was left untouched (write-once)" in result.stderr
    assert [e.operation for e in proxy.requests()] == ["HeadObject"]
    assert not state.exists()
    assert _body(s3_client, bucket, "k") == EXISTING


def test_a_key_created_during_the_upload(
    server_traits: ServerTraits, compat_server, s3_env, bucket, s3_client, make_file, tmp_path
):
    """The proxy hides the object from the early HeadObject (another writer created it just
    after): the conditional completion is all that is left, and that is the server's."""
    s3_client.put_object(Bucket=bucket, Key="k", Body=EXISTING)
    file = make_file(MiB, seed=82)
    state = tmp_path / "s"

    def hide(exchange):
        return Reply(404, b"", ()) if exchange.operation == "HeadObject" else None

    with HttpProxy.in_front_of(compat_server.endpoint_url, reply=hide) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                           state, "--no-overwrite")  # fmt: skip
    assert [e.header("if-none-match") for e in proxy.requests("CompleteMultipartUpload")] == ["*"]
    if server_traits.if_none_match_on_complete:
        assert result.returncode == 1, result.stderr
        assert "already exists; it was left untouched (write-once), the upload was aborted" in (
            result.stderr
        )
        assert _journal(state)[-1]["type"] == "aborted"
        assert _body(s3_client, bucket, "k") == EXISTING
        assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    else:  # the server ignores If-None-Match: the README says the guarantee is the server's
        assert result.returncode == 0, result.stderr
        assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


def test_object_lock_headers_on_a_bucket_without_object_lock(
    server_traits: ServerTraits, compat_server, s3_env, bucket, s3_client, make_file, tmp_path
):
    """The lock options go on CreateMultipartUpload everywhere; a server that refuses them
    (the bucket has no object lock) gets persevere's one line with the fix."""
    state = tmp_path / "s"
    with HttpProxy.in_front_of(compat_server.endpoint_url) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = persevere(env, "upload", "start", make_file(MiB, seed=83), f"s3://{bucket}/k",
                           "--state-file", state, "--object-lock-mode", "COMPLIANCE",
                           "--object-lock-retain-until", "2099-01-01",
                           "--object-lock-legal-hold", "ON")  # fmt: skip
    create = proxy.requests("CreateMultipartUpload")[0]
    assert create.header("x-amz-object-lock-mode") == "COMPLIANCE"
    assert create.header("x-amz-object-lock-retain-until-date") == "2099-01-01T00:00:00Z"
    assert create.header("x-amz-object-lock-legal-hold") == "ON"
    if server_traits.refuses_lock_without_bucket_lock:
        assert result.returncode == 1, result.stderr
        [line] = _error_lines(result.stderr)
        assert "S3 refused the object lock options" in line
        assert f"bucket {bucket} " in line and "object lock; enable it" in line
        assert not state.exists()
    else:  # moto: accepted, and nothing applied (it honours lock on PutObject only)
        assert result.returncode == 0, result.stderr


def test_dry_run_probe(compat_server, s3_env, bucket, s3_client, make_file, tmp_path):
    """--dry-run's Create+Abort probe works on every server, and sends no part."""
    state = tmp_path / "s"
    with HttpProxy.in_front_of(compat_server.endpoint_url) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = persevere(env, "cp", make_file(12 * MiB, seed=84), f"s3://{bucket}/k",
                           "--state-file", state, "--dry-run", "--max-parts", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "plan:        2 part(s) of 8.0 MiB" in result.stdout
    assert [e.operation for e in proxy.requests()] == [
        "HeadObject", "CreateMultipartUpload", "AbortMultipartUpload",
    ]  # fmt: skip
    assert not state.exists()
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
