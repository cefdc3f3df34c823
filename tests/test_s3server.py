"""The test server itself: if these fail, every integration test's failure means nothing."""

from __future__ import annotations

import boto3  # type: ignore[import-untyped, unused-ignore]
import pytest
from botocore.exceptions import ClientError

from tests.conftest import MakeFile, S3Client, sha256_of_file, sha256_of_object


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
