"""An operator's audit (2026-12-05, twentieth): persevere tried as a black box, to make it lie
(exit 0 with another object), lose work, or fail unclearly; this time "ListParts is the truth":
other writers acting on the same multipart upload or key (boto3 uploading a part at a number
persevere recorded or past its last, completing the upload with a subset of its parts,
aborting it, PutObject at the key), a server that loses its state (SeaweedFS killed and
restarted on the same directory mid-run, its data directory wiped, the bucket deleted and made
again), and the bucket tools (`upload list`, `upload status s3://B/K`) among many uploads of
other tools. Each test is a defect found, a strict xfail until it is fixed."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import persevere, sha256_of_file, sha256_of_object
from tests.ruleproxy import Rule

MiB = 1024 * 1024


def _started(env, bucket: str, tmp_path: Path, size: int = 12 * MiB) -> tuple[Path, Path, str]:
    """A file of ``size`` bytes, its upload created (5 MiB parts) and nothing sent yet (as
    ``upload start --shards 2`` leaves it): the file, the state file and the upload id."""
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(range(256)) * (size // 256))
    state = tmp_path / "data.persevere"
    made = persevere(env, "upload", "start", source, f"s3://{bucket}/data.bin",
                     "--state-file", state, "--shards", "2", "--part-size", "5MiB")  # fmt: skip
    assert made.returncode == 0, made.stderr
    upload_id = state.read_text().split('"upload_id":"', 1)[1].split('"', 1)[0]
    return source, state, upload_id


def _no_traceback(run) -> None:
    for word in ("Traceback", "ExceptionGroup", "TaskGroup"):
        assert word not in run.stderr, run.stderr[-3000:]


def test_upload_list_whose_listparts_is_refused_is_one_line_not_a_traceback(
    rule_proxy, s3_client, bucket
):
    """README, IAM permissions: `upload list` needs "s3:ListBucketMultipartUploads on the
    bucket, s3:ListMultipartUploadParts". An identity that may list the bucket's uploads but
    not their parts (or a bucket policy that denies ListParts on one prefix: another team's
    uploads) gets, from `persevere upload list s3://B`, a 140-line rich traceback ending in
    "ExceptionGroup: unhandled errors in a TaskGroup ... S3Error: ListParts: AccessDenied",
    exit 1: the per-upload ListParts runs in a task group, and its S3Error reaches the CLI
    wrapped in an ExceptionGroup, which no handler knows. Expected: one line naming the
    missing permission (exit 1), or the uploads listed without their part counts."""
    env, proxy = rule_proxy
    for key in ("a.bin", "b.bin"):
        s3_client.create_multipart_upload(Bucket=bucket, Key=key)
    proxy.rules.insert(0, Rule("GET", "uploadId", refuse=(403, "AccessDenied")))
    listed = persevere(env, "upload", "list", f"s3://{bucket}")
    _no_traceback(listed)
    if listed.returncode == 0:
        assert "a.bin" in listed.stdout and "b.bin" in listed.stdout, listed.stdout
    else:
        assert listed.returncode == 1, listed.stderr
        assert "ListMultipartUploadParts" in listed.stderr, listed.stderr
        assert len(listed.stderr.strip().splitlines()) <= 3, listed.stderr


def test_upload_status_of_a_key_whose_listparts_is_refused_shows_what_it_can(
    rule_proxy, s3_client, bucket
):
    """README, IAM permissions: `upload status` "for s3://BUCKET/KEY: s3:GetObject and
    s3:ListBucketMultipartUploads (each optional)". With both granted and ListParts refused
    (s3:ListMultipartUploadParts, which that row does not ask for), `upload status s3://B/K`
    of a key with another tool's upload in progress is a traceback (ExceptionGroup around
    "ListParts: AccessDenied"), exit 1, where the row promises an answer: the object and the
    uploads to the key (their parts, at worst, "cannot tell")."""
    env, proxy = rule_proxy
    upload_id = s3_client.create_multipart_upload(Bucket=bucket, Key="k.bin")["UploadId"]
    proxy.rules.insert(0, Rule("GET", "uploadId", refuse=(403, "AccessDenied")))
    shown = persevere(env, "upload", "status", f"s3://{bucket}/k.bin")
    _no_traceback(shown)
    assert shown.returncode == 0, shown.stderr
    assert upload_id in shown.stdout or "cannot tell" in shown.stdout, shown.stdout


def test_status_does_not_promise_to_keep_a_part_past_the_plans_last(
    s3_env, s3_client, bucket, tmp_path
):
    """Another client uploads a part at a number past the plan's last (part 7 of a 3-part
    upload: a colleague's script, another tool on the same upload id). `upload status
    --state-file` says "S3: 1 parts (5.0 MiB); 1 of them not in the state file yet (taken by
    S3 as the upload stopped): the next resume keeps it if it matches the file". None of it
    is so: persevere never sent part 7 (it was not "taken as the upload stopped"), and resume
    ignores every part outside the plan (CompleteMultipartUpload lists parts 1..3), so it
    cannot keep it; the bytes counted are not the upload's. Expected: a part outside the plan
    is not counted as one of the upload's, or is named for what it is (not persevere's; left
    out of the object)."""
    source, state, upload_id = _started(s3_env, bucket, tmp_path)
    s3_client.upload_part(Bucket=bucket, Key="data.bin", UploadId=upload_id, PartNumber=7,
                          Body=b"\x07" * (5 * MiB), ChecksumAlgorithm="CRC64NVME")  # fmt: skip
    shown = persevere(s3_env, "upload", "status", "--state-file", state)
    assert shown.returncode == 0, shown.stderr
    assert "the next resume keeps it" not in shown.stdout, shown.stdout
    # (what resume does with it: leaves it out, and the object is the file)
    resumed = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_of_object(s3_client, bucket, "data.bin") == sha256_of_file(source)


def test_resume_of_an_upload_another_client_completed_does_not_call_it_aborted(
    s3_env, s3_client, bucket, tmp_path
):
    """Another client completes persevere's upload with what it holds (a colleague's
    "finish the stale uploads" script, `aws s3api complete-multipart-upload`): here part 1,
    uploaded by that client, so an object of 5 MiB that is not the file now sits at the key.
    `upload resume --state-file` says "multipart upload ... no longer exists on S3 (aborted
    elsewhere, or expired by a lifecycle rule)", exit 1: neither happened, and nothing says
    that the key now holds an object persevere did not make (a stream's upload says "or
    completed"). Expected: the message allows for (or says) that it was completed elsewhere,
    as the stream's does."""
    source, state, upload_id = _started(s3_env, bucket, tmp_path)
    body = source.read_bytes()[: 5 * MiB]
    etag = s3_client.upload_part(Bucket=bucket, Key="data.bin", UploadId=upload_id, PartNumber=1,
                                 Body=body, ChecksumAlgorithm="CRC64NVME")["ETag"]  # fmt: skip
    s3_client.complete_multipart_upload(Bucket=bucket, Key="data.bin", UploadId=upload_id,
                                        MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                    "ETag": etag}]})  # fmt: skip
    resumed = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert resumed.returncode == 1, resumed.stderr
    assert "completed" in resumed.stderr.split("\n", 1)[0], resumed.stderr


def test_upload_status_of_a_key_does_not_fail_over_another_keys_upload(
    rule_proxy, s3_client, bucket
):
    """`upload status s3://B/K` says "the uploads in progress to it" (exactly that key), but
    asks ListParts of every upload whose key merely starts with K (ListMultipartUploads with
    Prefix=K, filtered afterwards): one refused for another key (`K.tmp`, another team's
    prefix) turns the status of K, whose own upload is readable, into a traceback (exit 1).
    Expected: the uploads of other keys are not looked into (or their refusal ignored)."""
    env, proxy = rule_proxy
    mine = s3_client.create_multipart_upload(Bucket=bucket, Key="k.bin")["UploadId"]
    other = s3_client.create_multipart_upload(Bucket=bucket, Key="k.bin.tmp")["UploadId"]
    proxy.rules.insert(0, Rule("GET", "uploadId", value=other, refuse=(403, "AccessDenied")))
    shown = persevere(env, "upload", "status", f"s3://{bucket}/k.bin")
    _no_traceback(shown)
    assert shown.returncode == 0, shown.stderr
    assert mine in shown.stdout, shown.stdout


def test_an_upload_whose_bucket_is_gone_is_not_called_resumable(
    s3_env, s3_client, bucket, tmp_path
):
    """The bucket is deleted under an upload (or the server lost its data: SeaweedFS's data
    directory wiped and the server restarted, mid-run or between runs), at the endpoint the
    state file records, no override given. `upload resume` (and `cp`, and the run that meets
    it mid-upload: "part 4: NoSuchBucket") says "error: ListParts: NoSuchBucket ... check the
    bucket name and region" and then "the upload is resumable: persevere upload resume
    --state-file S" (next_command that resume), exit 1. It is not: the upload lived in that
    bucket, and running that command can only fail the same way, for ever. Expected: no
    promise that it is resumable (say the bucket, and the upload with it, is gone)."""
    _, state, _ = _started(s3_env, bucket, tmp_path)
    for page in s3_client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads") or []:
            s3_client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                             UploadId=upload["UploadId"])  # fmt: skip
    s3_client.delete_bucket(Bucket=bucket)
    try:
        resumed = persevere(s3_env, "--log-format", "json", "upload", "resume",
                            "--state-file", state)  # fmt: skip
        assert resumed.returncode == 1, resumed.stderr
        assert "NoSuchBucket" in resumed.stderr, resumed.stderr
        assert "resumable" not in resumed.stderr, resumed.stderr
        assert "upload resume" not in resumed.stderr, resumed.stderr
    finally:
        s3_client.create_bucket(Bucket=bucket)  # (the fixture deletes it)


def test_status_of_an_upload_gone_from_s3_does_not_call_it_resumable(
    s3_env, s3_client, bucket, tmp_path
):
    """The upload is aborted from outside (a lifecycle rule's AbortIncompleteMultipartUpload
    on an old journal, a colleague's `upload abort --upload-id`). `upload status
    --state-file` then prints "state: in progress (resumable)" and, two lines on, "S3: the
    multipart upload no longer exists", exit 0: the one line a person or a script keys on
    says resumable, and `upload resume` can only fail ("no longer exists on S3", exit 1).
    Expected: the state says it cannot be resumed (and that `cp` starts it again)."""
    _, state, upload_id = _started(s3_env, bucket, tmp_path)
    s3_client.abort_multipart_upload(Bucket=bucket, Key="data.bin", UploadId=upload_id)
    shown = persevere(s3_env, "upload", "status", "--state-file", state)
    assert shown.returncode == 0, shown.stderr
    assert "no longer exists" in shown.stdout, shown.stdout
    assert "(resumable)" not in shown.stdout, shown.stdout
