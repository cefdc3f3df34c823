"""The HTTP proxy itself, against the real SeaweedFS: tests built on it rely on these."""

from __future__ import annotations

import base64
import hashlib

import boto3  # type: ignore[import-untyped, unused-ignore]
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from persevere._checksums import CRC64NVME, b64
from tests.httpproxy import HttpProxy, Reply, s3_operation


def _client(proxy: HttpProxy, server):
    return boto3.client(
        "s3",
        endpoint_url=proxy.url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"total_max_attempts": 1},
        ),
    )


@pytest.mark.parametrize(
    ("method", "target", "operation"),
    [
        ("POST", "/b/k?uploads", "CreateMultipartUpload"),
        ("PUT", "/b/k?partNumber=3&uploadId=x", "UploadPart"),
        ("POST", "/b/k?uploadId=x", "CompleteMultipartUpload"),
        ("DELETE", "/b/k?uploadId=x", "AbortMultipartUpload"),
        ("GET", "/b/k?uploadId=x&part-number-marker=0", "ListParts"),
        ("GET", "/b?uploads", "ListMultipartUploads"),
        ("GET", "/b/k?attributes", "GetObjectAttributes"),
        ("HEAD", "/b/k", "HeadObject"),
        ("GET", "/b/k", "GetObject"),
        ("PUT", "/b/k", "PutObject"),
        ("PUT", "/b", "CreateBucket"),
        ("GET", "/", "ListBuckets"),
    ],
)
def test_operations_are_named(method, target, operation):
    assert s3_operation(method, target) == operation


def test_records_requests_and_passes_bytes(s3_server, s3_env, bucket):
    with HttpProxy.in_front_of(s3_server.endpoint_url) as proxy:
        client = _client(proxy, s3_server)
        body = bytes(range(256)) * 4096
        client.put_object(Bucket=bucket, Key="k", Body=body, IfNoneMatch="*")
        assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == body
        with pytest.raises(ClientError) as exists:
            client.put_object(Bucket=bucket, Key="k", Body=b"x", IfNoneMatch="*")
        assert exists.value.response["Error"]["Code"] == "PreconditionFailed"

    puts = proxy.requests("PutObject")
    assert [p.header("if-none-match") for p in puts] == ["*", "*"]
    assert [p.status for p in puts] == [200, 412]
    assert proxy.requests("GetObject")[0].status == 200
    assert all(e.stripped == [] for e in proxy.requests())


def test_strips_checksums_from_headers_and_xml(s3_server, s3_env, bucket):
    part = b"p" * 1000
    checksum = b64(CRC64NVME.of(part))
    with HttpProxy.in_front_of(s3_server.endpoint_url, strip_checksums=True) as proxy:
        client = _client(proxy, s3_server)
        upload_id = client.create_multipart_upload(
            Bucket=bucket, Key="m", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
        )["UploadId"]
        sent = client.upload_part(
            Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=1, Body=part,
            ChecksumCRC64NVME=checksum,
        )  # fmt: skip
        done = client.complete_multipart_upload(
            Bucket=bucket, Key="m", UploadId=upload_id, ChecksumType="FULL_OBJECT",
            ChecksumCRC64NVME=checksum, MpuObjectSize=len(part),
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": sent["ETag"],
                                        "ChecksumCRC64NVME": checksum}]},
        )  # fmt: skip
        head = client.head_object(Bucket=bucket, Key="m", ChecksumMode="ENABLED")

    # The client sees an endpoint that confirms no checksum...
    assert "ChecksumCRC64NVME" not in sent and "ChecksumCRC64NVME" not in done
    assert "ChecksumCRC64NVME" not in head
    assert sent["ETag"].strip('"') == hashlib.md5(part).hexdigest()
    # ...though the server behind echoed and stored it.
    (part_exchange,) = proxy.requests("UploadPart")
    assert part_exchange.header("x-amz-checksum-crc64nvme") == checksum
    assert "x-amz-checksum-crc64nvme" in [n.lower() for n in part_exchange.stripped]
    assert "ChecksumCRC64NVME" in proxy.requests("CompleteMultipartUpload")[0].stripped


def test_strip_predicate_and_canned_reply(s3_server, s3_env, bucket):
    def refuse_md5(exchange):
        if exchange.operation == "UploadPart" and exchange.header("content-md5"):
            return Reply.s3_error(501, "NotImplemented", "Content-MD5 is not supported")
        return None

    with HttpProxy.in_front_of(
        s3_server.endpoint_url,
        strip_checksums=lambda e: e.query.get("partNumber") == ["2"],
        reply=refuse_md5,
    ) as proxy:
        client = _client(proxy, s3_server)
        upload_id = client.create_multipart_upload(Bucket=bucket, Key="p")["UploadId"]
        echoes = []
        for number in (1, 2):
            data = bytes([number]) * 100
            response = client.upload_part(
                Bucket=bucket, Key="p", UploadId=upload_id, PartNumber=number, Body=data,
                ChecksumCRC64NVME=b64(CRC64NVME.of(data)),
            )  # fmt: skip
            echoes.append("ChecksumCRC64NVME" in response)
        md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
        with pytest.raises(ClientError) as refused:
            client.upload_part(Bucket=bucket, Key="p", UploadId=upload_id, PartNumber=3,
                               Body=b"x", ContentMD5=md5)  # fmt: skip
        # The connection stays usable after a canned answer (its body was drained).
        parts = client.list_parts(Bucket=bucket, Key="p", UploadId=upload_id)["Parts"]

    assert echoes == [True, False]
    assert refused.value.response["Error"]["Code"] == "NotImplemented"
    assert [p["PartNumber"] for p in parts] == [1, 2]  # part 3 never reached the server
    assert proxy.requests("UploadPart")[2].replied_by_proxy
