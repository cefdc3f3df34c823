"""A file replaced by a rename while it is uploaded (an editor's save, a log rotation): the path
the user gave names another file by the time the upload would complete, so completing it
would make an object of the file no longer named. Not a success: the run stops before
Complete, and the next run uploads the file the path names now."""

from __future__ import annotations

import os

import pytest

import persevere
from persevere._source import SourceFile
from tests.conftest import persevere as cli
from tests.conftest import sha256_of_file, sha256_of_object

MiB = 1024 * 1024
REAL_PREPARE = SourceFile.prepare


def _at_first_part(monkeypatch, act):
    """``act()`` as the first part is read (the file open, being uploaded)."""
    done = []

    async def meanwhile(self, spec, buffer):
        if not done:
            done.append(spec.number)
            act()
        return await REAL_PREPARE(self, spec, buffer)

    monkeypatch.setattr(SourceFile, "prepare", meanwhile)


def _replace_at_first_part(monkeypatch, file, replacement):
    """``replacement`` renamed over ``file`` (None: ``file`` deleted) as it is uploaded."""
    _at_first_part(monkeypatch, lambda: os.replace(replacement, file) if replacement else
                   os.unlink(file))  # fmt: skip


async def _not_completed(s3_client, bucket, file, state, why):
    """The upload of ``file`` stops with SourceChanged saying ``why``; no object is made."""
    with pytest.raises(persevere.SourceChanged, match=why):
        await persevere.upload_file(file, bucket, "k", state, part_size=5 * MiB)
    with pytest.raises(Exception, match=r"Not Found|NoSuchKey|404"):
        s3_client.head_object(Bucket=bucket, Key="k")  # nothing was completed


@pytest.mark.anyio
async def test_a_directory_rotated_during_the_upload_is_not_a_success(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """``latest/db.dump`` while ``latest/`` is renamed and made again with a new dump: the
    file uploaded is untouched (its times, its size), but the path names the new one."""
    latest = tmp_path / "latest"
    latest.mkdir()
    file = latest / "db.dump"
    os.replace(make_file(12 * MiB, seed=46), file)
    newer = make_file(12 * MiB, seed=47, name="newer")

    def rotate():
        latest.rename(tmp_path / "yesterday")
        latest.mkdir()
        os.replace(newer, file)

    _at_first_part(monkeypatch, rotate)
    state = tmp_path / "s"
    await _not_completed(s3_client, bucket, file, state, "its path names another file now")
    monkeypatch.setattr(SourceFile, "prepare", REAL_PREPARE)
    await persevere.resume(state)  # every recorded part re-read from the file named now
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.anyio
async def test_a_file_renamed_over_during_the_upload_is_not_completed(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    file = make_file(12 * MiB, seed=41)
    saved = make_file(12 * MiB, seed=42, name="saved")  # the same size, other bytes
    _replace_at_first_part(monkeypatch, file, saved)
    state = tmp_path / "s"
    await _not_completed(s3_client, bucket, file, state, "its path names another file now")
    monkeypatch.setattr(SourceFile, "prepare", REAL_PREPARE)
    result = await persevere.resume(state)  # every recorded part re-read from the new file
    assert result.size == 12 * MiB
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.anyio
async def test_a_file_deleted_during_the_upload_is_not_completed(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    file = make_file(12 * MiB, seed=43)
    _replace_at_first_part(monkeypatch, file, None)
    await _not_completed(s3_client, bucket, file, tmp_path / "s", "nothing is at its path now")


def test_cp_of_a_file_replaced_meanwhile_fails_in_one_line_and_the_rerun_sends_the_new_one(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    file = make_file(12 * MiB, seed=44)
    saved = make_file(12 * MiB, seed=45, name="saved")
    _replace_at_first_part(monkeypatch, file, saved)
    args = ["cp", file, f"s3://{bucket}/k", "--part-size", "5MiB", "--state-dir", tmp_path,
            "--no-progress"]  # fmt: skip
    first = cli(s3_env, *args)
    assert first.returncode == 1, first.stderr
    assert "its path names another file now" in first.stderr
    assert "Traceback" not in first.stderr
    monkeypatch.setattr(SourceFile, "prepare", REAL_PREPARE)
    again = cli(s3_env, *args)
    assert again.returncode == 0, again.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
