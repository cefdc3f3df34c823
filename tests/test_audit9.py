"""An operator's audit (2026-12-05, ninth): persevere tried as a black box, to make it lie
(exit 0 with another object), lose work, or fail unclearly. Each test is a defect found (12,
none an exit 0 with another object), each fixed since; #8's second test accepts exit 1 naming
the link's target directory (upload start makes no directory for a --state-file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import persevere


def _no_upload_left(s3_client, bucket: str) -> bool:
    return not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_a_stall_timeout_that_is_no_number_is_refused_before_anything(
    s3_env, bucket, s3_client, make_file, tmp_path, how
):
    """README: bad input is one line, exit 2, "caught before anything was sent". ``--stall-timeout
    nan`` (or ``PERSEVERE_STALL_TIMEOUT=nan``) passes click's ``x>=1`` check (NaN compares false
    both ways), the upload is created and its state file written, then the first part dies
    in anyio ("ValueError: delay must be a non-negative number"): a rich traceback, exit 1,
    and a multipart upload left on S3. ``--dry-run`` with it says all is well (exit 0)."""
    file = make_file(20 * 1024 * 1024, seed=91)
    state = tmp_path / "s"
    env = dict(s3_env)
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"]
    if how == "flag":
        args += ["--stall-timeout", "nan"]
    else:
        env["PERSEVERE_STALL_TIMEOUT"] = "nan"
    dry = persevere(env, *args, "--dry-run")
    done = persevere(env, *args)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 2, done.stderr[-2000:]
    assert dry.returncode == 2, dry.stderr
    assert _no_upload_left(s3_client, bucket)
    assert not state.exists()


@pytest.mark.parametrize("age", ["2000000d", "3000000000000s"])
def test_upload_list_older_than_a_date_out_of_range_is_one_line(s3_env, bucket, age):
    """``upload list s3://B --older-than 2000000d`` (a typo'd 20000d, or "everything"): the
    duration parses, then ``now - age`` is before year 1: "OverflowError: date value out of
    range" as a rich traceback, exit 1. Bad input: one line, exit 2 (or simply: every upload
    is younger than that, none listed, exit 0)."""
    done = persevere(s3_env, "upload", "list", f"s3://{bucket}", "--older-than", age)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "OverflowError" not in done.stderr
    assert done.returncode in (0, 2), done.stderr[-2000:]


CONTROL = [
    ["--content-type", "text/plain\r"],
    ["--content-encoding", "gzip\r\nX-Injected: 1"],
    ["--metadata", "owner=ops\r"],  # --metadata "owner=$(cat owner.txt)", a CRLF file
    ["--metadata", "k=a\x01b"],
]
CONTROL_IDS = ["content-type-cr", "content-encoding-crlf", "metadata-cr", "metadata-ctl"]


@pytest.mark.parametrize("option", CONTROL, ids=CONTROL_IDS)
def test_an_object_option_with_a_control_character_is_bad_input_not_a_network_error(
    s3_env, bucket, s3_client, make_file, tmp_path, option
):
    """An object option holding a control character (a CR from a Windows file read with
    ``$(cat ...)``) cannot be an HTTP header: botocore's urllib3 refuses it ("Forbidden control
    character detected in headers"), and persevere takes that for a network fault: retried,
    then exit 3, "nothing was created: check the endpoint and the network, then run the same
    command again". Exit 3 is the supervisor's "try again later", so it loops forever on bad
    input. Expected: exit 2 before any request, naming the option (as ``--metadata
    owner=José`` is since audit 1)."""
    file = make_file(1000, seed=92)
    done = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st",
                     "--no-progress", *option)  # fmt: skip
    assert "check the endpoint and the network" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert f"error: {option[0]}" in done.stderr, done.stderr
    assert _no_upload_left(s3_client, bucket)


def test_a_tree_with_an_object_option_holding_a_control_character_is_bad_input(
    s3_env, bucket, tmp_path
):
    """The same for ``cp DIR``: every small file's PutObject is retried (10 times, about a
    minute with the default backoff) and the run ends exit 3, "the upload is intact and
    resumable", which a supervisor re-runs for ever. (``--max-retries 0`` keeps this test
    short; the exit code is 3 either way.)"""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("one\n")
    done = persevere(s3_env, "cp", tree, f"s3://{bucket}/t/", "--content-type", "text/plain\r",
                     "--no-progress", "--max-retries", "0")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "error: --content-type" in done.stderr, done.stderr


@pytest.mark.parametrize("pair", ["team:name=ops", "team name=ops", "(x)=1"],
                         ids=["colon", "space", "parens"])  # fmt: skip
def test_a_metadata_name_http_cannot_carry_is_named_not_blamed_on_credentials(
    s3_env, bucket, s3_client, make_file, tmp_path, pair
):
    """``--metadata team:name=ops``: the name goes into the header ``x-amz-meta-team:name``,
    which the server cannot take: SeaweedFS answers SignatureDoesNotMatch and persevere says
    "the secret key does not match the access key: check credentials" (exit 1), sending the
    user to rotate keys that are fine; with a space or parentheses, "CreateMultipartUpload:
    400: Bad Request" with no word of the option. A metadata name must be an HTTP token:
    expected exit 2 before any request, naming ``--metadata``."""
    file = make_file(1000, seed=93)
    done = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st",
                     "--no-progress", "--metadata", pair)  # fmt: skip
    assert "check credentials" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert "error: --metadata" in done.stderr, done.stderr
    assert _no_upload_left(s3_client, bucket)


@pytest.mark.process
def test_upload_start_of_a_stream_on_a_fresh_machine_creates_its_state_directory(
    s3_env, bucket, s3_client, tmp_path
):
    """README: "start (short form): the state file defaults to ..." and ``-`` is taken by ``cp``
    and ``upload start``; a stream's journal goes under ``$XDG_STATE_HOME/persevere/``. ``cp -``
    creates that directory; ``producer | persevere upload start - s3://B/K`` does not: on a
    machine where no ``cp`` ran before (no ``~/.local/state/persevere``) it fails, exit 1,
    "cannot create state file .../stdin.DIGEST.persevere: No such file or directory" (which a
    supervisor must not restart), though the directory is persevere's own to make."""
    xdg = tmp_path / "xdg-state"  # does not exist yet, as on a fresh machine
    env = {**s3_env, "XDG_STATE_HOME": str(xdg)}
    done = persevere(env, "upload", "start", "-", f"s3://{bucket}/k", "--no-progress",
                     input=b"the stream's bytes")  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = s3_client.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == b"the stream's bytes"


def test_a_file_where_the_trees_journal_directory_goes_is_not_try_again_later(
    s3_env, bucket, make_file, tmp_path
):
    """``cp DIR --state-file J`` keeps its large files' journals in ``J.d/``. A regular file
    at ``J.d`` (left by something else) made the run stop at the first large file with exit 3
    and "cannot create .../J.d: File exists ... free space or fix permissions, then run the
    same command again": exit 3 is the supervisor's "try again later, the journal is intact",
    so it re-runs for ever a run that can never pass. The README: "a read-only state location
    is one line (exit 1)", a state path that cannot be one is exit 2; neither is 3, which is
    for a full disk."""
    tree = tmp_path / "tree"
    tree.mkdir()
    make_file(12 * 1024 * 1024, seed=94, name="tree/big")
    state = tmp_path / "j"
    (tmp_path / "j.d").write_text("not a directory\n")
    done = persevere(s3_env, "cp", tree, f"s3://{bucket}/t/", "--state-file", state,
                     "--no-progress")  # fmt: skip
    assert done.returncode in (1, 2), done.stderr
    assert "free space" not in done.stderr, done.stderr


@pytest.mark.process
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT], ids=["nohup", "background"])
def test_a_signal_ignored_when_persevere_starts_stays_ignored(
    rule_proxy, bucket, s3_client, make_file, tmp_path, sig
):
    """``nohup persevere cp BIG s3://B/K &`` then logging out: nohup starts persevere with
    SIGHUP ignored, precisely so that the hang-up of the session does not stop it; a
    non-interactive shell starts ``cmd &`` with SIGINT ignored, so a Ctrl-C meant for the
    script's foreground does not reach it. persevere installs its own handlers over the
    ignored dispositions: the hang-up stops the upload (exit 129, "interrupted"), and the
    user who ran it under nohup finds it stopped the next morning. CPython itself leaves an
    ignored SIGINT ignored (no KeyboardInterrupt); a signal ignored at start should stay
    ignored: the upload goes on to exit 0."""
    env, proxy = rule_proxy
    file = make_file(20 * 1024 * 1024, seed=97)
    state = tmp_path / "s"
    held = proxy.hold_parts_but(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "cp", str(file), f"s3://{bucket}/k",
         "--state-file", str(state), "--no-progress", "--part-size", "5MiB"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(sig, signal.SIG_IGN),
    )  # fmt: skip
    try:
        held.wait(60)  # the upload is under way: part 1 sent, the others held
        time.sleep(0.5)
        proc.send_signal(sig)  # the session's hang-up (or the script's Ctrl-C)
        time.sleep(0.5)
    finally:
        held.release()
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    body = s3_client.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == file.read_bytes()


def test_cp_state_file_given_as_a_link_to_a_new_file_writes_the_journal_there(
    s3_env, bucket, make_file, tmp_path
):
    """``--state-file /state/upload.journal`` where that path is a symbolic link to the
    journal's place on a volume (``/state/upload.journal -> /mnt/vol/upload.journal``, the
    file not there yet, as on the first run): ``cp`` replaced the link with a regular file
    of its own, so the journal never reached the volume the link names (a pod restarted
    with a fresh root finds the link again, an empty volume, and starts the upload over,
    the first one's parts orphaned). A link to an existing journal is followed; a link to
    the file that is not there yet should be too (or refused, exit 2), never replaced."""
    file = make_file(1000, seed=98)
    volume = tmp_path / "vol"
    volume.mkdir()
    link = tmp_path / "state"
    link.symlink_to(volume / "journal")
    done = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", link, "--no-progress")
    assert link.is_symlink(), "the link given as --state-file was replaced by a file"
    assert done.returncode in (0, 2), done.stderr
    if done.returncode == 0:
        assert (volume / "journal").is_file()


def test_upload_start_state_file_given_as_a_link_to_a_new_file_is_not_self_contradictory(
    s3_env, bucket, make_file, tmp_path
):
    """The same link given to ``upload start``: "error: state file .../state already exists:
    state file .../state does not exist", exit 1: a message that contradicts itself and
    says nothing of the link."""
    file = make_file(1000, seed=99)
    link = tmp_path / "state"
    link.symlink_to(tmp_path / "vol" / "journal")
    done = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", link,
                     "--no-progress")  # fmt: skip
    assert not ("already exists" in done.stderr and "does not exist" in done.stderr), done.stderr
    # (changed by the fix: the link is followed; its target's directory missing is exit 1, as
    # for any --state-file of upload start in a directory that does not exist, naming it)
    assert done.returncode == 1, done.stderr
    assert f"cannot create state file {tmp_path / 'vol' / 'journal'}" in done.stderr, done.stderr


@pytest.mark.parametrize("tree", [False, True], ids=["file", "dir"])
def test_options_refused_on_a_rerun_do_not_blame_a_state_file_flag_never_given(
    s3_env, bucket, make_file, tmp_path, tree
):
    """``cp FILE s3://B/K`` done, then the same command with ``--content-type text/plain``:
    refused (exit 2), rightly, but said as "error: --state-file: state file .../FILE.persevere
    records ...": the user gave no --state-file (audit 4 took the same wrong flag out of
    another message). The flag to name is the option that differs."""
    if tree:
        source = tmp_path / "tree"
        source.mkdir()
        (source / "a.txt").write_text("one\n")
        url = f"s3://{bucket}/t/"
    else:
        source = make_file(1000, seed=100)
        url = f"s3://{bucket}/k"
    first = persevere(s3_env, "cp", source, url, "--no-progress")
    assert first.returncode == 0, first.stderr
    again = persevere(s3_env, "cp", source, url, "--no-progress", "--content-type", "text/plain")
    assert again.returncode == 2, again.stderr
    assert "--state-file:" not in again.stderr, again.stderr


@pytest.mark.parametrize("tail", ["\r", " ", "\t", "\n"], ids=["cr", "space", "tab", "newline"])
def test_a_url_ending_in_whitespace_is_refused_not_made_part_of_the_key(
    s3_env, bucket, s3_client, make_file, tmp_path, tail
):
    """``persevere cp db.dump "$DEST"`` with DEST read from a file edited on Windows
    (``s3://B/backups/db.dump\\r``), or pasted with a trailing space: the CR (or space, tab,
    newline) became the key's last character, exit 0, the summary line printing the key
    with the character invisible. Every later ``aws s3 cp s3://B/backups/db.dump`` finds
    nothing (NoSuchKey), and ``verify`` with the clean URL says the object does not exist.
    README: a key the object "would not be stored under" is bad input (exit 2), as for
    ``a//b``; a URL ending in whitespace is such a mistake (for ``cp DIR`` the prefix's
    ``p /a``, likewise)."""
    file = make_file(1000, seed=101)
    done = persevere(s3_env, "cp", file, f"s3://{bucket}/backups/db.dump{tail}",
                     "--state-dir", tmp_path / "st", "--no-progress")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert not s3_client.list_objects_v2(Bucket=bucket).get("Contents")


def test_a_dry_run_refuses_shard_with_processes_as_the_run_does(s3_env, bucket, tmp_path):
    """README: ``--dry-run`` "makes every check the run makes before its first request, and
    fails the same way (same message, same exit code)". ``cp DIR --shard 0/2 --processes 2``
    is refused by the run (exit 2, "give --shard or --processes, not both"); with
    ``--dry-run`` it said what it would send, exit 0."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("one\n")
    args = ("cp", tree, f"s3://{bucket}/t/", "--shard", "0/2", "--processes", "2", "--no-progress")
    run = persevere(s3_env, *args)
    assert run.returncode == 2, run.stderr
    dry = persevere(s3_env, *args, "--dry-run")
    assert dry.returncode == 2, dry.stdout + dry.stderr


@pytest.mark.process
def test_a_file_named_by_a_dev_fd_path_keeps_its_state_file_out_of_dev(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """``persevere cp /dev/fd/3 s3://B/K 3< data.bin`` (a script handing a descriptor, as
    ``/dev/stdin`` is handed for fd 0): the file is read, the plan printed, then exit 1,
    "cannot create state file /dev/fd/3.persevere: No such file or directory". /dev/fd is
    writable to the check beside-the-file uses (root, or /proc's own permissions) but no
    place for a journal; the README keeps block devices' and standard input's journals out
    of /dev ("never with a state file in /dev"): this one should go under
    $XDG_STATE_HOME/persevere/ too."""
    file = make_file(1000, seed=102)
    env = {**os.environ, **s3_env, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    with file.open("rb") as handed:
        fd = handed.fileno()
        done = subprocess.run(
            [sys.executable, "-m", "persevere", "cp", f"/dev/fd/{fd}", f"s3://{bucket}/k",
             "--no-progress"],
            env=env, capture_output=True, text=True, pass_fds=(fd,), timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = s3_client.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == file.read_bytes()
