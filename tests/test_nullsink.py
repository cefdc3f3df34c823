"""The benchmarks' S3 null sink (nginx) answers a multipart upload as S3 would, storing nothing.

Skipped where nginx is not installed (Debian: ``apt-get install -y nginx-light``).
"""

from __future__ import annotations

import base64
import select
import shutil
import socket
from collections.abc import Iterator

import boto3  # type: ignore[import-untyped, unused-ignore]
import pytest
from botocore.config import Config

from benchmarks.nullsink import NullSink, size_of_key

# An S3 null sink (nginx): a server, though not the session's (marker: tests/conftest.py).
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin") is None,
        reason="nginx is not installed (apt-get install -y nginx-light)",
    ),
]

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def sink() -> Iterator[NullSink]:
    with NullSink() as running:
        yield running


def test_multipart_upload_round_trip(sink: NullSink) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=sink.endpoint_url,
        aws_access_key_id=sink.access_key,
        aws_secret_access_key=sink.secret_key,
        region_name=sink.region,
        config=Config(retries={"max_attempts": 1}),
    )
    size = 6 * MiB + 3
    key = sink.key_for(size, "test")
    assert size_of_key(key) == size
    upload_id = client.create_multipart_upload(
        Bucket="b", Key=key, ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    crc = base64.b64encode(b"\x01" * 8).decode()
    etags = []
    for number, body in enumerate([b"a" * (6 * MiB), b"b" * 3], start=1):
        part = client.upload_part(
            Bucket="b",
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumCRC64NVME=crc,
        )
        assert part["ChecksumCRC64NVME"] == crc  # echoed, as S3 returns what it verified
        etags.append(part["ETag"])
    done = client.complete_multipart_upload(
        Bucket="b",
        Key=key,
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]
        },
        ChecksumCRC64NVME=crc,
        ChecksumType="FULL_OBJECT",
    )
    assert done["ChecksumCRC64NVME"] == crc
    assert done["Key"] == key
    assert client.head_object(Bucket="b", Key=key)["ContentLength"] == size
    sink.expect("b", "declared/object", 77)
    assert client.head_object(Bucket="b", Key="declared/object")["ContentLength"] == 77


def test_part_answered_only_after_its_whole_body(sink: NullSink) -> None:
    size = 8 * MiB
    with socket.create_connection(("127.0.0.1", int(sink.port or 0))) as conn:
        conn.sendall(
            f"PUT /b/k?partNumber=1&uploadId=x HTTP/1.1\r\nHost: sink\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        conn.sendall(b"x" * (size // 2))
        early, _, _ = select.select([conn], [], [], 0.5)
        assert not early, "the sink answered before the body was sent"
        conn.sendall(b"x" * (size - size // 2))
        ready, _, _ = select.select([conn], [], [], 5.0)
        assert ready
        assert conn.recv(100).startswith(b"HTTP/1.1 200 OK")
