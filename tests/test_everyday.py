"""Everyday use: orphaned uploads, object options, bandwidth cap, --json, the short form."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import interrupt_after_parts, persevere, sha256_of_file, sha256_of_object

MiB = 1024 * 1024


def test_list_and_abort_orphaned_uploads(s3_env, bucket, s3_client):
    ids = []
    for key in ("dumps/a.sql", "dumps/b.sql", "other/c"):
        upload_id = s3_client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        s3_client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                              Body=b"x" * 1234)  # fmt: skip
        ids.append(upload_id)

    listed = persevere(s3_env, "upload", "list", "--s3-bucket", bucket, "--prefix", "dumps/",
                       "--json")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    uploads = json.loads(listed.stdout)["uploads"]
    assert sorted(u["key"] for u in uploads) == ["dumps/a.sql", "dumps/b.sql"]
    assert all(u["parts"] == 1 and u["bytes"] == 1234 for u in uploads)
    assert {u["upload_id"] for u in uploads} == set(ids[:2])

    recent = persevere(s3_env, "upload", "list", "--s3-bucket", bucket, "--older-than", "1h")
    assert recent.returncode == 0
    assert "no multipart uploads in progress" in recent.stdout
    # ...older than 1h: the younger ones are not "none" (issue 23, case 10)
    assert recent.stdout == (
        f"no multipart uploads in progress older than 1h in s3://{bucket}/ (3 younger, not "
        "listed)\n"
    )
    older = persevere(s3_env, "upload", "list", "--s3-bucket", bucket, "--older-than", "0s")
    assert older.returncode == 0, older.stderr
    assert "3 upload(s) older than 0s, 3.6 KiB billed until aborted:" in older.stdout

    bare = persevere(s3_env, "upload", "list", "--s3-bucket", bucket, "--older-than", "7")
    assert bare.returncode == 2
    assert "Invalid value for '--older-than': '7' has no unit: write e.g. 7d, 7h, 7m or 7s" \
           in bare.stderr  # fmt: skip

    human = persevere(s3_env, "upload", "list", "--s3-bucket", bucket)
    assert "3 upload(s)" in human.stdout and "other/c" in human.stdout

    aborted = persevere(s3_env, "upload", "abort", "--s3-bucket", bucket, "--s3-key",
                        "dumps/a.sql", "--upload-id", ids[0])  # fmt: skip
    assert aborted.returncode == 0, aborted.stderr
    left = s3_client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert sorted(u["Key"] for u in left) == ["dumps/b.sql", "other/c"]

    wrong = persevere(s3_env, "upload", "abort", "--s3-bucket", bucket, "--s3-key",
                      "dumps/a.sql", "--upload-id", ids[0])  # fmt: skip
    assert wrong.returncode == 1
    assert f"no multipart upload {ids[0]}" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def _check_object_options(s3_client, bucket, key):
    head = s3_client.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "text/csv"
    assert head["Metadata"] == {"owner": "alice", "purpose": "backup"}
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == "AES256"
    tags = s3_client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "db")]


OPTIONS = ["--storage-class", "STANDARD_IA", "--metadata", "owner=alice", "--metadata",
           "purpose=backup", "--tagging", "team=db&env=prod", "--sse", "AES256",
           "--acl", "private"]  # fmt: skip


def test_object_options_on_start(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(6 * MiB, name="table.csv")
    result = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/t.csv",
                       "--state-file", tmp_path / "s", "--no-progress", *OPTIONS)  # fmt: skip
    assert result.returncode == 0, result.stderr
    _check_object_options(s3_client, bucket, "t.csv")


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_object_options_survive_resume(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(40 * MiB, seed=71, name="big.csv")
    state = tmp_path / "s"
    args = ["upload", "start", file, f"s3://{bucket}/big.csv", "--state-file", state,
            "--no-progress", "-c", "1", "--part-size", "5MiB", *OPTIONS]  # fmt: skip
    interrupt_after_parts(s3_env, args, state, 2)
    header = json.loads(state.read_bytes().splitlines()[0])
    assert header["object_options"]["StorageClass"] == "STANDARD_IA"

    resumed = persevere(s3_env, "upload", "resume", "--state-file", state, "--json")
    assert resumed.returncode == 0, resumed.stderr
    document = json.loads(resumed.stdout)
    assert document["size"] == 40 * MiB and document["bytes_sent"] < 40 * MiB
    _check_object_options(s3_client, bucket, "big.csv")
    assert sha256_of_object(s3_client, bucket, "big.csv") == sha256_of_file(file)


def test_bad_object_options_are_usage_errors(s3_env, bucket, make_file, tmp_path):
    file = make_file(10)
    for extra, message in [
        (["--storage-class", "COLD"], "is not one of"),
        (["--metadata", "novalue"], "--metadata wants key=value"),
        (["--sse-kms-key-id", "k"], "needs --sse aws:kms"),
        (["--max-bandwidth", "fast"], "not a bandwidth"),
    ]:
        result = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k",
                           "--state-file", tmp_path / "s", *extra)  # fmt: skip
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr
        assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_bandwidth_limit_holds_within_10_percent(s3_env, bucket, make_file, tmp_path):
    """The rate measured from the progress callbacks, over the transfer's steady middle."""
    import persevere as pv

    size, cap = 40 * MiB, 10_000_000  # 10 MB/s: about 4 s
    file = make_file(size, seed=72)
    samples: list[tuple[float, int]] = []

    class Recorder:
        done = 0

        def start(self, total_bytes, done_bytes):
            pass

        def advance(self, delta_bytes):
            self.done += delta_bytes
            samples.append((time.monotonic(), self.done))

        def close(self):
            pass

    options = pv.UploadOptions(concurrency=4, max_bandwidth_bytes_s=cap)
    pv.upload_file_sync(file, bucket, "capped", tmp_path / "s", part_size=5 * MiB,
                        options=options, progress=Recorder())  # fmt: skip
    (t0, b0), (t1, b1) = [next(s for s in samples if s[1] >= f * size) for f in (0.25, 0.9)]
    rate = (b1 - b0) / (t1 - t0)
    assert abs(rate - cap) / cap < 0.10, rate


def test_short_form_and_json_everywhere(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(7 * MiB, seed=73, name="photo.jpg")
    started = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/p.jpg", "--json")
    assert started.returncode == 0, started.stderr
    document = json.loads(started.stdout)
    state = tmp_path / "photo.jpg.persevere"
    assert document["state_file"] == str(state)
    assert f"state file: {state}" in started.stderr
    assert state.exists()
    assert s3_client.head_object(Bucket=bucket, Key="p.jpg")["ContentType"] == "image/jpeg"

    status = json.loads(persevere(s3_env, "upload", "status", "--state-file", state,
                                  "--json").stdout)  # fmt: skip
    assert status["parts_done"] == status["part_count"] == 1
    assert status["outcome"]["type"] == "completed"

    verified = persevere(s3_env, "verify", file, f"s3://{bucket}/p.jpg", "--json")
    assert verified.returncode == 0
    assert json.loads(verified.stdout)["outcome"] == "match"


def test_sync_api(s3_env, bucket, s3_client, make_file, tmp_path):
    import persevere as pv

    file = make_file(6 * MiB, seed=74)
    result = pv.upload_file_sync(file, bucket, "sync", tmp_path / "s")
    assert result.size == 6 * MiB
    assert sha256_of_object(s3_client, bucket, "sync") == sha256_of_file(file)
    assert pv.status_sync(tmp_path / "s").outcome["type"] == "completed"


def test_bench_command_cleans_up(s3_env, bucket, s3_client):
    result = persevere(s3_env, "bench", "--s3-bucket", bucket, "--size", "12MiB",
                       "-c", "1,2", "--part-size", "5MiB", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r["mb_per_s"] > 0 and r["part_size"] == 5 * MiB for r in rows)
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
