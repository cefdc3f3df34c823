"""Review 6 (adversarial, of main at c7970f1): regressions and holes in audit 13's fixes.
Each test is a defect found, a strict xfail until it is fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import interrupt_after_parts, persevere

MiB = 1024 * 1024


def _uploads(client, bucket: str) -> list[dict]:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_an_earlier_versions_journal_beside_a_long_named_file_is_still_found(
    rule_proxy, bucket, s3_client, tmp_path
):
    """39c2d17 cut names at 231 bytes: a 235-byte file's FILE.persevere (245 bytes, the name
    persevere before it made and used) is no longer looked at. After an upgrade, cp FILE of
    an upload stopped part way starts a second upload, leaving the first one's parts billed
    and its journal ignored (and a completed one is sent all over again)."""
    env, proxy = rule_proxy
    file = tmp_path / ("c" * 235)
    file.write_bytes(bytes(range(256)) * (15 * MiB // 256))
    beside = file.with_name(file.name + ".persevere")  # what persevere before 39c2d17 chose
    url = f"s3://{bucket}/k"
    command = ["cp", file, url, "--state-file", beside, "--part-size", "5MiB", "--no-progress"]
    interrupt_after_parts(env, command, beside, 1, proxy=proxy)
    assert len(_uploads(s3_client, bucket)) == 1
    result = persevere(env, "cp", file, url, "--part-size", "5MiB", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert f"state file: {beside}" in result.stderr  # the earlier run's journal, resumed
    assert _uploads(s3_client, bucket) == []  # (it is left, billed, until aborted)


def test_an_earlier_versions_tree_journal_beside_a_long_named_directory_is_still_found(
    s3_env, bucket, tmp_path
):
    """39c2d17, for a tree: a 235-byte directory's DIR.persevere (245 bytes, the journal
    persevere before it kept there) is no longer looked at: the next cp DIR sends every file
    again (and leaves its large files' unfinished uploads billed)."""
    root = tmp_path / ("d" * 235)
    root.mkdir()
    (root / "a").write_bytes(b"hi")
    (root / "b").write_bytes(b"ho")
    beside = root.with_name(root.name + ".persevere")  # what persevere before 39c2d17 chose
    url = f"s3://{bucket}/t/"
    first = persevere(s3_env, "cp", root, url, "--state-file", beside, "--no-progress")
    assert first.returncode == 0, first.stderr
    again = persevere(s3_env, "cp", root, url, "--no-progress", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["state_file"] == str(beside)
    assert report["sent"] == []


def test_a_filtered_tree_is_walked_once(s3_env, bucket, tmp_path, monkeypatch):
    """ba67070's check that the filters leave some file walks the whole tree before the run
    walks it again: with --include/--exclude every cp DIR pays two walks (on a parallel file
    system of millions of files, the metadata load and the minutes twice), and the check's
    listing is not the run's (a file made between them)."""
    import persevere._tree as tree

    walks = []
    real = tree.walk

    def counted(*args, **kwargs):
        walks.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(tree, "walk", counted)
    root = tmp_path / "r"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a")
    (root / "b.log").write_bytes(b"b")
    result = persevere(s3_env, "cp", root, f"s3://{bucket}/f/", "--include", "*.txt",
                       "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(walks) == 1


def test_a_merge_stopped_by_a_shard_still_running_keeps_what_it_took_in(s3_env, bucket, tmp_path):
    """91ddb16 removes the tree journal a cp DIR made when taking its shards' journals in
    raises, but merge_shards takes them in one by one, each removed once taken: shard 0's
    records are taken (its journal removed), shard 1's journal is locked (that shard still
    running: exit 3, 'run this command again once every shard has ended'), and the new
    journal holding shard 0's records is removed with them. Shard 0's files are sent again."""
    import fcntl

    root = tmp_path / "r"
    root.mkdir()
    for i in range(8):
        (root / f"f{i}").write_bytes(b"x" * (1000 + i))
    url = f"s3://{bucket}/m/"
    for shard in ("0/2", "1/2"):
        run = persevere(s3_env, "cp", root, url, "--shard", shard, "--no-progress")
        assert run.returncode == 0, run.stderr
    journals = sorted(tmp_path.glob("r.persevere.shard-*-of-2"))
    assert len(journals) == 2
    with journals[1].open("rb") as held:  # shard 1 still running (its lock)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        merge = persevere(s3_env, "cp", root, url, "--no-progress")
        assert merge.returncode == 3, merge.stderr
    again = persevere(s3_env, "cp", root, url, "--no-progress", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["sent"] == [] and report["bytes_sent"] == 0  # all sent by the shards


@pytest.mark.process
def test_a_stopped_shards_own_command_keeps_its_file(rule_proxy, bucket, tmp_path):
    """b2b73d6: a shard that stops resumable names its own command (upload shard --state-file
    S --shard I/N), built from the state file and the shard alone: the --file it was given
    (the file at another path on this host: what --file is for) is dropped, so the command
    as printed cannot read the file (or reads another one at the recorded path)."""
    import shlex
    import signal

    env, proxy = rule_proxy
    there, here = tmp_path / "there", tmp_path / "here"
    there.mkdir()
    here.mkdir()
    (there / "f").write_bytes(bytes(range(256)) * (20 * MiB // 256))
    state = tmp_path / "s"
    start = persevere(env, "upload", "start", there / "f", f"s3://{bucket}/k", "--shards", "2",
                      "--state-file", state, "--part-size", "5MiB")  # fmt: skip
    assert start.returncode == 0, start.stderr
    (there / "f").rename(here / "f")  # on this host the file is elsewhere
    command = ["upload", "shard", "--state-file", state, "--shard", "0/2", "--file", here / "f",
               "--no-progress"]  # fmt: skip
    stopped = interrupt_after_parts(env, command, Path(f"{state}.shard-0-of-2"), 1,
                                    sig=signal.SIGINT, proxy=proxy)  # fmt: skip
    assert stopped.returncode not in (0, 2), stopped.stderr
    [line] = [x for x in stopped.stderr.splitlines() if "persevere upload shard" in x]
    printed = shlex.split(line[line.index("persevere upload shard") :])
    assert "--file" in printed, line


def test_shards_with_processes_auto_is_refused_in_the_users_words(s3_env, bucket, make_file):
    """ba67070 compares --processes with --shards after 'auto' became its sentinel: upload
    start --shards 4 --processes auto is refused saying '--shards 4 and --processes -1
    disagree', a value the user never gave (and auto, which picks the count, could take 4)."""
    file = make_file(12 * MiB)
    result = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--shards", "4",
                       "--processes", "auto", "--no-progress")  # fmt: skip
    assert "-1" not in result.stderr, result.stderr


def test_two_destinations_shards_that_both_took_dir_persevere_are_each_taken_in(
    s3_env, bucket, tmp_path
):
    """c944963 looks for another destination's shard journals beside DIR.persevere only to
    move away from them: two Slurm arrays of one tree to two destinations started together
    both find nothing and both put shard journals at DIR.persevere.shard-I-of-N (simulated
    here with --state-file DIR.persevere, the name they chose). Then each merge sees the other
    destination's shard journal there and takes its own DIR.DIGEST.persevere: neither takes
    its shards' journals in, both send their shards' files again (exit 0), and the two shard
    journals are left forever."""
    root = tmp_path / "r"
    root.mkdir()
    for i in range(8):
        (root / f"f{i}").write_bytes(b"x" * (1000 + i))
    a, b = f"s3://{bucket}/a/", f"s3://{bucket}/b/"
    beside = tmp_path / "r.persevere"
    for url, shard in ((b, "0/2"), (a, "1/2")):  # (both found nothing: DIR.persevere's)
        run = persevere(s3_env, "cp", root, url, "--shard", shard, "--state-file", beside,
                        "--no-progress")  # fmt: skip
        assert run.returncode == 0, run.stderr
    for url, shard in ((b, "1/2"), (a, "0/2")):
        run = persevere(s3_env, "cp", root, url, "--shard", shard, "--no-progress")
        assert run.returncode == 0, run.stderr
    for url in (a, b):
        merge = persevere(s3_env, "cp", root, url, "--no-progress", "--json")
        assert merge.returncode == 0, merge.stderr
        assert json.loads(merge.stdout)["sent"] == []  # every file was sent by a shard
    assert not list(tmp_path.glob("r.persevere.shard-*"))


def _slurm_task(monkeypatch, task: int, first: int, last: int, shards: int):
    from persevere._errors import PersevereError
    from persevere._shards import shard_from_environment

    for name, value in (("ID", task), ("MIN", first), ("MAX", last),
                        ("COUNT", last - first + 1)):  # fmt: skip
        monkeypatch.setenv(f"SLURM_ARRAY_TASK_{name}", str(value))
    try:
        return shard_from_environment(shards)
    except PersevereError:
        return "refused"


def test_a_slurm_task_resubmitted_alone_runs_the_shard_it_ran_in_its_array(monkeypatch):
    """e3864fc: a whole array numbered from 1 (--array=1-16, which shard_from_environment
    takes: task - MIN) gives task 3 shard 2; the failed task 3 resubmitted alone as the
    example says (--array=3) is taken as shard 3 (task ID, numbered from 0): it runs (or finds
    done) another shard, exit 0, and shard 2 is left to the completing job. The same task ID
    must name the same shard, or one of the two numberings be refused."""
    whole = _slurm_task(monkeypatch, 3, 1, 16, 16)
    alone = _slurm_task(monkeypatch, 3, 3, 3, 16)
    assert whole == alone or "refused" in (whole, alone), (whole, alone)
