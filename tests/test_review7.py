"""Review 7 (adversarial code reading, of main at 51d6aa7): roads to exit 0 whose evidence
an accident can fool. Each test is a defect found, a strict xfail until it is fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import interrupt_after_parts, persevere
from tests.proxybase import FORWARD, Answer, Hold
from tests.ruleproxy import Rule, RuleProxy

MiB = 1024 * 1024


class _CompleteAnsweredElsewhere(RuleProxy):
    """CompleteMultipartUpload (POST ?uploadId=) answered here, 200 with a well-formed page
    that is no S3 answer (a WAF's or gateway's "OK"), never forwarded: the server has no
    object. Every other request reaches the server."""

    def _decide(self, method, target, headers):
        if method == b"POST" and b"uploadId=" in target:
            body = b"<html><body>OK</body></html>"
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n"
            return Answer(refuse=head % len(body) + body)
        return FORWARD


def test_a_completion_answered_without_an_etag_and_no_object_is_not_exit_0(
    s3_env, s3_server, bucket, s3_client, tmp_path
):
    """session.complete fills a missing ETag in Complete's answer with the parts' expected
    ETag; check_object then takes "the ETag is the parts'" as the server's own word and a
    404 as "completed, and gone already": exit 0, "uploaded", and no object at the key."""
    file = tmp_path / "f"
    file.write_bytes(b"x" * 1000)
    with _CompleteAnsweredElsewhere.in_front_of(s3_server.endpoint_url) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = persevere(env, "cp", file, f"s3://{bucket}/k", "--no-progress")
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listed == []  # (what the test sets up: the server never completed it)
    assert result.returncode != 0, result.stderr


def test_verify_of_an_empty_directory_whose_journal_records_files_is_not_exit_0(
    s3_env, s3_server, bucket, tmp_path
):
    """verify DIR of a mount point whose disk did not mount (empty), where the identity may
    not list the bucket (no s3:ListBucket: common for object-level policies): '0 file(s)',
    exit 0, though the tree's journal beside it records the files uploaded (cp DIR refuses
    that very case, exit 2)."""
    root = tmp_path / "mnt"
    root.mkdir()
    (root / "a").write_bytes(b"hello")
    (root / "b").write_bytes(b"world")
    url = f"s3://{bucket}/t/"
    assert persevere(s3_env, "cp", root, url, "--no-progress").returncode == 0
    for f in root.iterdir():
        f.unlink()  # the disk is not mounted this time
    refuse = Rule("GET", "list-type", refuse=(403, "AccessDenied"))
    with RuleProxy.in_front_of(s3_server.endpoint_url, [refuse]) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = persevere(env, "verify", root, url)
    assert "0 file(s)" in result.stdout + result.stderr  # (the run this test is about)
    assert result.returncode != 0, result.stdout + result.stderr


class _FirstPutHeld(RuleProxy):
    """The first PutObject (no uploadId) is held until the test releases it, then forwarded
    whole: an attempt the client gave up on (its answer late) that the server still takes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.first = self.hold(Hold())
        self._held = False

    def _decide(self, method, target, headers):
        if method == b"PUT" and b"uploadId=" not in target and not self._held:
            self._held = True
            return Answer(hold=self.first)
        return FORWARD


@pytest.mark.xfail(strict=True, reason="review 7 #3")
def test_a_late_putobject_attempt_does_not_leave_a_tree_file_older_than_recorded(
    s3_env, s3_server, bucket, s3_client, tmp_path
):
    """A tree's small file: its PutObject's first attempt gets no answer in time (a slow
    gateway) and is retried with the same bytes; the file is edited meanwhile, so the run
    reads and sends it again (audit 13 #2's fix) and records the new identity. The first
    attempt, which the server still had, lands last: the object is the old bytes, the
    journal says the new, and every later run skips the file, exit 0."""
    import threading

    import anyio

    from persevere._options import UploadOptions
    from persevere._s3 import Endpoint
    from persevere._tree import TreeRequest, copy_tree

    root = tmp_path / "tree"
    root.mkdir()
    file = root / "a"
    file.write_bytes(b"version 1\n")
    state = tmp_path / "tree.persevere"
    with _FirstPutHeld.in_front_of(s3_server.endpoint_url) as proxy:
        endpoint = Endpoint(proxy.url, s3_server.region, None, None)
        request = TreeRequest(root, bucket, "t/", state, endpoint=endpoint,
                              transfer=UploadOptions(read_timeout_s=1.0))  # fmt: skip

        def edit() -> None:
            proxy.first.wait(30)
            file.write_bytes(b"version 2, edited while it was sent\n")

        editor = threading.Thread(target=edit)
        editor.start()
        first = anyio.run(copy_tree, request)
        editor.join()
        assert first.exit_code == 0 and first.sent == ["a"]
        proxy.first.release()  # the late attempt reaches the server now
        for _ in range(50):
            body = s3_client.get_object(Bucket=bucket, Key="t/a")["Body"].read()
            if body == b"version 1\n":
                break
            anyio.run(anyio.sleep, 0.1)
        again = persevere(s3_env, "cp", root, f"s3://{bucket}/t/", "--state-file", state,
                          "--endpoint-url", proxy.url, "--no-progress")  # fmt: skip
    assert again.returncode == 0, again.stderr
    body = s3_client.get_object(Bucket=bucket, Key="t/a")["Body"].read()
    assert body == file.read_bytes()  # exit 0: the object is the file


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_subdirectory_that_did_not_mount_does_not_abort_its_files_uploads(
    rule_proxy, bucket, s3_client, tmp_path
):
    """cp DIR stopped while a large file under DIR/vol is part way (its parts on S3, its
    journal in DIR.persevere.d); the next run finds vol empty (a disk that did not mount
    there, a network file system not up yet): exit 0, "uploaded", and the unfinished upload
    is aborted as "not needed now", its parts thrown away. Once vol is back, the file is
    sent from the start (for a file of terabytes, hours lost to an accident)."""
    from persevere._tree import journal_name

    env, proxy = rule_proxy
    root = tmp_path / "data"
    (root / "vol").mkdir(parents=True)
    (root / "README").write_bytes(b"the volume is mounted on vol/\n")
    big = root / "vol" / "big"
    big.write_bytes(bytes(range(256)) * (15 * MiB // 256))
    state = tmp_path / "data.persevere"
    url = f"s3://{bucket}/t/"
    command = ["cp", root, url, "--state-file", state, "--part-size", "5MiB", "--no-progress"]
    part_journal = Path(f"{state}.d") / journal_name("vol/big")
    interrupt_after_parts(env, command, part_journal, 1, proxy=proxy)
    assert len(s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    saved = tmp_path / "saved"
    (root / "vol").rename(saved)
    (root / "vol").mkdir()  # the mount point, empty: the disk did not mount this time
    unmounted = persevere(env, *command)
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert unmounted.returncode != 0 or len(uploads) == 1, unmounted.stdout + unmounted.stderr


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_write_once_streams_completion_not_recorded_is_found_on_the_same_stream(
    rule_proxy, bucket, s3_client, tmp_path
):
    """cp - --no-overwrite killed once CompleteMultipartUpload was sent (or its journal's
    last line not written: a full disk, which the README says a later run records). The
    object is the stream's. The same command with the same stream piped in: "no longer
    exists ... starting the upload again", then ObjectExists, exit 1 (a person needed), and
    the state file is gone (upload resume: "does not exist"). A file in the same case is
    found completed (exit 0); a write-once stream's recorded completion is compared with the
    stream piped in (exit 0 if the same): this one is neither."""
    import os
    import subprocess
    import sys
    import time

    from tests.proxybase import Hold

    env, proxy = rule_proxy
    data = bytes(range(256)) * (3 * MiB // 256)
    state = tmp_path / "s.persevere"
    url = f"s3://{bucket}/k"
    args = ["cp", "-", url, "--no-overwrite", "--state-file", str(state), "--no-progress"]
    held = Hold()
    proxy.rules.append(Rule("POST", "uploadId", hold=held))  # CompleteMultipartUpload
    proc = subprocess.Popen([sys.executable, "-m", "persevere", *args],
                            env={**os.environ, **env}, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.close()
    held.wait(60)
    proc.kill()  # the Complete is on its way; its answer never reaches the journal
    proc.wait()
    proxy.rules.clear()
    held.release()
    for _ in range(100):
        if s3_client.list_objects_v2(Bucket=bucket).get("KeyCount"):
            break
        time.sleep(0.05)
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    again = persevere(env, *args, input=data)
    assert again.returncode == 0, again.stderr
