"""Review 5 (adversarial, of this stop's fixes eaea0e4, cabad5d, fc27b56, 0a354fe, 6794b33,
6a23574): each test a defect found, a strict xfail until it is fixed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import persevere, sha256_of_file, sha256_of_object
from tests.ruleproxy import Rule, RuleProxy

MiB = 1024 * 1024


def _link_dotdot(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``lnk/../f`` as the kernel reads it (``real/f``, 3 MB) and as a string normalizes it
    (``./f``, 100 bytes): ``lnk`` is a link to ``real/sub``."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    meant = tmp_path / "real" / "f"
    meant.write_bytes(os.urandom(3_000_000))
    other = tmp_path / "f"
    other.write_bytes(os.urandom(100))
    (tmp_path / "lnk").symlink_to(tmp_path / "real" / "sub")
    return tmp_path / "lnk" / ".." / "f", meant, other


def test_cp_of_a_path_with_dotdot_after_a_link_uploads_the_file_it_names(
    s3_env, s3_client, bucket, tmp_path
):
    """eaea0e4 keeps "the path as given" for cp, as ``os.path.abspath(path)``: that folds
    ``lnk/..`` away as text, where the kernel goes through the link (``lnk/../f`` is
    ``real/f``, what ``ls lnk/../f``, ``cat`` and the dry run read). `cp lnk/../f s3://B/K`
    said "plan: 2.9 MiB" (it inspected real/f) and then uploaded ./f, another file:
    "uploaded s3://B/K: 100 B", exit 0. (bd9524c uploaded real/f.)"""
    given, meant, _ = _link_dotdot(tmp_path)
    done = persevere(s3_env, "cp", "lnk/../f", f"s3://{bucket}/k", "--state-file",
                     tmp_path / "s", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(given.resolve())
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(meant)


def test_upload_start_and_verify_of_a_path_with_dotdot_after_a_link(
    s3_env, s3_client, bucket, tmp_path
):
    """The same ``abspath`` (eaea0e4) as the path check_unchanged looks at: `upload start
    lnk/../f` read real/f through its descriptor, then found ./f at the "path as given" and
    stopped "real/f changed while it was being uploaded (its path names another file now)",
    exit 1, though nothing changed; `verify lnk/../f s3://B/K` of real/f's object says
    "cannot tell: the file changed while it was read", exit 5 (bd9524c: match, exit 0)."""
    _, meant, _ = _link_dotdot(tmp_path)
    started = persevere(s3_env, "upload", "start", "lnk/../f", f"s3://{bucket}/k",
                        "--state-file", tmp_path / "s", "--no-progress", cwd=tmp_path)  # fmt: skip
    s3_client.put_object(Bucket=bucket, Key="v", Body=meant.read_bytes())
    checked = persevere(s3_env, "verify", "lnk/../f", f"s3://{bucket}/v", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert started.returncode == 0, started.stderr


def test_cp_starting_again_mid_run_leaves_no_upload_nothing_records(
    rule_proxy, s3_client, bucket, make_file, tmp_path
):
    """cabad5d: cp whose upload answers NoSuchUpload mid-run starts again "once, in the same
    run", replacing the journal (`_make_room`) without aborting the first upload, which the
    restart decision (`abort_upload`, best effort) does. A NoSuchUpload that is not the
    truth (a proxy, a load balancer reaching another cluster, a server slow to show a new
    upload; here the proxy answers it for part 2) leaves the first upload on S3 with its
    parts, billed, and no state file names it any more: `upload list` shows an upload that
    no journal can resume or abort. (bd9524c kept its journal: exit 1, resumable/abortable.)"""
    env, proxy = rule_proxy
    file = make_file(12 * MiB)
    state = tmp_path / "s"
    proxy.rules.insert(0, Rule("PUT", "partNumber", value="2", refuse=(404, "NoSuchUpload")))
    persevere(env, "cp", file, f"s3://{bucket}/k", "--state-file", state, "--part-size", "5MiB",
              "--no-progress")  # fmt: skip
    recorded = state.read_text() if state.exists() else ""
    left = [u["UploadId"] for u in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")
            or []]  # fmt: skip
    unrecorded = [upload_id for upload_id in left if upload_id not in recorded]
    assert not unrecorded, f"uploads on S3 that no state file records: {unrecorded}"


class _WeakHeadETag(RuleProxy):
    """A cache or CDN in front of the server that weakens the ETag of what it serves
    (``W/"..."``, as nginx and Cloudflare do for a response they transform)."""

    def _decide(self, method, target, headers):
        from tests.proxybase import Answer

        if method == b"HEAD":
            return Answer(rewrite=lambda head: head.replace(b'Etag: "', b'Etag: W/"')
                          .replace(b'ETag: "', b'ETag: W/"'))  # fmt: skip
        return super()._decide(method, target, headers)


@pytest.fixture
def weak_etags(s3_env, s3_server) -> Iterator[dict[str, str]]:
    with _WeakHeadETag.in_front_of(s3_server.endpoint_url) as proxy:
        yield {**s3_env, "AWS_ENDPOINT_URL": proxy.url}


def test_an_etag_spelt_otherwise_after_completion_does_not_fail_a_proven_object(
    weak_etags, s3_client, bucket, make_file, tmp_path
):
    """0a354fe: after completion, an ETag that is neither CompleteMultipartUpload's nor the
    parts' is an error, checked *after* HeadObject's size and stored full-object checksum
    already matched (what the code beside it calls "the authority": servers may compute
    ETags their own way). An ETag that is only spelt otherwise (a weak ``W/"..."`` from a
    cache in front) now fails a correct upload: "after completion has ETag W/"..-1", not the
    completed object's "..-1": another object is at the key", exit 1, though the object is
    the file's, byte for byte (bd9524c: exit 0)."""
    file = make_file(1000)
    done = persevere(weak_etags, "cp", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s",
                     "--no-progress")  # fmt: skip
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
    assert done.returncode == 0, done.stderr


@pytest.mark.process
def test_cp_to_the_null_sink_of_the_benchmarks_exits_0(tmp_path):
    """The same check against benchmarks/nullsink.py, the endpoint `benchmarks/run.py sink`
    uploads to: its HeadObject is nginx serving a sparse file (ETag "<mtime>-<size>"), its
    Complete says "nullsink-1", its parts "nullsink" (no MD5 on purpose: nothing to
    predict). Every persevere run to it now ends "after completion has ETag "6b13aea4-c00000",
    not the completed object's "nullsink-1": another object is at the key", exit 1: the sink
    benchmark measures a failing persevere (bd9524c: exit 0)."""
    from benchmarks.nullsink import NullSink, find_nginx

    try:
        find_nginx()
    except Exception:
        pytest.skip("no nginx")
    file = tmp_path / "f"
    file.write_bytes(os.urandom(12 * MiB))
    with NullSink() as sink:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(sink.environment())
        key = sink.key_for(12 * MiB)
        done = persevere(env, "cp", file, f"s3://bench/{key}", "--state-file", tmp_path / "s",
                         "--part-size", "5MiB", "--no-progress", whole_env=True)  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.process
def test_cp_dev_null_does_not_suggest_a_command_that_is_refused(s3_env, bucket, tmp_path):
    """`cp /dev/null s3://B/K` is refused with "to upload it once, as a stream: persevere cp
    - s3://BUCKET/KEY < /dev/null"; since 0a354fe/6794b33 that very command is refused too
    ("standard input is /dev/null: nothing is being piped in"). Bad input gets one clear
    line: this one sends the user to a second refusal."""
    refused = persevere(s3_env, "cp", "/dev/null", f"s3://{bucket}/k", "--state-file",
                        tmp_path / "s")  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    suggested = "persevere cp - s3://BUCKET/KEY < /dev/null"
    if suggested in refused.stderr:
        with open(os.devnull, "rb") as null:
            again = persevere(s3_env, "cp", "-", f"s3://{bucket}/k", "--state-file",
                              tmp_path / "s2", stdin=null)  # fmt: skip
        assert again.returncode == 0, f"suggested {suggested!r}, which says: {again.stderr}"


@pytest.mark.process
@pytest.mark.slow
def test_upload_resume_after_a_link_swap_does_not_complete_the_file_no_longer_named(
    rule_proxy, s3_client, bucket, make_file, tmp_path
):
    """eaea0e4 stops `upload start latest` when the link ``latest`` is swapped mid-run ("A
    changed while it was being uploaded (its path names another file now ...)"), exit 1,
    with the hint "when the file is final, resume" and `persevere upload resume
    --state-file S`. That command then completes A, the file the link no longer names, the
    very object the stop refused to make: "uploaded s3://B/K", exit 0 (the journal records
    only the resolved path, A, which did not change). Followed, the fix's own hint undoes it;
    a rename over the path (what the stop is modelled on) resumes with the new file."""
    env, proxy = rule_proxy
    a = make_file(12 * MiB, seed=1, name="A")
    b = make_file(12 * MiB, seed=2, name="B")
    link = tmp_path / "latest"
    link.symlink_to(a)
    state = tmp_path / "s"
    held = proxy.hold_parts_but(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "start", str(link), f"s3://{bucket}/k",
         "--state-file", str(state), "--part-size", "5MiB", "--no-progress"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        held.wait(60)
        link.unlink()
        link.symlink_to(b)  # ln -sfn B latest
    finally:
        held.release()
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "names another file now" in stderr, stderr
    # The lead's answer (declared in the closing note): the journal records the file the
    # upload reads, A, which did not change; so the stop no longer offers `upload resume` as
    # the way on (no "resumable" command), and says what each way does: cp with the link
    # uploads what it names now; upload resume completes A, the file it started from.
    assert "upload resume --state-file" not in stderr, stderr
    assert f"to upload what {link} names now, run persevere cp" in stderr, stderr
    assert f"upload resume completes {a}" in stderr, stderr
    resumed = persevere(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(a)  # as the stop said


def test_cp_over_a_completed_upload_it_cannot_read_does_not_reread_a_file_it_sends_again(
    s3_env, s3_server, bucket, make_file, tmp_path
):
    """fc27b56 makes recheck read the file when HeadObject is refused (for `upload resume`).
    `cp` calls the same recheck, and with HeadObject refused ("unreadable") it uploads again
    whatever the file gives: with the README's minimal policy (no s3:GetObject) and the
    file only touched (or a block device, which is always re-read), `cp` now reads the whole
    file ("...: its modification time, change time changed since it was uploaded; re-reading
    it"), records the identity in a journal it then replaces, and uploads it all again
    ("cannot be read (403): uploading it again"): every byte read twice, for nothing (a
    disk image: hours). bd9524c went straight to the new upload."""
    writer = {**s3_env, "AWS_ACCESS_KEY_ID": s3_server.writeonly_access_key,
              "AWS_SECRET_ACCESS_KEY": s3_server.writeonly_secret_key}  # fmt: skip
    file = make_file(3000)
    state = tmp_path / "s"
    first = persevere(writer, "cp", file, f"s3://{bucket}/k", "--state-file", state)
    assert first.returncode == 0, first.stderr
    st = file.stat()
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # `touch`: same bytes
    again = persevere(writer, "cp", file, f"s3://{bucket}/k", "--state-file", state)
    assert again.returncode == 0, again.stderr
    assert "uploading it again" in again.stderr, again.stderr
    assert "re-reading it" not in again.stderr, again.stderr


@pytest.mark.process
def test_upload_resume_of_a_stream_refuses_dev_null_as_cp_does(s3_env, s3_client, bucket, tmp_path):
    """0a354fe refused standard input /dev/null in `stdin_kind` (every reader of a stream);
    6794b33 moved the refusal to `Request.refuse_for_stream`, which `cp -` and `upload start
    -` call and `upload resume` does not. A stream upload stopped before its first part (the
    producer slow to start, a SIGINT) and resumed as a service does it, `upload resume
    --state-file S` with standard input /dev/null (StandardInput=null, `docker run` without
    -i, `ssh -n`: the producer left out), reads 0 bytes and completes an empty object,
    "uploaded s3://B/K: 0 B", exit 0, replacing what the key held: the harm audit 11 #7
    named, by the other door."""
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"yesterday's backup")
    state = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "cp", "-", f"s3://{bucket}/k", "--state-file",
         str(state), "--no-progress"],
        env={**os.environ, **s3_env}, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(300):
            if state.exists() and b'"upload_id"' in state.read_bytes():
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)  # before a byte of the stream
        assert proc.wait(30) == 130
    finally:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.close()
        proc.stderr.close()
    with open(os.devnull, "rb") as null:
        resumed = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress",
                            stdin=null)  # fmt: skip
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"yesterday's backup", (
        resumed.stderr
    )
    assert resumed.returncode == 2, resumed.stderr


class _ConsumedOnArrival(RuleProxy):
    """An ingest bucket: a consumer (an S3 event's Lambda, a queue worker) takes each object
    away as soon as it is complete; here, before CompleteMultipartUpload's answer is passed
    on. The server did assemble the object: Complete's ETag is the parts' MD5s'."""

    consume: object = None

    def _decide(self, method, target, headers):
        from tests.proxybase import Answer

        if method == b"POST" and b"uploadId=" in target:

            def consumed(head: bytes) -> bytes:
                if head.split(b" ", 2)[1] == b"200":
                    self.consume()  # type: ignore[operator]
                return head

            return Answer(rewrite=consumed)
        return super()._decide(method, target, headers)


@pytest.mark.slow
def test_an_object_taken_away_after_a_proven_completion_is_not_a_forged_answer(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    """0a354fe: HeadObject's 404 after completion (retried twice, 2 s) is an error, "there is
    no object there: something between persevere and S3 (a proxy, a gateway) answered for
    it". Audit 11 #1's forged answer carried an ETag the parts do not give; a real Complete
    carries the parts' (MD5 of their MD5s, "...-N"), which only a server that holds every
    part's bytes can compute. An object taken away once complete (an ingest bucket whose
    consumer moves each arrival) is now exit 1, and the supervisor's re-run, finding it
    "gone", uploads it all again: a duplicate for the consumer, each run (bd9524c: exit 0)."""
    file = make_file(6 * MiB)
    with _ConsumedOnArrival.in_front_of(s3_server.endpoint_url) as proxy:
        proxy.consume = lambda: s3_client.delete_object(Bucket=bucket, Key="k")
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        done = persevere(env, "cp", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s",
                         "--part-size", "5MiB", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
