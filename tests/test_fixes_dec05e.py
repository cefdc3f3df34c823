"""Fixes of the fifth session of 2026-12-05 (audits 18-20 and the lead's own findings)."""

from __future__ import annotations

import fcntl
import os

import pytest

from tests.conftest import persevere


@pytest.mark.parametrize("given", [True, False], ids=["state-file", "default"])
def test_an_empty_tree_journal_another_run_is_making_is_in_use_not_removed(
    s3_env, bucket, tmp_path, given
):
    """Two runs of one tree started together (two destinations, both choosing DIR.persevere):
    the second found the first's journal still empty (created, its header not yet written)
    and unlinked it as "a run stopped before its header was written", then made its own. The
    first wrote its journal into a file no longer in the directory, and its records were lost.
    A journal locked by another run is in use, exit 3, and stays; chosen by default, another
    name is taken (the destination's own)."""
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "a").write_bytes(b"a" * 10)
    state = tmp_path / "t.persevere"
    fd = os.open(state, os.O_CREAT | os.O_WRONLY, 0o644)  # (the other run, making it)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        inode = os.fstat(fd).st_ino
        args = ("--state-file", state) if given else ()
        run = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", "--no-progress", *args)
        if given:
            assert run.returncode == 3, run.stdout + run.stderr
            assert "in use" in run.stderr, run.stderr
        else:
            assert run.returncode == 0, run.stdout + run.stderr
            assert f"state file: {state}\n" not in run.stdout, run.stdout
        assert os.stat(state).st_ino == inode and os.stat(state).st_size == 0
    finally:
        os.close(fd)


@pytest.mark.anyio
async def test_no_s3_request_asks_for_100_continue(monkeypatch):
    """botocore registers add_expect_header for every S3 call ("before-call.s3"); persevere
    unregistered it for "before-call.s3.UploadPart", which removed nothing: every part (and,
    since their bodies became watched, a tree's small files' PutObject) asked for a
    "100 Continue", and aiohttp waited for it before the body: a round trip more per request,
    and a wait on any proxy or server that never sends it."""
    from botocore.handlers import add_expect_header

    from persevere._options import UploadOptions
    from persevere._s3 import Endpoint, open_client

    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y")):
        monkeypatch.setenv(name, value)
    endpoint = Endpoint(endpoint_url="http://127.0.0.1:9", region="us-east-1")
    async with open_client(endpoint, UploadOptions()) as client:
        for operation in ("UploadPart", "PutObject"):
            handlers = client.meta.events._emitter._handlers.prefix_search(
                f"before-call.s3.{operation}"
            )
            assert add_expect_header not in list(handlers), operation
