"""File and stream resume share one path (docs/one-path.md, step 8b): the differences between
their copies that were bugs, each shown on both kinds of source."""

from __future__ import annotations

import pytest

from tests.conftest import interrupt_after_parts
from tests.conftest import persevere as cli
from tests.ruleproxy import Rule
from tests.test_stream import cp_args, pipe_into

MiB = 1024 * 1024
SIZE = 40 * MiB


def _interrupted(env, bucket, state, source, make_file, proxy=None, *extra):
    """An upload of a file (5 MiB parts) or a stream (8 MiB parts) stopped after 2 parts: the
    file, or None for the stream (``_resumed`` pipes the same one in again)."""
    if source == "stream":
        pipe_into(env, SIZE, 78, *cp_args(bucket, state, *extra), kill_after_parts=2,
                  state=state)  # fmt: skip
        return None
    file = make_file(SIZE, seed=78)
    interrupt_after_parts(env, ["upload", "start", file, f"s3://{bucket}/k", "--state-file",
                                state, "--part-size", "5MiB", "-c", "1", "--no-progress",
                                *extra], state, 2, proxy=proxy)  # fmt: skip
    return file


def _resumed(env, state, file, *extra):
    args = ["upload", "resume", "--state-file", state, "--no-progress", *extra]
    if file is None:
        return pipe_into(env, SIZE, 78, *args)[0]
    return cli(env, *args, process=True)


@pytest.mark.process
@pytest.mark.parametrize("source", ["file", "stream"])
def test_list_parts_refused_one_warning_and_one_hint(rule_proxy, bucket, make_file, tmp_path,
                                                     source):  # fmt: skip
    """Difference H: without s3:ListMultipartUploadParts, both kinds resume from the journal
    with the same warning, and a later S3 failure names the permission for both."""
    env, proxy = rule_proxy
    state = tmp_path / "s"
    file = _interrupted(env, bucket, state, source, make_file, proxy)
    proxy.rules[:0] = [Rule("GET", "uploadId", refuse=(403, "AccessDenied")),
                       Rule("POST", "uploadId", refuse=(400, "InvalidPart"))]  # fmt: skip
    result = _resumed(env, state, file)
    assert result.returncode == 1, result.stderr
    assert (
        "ListParts was refused (AccessDenied): resuming from the state file alone; parts S3 "
        "received but the journal missed are sent again" in result.stderr
    )
    assert "granting s3:ListMultipartUploadParts lets it reconcile the two" in result.stderr
    assert "Traceback" not in result.stderr
