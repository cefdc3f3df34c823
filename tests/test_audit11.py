"""An operator's audit (2026-12-05, eleventh): persevere tried as a black box, to make it lie
(exit 0 with another object, or none), lose work, or fail unclearly; this time supervisors,
a hostile network (proxies that answer for the server) and the machine's own accidents. Each
test is a defect found, a strict xfail until it is fixed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.conftest import persevere, sha256_of_file, sha256_of_object
from tests.proxybase import FORWARD, Answer, Hold, HttpForwarder
from tests.ruleproxy import Rule

MiB = 1024 * 1024


def _has_object(s3_client, bucket: str, key: str) -> bool:
    try:
        s3_client.head_object(Bucket=bucket, Key=key)
    except s3_client.exceptions.ClientError:
        return False
    return True


def _complete_answer(bucket: bytes, key: bytes) -> bytes:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult '
        b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>x</Location><Bucket>'
        + bucket + b"</Bucket><Key>" + key + b'</Key><ETag>"0123456789abcdef0123456789abcdef-1"'
        b"</ETag></CompleteMultipartUploadResult>"
    )  # fmt: skip
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


class _CompletesNothing(HttpForwarder):
    """A gateway (a caching proxy replaying a stale answer, a broken load balancer) that
    answers CompleteMultipartUpload 200 with a well-formed result without forwarding it:
    the server never assembles the object, and HeadObject then says 404."""

    def _decide(self, method: bytes, target: bytes, headers: dict[bytes, bytes]) -> Answer:
        parts = urlsplit(target.decode("latin-1"))
        if method == b"POST" and "uploadId" in dict(parse_qsl(parts.query)):
            _, bucket, key = parts.path.encode("latin-1").split(b"/", 2)
            return Answer(refuse=_complete_answer(bucket, key))
        return FORWARD


@pytest.fixture
def completes_nothing(s3_env, s3_server) -> Iterator[dict[str, str]]:
    with _CompletesNothing.in_front_of(s3_server.endpoint_url) as proxy:
        yield {**s3_env, "AWS_ENDPOINT_URL": proxy.url}


def test_exit_0_needs_the_object_to_exist_after_completion(
    completes_nothing, s3_client, bucket, make_file, tmp_path
):
    """README: "exit 0 means the object equals the source". After CompleteMultipartUpload,
    persevere's HeadObject check answered 404 (no such object): it logged "could not check the
    completed object (HeadObject: 404: Not Found); S3 verified every part" and exited 0,
    printing "uploaded s3://B/K" with an ETag the server never gave. A 404 is not a missing
    permission (that is 403): it proves there is no object, so exit 0 is a lie."""
    file = make_file(1000)
    done = persevere(completes_nothing, "cp", file, f"s3://{bucket}/k", "--state-file",
                     tmp_path / "s")  # fmt: skip
    assert not _has_object(s3_client, bucket, "k")  # what the proxy did: no object
    assert done.returncode != 0, done.stderr


def _upload_id(state) -> str:
    return str(json.loads(state.read_text().splitlines()[0])["upload_id"])


@pytest.mark.process
@pytest.mark.slow
def test_cp_whose_upload_is_aborted_under_it_starts_again_not_exit_1(
    rule_proxy, s3_client, bucket, make_file, tmp_path
):
    """README (Running unattended): "If the upload cannot go on (..., the upload was aborted
    behind its back, ...), it gives up what is left and starts again, once, in the same run";
    exit 1 "need[s] a person, so do not restart". The upload aborted while `cp FILE` runs (a
    lifecycle rule `AbortIncompleteMultipartUpload`, which the README says may "abort it under
    you", or a colleague's `upload abort`): the run stopped with exit 1 ("NoSuchUpload ...
    start a new upload", `next_command` null), so a supervisor keyed on the README's table
    (systemd `RestartPreventExitStatus=1 2`, the Job's podFailurePolicy) gives up, while the
    very same command run again starts over and exits 0."""
    env, proxy = rule_proxy
    file = make_file(12 * MiB)
    state = tmp_path / "s"
    held = proxy.hold_parts_but(1, 2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "cp", str(file), f"s3://{bucket}/k", "--state-file",
         str(state), "--part-size", "5MiB", "--no-progress"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        held.wait(60)
        s3_client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=_upload_id(state))
    finally:
        held.release()
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


def test_exit_0_needs_the_object_after_completion_to_be_this_files(
    completes_nothing, s3_client, bucket, make_file, tmp_path
):
    """The final HeadObject check compares the size, and the checksum only when the object
    has one of the upload's algorithm: an object of the same size written by another tool
    (PutObject with CRC32, the aws cli's default, or none) passes it. Through a gateway that
    answers CompleteMultipartUpload without completing (as in #1), the key still held such an
    object: persevere warned "S3 returned ETag "0123...-1"; the parts' MD5s give ..." and
    exited 0, "uploaded s3://B/K", while the object is the old one (`persevere verify`: exit
    4, MISMATCH). HeadObject's ETag, a plain MD5 of the other bytes, proved it."""
    file = make_file(1000)
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"x" * 1000, ChecksumAlgorithm="CRC32")
    done = persevere(completes_nothing, "cp", file, f"s3://{bucket}/k", "--state-file",
                     tmp_path / "s")  # fmt: skip
    assert sha256_of_object(s3_client, bucket, "k") != sha256_of_file(file)  # the old object
    assert done.returncode != 0, done.stderr


def test_resume_of_a_completed_upload_checks_the_file_when_the_object_cannot_be_read(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    """README: `upload resume` "Run on an upload that already completed, it exits 0 as `cp`
    does ... while the object still has the recorded size and checksum and the file its
    recorded identity (else its parts are re-read); ... the file changed, is exit 1". With the
    README's minimal policy (no s3:GetObject: HeadObject answers 403), the file edited since
    (same size) was never looked at: "s3://B/K cannot be read (403): the state file records it
    completed, and it is not checked", then "already completed ... nothing sent", exit 0. The
    object is the old bytes, not the file given this time (`persevere verify`: MISMATCH).
    Not being able to read the object is no reason to skip the file's own check (`cp`, in the
    same case, uploads it again)."""
    writer = {**s3_env, "AWS_ACCESS_KEY_ID": s3_server.writeonly_access_key,
              "AWS_SECRET_ACCESS_KEY": s3_server.writeonly_secret_key}  # fmt: skip
    file = make_file(1000)
    state = tmp_path / "s"
    first = persevere(writer, "cp", file, f"s3://{bucket}/k", "--state-file", state)
    assert first.returncode == 0, first.stderr
    with file.open("r+b") as edit:
        edit.write(b"CHANGED!")  # same size, new bytes (and times)
    resumed = persevere(writer, "upload", "resume", "--state-file", state)
    assert sha256_of_object(s3_client, bucket, "k") != sha256_of_file(file)
    assert resumed.returncode != 0, resumed.stderr


@pytest.mark.process
@pytest.mark.slow
def test_resume_of_a_completed_stream_reads_the_stream_piped_in(
    s3_env, s3_client, bucket, tmp_path
):
    """README (Streams): "Resuming a stream means piping the *same* stream in again
    (`producer | persevere cp - s3://B/K`, or `upload resume --state-file S`)", and exit 0
    means the object equals the stream given this time. `cp -` does read a stream piped in
    over a completed upload (another stream is uploaded again). `upload resume` did not read
    it at all: another stream piped in got "already completed ... nothing sent", exit 0, and
    the object is the first stream's (`persevere verify`: MISMATCH)."""
    first, other = bytes(range(256)) * 12, bytes(reversed(range(256))) * 12
    state = tmp_path / "s"
    done = persevere(s3_env, "cp", "-", f"s3://{bucket}/k", "--state-file", state, input=first)
    assert done.returncode == 0, done.stderr
    resumed = persevere(s3_env, "upload", "resume", "--state-file", state, input=other)
    body = s3_client.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == first  # the object is still the first stream
    assert resumed.returncode != 0, resumed.stderr


@pytest.mark.process
@pytest.mark.slow
def test_a_dry_run_stopped_during_its_probe_says_how_to_abort_what_it_created(
    rule_proxy, s3_client, bucket, make_file
):
    """README (--dry-run): the probe is a CreateMultipartUpload "aborted at once ... the
    upload never holds a part (if s3:AbortMultipartUpload is refused, the exact abort command
    is printed)"; `bench` prints the abort command when a stop cuts its cleanup short. A
    SIGTERM (a supervisor's stop, Ctrl-C) while the probe's AbortMultipartUpload is on its way
    left the probe's upload on S3 (`upload list` shows it; billed by no part, but there until
    someone aborts it) and said only "interrupted (SIGTERM)", exit 130: no abort command, and
    the dry run wrote no state file that would find it. Or, the signal a moment earlier (as
    the abort is sent), the stop waited for the abort's answer with no bound (over 60 s here,
    where `bench` bounds its cleanup at 10 s): a supervisor's stop timeout then kills it."""
    env, proxy = rule_proxy
    file = make_file(1000)
    held = proxy.hold(Hold())
    proxy.rules.insert(0, Rule("DELETE", "uploadId", hold=held))
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "cp", str(file), f"s3://{bucket}/k", "--dry-run"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        held.wait(60)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
            hung = False
        except subprocess.TimeoutExpired:  # waiting on the held abort: no bound
            hung = True
        # (listed before the held abort is let through: released, it aborts the upload)
        left = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads") or []
    finally:
        held.release()
        _, stderr = proc.communicate(timeout=120)
    assert not hung, "a SIGTERM during the probe's abort waits for as long as S3 does not answer"
    assert left, "stopped promptly, the probe's upload is left"
    assert f"--upload-id {left[0]['UploadId']}" in stderr, stderr


@pytest.mark.process
def test_standard_input_from_dev_null_is_nothing_piped_in_not_an_empty_object(
    s3_env, s3_client, bucket, tmp_path
):
    """`persevere cp - s3://B/K` refuses a terminal ("nothing is being piped in", exit 2) and
    a closed standard input ("standard input is closed", exit 2), and `cp /dev/null s3://B/K`
    is refused (exit 2). But standard input from /dev/null, what a systemd service
    (StandardInput=null), `docker run` without -i, `ssh -n` and `nohup` give a command whose
    producer was left out, made an empty object, exit 0, replacing what the key held (here
    yesterday's backup). /dev/null is a character device, neither a pipe nor a file: nothing
    is being piped in. (A design question as much as a defect: `cp /dev/null`'s refusal
    suggests `persevere cp - s3://BUCKET/KEY < /dev/null` for a character device; but
    /dev/null is the one whose "stream" is never what the user meant to back up.)"""
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"yesterday's backup")
    with open(os.devnull, "rb") as null:
        done = persevere(s3_env, "cp", "-", f"s3://{bucket}/k", "--state-file", tmp_path / "s",
                         stdin=null)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"yesterday's backup"
