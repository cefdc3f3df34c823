"""An independent audit of ``cp DIR``, ``verify`` (a tree, a file), shards and the Python API
(2026-12-04): each test fails on 6a7601a."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import persevere as cli
from tests.test_tree import clean, keys, write

EXIT_UNKNOWN = 5


def test_verify_a_tree_with_a_directory_it_cannot_list_is_not_exit_0(
    s3_env, bucket, tmp_path, monkeypatch
):
    # The walk noted "secret" as unreadable, then the files' verdicts replaced that list:
    # "1 file(s): 1 same", exit 0, while secret/s was never looked at.
    from persevere import _tree_walk

    root = tmp_path / "d"
    write(root / "ok", 10, 1)
    write(root / "secret" / "s", 10, 2)
    assert clean(cli(s3_env, "cp", root, f"s3://{bucket}/", "--no-progress")).returncode == 0
    real_scandir = os.scandir

    def refusing(path):
        if str(path).endswith("/secret"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(_tree_walk.os, "scandir", refusing)
    result = clean(cli(s3_env, "verify", root, f"s3://{bucket}/", "--no-progress", "--json"))
    monkeypatch.undo()
    assert result.returncode == EXIT_UNKNOWN, result.stdout
    report = json.loads(result.stdout)
    assert [(f["path"], f["outcome"]) for f in report["files"]] == [
        ("ok", "match"),
        ("secret", "unknown"),
    ]


def test_verify_a_tree_with_a_symlink_loop_followed_is_not_exit_0(s3_env, bucket, tmp_path):
    # cp DIR --follow-symlinks fails on the loop (exit 1); verify dropped it: exit 0.
    root = tmp_path / "d"
    write(root / "ok", 10, 1)
    (root / "loop").symlink_to("loop")
    url = f"s3://{bucket}/"
    assert clean(cli(s3_env, "cp", root, url, "--follow-symlinks")).returncode == 1
    result = clean(cli(s3_env, "verify", root, url, "--follow-symlinks", "--no-progress"))
    assert result.returncode == EXIT_UNKNOWN, result.stdout
    assert "cannot tell: loop: " in result.stdout
    assert "2 file(s): 1 same, 0 differ, 0 missing, 1 cannot tell" in result.stdout


def test_api_part_size_that_is_no_whole_number_is_refused_before_anything(
    s3_env, bucket, s3_client, tmp_path
):
    # 8.5 MiB as a float: the upload was created and its journal written with part_size
    # 8912896.0, then a TypeError in an ExceptionGroup; the journal was unreadable ("not an
    # integer"), so neither resume nor abort could reach the orphaned upload.
    import persevere

    source = write(tmp_path / "f", 1000, 1)
    for wrong in (8.5 * 1024 * 1024, 8 * 1024 * 1024.0, "8MiB"):
        state = tmp_path / "s.persevere"
        with pytest.raises(persevere.UsageError, match="part size must be a whole number"):
            persevere.upload_file_sync(source, bucket, "k", state, part_size=wrong)
        assert not state.exists()
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_follow_symlinks_never_leaves_out_the_directory_a_link_points_to(
    s3_env, bucket, s3_client, tmp_path
):
    # "alias" sorts before "sub": the walk went through the link first, then skipped the
    # real directory as seen; sub/f was never uploaded, yet exit 0 (and verify exit 0).
    root = tmp_path / "t"
    write(root / "sub" / "f", 10, 1)
    (root / "alias").symlink_to("sub")
    (root / "sub" / "up").symlink_to("..")  # a loop: not walked again (nor alias/up)
    url = f"s3://{bucket}/p/"
    result = clean(cli(s3_env, "cp", root, url, "--follow-symlinks", "--no-progress"))
    assert result.returncode == 0, result.stderr
    assert keys(s3_client, bucket) == {"p/alias/f", "p/sub/f"}
    check = clean(cli(s3_env, "verify", root, url, "--follow-symlinks", "--no-progress"))
    assert check.returncode == 0, check.stdout
    assert "2 file(s): 2 same" in check.stdout


def test_api_bucket_and_key_of_the_wrong_type_are_usage_errors(s3_env, bucket, tmp_path):
    # verify_sync(key=None) was KeyError('Key') from botocore; bucket=1 a TypeError from its
    # bucket-name regex; upload_file(key=b"k") an AttributeError ('bytes' has no 'encode').
    import persevere

    source = write(tmp_path / "f", 10, 1)
    for wrong in ({"key": None}, {"bucket": 1}, {"key": b"k"}, {"key": ""}):
        where = {"bucket": bucket, "key": "k", **wrong}
        with pytest.raises(persevere.UsageError, match="bucket and key must"):
            persevere.verify_sync(source, where["bucket"], where["key"])
    with pytest.raises(persevere.UsageError, match="bucket and key must be strings"):
        persevere.upload_file_sync(source, bucket, b"k", tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_a_file_or_directory_swapped_for_a_link_after_the_walk_uploads_nothing_outside(
    s3_env, bucket, s3_client, tmp_path, monkeypatch
):
    # Large files go after every small one (hours, in a big tree): a large file replaced by a
    # link to a file outside the tree was uploaded as that file (copy() opens it by path,
    # following links); a small file's directory replaced by a link was followed too
    # (O_NOFOLLOW guards the last name only). Exit 0 both times; the next run listed the
    # links as "not uploaded", exit 0, with the outside files' bytes at the tree's keys.
    import anyio

    from persevere import _tree

    root = tmp_path / "t"
    big = write(root / "big", 9 * 1024 * 1024, 1)
    write(root / "sub" / "small", 10, 2)
    secret = write(tmp_path / "secret.bin", big.stat().st_size, 3)
    write(tmp_path / "secretdir" / "small", 10, 4)
    real = _tree.check_key

    def swapping(bucket_name, key):
        if key.endswith("/big") and not big.is_symlink():
            big.unlink()
            big.symlink_to(secret)
        if key.endswith("/sub/small") and not (root / "sub").is_symlink():
            (root / "sub").rename(root / "sub.old")
            (root / "sub").symlink_to(tmp_path / "secretdir")
        return real(bucket_name, key)

    monkeypatch.setattr(_tree, "check_key", swapping)
    request = _tree.TreeRequest(root, bucket, "p/", tmp_path / "t.persevere")
    result = anyio.run(_tree.copy_tree, request)
    assert sorted(rel for rel, _, _ in result.failed) == ["big", "sub/small"]
    assert result.exit_code != 0
    assert keys(s3_client, bucket) == set()


def test_verify_an_empty_tree_against_a_missing_bucket_is_an_error(s3_env, bucket, tmp_path):
    # No file to ask about, the bucket's NoSuchBucket was only a note on the "only in S3"
    # listing: "0 file(s)", exit 0 (README: the bucket missing is exit 1).
    root = tmp_path / "d"
    write(root / "x.tmp", 1, 1)
    (tmp_path / "empty").mkdir()
    url = f"s3://{bucket}-gone/p/"
    for tree, args in ((tmp_path / "empty", []), (root, ["--exclude", "*.tmp"])):
        result = clean(cli(s3_env, "verify", tree, url, *args))
        assert result.returncode == 1, result.stdout
        assert f"the bucket {bucket}-gone does not exist" in result.stderr


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_fifo_where_the_tree_journal_is_looked_for_does_not_hang(s3_env, bucket, tmp_path):
    # read_header() opened it to read a line: blocked for ever on a FIFO (no writer).
    import stat

    root = tmp_path / "d"
    write(root / "f", 10, 1)
    os.mkfifo(tmp_path / "d.persevere")
    os.mkfifo(tmp_path / "given")
    url = f"s3://{bucket}/p/"
    sent = clean(cli(s3_env, "cp", root, url, "--no-progress", process=True, timeout=60))
    assert sent.returncode == 0, sent.stderr
    checked = clean(cli(s3_env, "verify", root, url, "--no-progress", process=True, timeout=60))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    given = clean(cli(s3_env, "verify", root, url, "--state-file", tmp_path / "given",
                      process=True, timeout=30))  # fmt: skip
    assert given.returncode == 2
    assert "is not the journal of a directory's upload" in given.stderr
    assert stat.S_ISFIFO(os.lstat(tmp_path / "d.persevere").st_mode)


@pytest.mark.process
def test_a_fifo_as_the_tree_state_file_is_refused_by_dry_run_and_shard(s3_env, bucket, tmp_path):
    # cp DIR refuses it (exit 2); --dry-run (read_done) and --shard (the tree's journal read
    # beside its own) read it whole: blocked for ever, deaf to SIGTERM.
    root = tmp_path / "d"
    write(root / "f", 10, 1)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for extra in (["--dry-run"], ["--shard", "0/2"]):
        result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/p/", "--state-file", fifo,
                           *extra, process=True, timeout=30))  # fmt: skip
        assert result.returncode == 2, extra
        assert "is not a regular file" in result.stderr
