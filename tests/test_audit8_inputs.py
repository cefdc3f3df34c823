"""Audit 8's bad inputs, their variants beyond tests/test_audit8_dec05.py: an empty path, an
empty region, partial credentials, an AWS file that does not parse, the file to upload as its
own state file, /dev/stdin. Each is one line and a documented exit code, nothing sent, nothing
removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import persevere

EMPTY_PATH = "an empty path names nothing"


def _in_progress(s3_env: dict[str, str], file: Path, url: str, state: Path) -> None:
    """An upload created and left in progress (one shard, none run)."""
    made = persevere(s3_env, "upload", "start", file, url, "--state-file", state, "--shards", "1")
    assert made.returncode == 0, made.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["cp", "FILE", "URL", "--state-file", ""],
        ["cp", "DIR", "URL/", "--state-dir", ""],
        ["cp", "DIR", "URL/", "--state-file", ""],
        ["upload", "start", "FILE", "URL", "--state-file", ""],
        ["upload", "start", "--file-to-upload", "", "--s3-bucket", "BUCKET", "--s3-key", "k"],
        ["upload", "resume", "--state-file", "STATE", "--file", ""],
        ["upload", "resume", "--state-file", ""],
        ["upload", "shard", "--state-file", "STATE", "--shard", "0/1", "--file", ""],
        ["upload", "status", "--state-file", ""],
        ["upload", "abort", "--state-file", ""],
        ["verify", "--file", "", "URL"],
        ["verify", "FILE", "URL", "--state-file", ""],
    ],
    ids=lambda args: "-".join(a.strip("-") or '""' for a in args if not a.isupper()),
)
def test_an_empty_path_flag_is_refused_not_taken_for_the_working_directory(
    s3_env, bucket, s3_client, make_file, tmp_path, args
):
    """Every path a command reads, given as "" (an unset shell variable): one line, exit 2,
    nothing sent; never the working directory (Path("") is "."), where the state of a DIR or
    a file "." would have been written, or the directory itself uploaded."""
    file, tree, state = make_file(1000), tmp_path / "tree", tmp_path / "state"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    url = f"s3://{bucket}/p"
    if "STATE" in args:
        _in_progress(s3_env, file, url, state)
    names = {"FILE": str(file), "DIR": str(tree), "URL": url, "URL/": f"{url}/",
             "STATE": str(state), "BUCKET": bucket}  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    done = persevere(s3_env, *(names.get(a, a) for a in args), cwd=work)
    assert done.returncode == 2, done.stdout + done.stderr
    assert EMPTY_PATH in done.stderr
    assert "Traceback" not in done.stderr
    assert list(work.iterdir()) == [], "nothing written in the working directory"
    listed = s3_client.list_objects_v2(Bucket=bucket)
    assert not listed.get("Contents"), listed


@pytest.mark.parametrize("json_output", [False, True])
def test_an_empty_ca_bundle_is_refused_not_taken_for_the_working_directory(
    s3_env, bucket, make_file, tmp_path, json_output
):
    """--ca-bundle "" said "CA bundle /the/working/directory does not exist"."""
    more = ["--json"] if json_output else []
    done = persevere(s3_env, "cp", make_file(1000), f"s3://{bucket}/k", "--ca-bundle", "",
                     "--state-file", tmp_path / "s", *more)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--ca-bundle: an empty path" in done.stderr
    assert str(Path.cwd()) not in done.stderr
    if json_output:
        assert json.loads(done.stdout)["exit_code"] == 2


def test_upload_start_of_the_working_directory_by_name_writes_nothing(s3_env, bucket, tmp_path):
    """`upload start .`: refused as the directory it is, no state file made anywhere."""
    work = tmp_path / "work"
    work.mkdir()
    done = persevere(s3_env, "upload", "start", ".", f"s3://{bucket}/k", "--json", cwd=work)
    assert done.returncode == 2, done.stderr
    assert "is a directory, not a file" in json.loads(done.stdout)["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


@pytest.mark.parametrize("command", ["verify", "list", "bench", "cp-dir"])
def test_an_empty_region_variable_is_one_line_for_every_command(
    s3_env, bucket, make_file, tmp_path, command
):
    """AWS_DEFAULT_REGION="": refused as the client is made (exit 2), before any request."""
    file, tree = make_file(1000), tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    args = {
        "verify": ["verify", file, f"s3://{bucket}/k"],
        "list": ["upload", "list", f"s3://{bucket}"],
        "bench": ["bench", f"s3://{bucket}/b", "--size", "1MiB"],
        "cp-dir": ["cp", tree, f"s3://{bucket}/t/", "--state-file", tmp_path / "s"],
    }[command]
    done = persevere({**s3_env, "AWS_DEFAULT_REGION": ""}, *args)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert "the region '' is not a region's name" in done.stderr


@pytest.mark.parametrize("command", ["cp-dir", "status", "bench", "resume"])
def test_partial_credentials_are_one_line_for_every_command(
    s3_env, bucket, make_file, tmp_path, command
):
    """The key id without its secret: one line naming the variable, exit 1 (resume: the
    upload stays resumable, and the command says how)."""
    file, tree, state = make_file(1000), tmp_path / "tree", tmp_path / "state"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    if command in ("resume", "status"):
        _in_progress(s3_env, file, f"s3://{bucket}/k", state)
    args = {
        "cp-dir": ["cp", tree, f"s3://{bucket}/t/", "--state-file", tmp_path / "s"],
        "status": ["upload", "status", f"s3://{bucket}/k"],
        "bench": ["bench", f"s3://{bucket}/b", "--size", "1MiB"],
        "resume": ["upload", "resume", "--state-file", state, "--no-progress"],
    }[command]
    done = persevere({**s3_env, "AWS_SECRET_ACCESS_KEY": ""}, *args)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert "missing: AWS_SECRET_ACCESS_KEY" in done.stderr
    if command == "resume":
        assert f"persevere upload resume --state-file {state}" in done.stderr


@pytest.mark.parametrize("command", ["verify", "list", "resume", "status"])
def test_an_aws_file_that_does_not_parse_is_one_line_for_every_command(
    s3_env, bucket, make_file, tmp_path, command
):
    """A config file with a typo: one line naming it, exit 2, for the commands given a state
    file too (their endpoint is the recorded one, the file is read all the same). status still
    shows the state file, and says why S3 was not asked."""
    broken = tmp_path / "aws-config"
    broken.write_text("[default\nregion = us-east-1\n")
    file, state = make_file(1000), tmp_path / "state"
    if command in ("resume", "status"):
        _in_progress(s3_env, file, f"s3://{bucket}/k", state)
    args = {
        "verify": ["verify", file, f"s3://{bucket}/k"],
        "list": ["upload", "list", f"s3://{bucket}"],
        "resume": ["upload", "resume", "--state-file", state, "--no-progress"],
        "status": ["upload", "status", "--state-file", state],
    }[command]
    done = persevere({**s3_env, "AWS_CONFIG_FILE": str(broken)}, *args)
    assert "Traceback" not in done.stderr, done.stderr
    if command == "status":
        assert done.returncode == 0, done.stderr
        assert f"{broken} cannot be parsed" in done.stdout
        return
    assert done.returncode == 2, done.stderr
    assert f"the AWS config or credentials file {broken} cannot be parsed" in done.stderr


@pytest.mark.parametrize(
    "how", ["hard-link", "dry-run", "start", pytest.param("stdin", marks=pytest.mark.process)]
)
def test_the_file_to_upload_as_its_own_state_file_is_refused_by_every_path(
    s3_env, bucket, s3_client, tmp_path, how
):
    """The same file (inode) as the one to upload, however named: refused (exit 2) before
    anything reads it as a journal, removes or writes it; nothing sent."""
    marker = tmp_path / "marker"
    marker.write_bytes(b"")
    state = marker
    if how == "hard-link":
        state = tmp_path / "marker.persevere"
        state.hardlink_to(marker)
    url = f"s3://{bucket}/k"
    args = {
        "hard-link": ["cp", marker, url, "--state-file", state],
        "dry-run": ["cp", marker, url, "--state-file", state, "--dry-run"],
        "start": ["upload", "start", marker, url, "--state-file", state],
    }.get(how, ["cp", "-", url, "--state-file", state])
    if how == "stdin":  # `cp - ... < marker`: standard input is that file
        with marker.open("rb") as stdin:
            done = persevere(s3_env, *args, "--no-progress", stdin=stdin)
    else:
        done = persevere(s3_env, *args, "--no-progress")
    assert done.returncode == 2, done.stderr
    assert "the state file cannot be the file being uploaded" in done.stderr
    assert marker.exists() and state.exists() and marker.read_bytes() == b""
    assert not s3_client.list_objects_v2(Bucket=bucket).get("Contents")


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_empty_file_of_the_tree_as_its_state_file_is_refused(
    s3_env, bucket, s3_client, tmp_path, dry_run
):
    """`cp DIR --state-file DIR/marker`, marker empty: was replaced by the tree's journal (and
    never uploaded: the walk leaves the journal's name out), exit 0. Refused, exit 2, the file
    left as it was; a state file in the tree that is no file yet is still the journal."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    (tree / "marker").write_bytes(b"")
    more = ["--dry-run"] if dry_run else []
    done = persevere(s3_env, "cp", tree, f"s3://{bucket}/t/", "--state-file", tree / "marker",
                     "--no-progress", *more)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "is an empty file of the tree being uploaded" in done.stderr
    assert (tree / "marker").read_bytes() == b""
    assert not s3_client.list_objects_v2(Bucket=bucket).get("Contents")
    inside = persevere(s3_env, "cp", tree, f"s3://{bucket}/t/", "--state-file",
                       tree / "journal", "--no-progress", *more)  # fmt: skip
    assert inside.returncode == 0, inside.stderr


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize("name", ["/dev/fd/0", "/proc/self/fd/0"])
def test_standard_inputs_other_names_are_read_as_dash(s3_env, bucket, s3_client, make_file,
                                                       tmp_path, name):  # fmt: skip
    """/dev/fd/0 and /proc/self/fd/0 as /dev/stdin and `-`: a file redirected in is that file
    (its state file beside it), a pipe a stream (its state under $XDG_STATE_HOME); nothing
    kept in /dev or /proc."""
    first, second = make_file(1000, seed=1), make_file(2000, seed=2)
    env = {**s3_env, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    url = f"s3://{bucket}/k"
    for file in (first, second):
        with file.open("rb") as stdin:
            done = persevere(env, "cp", name, url, "--no-progress", stdin=stdin)
        assert done.returncode == 0, done.stderr
        assert f"state file: {file}." in done.stderr
        assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == file.read_bytes()
    piped = persevere(env, "cp", name, url, "--no-progress", input="streamed")
    assert piped.returncode == 0, piped.stderr
    assert f"state file: {tmp_path / 'xdg' / 'persevere'}/stdin." in piped.stderr
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"streamed"


@pytest.mark.process
def test_verify_of_dev_stdin_reads_the_file_redirected_in_and_refuses_a_pipe(
    s3_env, bucket, make_file
):
    """`verify /dev/stdin s3://B/K < file` checks that file (as before /dev/stdin was read as
    `-`); a pipe cannot be verified: one line, exit 2."""
    file = make_file(1000)
    url = f"s3://{bucket}/k"
    assert persevere(s3_env, "cp", file, url, "--no-progress").returncode == 0
    with file.open("rb") as stdin:
        done = persevere(s3_env, "verify", "/dev/stdin", url, stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert str(file) in done.stdout
    piped = persevere(s3_env, "verify", "/dev/stdin", url, input="not the file")
    assert piped.returncode == 2, piped.stderr
    assert "verify needs the path of a file" in piped.stderr
