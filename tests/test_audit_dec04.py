"""An audit of 2026-12-04: cases where exit 0 did not mean "the object is the source given this
time", or bad input did not get one clear line. Each test failed before its fix."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from persevere._units import MiB
from tests import test_journal_disk
from tests.conftest import persevere, sha256_of_object

small_disk = test_journal_disk.small_disk  # a fixture: a tmpfs of the size asked (root)


@pytest.mark.process
def test_a_file_redirected_in_past_its_start_sends_what_is_left(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """``{ read header; persevere cp - s3://B/K; } < file``: standard input is the file from
    where the shell left it, as ``cat`` would read it. It was uploaded from byte 0: exit 0,
    the object holding bytes that were not piped in."""
    file = make_file(9 * MiB + 5, seed=11)
    data = file.read_bytes()
    with file.open("rb") as stdin:
        stdin.seek(1000)
        result = subprocess.run(
            [sys.executable, "-m", "persevere", "cp", "-", f"s3://{bucket}/k", "--no-progress",
             "--state-dir", str(tmp_path / "state")],
            stdin=stdin, capture_output=True, text=True, env={**os.environ, **s3_env},
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(s3_client, bucket, "k") == hashlib.sha256(data[1000:]).hexdigest()


@pytest.mark.process  # (mount)
def test_a_state_file_whose_header_finds_the_disk_full_leaves_no_upload(
    small_disk, s3_env, bucket, s3_client, make_file
):
    """The state file is created, then its first line finds the disk full: the upload just
    created is recorded nowhere. It was left on S3 (the abort meant for this case caught only
    an OSError, which the journal had already turned into its own error) and the hint said
    "then resume", with no state file to resume."""
    disk = small_disk("64k")
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while os.write(fd, b"\0" * 512):
            pass
    os.close(fd)
    file = make_file(1 * MiB, seed=12)
    result = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", disk / "st",
                       "--no-progress")  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "No space left on device" in result.stderr
    assert "then start again" in result.stderr
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert not (disk / "st").exists()


NOT_UTF8 = os.fsdecode(b"k\xff")  # as a shell passes the bytes through: a surrogate


@pytest.mark.parametrize(
    "args",
    [
        ["cp", "{file}", f"s3://{{bucket}}/{NOT_UTF8}"],
        ["cp", "{odd}", "s3://{bucket}/backups/"],  # the file's name is not UTF-8
        ["verify", "{file}", f"s3://{{bucket}}/{NOT_UTF8}"],
        ["verify", "{file}", "--s3-bucket", "{bucket}", "--s3-key", NOT_UTF8],
        ["upload", "status", f"s3://{{bucket}}/{NOT_UTF8}"],
        ["upload", "list", f"s3://{{bucket}}/{NOT_UTF8}"],
        ["upload", "list", "--s3-bucket", "{bucket}", "--prefix", NOT_UTF8],
        ["upload", "abort", "--s3-bucket", "{bucket}", "--s3-key", NOT_UTF8, "--upload-id", "x"],
    ],
    ids=["cp", "cp-name", "verify", "verify-flags", "status", "list", "list-flags", "abort"],
)
def test_a_name_that_is_not_utf8_is_one_line_not_a_traceback(
    s3_env, bucket, make_file, tmp_path, args
):
    """Bytes that are not UTF-8 in a key (a URL, a long flag, or the name of the file a prefix
    takes) went as far as the first request: a traceback, exit 1."""
    file = make_file(1000, seed=13)
    odd = tmp_path / os.fsdecode(b"name\xff.bin")
    odd.write_bytes(b"x")
    argv = [a.format(file=file, odd=odd, bucket=bucket) for a in args]
    result = persevere(s3_env, *argv)
    assert result.returncode == 2, result.stderr
    assert "is not UTF-8, so S3 cannot take it" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "option",
    [
        ["--metadata", "owner=José"],
        ["--metadata", "é=x"],
        ["--content-type", NOT_UTF8],
        ["--tagging", f"k={NOT_UTF8}"],
    ],
    ids=["metadata-value", "metadata-name", "content-type", "tagging"],
)
def test_an_object_option_s3_cannot_send_is_one_line_before_any_request(
    s3_env, bucket, s3_client, make_file, tmp_path, option
):
    """``--metadata owner=José`` went as far as CreateMultipartUpload: botocore's "S3 metadata
    can only contain ASCII characters" as a traceback, exit 1 (a Content-Type or a tag that
    is not UTF-8: a TypeError, a UnicodeEncodeError)."""
    file = make_file(1000, seed=14)
    result = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st",
                       "--no-progress", *option)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {option[0]} " in result.stderr
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert not (tmp_path / "st").exists() or not any((tmp_path / "st").iterdir())


def test_a_tag_may_be_any_utf8(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(1000, seed=15)
    result = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st",
                       "--no-progress", "--tagging", "owner=José")  # fmt: skip
    assert result.returncode == 0, result.stderr
    tags = s3_client.get_object_tagging(Bucket=bucket, Key="k")["TagSet"]
    assert tags == [{"Key": "owner", "Value": "José"}]


@pytest.mark.parametrize("command", ["cp", "verify", "cp-dir"])
def test_a_region_that_is_no_region_name_is_one_line(s3_env, bucket, make_file, tmp_path, command):
    """``AWS_DEFAULT_REGION="us-east-1 "`` (a trailing space, from a config file or a
    script): botocore's InvalidRegionError as a traceback, exit 1."""
    file = make_file(1000, seed=16)
    source = file.parent if command == "cp-dir" else file
    name = "verify" if command == "verify" else "cp"
    url = f"s3://{bucket}/k/" if command == "cp-dir" else f"s3://{bucket}/k"
    more = [] if command == "verify" else ["--state-dir", tmp_path / "st"]
    result = persevere(s3_env | {"AWS_DEFAULT_REGION": "us-east-1 "}, name, source, url, *more)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: the region 'us-east-1 ' is not a region's name" in result.stderr


@pytest.mark.parametrize("content", [b"hello", b"hello\nworld", b"\x89PNG\x00\x01"])
@pytest.mark.parametrize("source", ["file", "tree"])
def test_a_state_file_that_is_some_other_file_is_never_cut_or_replaced(
    s3_env, bucket, make_file, tmp_path, content, source
):
    """``--state-file notes.txt`` by mistake: a file without a newline was taken for a
    journal whose header a crash tore, and replaced by a new journal (cp FILE), or cut to
    nothing (cp DIR); one whose last line lacks its newline lost that line (cp DIR)."""
    file = make_file(1000, seed=17)
    mine = tmp_path / "notes.txt"
    mine.write_bytes(content)
    result = persevere(s3_env, "cp", file if source == "file" else file.parent,
                       f"s3://{bucket}/k/", "--state-file", mine, "--no-progress")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "is not a persevere state file" in result.stderr
    assert mine.read_bytes() == content


def test_a_header_torn_by_a_crash_still_starts_again(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """What the refusal above must leave alone: a header cut short, or followed by the zeros
    a crash can leave, is still taken for a torn one and cp starts again."""
    file, state = make_file(1000, seed=18), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"]
    assert persevere(s3_env, *args).returncode == 0
    for torn in (state.read_bytes()[:10], state.read_bytes()[:60] + b"\0" * 30):
        state.write_bytes(torn)
        again = persevere(s3_env, *args)
        assert again.returncode == 0, again.stderr
        assert "header line is incomplete" in again.stderr
    assert sha256_of_object(s3_client, bucket, "k") == hashlib.sha256(file.read_bytes()).hexdigest()


@pytest.mark.process  # (mount)
def test_a_tree_dry_run_refuses_a_state_file_the_run_cannot_create(
    small_disk, s3_env, bucket, make_file
):
    """``cp DIR --dry-run`` with its journal on a read-only mount said "would send 1", exit 0;
    the run then stopped at once: "cannot create state file", exit 1."""
    disk = small_disk("64k")
    test_journal_disk.remount(disk, "ro")
    tree = make_file(1000, seed=19).parent
    args = ["cp", tree, f"s3://{bucket}/t/", "--state-dir", disk / "st", "--no-progress"]
    dry = persevere(s3_env, *args, "--dry-run")
    real = persevere(s3_env, *args)
    assert real.returncode == 1 and "cannot create state file" in real.stderr, real.stderr
    assert dry.returncode == real.returncode, dry.stdout + dry.stderr
    assert "cannot create state file" in dry.stderr


@pytest.mark.process  # (mount)
def test_a_tree_whose_state_disk_is_full_for_a_large_files_journal_stops_resumable(
    small_disk, s3_env, bucket, s3_client, make_file
):
    """The tree's journal written, then no room (here: no inode) for ``DIR.persevere.d/``,
    where a large file's journal goes: an OSError's traceback, exit 1. Now exit 3 (the disk
    is full: run again), and the same command completes once there is room."""
    disk = small_disk("1m,nr_inodes=3")  # the root, the state directory, the tree's journal
    tree = make_file(9 * MiB, seed=20).parent
    args = ["cp", tree, f"s3://{bucket}/t/", "--state-dir", disk / "st", "--no-progress"]
    full = persevere(s3_env, *args)
    assert full.returncode == 3, full.stderr
    assert "No space left on device" in full.stderr and "Traceback" not in full.stderr
    subprocess.run(["mount", "-o", "remount,nr_inodes=100", str(disk)], check=True)
    again = persevere(s3_env, *args)
    assert again.returncode == 0, again.stderr
    name = next(tree.iterdir()).name
    assert (
        sha256_of_object(s3_client, bucket, f"t/{name}")
        == hashlib.sha256((tree / name).read_bytes()).hexdigest()
    )


def test_a_tree_dry_run_with_check_remote_says_it_did_not_look(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """An object deleted behind the journal's back: ``cp DIR --check-remote`` sends it again,
    but its dry run said "skip 1 unchanged" and no more (it makes no request)."""
    tree = make_file(1000, seed=21).parent
    args = ["cp", tree, f"s3://{bucket}/t/", "--state-dir", tmp_path / "st", "--no-progress"]
    assert persevere(s3_env, *args).returncode == 0
    name = next(p.name for p in tree.iterdir() if p.is_file())
    s3_client.delete_object(Bucket=bucket, Key=f"t/{name}")
    dry = persevere(s3_env, *args, "--check-remote", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "a dry run makes no request, so the 1 unchanged file(s)' objects were not looked at" in (
        dry.stderr
    )
    real = persevere(s3_env, *args, "--check-remote")
    assert real.returncode == 0 and "1 sent again" in real.stdout, real.stdout + real.stderr


@pytest.mark.parametrize("variable", ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"])
def test_a_job_index_that_is_no_number_is_one_line(
    s3_env, bucket, make_file, tmp_path, monkeypatch, variable
):
    """``upload shard`` in a job whose index variable is not a number: a ValueError's
    traceback, exit 1."""
    file, state = make_file(12 * MiB, seed=22), tmp_path / "s"
    created = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                        state, "--shards", "2", "--part-size", "5MiB")  # fmt: skip
    assert created.returncode == 0, created.stderr
    monkeypatch.setenv(variable, "abc")
    result = persevere(s3_env, "upload", "shard", "--state-file", state)
    assert result.returncode == 2, result.stderr
    assert "the job's shard index is not a number" in result.stderr
    assert "Traceback" not in result.stderr


def test_cp_again_with_another_endpoint_in_the_environment_looks_there(
    s3_env, bucket, make_file, tmp_path
):
    """``cp f s3://b/k`` done at one endpoint, then run with ``AWS_ENDPOINT_URL`` naming
    another (staging, then production): "already completed", exit 0, from the recorded
    endpoint's object, nothing at the one named (``cp DIR`` and ``--endpoint-url`` did look
    there). Here the other endpoint is unreachable: exit 3, run again later."""
    file = make_file(1000, seed=23)
    args = ["cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st", "--no-progress"]
    assert persevere(s3_env, *args).returncode == 0
    elsewhere = persevere(s3_env | {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, *args)
    assert elsewhere.returncode == 3, elsewhere.stdout + elsewhere.stderr
    assert "already completed" not in elsewhere.stdout
    again = persevere(s3_env, *args)  # the endpoint it was made at: done
    assert again.returncode == 0 and "already completed" in again.stdout, again.stderr


def _here_and_there(s3_env: dict[str, str], s3_server: Any, tmp_path: Path) -> dict[str, str]:
    """The environment with an AWS config of two profiles: ``here`` (the test server) and
    ``there`` (an endpoint that does not answer)."""
    config = tmp_path / "aws-config"
    keys = (f"aws_access_key_id = {s3_server.access_key}\n"
            f"aws_secret_access_key = {s3_server.secret_key}\nregion = us-east-1\n")  # fmt: skip
    config.write_text(f"[profile here]\nendpoint_url = {s3_server.endpoint_url}\n{keys}"
                      f"[profile there]\nendpoint_url = http://127.0.0.1:1\n{keys}")  # fmt: skip
    return s3_env | {"AWS_ENDPOINT_URL": "", "AWS_CONFIG_FILE": str(config)}


def test_cp_again_with_another_profile_in_the_environment_looks_there(
    s3_env, s3_server, bucket, make_file, tmp_path
):
    """The same with ``AWS_PROFILE`` naming a profile whose ``endpoint_url`` is elsewhere: the
    recorded profile answered "already completed", exit 0."""
    env = _here_and_there(s3_env, s3_server, tmp_path)
    file = make_file(1000, seed=24)
    args = ["cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st", "--no-progress"]
    assert persevere(env | {"AWS_PROFILE": "here"}, *args).returncode == 0
    elsewhere = persevere(env | {"AWS_PROFILE": "there"}, *args)
    assert elsewhere.returncode == 3, elsewhere.stdout + elsewhere.stderr
    assert "already completed" not in elsewhere.stdout
    again = persevere(env | {"AWS_PROFILE": "here"}, *args)
    assert again.returncode == 0 and "already completed" in again.stdout, again.stderr


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize("closed", [0, 1, 2])
def test_a_command_run_with_a_standard_descriptor_closed_exits_0(
    s3_env, bucket, s3_client, make_file, tmp_path, closed
):
    """``persevere cp FILE s3://B/K <&-`` (or ``>&-``): the next socket took the closed
    number and uvloop aborted the process when it closed it (SIGABRT, 134), after the upload
    had completed, and again on every run ("already completed" too): never exit 0. With
    ``2>&-``, ``verify``'s progress output found ``sys.stderr`` None: exit 1."""
    file = make_file(6 * MiB, seed=25)

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "persevere", *map(str, args)],
            env={**os.environ, **s3_env}, text=True, timeout=120,
            stdout=subprocess.DEVNULL if closed == 1 else subprocess.PIPE,
            stderr=subprocess.DEVNULL if closed == 2 else subprocess.PIPE,
            preexec_fn=lambda: os.close(closed),
        )  # fmt: skip

    for _ in range(2):  # uploaded, then "already completed"
        done = run("cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st", "--no-progress")
        assert done.returncode == 0, done.stderr
    assert sha256_of_object(s3_client, bucket, "k") == hashlib.sha256(file.read_bytes()).hexdigest()
    checked = run("verify", file, f"s3://{bucket}/k")
    assert checked.returncode == 0, checked.stderr
    if closed == 0:  # closed is not empty: nothing to upload
        refused = run("cp", "-", f"s3://{bucket}/s", "--state-dir", tmp_path / "st")
        assert refused.returncode == 2 and "standard input is closed" in refused.stderr


def test_cp_dir_again_as_another_profile_looks_there(s3_env, s3_server, bucket, tmp_path):
    """``cp DIR`` done as one profile, then run as a profile whose ``endpoint_url`` is
    elsewhere: the tree's journal (which recorded no profile) answered "2 unchanged", exit 0,
    with nothing at the other endpoint. Now it is another destination: here unreachable,
    exit 3; and the first profile's run still finds its journal (nothing sent)."""
    env = _here_and_there(s3_env, s3_server, tmp_path)
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a", "b"):
        (tree / name).write_bytes(name.encode() * 100)
    args = ["cp", tree, f"s3://{bucket}/t/", "--no-progress", "--max-retries", "1"]
    first = persevere(env | {"AWS_PROFILE": "here"}, *args)
    assert first.returncode == 0 and "2 sent" in first.stdout, first.stderr
    elsewhere = persevere(env | {"AWS_PROFILE": "there"}, *args)
    assert elsewhere.returncode == 3, elsewhere.stdout + elsewhere.stderr
    assert "unchanged" not in elsewhere.stdout
    flag = persevere(env, *args, "--profile", "there")
    assert flag.returncode == 3, flag.stdout + flag.stderr
    again = persevere(env | {"AWS_PROFILE": "here"}, *args)
    assert again.returncode == 0, again.stderr
    assert "0 sent, 0 sent again, 2 unchanged" in again.stdout, again.stdout
