"""An operator's audit (2026-12-05, twelfth): persevere tried as a black box, to make it lie
(exit 0 with another object), lose work, or fail unclearly; this time bytes changing under
it, objects other tools wrote, odd keys and trees, two runs at once and moved journals. Each
test is a defect found, a strict xfail until fixed."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from tests.conftest import persevere

MiB = 1024 * 1024


def _upload_id(state: Path) -> str:
    return str(json.loads(state.read_text().splitlines()[0])["upload_id"])


def test_verify_dir_whose_filters_match_no_file_does_not_exit_0(s3_env, bucket, tmp_path):
    """README (Verify a tree): an empty directory must not verify a backup ("then nothing was
    checked ... so exit 4 says so"). Yet `verify DIR s3://B/P/ --include 'typo*'` (or an
    --exclude that takes every file) checks no file, says "0 file(s): 0 same" and exits 0,
    although DIR holds files and the prefix holds their objects: a typo in a filter makes
    a verification that checked nothing report success."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a.pt", "b.pt"):
        (tree / name).write_bytes(name.encode() * 100)
    sent = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", "--no-progress")
    assert sent.returncode == 0, sent.stderr
    for filters in (["--include", "*.pth"], ["--exclude", "*"]):
        checked = persevere(s3_env, "verify", tree, f"s3://{bucket}/p/", *filters)
        assert "0 file(s)" in checked.stdout + checked.stderr
        assert checked.returncode != 0, checked.stdout + checked.stderr


def test_cp_whose_upload_is_aborted_elsewhere_mid_run_starts_again_as_documented(
    rule_proxy, bucket, s3_client, make_file, tmp_path
):
    """README (Running unattended): "If the upload cannot go on (..., the upload was aborted
    behind its back, ...), it gives up what is left and starts again, once, in the same run."
    It does when a re-run finds it gone; but when the abort (`upload abort --upload-id`, a
    lifecycle rule) lands while `cp` runs, `cp` exits 1 ("NoSuchUpload ... start a new
    upload": no command), the code the contract says needs a person (RestartPreventExitStatus=1
    2), though the same `cp` run again would simply start over."""
    env, proxy = rule_proxy
    file = make_file(12 * MiB)
    state = tmp_path / "s.persevere"
    held = proxy.hold_parts_but(1)

    def abort_once_part_1_is_recorded() -> None:
        held.wait()
        for _ in range(2000):
            if state.exists() and b'"type":"part"' in state.read_bytes():
                break
            threading.Event().wait(0.01)
        s3_client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=_upload_id(state))
        with proxy._lock:
            proxy.rules.pop(0)
        held.release()

    helper = threading.Thread(target=abort_once_part_1_is_recorded, daemon=True)
    helper.start()
    result = persevere(env, "cp", file, f"s3://{bucket}/k", "--state-file", state,
                       "--part-size", "5MiB", "--concurrency", "1", "--no-progress")  # fmt: skip
    helper.join(60)
    assert result.returncode == 0, result.stderr
    body = s3_client.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == file.read_bytes()


class _EditsTheFileOnce:
    """A progress sink that, once verify has hashed its first slice, rewrites the file's
    first bytes in place and puts its mtime back (`touch -r`): the file edited while verify
    reads it, in a region it has already read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.edited = False

    def start(self, total: int, done: int) -> None:
        pass

    def advance(self, delta: int) -> None:
        if not self.edited:
            self.edited = True
            st = self.path.stat()
            with self.path.open("r+b") as f:
                f.write(b"EDITED WHILE VERIFIED")
            os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def close(self) -> None:
        pass


def test_verify_of_a_file_edited_while_it_is_read_does_not_say_match(
    s3_env, bucket, make_file, tmp_path
):
    """README: "A match means the file has the same bytes as the object". `verify FILE` opens
    the file and hashes it once, but never looks at its identity again (cp's completion and
    the re-read of a completed upload both do: `check_unchanged`): a file edited while verify
    reads it, in a part already hashed, is reported "match" (exit 0 on the CLI) though the
    file now differs from the object (a second verify says MISMATCH). It should say the file
    changed while it was read (cannot tell, exit 5), never match."""
    import persevere as api

    file = make_file(10 * MiB)
    sent = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--part-size", "5MiB",
                     "--state-file", tmp_path / "s", "--no-progress")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    sink = _EditsTheFileOnce(file)
    result = api.verify_sync(file, bucket, "k", progress=sink)
    assert sink.edited
    again = api.verify_sync(file, bucket, "k")
    assert again.outcome == "mismatch"  # the file differs from the object now
    assert result.outcome != "match", result.reason


def test_a_tree_file_replaced_by_a_directory_is_reported_as_removed(s3_env, bucket, tmp_path):
    """README (Directories): "a file removed locally is reported and its object kept". A file
    replaced by a directory of the same name between runs (`rm x; mkdir x`, a layout change)
    is not: the re-run exits 0 with nothing under "removed" (`--json`: "removed": []) and no
    line about it, though the file is gone and its object, s3://B/P/x, stays behind (only
    `verify DIR` notices: "only in S3"). A removed file (`rm x` alone) is reported."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "x").write_bytes(b"one")
    (tree / "z").write_bytes(b"two")
    first = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", "--no-progress")
    assert first.returncode == 0, first.stderr
    (tree / "x").unlink()
    (tree / "x").mkdir()
    (tree / "x" / "y").write_bytes(b"inner")
    again = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", "--no-progress", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["removed"] == ["x"]


def _swap_link_when_held(proxy, held, link: Path, target: str) -> threading.Thread:
    """Once the proxy holds an UploadPart (part 1 recorded, the rest in flight), point
    ``link`` at ``target`` atomically (`ln -sfn T L.new && mv -T L.new L`), then let the
    parts go on."""

    def swap() -> None:
        held.wait()
        new = link.with_name(link.name + ".new")
        new.symlink_to(target)
        new.replace(link)
        with proxy._lock:
            proxy.rules.pop(0)
        held.release()

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("which", ["file-link", "directory-link"])
def test_cp_through_a_link_swapped_mid_upload_is_not_exit_0_with_the_old_target(
    rule_proxy, bucket, s3_client, tmp_path, which
):
    """README (Resume, 4. Completion): the file's "path must still name it: a file renamed
    over it (an editor's save), a directory above it rotated by a rename, or the file
    deleted stops the run before completion (exit 1; run again, and the file the path names
    now is uploaded)". A rotation done the usual atomic way with a symbolic link
    (`latest -> backup-1` swapped to `backup-2` by `ln -sfn` + `mv -T`, the link being the
    file or a directory above it) is not seen: `cp LINK s3://B/K` exits 0 ("uploaded") with
    the old target's bytes while LINK names the new one (a directory renamed the same way is
    caught: exit 1). The next run notices and uploads the new file: the first exit 0 lied."""
    env, proxy = rule_proxy
    first, second = tmp_path / "one", tmp_path / "two"
    for where, seed in ((first, 1), (second, 2)):
        where.mkdir()
        (where / "data").write_bytes(bytes([seed]) * (6 * MiB))
    if which == "file-link":
        link, given = tmp_path / "latest", tmp_path / "latest"
        link.symlink_to(first / "data")
        target = str(second / "data")
    else:
        link, given = tmp_path / "current", tmp_path / "current" / "data"
        link.symlink_to(first)
        target = str(second)
    held = proxy.hold_parts_but(1)
    helper = _swap_link_when_held(proxy, held, link, target)
    result = persevere(env, "cp", given, f"s3://{bucket}/k", "--state-file", tmp_path / "s",
                       "--part-size", "5MiB", "--concurrency", "1", "--no-progress")  # fmt: skip
    helper.join(60)
    assert given.read_bytes() == (second / "data").read_bytes()  # the path names the new file
    if result.returncode == 0:
        body = s3_client.get_object(Bucket=bucket, Key="k")["Body"].read()
        assert body == given.read_bytes(), "exit 0, but the object is the link's old target"


def test_verify_of_a_fifo_does_not_tell_the_user_to_upload_it(s3_env, bucket, tmp_path):
    """`persevere verify FIFO s3://B/K` (a named pipe given by mistake, or `<(...)`) is
    refused, exit 2, as it should; but its one line tells a user who asked to *check* an
    object to upload the pipe over it: "to upload it once, as a stream: persevere cp -
    s3://BUCKET/KEY < FIFO" (cp's hint, reused). verify cannot take a stream at all (`verify
    -` from a pipe: "verify needs the path of a file"), which is what it should say."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    checked = persevere(s3_env, "verify", fifo, f"s3://{bucket}/k")
    assert checked.returncode == 2, checked.stderr
    assert "cp -" not in checked.stderr, checked.stderr
