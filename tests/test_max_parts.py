"""``--max-parts``: endpoints that allow fewer than S3's 10,000 parts (Scaleway: 1,000).

The plan (automatic part size, refusals) respects the limit; a file that cannot fit even in
5 GiB parts is refused before any request is sent, which the recording proxy proves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import persevere, sha256_of_file, sha256_of_object
from tests.httpproxy import HttpProxy

MiB = 1024 * 1024
GiB = 1024 * MiB


@pytest.fixture
def recorded(s3_server, s3_env):
    """(env pointing at a recording proxy in front of the local S3, the proxy)."""
    with HttpProxy.in_front_of(s3_server.endpoint_url) as proxy:
        yield {**s3_env, "AWS_ENDPOINT_URL": proxy.url}, proxy


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)  # no disk used
    return path


def _header(state: Path) -> dict:
    return json.loads(state.read_text().splitlines()[0])


def test_auto_part_size_keeps_the_file_within_the_limit(recorded, bucket, s3_client, make_file,
                                                        tmp_path):  # fmt: skip
    env, proxy = recorded
    file = make_file(20 * MiB + 1, seed=31)
    state = tmp_path / "s"
    result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                       "--max-parts", "2", "--no-progress", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["part_count"] == 2
    assert _header(state)["part_size"] == 11 * MiB  # 20 MiB + 1 in 2 parts, MiB-aligned
    assert "plan: 20.0 MiB in 2 parts of 11.0 MiB" in result.stderr  # the plan it announced
    assert len(proxy.requests("UploadPart")) == 2
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


def test_cp_takes_the_limit_too(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(17 * MiB, seed=32)
    result = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s",
                       "--max-parts", "1", "--no-progress", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["part_count"] == 1
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.parametrize("command", ["start", "cp"])
def test_a_file_too_large_for_the_limit_is_refused_before_any_request(
    recorded, bucket, tmp_path, command
):
    env, proxy = recorded
    file = _sparse(tmp_path / "big.bin", 1000 * 5 * GiB + 1)
    state = tmp_path / "s"
    args = ["upload", "start"] if command == "start" else ["cp"]
    result = persevere(env, *args, file, f"s3://{bucket}/k", "--state-file", state,
                       "--max-parts", "1000", "--no-progress")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "persevere: error: --max-parts: file is 4.9 TiB (5,368,709,120,001 bytes); in at most "
        "1,000 parts of 5 GiB (S3's largest part) only 4.9 TiB (5,368,709,120,000 bytes) fit"
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert proxy.requests() == []
    assert not state.exists()


def test_an_explicit_part_size_over_the_limit_is_refused(recorded, bucket, tmp_path):
    env, proxy = recorded
    file = _sparse(tmp_path / "f.bin", 30 * MiB)
    result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                       tmp_path / "s", "--max-parts", "3", "--part-size", "5MiB")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "into 6 parts; the part limit allows at most 3" in result.stderr
    assert "--part-size 10MiB or more" in result.stderr
    assert proxy.requests() == []


@pytest.mark.parametrize("value", ["0", "10001"])
def test_the_limit_is_checked_as_a_flag(s3_env, bucket, tmp_path, value):
    file = _sparse(tmp_path / "f.bin", 1)
    result = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--max-parts", value)
    assert result.returncode == 2
    assert "--max-parts" in result.stderr


def test_bench_plans_within_the_limit(recorded, bucket, s3_client):
    env, proxy = recorded
    result = persevere(env, "bench", "--s3-bucket", bucket, "--size", "20MiB", "-c", "2",
                       "--max-parts", "2", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [row["part_size"] for row in json.loads(result.stdout)["rows"]] == [10 * MiB]
    assert len(proxy.requests("UploadPart")) == 2
    refused = persevere(env, "bench", "--s3-bucket", bucket, "--size", "20MiB", "-c", "2",
                        "--max-parts", "2", "--part-size", "5MiB")  # fmt: skip
    assert refused.returncode == 2 and "at most 2" in refused.stderr
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)
