"""Fixes of the third session of 2026-12-05 found by the lead and the helpers (not the audits)."""

from __future__ import annotations

import hashlib
import json

import pytest

from persevere._plan import StreamSchedule
from tests.conftest import persevere, sha256_of_object

MiB = 1024 * 1024


@pytest.mark.process
def test_a_streams_parts_follow_its_schedule_with_many_workers(s3_env, s3_client, bucket, tmp_path):
    """Workers sized a stream's next part before taking the lock that numbers it: at a step of
    the schedule (parts double), one read part k+1 at part k's size, and every later part sat
    elsewhere than the schedule says (seen: 100 MiB with --expected-size 10MiB in 9 parts,
    part 3 of 8 MiB where the schedule says 16). The object was right, but a resume or a
    write-once re-run of the same stream compares parts by the schedule and could not match."""
    data = bytes(range(256)) * (60 * MiB // 256)
    state = tmp_path / "s"
    for _ in range(3):  # (a race: a few runs)
        state.unlink(missing_ok=True)
        done = persevere(s3_env, "cp", "-", f"s3://{bucket}/k", "--expected-size", "10MiB",
                         "--concurrency", "8", "--state-file", state, "--no-progress",
                         input=data)  # fmt: skip
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in state.read_text().splitlines()]
        header = lines[0]
        schedule = StreamSchedule(header["part_size"], header["stream_every"])
        sizes = {r["part_number"]: r["size"] for r in lines if r["type"] == "part"}
        last = max(sizes)
        assert all(sizes[n] == schedule.size_of(n) for n in sizes if n != last), sizes
        assert sha256_of_object(s3_client, bucket, "k") == hashlib.sha256(data).hexdigest()
