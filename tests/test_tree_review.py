"""An adversarial review of ``cp DIR`` (issue 27): each test fails on 79da22d."""

from __future__ import annotations

import errno
import json
import os
import re
import stat

from tests.conftest import persevere as cli
from tests.conftest import sha256_of_file, sha256_of_object
from tests.test_tree import clean, keys, write


def test_a_fifo_given_as_state_file_is_refused_not_deleted(s3_env, bucket, tmp_path):
    # cp FILE refuses it (exit 2); cp DIR took its size 0 for "empty journal" and unlinked it
    # (as root, --state-file /dev/null removed /dev/null and left a regular file there).
    root = tmp_path / "d"
    write(root / "a", 10, 1)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/", "--state-file", fifo))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was deleted"
    assert result.returncode == 2, result.stdout


def test_check_remote_sends_again_an_object_overwritten_with_the_same_size(
    s3_env, bucket, s3_client, tmp_path
):
    root = tmp_path / "d"
    a = write(root / "a", 100, 1)
    assert clean(cli(s3_env, "cp", root, f"s3://{bucket}/p/")).returncode == 0
    # another tool (aws cli, boto3: CRC32 by default) overwrites it: same size, other bytes
    s3_client.put_object(Bucket=bucket, Key="p/a", Body=b"x" * 100, ChecksumAlgorithm="CRC32")
    again = clean(cli(s3_env, "cp", root, f"s3://{bucket}/p/", "--check-remote"))
    assert again.returncode == 0
    assert sha256_of_object(s3_client, bucket, "p/a") == sha256_of_file(a)


def test_a_state_file_inside_the_tree_hides_no_file_named_like_it(
    s3_env, bucket, s3_client, tmp_path
):
    root = tmp_path / "d"
    write(root / "data.csv", 10, 1)
    write(root / "database" / "rows", 10, 2)
    write(root / "other", 10, 3)
    result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/", "--state-file", root / "data"))
    assert result.returncode == 0
    assert keys(s3_client, bucket) == {"data.csv", "database/rows", "other"}


def test_refused_credentials_stop_the_tree_in_one_line_exit_1(s3_env, bucket, tmp_path):
    """As ``cp FILE``: credentials S3 refuses need a person (exit 1), said in a line or two."""
    root = tmp_path / "d"
    write(root / "a", 10, 1)
    write(root / "b", 10, 2)
    env = {**s3_env, "AWS_SECRET_ACCESS_KEY": "wrong"}
    result = clean(cli(env, "cp", root, f"s3://{bucket}/"))
    file = clean(cli(env, "cp", root / "a", f"s3://{bucket}/a"))
    assert result.returncode == file.returncode == 1, result.stderr
    assert re.search(r"error: PutObject [ab]: SignatureDoesNotMatch", result.stderr)


def test_a_full_disk_under_the_journal_stops_the_tree_in_one_line(
    s3_env, bucket, tmp_path, monkeypatch
):
    from persevere import _journal

    root = tmp_path / "d"
    for i in range(20):
        write(root / f"f{i:02d}", 10, i)
    real_write = os.write
    calls = {"n": 0}

    def filling(fd, data):  # the header fits; the first records do not
        calls["n"] += 1
        if calls["n"] > 1 and fd not in (1, 2):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(_journal.os, "write", filling)
    result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/", "--state-file", tmp_path / "j"))
    monkeypatch.undo()
    assert result.returncode == 3, result.stderr
    assert "cannot write state file" in result.stderr


def test_cp_dotdot_neither_uploads_its_journal_nor_keeps_it_in_the_tree(
    s3_env, bucket, s3_client, tmp_path
):
    root = tmp_path / "d"
    write(root / "a", 10, 1)
    (root / "inner").mkdir()
    result = clean(cli(s3_env, "cp", "..", f"s3://{bucket}/", cwd=root / "inner"))
    assert result.returncode == 0
    assert keys(s3_client, bucket) == {"a"}, "the tree's own journal was uploaded"


def test_a_directory_that_cannot_be_listed_is_not_exit_0(s3_env, bucket, tmp_path, monkeypatch):
    from persevere import _tree_walk

    root = tmp_path / "d"
    write(root / "ok", 10, 1)
    write(root / "secret" / "s", 10, 2)
    real_scandir = os.scandir

    def refusing(path):
        if str(path).endswith("/secret"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(_tree_walk.os, "scandir", refusing)
    result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/", "--json"))
    monkeypatch.undo()
    # (since audit 21 #7: a permission refused is bad input, exit 2, with the way out)
    assert json.loads(result.stdout)["failed"] == [
        {"path": "secret", "exit_code": 2, "error": "cannot list: Permission denied (fix its "
         "permissions, or leave it out: --exclude secret/)"}
    ]  # fmt: skip
    assert result.returncode != 0, "secret/s is not uploaded, yet exit 0"


def test_a_tree_named_through_a_symlink_does_not_upload_its_own_journal(
    s3_env, bucket, s3_client, tmp_path
):
    # walk() skips the journal by comparing path strings: DIR given through a link (or as
    # "..", or with "x/../x") is not the journal's parent, so the journal is uploaded, and it
    # is "sent again (changed)" on every run, its object never equal to it.
    root = tmp_path / "d"
    write(root / "a", 10, 1)
    (tmp_path / "link").symlink_to(root)
    journal = root / "journal"
    for _ in range(2):
        result = clean(cli(s3_env, "cp", tmp_path / "link", f"s3://{bucket}/", "--state-file",
                           journal))  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert keys(s3_client, bucket) == {"a"}
