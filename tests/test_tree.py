"""``persevere cp DIR s3://BUCKET/PREFIX/``: a whole tree, resumable, re-run until exit 0."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import persevere as cli
from tests.conftest import sha256_of_file, sha256_of_object, signal_when_handled
from tests.ruleproxy import RuleProxy

MiB = 1024 * 1024


def clean(result):
    assert "Traceback" not in result.stderr, result.stderr
    return result


def write(path: Path, size: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def mixed_tree(root: Path) -> dict[str, Path]:
    """0 B, under 5 MiB, exactly 5 MiB, multipart (at 5 MiB parts), nested."""
    files = {
        "empty": write(root / "empty", 0, 1),
        "a.txt": write(root / "a.txt", 1000, 2),
        "sub/five.bin": write(root / "sub" / "five.bin", 5 * MiB, 3),
        "sub/deeper/big.bin": write(root / "sub" / "deeper" / "big.bin", 12 * MiB + 7, 4),
        "sub/deeper/small.json": write(root / "sub" / "deeper" / "small.json", 300, 5),
    }
    return files


def keys(s3_client, bucket: str) -> set[str]:
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"] for item in listed}


def assert_tree_uploaded(s3_client, bucket, prefix, files: dict[str, Path]):
    for rel, path in files.items():
        assert sha256_of_object(s3_client, bucket, prefix + rel) == sha256_of_file(path), rel
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


class CountingProxy(RuleProxy):
    """Forwards everything; notes every request."""

    def __init__(self, upstream):
        super().__init__(upstream)
        self.seen: list[tuple[bytes, bytes]] = []

    def _decide(self, method, target, headers):
        with self._lock:
            self.seen.append((method, target))
        return super()._decide(method, target, headers)


@pytest.fixture
def counting(s3_env, s3_server):
    with CountingProxy.in_front_of(s3_server.endpoint_url) as proxy:
        yield {**s3_env, "AWS_ENDPOINT_URL": proxy.url}, proxy


def test_tree_uploads_every_file_then_a_rerun_sends_and_asks_nothing(
    counting, bucket, s3_client, tmp_path
):
    env, proxy = counting
    root = tmp_path / "data"
    files = mixed_tree(root)
    os.mkfifo(root / "pipe")
    os.symlink(root / "a.txt", root / "link")
    command = ["cp", root, f"s3://{bucket}/backup", "--part-size", "5MiB", "--no-progress"]
    first = clean(cli(env, *command, "--json"))
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert sorted(report["sent"]) == sorted(files)
    assert report["files"] == 5 and report["skipped"] == 0 and report["failed"] == []
    refused = {r["path"]: r["why"] for r in report["refused"]}
    assert refused == {
        "pipe": "a FIFO",
        "link": "a symbolic link (not followed: give --follow-symlinks)",
    }
    assert_tree_uploaded(s3_client, bucket, "backup/", files)
    assert keys(s3_client, bucket) == {"backup/" + rel for rel in files}
    assert Path(report["state_file"]) == tmp_path / "data.persevere"
    head = s3_client.head_object(Bucket=bucket, Key="backup/sub/deeper/small.json")
    assert head["ContentType"] == "application/json"  # each object's, from its name

    before = len(proxy.seen)
    again = clean(cli(env, *command, "--json"))
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["skipped"] == 5 and report["sent"] == [] and report["bytes_sent"] == 0
    assert proxy.seen[before:] == []  # no request at all: the journal holds the proof

    text = clean(cli(env, *command))
    assert text.returncode == 0
    assert "5 file(s): 0 sent, 0 sent again, 5 unchanged, 0 failed" in text.stdout
    assert "not uploaded: pipe (a FIFO)" in text.stdout


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
def test_a_changed_file_is_sent_again_even_with_its_mtime_restored(
    s3_env, bucket, s3_client, tmp_path
):
    root = tmp_path / "t"
    files = mixed_tree(root)
    command = ["cp", root, f"s3://{bucket}/p/", "--part-size", "5MiB", "--no-progress", "--json"]
    assert clean(cli(s3_env, *command)).returncode == 0
    # Same size, same mtime: only the change time tells.
    for rel in ("a.txt", "sub/deeper/big.bin"):
        path = files[rel]
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    new = write(root / "new" / "file.txt", 10, 9)
    files["new/file.txt"] = new
    files.pop("empty").unlink()
    again = clean(cli(s3_env, *command))
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert sorted(report["resent"]) == ["a.txt", "sub/deeper/big.bin"]
    assert report["sent"] == ["new/file.txt"]
    assert report["removed"] == ["empty"]
    assert_tree_uploaded(s3_client, bucket, "p/", files)
    assert "p/empty" in keys(s3_client, bucket)  # never deleted remotely


def test_include_exclude_and_follow_symlinks(s3_env, bucket, s3_client, tmp_path):
    root = tmp_path / "t"
    write(root / "keep.log", 10, 1)
    write(root / "skip.tmp", 10, 2)
    write(root / "sub" / "x.log", 10, 3)
    outside = write(tmp_path / "outside" / "o.log", 10, 4)
    os.symlink(outside.parent, root / "linked")
    result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/", "--include", "*.log",
                       "--exclude", "sub/*", "--follow-symlinks", "--json"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert keys(s3_client, bucket) == {"keep.log", "linked/o.log"}
    assert json.loads(result.stdout)["excluded"] == 2


def test_tree_flags_for_a_file_and_unsupported_ones_are_refused(s3_env, bucket, tmp_path):
    file = write(tmp_path / "f", 10, 1)
    wrong = clean(cli(s3_env, "cp", file, f"s3://{bucket}/k", "--include", "*"))
    assert wrong.returncode == 2 and "--include is for a directory" in wrong.stderr
    root = tmp_path / "d"
    write(root / "x", 1, 1)
    for flag in (["--no-overwrite"], ["--expected-size", "1"]):
        refused = clean(cli(s3_env, "cp", root, f"s3://{bucket}/p/", *flag))
        assert refused.returncode == 2, flag
        assert "not supported for a directory yet" in refused.stderr


def test_a_journal_of_another_destination_is_refused(s3_env, bucket, tmp_path):
    root = tmp_path / "d"
    write(root / "x", 1, 1)
    state = tmp_path / "tree.persevere"
    first = clean(cli(s3_env, "cp", root, f"s3://{bucket}/a/", "--state-file", state))
    assert first.returncode == 0, first.stderr
    other = clean(cli(s3_env, "cp", root, f"s3://{bucket}/b/", "--state-file", state))
    assert other.returncode == 2
    assert f"state file {state} records an upload of {root}" in other.stderr
    # The default location of another prefix is a journal of its own, not a refusal.
    assert clean(cli(s3_env, "cp", root, f"s3://{bucket}/b/")).returncode == 0
    assert clean(cli(s3_env, "cp", root, f"s3://{bucket}/c/")).returncode == 0


def test_an_unreadable_file_fails_alone(s3_env, bucket, s3_client, tmp_path, monkeypatch):
    root = tmp_path / "d"
    good = write(root / "good", 100, 1)
    write(root / "bad", 100, 2)
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):
        if str(path).endswith("/bad"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/", "--json"))
    monkeypatch.undo()
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["sent"] == ["good"]
    assert [f["path"] for f in report["failed"]] == ["bad"]
    assert sha256_of_object(s3_client, bucket, "good") == sha256_of_file(good)
    again = clean(cli(s3_env, "cp", root, f"s3://{bucket}/", "--json"))
    assert again.returncode == 0
    assert json.loads(again.stdout)["sent"] == ["bad"]


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_killed_at_random_moments_then_rerun_until_exit_0(s3_env, bucket, s3_client, tmp_path):
    root = tmp_path / "t"
    files = mixed_tree(root)
    for i in range(30):
        files[f"many/{i:02}.bin"] = write(root / "many" / f"{i:02}.bin", 1000 * i, 100 + i)
    command = [sys.executable, "-m", "persevere", "cp", str(root), f"s3://{bucket}/k/",
               "--part-size", "5MiB", "-c", "2", "--no-progress"]  # fmt: skip
    env = {**os.environ, **s3_env}
    rng = random.Random(7)
    for attempt in range(4):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
        time.sleep(rng.uniform(0.3, 1.2))
        if proc.poll() is None:
            if attempt % 2:
                signal_when_handled(proc, signal.SIGTERM)
            else:
                proc.kill()
        proc.communicate(timeout=60)
        if attempt == 1:  # an edit between runs, mtime restored
            path = files["a.txt"]
            st = path.stat()
            path.write_bytes(b"X" * 1000)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    for _ in range(5):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stderr
    assert_tree_uploaded(s3_client, bucket, "k/", files)


def test_an_empty_directory_is_a_tree_of_no_files(s3_env, bucket, s3_client, tmp_path):
    """(Before trees, ``cp DIR`` was refused as "is a directory", tests/test_cp.py.)"""
    root = tmp_path / "thing"
    root.mkdir()
    result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/k", "--no-progress"))
    assert result.returncode == 0, result.stderr
    assert "0 file(s): 0 sent" in result.stdout
    assert keys(s3_client, bucket) == set()


@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_shards_split_the_tree_and_the_whole_run_takes_their_journals_in(
    counting, bucket, s3_client, tmp_path
):
    env, proxy = counting
    root = tmp_path / "t"
    files = mixed_tree(root)
    for i in range(12):
        files[f"n/{i}"] = write(root / "n" / str(i), 100 + i, 50 + i)
    url = f"s3://{bucket}/s/"
    sent = []
    for index in range(3):
        shard = clean(cli(env, "cp", root, url, "--part-size", "5MiB", "--shard",
                          f"{index}/3", "--json"))  # fmt: skip
        assert shard.returncode == 0, shard.stderr
        sent += json.loads(shard.stdout)["sent"]
        assert (tmp_path / f"t.persevere.shard-{index}-of-3").exists()
    assert sorted(sent) == sorted(files)  # each file in exactly one shard
    assert_tree_uploaded(s3_client, bucket, "s/", files)
    before = len(proxy.seen)
    whole = clean(cli(env, "cp", root, url, "--part-size", "5MiB", "--json"))
    assert whole.returncode == 0, whole.stderr
    report = json.loads(whole.stdout)
    assert report["skipped"] == len(files) and report["sent"] == []
    assert proxy.seen[before:] == []
    assert not list(tmp_path.glob("t.persevere.shard-*"))  # taken in, then removed
    # A shard run again after the whole tree is done sends nothing either.
    again = clean(cli(env, "cp", root, url, "--part-size", "5MiB", "--shard", "1/3", "--json"))
    assert again.returncode == 0 and json.loads(again.stdout)["sent"] == []


def test_a_shard_still_running_holds_the_whole_run_back(s3_env, bucket, tmp_path):
    import fcntl

    root = tmp_path / "t"
    write(root / "x", 10, 1)
    url = f"s3://{bucket}/p/"
    assert clean(cli(s3_env, "cp", root, url, "--shard", "0/2")).returncode == 0
    shard_journal = tmp_path / "t.persevere.shard-0-of-2"
    with open(shard_journal, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        waiting = clean(cli(s3_env, "cp", root, url))
    assert waiting.returncode == 3, waiting.stderr
    assert "a shard of this tree is still running" in waiting.stderr
    assert clean(cli(s3_env, "cp", root, url)).returncode == 0
    for bad in ("2/2", "x/2", "1"):
        refused = clean(cli(s3_env, "cp", root, url, "--shard", bad))
        assert refused.returncode == 2 and "--shard" in refused.stderr, bad


def test_progress_counts_files_and_bytes(s3_env, bucket, tmp_path):
    root = tmp_path / "t"
    for i in range(3):
        write(root / f"f{i}", 1000, i)
    result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/p/"))
    assert result.returncode == 0, result.stderr
    assert "upload: 2.9 KiB of 2.9 KiB (100.0%)" in result.stderr
    assert "3 of 3 files" in result.stderr


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_dry_run_says_what_would_be_sent_and_writes_nothing(counting, bucket, tmp_path):
    env, proxy = counting
    root = tmp_path / "t"
    files = mixed_tree(root)
    url = f"s3://{bucket}/d/"
    dry = clean(cli(env, "cp", root, url, "--dry-run", "--json"))
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and sorted(report["sent"]) == sorted(files)
    assert report["bytes_sent"] == sum(p.stat().st_size for p in files.values())
    assert proxy.seen == [] and not list(tmp_path.glob("t.persevere*"))
    assert clean(cli(env, "cp", root, url, "--part-size", "5MiB")).returncode == 0
    files["a.txt"].write_bytes(b"changed")
    write(root / "new", 5, 5)
    before = len(proxy.seen)
    text = clean(cli(env, "cp", root, url, "--dry-run"))
    assert text.returncode == 0, text.stderr
    assert "6 file(s): would send 1, send again 1, skip 4 unchanged" in text.stdout
    assert proxy.seen[before:] == []


@pytest.mark.process
def test_a_stop_signal_says_what_is_kept_and_what_to_run(rule_proxy, bucket, tmp_path):
    from tests.proxybase import Hold
    from tests.ruleproxy import hold_part

    env, proxy = rule_proxy
    root = tmp_path / "t"
    write(root / "big", 12 * MiB, 1)
    held = proxy.hold(Hold())
    proxy.rules.insert(0, hold_part(2, held))
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "cp", str(root), f"s3://{bucket}/p/",
         "--part-size", "5MiB", "--no-progress"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    held.wait(60)
    signal_when_handled(proc, signal.SIGTERM)
    held.release()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted; every file recorded done is kept" in stderr
    state = tmp_path / "t.persevere"
    assert f"run the same command again: it sends what is not done (state file {state})" in stderr


def test_a_file_swapped_for_a_symlink_after_the_walk_is_not_followed(tmp_path):
    from persevere._checksums import get_algorithm
    from persevere._errors import SourceChanged
    from persevere._tree import _read_small
    from persevere._tree_walk import walk

    root = tmp_path / "t"
    write(root / "f", 10, 1)
    secret = write(tmp_path / "secret", 10, 2)
    [f] = walk(root).files
    (root / "f").unlink()
    os.symlink(secret, root / "f")
    with pytest.raises(SourceChanged, match="replaced by a symbolic link"):
        _read_small(f, get_algorithm("CRC64NVME"), False, follow_symlinks=False)
    (root / "f").unlink()
    os.mkfifo(root / "f")
    with pytest.raises(SourceChanged, match="not a regular file any more"):
        _read_small(f, get_algorithm("CRC64NVME"), False, follow_symlinks=True)


@pytest.mark.process
def test_an_upload_left_unfinished_by_a_removed_file_is_aborted(
    rule_proxy, bucket, s3_client, tmp_path
):
    from tests.proxybase import Hold
    from tests.ruleproxy import hold_part

    env, proxy = rule_proxy
    root = tmp_path / "t"
    big = write(root / "big", 12 * MiB, 1)
    keep = write(root / "keep", 10, 2)
    held = proxy.hold(Hold())
    proxy.rules.insert(0, hold_part(2, held))
    command = ["cp", root, f"s3://{bucket}/p/", "--part-size", "5MiB", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "persevere", *map(str, command)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    held.wait(60)
    proc.kill()
    proc.communicate(timeout=30)
    held.release()
    proxy.rules.pop(0)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")  # left by the kill
    big.unlink()
    done = clean(cli(env, *command))
    assert done.returncode == 0, done.stderr
    assert "unfinished upload aborted (not needed now): big" in done.stdout
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert sha256_of_object(s3_client, bucket, "p/keep") == sha256_of_file(keep)
    assert not list((tmp_path / "t.persevere.d").glob("*.persevere"))


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_processes_split_the_tree_then_the_whole_run_takes_their_journals_in(
    s3_env, bucket, s3_client, tmp_path
):
    root = tmp_path / "t"
    files = mixed_tree(root)
    for i in range(20):
        files[f"n/{i}"] = write(root / "n" / str(i), 10 * i, 80 + i)
    url = f"s3://{bucket}/m/"
    result = clean(cli(s3_env, "cp", root, url, "--part-size", "5MiB", "--processes", "2",
                       "--json", "--max-retries", "3", process=True))  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    total = sum(p.stat().st_size for p in files.values())
    assert report["bytes_sent"] == total  # by the shards; the whole run found them done
    # (sent by the shards: listed as sent, by_shards says by whom; was skipped, sent [])
    assert report["skipped"] == 0 and sorted(report["sent"]) == sorted(files)
    assert report["by_shards"] == len(files)
    assert_tree_uploaded(s3_client, bucket, "m/", files)
    assert not list(tmp_path.glob("t.persevere.shard-*"))
    both = clean(cli(s3_env, "cp", root, url, "--processes", "2", "--shard", "0/2"))
    assert both.returncode == 2 and "not both" in both.stderr


def _peak_rss_kib(env, tmp_path, *args):
    """Peak RSS of ``persevere ARGS`` in its own process (wait4's rusage), in KiB."""
    with open(tmp_path / "stderr", "w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "persevere", *map(str, args)],
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                stderr=stderr)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        assert proc.returncode == 0, stderr.read()
    return usage.ru_maxrss


@pytest.mark.slow
@pytest.mark.process
def test_memory_does_not_grow_with_the_number_of_large_files(s3_env, bucket, tmp_path):
    """Each multipart file has a client of its own; what it leaves must be freed (it kept
    about 8 MiB a file until exit: 165 MiB for 10 files, 88 for one)."""
    few, many = tmp_path / "few", tmp_path / "many"
    for i in range(12):
        for root in (few, many) if i < 2 else (many,):
            write(root / f"f{i}", 6 * MiB, i)
    args = ["--part-size", "5MiB", "--no-progress", "-c", "2"]
    small = _peak_rss_kib(s3_env, tmp_path, "cp", few, f"s3://{bucket}/few/", *args)
    large = _peak_rss_kib(s3_env, tmp_path, "cp", many, f"s3://{bucket}/many/", *args)
    assert large - small < 25 * 1024, (small, large)  # KiB


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_an_endpoint_without_checksum_echoes_falls_back_to_content_md5(
    s3_env, s3_server, bucket, s3_client, tmp_path
):
    """As ``cp FILE`` does by default: small and multipart files alike, checked by their MD5."""
    from tests.httpproxy import HttpProxy

    root = tmp_path / "t"
    files = {"small": write(root / "small", 1000, 1), "big": write(root / "big", 12 * MiB, 2)}
    with HttpProxy.in_front_of(s3_server.endpoint_url, strip_checksums=True) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = clean(cli(env, "cp", root, f"s3://{bucket}/md5/", "--part-size", "5MiB"))
    assert result.returncode == 0, result.stderr
    assert "did not confirm the CRC64NVME checksum of file small" in result.stderr  # once
    assert_tree_uploaded(s3_client, bucket, "md5/", files)


@pytest.mark.parametrize("checksum", ["MD5", "SHA256", "CRC32C"])
def test_a_tree_with_another_checksum(s3_env, bucket, s3_client, tmp_path, checksum):
    root = tmp_path / "t"
    files = {"small": write(root / "small", 1000, 1), "big": write(root / "big", 11 * MiB, 2)}
    args = ["cp", root, f"s3://{bucket}/{checksum}/", "--part-size", "5MiB", "--checksum", checksum]
    result = clean(cli(s3_env, *args, "--json"))
    assert result.returncode == 0, result.stderr
    assert_tree_uploaded(s3_client, bucket, f"{checksum}/", files)
    again = clean(cli(s3_env, *args[:-2], "--json"))  # the recorded checksum, not said again
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 2, again.stderr


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_processes_say_the_files_their_shards_sent(s3_env, bucket, s3_client, tmp_path):
    """The whole run after the shards finds their files done: the summary says who sent them
    (it said "0 sent, N unchanged" of a tree just uploaded)."""
    root = tmp_path / "t"
    files = {f"f{i}": write(root / f"f{i}", 1000 + i, 90 + i) for i in range(6)}
    url = f"s3://{bucket}/s/"
    text = clean(cli(s3_env, "cp", root, url, "--processes", "2", "--no-progress", process=True))
    assert text.returncode == 0, text.stderr
    assert "6 file(s): 6 sent, 0 sent again (6 by the shard processes), 0 unchanged" in (
        text.stdout
    )
    assert_tree_uploaded(s3_client, bucket, "s/", files)
    again = clean(cli(s3_env, "cp", root, url, "--processes", "2", "--json", process=True))
    assert json.loads(again.stdout)["by_shards"] == 0  # nothing left to send: none sent
