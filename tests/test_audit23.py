"""An auditor's audit (2026-12-05, twenty-third): a systematic crash sweep. ``kill -9`` (and
SIGTERM twice, and a parent killed alone) at every request of a run, before it reaches S3 and
after S3 answered it but before persevere read the answer; for a file, a stream, a tree (small
files' PutObjects, large files' parts, ``--processes 2`` and its shard journals' merge) and one
file's ``--processes 2``; then the same command again, with the source left alone or changed
(same size, mtime put back), and ``upload status``/``abort``/``shard`` in between; journals
(files', shards', trees') cut at every few bytes of their last lines, with and without garbage.

Each test is a defect found, a strict xfail until it is fixed; numbered by severity (the order
of the report), not by their order in this file.

The crash "after CompleteMultipartUpload was answered, before the journal's ``completed``
line" is reproduced here by its result: an upload run to the end, its journal cut back to
before that line (what a ``kill -9`` or a power cut in that window leaves; the sweep reached it
with a proxy that kills the client once S3 answered the Complete). A stream's ``cp -`` and
``upload resume`` after that crash sending the whole stream again is audit 16 #2 (kept by
design), not repeated here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import persevere as cli
from tests.ruleproxy import Rule

MiB = 1024 * 1024


def _cut_completed_line(state: Path) -> None:
    """The journal as a crash after S3 answered CompleteMultipartUpload leaves it: every
    part recorded, the ``completed`` line never written."""
    lines = state.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "completed", lines[-1]
    state.write_bytes(b"".join(lines[:-1]))


def _uploads(s3_client, bucket: str) -> list[str]:
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [u["UploadId"] for u in uploads]


# -- 2: abort "aborts" an upload whose object S3 completed: the journal says aborted ------------
def test_abort_after_a_crash_once_complete_was_answered_does_not_say_aborted(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """Repro: ``cp FILE s3://B/K`` killed -9 once S3 answered CompleteMultipartUpload, before
    the journal's ``completed`` line; then ``persevere upload abort --state-file FILE.persevere``.
    Seen: exit 0, ``aborted upload ID of s3://B/K``, and the journal's last line becomes
    ``{"type":"aborted"}``; the object (this very upload's, the whole file) stays at the key.
    A user who aborts to give the upload up is told nothing was kept, and the journal now says
    so too. Expected: as for a journal that recorded the completion (abort refuses: "already
    completed; the object exists (delete it to undo)"): it is recognised as completed (the
    upload gone, the object at the key of the recorded size and checksum, as resume and cp
    already tell), never recorded as aborted. (The same journal is what a full disk leaves
    after "the object is complete and verified, but cannot write state file", exit 0: README
    says "a later resume records it"; an abort run instead records it aborted.)"""
    file = make_file(11 * MiB)
    state = tmp_path / "j.persevere"
    assert cli(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB").returncode == 0  # fmt: skip
    _cut_completed_line(state)
    result = cli(s3_env, "upload", "abort", "--state-file", state)
    last = json.loads(state.read_bytes().splitlines()[-1])
    assert s3_client.head_object(Bucket=bucket, Key="k")["ContentLength"] == 11 * MiB
    assert last["type"] != "aborted", (result.returncode, result.stdout, result.stderr)
    assert result.returncode != 0 and "aborted upload" not in result.stdout, result


# -- 3: a requeued shard of an upload completed by a killed completer: exit 1, "start new" ---
@pytest.mark.process
def test_a_shard_run_again_after_a_crash_once_complete_was_answered_exits_0(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """Repro: ``upload start FILE s3://B/K --processes 2`` killed -9 (the whole group) once S3
    answered CompleteMultipartUpload, before the journal's ``completed`` line; then a shard run
    again, as a requeued Slurm task or a restarted pod runs it: ``upload shard --state-file S
    --shard 1/2``. Seen: exit 1, ``persevere: error: ListParts: NoSuchUpload ... (the multipart
    upload was aborted, elsewhere or by a lifecycle rule)`` and ``persevere: start a new
    upload``: wrong (nothing was aborted: the object is complete, and ``upload resume`` says
    "already completed", exit 0), and exit 1 is the code a supervisor must not retry (the
    Kubernetes example's podFailurePolicy fails the Job on it). Expected, as README says of a
    shard run after the upload completed: exit 0, nothing sent (the object at the key, of the
    recorded size and checksum, tells it, as it does resume)."""
    file = make_file(11 * MiB)
    state = tmp_path / "j.persevere"
    assert cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--processes", "2").returncode == 0  # fmt: skip
    _cut_completed_line(state)
    result = cli(s3_env, "upload", "shard", "--state-file", state, "--shard", "1/2")
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert "start a new upload" not in result.stderr


@pytest.mark.slow  # (over 2 s on this machine: make test-all runs it)
@pytest.mark.process
def test_resume_processes_after_a_crash_once_complete_was_answered_prints_no_error(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """Repro: as above, then the printed ``upload resume --state-file S --processes 2``. Seen:
    exit 0, "already completed ... nothing sent", but stderr first holds, from each shard it
    started, ``persevere: error: ListParts: NoSuchUpload ... (the multipart upload was aborted,
    elsewhere or by a lifecycle rule)`` / ``persevere: start a new upload``, then ``shard exit
    codes [1, 1]``: two errors and a wrong instruction in a run that succeeded (a log collector
    alerts on them; a user follows "start a new upload" and sends the file again). Expected:
    the completed upload recognised before any shard is started (as without --processes)."""
    file = make_file(11 * MiB)
    state = tmp_path / "j.persevere"
    assert cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB", "--processes", "2").returncode == 0  # fmt: skip
    _cut_completed_line(state)
    result = cli(
        s3_env, "upload", "resume", "--state-file", state, "--processes", "2", process=True
    )  # (the shards write to the process's stderr)
    assert result.returncode == 0, result.stderr
    assert "already completed" in result.stdout
    assert "error" not in result.stderr and "start a new upload" not in result.stderr, result.stderr


# -- 4: status after that crash says "not resumable: gone (cp starts it again)" ---------------
def test_status_after_a_crash_once_complete_was_answered_does_not_say_gone(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """Repro: ``cp FILE s3://B/K`` killed -9 once S3 answered CompleteMultipartUpload, before
    the journal's ``completed`` line; ``persevere upload status --state-file FILE.persevere``.
    Seen: ``state: not resumable: its multipart upload is gone from S3 (persevere cp starts it
    again)``: but the object is complete and is this upload's, and ``cp`` does not start it
    again (it says "already completed", nothing sent). A user who believes status runs ``upload
    abort`` (finding 2) or deletes the journal and uploads the file again. Expected: status
    tells an upload whose object S3 holds (HeadObject: recorded size and checksum), as resume
    does: completed, or at least not "gone, cp starts it again"."""
    file = make_file(11 * MiB)
    state = tmp_path / "j.persevere"
    assert cli(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", state,
               "--part-size", "5MiB").returncode == 0  # fmt: skip
    _cut_completed_line(state)
    status = cli(s3_env, "upload", "status", "--state-file", state)
    again = cli(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", state,
                "--part-size", "5MiB")  # fmt: skip
    assert again.returncode == 0 and "already completed" in again.stdout  # what cp does
    assert "cp starts it again" not in status.stdout, status.stdout
    assert "not resumable" not in status.stdout, status.stdout


# -- 1: the directory of a tree's large-file journals is made, its name never fsync'd ---------
def _record_fsyncs(monkeypatch) -> list[tuple[str, str]]:
    """Every ``mkdir`` and ``fsync`` of this process, in order, by path."""
    events: list[tuple[str, str]] = []
    real_fsync, real_mkdir = os.fsync, os.mkdir

    def fsync(fd):
        try:
            events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            pass
        return real_fsync(fd)

    def mkdir(path, mode=0o777, *args, **kwargs):
        result = real_mkdir(path, mode, *args, **kwargs)
        events.append(("mkdir", os.path.abspath(os.fspath(path))))
        return result

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return events


def _name_made_durable(events: list[tuple[str, str]], directory: Path) -> bool:
    """Was ``directory``'s parent fsync'd after ``directory`` was made (its name then
    survives a power cut)?"""
    made = events.index(("mkdir", str(directory)))
    return ("fsync", str(directory.parent)) in events[made + 1 :]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/fd")
def test_the_directory_of_a_trees_large_file_journals_survives_a_power_cut(
    s3_env, bucket, tmp_path, monkeypatch
):
    """Repro: ``persevere cp DIR s3://B/P/`` of a tree with a file in parts (the first run:
    ``DIR.persevere.d`` does not exist), traced (``strace -e mkdir,openat,fsync``). Seen:
    ``mkdir("DIR.persevere.d")``, then the large file's journal created in it and the ``.d``
    directory fsync'd (the journal's name in it is durable), but the directory that holds
    ``DIR.persevere.d`` is never fsync'd after the mkdir (only before, for ``DIR.persevere``).
    A power cut can then lose ``DIR.persevere.d`` whole (POSIX, XFS, Btrfs; ext4 in practice
    commits it with the journal's fsync), and with it the journal of every large file whose
    parts were sent: the next run starts those files again, and their uploads' parts stay on
    S3, billed, recorded nowhere (the sweep's check: a tree killed after two of a large
    file's parts, its ``.d`` then gone; the next run exits 0 and leaves that upload with its
    10 MiB of parts in progress, unmentioned). README: "the new state file's name survives a
    power cut: directory fsync". Expected: the parent fsync'd after the mkdir, before any
    part is sent (as ``Journal.create`` does for the journal's own name)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big.bin").write_bytes(os.urandom(6 * MiB))
    events = _record_fsyncs(monkeypatch)
    result = cli(s3_env, "cp", tree, f"s3://{bucket}/p/", "--part-size", "5MiB")
    monkeypatch.undo()
    assert result.returncode == 0, result.stderr
    assert _name_made_durable(events, tmp_path / "tree.persevere.d"), events


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/fd")
def test_a_state_dir_made_for_the_journal_survives_a_power_cut(
    s3_env, bucket, tmp_path, monkeypatch
):
    """Repro: ``persevere cp FILE s3://B/K --state-dir NEW/SUB`` (neither exists), traced.
    Seen: ``mkdir NEW``, ``mkdir NEW/SUB``, the journal created in ``NEW/SUB`` and ``NEW/SUB``
    fsync'd, but neither ``NEW``'s parent nor ``NEW`` is ever fsync'd: after a power cut the
    journal (its header, its parts' lines, all fsync'd) may be gone with the directories, its
    upload's parts billed and recorded nowhere. The same path makes
    ``$XDG_STATE_HOME/persevere`` (``~/.local/state/persevere``) on a first run. Expected:
    each directory made fsync'd into its parent before the journal counts as created."""
    file = tmp_path / "f.bin"
    file.write_bytes(os.urandom(6 * MiB))
    where = tmp_path / "new" / "sub"
    events = _record_fsyncs(monkeypatch)
    result = cli(s3_env, "cp", file, f"s3://{bucket}/k", "--part-size", "5MiB",
                 "--state-dir", where)  # fmt: skip
    monkeypatch.undo()
    assert result.returncode == 0, result.stderr
    assert _name_made_durable(events, tmp_path / "new"), events
    assert _name_made_durable(events, where), events


# -- 5: kill -9 once CreateMultipartUpload was answered: an upload no run ever takes back -----
@pytest.mark.xfail(
    strict=True,
    reason="audit 23 #5: declared (README: told, not taken back)",
)
@pytest.mark.process
def test_a_kill_once_create_was_answered_leaves_no_upload_in_progress(
    rule_proxy, bucket, s3_client, make_file, tmp_path
):
    """Repro: ``persevere cp FILE s3://B/K`` killed -9 once S3 answered CreateMultipartUpload
    (before the header's fsync: the journal is left empty), then the same command again.
    Seen: the re-run exits 0 with the right object, silently; the first upload stays in
    progress on S3 for ever (``upload list`` shows it; nothing records it, no run takes it
    back). ``upload start`` run again is worse: exit 1 (a code a supervisor must not retry,
    after a kill -9 README calls "try again later"), ``... is empty: the upload was interrupted
    before it was created on S3``: it was created. The same follows a second Ctrl-C/SIGTERM
    while CreateMultipartUpload is on its way (the first one's shield is dropped: "exiting
    now"). tests/test_torture.py calls these orphans "by design"; the promise is "nothing left
    billed". Expected: the run that finds the empty journal (it exists only in that window,
    and is locked while its run lives) takes back the uploads to its key created since the
    journal was made (ListMultipartUploads, Initiated), or says which one to abort."""
    env, proxy = rule_proxy
    file = make_file(6 * MiB)
    state = tmp_path / "j.persevere"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--part-size", "5MiB"]
    started: list[subprocess.Popen[bytes]] = []
    answered = threading.Event()

    def kill_the_client(answer: bytes) -> bytes:  # S3 answered; the client never reads it
        started[0].kill()
        started[0].wait()
        answered.set()
        return answer

    proxy.rules.append(Rule("POST", "uploads", rewrite=kill_the_client))
    proc = subprocess.Popen([sys.executable, "-m", "persevere", *map(str, args)],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    started.append(proc)
    proc.wait(timeout=120)
    assert answered.is_set() and proc.returncode == -signal.SIGKILL
    proxy.rules.clear()
    again = cli(env, *args)
    assert again.returncode == 0, again.stderr
    assert _uploads(s3_client, bucket) == []
