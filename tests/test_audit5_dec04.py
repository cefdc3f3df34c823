"""An operator's audit (2026-12-04, fifth): persevere run unwatched under supervisors, in pipes
and with logs collected, in the locale a server has."""

from __future__ import annotations

import os

import pytest

from tests.conftest import persevere

MiB = 1024 * 1024


def _tree_with_a_name_not_utf8(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok.bin").write_bytes(b"x" * 100)
    (tree / os.fsdecode(b"bad\xff.bin")).write_bytes(b"y" * 100)
    return tree


@pytest.mark.process
def test_a_name_not_utf8_in_a_tree_is_listed_under_a_utf8_locale(s3_env, bucket, tmp_path):
    """LANG=en_US.UTF-8 (standard output's errors "strict", unlike C.UTF-8's): `cp DIR` with a
    file whose name is not UTF-8 died listing it (UnicodeEncodeError, a traceback, exit 1)
    instead of naming it as failed (exit 2); `verify DIR` too (exit 1, not 5)."""
    tree = _tree_with_a_name_not_utf8(tmp_path)
    utf8 = {**s3_env, "PYTHONIOENCODING": "utf-8"}  # what en_US.UTF-8 gives stdout
    sent = persevere(utf8, "cp", tree, f"s3://{bucket}/t/", process=True)
    assert sent.returncode == 2, sent.stderr
    assert "failed: bad\\udcff.bin: its name is not UTF-8" in sent.stdout, sent.stdout
    checked = persevere(utf8, "verify", tree, f"s3://{bucket}/t/", process=True)
    assert checked.returncode == 5, checked.stderr
    assert "Traceback" not in sent.stderr + checked.stderr
