"""Defects found in the session of 2026-12-05 (second), each test failing on its base."""

from __future__ import annotations

import json

import pytest

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


def test_shard_journals_of_a_state_file_named_with_glob_characters_are_found(
    s3_env, bucket, make_file, tmp_path
):
    """A state file named ``backup[1]`` (a bracket, as in a dated or numbered name): its shard
    journals were looked for as a glob of its name, which ``[1]`` turns into a character
    class: none found, status said "0 parts done, 3 unrecorded" after a shard sent 3."""
    file = make_file(12 * 1024 * 1024, seed=3)
    state = tmp_path / "backup[1]"
    start = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                "--shards", "2", "--part-size", "5MiB", "--no-progress")  # fmt: skip
    assert start.returncode == 0, start.stderr
    shard = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2",
                "--no-progress")  # fmt: skip
    assert shard.returncode == 0, shard.stderr
    status = cli(s3_env, "upload", "status", "--state-file", state, "--json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["parts_done"] == 2, document


@pytest.mark.parametrize(
    "asked",
    [{"max_parts": "3"}, {"shards": True}, {"part_size": 5.5 * 1024 * 1024}],
    ids=["max-parts-str", "shards-bool", "part-size-float"],
)
def test_the_apis_numbers_of_the_wrong_type_are_named(s3_env, bucket, make_file, tmp_path, asked):
    """``upload_file_sync(..., max_parts="3")`` was a raw TypeError ('<=' between str and int);
    ``shards=True`` was taken as 1 shard. A UsageError naming the argument, nothing written."""
    import persevere

    file = make_file(1000, seed=4)
    state = tmp_path / "s"
    door = persevere.create_upload_sync if "shards" in asked else persevere.upload_file_sync
    with pytest.raises(persevere.UsageError) as caught:
        door(file, bucket, "k", state, **asked)
    assert next(iter(asked)).replace("_", " ") in str(caught.value)
    assert caught.value.exit_code == 2
    assert not state.exists()
