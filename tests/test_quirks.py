"""Quirks of S3-compatible endpoints that persevere handles, reproduced on the local SeaweedFS
by the HTTP proxy (:mod:`tests.httpproxy`) rewriting its answers.

- A composite checksum stated without its ``-N`` (moto's HeadObject): the digest implies the
  part count, so it is compared alone; any other digest is still a mismatch.
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
