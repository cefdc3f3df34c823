"""An endpoint that cannot be reached, where no upload is made or changed (audit 8, finding
11): a dry run, and a bench whose first upload got no answer, say what is true of what is
left, and nothing of an upload to resume."""

from __future__ import annotations

import json

import pytest

from tests.conftest import persevere

# Each waits out an unreachable endpoint's retries: run by make test-all (CI).
pytestmark = pytest.mark.slow

NOWHERE = "http://127.0.0.1:1"


def _failure(done):
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def _completed(s3_env, file, url, state):
    assert persevere(s3_env, "cp", file, url, "--state-file", state).returncode == 0


def _in_progress(s3_env, file, url, state):
    made = persevere(s3_env, "upload", "start", file, url, "--state-file", state)
    assert made.returncode == 0, made.stderr


@pytest.mark.parametrize(
    ("command", "earlier"),
    [("start", None), ("cp", None), ("cp", _completed), ("cp", _in_progress)],
    ids=["start", "cp-new", "cp-completed", "cp-in-progress"],
)
def test_a_dry_run_that_cannot_reach_s3_says_nothing_was_created_or_changed(
    s3_env, bucket, make_file, tmp_path, command, earlier
):
    """Each of the dry run's first questions (HeadObject of a new upload; of one completed;
    ListParts of one in progress) unanswered: exit 3, "nothing was created or changed", no
    command to resume, the state file as it was."""
    file, state, url = make_file(6 * 1024 * 1024), tmp_path / "s", f"s3://{bucket}/k"
    if earlier is not None:
        earlier(s3_env, file, url, state)
    before = state.read_bytes() if state.exists() else None
    args = ["upload", "start"] if command == "start" else ["cp"]
    done = persevere(s3_env, *args, file, url, "--state-file", state, "--dry-run", "--json",
                     "--endpoint-url", NOWHERE)  # fmt: skip
    failure = _failure(done)
    assert "nothing was created or changed" in failure["hint"], failure
    assert "resumable" not in failure["hint"] and failure["next_command"] is None, failure
    assert (state.read_bytes() if state.exists() else None) == before


def test_a_bench_that_cannot_reach_s3_does_not_say_both_nothing_and_left_behind(s3_env, bucket):
    """Its first upload got no answer: what may be left is named (the command that lists it),
    and not contradicted by "nothing was created"."""
    done = persevere(s3_env, "bench", f"s3://{bucket}", "--size", "10MiB", "-c", "1",
                     "--part-size", "8MiB", "--endpoint-url", NOWHERE, "--json")  # fmt: skip
    failure = _failure(done)
    assert "left behind" in failure["hint"], failure
    assert "nothing was created" not in failure["hint"], failure


@pytest.mark.parametrize("command", ["cp", "resume"])
def test_the_check_of_a_completed_upload_that_cannot_reach_s3_speaks_of_no_resume(
    s3_env, bucket, make_file, tmp_path, command
):
    """The same for `cp` and `upload resume` re-run on an upload that completed: its object
    could not be checked (exit 3, the same command later); there is nothing to resume."""
    file, state, url = make_file(1000), tmp_path / "s", f"s3://{bucket}/k"
    _completed(s3_env, file, url, state)
    args = ["cp", file, url] if command == "cp" else ["upload", "resume"]
    done = persevere(s3_env, *args, "--state-file", state, "--json", "--endpoint-url", NOWHERE)
    failure = _failure(done)
    assert "completed earlier and nothing was changed" in failure["hint"], failure
    assert "resumable" not in failure["hint"] and failure["next_command"] is None, failure
