"""An operator's audit (2026-12-05, eighteenth): persevere tried as a black box, to make it lie
(exit 0 with another object), lose work, or fail unclearly; this time keys, names and
encodings ("the object is at the key printed"): keys with characters S3 clients get wrong, file
names that become keys, bucket names and URL forms, what the listings answer back. Each test is
a defect found, a strict xfail until it is fixed."""

from __future__ import annotations

import json

import pytest

import persevere as api
from tests.conftest import persevere

ACCESS_POINT = "arn:aws:s3:us-east-1:123456789012:accesspoint/my-ap"


@pytest.mark.parametrize("spelling", ["a//b.bin", "/a/b.bin", "a\\b.bin", "a/./b.bin"])
def test_verify_file_refuses_a_key_that_cp_refuses(s3_env, bucket, s3_client, tmp_path, spelling):
    """`cp` (and `verify DIR`, and `bench`) refuse, exit 2 and one line, a key with an empty
    path segment, a backslash or a `.` segment: "servers that keep keys as file paths
    (SeaweedFS among them) merge away [...] answers for either name, so no check after the
    upload tells" (persevere/_urls.py). `verify FILE s3://B/KEY` makes no such check, and is
    fooled exactly as that docstring says: with the file's object at `a/b.bin` (the only key
    ListObjectsV2 shows), `verify FILE s3://B/a//b.bin` (and `/a/b.bin`, `a\\b.bin`) prints
    "match: s3://B/a//b.bin vs FILE" and exits 0: a key under which no object is listed is
    said to hold the file (on AWS it is another key, which may hold anything or nothing).
    `a/./b.bin` is exit 1 with "HeadObject: 400: Bad Request" and no word of why. Expected:
    refused before any request, as cp refuses it (exit 2, the same line)."""
    source = tmp_path / "b.bin"
    source.write_bytes(b"the archive\n")
    s3_client.put_object(Bucket=bucket, Key="a/b.bin", Body=source.read_bytes())
    listed = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == ["a/b.bin"], listed
    refused = persevere(s3_env, "cp", source, f"s3://{bucket}/{spelling}", "--no-progress")
    assert refused.returncode == 2, refused.stderr  # (holds: cp refuses it)
    checked = persevere(s3_env, "verify", source, f"s3://{bucket}/{spelling}", "--no-progress")
    assert checked.returncode == 2, checked.stdout + checked.stderr


def test_verify_file_of_a_key_over_1024_bytes_says_so(s3_env, bucket, tmp_path):
    """README, exit 2: "a key over 1,024 bytes". `verify FILE` of such a key asks HeadObject
    anyway and says "s3://B/aaa... does not exist (HeadObject: 404: Not Found)", exit 1: the
    user looks for a missing object instead of a key no object can have."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"x")
    key = "/".join(["a" * 205] * 5)  # 1,024 + 5 bytes, no segment over 255
    checked = persevere(s3_env, "verify", source, f"s3://{bucket}/{key}", "--no-progress")
    assert checked.returncode == 2, checked.stderr[-400:]
    assert "1,024" in checked.stderr, checked.stderr[-400:]


@pytest.mark.parametrize("tail", ["\r", " ", "\t"], ids=["cr", "space", "tab"])
def test_a_key_flag_ending_in_whitespace_is_refused_as_the_url_is(
    s3_env, bucket, s3_client, tmp_path, tail
):
    """Audit 9 made `s3://B/backups/db.dump\r` (a destination read from a file edited on
    Windows, a pasted space) exit 2: "the key would end with a character no listing shows".
    The long form of the same command, `upload start --s3-bucket B --s3-key "$KEY"
    --file-to-upload F --state-file S` (the original tool's flags, what scripts that read
    keys from a file use), takes `db.dump\r` as the key: exit 0, "uploaded
    s3://B/backups/db.dump: ..." on the terminal (the CR invisible), and the object is at
    `backups/db.dump\r`: `aws s3 cp s3://B/backups/db.dump` and `persevere verify F
    s3://B/backups/db.dump` find nothing. Expected: refused as the URL is (exit 2, nothing
    created)."""
    source = tmp_path / "db.dump"
    source.write_bytes(b"dump\n")
    done = persevere(s3_env, "upload", "start", "--s3-bucket", bucket,
                     "--s3-key", f"backups/db.dump{tail}", "--file-to-upload", source,
                     "--state-file", tmp_path / "db.persevere", "--no-progress")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert not s3_client.list_objects_v2(Bucket=bucket).get("Contents")


@pytest.mark.parametrize("what", ["file", "tree"])
def test_a_prefix_read_with_a_cr_is_refused_as_the_url_ending_in_one_is(
    s3_env, bucket, s3_client, tmp_path, what
):
    """The same CR, where a script appends the slash: `persevere cp "$F"
    "s3://$BUCKET/$PREFIX/"` with PREFIX read from a file edited on Windows gives
    `s3://B/backups\r/`. The URL does not end in whitespace, so it is taken: the object goes
    to `backups\r/db.dump` (`cp DIR`: every file under `backups\r/`), exit 0, the line
    "uploaded s3://B/backups\r/db.dump" printed with the CR raw (on a terminal the rest of
    the line is written over its start). Nothing is under `backups/`. Expected: a key segment
    ending in a CR (or whitespace) refused as the URL ending in one is (exit 2)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    source = tree / "db.dump"
    source.write_bytes(b"dump\n")
    given = source if what == "file" else tree
    done = persevere(s3_env, "cp", given, f"s3://{bucket}/backups\r/",
                     "--state-dir", tmp_path / "st", "--no-progress")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert not s3_client.list_objects_v2(Bucket=bucket).get("Contents")


def test_upload_list_shows_an_upload_whose_key_has_a_control_character(s3_env, bucket, s3_client):
    """A key may hold any UTF-8, control characters included (persevere itself uploads to
    `s3://B/a\\x01b`, and `cp DIR` of a file so named). ListMultipartUploads answers in XML
    1.0, which cannot carry U+0001: SeaweedFS sends U+FFFD in its place (AWS answers such keys
    correctly only with EncodingType=url, which persevere does not ask for). `upload list`
    then asks ListParts for the key `a\\ufffdb`, gets NoSuchUpload, takes it for "completed
    or aborted while we looked" and drops the upload without a word: `upload list` says "1
    upload(s), 0 B billed" where two are billed, or "no multipart uploads in progress"; and
    `upload status s3://B/a\\x01b` says "uploads: none in progress". The one place to find a
    forgotten upload hides it, and its parts are billed for ever (here, 5 MiB). Expected:
    every upload the bucket holds is listed (its key as the server gave it, its parts unknown
    if ListParts cannot find it), or the listing says one could not be described."""
    upload = s3_client.create_multipart_upload(Bucket=bucket, Key="a\x01b")["UploadId"]
    s3_client.upload_part(Bucket=bucket, Key="a\x01b", UploadId=upload, PartNumber=1,
                          Body=b"\0" * (5 << 20))  # fmt: skip
    other = s3_client.create_multipart_upload(Bucket=bucket, Key="plain")["UploadId"]
    listed = persevere(s3_env, "upload", "list", f"s3://{bucket}", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = {u["upload_id"] for u in json.loads(listed.stdout)["uploads"]}
    assert other in ids, ids  # (holds)
    assert upload in ids, listed.stdout
    status = persevere(s3_env, "upload", "status", f"s3://{bucket}/a\x01b", "--json")
    assert status.returncode == 0, status.stderr
    assert [u["upload_id"] for u in json.loads(status.stdout)["uploads"]] == [upload]


@pytest.mark.parametrize(
    "command",
    [
        ["cp", "{file}", f"s3://{ACCESS_POINT}/k"],
        ["verify", "{file}", f"s3://{ACCESS_POINT}/k"],
        ["upload", "status", f"s3://{ACCESS_POINT}/k"],
        ["upload", "list", f"s3://{ACCESS_POINT}/"],
        ["upload", "abort", f"s3://{ACCESS_POINT}/k", "--upload-id", "x"],
        ["cp", "{file}", "s3://arn:aws:s3:::my-bucket/k"],  # (a bucket's ARN)
        ["cp", "{file}", "s3://arn:x/k"],
    ],
)
def test_an_access_point_arn_in_the_url_is_not_a_traceback(s3_env, bucket, tmp_path, command):
    """The aws cli takes an access point as `s3://arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/KEY`
    (and persevere's own bucket check lets `arn:...` through, "an access point's ARN aside").
    persevere splits the URL at its first slash: the bucket becomes
    `arn:aws:s3:us-east-1:123456789012:accesspoint`, which botocore refuses with a
    ParamValidationError that nothing catches: a 150-line rich traceback, exit 1, from `cp`,
    `upload start`, `cp DIR`, `--dry-run`, `verify`, `upload status|list|abort` and `bench`
    alike. Any other `arn:` (a bucket's ARN `arn:aws:s3:::my-bucket`, a typo) is the same
    traceback. Expected: the access point taken as the bucket (as the aws cli does), or one
    line saying how to give it, exit 2; never a traceback."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"x")
    args = [str(source) if word == "{file}" else word for word in command]
    done = persevere(s3_env, *args)
    assert "Traceback" not in done.stderr, done.stderr[-1500:]
    assert done.returncode in (1, 2, 3), done.stderr[-600:]


@pytest.mark.parametrize("bucket_name", ["arn:x", "arn:aws:s3:::my-bucket"])
def test_an_arn_given_to_the_api_as_the_bucket_is_a_usage_error(s3_env, tmp_path, bucket_name):
    """README (Python API): "Errors are `persevere.PersevereError` subclasses [...] a wrong
    value [...] is a `UsageError` (exit 2) naming it, before anything is sent." A bucket
    `arn:...` that botocore does not take passes persevere's check (`arn:.+`) and comes out
    of `upload_file_sync` and `verify_sync` as botocore's ParamValidationError, which a
    caller's `except persevere.PersevereError` does not catch."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"x")
    with pytest.raises(api.PersevereError):
        api.upload_file_sync(source, bucket_name, "k", tmp_path / "f.persevere")
    with pytest.raises(api.PersevereError):
        api.verify_sync(source, bucket_name, "k")


def test_a_file_name_with_a_newline_does_not_forge_a_result_line(s3_env, bucket, tmp_path):
    """`cp FILE s3://B/PREFIX/` names the object after the file, and prints the result as
    "uploaded s3://B/KEY: ...", the key raw. A file named `f\\nuploaded s3:` (legal on Linux)
    gives two lines, "uploaded s3://B/p/f" (an object that does not exist: the key printed is
    not the object's) and "uploaded s3:: 1 B in 1 part(s), ...". `verify` prints "match:
    s3://B/p/f" the same way, `upload status` its "object:" line. A supervisor or a log
    collector reading lines is told of another object. `cp DIR`'s and `upload list`'s lines
    were made one line for this (audits 13 and 15: `one_line`); the single-file commands were
    not. Expected: one line, the key's newline escaped, as `cp DIR` prints it."""
    source = tmp_path / "f\nuploaded s3:"
    source.write_bytes(b"x")
    sent = persevere(s3_env, "cp", source, f"s3://{bucket}/p/", "--no-progress")
    assert sent.returncode == 0, sent.stderr
    assert len(sent.stdout.splitlines()) == 1, sent.stdout
    checked = persevere(s3_env, "verify", source, f"s3://{bucket}/p/", "--no-progress")
    assert checked.returncode == 0, checked.stderr
    assert len(checked.stdout.splitlines()) == 1, checked.stdout


def test_the_abort_upload_list_gives_works_for_a_key_ending_in_a_slash(s3_env, bucket, s3_client):
    """`upload list` shows every upload in progress, any tool's, and ends with the command to
    give one up: "persevere upload abort s3://B/KEY --upload-id ID". For an upload to a key
    ending in `/` (a "folder" key, which consoles and other tools create), that command is
    refused, exit 2: "not an object URL: 's3://B/dir/' (expected s3://bucket/key)" (abort has
    no file whose name a trailing slash could take). The upload can be aborted only with the
    long flags (`--s3-bucket B --s3-key dir/`), which nothing says. Expected: the URL the
    listing tells to use aborts the upload it lists."""
    upload = s3_client.create_multipart_upload(Bucket=bucket, Key="dir/")["UploadId"]
    listed = persevere(s3_env, "upload", "list", f"s3://{bucket}")
    assert upload in listed.stdout, listed.stdout
    aborted = persevere(s3_env, "upload", "abort", f"s3://{bucket}/dir/", "--upload-id", upload)
    assert aborted.returncode == 0, aborted.stderr
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")
