"""An audit of 2026-12-04: cases where exit 0 did not mean "the object is the source given this
time", or bad input did not get one clear line. Each test failed before its fix."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from persevere._units import MiB
from tests.conftest import sha256_of_object


@pytest.mark.process
def test_a_file_redirected_in_past_its_start_sends_what_is_left(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """``{ read header; persevere cp - s3://B/K; } < file``: standard input is the file from
    where the shell left it, as ``cat`` would read it. It was uploaded from byte 0: exit 0,
    the object holding bytes that were not piped in."""
    file = make_file(9 * MiB + 5, seed=11)
    data = file.read_bytes()
    with file.open("rb") as stdin:
        stdin.seek(1000)
        result = subprocess.run(
            [sys.executable, "-m", "persevere", "cp", "-", f"s3://{bucket}/k", "--no-progress",
             "--state-dir", str(tmp_path / "state")],
            stdin=stdin, capture_output=True, text=True, env={**os.environ, **s3_env},
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(s3_client, bucket, "k") == hashlib.sha256(data[1000:]).hexdigest()
