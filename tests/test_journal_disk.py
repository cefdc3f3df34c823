"""The journal's disk fails mid-upload (read-only, full): the upload stops resumable, and no
part is recorded that S3 does not have. Uses a small tmpfs (needs root, as CI runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import persevere, sha256_of_file, sha256_of_object

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()

    def mount(size: str) -> Path:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        return mount_point

    yield mount
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def start(env, bucket, file, state, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "persevere", "upload", "start", str(file), f"s3://{bucket}/k",
         "--state-file", str(state), "--part-size", "5MiB", "--no-progress", *extra],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def journal_parts(state: Path) -> dict[int, str]:
    lines = state.read_bytes().split(b"\n")
    records = [json.loads(line) for line in lines[1:] if line.endswith(b"}")]
    return {r["part_number"]: r["etag"] for r in records if r["type"] == "part"}


def assert_recorded_parts_are_on_s3(s3_client, bucket, state):
    header = json.loads(state.read_bytes().splitlines()[0])
    listed = s3_client.list_parts(Bucket=bucket, Key="k", UploadId=header["upload_id"])
    on_s3 = {p["PartNumber"]: p["ETag"] for p in listed.get("Parts", [])}
    for number, etag in journal_parts(state).items():
        assert on_s3.get(number) == etag, f"part {number} recorded but not on S3"


@pytest.mark.process
def test_read_only_directory_is_refused_before_any_request(
    small_disk, s3_env, bucket, s3_client, make_file
):
    # A file open for writing keeps a filesystem from being remounted read-only, so this is
    # the state file's directory going read-only before start (mid-upload, see disk full).
    disk = small_disk("1m")
    remount(disk, "ro")
    result = subprocess.run(
        [sys.executable, "-m", "persevere", "upload", "start", str(make_file(100)),
         f"s3://{bucket}/k", "--state-file", str(disk / "up.state")],
        env={**os.environ, **s3_env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "cannot create state file" in result.stderr
    assert "Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_full_disk_stops_resumable(small_disk, s3_env, bucket, s3_client, make_file, tmp_path):
    # Two 4 KiB pages: one for a filler, one for the journal. The file's long path makes a
    # long header (~3 KB): ~9 part lines fill that page, well before the file's 16 parts.
    disk = small_disk("8k")
    (disk / "filler").write_bytes(b"f" * 4096)
    deep = Path(*["d" * 250] * 9)
    (tmp_path / deep).mkdir(parents=True)
    file = make_file(16 * 5 * MiB, seed=82, name=str(deep / "data.bin"))
    state = disk / "up.state"
    proc = start(s3_env, bucket, file, state, "-c", "4")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 3, stderr
    assert "No space left on device" in stderr or "short write" in stderr
    assert "Traceback" not in stderr
    assert_recorded_parts_are_on_s3(s3_client, bucket, state)
    assert 0 < len(journal_parts(state)) < 16

    (disk / "filler").unlink()
    resumed = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
