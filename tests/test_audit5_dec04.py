"""An operator's audit (2026-12-04, fifth): persevere run unwatched under supervisors, in pipes
and with logs collected, in the locale a server has. Every stderr line under
``--log-format json`` is one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import persevere
from tests.test_audit3_dec04 import stopped_before_starting

MiB = 1024 * 1024


def _tree_with_a_name_not_utf8(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok.bin").write_bytes(b"x" * 100)
    (tree / os.fsdecode(b"bad\xff.bin")).write_bytes(b"y" * 100)
    return tree


@pytest.mark.process
def test_a_name_not_utf8_in_a_tree_is_listed_under_a_utf8_locale(s3_env, bucket, tmp_path):
    """LANG=en_US.UTF-8 (standard output's errors "strict", unlike C.UTF-8's): `cp DIR` with a
    file whose name is not UTF-8 died listing it (UnicodeEncodeError, a traceback, exit 1)
    instead of naming it as failed (exit 2); `verify DIR` too (exit 1, not 5)."""
    tree = _tree_with_a_name_not_utf8(tmp_path)
    utf8 = {**s3_env, "PYTHONIOENCODING": "utf-8"}  # what en_US.UTF-8 gives stdout
    sent = persevere(utf8, "cp", tree, f"s3://{bucket}/t/", process=True)
    assert sent.returncode == 2, sent.stderr
    assert "failed: bad\\udcff.bin: its name is not UTF-8" in sent.stdout, sent.stdout
    checked = persevere(utf8, "verify", tree, f"s3://{bucket}/t/", process=True)
    assert checked.returncode == 5, checked.stderr
    assert "Traceback" not in sent.stderr + checked.stderr


def _json_lines(stderr: str) -> list[dict[str, object]]:
    """Each line of ``stderr`` as the JSON object it must be (a plain line fails the test)."""
    documents = []
    for line in stderr.splitlines():
        try:
            documents.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line under --log-format json: {line!r}")
    return documents


def test_a_tree_with_a_file_left_out_logs_json_lines_only(s3_env, bucket, tmp_path):
    """`--log-format json cp DIR` with a file that fails alone: its closing line ("1 file(s) not
    uploaded; run the same command again") was plain text among the JSON objects."""
    tree = _tree_with_a_name_not_utf8(tmp_path)
    done = persevere(s3_env, "--log-format", "json", "cp", tree, f"s3://{bucket}/t/")
    assert done.returncode == 2, done.stderr
    events = _json_lines(done.stderr)
    [last] = [e for e in events if e["event"] == "error"]
    assert last["exit_code"] == 2 and "1 file(s) not uploaded" in str(last["message"]), events


@pytest.mark.process
def test_a_result_stdout_refused_is_a_json_line_in_json_logs(s3_env, bucket, make_file):
    """`> /dev/full` under --log-format json: the one line saying so was plain text."""
    file = make_file(1024)
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "persevere", "--log-format", "json", "cp",
                               file, f"s3://{bucket}/k"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = _json_lines(done.stderr)[-1]
    assert last["event"] == "error" and last["exit_code"] == 1, last
    assert "could not be written to standard output" in str(last["message"]), last


@pytest.mark.process
def test_a_stop_before_anything_started_is_a_json_line_in_json_logs():
    """A SIGTERM between reading the command line and starting the work, under --log-format
    json: its line was plain text."""
    done = stopped_before_starting(
        ["--log-format", "json", "cp", "f", "s3://b/k"],
        "import logging\nfrom persevere import _logs\n_logs.setup(logging.INFO, json_lines=True)",
    )
    assert done.returncode == 130, done.stderr
    [line] = _json_lines(done.stderr)
    assert line["event"] == "error" and line["exit_code"] == 130, line
    assert line["message"] == "SIGTERM received before anything started; nothing to resume"


@pytest.mark.process
def test_a_relative_xdg_state_home_is_ignored(s3_env, bucket, tmp_path):
    """XDG_STATE_HOME=state (relative, which the XDG spec says to ignore): the state file went
    under the working directory, so the same command run from another one (cron's, a unit's)
    did not find its upload again and started another."""
    home, there = tmp_path / "home", tmp_path / "there"
    there.mkdir()
    env = {**s3_env, "HOME": str(home), "XDG_STATE_HOME": "state"}
    done = persevere(env, "cp", "-", f"s3://{bucket}/k", input="hello", cwd=there)
    assert done.returncode == 0, done.stderr
    state = home / ".local" / "state" / "persevere"
    assert f"persevere: state file: {state}/stdin." in done.stderr, done.stderr
    assert not (there / "state").exists()


def test_a_start_that_finds_its_state_file_being_created_says_another_runs(
    s3_env, bucket, make_file, tmp_path
):
    """Two identical `upload start` at once (a cron overlap): the one that lost the race found
    the winner's state file still empty (its header not written yet) and said "it is empty:
    delete it and start the upload again" (exit 1); deleting it unlinks the running upload's
    journal. Another process holds it: exit 3, "in use"."""
    from persevere._platform import lock_exclusive

    file = make_file(1024)
    state = tmp_path / "s.persevere"
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # the winner, just created
    try:
        assert lock_exclusive(fd)
        done = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state)
    finally:
        os.close(fd)
    assert done.returncode == 3, done.stderr
    assert f"state file {state} is in use by another persevere process" in done.stderr
    assert "delete it" not in done.stderr
    assert state.exists()
