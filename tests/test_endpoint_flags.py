"""What the slow tests (HTTPS, the moto/JuiceFS matrix) proved that make test keeps, cheaply,
against the session's SeaweedFS: --ca-bundle and --no-verify-ssl checked before any request
over plain HTTP, an https:// URL to a plain HTTP endpoint, verify's fallbacks for part sizes,
and Content-MD5 mode (what an endpoint without flexible checksums gets).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random

import pytest

import persevere as pv
from tests.conftest import MiB, persevere, sha256_of_file, sha256_of_object
from tests.httpproxy import HttpProxy, Reply
from tests.ruleproxy import Rule, RuleProxy

INSECURE = "WARNING: --no-verify-ssl: the endpoint's TLS certificate is NOT verified"


def test_a_missing_ca_bundle_or_one_with_no_verify_ssl_is_bad_input(
    s3_env, bucket, make_file, tmp_path
):
    file = make_file(1000)
    start = ["upload", "start", file, f"s3://{bucket}/k", "--no-progress"]
    missing = persevere(s3_env, *start, "--state-file", tmp_path / "a", "--ca-bundle",
                        tmp_path / "no-such.pem")  # fmt: skip
    assert missing.returncode == 2, missing.stderr
    assert f"CA bundle {tmp_path / 'no-such.pem'} does not exist" in missing.stderr
    ca = tmp_path / "ca.pem"
    ca.write_text("not read: refused before\n")
    both = persevere(s3_env, *start, "--state-file", tmp_path / "b", "--ca-bundle", ca,
                     "--no-verify-ssl")  # fmt: skip
    assert both.returncode == 2 and "--ca-bundle" in both.stderr, both.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    for result in (missing, both):
        assert "Traceback" not in result.stderr


def test_no_verify_ssl_warns_on_every_command_even_over_http(s3_env, bucket, make_file, tmp_path):
    """Plain HTTP has no certificate to skip, but the flag is still said out loud (and is
    not recorded in the state file)."""
    file, state = make_file(6 * MiB, seed=5), tmp_path / "s"
    for command in (
        ["upload", "start", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"],
        ["upload", "status", "--state-file", state, "--json"],
        ["upload", "list", "--s3-bucket", bucket, "--json"],
        ["upload", "resume", "--state-file", state, "--no-progress"],
        ["verify", file, f"s3://{bucket}/k", "--no-progress"],
    ):
        result = persevere(s3_env, *command, "--no-verify-ssl")
        assert INSECURE in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.returncode == 0, (command, result.stderr)  # resume: already completed
    header = json.loads(state.read_bytes().splitlines()[0])
    assert not any("verify" in name for name in header)
    resumed = persevere(s3_env, "upload", "resume", "--state-file", state, "--ca-bundle",
                        tmp_path / "no-such.pem")  # fmt: skip
    assert resumed.returncode == 2 and "does not exist" in resumed.stderr, resumed.stderr


def _foreign_multipart_object(s3_server, bucket, tmp_path, seed):
    """An object of two parts uploaded by someone else (no state file gives its layout), and
    a file with its bytes."""
    data = random.Random(seed).randbytes(11 * MiB)
    import boto3

    client = boto3.client(
        "s3", endpoint_url=s3_server.endpoint_url, aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key, region_name=s3_server.region,
    )  # fmt: skip
    upload = client.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    parts = []
    for number, chunk in enumerate((data[: 6 * MiB], data[6 * MiB :]), 1):
        etag = client.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=number,
                                  Body=chunk)["ETag"]  # fmt: skip
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload,
                                     MultipartUpload={"Parts": parts})  # fmt: skip
    client.close()
    file = tmp_path / "same"
    file.write_bytes(data)
    return file


@pytest.mark.parametrize("status", [403, 501])
def test_verify_says_why_when_no_part_size_can_be_had(s3_env, s3_server, bucket, tmp_path, status):
    """An endpoint without GetObjectAttributes that also refuses HeadObject with PartNumber:
    no verdict, and the answers named."""
    file = _foreign_multipart_object(s3_server, bucket, tmp_path, status)
    rules = [
        Rule("GET", "attributes", refuse=(403, "AccessDenied")),
        Rule("HEAD", "partNumber", refuse=(status, "NotImplemented")),
    ]
    with RuleProxy.in_front_of(s3_server.endpoint_url, rules) as proxy:
        result = pv.verify_sync(file, bucket, "k", endpoint=pv.Endpoint(proxy.url))
    assert result.outcome == "unknown", result
    assert "GetObjectAttributes answers AccessDenied" in result.reason, result.reason
    assert f"HeadObject with PartNumber answers {status}" in result.reason, result.reason


def test_verify_asks_head_object_when_attributes_list_no_parts(s3_env, s3_server, bucket,
                                                              tmp_path):  # fmt: skip
    """GetObjectAttributes answers, without the parts (as some endpoints do): the sizes come
    from HeadObject with PartNumber, and the bytes are compared all the same."""
    file = _foreign_multipart_object(s3_server, bucket, tmp_path, 7)
    size = file.stat().st_size
    no_parts = Reply(
        200,
        b'<?xml version="1.0" encoding="UTF-8"?>\n<GetObjectAttributesResponse>'
        b"<ObjectSize>%d</ObjectSize></GetObjectAttributesResponse>" % size,
    )

    def reply(exchange):
        return no_parts if exchange.operation == "GetObjectAttributes" else None

    with HttpProxy.in_front_of(s3_server.endpoint_url, reply=reply) as proxy:
        same = pv.verify_sync(file, bucket, "k", endpoint=pv.Endpoint(proxy.url))
        flipped = tmp_path / "flipped"
        data = bytearray(file.read_bytes())
        data[8 * MiB] ^= 1
        flipped.write_bytes(bytes(data))
        other = pv.verify_sync(flipped, bucket, "k", endpoint=pv.Endpoint(proxy.url))
    assert proxy.requests("GetObjectAttributes"), "the proxy answered GetObjectAttributes"
    assert same.outcome == "match", same
    assert other.outcome == "mismatch", other


def test_an_https_url_to_a_plain_http_endpoint_is_one_line(s3_env, s3_server, bucket, make_file,
                                                           tmp_path):  # fmt: skip
    """The TLS handshake fails (the server speaks HTTP): exit 1, what failed and what to check,
    with or without --no-verify-ssl."""
    url = s3_server.endpoint_url.replace("http://", "https://")
    for extra in ([], ["--no-verify-ssl"]):
        state = tmp_path / f"s{len(extra)}"
        result = persevere(s3_env, "upload", "start", make_file(1000), f"s3://{bucket}/k",
                           "--state-file", state, "--endpoint-url", url, *extra)  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "persevere: error: CreateMultipartUpload: TLS failure:" in result.stderr
        assert "persevere: check the endpoint URL and the CA bundle" in result.stderr
        assert "Traceback" not in result.stderr
        assert (INSECURE in result.stderr) == bool(extra)


def test_content_md5_mode_round_trip(s3_env, s3_client, bucket, make_file, tmp_path):
    """--checksum MD5: every part sent with Content-MD5, no flexible checksum; the result's
    checksum is the multipart ETag's (MD5 of the parts' MD5s), and verify agrees."""
    file, state = make_file(11 * MiB, seed=9), tmp_path / "s"
    args = ["--checksum", "MD5", "--part-size", "5MiB", "--json", "--no-progress"]
    done = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                     *args)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    data = file.read_bytes()
    digests = b"".join(
        hashlib.md5(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)
    )
    combined = hashlib.md5(digests)
    assert result["checksum_algorithm"] == "MD5"
    assert result["checksum"] == base64.b64encode(combined.digest()).decode() + "-3"
    assert result["etag"] == f'"{combined.hexdigest()}-3"'
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
    verified = persevere(
        s3_env, "verify", file, f"s3://{bucket}/k", "--state-file", state, "--json"
    )
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["outcome"] == "match"


def test_status_and_abort_by_state_file_take_the_endpoint_overrides(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    """--endpoint-url and --profile override what the state file recorded, as for resume:
    status and abort accepted them, and went to the recorded endpoint as the recorded identity
    all the same."""
    file, state = make_file(6 * MiB, seed=11), tmp_path / "s"
    made = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                     "--shards", "1")  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = tmp_path / "aws-config"
    config.write_text(f"[profile other]\naws_access_key_id = {s3_server.second_access_key}\n"
                      f"aws_secret_access_key = {s3_server.second_secret_key}\n")  # fmt: skip
    env = {**s3_env, "AWS_CONFIG_FILE": str(config)}
    with HttpProxy.in_front_of(s3_server.endpoint_url) as proxy:
        overrides = ["--state-file", state, "--endpoint-url", proxy.url, "--profile", "other"]
        status = persevere(env, "upload", "status", *overrides, "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["remote"]["exists"] is True
        aborted = persevere(env, "upload", "abort", *overrides)
        assert aborted.returncode == 0, aborted.stderr
        requests = proxy.requests()
    assert {e.operation for e in requests} == {"ListParts", "AbortMultipartUpload"}
    signed_by = {(e.header("Authorization") or "").split("Credential=")[-1][:20] for e in requests}
    assert signed_by == {s3_server.second_access_key}
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
