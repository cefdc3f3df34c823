"""The test server itself: if these fail, every integration test's failure means nothing."""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3  # type: ignore[import-untyped, unused-ignore]
import pytest
from botocore.exceptions import ClientError

from tests.conftest import (
    MakeFile,
    S3Client,
    delete_bucket,
    sha256_of_file,
    sha256_of_object,
)

# The suite uses about 90 buckets (given back after each test); the server must hold several
# times that at once.
CAPACITY_BUCKETS = 500


def test_server_stores_bytes_and_enforces_identities(
    s3_client: S3Client, s3_readonly_client: S3Client, bucket: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello, persevere")

    got = s3_client.get_object(Bucket=bucket, Key="hello.txt")["Body"].read()
    assert got == b"hello, persevere"
    assert s3_readonly_client.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == got

    with pytest.raises(ClientError) as denied:
        s3_readonly_client.put_object(Bucket=bucket, Key="nope.txt", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_digest_helpers_agree_on_uploaded_file(
    s3_client: S3Client, bucket: str, make_file: MakeFile
) -> None:
    path = make_file(3 * 1024 * 1024 + 17, seed=7)
    assert path.stat().st_size == 3 * 1024 * 1024 + 17
    assert make_file(path.stat().st_size, seed=7, name="again.bin").read_bytes() == (
        path.read_bytes()
    )

    s3_client.upload_file(str(path), bucket, "data.bin")

    assert sha256_of_object(s3_client, bucket, "data.bin") == sha256_of_file(path)


def test_env_points_sdk_at_server(s3_env: dict[str, str], bucket: str) -> None:
    assert "AWS_CA_BUNDLE" not in s3_env
    client = boto3.client("s3")  # configured by the environment alone, as the CLI will be
    try:
        names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    finally:
        client.close()
    assert bucket in names


@pytest.mark.slow  # a scale run: 500 buckets at once
def test_capacity_does_not_depend_on_free_disk(s3_client: S3Client) -> None:
    """Many more buckets than the suite uses, each holding a multipart upload, all at once.

    Each bucket is a SeaweedFS collection with volumes of its own; a server sized from the free
    disk ran out after a few dozen ("failed to find writable volumes").
    """
    names = [f"capacity-{uuid.uuid4().hex[:12]}-{i:03d}" for i in range(CAPACITY_BUCKETS)]
    body = b"capacity"

    def fill(name: str) -> None:
        s3_client.create_bucket(Bucket=name)
        upload_id = s3_client.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
        etag = s3_client.upload_part(
            Bucket=name, Key="k", UploadId=upload_id, PartNumber=1, Body=body
        )["ETag"]
        s3_client.complete_multipart_upload(
            Bucket=name,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(fill, names))  # re-raises the first failure
        for name in names[:: CAPACITY_BUCKETS // 10]:  # the early ones are still readable too
            assert s3_client.get_object(Bucket=name, Key="k")["Body"].read() == body
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda name: _delete_if_there(s3_client, name), names))


def _delete_if_there(client: S3Client, name: str) -> None:
    with contextlib.suppress(client.exceptions.NoSuchBucket):
        delete_bucket(client, name)
