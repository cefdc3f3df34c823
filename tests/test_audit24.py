"""An operator's audit (2026-12-05, twenty-fourth): persevere under the supervisors and hostile
environments it says it is built for (cron, systemd, Kubernetes, pipes) with nobody watching: no
HOME and no passwd entry, a working directory deleted under the shell, closed or failing
output, stop signals sent to the whole process group, a clock that jumps. Each test is a defect
found, a strict xfail until it is fixed."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from persevere import PersevereError


@pytest.mark.parametrize("home", [None, "relative-home"], ids=["no-passwd-entry", "relative-HOME"])
def test_a_user_with_no_home_keeps_its_journal_where_the_next_run_finds_it(
    tmp_path, monkeypatch, home
):
    """A container or a cron job running as a uid with no passwd entry (`setpriv --reuid 12345`,
    OpenShift's random uids, `docker run --user 12345`) and no HOME: ``os.path.expanduser("~")``
    then gives ``~`` back unchanged, and ``state_home()`` makes ``~/.local/state/persevere``
    absolute against the working directory: the journal of every stream (and of a file whose
    directory is read-only) is ``$PWD/~/.local/state/persevere/...``. README: "a relative
    `XDG_STATE_HOME` is ignored, as the XDG spec says" (because "the same command run from
    another directory ... would not find its state file again"), yet a relative home is used.
    Seen: `cat big | persevere cp - s3://B/K` killed in /a, the same command run from /b starts
    a new upload (all parts sent again) and leaves the first one billed in `upload list`.
    A relative HOME (`HOME=relhome`, a unit's `Environment=HOME=data`) does the same.
    Expected: the same place from any directory, or a refusal naming --state-dir."""
    from persevere._cp import locate_state_file

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    if home is None:
        monkeypatch.delenv("HOME", raising=False)
    else:
        monkeypatch.setenv("HOME", home)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    found = []
    for name in ("cron", "shell"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        try:
            found.append(locate_state_file("-", "bucket", "k"))
        except PersevereError:
            return  # a refusal (exit 2, "give --state-dir") keeps the promise too
    assert found[0] == found[1], found


def _in_a_deleted_directory(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    """``persevere ARGS`` run from a working directory removed before it starts (a shell left in
    a release directory that a deploy removed, `cd /tmp/x && rm -rf /tmp/x`)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    return subprocess.run(
        ["sh", "-c", script, "sh", str(gone), sys.executable, "-m", "persevere", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.process
@pytest.mark.parametrize(
    "args",
    [
        ("cp", "data.bin", "s3://{bucket}/k"),
        ("upload", "start", "data.bin", "s3://{bucket}/k"),
        ("cp", "{file}", "s3://{bucket}/k", "--state-file", "s"),
        ("upload", "status", "--state-file", "s"),
    ],
    ids=["cp", "upload-start", "cp-state-file", "status"],
)
def test_a_relative_path_in_a_deleted_working_directory_is_one_line_not_a_traceback(
    s3_env, bucket, tmp_path, args
):
    """README: "Errors are one line (`persevere: error: ...`) plus what to do next, never a
    traceback", and exit 2 for "missing file or one that cannot be reached". From a working
    directory that was deleted, every relative path (the FILE of `cp`/`upload start`, a
    relative `--state-file`) reaches ``Path.absolute()``, whose ``os.getcwd()`` raises: a
    40-line rich traceback ending in ``FileNotFoundError: [Errno 2] No such file or
    directory``, exit 1 (which the contract reads as an error, not bad input). `verify data.bin`
    in the same place says "local file data.bin does not exist", exit 2."""
    file = tmp_path / "data.bin"
    file.write_bytes(b"x" * 1000)
    done = _in_a_deleted_directory(tmp_path, *(a.format(bucket=bucket, file=file) for a in args))
    assert "Traceback" not in done.stderr, done.stderr[-600:]
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("persevere: error: "), done.stderr


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("cp", "{tmp}/no-such-file", "s3://{bucket}/k", "--json"), 2),
        (("cp", "{file}", "s3://{bucket}/k", "--json", "--endpoint-url", "http://127.0.0.1:9"), 3),
        (("verify", "{file}", "s3://{bucket}/other"), 4),
        (("cp", "{tree}", "s3://{bucket}/t/"), 2),
    ],
    ids=["bad-input-json", "unreachable-json", "verify-mismatch", "tree-file-refused"],
)
def test_a_failure_keeps_its_exit_code_when_standard_output_fails(
    s3_env, s3_client, bucket, tmp_path, args, code
):
    """README: under `--json`, on failure `{"error", "exit_code", ...}` "with the same exit
    code", and the supervisor's contract keys on it: 3 "try again later", 1 and 2 "need a
    person, so do not restart" (the systemd example's `RestartPreventExitStatus=1 2`, the
    Kubernetes Job's `podFailurePolicy` FailJob on 1 and 2). When standard output cannot take
    the error's document (a log on a full disk, `> /dev/full`, a `| jq` that died), every
    failure becomes exit 1 with "the result could not be written to standard output ...; what
    the command did stands: run it again to see it": an unreachable endpoint (3) is then a
    permanent failure that no supervisor retries, bad input (2) an error, and a `verify`
    MISMATCH (4) an error, and a `cp DIR` whose file was refused (2: its name is not UTF-8)
    an error (the cron example's `>> /var/log/persevere.log 2>&1` on a full /var).
    Expected: the failure's own code (the lost output said on stderr)."""
    file = tmp_path / "data.bin"
    file.write_bytes(b"y" * 1000)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_bytes(b"a")
    with open(os.path.join(os.fsencode(tree), b"b\xff"), "wb") as named_not_utf8:
        named_not_utf8.write(b"b")
    s3_client.put_object(Bucket=bucket, Key="other", Body=b"z" * 1000)
    argv = [a.format(bucket=bucket, file=file, tmp=tmp_path, tree=tree) for a in args]
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "persevere", *argv], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    assert done.returncode == code, done.stderr


class _Shifted:
    """A stat result as the same filesystem gives it mounted again at another device number."""

    def __init__(self, real: os.stat_result) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    @property
    def st_dev(self) -> int:
        return self._real.st_dev + 4242


class _ShiftedEntry:
    def __init__(self, real: os.DirEntry[str]) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def stat(self, *, follow_symlinks: bool = True) -> _Shifted:
        return _Shifted(self._real.stat(follow_symlinks=follow_symlinks))


class _ShiftedScandir:
    def __init__(self, path: object) -> None:
        self._it = os.scandir(path)  # type: ignore[call-overload]

    def __enter__(self) -> _ShiftedScandir:
        return self

    def __exit__(self, *exc: object) -> None:
        self._it.close()

    def __iter__(self) -> Iterator[_ShiftedEntry]:
        return (_ShiftedEntry(entry) for entry in self._it)


class _ShiftedOs:
    """``os`` for the tree's modules, on a disk attached again at another device number."""

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    stat = staticmethod(lambda *a, **k: _Shifted(os.stat(*a, **k)))
    lstat = staticmethod(lambda *a, **k: _Shifted(os.lstat(*a, **k)))
    fstat = staticmethod(lambda *a, **k: _Shifted(os.fstat(*a, **k)))
    scandir = staticmethod(_ShiftedScandir)


def test_a_tree_whose_disk_comes_back_at_another_device_number_is_not_sent_again(
    s3_env, bucket, tmp_path, monkeypatch
):
    """README (cp DIR): "A re-run is the resume. A file done and unchanged is skipped without a
    request". The tree journal's identity of a file includes ``st_dev``, the number the kernel
    gave the filesystem at this mount, which a restart does not keep: a Kubernetes Job's pod
    rescheduled on another node (its PVC's block device attached there as another device),
    an NFS/EFS share mounted again (an anonymous device number per mount), a USB or loop disk
    attached after another one. Seen by hand: an ext4 image with 13 files, `cp DIR` (13
    sent), unmounted, a loop device taken by another image, mounted again at the same path
    (st_dev 1792 -> 1793, inode, size, mtime and ctime the same): `cp DIR` again reports "0
    sent, 13 sent again", every file uploaded once more; a multi-TB tree is uploaded again
    on every reschedule. The file's size, mtime, ctime and inode (the ctime alone catches an
    edit, the inode a replacement on that filesystem) are unchanged. Expected: unchanged."""
    import persevere._tree
    import persevere._tree_walk
    from tests.conftest import persevere as cli

    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a", "b"):
        (tree / name).write_bytes(name.encode() * 1000)
    url = f"s3://{bucket}/t/"
    first = cli(s3_env, "cp", tree, url, "--state-dir", tmp_path / "state")
    assert first.returncode == 0, first.stderr
    monkeypatch.setattr(persevere._tree_walk, "os", _ShiftedOs())
    monkeypatch.setattr(persevere._tree, "os", _ShiftedOs())
    again = cli(s3_env, "cp", tree, url, "--state-dir", tmp_path / "state")
    assert again.returncode == 0, again.stderr
    assert "2 unchanged" in again.stdout, again.stdout


@pytest.mark.slow  # (about 3 s: botocore tries the credential endpoint three times)
def test_a_credential_endpoint_that_cannot_be_reached_yet_is_worth_a_retry(
    s3_env, bucket, tmp_path, monkeypatch
):
    """The contract a supervisor keys on (README, Running unattended): 3 "try again later",
    1 and 2 "need a person, so do not restart". An S3 endpoint that cannot be reached when a
    new upload starts is exit 3 ("nothing was created: run the same command later"). The
    credential chain's own endpoint, unreachable in the same way (the ECS agent restarting,
    the EKS Pod Identity agent not yet up on a new node, `AWS_CONTAINER_CREDENTIALS_FULL_URI`;
    the README lists "instance and task roles" in the chain), is exit 1 "cannot obtain AWS
    credentials from the default profile: ... Could not connect to the endpoint URL": the
    Kubernetes example's `podFailurePolicy` fails the whole Job on it and the systemd example
    (`RestartPreventExitStatus=1 2`) never runs it again, for a condition that mends itself in
    seconds. Expected: 3, as for the S3 endpoint."""
    from tests.conftest import persevere as cli

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/creds")
    file = tmp_path / "data.bin"
    file.write_bytes(b"c" * 1000)
    done = cli(None, "cp", file, f"s3://{bucket}/k")
    assert "Could not connect" in done.stderr, done.stderr
    assert done.returncode == 3, done.stderr


_CREDENTIAL_PROCESS = """\
import datetime, json, os, sys
counter, good = sys.argv[1], int(sys.argv[2])
calls = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(calls))
if calls > good:
    sys.exit("vault unreachable")
until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
print(json.dumps({"Version": 1, "AccessKeyId": os.environ["KEY"], "SecretAccessKey":
                  os.environ["SECRET"], "Expiration": until.strftime("%Y-%m-%dT%H:%M:%SZ")}))
"""


@pytest.mark.process
def test_a_credential_source_that_fails_once_mid_upload_is_no_traceback_and_stays_resumable(
    s3_env, bucket, tmp_path, monkeypatch
):
    """README: "Credentials that expire or rotate mid-upload (... `credential_process` ...) do
    not end it ... If the chain has nothing newer, the request is retried as any transient
    failure and the upload finally stops resumable (exit 3)", and errors are "never a
    traceback". A `credential_process` (a vault CLI) gives credentials valid 5 more minutes:
    botocore refreshes them before every request in its last 10 minutes (its mandatory
    window), and one failed refresh there (the vault unreachable for a moment, the
    credentials still good) raises. Seen: botocore's "Refreshing temporary credentials failed
    during mandatory refresh period." with a 12-line Python traceback on stderr, then "part
    1: cannot obtain AWS credentials: ... vault unreachable", exit 1 (a person needed: the
    examples never run it again) although it also says "the upload is resumable". Expected:
    no traceback, the part retried, and if the source stays down, exit 3."""
    from tests.conftest import persevere as cli

    script = tmp_path / "credentials.py"
    script.write_text(f"#!{sys.executable}\n{_CREDENTIAL_PROCESS}")
    script.chmod(0o755)
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\ncredential_process = {script} {tmp_path / 'calls'} 3\n")
    monkeypatch.setenv("KEY", os.environ["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("SECRET", os.environ["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    file = tmp_path / "data.bin"
    file.write_bytes(os.urandom(12 * 1024 * 1024))
    state = tmp_path / "s"
    done = cli(None, "cp", file, f"s3://{bucket}/k", "--state-file", state, "--part-size",
               "5MiB", "-c", "1", "--max-retries", "1", process=True)  # fmt: skip
    assert state.exists(), done.stderr  # (the upload was created: the failure is mid-upload)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 3, done.stderr


@pytest.mark.slow  # (about 8 s: a transfer long enough for the 5 s progress events)
@pytest.mark.process
def test_processes_give_the_log_its_progress_events(s3_env, bucket, tmp_path):
    """README (Running unattended): `--log-format json` writes "`progress` (every 5 s: `done`,
    `total`, `rate_bytes_s`)"; `--processes N` passes `--log-format` to the shards, which
    "write to the same stderr". Seen: one process logs a progress event every 5 s; with
    `--processes 2` the log holds nothing between `start` and the end (14 s at 8 MiB/s for
    100 MiB: no event at all), then one `progress` "complete: 100.0 MiB of 100.0 MiB (100.0%)
    at 0 B/s". Under systemd, cron or Kubernetes (a log, not a terminal), an upload of hours
    with `--processes` says nothing for hours: no one can tell it from a hung one."""
    from tests.conftest import persevere as cli

    file = tmp_path / "data.bin"
    file.write_bytes(os.urandom(15 * 1024 * 1024))
    done = cli(None, "--log-format", "json", "upload", "start", file, f"s3://{bucket}/k",
               "--state-file", tmp_path / "s", "--part-size", "5MiB", "--processes", "2",
               "--max-bandwidth", "2MiB/s")  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    during = [e for e in events if e["event"] == "progress" and e["done"] < e["total"]]
    assert during, [e["message"] for e in events]


@pytest.mark.slow  # (over 2 s on this machine: make test-all runs it)
@pytest.mark.process
def test_two_destinations_of_one_file_started_together_do_not_collide(rule_proxy, bucket, tmp_path):
    """Two cron lines at 02:00 upload the same dump to two places (a primary bucket and a
    disaster-recovery copy). README: "Each destination has its own" journal, and for a tree
    "Two destinations started at the same moment (two cron lines at 02:00), both finding no
    journal, do not collide". For a file they do: the second finds `FILE.persevere` made by
    the first, which holds its lock while its CreateMultipartUpload is on its way (its header
    not yet written), and exits 3 "already running: another persevere is uploading with state
    file FILE.persevere; let it finish (this command exits 0 once the upload is complete)":
    it will not, the other upload is to another key. Seen by hand in 6 runs out of 6 of
    `persevere cp f s3://B/a & persevere cp f s3://B/b &`. Under cron (no restart) the second
    copy is not made that night. Expected: the second takes its own journal
    (`FILE.DIGEST.persevere`), as a tree's does, and both exit 0."""
    from tests.conftest import persevere as cli
    from tests.proxybase import Hold
    from tests.ruleproxy import Rule

    env, proxy = rule_proxy
    held = Hold()
    proxy.rules.insert(0, Rule("POST", "uploads", hold=held))  # CreateMultipartUpload
    file = tmp_path / "dump"
    file.write_bytes(b"d" * 100_000)
    first = subprocess.Popen([sys.executable, "-m", "persevere", "cp", str(file),
                              f"s3://{bucket}/primary"], env={**os.environ, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        held.wait()  # the first holds FILE.persevere, its upload being created
        releasing = threading.Timer(1.0, held.release)
        releasing.start()
        second = cli(env, "cp", file, f"s3://{bucket}/dr-copy")
    finally:
        held.release()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 0, second.stderr


def test_a_clock_refused_before_anything_was_created_does_not_say_resume(
    rule_proxy, bucket, tmp_path
):
    """A machine booted with its clock wrong (a dead RTC battery, a VM restored from a
    snapshot, a timer's `Persistent=true` run before NTP synced) starts `cp FILE`: S3 refuses
    CreateMultipartUpload with RequestTimeTooSkewed. Seen (libfaketime +400 days, and here a
    proxy answering so): "error: CreateMultipartUpload: RequestTimeTooSkewed ...", then
    "this machine's clock is off by more than 15 minutes: fix the time (NTP), then resume",
    exit 1. Nothing was created and no state file written, so there is nothing to resume:
    `persevere upload resume` has no state file to take. The unreachable endpoint's message
    in the same place says it right: "nothing was created: ... run the same command again"."""
    from tests.conftest import persevere as cli
    from tests.ruleproxy import Rule

    env, proxy = rule_proxy
    proxy.rules.insert(0, Rule("POST", "uploads", refuse=(403, "RequestTimeTooSkewed")))
    file = tmp_path / "data.bin"
    file.write_bytes(b"t" * 1000)
    done = cli(env, "cp", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s")
    assert done.returncode != 0
    assert not (tmp_path / "s").exists()
    assert "resume" not in done.stderr, done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_once_the_journal_records_completion_does_not_undo_it(
    s3_env, bucket, tmp_path, monkeypatch, sig
):
    """README: "A signal that arrives once the work is done does not undo it (exit 0)." A
    supervisor's SIGTERM (`systemctl stop`, a pod deleted, `timeout`), or the terminal's
    SIGHUP, that lands just after the journal's `completed` line (the object complete and
    verified) but before the command has finished returning (its S3 client still closing):
    seen by hand, 5 times out of 5 with a signal sent as soon as the line is there (10 out
    of 10 with SIGTERM and SIGHUP together), exit 130 (129) "interrupted; the upload is
    intact ... the upload is resumable: persevere upload resume ...", no result line on
    stdout. The supervisor runs it again for nothing; for a stream (`cp -`), whose completed
    upload is sent again (README, IAM permissions), the whole stream is uploaded once more.
    The signal is sent here from inside the journal's write of that line."""
    from persevere._journal import Journal
    from tests.conftest import persevere as cli

    real = Journal.append_outcome

    def then_signalled(self, outcome, *args, **kwargs):
        real(self, outcome, *args, **kwargs)
        if outcome == "completed":
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(Journal, "append_outcome", then_signalled)
    file = tmp_path / "data.bin"
    file.write_bytes(b"s" * 1000)
    state = tmp_path / "s"
    done = cli(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", state)
    assert '"completed"' in state.read_text()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("uploaded "), done.stdout
