"""Streams in: ``producer | persevere cp - s3://B/K``, bounded memory, resumable by piping the
same stream in again."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from persevere._plan import MAX_OBJECT_SIZE, MAX_PARTS, StreamSchedule
from persevere._units import GiB, MiB, TiB
from tests.conftest import sha256_of_object

# A deterministic producer: ``python -c PRODUCER SIZE SEED [FLIP_AT]`` writes SIZE pseudo-random
# bytes (one byte flipped at FLIP_AT, if given), in small writes, as a dump tool would.
PRODUCER = textwrap.dedent(
    """
    import random, sys
    size, seed = int(sys.argv[1]), int(sys.argv[2])
    flip = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    rng, out, done = random.Random(seed), sys.stdout.buffer, 0
    while done < size:
        block = bytearray(rng.randbytes(min(65536, size - done)))
        if done <= flip < done + len(block):
            block[flip - done] ^= 0xFF
        out.write(block)
        done += len(block)
    """
)


def produced(size: int, seed: int) -> str:
    rng = __import__("random").Random(seed)
    digest, done = hashlib.sha256(), 0
    while done < size:
        block = rng.randbytes(min(65536, size - done))
        digest.update(block)
        done += len(block)
    return digest.hexdigest()


def pipe_into(env, size, seed, *args, flip=None, kill_after_parts=None, state=None):
    """``producer | persevere ARGS``; the finished persevere, with its peak RSS (KiB)."""
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(size), str(seed), *([str(flip)] if flip else [])],
        stdout=subprocess.PIPE,
    )
    # persevere's own peak RSS, measured by a small parent that waits for it alone.
    measure = (
        "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(p.returncode)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", measure, sys.executable, "-m", "persevere", *map(str, args)],
        stdin=producer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    assert producer.stdout is not None
    producer.stdout.close()
    if kill_after_parts is not None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and state.read_bytes().count(b'"type":"part"') >= kill_after_parts:
                break
            time.sleep(0.005)
        subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)])  # persevere, under the meter
    stdout, stderr = proc.communicate(timeout=600)
    producer.kill()
    producer.wait()
    lines = stderr.strip().splitlines()
    rss_kib = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), rss_kib


def cp_args(bucket, state, *extra):
    return ["cp", "-", f"s3://{bucket}/k", "--state-file", state, "--no-progress", "-c", "4",
            *extra]  # fmt: skip


def records(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_bytes().splitlines()]


# -- the schedule, without data -----------------------------------------------------------------
def test_a_48_8_tib_stream_with_its_size_is_10000_parts_of_5_gib():
    schedule = StreamSchedule.for_expected(MAX_OBJECT_SIZE)
    assert schedule.capacity == MAX_OBJECT_SIZE
    assert {schedule.size_of(n) for n in (1, 5000, MAX_PARTS)} == {5 * GiB}


def test_the_default_schedule():
    schedule = StreamSchedule()
    sizes = [schedule.size_of(n) for n in range(1, MAX_PARTS + 1)]
    assert sizes[0] == 8 * MiB and sizes[-1] == 4 * GiB
    assert sizes == sorted(sizes) and all(5 * MiB <= s <= 5 * GiB for s in sizes)
    assert sum(sizes) == schedule.capacity and 7.8 * TiB < schedule.capacity < 7.9 * TiB
    assert max(sizes[:5000]) == 128 * MiB  # <= 128 MiB parts for the first 242 GiB
    assert sum(sizes[:5000]) < 243 * GiB
    offsets = [schedule.offset(n) for n in (1, 2, 1001, 1002)]
    assert offsets == [0, 8 * MiB, 1000 * 8 * MiB, 1000 * 8 * MiB + 16 * MiB]


@pytest.mark.parametrize("expected", [1, 100 * MiB, 1 * TiB, 40 * TiB])
def test_a_stream_longer_than_expected_still_fits(expected):
    schedule = StreamSchedule.for_expected(expected)
    assert schedule.capacity >= 1.2 * expected  # room for a longer stream than announced


# -- against the local S3 -----------------------------------------------------------------------
@pytest.mark.process
def test_a_stream_uploads_byte_identical_in_bounded_memory(s3_env, bucket, s3_client, tmp_path):
    size = 200 * MiB + 12345
    result, rss_kib = pipe_into(s3_env, size, 1, *cp_args(bucket, tmp_path / "s", "--json"))
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 1)
    assert 0 < rss_kib < 256 * 1024, rss_kib  # the README's bound at the defaults
    assert json.loads(result.stdout)["size"] == size


@pytest.mark.process
def test_kill_then_the_same_stream_resumes(s3_env, bucket, s3_client, tmp_path):
    size, state = 90 * MiB + 7, tmp_path / "s"
    args = cp_args(bucket, state, "--max-bandwidth", "30MiB/s", "--json")
    killed, _ = pipe_into(s3_env, size, 2, *args, kill_after_parts=4, state=state)
    assert killed.returncode != 0
    parts_before = {r["part_number"] for r in records(state) if r["type"] == "part"}
    assert len(parts_before) >= 4
    status = subprocess.run(
        [sys.executable, "-m", "persevere", "upload", "status", "--state-file", str(state)],
        env={**os.environ, **s3_env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "file:        standard input (a stream)" in status.stdout, status.stdout
    assert f"parts:       {len(parts_before)} done (" in status.stdout
    resumed, _ = pipe_into(s3_env, size, 2, *cp_args(bucket, state, "--json"))
    assert resumed.returncode == 0, resumed.stderr
    sent = json.loads(resumed.stdout)["bytes_sent"]
    assert sent <= size - len(parts_before) * 8 * MiB  # the recorded parts were not sent again
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 2)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.process
def test_a_different_stream_is_refused_at_its_first_differing_part(s3_env, bucket, s3_client,
                                                                   tmp_path):  # fmt: skip
    size, state = 60 * MiB, tmp_path / "s"
    args = cp_args(bucket, state, "--max-bandwidth", "30MiB/s")
    pipe_into(s3_env, size, 3, *args, kill_after_parts=4, state=state)
    before = state.read_bytes()
    other, _ = pipe_into(s3_env, size, 3, *cp_args(bucket, state), flip=8 * MiB + 5)  # part 2
    assert other.returncode == 1, other.stderr
    assert "the stream differs from the one being uploaded: part 2" in other.stderr
    assert "persevere upload resume" in other.stderr and "Traceback" not in other.stderr
    assert state.read_bytes() == before  # nothing recorded, nothing lost
    same, _ = pipe_into(s3_env, size, 3, *cp_args(bucket, state))
    assert same.returncode == 0, same.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 3)


@pytest.mark.process
def test_an_early_end_with_an_expected_size_is_an_error(s3_env, bucket, s3_client, tmp_path):
    state = tmp_path / "s"
    short, _ = pipe_into(s3_env, 20 * MiB, 4, *cp_args(bucket, state, "--expected-size", "30MiB"))
    assert short.returncode == 1
    assert "the stream ended after 20,971,520 bytes, before the expected 31,457,280" in (
        short.stderr
    )
    assert records(state)[-1]["type"] == "part"  # not completed
    assert "k" not in [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get(
        "Contents", [])]  # fmt: skip


@pytest.mark.process
def test_an_empty_stream_is_an_empty_object(s3_env, bucket, s3_client, tmp_path):
    result, _ = pipe_into(s3_env, 0, 5, *cp_args(bucket, tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert s3_client.head_object(Bucket=bucket, Key="k")["ContentLength"] == 0


@pytest.mark.process
def test_a_terminal_is_not_a_stream(s3_env, bucket, tmp_path):
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "persevere", *map(str, cp_args(bucket, tmp_path / "s"))],
            stdin=terminal, capture_output=True, text=True, env={**os.environ, **s3_env},
            timeout=60,
        )  # fmt: skip
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 2
    assert "nothing is being piped in" in result.stderr


@pytest.mark.process
def test_a_redirected_file_is_read_as_that_file(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(12 * MiB, seed=6)
    with file.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "persevere", "cp", "-", f"s3://{bucket}/k", "--no-progress"],
            stdin=stdin, capture_output=True, text=True, env={**os.environ, **s3_env},
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"state file: {file}.persevere" in result.stderr  # beside it: a file, resumable
    assert records(Path(f"{file}.persevere"))[0]["file_path"] == str(file)


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_1_gib_stream(s3_env, bucket, s3_client, tmp_path):
    size = 1 * GiB
    result, rss_kib = pipe_into(s3_env, size, 7, *cp_args(bucket, tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 7)
    assert 0 < rss_kib < 256 * 1024, rss_kib
    print(f"1 GiB stream: peak RSS {rss_kib / 1024:.0f} MiB")


@pytest.mark.process
def test_a_resumed_stream_given_another_expected_size_is_refused(s3_env, bucket, tmp_path):
    """Found by an audit: the new size was dropped, so a short stream completed, exit 0."""
    size, state = 40 * MiB, tmp_path / "s"
    args = cp_args(bucket, state, "--max-bandwidth", "20MiB/s")
    pipe_into(s3_env, size, 5, *args, kill_after_parts=1, state=state)
    before = state.read_bytes()
    refused, _ = pipe_into(s3_env, size, 5, *cp_args(bucket, state, "--expected-size", "60MiB"))
    assert refused.returncode == 2, refused.stderr
    assert "expected size none, not 62,914,560 bytes" in refused.stderr
    assert state.read_bytes() == before
