"""The integration subset, on every server of the matrix: start, kill -9, resume, status, list,
abort, verify, and each checksum algorithm.

Where a server does not verify what persevere sends, a pinned algorithm is refused at the
first part (issue 13), and the default falls back to Content-MD5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import ServerTraits
from tests.conftest import interrupt_after_parts, persevere, sha256_of_file, sha256_of_object

# Slow (make test-all, CI): the compatibility matrix (moto, JuiceFS).
pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CLASSIC = ["CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1"]
EXTENDED = ["SHA512", "MD5", "XXHASH64", "XXHASH3", "XXHASH128"]
NOT_VERIFIED = "did not verify"  # the phrase of persevere's refusal (see _checksum_mode.py)


def _journal(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in state.read_text().splitlines()]


def test_default_checksum_round_trip(
    server_traits: ServerTraits, s3_env, bucket, s3_client, make_file, tmp_path
):
    file = make_file(12 * MiB + 12_345, seed=1)
    state = tmp_path / "s"
    started = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                        state, "--part-size", "5MiB", "--no-progress")  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
    lines = _journal(state)
    assert lines[-1]["type"] == "completed"
    assert sorted(line["part_number"] for line in lines if line["type"] == "part") == [1, 2, 3]
    status = json.loads(persevere(s3_env, "upload", "status", "--state-file", state,
                                  "--json").stdout)  # fmt: skip
    assert status["outcome"]["type"] == "completed"


@pytest.mark.parametrize("algorithm", CLASSIC)
def test_pinned_checksum(
    server_traits: ServerTraits, algorithm, s3_env, bucket, s3_client, make_file,
    tmp_path,
):  # fmt: skip
    """A pinned algorithm works where the endpoint verifies it, and is refused where not."""
    file = make_file(12 * MiB + 7, seed=2)
    result = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/{algorithm}",
                       "--state-file", tmp_path / "s", "--checksum", algorithm,
                       "--part-size", "5MiB", "--no-progress")  # fmt: skip
    if server_traits.verifies_part_checksums:
        assert result.returncode == 0, result.stderr
        assert sha256_of_object(s3_client, bucket, algorithm) == sha256_of_file(file)
        if server_traits.object_attributes:
            verified = persevere(s3_env, "verify", file, f"s3://{bucket}/{algorithm}")
            assert verified.returncode == 0, verified.stdout + verified.stderr
        return
    assert result.returncode == 1, result.stderr
    assert NOT_VERIFIED in result.stderr and "Traceback" not in result.stderr
    # The way on is to abort (a resume would meet the same endpoint), and it is what is printed.
    assert "upload resume" not in result.stderr and "persevere upload abort" in result.stderr
    # Refused at the first part: nothing was completed under the key.
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket, Prefix=algorithm)


@pytest.mark.parametrize("algorithm", [a for a in EXTENDED if a != "MD5"])
def test_extended_algorithm(
    server_traits: ServerTraits, algorithm, s3_env, bucket, s3_client, make_file,
    tmp_path,
):  # fmt: skip
    """SHA512 and XXHASH*: refused by the endpoint up front, or refused as not verified."""
    file = make_file(6 * MiB, seed=3)
    result = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/{algorithm}",
                       "--state-file", tmp_path / "s", "--checksum", algorithm,
                       "--no-progress")  # fmt: skip
    if server_traits.refuses_extended_algorithms:
        assert result.returncode == 1, result.stderr
        assert "not supported by this endpoint" in result.stderr
        return
    # moto accepts the algorithm, verifies nothing, and stores a SHA256 under its name;
    # JuiceFS ignores it: persevere reports success for bytes nobody checked.
    assert result.returncode == 1, result.stderr
    assert NOT_VERIFIED in result.stderr and "Traceback" not in result.stderr
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket, Prefix=algorithm)


@pytest.mark.process
def test_kill_status_list_resume_verify(
    server_traits: ServerTraits, s3_env, bucket, s3_client, make_file, tmp_path
):
    file = make_file(40 * MiB + 7, seed=4)
    state = tmp_path / "s"
    killed = interrupt_after_parts(
        s3_env,
        ["upload", "start", file, f"s3://{bucket}/big", "--state-file", state,
         "--part-size", "5MiB", "--no-progress", "-c", "2"],
        state, 2,
    )  # fmt: skip
    assert killed.returncode == -9
    recorded = sum(1 for line in _journal(state) if line["type"] == "part")
    assert 2 <= recorded < 9

    status = persevere(s3_env, "upload", "status", "--state-file", state, "--json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["parts_done"] == recorded and document["part_count"] == 9
    assert document["remote"]["exists"] and document["remote"]["parts"] >= recorded

    listed = persevere(s3_env, "upload", "list", "--s3-bucket", bucket, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [u["key"] for u in json.loads(listed.stdout)["uploads"]] == ["big"]

    resumed = persevere(s3_env, "upload", "resume", "--state-file", state, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["bytes_sent"] <= 40 * MiB + 7 - recorded * 5 * MiB
    assert sha256_of_object(s3_client, bucket, "big") == sha256_of_file(file)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    if server_traits.object_attributes:
        verified = persevere(s3_env, "verify", file, f"s3://{bucket}/big", "--state-file", state)
        assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.process
def test_abort_then_resume_is_refused(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(20 * MiB, seed=5)
    state = tmp_path / "s"
    interrupt_after_parts(
        s3_env,
        ["upload", "start", file, f"s3://{bucket}/a", "--state-file", state,
         "--part-size", "5MiB", "--no-progress", "-c", "1"],
        state, 1,
    )  # fmt: skip
    aborted = persevere(s3_env, "upload", "abort", "--state-file", state)
    assert aborted.returncode == 0, aborted.stderr
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert _journal(state)[-1]["type"] == "aborted"
    resumed = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert resumed.returncode == 1 and "was aborted" in resumed.stderr


@pytest.mark.process
def test_resume_after_upload_aborted_elsewhere(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(20 * MiB, seed=6)
    state = tmp_path / "s"
    interrupt_after_parts(
        s3_env,
        ["upload", "start", file, f"s3://{bucket}/g", "--state-file", state,
         "--part-size", "5MiB", "--no-progress", "-c", "1"],
        state, 1,
    )  # fmt: skip
    upload_id = _journal(state)[0]["upload_id"]
    s3_client.abort_multipart_upload(Bucket=bucket, Key="g", UploadId=upload_id)
    resumed = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert resumed.returncode == 1, resumed.stderr
    assert "no longer exists on S3" in resumed.stderr


def test_verify_match_and_mismatch(
    server_traits: ServerTraits, s3_env, bucket, make_file, tmp_path
):
    """With the state file, its parts give the layout (they reproduce the object's ETag or
    checksum) on every server; without it, a server that tells no part sizes (no
    GetObjectAttributes, no HeadObject partNumber) gets "cannot tell" (5), never MISMATCH."""
    file = make_file(11 * MiB, seed=7)
    state = tmp_path / "s"
    started = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/v", "--state-file",
                        state, "--part-size", "5MiB", "--no-progress")  # fmt: skip
    assert started.returncode == 0, started.stderr
    same = persevere(s3_env, "verify", file, f"s3://{bucket}/v", "--state-file", state, "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    assert json.loads(same.stdout)["outcome"] == "match"
    other = make_file(11 * MiB, seed=8)
    differs = persevere(s3_env, "verify", other, f"s3://{bucket}/v", "--state-file", state)
    assert differs.returncode == 4, differs.stdout + differs.stderr
    assert "first differing part: 1 " in differs.stdout
    bare = persevere(s3_env, "verify", file, f"s3://{bucket}/v", "--json")
    if server_traits.object_attributes:
        assert bare.returncode == 0, bare.stdout + bare.stderr
    else:
        assert bare.returncode == 5, bare.stdout + bare.stderr
        assert "needs the sizes of the object's parts" in json.loads(bare.stdout)["reason"]
