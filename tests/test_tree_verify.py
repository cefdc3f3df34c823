"""``persevere verify DIR s3://BUCKET/PREFIX/``: every file of a tree against its object, no
download; a missing object is a difference (exit 4), not an error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import persevere as cli
from tests.test_tree import clean, mixed_tree, write

EXIT_MISMATCH, EXIT_UNKNOWN = 4, 5
MiB = 1024 * 1024


def flip_in_place(path: Path, offset: int) -> None:
    """One byte changed, same size, mtime put back (only the change time tells)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def uploaded(s3_env, bucket, tmp_path):
    """The mixed tree (0 B, small, exactly 5 MiB, multipart at 5 MiB parts) sent by cp DIR."""
    root = tmp_path / "data"
    files = mixed_tree(root)
    sent = clean(cli(s3_env, "cp", root, f"s3://{bucket}/backup", "--part-size", "5MiB",
                     "--no-progress"))  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    return root, files


def verify(env, root, url, *args):
    return clean(cli(env, "verify", root, url, "--no-progress", *args))


def test_a_tree_sent_by_cp_verifies(s3_env, bucket, uploaded):
    root, _files = uploaded
    os.mkfifo(root / "pipe")
    result = verify(s3_env, root, f"s3://{bucket}/backup")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "not checked: pipe (a FIFO)",
        f"verified {root} against s3://{bucket}/backup/: 5 file(s): 5 same, 0 differ, "
        "0 missing, 0 cannot tell",
    ]


def test_changed_files_are_named_with_the_part(s3_env, bucket, uploaded):
    root, files = uploaded
    flip_in_place(files["a.txt"], 500)
    flip_in_place(files["sub/deeper/big.bin"], 7 * MiB)  # in part 2
    result = verify(s3_env, root, f"s3://{bucket}/backup/")
    assert result.returncode == EXIT_MISMATCH, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("MISMATCH: a.txt: ")
    assert lines[1].startswith("MISMATCH: sub/deeper/big.bin: ")
    assert "first differing part: 2 (bytes 5242880..10485759)" in lines[1]  # its own journal
    assert lines[-1].endswith("5 file(s): 3 same, 2 differ, 0 missing, 0 cannot tell")


def test_a_deleted_object_and_a_file_never_sent_are_missing(s3_env, bucket, s3_client, uploaded):
    root, _files = uploaded
    s3_client.delete_object(Bucket=bucket, Key="backup/sub/five.bin")
    write(root / "new.txt", 10, 9)
    s3_client.put_object(Bucket=bucket, Key="backup/old/gone.txt", Body=b"x")
    result = verify(s3_env, root, f"s3://{bucket}/backup/")
    assert result.returncode == EXIT_MISMATCH, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"missing: new.txt: no object s3://{bucket}/backup/new.txt",
        f"missing: sub/five.bin: no object s3://{bucket}/backup/sub/five.bin",
        f"only in S3: s3://{bucket}/backup/old/gone.txt",
        f"verified {root} against s3://{bucket}/backup/: 6 file(s): 4 same, 0 differ, "
        "2 missing, 0 cannot tell; 1 object(s) only in S3",
    ]


def test_json_document(s3_env, bucket, uploaded):
    root, files = uploaded
    flip_in_place(files["sub/deeper/big.bin"], 0)
    os.symlink(files["a.txt"], root / "link")
    result = verify(s3_env, root, f"s3://{bucket}/backup/", "--json", "--exclude", "empty")
    assert result.returncode == EXIT_MISMATCH, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["exit_code"] == EXIT_MISMATCH
    assert report["destination"] == f"s3://{bucket}/backup/"
    assert report["counts"] == {"match": 3, "mismatch": 1, "missing": 0, "unknown": 0}
    assert report["excluded"] == 1
    assert report["only_in_s3"] == []  # backup/empty is excluded, so not "only in S3"
    assert report["refused"] == [
        {"path": "link", "why": "a symbolic link (not followed: give --follow-symlinks)"}
    ]
    by_path = {f["path"]: f for f in report["files"]}
    assert sorted(by_path) == sorted(set(files) - {"empty"})
    big = by_path["sub/deeper/big.bin"]
    assert big["outcome"] == "mismatch" and big["first_bad_part"] == 1
    assert big["key"] == "backup/sub/deeper/big.bin"
    assert by_path["a.txt"]["outcome"] == "match" and by_path["a.txt"]["method"]


def test_bad_input_is_one_line_exit_2(s3_env, bucket, tmp_path):
    root = tmp_path / "d"
    write(root / "x", 1, 1)
    bad = clean(cli(s3_env, "verify", root, "https://example/x"))
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "persevere: error: not an S3 URL: 'https://example/x' (expected s3://bucket or "
        "s3://bucket/prefix)"
    ]
    no_url = clean(cli(s3_env, "verify", root))
    assert no_url.returncode == 2 and "give DIR s3://BUCKET/PREFIX/" in no_url.stderr
    state = tmp_path / "nothing.persevere"
    no_state = clean(cli(s3_env, "verify", root, f"s3://{bucket}/p/", "--state-file", state))
    assert no_state.returncode == 2
    assert f"state file {state} does not exist" in no_state.stderr
    file_flag = clean(cli(s3_env, "verify", root / "x", f"s3://{bucket}/x", "--include", "*"))
    assert file_flag.returncode == 2 and "--include is for a directory" in file_flag.stderr


def test_a_missing_bucket_is_an_error(s3_env, bucket, tmp_path):
    root = tmp_path / "d"
    write(root / "x", 1, 1)
    write(root / "y", 1, 2)
    result = clean(cli(s3_env, "verify", root, f"s3://{bucket}-gone/p/"))
    assert result.returncode == 1
    assert f"the bucket {bucket}-gone does not exist" in result.stderr


def test_an_unreadable_file_cannot_tell(s3_env, bucket, s3_client, tmp_path, monkeypatch):
    root = tmp_path / "d"
    write(root / "good", 100, 1)
    write(root / "bad", 100, 2)
    assert clean(cli(s3_env, "cp", root, f"s3://{bucket}/", "--no-progress")).returncode == 0
    real_stat = os.stat

    def refusing(path, *args, **kwargs):
        if str(path).endswith("/bad") and not kwargs.get("dir_fd"):
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, **kwargs)

    (root / "bad").chmod(0)
    if os.access(root / "bad", os.R_OK):  # root reads anything: refuse it another way
        monkeypatch.setattr(os, "stat", refusing)
    result = verify(s3_env, root, f"s3://{bucket}/")
    monkeypatch.undo()
    (root / "bad").chmod(0o600)
    assert result.returncode == EXIT_UNKNOWN, result.stdout + result.stderr
    assert result.stdout.startswith("cannot tell: bad: ")
    assert "1 same, 0 differ, 0 missing, 1 cannot tell" in result.stdout


def test_one_client_for_the_whole_tree(s3_env, bucket, tmp_path, monkeypatch):
    """20 files: one S3 client opened, not one per file; --concurrency bounds them."""
    import persevere._s3
    import persevere._tree_verify

    root = tmp_path / "many"
    for i in range(20):
        write(root / f"{i:02}.txt", 100 + i, i)
    sent = clean(cli(s3_env, "cp", root, f"s3://{bucket}/m/", "--no-progress"))
    assert sent.returncode == 0, sent.stderr
    opened = []
    real = persevere._s3.open_client

    def counting(*args, **kwargs):
        opened.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(persevere._tree_verify, "open_client", counting)
    monkeypatch.setattr(persevere._s3, "open_client", counting)
    monkeypatch.setattr("persevere._verify.open_client", counting)
    result = verify(s3_env, root, f"s3://{bucket}/m", "-c", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "20 file(s): 20 same" in result.stdout
    assert len(opened) == 1
    assert opened[0][1].concurrency == 3  # its pool sized for the files in flight
