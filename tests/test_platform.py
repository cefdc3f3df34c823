"""Platforms (persevere/_platform.py): what happens without fcntl, and macOS's F_FULLFSYNC.

Windows is simulated in a subprocess: ``sys.modules["fcntl"] = None`` makes ``import fcntl``
raise ImportError, as it does there, and SIGHUP, ``os.pread`` and ``os.preadv`` (which Windows
lacks too) are removed before persevere is imported. macOS is simulated with an ``fcntl``
stand-in that has ``F_FULLFSYNC``. Neither replaces a run on the real OS (README "Platforms").
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import persevere
import persevere._platform as platform_module
from persevere._journal import Header, Journal, PartRecord

WINDOWS_LIKE = textwrap.dedent(
    """
    import os, signal, sys
    sys.modules["fcntl"] = None  # import fcntl -> ImportError, as on Windows
    del signal.SIGHUP, os.pread, os.preadv
    """
)
REFUSAL = (
    "persevere: error: persevere needs a POSIX system (Linux or macOS) for its state file's "
    "lock and fsync; this one has no fcntl (Windows: run persevere under WSL)"
)


def windows_like(code: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", WINDOWS_LIKE + textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


@pytest.mark.process
def test_without_fcntl_import_works(tmp_path):
    result = windows_like(
        """
        import persevere, persevere._cli
        assert persevere._platform.HAS_FCNTL is False
        print(persevere.__version__)
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == persevere.__version__


@pytest.mark.process
@pytest.mark.parametrize(
    "command",
    [
        ["upload", "start", "{file}", "s3://b/k", "--state-file", "{state}"],
        ["upload", "start", "{file}", "s3://b/k"],  # the default state file: not even named
        ["upload", "resume", "--state-file", "{state}"],
        ["verify", "{file}", "s3://b/k"],
    ],
)
def test_without_fcntl_commands_refuse_with_one_line(tmp_path, command):
    file = tmp_path / "f.bin"
    file.write_bytes(b"x" * 1000)
    state = tmp_path / "f.bin.persevere"
    args = [a.format(file=file, state=state) for a in command]
    result = windows_like(
        "from persevere._cli import main; sys.argv[0] = 'persevere'; main()", *args, cwd=tmp_path
    )
    assert result.returncode == persevere.EXIT_USAGE, result.stderr
    assert result.stderr.splitlines() == [REFUSAL]
    assert not state.exists()


@pytest.mark.process
def test_without_fcntl_help_and_version_still_work(tmp_path):
    for flag, expected in (("--version", persevere.__version__), ("--help", "upload")):
        result = windows_like(
            "from persevere._cli import main; sys.argv[0] = 'persevere'; main()", flag, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout


@pytest.mark.process
def test_without_fcntl_the_api_raises_usage_error(tmp_path):
    file = tmp_path / "f.bin"
    file.write_bytes(b"x" * 1000)
    result = windows_like(
        """
        import anyio, persevere
        file, state = sys.argv[1], sys.argv[2]
        for call in (
            lambda: persevere.upload_file_sync(file, "b", "k", state),
            lambda: anyio.run(persevere.upload_file, file, "b", "k", state),  # no sync door
        ):
            try:
                call()
            except persevere.UsageError as exc:
                print(exc.exit_code, exc)
            else:
                raise SystemExit("not refused")
        """,
        file,
        tmp_path / "s",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    expected = f"2 {REFUSAL.removeprefix('persevere: error: ')}"
    assert result.stdout.splitlines() == [expected, expected]
    assert not (tmp_path / "s").exists()


# -- macOS: F_FULLFSYNC ----------------------------------------------------------------------
F_FULLFSYNC = 51  # macOS's value; any number works for the stand-in


def mac_like(monkeypatch, fails_with: int | None = None) -> list[str]:
    """An fcntl with F_FULLFSYNC (real flock); returns the log of flushes, of either kind."""
    flushes: list[str] = []

    def fake_fcntl(fd: int, cmd: int, arg: int = 0) -> int:
        assert cmd == F_FULLFSYNC
        if fails_with is not None:
            flushes.append("F_FULLFSYNC failed")
            raise OSError(fails_with, os.strerror(fails_with))
        flushes.append("F_FULLFSYNC dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "F_FULLFSYNC")
        return 0

    def fake_fsync(fd: int) -> None:
        flushes.append("fsync")

    stand_in = types.SimpleNamespace(
        F_FULLFSYNC=F_FULLFSYNC,
        fcntl=fake_fcntl,
        flock=fcntl.flock,
        LOCK_EX=fcntl.LOCK_EX,
        LOCK_NB=fcntl.LOCK_NB,
    )
    monkeypatch.setattr(platform_module, "fcntl", stand_in)
    monkeypatch.setattr(platform_module.os, "fsync", fake_fsync)
    return flushes


def header() -> Header:
    return Header(
        bucket="b", key="k", upload_id="u", endpoint_url=None, region=None, profile=None,
        file_path="/f", file_size=10, mtime_ns=1, part_size=5, checksum_algorithm="CRC64NVME",
        checksum_type="FULL_OBJECT", created_at="now", tool_version="t",
    )  # fmt: skip


def test_journal_flushes_with_f_fullfsync_where_available(tmp_path, monkeypatch):
    flushes = mac_like(monkeypatch)
    journal = Journal.create(tmp_path / "s")
    journal.write_header(header())
    journal.append_part(PartRecord(1, '"e"', "c", 5))
    journal.close()
    assert flushes == ["F_FULLFSYNC dir", "F_FULLFSYNC", "F_FULLFSYNC"]

    with (tmp_path / "s").open("ab") as torn:
        torn.write(b'{"type":"part","part_n')  # a crash mid-write: open cuts it and flushes
    flushes.clear()
    journal, state = Journal.open(tmp_path / "s")
    journal.close()
    assert flushes == ["F_FULLFSYNC"] and list(state.parts) == [1]


def test_f_fullfsync_unsupported_by_the_filesystem_falls_back_to_fsync(tmp_path, monkeypatch):
    flushes = mac_like(monkeypatch, fails_with=errno.ENOTSUP)
    journal = Journal.create(tmp_path / "s")
    journal.write_header(header())
    journal.close()
    assert flushes == ["F_FULLFSYNC failed", "fsync"] * 2


def test_f_fullfsync_io_error_is_not_hidden_by_a_fallback(tmp_path, monkeypatch):
    journal = Journal.create(tmp_path / "s")
    flushes = mac_like(monkeypatch, fails_with=errno.EIO)
    with pytest.raises(persevere.StateFileUnwritable, match="Input/output error"):
        journal.write_header(header())
    journal.close()
    assert flushes == ["F_FULLFSYNC failed"]
    assert (tmp_path / "s").read_bytes() == b""  # the unflushed line was cut


def test_linux_uses_fsync():
    assert platform_module.HAS_FCNTL
    if sys.platform == "linux":
        assert not hasattr(fcntl, "F_FULLFSYNC")
