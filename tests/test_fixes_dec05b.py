"""Defects found in the session of 2026-12-05 (second), each test failing on its base."""

from __future__ import annotations

from tests.conftest import persevere as cli

EXIT_MISMATCH = 4


def test_a_single_part_mismatch_sends_no_one_looking_for_a_differing_part(
    s3_env, bucket, s3_client, make_file
):
    """``verify`` of a file against a single-part object (PutObject, as the aws cli writes a
    small file) that differs: the MISMATCH line ended "the endpoint reports no per-part
    checksums (pass the upload's --state-file to name the differing part)": there is one
    part, the object; no state file names more. A multipart object still gets the hint."""
    good, other = make_file(1000, seed=1, name="good"), make_file(1000, seed=2, name="other")
    s3_client.put_object(Bucket=bucket, Key="one", Body=good.read_bytes(),
                         ChecksumAlgorithm="CRC32")  # fmt: skip
    done = cli(s3_env, "verify", other, f"s3://{bucket}/one", "--no-progress")
    assert done.returncode == EXIT_MISMATCH, done.stderr
    assert "MISMATCH" in done.stdout and "CRC32" in done.stdout, done.stdout
    assert "per-part" not in done.stdout and "--state-file" not in done.stdout, done.stdout
    assert cli(s3_env, "verify", good, f"s3://{bucket}/one", "--no-progress").returncode == 0
