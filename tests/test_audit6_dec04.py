"""An adversarial audit of ``verify`` and ``cp DIR`` (2026-12-04, sixth): results that are
false, or reasons that say what is not so."""

from __future__ import annotations

import os

import pytest

from tests.conftest import persevere

MiB = 1024 * 1024


@pytest.mark.process
def test_a_stream_uploads_state_file_names_the_differing_part(s3_env, bucket, tmp_path):
    """`verify --state-file` of a stream's upload (`cp -`): its header records file_size 0,
    so verify said "the state file's upload was of 0 bytes ...: the object was not written
    by that upload (replaced since?)" of the very object that upload wrote, and named no
    part."""
    data = os.urandom(9 * MiB)
    state = tmp_path / "s.persevere"
    args = ("cp", "-", f"s3://{bucket}/s", "--state-file", state)  # parts of 8 MiB and 1 MiB
    sent = persevere(s3_env, *args, "--no-progress", input=data)
    assert sent.returncode == 0, sent.stderr
    same = tmp_path / "same.bin"
    same.write_bytes(data)
    checked = persevere(s3_env, "verify", same, f"s3://{bucket}/s", "--state-file", state)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    changed = tmp_path / "changed.bin"
    changed.write_bytes(data[: 8 * MiB] + bytes([data[8 * MiB] ^ 1]) + data[8 * MiB + 1 :])
    checked = persevere(s3_env, "verify", changed, f"s3://{bucket}/s", "--state-file", state)
    assert checked.returncode == 4, checked.stdout + checked.stderr
    assert "not written by that upload" not in checked.stdout, checked.stdout
    assert "first differing part: 2" in checked.stdout, checked.stdout
