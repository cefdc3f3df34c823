"""Quirks of S3-compatible endpoints that persevere handles, reproduced on the local SeaweedFS
by the HTTP proxy (:mod:`tests.httpproxy`) rewriting its answers.

- A composite checksum stated without its ``-N`` (moto's HeadObject): the digest implies the
  part count, so it is compared alone; any other digest is still a mismatch.

Then, without a server, how :mod:`persevere._quirks` reads S3's answers.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import persevere, sha256_of_file, sha256_of_object
from tests.httpproxy import HttpProxy

MiB = 1024 * 1024


def _drop_part_count(exchange, headers):
    if exchange.operation != "HeadObject":
        return headers
    return [
        (k, v.rpartition("-")[0] if k.lower().startswith("x-amz-checksum-") and "-" in v else v)
        for k, v in headers
    ]


def _other_digest(exchange, headers):
    if exchange.operation != "HeadObject":
        return headers
    return [(k, "A" + v[1:] if k.lower().startswith("x-amz-checksum-") else v) for k, v in headers]


@pytest.mark.parametrize("command", ["start", "cp"])
def test_composite_checksum_stated_without_its_part_count(
    s3_server, s3_env, bucket, s3_client, make_file, tmp_path, command
):
    file = make_file(11 * MiB, seed=41)
    state = tmp_path / "s"
    args = ["upload", "start"] if command == "start" else ["cp"]
    with HttpProxy.in_front_of(s3_server.endpoint_url, rewrite_headers=_drop_part_count) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        first = persevere(env, *args, file, f"s3://{bucket}/k", "--state-file", state,
                          "--checksum", "SHA256", "--part-size", "5MiB")  # fmt: skip
        assert first.returncode == 0, first.stderr
        stated = proxy.requests("HeadObject")[-1].response_header("x-amz-checksum-sha256")
        assert stated is not None and "-" not in stated  # the quirk was in place
        # cp again: the object is recognised as the one uploaded, nothing is sent.
        again = persevere(env, "cp", file, f"s3://{bucket}/k", "--state-file", state,
                          "--checksum", "SHA256", "--no-progress", "--json")  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["already_completed"] is True
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


def test_another_composite_digest_is_still_a_mismatch(
    s3_server, s3_env, bucket, make_file, tmp_path
):
    file = make_file(11 * MiB, seed=42)
    with HttpProxy.in_front_of(s3_server.endpoint_url, rewrite_headers=_other_digest) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                           tmp_path / "s", "--checksum", "SHA256", "--part-size", "5MiB",
                           "--no-progress")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "after completion has size" in result.stderr and "Traceback" not in result.stderr


# -- how S3's answers are read (pure) ----------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "is_missing", "is_refused"),
    [
        ("404", True, False),  # HeadObject's answer: no body, the status stands in
        ("NoSuchKey", True, False),
        ("NotFound", True, False),
        ("403", False, True),
        ("AccessDenied", False, True),
        ("NoSuchBucket", False, False),
        (None, False, False),
    ],
)
def test_missing_and_refused_whatever_the_endpoint_calls_them(code, is_missing, is_refused):
    from persevere._errors import S3Error
    from persevere._quirks import missing, refused

    exc = S3Error("HeadObject: ...", code=code)
    assert missing(exc) is is_missing
    assert refused(exc) is is_refused


def test_the_object_is_ours_by_size_then_its_checksum_else_its_etag():
    from persevere._checksums import CRC64NVME, ObjectChecksum
    from persevere._quirks import digest_of, object_matches

    ours = ObjectChecksum(CRC64NVME, "EdAimiSS/RI=")
    etag = '"2820ff91f1d65acebd1de1bc45894c30-2"'
    head = {"ContentLength": 10, "ChecksumCRC64NVME": "EdAimiSS/RI=", "ETag": etag}
    assert object_matches(head, 10, ours, None)
    assert not object_matches({**head, "ContentLength": 11}, 10, ours, etag)
    assert not object_matches({**head, "ChecksumCRC64NVME": "AAAAAAAAAAA="}, 10, ours, etag)
    no_checksum = {"ContentLength": 10, "ETag": etag.upper()}  # sent with Content-MD5
    assert object_matches(no_checksum, 10, ours, etag.strip('"'))
    assert not object_matches(no_checksum, 10, ours, None)
    assert digest_of("abc=-3") == digest_of("abc=") == "abc="
