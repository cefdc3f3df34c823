"""Resume never lies: the holes of the reliability promise, each tried as a user would hit it.

Whenever persevere exits 0 the object must equal the file as it is at that moment; otherwise
it says what happened and what to do, in a line or two, and loses nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import persevere
from tests.conftest import interrupt_after_parts, sha256_of_file, sha256_of_object
from tests.conftest import persevere as cli
from tests.faultproxy import NO_FAULT, Fault, FaultProxy
from tests.proxybase import Hold
from tests.ruleproxy import RuleProxy
from tests.test_faults import upstream

MiB = 1024 * 1024


@pytest.fixture
def anyio_backend():
    return "asyncio"


def records(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_bytes().splitlines()]


def interrupted(env, bucket, file, state, key="k", parts=2, sig=signal.SIGKILL, *extra):
    args = ["upload", "start", file, f"s3://{bucket}/{key}", "--state-file", state,
            "--part-size", "5MiB", "-c", "1", "--no-progress", *extra]  # fmt: skip
    return interrupt_after_parts(env, args, state, parts, sig=sig)


def assert_same(s3_client, bucket, key, file):
    assert sha256_of_object(s3_client, bucket, key) == sha256_of_file(file)


def clean(result):
    assert "Traceback" not in result.stderr, result.stderr
    return result


def rewrite_in_place(file: Path, offset: int, data: bytes, keep_mtime: bool = True) -> None:
    """Change bytes inside the file and (as rsync -t, tar and restores do) put its mtime back."""
    st = file.stat()
    with file.open("r+b") as f:
        f.seek(offset)
        f.write(data)
    if keep_mtime:
        os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))


# -- 1. a file changed in place with its mtime restored -----------------------------------------
@pytest.mark.process
def test_changed_part_with_restored_mtime_is_sent_again(s3_env, bucket, s3_client, make_file,
                                                        tmp_path):  # fmt: skip
    file = make_file(30 * MiB, seed=91)
    state = tmp_path / "s"
    interrupted(s3_env, bucket, file, state, parts=3)
    rewrite_in_place(file, 100_000, os.urandom(4096))  # inside part 1, already uploaded
    result = clean(cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress"))
    assert result.returncode == 0, result.stderr
    assert "change time changed" in result.stderr
    assert "changed in the file since they were uploaded (first: part 1)" in result.stderr
    assert_same(s3_client, bucket, "k", file)
    check = cli(s3_env, "verify", file, f"s3://{bucket}/k", "--no-progress")
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_spot_check_catches_what_the_identity_cannot(s3_env, bucket, s3_client, make_file,
                                                     tmp_path):  # fmt: skip
    """A file whose recorded identity matches but whose bytes differ (a filesystem without
    trustworthy times, or a forged state file): the spot check re-reads, then everything."""
    file = make_file(30 * MiB, seed=92)
    state = tmp_path / "s"
    interrupted(s3_env, bucket, file, state, parts=2)
    rewrite_in_place(file, 5 * MiB + 7, b"changed")  # part 2
    lines = state.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    st = file.stat()
    header.update(mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)
    journal = [json.loads(x) for x in lines[1:]]
    assert len(journal) == 2  # both parts get spot-checked
    state.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    result = clean(cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress"))
    assert result.returncode == 0, result.stderr
    assert "a spot check found a part that differs" in result.stderr
    assert_same(s3_client, bucket, "k", file)


# -- 2. compressed files keep their bytes -------------------------------------------------------
def test_gz_is_stored_as_its_bytes(s3_env, bucket, s3_client, tmp_path):
    file = tmp_path / "dump.sql.gz"
    file.write_bytes(b"\x1f\x8b" + os.urandom(1000))
    result = clean(cli(s3_env, "upload", "start", file, f"s3://{bucket}/a.gz", "--no-progress"))
    assert result.returncode == 0, result.stderr
    head = s3_client.head_object(Bucket=bucket, Key="a.gz")
    assert "ContentEncoding" not in head
    assert head["ContentType"] == "application/gzip"
    encoded = clean(cli(s3_env, "upload", "start", file, f"s3://{bucket}/b.gz", "--no-progress",
                        "--state-file", tmp_path / "b", "--content-encoding", "gzip"))  # fmt: skip
    assert encoded.returncode == 0, encoded.stderr
    assert s3_client.head_object(Bucket=bucket, Key="b.gz")["ContentEncoding"] == "gzip"


# -- 3. the file changes while a streamed part is on its way ------------------------------------
@pytest.mark.anyio
async def test_file_changing_under_a_streamed_part_is_not_retried(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    from persevere import _sendfile
    from persevere._source import SourceFile
    from persevere._trailer import Trailers

    file = make_file(12 * MiB, seed=93)
    real_read_into = SourceFile.read_into
    reads_at_6mib = 0

    def edited_meanwhile(self, buffer, offset):
        nonlocal reads_at_6mib
        if offset == 6 * MiB:
            reads_at_6mib += 1
            if reads_at_6mib == 2:  # the streaming pass: someone writes to the file first
                rewrite_in_place(file, 6 * MiB, b"X" * 100, keep_mtime=False)
        return real_read_into(self, buffer, offset)

    monkeypatch.setattr(SourceFile, "read_into", edited_meanwhile)
    # Nothing cached: every streamed slice is read by read_into, where the edit is injected.
    monkeypatch.setattr(SourceFile, "read_cached", lambda self, buffer, offset: 0)
    # The header form (checksum pass, then stream): an endpoint that refuses trailers.
    # The trailed form's counterpart: tests/test_trailer.py.
    monkeypatch.setattr(Trailers, "usable", lambda self, algorithm: False)
    # Sent in slices (the kernel's sendfile is off): its counterpart is in tests/test_sendfile.py.
    monkeypatch.setattr(_sendfile, "ENABLED", False)
    options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)  # stream parts
    state = tmp_path / "s"
    with pytest.raises(persevere.SourceChanged, match="changed while it was being uploaded"):
        await persevere.upload_file(file, bucket, "k", state, part_size=5 * MiB,
                                    options=options)  # fmt: skip
    assert reads_at_6mib == 2  # checksum pass, stream; a retry would stream it again
    monkeypatch.setattr(SourceFile, "read_into", real_read_into)
    result = await persevere.resume(state)  # re-reads part 1, sends part 2 (changed) and 3
    assert result.bytes_sent == 7 * MiB
    assert_same(s3_client, bucket, "k", file)


# -- 4. the journal's final line on a full disk -------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
def test_full_disk_at_the_final_line(s3_env, bucket, s3_client, make_file, tmp_path, tiny_disk):
    """The object completes, the state file cannot say so: exit 0 with a warning (the object
    equals the file), and a later resume records it."""
    file = make_file(20 * 5 * MiB, seed=94)
    # A rehearsal on a roomy disk measures the journal's lines (20 parts fill most of a 4 KiB
    # page); metadata recorded in the header then puts the journal's end just before the
    # page's end, and the final line across it.
    rehearsal = tmp_path / "rehearsal"
    assert cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", rehearsal,
               "--part-size", "5MiB", "--no-progress").returncode == 0  # fmt: skip
    lines = rehearsal.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "completed"
    padding = 4096 - sum(map(len, lines[:-1])) - 10 - len(',"Metadata":{"pad":""}')
    assert 0 < padding < 1000, padding
    key = "k"
    (tiny_disk / "filler").write_bytes(b"f" * 4096)  # the other page
    state = tiny_disk / "s"
    result = clean(cli(s3_env, "upload", "start", file, f"s3://{bucket}/{key}", "--state-file",
                       state, "--part-size", "5MiB", "--no-progress",
                       "--metadata", "pad=" + "x" * padding))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the object is complete and verified, but cannot write state file" in result.stderr
    assert records(state)[-1]["type"] == "part"
    assert_same(s3_client, bucket, key, file)
    (tiny_disk / "filler").unlink()
    again = clean(cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already completed")
    assert records(state)[-1]["type"] == "completed"


@pytest.mark.process
@pytest.mark.anyio
async def test_abort_that_cannot_be_recorded(s3_env, bucket, s3_client, make_file, tmp_path,
                                             monkeypatch):  # fmt: skip
    from persevere._journal import Journal

    file = make_file(20 * MiB, seed=95)
    state = tmp_path / "s"
    interrupted(s3_env, bucket, file, state, parts=1)
    real = Journal.append_outcome

    def disk_full(self, kind, **details):
        raise persevere.StateFileUnwritable("cannot write state file: No space left on device")

    monkeypatch.setattr(Journal, "append_outcome", disk_full)
    with pytest.raises(persevere.StateFileUnwritable, match="No space left"):
        await persevere.abort(state)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    monkeypatch.setattr(Journal, "append_outcome", real)
    await persevere.abort(state)  # already gone from S3: recorded now
    assert records(state)[-1]["type"] == "aborted"


# -- 5. completed, crashed before recording it, then the file was touched -----------------------
@pytest.mark.parametrize("edit", ["touch", "content"])
def test_completed_then_touched(s3_env, bucket, s3_client, make_file, tmp_path, edit):
    file = make_file(12 * MiB, seed=96)
    state = tmp_path / "s"
    done = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = state.read_bytes().splitlines(keepends=True)
    state.write_bytes(b"".join(lines[:-1]))  # the crash came before the "completed" line
    if edit == "touch":
        os.utime(file)
    else:
        rewrite_in_place(file, 42, b"!", keep_mtime=False)
    result = clean(cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress"))
    if edit == "touch":
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("already completed")
        assert_same(s3_client, bucket, "k", file)
    else:
        assert result.returncode == 1
        assert "was completed from" in result.stderr and "the file has changed since" in (
            result.stderr
        )
        assert "resumable" not in result.stderr and "abort" not in result.stderr
    assert records(state)[-1]["type"] == "completed"  # a good object's upload is not "aborted"


# -- 6. SIGHUP --------------------------------------------------------------------------------
@pytest.mark.process
def test_sighup_settles_and_says_how_to_resume(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(40 * MiB, seed=97)
    state = tmp_path / "s"
    result = clean(interrupted(s3_env, bucket, file, state, "k", 2, signal.SIGHUP))
    assert result.returncode == 129, result.stderr
    assert "SIGHUP received" in result.stderr
    assert f"persevere upload resume --state-file {state}" in result.stderr
    resumed = clean(cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress"))
    assert resumed.returncode == 0, resumed.stderr
    assert_same(s3_client, bucket, "k", file)


# -- 7. the minimal IAM policy (PutObject + AbortMultipartUpload) -------------------------------
@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_resume_without_list_parts_permission(s3_env, s3_server, bucket, s3_client, make_file,
                                              tmp_path):  # fmt: skip
    env = {**s3_env, "AWS_ACCESS_KEY_ID": s3_server.writeonly_access_key,
           "AWS_SECRET_ACCESS_KEY": s3_server.writeonly_secret_key}  # fmt: skip
    file = make_file(30 * MiB, seed=98)
    state = tmp_path / "s"
    interrupted(env, bucket, file, state, parts=2)
    result = clean(cli(env, "upload", "resume", "--state-file", state, "--no-progress"))
    assert result.returncode == 0, result.stderr
    assert "ListParts was refused (AccessDenied): resuming from the state file alone" in (
        result.stderr
    )
    assert_same(s3_client, bucket, "k", file)


# -- the smaller items ------------------------------------------------------------------------
@pytest.mark.anyio
async def test_a_stall_rewinds_progress_once(s3_env, s3_server, bucket, make_file, tmp_path,
                                             caplog):  # fmt: skip
    file = make_file(12 * MiB, seed=99)
    done = 0

    class Progress:
        def start(self, total_bytes, done_bytes):
            pass

        def advance(self, delta_bytes):
            nonlocal done
            done += delta_bytes

        def close(self):
            pass

    # The first connections (CreateMultipartUpload's is small): the part stalls 2 MiB in.
    plan = lambda n: Fault("stall", at_byte=2 * MiB, stall_s=20) if n < 2 else NO_FAULT  # noqa: E731
    with FaultProxy(upstream(s3_server), plan) as proxy:
        await persevere.upload_file(
            file, bucket, "k", tmp_path / "s", part_size=12 * MiB,
            endpoint=persevere.Endpoint(f"http://127.0.0.1:{proxy.port}"),
            options=persevere.UploadOptions(concurrency=1, stall_timeout_s=0.5),
            progress=Progress(),
        )  # fmt: skip
    assert "stalled" in caplog.text  # the stall happened, and was cut
    assert done == 12 * MiB


@pytest.mark.anyio
async def test_a_slow_create_is_waited_for_not_cut(s3_env, s3_server, bucket, s3_client,
                                                   make_file, tmp_path, monkeypatch):  # fmt: skip
    """Only a Ctrl-C time-boxes CreateMultipartUpload: cutting a slow one and asking again
    would leave an upload nobody records."""
    from persevere import _create

    monkeypatch.setattr(_create, "CREATE_SHIELD_S", 0.3)
    plan = lambda n: Fault("stall", at_byte=0, stall_s=1) if n == 0 else NO_FAULT  # noqa: E731
    with FaultProxy(upstream(s3_server), plan) as proxy:
        await persevere.upload_file(
            make_file(1000), bucket, "k", tmp_path / "s",
            endpoint=persevere.Endpoint(f"http://127.0.0.1:{proxy.port}"),
        )  # fmt: skip
    assert proxy.faults_done
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.process
def test_a_signal_after_the_result_does_not_undo_it(tmp_path):
    script = tmp_path / "late_signal.py"
    script.write_text(
        "import os, signal, anyio\n"
        "from persevere import _cli_run\n"
        "async def work():\n"
        "    with anyio.CancelScope(shield=True):\n"
        "        os.kill(os.getpid(), signal.SIGINT)  # arrives as the work finishes\n"
        "        await anyio.sleep(0.5)\n"
        "    return 'done'\n"
        "print(_cli_run._run(work))\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"


@pytest.mark.anyio
async def test_a_value_error_mid_upload_is_a_bug_not_a_bad_url(s3_env, bucket, make_file,
                                                               tmp_path, monkeypatch):  # fmt: skip
    from persevere._source import SourceFile

    async def broken(self, *args):
        raise ValueError("invalid url in some library")

    monkeypatch.setattr(SourceFile, "prepare", broken)
    with pytest.raises(ExceptionGroup) as raised:  # a bug: its traceback, not "bad input"
        await persevere.upload_file(make_file(1000), bucket, "k", tmp_path / "s")
    assert raised.group_contains(ValueError, match="invalid url")


@pytest.mark.process
def test_upload_aborted_elsewhere_is_not_called_resumable(rule_proxy, bucket, s3_client,
                                                         make_file, tmp_path):  # fmt: skip
    file = make_file(40 * MiB, seed=100)
    state = tmp_path / "s"
    env, proxy = rule_proxy
    held = proxy.hold_parts_but()  # every part waits until the upload is aborted
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "start", file, f"s3://{bucket}/k",
         "--state-file", state, "--part-size", "5MiB", "-c", "1", "--no-progress"],
        env={**os.environ, **env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (state.exists() and state.stat().st_size):
        time.sleep(0.05)
    upload_id = records(state)[0]["upload_id"]
    s3_client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    held.release()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "NoSuchUpload" in stderr and "aborted" in stderr
    assert "resumable" not in stderr and "Traceback" not in stderr


@pytest.mark.anyio
async def test_bad_digest_on_complete_is_an_integrity_error(s3_env, bucket, make_file, tmp_path,
                                                            monkeypatch):  # fmt: skip
    from persevere._checksums import ObjectChecksum
    from persevere._session import MultipartSession

    real = MultipartSession.expected
    calls = 0

    def wrong(self, parts):
        nonlocal calls
        calls += 1
        done = real(self, parts)
        return type(done)(done.etag, ObjectChecksum(done.checksum.algorithm, "AAAAAAAAAAA="),
                          done.expected_etag)  # fmt: skip

    monkeypatch.setattr(MultipartSession, "expected", wrong)
    with pytest.raises(persevere.IntegrityError, match="BadDigest"):
        await persevere.upload_file(make_file(6 * MiB), bucket, "k", tmp_path / "s",
                                    part_size=5 * MiB)  # fmt: skip
    assert calls == 1  # not retried


def test_directory_fsync_failure_leaves_no_state_file(tmp_path, monkeypatch):
    import persevere._journal as journal_module

    def fails(directory):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module, "_fsync_dir", fails)
    with pytest.raises(persevere.StateFileError, match="Input/output error"):
        journal_module.Journal.create(tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_source_changed_names_what_changed(make_file):
    from persevere._source import SourceFile, inspect_file

    file = make_file(100)
    with SourceFile(inspect_file(file)) as source:
        os.utime(file, ns=(1, 1))
        with pytest.raises(persevere.SourceChanged) as changed:
            source.check_unchanged()
    assert "modification time" in str(changed.value) and "size" not in str(changed.value)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_damaged_middle_line_is_rebuilt_from_s3(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(30 * MiB, seed=101)
    state = tmp_path / "s"
    interrupted(s3_env, bucket, file, state, parts=3)
    lines = state.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"type":"part","part_number":2,"et\x00\x00garbage\n'
    state.write_bytes(b"".join(lines))
    result = clean(cli(s3_env, "-v", "upload", "resume", "--state-file", state, "--no-progress"))
    assert result.returncode == 0, result.stderr
    assert "line(s) 3 damaged" in result.stderr
    assert "part 2: found on S3 and matches the file, adopted" in result.stderr
    assert_same(s3_client, bucket, "k", file)


# -- found by an audit ----------------------------------------------------------------------------
@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_file_that_grows_during_the_upload_points_to_abort_not_resume(
    rule_proxy, bucket, s3_client, make_file, tmp_path
):
    file, state = make_file(20 * MiB, seed=95), tmp_path / "s"
    env, proxy = rule_proxy
    held = proxy.hold_parts_but(1)  # part 2 waits until the file has grown
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "start", str(file), f"s3://{bucket}/k",
         "--state-file", str(state), "--part-size", "5MiB", "-c", "1", "--no-progress"],
        env={**os.environ, **env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    end = time.monotonic() + 60
    while time.monotonic() < end and b'"type":"part"' not in (
        state.read_bytes() if state.exists() else b""
    ):
        time.sleep(0.01)
    with file.open("ab") as f:
        f.write(b"more")
    held.release()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "changed size while it was being uploaded (20,971,520 -> 20,971,524 bytes)" in stderr
    assert "upload resume" not in stderr and "persevere upload abort --state-file" in stderr


@pytest.mark.process
def test_a_proc_file_is_not_uploaded_empty(s3_env, bucket, s3_client, tmp_path):
    source = Path("/proc/self/status")  # size 0, yet bytes when read
    refused = clean(cli(s3_env, "cp", source, f"s3://{bucket}/p", "--state-dir", tmp_path))
    assert refused.returncode == 2
    assert "does not give the 0 bytes its size says" in refused.stderr
    assert f"cat {source} | persevere cp - s3://BUCKET/KEY" in refused.stderr
    with Path("/proc/version").open("rb") as stdin:
        streamed = subprocess.run(
            [sys.executable, "-m", "persevere", "cp", "-", f"s3://{bucket}/p", "--state-dir",
             str(tmp_path), "--no-progress"], stdin=stdin,
            env={**os.environ, **s3_env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    body = s3_client.get_object(Bucket=bucket, Key="p")["Body"].read()
    assert body == Path("/proc/version").read_bytes()


# -- a stop while S3's answer to a part is on its way -----------------------------------------
def _held_answers():
    """A rule that holds UploadPart's answer once S3 has taken the part, until ``held`` is
    released (or the proxy closes, if the proxy is given it: ``proxy.hold(held)``);
    ``held.wait()`` returns once one waits (S3 holds the part, the client does not know it)."""
    from tests.ruleproxy import Rule

    held = Hold()

    def hold(answer: bytes) -> bytes:
        held.block()
        return answer

    return Rule("PUT", "partNumber", rewrite=hold), held


def _journal_and_s3(s3_client, bucket, state):
    lines = records(state)
    recorded = {r["part_number"]: r["etag"] for r in lines if r["type"] == "part"}
    listed = s3_client.list_parts(Bucket=bucket, Key="k", UploadId=lines[0]["upload_id"])
    return recorded, {p["PartNumber"]: p["ETag"] for p in listed.get("Parts", [])}


@pytest.mark.process
def test_a_stop_records_the_parts_s3_took(s3_env, s3_server, bucket, s3_client, make_file,
                                          tmp_path):  # fmt: skip
    """Ctrl-C while S3's answer to a part is on its way: the part is on S3, so the journal
    records it (its answer is waited for); the README said "a part S3 has accepted is always
    recorded", and status showed S3 holding parts the journal did not."""
    file, state = make_file(40 * MiB, seed=99), tmp_path / "s"
    rule, held = _held_answers()
    with RuleProxy(upstream(s3_server), [rule]) as proxy:
        proxy.hold(held)
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        proc = subprocess.Popen(
            [sys.executable, "-m", "persevere", "upload", "start", str(file), f"s3://{bucket}/k",
             "--state-file", str(state), "--part-size", "5MiB", "-c", "3", "--no-progress"],
            env={**os.environ, **env}, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: list[str] = []
        stopping = threading.Event()

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if "SIGINT received: stopping" in line:
                    stopping.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        held.wait(60)
        proc.send_signal(signal.SIGINT)
        assert stopping.wait(60), "".join(lines)  # persevere is stopping: now S3's answers
        held.release()
        proc.wait(timeout=60)
        reader.join(timeout=10)
        proc.stderr.close()
        stderr = "".join(lines)
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr
        recorded, on_s3 = _journal_and_s3(s3_client, bucket, state)
        assert recorded and recorded == on_s3
        status = json.loads(clean(cli(env, "upload", "status", "--state-file", state,
                                      "--json")).stdout)  # fmt: skip
        assert status["remote"]["unrecorded"] == 0
        assert status["parts_done"] == status["remote"]["parts"] == len(on_s3)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_status_explains_parts_s3_holds_that_the_journal_lacks(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path
):
    """kill -9 while S3's answer to a part is on its way: S3 holds a part no journal line
    records. Status says so, and what resume does with it; resume adopts it."""
    file, state = make_file(40 * MiB, seed=100), tmp_path / "s"
    rule, held = _held_answers()
    with RuleProxy(upstream(s3_server), [rule]) as proxy:
        proxy.hold(held)
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        proc = subprocess.Popen(
            [sys.executable, "-m", "persevere", "upload", "start", str(file), f"s3://{bucket}/k",
             "--state-file", str(state), "--part-size", "5MiB", "-c", "1", "--no-progress"],
            env={**os.environ, **env}, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        held.wait(60)
        proc.kill()  # S3 answered: it has the part, whose answer now goes nowhere
        proc.wait()
        recorded, on_s3 = _journal_and_s3(s3_client, bucket, state)
        unrecorded = len(set(on_s3) - set(recorded))
        assert unrecorded == 1
        status = clean(cli(env, "upload", "status", "--state-file", state))
        assert status.returncode == 0, status.stderr
        assert (f"S3:          {len(on_s3)} parts (5.0 MiB); 1 of them not in the state file "
                "yet (taken by S3 as the upload stopped): the next resume keeps it if it "
                "matches the file") in status.stdout  # fmt: skip
        proxy.rules = []
        resumed = clean(cli(env, "-v", "upload", "resume", "--state-file", state, "--no-progress"))
    assert resumed.returncode == 0, resumed.stderr
    assert "found on S3 and matches the file, adopted" in resumed.stderr
    assert_same(s3_client, bucket, "k", file)
