"""An operator's audit (2026-12-05, eighth): the README's claims tried as a demanding user
would, flag combinations and failure paths it does not spell out. Each test is a defect found
(they were strict xfails until fixed: every one is fixed, 2026-12-05)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import persevere


def _upload_id(state: Path) -> str:
    return str(json.loads(state.read_text().splitlines()[0])["upload_id"])


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_write_once_streams_rerun_after_it_completed_exits_0(s3_env, bucket, tmp_path):
    """README (Write-once backups): "Streams (`cp -`) ... take it too. `cp` re-run on an upload
    it completed itself still exits 0 ("already completed"): that object is its own." A
    supervisor re-running `producer | persevere cp - s3://B/K --no-overwrite` after the stream
    completed (the exit status lost: a reboot, a killed pod) got exit 1 ("already exists"),
    which the contract says needs a person. The same stream again is the object it made."""
    data = bytes(range(256)) * 40_000  # 10 MB: two parts
    state = tmp_path / "s"
    args = ("cp", "-", f"s3://{bucket}/k", "--state-file", state, "--no-overwrite")
    first = persevere(s3_env, *args, input=data)
    assert first.returncode == 0, first.stderr
    again = persevere(s3_env, *args, input=data)
    assert again.returncode == 0, again.stderr
    assert b"already exists" not in again.stderr


def test_start_with_shards_and_json_prints_one_json_document(s3_env, bucket, make_file, tmp_path):
    """README: "`--json`: one JSON document on stdout, always". `upload start FILE URL --shards
    2 --json` printed the human instructions ("created upload ... run for I in 0..1") instead:
    a script parsing stdout fails on the very command that hands it the shard commands."""
    file = make_file(12 * 1024 * 1024)
    state = tmp_path / "s"
    done = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                     "--shards", "2", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["upload_id"] == _upload_id(state)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--object-lock-mode", "GOVERNANCE", "--object-lock-retain-until", "2030-01-01"),
         "object lock"),
        (("--checksum", "SHA512"), "not supported by this endpoint"),
    ],
    ids=["object-lock", "sha512"],
)  # fmt: skip
def test_a_tree_whose_options_the_endpoint_refuses_says_why(s3_env, bucket, tmp_path, flags, said):
    """README: "on a bucket without [object lock], S3's refusal is reported as one line saying
    so and how to enable it"; `--checksum` SHA512 and the XXHASHes: "otherwise a clear 'not
    supported by this endpoint'". `cp FILE` says both; `cp DIR`, whose small files go up as
    PutObject, said only "PutObject t/a.txt: InvalidRequest: Invalid Request"."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("one\n")
    done = persevere(s3_env, "cp", tree, f"s3://{bucket}/t/", *flags, "--no-progress")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert said in done.stderr, done.stderr


def test_a_dry_run_that_cannot_reach_s3_does_not_speak_of_an_upload(s3_env, bucket, make_file):
    """README: the first request of a dry run gives up after 4 attempts, "exit 3: nothing was
    created or changed". `cp FILE URL --dry-run` against an unreachable endpoint said "the upload
    is intact and resumable": there is no upload, and no state file to resume from."""
    file = make_file(1000)
    done = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--dry-run", "--json",
                     "--endpoint-url", "http://127.0.0.1:1")  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert not Path(f"{file}.persevere").exists()
    assert "resumable" not in json.loads(done.stdout)["hint"]


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_a_tree_with_processes_lists_the_file_it_sent_again(s3_env, bucket, tmp_path):
    """README (Directories): "`--json` gives the lists (sent, sent again, refused, removed,
    failed) and the counts." With `--processes 2` the lists were empty: the first run gave
    `"sent": []` for six files sent, and a re-run after one was edited `"resent": []`, the
    edited file counted among `skipped` (unchanged): a script reading the lists is told nothing
    was uploaded."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(6):
        (tree / f"f{i}").write_text(f"file {i}\n")
    url = f"s3://{bucket}/t/"
    first = persevere(s3_env, "cp", tree, url, "--processes", "2", "--json", process=True)
    assert first.returncode == 0, first.stderr
    assert sorted(json.loads(first.stdout)["sent"]) == [f"f{i}" for i in range(6)]
    (tree / "f3").write_text("file 3, edited\n")
    again = persevere(s3_env, "cp", tree, url, "--processes", "2", "--json", process=True)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["resent"] == ["f3"], result
    assert result["skipped"] == 5, result


def test_resume_of_an_upload_aborted_elsewhere_gives_the_cp_command(
    s3_env, bucket, make_file, tmp_path
):
    """README: resume of "an aborted upload ... is exit 1 ..., whose message gives the `cp`
    command that starts again"; and `cp` "starts again, once" over the same state file when the
    upload "was aborted behind its back". An upload aborted by id (`upload abort s3://B/K
    --upload-id`, a lifecycle rule) got the hint "start a new upload with a new state file", no
    command, `next_command` null: the same state file works, with `cp`."""
    file = make_file(12 * 1024 * 1024)
    state = tmp_path / "s"
    url = f"s3://{bucket}/k"
    made = persevere(s3_env, "upload", "start", file, url, "--state-file", state, "--shards", "2")
    assert made.returncode == 0, made.stderr
    aborted = persevere(s3_env, "upload", "abort", url, "--upload-id", _upload_id(state))
    assert aborted.returncode == 0, aborted.stderr
    done = persevere(s3_env, "upload", "resume", "--state-file", state, "--json")
    assert done.returncode == 1, done.stderr
    failure = json.loads(done.stdout)
    assert "persevere cp" in (failure["next_command"] or ""), failure


def test_a_shard_that_read_another_file_is_not_trusted_on_a_spot_check(
    s3_env, bucket, make_file, tmp_path, s3_client, monkeypatch
):
    """README (shards): `upload shard --file` is "the file at this path on this host"; "Parts
    uploaded by shards (other processes or hosts, each with its own view of the file) get a spot
    check of their own". A host whose copy is stale (same size, one part differing: an old
    rsync, a restored backup) sent its parts from that copy; its shard journal recorded the
    identity of the file `start` saw, not of the one it read, so `upload resume` trusted a spot
    check of two of its parts. When the two drawn were not the stale one (here drawn
    deterministically; by chance 1 in 3 for three parts, nearly always for hundreds) the resume
    exited 0 with an object that is not the file. Expected: parts read from another file (path,
    inode, device) are all re-read before completion, as for `resume --file`."""
    import random

    from tests.conftest import sha256_of_file, sha256_of_object

    mib = 1024 * 1024
    file = make_file(30 * mib, name="data.bin")  # six parts of 5 MiB: shard 0 has parts 1..3
    stale = tmp_path / "stale.bin"
    data = bytearray(file.read_bytes())
    data[10 * mib + 5] ^= 0xFF  # part 3
    stale.write_bytes(data)
    state = tmp_path / "s"
    url = f"s3://{bucket}/k"
    made = persevere(s3_env, "upload", "start", file, url, "--state-file", state,
                     "--shards", "2", "--part-size", "5MiB")  # fmt: skip
    assert made.returncode == 0, made.stderr
    other = persevere(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2",
                      "--file", stale, "--no-progress")  # fmt: skip
    assert other.returncode == 0, other.stderr
    mine = persevere(s3_env, "upload", "shard", "--state-file", state, "--shard", "1/2",
                     "--no-progress")  # fmt: skip
    assert mine.returncode == 0, mine.stderr
    # the spot check draws the lowest parts of each list: not part 3 (a 1 in 3 chance)
    monkeypatch.setattr(random.SystemRandom, "sample", lambda self, numbers, k: sorted(numbers)[:k])
    done = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    if done.returncode == 0:
        assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file), done.stderr


def test_resume_given_a_shards_journal_is_refused_and_names_the_state_file(
    s3_env, bucket, make_file, tmp_path
):
    """README (shards): "`upload resume --state-file S`: merges the shard journals with
    ListParts ... completes", refusing (exit 3) while a shard still runs. Given a shard's own
    journal (`S.shard-0-of-2`, the file beside S a user tab-completes to), `upload resume`
    took it for a whole upload's: it completed the upload from it, without the other shards'
    journals or their locks, and wrote `completed` into the shard's journal while S still said
    "in progress". Expected: refused (bad input, exit 2), naming S."""
    file = make_file(12 * 1024 * 1024)
    state = tmp_path / "s"
    made = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                     "--shards", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    shard = persevere(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2",
                      "--no-progress")  # fmt: skip
    assert shard.returncode == 0, shard.stderr
    done = persevere(s3_env, "upload", "resume", "--state-file", f"{state}.shard-0-of-2",
                     "--no-progress")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert str(state) in done.stderr


def test_the_file_to_upload_given_as_its_state_file_is_never_removed(s3_env, bucket, tmp_path):
    """`persevere cp marker s3://B/K --state-file marker` (the path given twice: a slip in a
    script or shell history) with an empty file: the empty "state file" was taken for a header
    a crash tore and removed, then the run said "file to upload ... does not exist" (exit 2)
    about the file it had just deleted. README: bad input gets one clear line, nothing lost;
    a state file path that is not a journal is refused, never written to or removed."""
    marker = tmp_path / "marker"
    marker.write_bytes(b"")
    done = persevere(s3_env, "cp", marker, f"s3://{bucket}/k", "--state-file", marker,
                     "--no-progress")  # fmt: skip
    assert marker.exists(), done.stderr
    assert done.returncode == 2, done.stderr


def test_resume_of_a_file_that_moved_says_what_to_run(s3_env, bucket, make_file, tmp_path):
    """README (Exit codes): "Errors are one line ... plus what to do next ... Any failure after
    the upload was created prints the exact `persevere upload resume` command." `upload resume`
    of an upload in progress whose file was moved said only "file to upload ... does not exist"
    (exit 2): no hint, `next_command` null, nothing about `--file` (the flag made for "the file
    is elsewhere now"), though the upload and its parts are intact."""
    file = make_file(12 * 1024 * 1024)
    state = tmp_path / "s"
    made = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                     "--shards", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    file.rename(tmp_path / "moved.bin")
    done = persevere(s3_env, "upload", "resume", "--state-file", state, "--json")
    assert done.returncode == 2, done.stderr
    failure = json.loads(done.stdout)
    assert "--file" in (failure["hint"] or ""), failure
    assert "persevere upload resume" in (failure["next_command"] or ""), failure


@pytest.mark.parametrize("command", ["cp", "verify"])
def test_an_empty_file_argument_is_refused_not_taken_for_the_working_directory(
    s3_env, bucket, s3_client, tmp_path, command
):
    """`persevere cp "$FILE" s3://B/backups/` in a script whose variable is empty or unset:
    "" was read as "." and the whole working directory was uploaded (a home directory, its
    keys and all: 519 files here), and `verify "" s3://B/P/` checked the working directory
    and said exit 0. README: bad input gets one clear line, exit 2, nothing sent."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "secret.txt").write_text("not for the bucket\n")
    if command == "verify":  # the working directory's file is in S3: verify would say "same"
        s3_client.put_object(Bucket=bucket, Key="p/secret.txt", Body=b"not for the bucket\n")
    done = persevere(s3_env, command, "", f"s3://{bucket}/p/", cwd=work)
    assert done.returncode == 2, done.stdout + done.stderr
    if command == "cp":
        listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="p/")
        assert not listed.get("Contents"), listed


@pytest.mark.parametrize("file", [".", "", "/"])
def test_upload_start_of_a_path_without_a_name_is_one_line(s3_env, bucket, tmp_path, file):
    """`persevere upload start . s3://B/K` (or "", or /): a Python traceback ("ValueError:
    PosixPath('.') has an empty name", exit 1) while building the default state file's name;
    `upload start tree s3://B/K` says "tree is a directory, not a file". README: "never a
    traceback"; bad input is exit 2."""
    done = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr


@pytest.mark.process
def test_cp_dev_stdin_of_another_file_is_not_refused_for_a_state_file_never_given(
    s3_env, bucket, make_file, tmp_path
):
    """`persevere cp /dev/stdin s3://B/K < file` (the path many tools take for standard input)
    read the redirected file as `cp -` does, but kept its state beside the path given:
    /dev/stdin.persevere, in /dev (a tmpfs; README: "never beside it in /dev"), one for every
    such run. The next `cp /dev/stdin s3://B/K < another` was refused, exit 2, "--state-file:
    state file /dev/stdin.persevere records an upload of ... give each file its own state
    file": no --state-file was given. Expected: as `cp -`, state under $XDG_STATE_HOME."""
    first, second = make_file(1000, seed=1), make_file(2000, seed=2)
    env = {**s3_env, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    url = f"s3://{bucket}/k"
    try:
        with first.open("rb") as stdin:
            one = persevere(env, "cp", "/dev/stdin", url, "--no-progress", stdin=stdin)
        assert one.returncode == 0, one.stderr
        with second.open("rb") as stdin:
            two = persevere(env, "cp", "/dev/stdin", url, "--no-progress", stdin=stdin)
        assert "state file: /dev/" not in one.stderr + two.stderr
        assert two.returncode == 0, two.stderr
    finally:
        Path("/dev/stdin.persevere").unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["variable", "flag"])
def test_an_empty_region_is_one_line_not_a_traceback(s3_env, bucket, make_file, tmp_path, how):
    """`export AWS_DEFAULT_REGION=$REGION` with REGION unset (or `--region "$REGION"`): the
    upload began, then every request failed with a traceback (ExceptionGroup, "RuntimeError:
    6149 (AWS_AUTH_SIGNING_INVALID_CONFIGURATION)"), exit 1. The audit of 2026-12-04 made a
    region with a trailing space one line; an empty one is the commoner slip. Expected: one
    line (exit 2), or the empty value taken as unset."""
    file = make_file(1000)
    env = {**s3_env, "AWS_DEFAULT_REGION": ""} if how == "variable" else s3_env
    more = ["--region", ""] if how == "flag" else []
    done = persevere(env, "cp", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s",
                     "--no-progress", *more)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 2), done.stderr


@pytest.mark.parametrize("command", ["cp", "verify", "list"])
def test_partial_credentials_in_the_environment_are_one_line(
    s3_env, bucket, make_file, tmp_path, command
):
    """AWS_ACCESS_KEY_ID set and AWS_SECRET_ACCESS_KEY empty (a CI secret not passed on, an
    `export AWS_SECRET_ACCESS_KEY=$SECRET` with SECRET unset): botocore's
    PartialCredentialsError as a traceback, exit 1, from every command (cp, cp DIR, verify,
    upload list, upload status, bench). README: "never a traceback"; credentials refused are
    exit 1 with one line."""
    file = make_file(1000)
    env = {**s3_env, "AWS_SECRET_ACCESS_KEY": ""}
    args = {
        "cp": ["cp", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s"],
        "verify": ["verify", file, f"s3://{bucket}/k"],
        "list": ["upload", "list", f"s3://{bucket}"],
    }[command]
    done = persevere(env, *args)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert "AWS_SECRET_ACCESS_KEY" in done.stderr


@pytest.mark.parametrize("variable", ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"])
def test_an_aws_file_that_does_not_parse_is_one_line(s3_env, bucket, make_file, tmp_path, variable):
    """A typo in ~/.aws/config or ~/.aws/credentials (`[default` without its bracket): botocore's
    ConfigParseError as a traceback, exit 1 (the credentials file's inside an ExceptionGroup,
    after the plan). README: "never a traceback"; bad input caught before anything was sent
    (as "an AWS_PROFILE or --profile that names no profile") is exit 2, one line naming the
    file."""
    broken = tmp_path / "aws-file"
    broken.write_text("[default\nregion = us-east-1\n")
    file = make_file(1000)
    done = persevere({**s3_env, variable: str(broken)}, "cp", file, f"s3://{bucket}/k",
                     "--state-file", tmp_path / "s", "--no-progress")  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert str(broken) in done.stderr
