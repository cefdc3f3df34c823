"""Defects found on 2026-12-05, each test failing on its base (2d120e5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import persevere as cli
from tests.test_tree import clean, write

EXIT_MISMATCH = 4


def test_verify_of_an_empty_directory_against_a_filled_prefix_is_not_a_match(
    s3_env, bucket, tmp_path
):
    """An unmounted disk (an empty mount point) verified against the prefix its files went to
    checked nothing: it said "0 file(s)", exit 0. Exit 4, and a line saying why."""
    root = tmp_path / "data"
    write(root / "a.bin", 1000, 1)
    write(root / "sub" / "b.bin", 10, 2)
    sent = clean(cli(s3_env, "cp", root, f"s3://{bucket}/backup/", "--no-progress"))
    assert sent.returncode == 0, sent.stderr
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    result = clean(cli(s3_env, "verify", mount_point, f"s3://{bucket}/backup/", "--no-progress"))
    assert result.returncode == EXIT_MISMATCH, result.stdout + result.stderr
    assert f"{mount_point} holds no file to check, yet s3://{bucket}/backup/ holds objects" in (
        result.stdout
    )
    as_json = clean(cli(s3_env, "verify", mount_point, f"s3://{bucket}/backup", "--json"))
    assert as_json.returncode == EXIT_MISMATCH
    assert json.loads(as_json.stdout)["exit_code"] == EXIT_MISMATCH
    # an empty directory against an empty prefix is the same: exit 0, as before
    nothing = clean(cli(s3_env, "verify", mount_point, f"s3://{bucket}/other/", "--no-progress"))
    assert nothing.returncode == 0, nothing.stdout + nothing.stderr


@pytest.mark.process
def test_the_resume_command_names_a_relative_state_file_absolutely(s3_env, bucket, tmp_path):
    """``upload start --state-file db.persevere`` (relative) stopped: the printed resume
    command repeated it as given, so run by a supervisor from its own directory it named no
    journal."""
    write(tmp_path / "db.dump", 12 * 1024 * 1024, 3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "start", "db.dump", f"s3://{bucket}/db",
         "--state-file", "db.persevere", "--max-bandwidth", "1MiB/s", "--no-progress"],
        cwd=tmp_path, env={**os.environ, **s3_env}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while b"upload_id" not in _read(tmp_path / "db.persevere") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert (
        f"the upload is resumable: persevere upload resume --state-file {tmp_path}/db.persevere"
        in stderr
    ), stderr


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def test_the_stop_signals_are_ignored_from_the_moment_the_watch_on_them_ends(monkeypatch):
    """A shard of ``--processes`` gets one Ctrl-C twice (from the terminal, then from its
    parent). The second one could land after the signal watcher closed, which puts Python's
    defaults back, while the task group was still ending: a KeyboardInterrupt traceback
    (seen in test_review's Ctrl-C case on a loaded machine), or for SIGTERM a death by
    signal. The stop signals are ignored as the watcher closes, before the group ends."""
    import anyio

    from persevere import _cli_run

    handlers = {signum: signal.getsignal(signum) for signum in _cli_run.STOP_SIGNALS}
    at_group_end: list[object] = []
    real = anyio.create_task_group

    class Spy:
        def __init__(self) -> None:
            self.group = real()

        async def __aenter__(self):
            return await self.group.__aenter__()

        async def __aexit__(self, *exc):
            try:
                return await self.group.__aexit__(*exc)
            finally:
                at_group_end.append(signal.getsignal(signal.SIGINT))

    async def work() -> int:
        return 7

    monkeypatch.setattr(anyio, "create_task_group", Spy)
    try:
        assert _cli_run._run(work) == 7
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert at_group_end and at_group_end[-1] == signal.SIG_IGN, at_group_end
