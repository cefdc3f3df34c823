"""Adversarial review (branch ``review``): ways to make persevere exit 0 with an object that is
not the file (or stream), to strand or lose a resumable upload, or to break the signal
contract. Each test's docstring says what happens and what should; they fail on main @ 00224c7
and pass once fixed, except the two marked HELD (regression tests of attacks that failed).
Real server, real bytes; where a race must be deterministic, the *local* side is steered (the
spot check's random choice, a writer during a re-read), never S3."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import persevere as cli
from tests.conftest import sha256_of_file, sha256_of_object
from tests.test_stream import held_after, produced, producer

MiB = 1024 * 1024


def popen(env, *args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "persevere", *map(str, args)],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **kwargs,
    )  # fmt: skip


def part_lines(state: Path) -> int:
    return state.read_bytes().count(b'"type":"part"') if state.exists() else 0


def wait_for_parts(state: Path, parts: int, proc: subprocess.Popen, deadline_s: float = 60):
    end = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < end and part_lines(state) < parts:
        time.sleep(0.005)


def no_traceback(result):
    assert "Traceback" not in result.stderr, result.stderr
    return result


def pipe_stream(env, size, seed, *args):
    """``producer SIZE SEED | persevere ARGS``, run to its end."""
    source = producer(size, seed)
    try:
        return cli(env, *args, stdin=source.stdout)
    finally:
        assert source.stdout is not None
        source.stdout.close()
        source.kill()
        source.wait()


# -- 1. the file replaced (renamed over) while it is uploaded ------------------------------------
@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_file_renamed_over_during_the_upload_is_not_reported_done(
    rule_proxy, bucket, s3_client, make_file, tmp_path
):
    """HELD. rsync, editors and log rotation replace a file by rename. persevere reads through
    the descriptor it opened and its final check fstat()s that descriptor; the rename unlinks
    the old inode, which moves its ctime, so the check sees it: exit 1 "changed while it was
    being uploaded". (Kept as a regression test: a check that compared only size and mtime, or
    a file with a second hard link kept elsewhere, would not be caught by anything else.)"""
    file = make_file(20 * MiB, seed=1, name="f.bin")
    replacement = make_file(20 * MiB, seed=2, name="replacement.bin")
    state = tmp_path / "s"
    env, proxy = rule_proxy
    hold = proxy.hold_parts_but(1)  # part 2 waits until the file is replaced
    proc = popen(env, "cp", file, f"s3://{bucket}/k",
                 "--state-file", state, "--part-size", "5MiB", "-c", "1",
                 "--no-progress")  # fmt: skip
    wait_for_parts(state, 1, proc)
    assert proc.poll() is None, "finished before the file could be replaced"
    os.replace(replacement, file)  # the path now names other bytes (same size)
    hold.release()
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr
    if proc.returncode == 0:
        assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file), (
            "exit 0, but the object is not the file at the path"
        )
    else:
        assert proc.returncode == 1 and "changed" in stderr, stderr


# -- 2. a second cp while the first is creating its upload ---------------------------------------
def test_cp_does_not_delete_the_state_file_of_a_cp_that_is_creating_its_upload(
    s3_env, bucket, make_file, tmp_path
):
    """While cp A waits for CreateMultipartUpload (a round trip; seconds with retries), its
    state file exists, empty and locked. cp B's ``_existing`` takes any empty state file for
    one left by a crash and unlinks it, then starts its own upload: A goes on journaling into
    a deleted file (nothing to resume if it dies; its upload orphaned and billed), and "a
    second cp while one runs exits 3" does not hold. Should: B sees the lock, exits 3."""
    file = make_file(1000, seed=3)
    state = tmp_path / "s"
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what Journal.create holds (cp A)
        result = no_traceback(
            cli(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress")
        )
        assert os.path.samestat(os.stat(state), os.fstat(fd)), "A's state file was replaced"
        assert result.returncode == 3, result.stderr
        assert "already running" in result.stderr
    finally:
        os.close(fd)


# -- 3. a resumed stream that ends early, on a part boundary -------------------------------------
@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_a_resumed_stream_shorter_than_what_was_uploaded_is_refused(
    s3_env, bucket, s3_client, tmp_path
):
    """The journal proves the stream was longer (parts 1..3 of 8 MiB recorded); the stream
    piped in to resume ends after part 1 (the producer died, or another one). persevere
    checks part 1, finds no part 2, and completes a 1-part object: exit 0 with a truncated
    object, although the journal shows it differs from the stream being uploaded. Should: exit
    1 "the stream differs / ended before the parts already uploaded", upload still resumable
    (the README: "A stream that differs stops at its first differing part")."""
    state = tmp_path / "s"
    args = ["cp", "-", f"s3://{bucket}/k", "--state-file", state, "--no-progress", "-c", "1"]
    source = producer(40 * MiB, 7, hold_at=held_after(3))  # parts 1..3, then it waits
    first = popen(s3_env, *args, stdin=source.stdout)
    assert source.stdout is not None and source.stdin is not None
    source.stdout.close()
    wait_for_parts(state, 3, first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    source.kill()
    source.wait()
    source.stdin.close()
    assert part_lines(state) >= 3
    short = no_traceback(pipe_stream(s3_env, 8 * MiB, 7, *args))  # the same bytes, 1 part only
    if short.returncode == 0:
        head = s3_client.head_object(Bucket=bucket, Key="k")
        pytest.fail(
            f"exit 0 with a {head['ContentLength']:,}-byte object; the journal recorded "
            f"{part_lines(state)} parts of the stream being uploaded"
        )
    assert short.returncode == 1, short.stderr
    # and the right stream still finishes it
    full = no_traceback(pipe_stream(s3_env, 40 * MiB, 7, *args))
    assert full.returncode == 0, full.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(40 * MiB, 7)


# -- 4. --processes: a stop signal while the shards run --------------------------------------------
@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize("how", ["SIGTERM to persevere", "Ctrl-C to the terminal's group"])
def test_processes_stop_on_a_signal_while_the_shards_run(
    rule_proxy, bucket, s3_client, make_file, tmp_path, how
):
    """``upload start --processes N``: after create_upload's _run, SIGINT/SIGTERM/SIGHUP are
    left ignored (_run's finally) while run_local_shards waits. A SIGTERM to persevere (systemd
    stop, kill PID, a Kubernetes pod's stop) is ignored: the shards go on, and the parent then
    completes the upload. A Ctrl-C reaches the shards (exit 130) but the parent, ignoring it,
    "completes: sends what they left", alone, i.e. the rest of the upload. Should: stop, exit
    130, the upload resumable (the README's signal contract)."""
    file = make_file(60 * MiB, seed=4)
    state = tmp_path / "s"
    env, proxy = rule_proxy
    held = proxy.hold_parts_but(1)  # shard 0 sends part 1; every other part waits in flight
    proc = popen(env, "upload", "start", file,
                 f"s3://{bucket}/k", "--state-file", state, "--part-size", "5MiB",
                 "--processes", "2", "-c", "1", "--no-progress",
                 start_new_session=True)  # fmt: skip
    shard0 = tmp_path / "s.shard-0-of-2"
    wait_for_parts(shard0, 1, proc)
    assert proc.poll() is None
    if how.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    held.release()  # held, a part sent whole would have the stop wait 10 s for its answer
    try:
        _, stderr = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its shards: all started here
        proc.communicate()
        pytest.fail(f"{how}: still running 15 s later")
    finally:
        if proc.poll() is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # shards left behind, if any
            except ProcessLookupError:
                pass
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 130, f"{how}: exit {proc.returncode}\n{stderr}"
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads"), "not resumable"


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_resume_processes_stopped_says_resumable_and_leaves_no_shard_running(
    rule_proxy, bucket, s3_client, make_file, tmp_path
):
    """``upload resume --processes N`` runs the shards before any _run: a SIGTERM meets
    main()'s early handler, which prints "received before anything started; nothing to
    resume" and os._exit()s, leaving the N shard processes running on (orphans, still
    uploading, holding their journals' locks: the supervisor's restart then finds them
    "in use"). Should: stop the shards, exit 130, say the upload is resumable."""
    file = make_file(60 * MiB, seed=5)
    state = tmp_path / "s"
    env, proxy = rule_proxy  # recorded: the shards use it too
    made = cli(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--shards", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    held = proxy.hold_parts_but(1)  # shard 0 sends part 1; every other part waits in flight
    proc = popen(env, "upload", "resume", "--state-file", state, "--processes", "2", "-c",
                 "1", "--no-progress", start_new_session=True)  # fmt: skip
    wait_for_parts(tmp_path / "s.shard-0-of-2", 1, proc)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    held.release()  # held, a part sent whole would have the stop wait 10 s for its answer
    _, stderr = proc.communicate(timeout=30)
    orphans, end = True, time.monotonic() + 1  # its shards, if still there 1 s later
    while orphans and time.monotonic() < end:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            orphans = False
        else:
            time.sleep(0.01)
    if orphans:
        os.killpg(proc.pid, signal.SIGKILL)  # the shards this test started
    assert "Traceback" not in stderr, stderr
    problems = [
        *(["shard processes still running after persevere exited"] if orphans else []),
        *([f"says: {stderr.strip()}"] if "nothing to resume" in stderr else []),
        *([f"exit {proc.returncode}"] if proc.returncode != 130 else []),
    ]
    assert not problems, problems


# -- 5. an identity change is paid for at every resume, not once --------------------------------
@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_after_a_reread_the_next_resume_trusts_the_new_identity(
    rule_proxy, bucket, s3_client, make_file, tmp_path
):
    """The journal's docstring: "a ``source`` line when resume has checked the recorded parts
    against a file whose identity changed (so the next resume trusts that identity)". Only cp's
    "already uploaded" path and completion write one; resume never does. So once a file is
    touched, every later resume re-reads every part uploaded so far: for the README's 3 TB file
    up to ~100 minutes per restart, and a supervisor restarting more often than that never
    finishes. Should: after the re-read (and the file unchanged meanwhile), append a source
    line; the next resume only spot-checks."""
    file = make_file(40 * MiB, seed=6)
    state = tmp_path / "s"
    one = ["-c", "1", "--no-progress"]
    env, proxy = rule_proxy  # recorded: every run goes through it
    held = proxy.hold_parts_but(*range(1, 3))
    first = popen(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                  "--part-size", "5MiB", *one)  # fmt: skip
    wait_for_parts(state, 2, first)
    first.kill()
    first.communicate()
    held.release()
    os.utime(file)  # touched: the identity changed, the bytes did not
    held = proxy.hold_parts_but(*range(1, 5))
    second = popen(env, "upload", "resume", "--state-file", state, *one)
    wait_for_parts(state, 4, second)
    second.kill()
    _, stderr = second.communicate()
    held.release()
    assert "re-reading" in stderr  # the one re-read the change calls for
    third = no_traceback(cli(env, "upload", "resume", "--state-file", state, "--no-progress"))
    assert third.returncode == 0, third.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
    assert "re-reading" not in third.stderr, third.stderr


# -- 6. a journal line that is valid JSON with a wrong checksum ----------------------------------
class _FirstParts:
    """The spot check's choice made deterministic: the lowest part numbers (the real one picks
    2 at random, so it misses one bad part of N with probability 1 - 2/N)."""

    def sample(self, population, k):
        return sorted(population)[:k]


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_part_line_with_a_wrong_checksum_does_not_strand_the_upload(
    rule_proxy, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """Bit rot or an editor leaves a part line that still parses (only its checksum differs):
    replay takes it as valid, the spot check (2 random parts) likely misses it, and the
    combined checksum sent to CompleteMultipartUpload no longer matches S3's parts: BadDigest,
    IntegrityError, exit 1, "abort the upload and start again" (and cp, exit 1: "needs a
    person"). Every run does the same. Yet ``resume --verify-parts`` repairs it (re-reads
    every part, sends the odd one again). Should: on BadDigest at completion, re-read every
    recorded part and send again those that differ (then complete); at the least say
    ``resume --verify-parts`` instead of throwing the upload away."""
    import persevere
    from persevere._errors import PersevereError

    file = make_file(40 * MiB, seed=8)
    state = tmp_path / "s"
    env, proxy = rule_proxy  # recorded: every run goes through it
    held = proxy.hold_parts_but(*range(1, 7))
    first = popen(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                  "--part-size", "5MiB", "-c", "1", "--no-progress")  # fmt: skip
    wait_for_parts(state, 6, first)
    first.kill()
    first.communicate()
    held.release()
    lines = state.read_bytes().splitlines(keepends=True)
    records = [json.loads(line) for line in lines]
    last = max(i for i, r in enumerate(records) if r["type"] == "part")
    wrong = dict(records[last], checksum="AAAAAAAAAAA=")  # valid JSON, wrong value
    lines[last] = (json.dumps(wrong, separators=(",", ":")) + "\n").encode()
    state.write_bytes(b"".join(lines))
    monkeypatch.setattr("persevere._resume.random.SystemRandom", _FirstParts)
    failure: PersevereError | None = None
    try:
        persevere.resume_sync(state)
    except PersevereError as exc:
        failure = exc
    if failure is not None:
        repaired = cli(env, "upload", "resume", "--state-file", state, "--verify-parts",
                       "--no-progress")  # fmt: skip
        assert repaired.returncode == 0, repaired.stderr  # the fix exists...
        assert "verify-parts" in (failure.hint or ""), (  # ...the message should lead to it
            f"{type(failure).__name__} (exit {failure.exit_code}): {failure}; hint: {failure.hint}"
        )
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


# -- 7. cp "already uploaded" while the file changes under its re-read ---------------------------
def _writer_during_reread(monkeypatch, file: Path, after_calls: int):
    """A concurrent writer, made deterministic: once the re-read has hashed ``after_calls``
    parts, someone rewrites the first MiB of the file (a part already proven)."""
    from persevere._source import SourceFile

    real = SourceFile.hash_range
    calls = []

    def hash_range(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == after_calls:
            with file.open("r+b") as f:
                f.write(b"\0" * MiB)
        return result

    monkeypatch.setattr(SourceFile, "hash_range", hash_range)


def test_cp_already_uploaded_is_not_said_of_a_file_that_changed_during_its_reread(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """cp finds the upload completed and the file's identity changed (touched): it re-reads
    every part (_file_gives_parts), finds them equal, records the identity it took *before*
    the re-read and exits 0 "already completed". Nothing checks the file again after the
    re-read, which for the README's 3 TB file lasts ~100 minutes: a write meanwhile to a part
    already read still ends in exit 0, object != file. (resume's re-read is followed by
    check_unchanged; cp's is not; nor is resume's _completed_earlier.) Should: fstat after the
    re-read; changed -> upload again (or exit 1 "changed while it was being read")."""
    import anyio

    from persevere._cp import copy_file

    file = make_file(20 * MiB, seed=9)
    state = tmp_path / "s"
    done = cli(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", state, "--part-size",
               "5MiB", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    os.utime(file)  # the identity changes, the bytes do not: cp re-reads the parts
    _writer_during_reread(monkeypatch, file, after_calls=2)
    refused: Exception | None = None
    try:
        anyio.run(lambda: copy_file(file, bucket, "k", state))
    except Exception as exc:  # a refusal is fine, if it says why
        refused = exc
    if refused is not None:
        assert "changed" in str(refused), repr(refused)
    else:
        assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file), (
            "copy_file returned (exit 0) but the object is not the file"
        )


# -- 8. shards: what the completing host trusts --------------------------------------------------
@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_an_edit_between_a_shards_run_and_completion_is_caught(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """HELD. Shards run, then the file is edited in place (its ctime moves), then resume
    completes: the identity differs from the header's, every merged part is re-read, the
    edited one is sent again: the object is the file as it is now."""
    file = make_file(30 * MiB, seed=10)
    state = tmp_path / "s"
    made = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--shards", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    for index in range(2):
        shard = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", f"{index}/2",
                    "--no-progress")  # fmt: skip
        assert shard.returncode == 0, shard.stderr
    with file.open("r+b") as f:
        f.seek(17 * MiB)
        f.write(b"edited")
    done = no_traceback(cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress"))
    assert done.returncode == 0, done.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_parts_a_shard_read_from_another_view_of_the_file_are_not_trusted_blindly(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """A shard on another host reads the file through its own view (``--file``, an NFS client
    with a stale cache, a copy that is not quite the same). Its journal holds the main
    header's identity and the checksums of what *it* read; the completing host merges those
    parts as if read from its own file, whose identity is unchanged, so only the 2-part spot
    check stands between them and the object: here it samples shard 0's parts and the
    object is completed from shard 1's other bytes, exit 0. Should: a shard journal records
    the identity its parts were read from (a source line), and the completing run re-reads
    (like adoption) merged parts whose recorded source is not its own file's."""
    import persevere

    file = make_file(40 * MiB, seed=11, name="f.bin")
    elsewhere = tmp_path / "host-b"
    elsewhere.mkdir()
    stale = make_file(40 * MiB, seed=12, name="host-b/f.bin")  # host B's view: other bytes
    state = tmp_path / "s"
    made = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--shards", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    for index, path in ((0, file), (1, stale)):
        shard = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", f"{index}/2",
                    "--file", path, "--no-progress")  # fmt: skip
        assert shard.returncode == 0, shard.stderr
    monkeypatch.setattr("persevere._resume.random.SystemRandom", _FirstParts)
    refused: Exception | None = None
    try:
        persevere.resume_sync(state)
    except persevere.PersevereError as exc:
        refused = exc
    if refused is not None:
        assert "changed" in str(refused) or "differ" in str(refused), repr(refused)
        return
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file), (
        "resume exited 0 with an object made partly of another file's bytes"
    )


# -- 9. a damaged line after the final record -----------------------------------------------------
def test_a_damaged_source_line_after_completion_does_not_strand_cp(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """cp appends a ``source`` line after ``completed`` when it re-proves a touched file. A
    damaged one (the README: "a damaged line in the middle of the journal is skipped with a
    warning") makes replay raise "line N follows the upload's final 'completed' record":
    every later cp exits 1 with that line and no hint (a supervisor's "needs a person"),
    although nothing is lost. Should: skip it with a warning like any damaged line (the
    identity falls back to the one before it, so cp re-reads and goes on), exit 0."""
    file = make_file(12 * MiB, seed=13)
    state = tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--part-size", "5MiB",
            "--no-progress"]  # fmt: skip
    assert cli(s3_env, *args).returncode == 0
    os.utime(file)
    assert cli(s3_env, *args).returncode == 0  # re-proved: a source line after 'completed'
    lines = state.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "source"
    lines[-1] = lines[-1][:10] + b"\x00garbage" + lines[-1][18:]  # bit rot, newline intact
    state.write_bytes(b"".join(lines))
    again = no_traceback(cli(s3_env, *args))
    assert again.returncode == 0, again.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


def test_resume_already_completed_is_not_said_of_a_file_that_changed_during_its_reread(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """The same gap in resume's _completed_earlier (the upload completed, its 'completed' line
    lost in a crash): the touched file's parts are re-read, then the completion is recorded
    with the identity taken before the re-read and "already completed" returned, with no
    check that the file stayed as read. Should: check the file after the re-read."""
    import persevere

    file = make_file(20 * MiB, seed=14)
    state = tmp_path / "s"
    done = cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = state.read_bytes().splitlines(keepends=True)
    state.write_bytes(b"".join(line for line in lines if b'"type":"completed"' not in line))
    os.utime(file)
    _writer_during_reread(monkeypatch, file, after_calls=2)
    refused: Exception | None = None
    try:
        persevere.resume_sync(state)
    except persevere.PersevereError as exc:
        refused = exc
    if refused is not None:
        assert "changed" in str(refused), repr(refused)
    else:
        assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file), (
            "resume returned (exit 0, already completed) but the object is not the file"
        )
