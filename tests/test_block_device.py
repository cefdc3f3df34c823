"""Block devices (disk images attached as loop devices, LVM snapshots, zvols) as sources.

A block device is read like a file, but its node's times do not move when its bytes change
behind it (a write to the image it is attached to, a filesystem on it): nothing but its bytes
can vouch for it, so every resume re-reads what was sent. Its journal never goes in /dev.
These need root and ``losetup`` (loop devices): skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.test_reliability import assert_same, clean, cli, interrupt_after_parts

MiB = 1024 * 1024


@pytest.fixture
def loop_device(tmp_path):
    """A 24 MiB image of random bytes attached as a loop device: (device, image)."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("loop devices need root and losetup")
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom(24 * MiB))
    attach = subprocess.run(["losetup", "--find", "--show", str(image)],
                            capture_output=True, text=True)  # fmt: skip
    if attach.returncode != 0:
        pytest.skip(f"no loop device here: {attach.stderr.strip()}")
    device = Path(attach.stdout.strip())
    try:
        yield device, image
    finally:
        subprocess.run(["losetup", "--detach", str(device)], check=False)


def rewrite_behind_the_device(device: Path, image: Path, offset: int, data: bytes) -> None:
    """Change the device's bytes through its image: the device node's times stay as they were."""
    before = device.stat()
    with image.open("r+b") as f:
        f.seek(offset)
        f.write(data)
        os.fsync(f.fileno())
    subprocess.run(["blockdev", "--flushbufs", str(device)], check=True)
    after = device.stat()
    assert (after.st_mtime_ns, after.st_ctime_ns) == (before.st_mtime_ns, before.st_ctime_ns)
    with device.open("rb") as f:
        f.seek(offset)
        assert f.read(len(data)) == data


def test_a_block_device_uploads_and_its_journal_stays_out_of_dev(
    s3_env, bucket, s3_client, loop_device, tmp_path
):
    device, image = loop_device
    env = {**s3_env, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    url = f"s3://{bucket}/disk"
    result = clean(cli(env, "cp", device, url, "--no-progress", "--part-size", "5MiB"))
    assert result.returncode == 0, result.stderr
    assert_same(s3_client, bucket, "disk", image)
    assert not list(device.parent.glob(f"{device.name}*.persevere"))
    assert len(list((tmp_path / "xdg" / "persevere").glob(f"{device.name}.*.persevere"))) == 1
    check = cli(env, "verify", device, url, "--no-progress")
    assert check.returncode == 0, check.stdout + check.stderr
    # Run again: its bytes are re-read (nothing else can vouch for them), then nothing is sent.
    again = clean(cli(env, "cp", device, url, "--no-progress", "--json"))
    assert again.returncode == 0, again.stderr
    assert "a block device" in again.stderr and '"bytes_sent": 0' in again.stdout


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_bytes_changed_behind_the_device_are_sent_again_on_resume(
    s3_env, bucket, s3_client, loop_device, tmp_path
):
    device, image = loop_device
    env = {**s3_env, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    url = f"s3://{bucket}/disk"
    state = tmp_path / "disk.persevere"
    args = ["cp", device, url, "--state-file", state, "--part-size", "5MiB", "-c", "1",
            "--no-progress"]  # fmt: skip
    stopped = interrupt_after_parts(env, args, state, 3, sig=signal.SIGKILL)
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr
    done = state.read_bytes().count(b'"type":"part"')
    rewrite_behind_the_device(device, image, 123_456, os.urandom(4096))  # inside part 1
    result = clean(cli(env, *args))
    assert result.returncode == 0, result.stderr
    # All of them, not a spot check of two: the device's identity cannot vouch for any.
    assert f"a block device (no time of it dates its bytes); re-reading the {done} part(s)" in (
        result.stderr
    )
    assert "changed in the file since they were uploaded (first: part 1)" in result.stderr
    assert_same(s3_client, bucket, "disk", image)


def test_a_fifo_is_refused_with_the_way_to_stream_it(s3_env, bucket, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = clean(cli(s3_env, "cp", fifo, f"s3://{bucket}/f", "--no-progress"))
    assert result.returncode == 2
    assert f"persevere cp - s3://BUCKET/KEY < {fifo}" in result.stderr
