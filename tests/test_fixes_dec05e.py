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
async def test_a_put_object_asks_for_no_100_continue_and_a_part_keeps_it(monkeypatch):
    """A tree's small files' PutObject bodies became watched bodies (with ``read``), for
    which botocore adds "Expect: 100-continue", and aiohttp waits for the 100: a round trip
    more per small file, and a wait on any proxy or server that never sends it. Their bodies
    of bytes never asked for it. Parts keep it (measured: SeaweedFS spends more CPU without)."""
    from persevere._options import UploadOptions
    from persevere._s3 import Endpoint, open_client

    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y")):
        monkeypatch.setenv(name, value)
    endpoint = Endpoint(endpoint_url="http://127.0.0.1:9", region="us-east-1")
    async with open_client(endpoint, UploadOptions()) as client:
        for operation, expected in (("PutObject", None), ("UploadPart", "100-continue")):
            model = client.meta.service_model.operation_model(operation)
            params = {"body": type("Body", (), {"read": lambda self: b""})(), "headers": {}}
            event = f"before-call.s3.{operation}"
            await client.meta.events.emit(
                event, model=model, params=params, request_signer=None, context={}
            )
            assert params["headers"].get("Expect") == expected, operation


def test_a_part_s3_took_is_counted_whole_in_the_progress(
    s3_env, bucket, make_file, tmp_path, monkeypatch
):
    """aiohttp cancels a body's writer once S3's answer is in; a sendfile hop that had sent
    the whole part then never reported it (on_sent), and the caller's progress sink missed a
    part now and then (test_audit10's sink test failed once under load). Here every hop's
    report is lost: the sink must still see every byte, once."""
    import persevere
    from persevere import _body

    real = _body._Body.__init__

    def unreported(self, length, on_sent, throttle=None):
        real(self, length, lambda n: None, throttle)

    monkeypatch.setattr(_body._Body, "__init__", unreported)

    class Sink:
        def __init__(self) -> None:
            self.done = 0

        def start(self, total: int, done: int) -> None:
            self.done = done

        def advance(self, delta: int) -> None:
            self.done += delta

        def close(self) -> None:
            pass

    sink = Sink()
    file = make_file(12 * 1024 * 1024, seed=5)
    persevere.upload_file_sync(file, bucket, "k", tmp_path / "s", part_size=5 * 1024 * 1024,
                               progress=sink)  # fmt: skip
    assert sink.done == 12 * 1024 * 1024
