"""An operator's audit (2026-12-05, fifteenth): persevere tried as a black box, to make it lie
(exit 0 with another object), lose work, or fail unclearly; this time directory trees under
stress and over time: re-runs after every kind of change, filters, shards and processes with
object options, journals of other runs, odd names. Each test is a defect found, a strict
xfail until it is fixed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import persevere

MiB = 1024 * 1024


def _metadata(s3_client, bucket: str, prefix: str) -> dict[str, dict[str, str]]:
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: s3_client.head_object(Bucket=bucket, Key=item["Key"])["Metadata"]
        for item in listed
    }


def _tree(tmp_path: Path, count: int, name: str = "tree") -> Path:
    tree = tmp_path / name
    tree.mkdir()
    for i in range(count):
        (tree / f"f{i}").write_bytes(f"file {i}\n".encode() * (i + 1))
    return tree


def test_verify_dir_that_checks_no_file_while_objects_are_under_the_prefix_is_not_exit_0(
    s3_env, bucket, tmp_path
):
    """README (Verify a tree): exit 4 "for a DIR that holds no file at all: then nothing was
    checked" while objects are under the prefix. A tree of symbolic links (git-annex, a
    farm of links to a store) sent with `cp DIR --follow-symlinks`; the store's files then
    change; `verify DIR s3://B/P/` given without `--follow-symlinks` lists each link as "not
    checked", counts "0 file(s): 0 same, 0 differ" and exits 0, although every object under
    the prefix differs from the file its link names: nothing was checked, and the objects
    (named by the links, so not "only in S3") are not said to be there."""
    store = tmp_path / "store"
    store.mkdir()
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(3):
        (store / f"d{i}").write_bytes(b"first %d\n" % i)
        (tree / f"f{i}").symlink_to(store / f"d{i}")
    dest = f"s3://{bucket}/p/"
    sent = persevere(s3_env, "cp", tree, dest, "--follow-symlinks", "--no-progress")
    assert sent.returncode == 0, sent.stderr
    for i in range(3):
        (store / f"d{i}").write_bytes(b"other %d\n" % i)
    checked = persevere(s3_env, "verify", tree, dest)
    assert "0 file(s)" in checked.stdout, checked.stdout
    assert checked.returncode != 0, checked.stdout


def test_a_tree_shard_run_makes_its_objects_with_the_options_the_tree_recorded(
    s3_env, bucket, s3_client, tmp_path
):
    """README: object options are "recorded in the state file so resume and complete use the
    same ones", and a `cp DIR` re-run without them does use the recorded ones. A tree started
    with `--metadata m=1` (interrupted, or with some files left for later), then run as the
    Slurm example runs it, `--shard 1/2` without repeating the options: the shard makes its
    objects with no metadata at all and exits 0; the plain command then refuses the shard's
    journal ("records ... other options than these (object options)", exit 2), and so does
    every later run, with or without `--metadata m=1`: the tree is wedged at exit 2 (a
    person must find and delete the shard journal) and its objects lack the metadata."""
    tree = _tree(tmp_path, 8)
    dest = f"s3://{bucket}/p/"
    first = persevere(s3_env, "cp", tree, dest, "--metadata", "m=1", "--exclude", "f[4567]",
                      "--no-progress")  # fmt: skip
    assert first.returncode == 0, first.stderr
    shard = persevere(s3_env, "cp", tree, dest, "--shard", "1/2", "--no-progress")
    assert shard.returncode == 0, shard.stderr
    runs = [persevere(s3_env, "cp", tree, dest, *more, "--no-progress")
            for more in ([], ["--metadata", "m=1"])]  # fmt: skip
    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    metadata = _metadata(s3_client, bucket, "p/")
    assert len(metadata) == 8 and all(m == {"m": "1"} for m in metadata.values()), metadata


@pytest.mark.slow  # (two shard processes: over 3 s here)
@pytest.mark.process
def test_a_tree_re_run_with_processes_keeps_the_options_the_tree_recorded(
    s3_env, bucket, s3_client, tmp_path
):
    """The same through `--processes 2`: the re-run of a tree started with `--metadata m=1`
    (README: the recorded options are used; the shard processes are "each given its request
    ..., every option reaching it") sends the files left with no metadata, exits 2 (the
    shards' journals "record other options"), and every later run exits 2 too."""
    tree = _tree(tmp_path, 8)
    dest = f"s3://{bucket}/p/"
    first = persevere(s3_env, "cp", tree, dest, "--metadata", "m=1", "--exclude", "f[4567]",
                      "--no-progress")  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = persevere(s3_env, "cp", tree, dest, "--processes", "2", "--no-progress")
    assert again.returncode == 0, again.stderr
    metadata = _metadata(s3_client, bucket, "p/")
    assert len(metadata) == 8 and all(m == {"m": "1"} for m in metadata.values()), metadata


def test_the_command_taking_shards_in_does_not_drop_the_options_they_were_run_with(
    s3_env, bucket, s3_client, tmp_path
):
    """Shards run with `--metadata m=1 --content-type text/x-keep`, then the final command
    without them (as examples/slurm/tree-array.sh's dependent job is written: the options
    are the shards'): it takes the shards' journals in, sends the files no shard did with no
    metadata and a guessed type, and exits 0: one tree, two kinds of objects, no word said.
    (With `--checksum` the same command is refused, audit 13: options are either used as
    recorded or the run is refused, never silently dropped.)"""
    tree = _tree(tmp_path, 6)
    dest = f"s3://{bucket}/p/"
    shard = persevere(s3_env, "cp", tree, dest, "--shard", "0/2", "--metadata", "m=1",
                      "--no-progress")  # fmt: skip
    assert shard.returncode == 0, shard.stderr
    final = persevere(s3_env, "cp", tree, dest, "--no-progress")
    metadata = _metadata(s3_client, bucket, "p/")
    assert final.returncode != 0 or all(m == {"m": "1"} for m in metadata.values()), metadata


def test_an_exclude_naming_a_directory_with_a_slash_does_not_upload_it_silently(
    s3_env, bucket, s3_client, tmp_path
):
    """`--exclude 'secrets/'` (how rsync, .gitignore and tar users name a directory) is a
    glob on each file's path, and no file's path ends in `/`: the pattern can match nothing,
    so the directory it names is uploaded, "N sent", exit 0, and nothing says the pattern
    took no file. (A filter that leaves out every file is refused as "a typo in a filter";
    one that can leave out none is a typo too, and here it publishes what was to be kept
    back.) It should be refused (exit 2, saying `secrets/*` or `secrets/**`), or mean the
    directory."""
    tree = tmp_path / "tree"
    (tree / "secrets").mkdir(parents=True)
    (tree / "secrets" / "key").write_bytes(b"private\n")
    (tree / "public").write_bytes(b"public\n")
    sent = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", "--exclude", "secrets/",
                     "--no-progress")  # fmt: skip
    keys = [item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sent.returncode != 0 or "p/secrets/key" not in keys, (sent.stdout, keys)


def test_cp_dir_of_a_mount_point_not_mounted_is_not_exit_0(s3_env, bucket, tmp_path):
    """README (Verify a tree): "an empty mount point must not verify a backup", and `cp DIR`
    refuses filters that take no file ("a typo in a filter would upload nothing and exit
    0"). Yet `cp DIR` of a tree whose journal records its files done, run when DIR is empty
    (the disk not mounted: the mount point is an empty directory), says "uploaded: ... 0
    file(s)", lists every file as "removed locally", and exits 0: the nightly backup job
    reports success every night the disk is missing."""
    tree = _tree(tmp_path, 3)
    dest = f"s3://{bucket}/p/"
    sent = persevere(s3_env, "cp", tree, dest, "--no-progress")
    assert sent.returncode == 0, sent.stderr
    for file in tree.iterdir():
        file.unlink()  # (umount: the mount point is an empty directory)
    again = persevere(s3_env, "cp", tree, dest, "--no-progress")
    assert again.returncode != 0, again.stdout
    assert "not mounted" in again.stderr, again.stderr  # (it said "0 file(s)" on stdout)


def test_a_tree_journal_whose_header_is_damaged_is_not_silently_replaced(
    s3_env, bucket, s3_client, tmp_path
):
    """README: a crash or damage loses at most the parts in flight; a damaged line "is skipped
    with a warning". A tree journal whose *header* line is damaged (one byte: bit rot, an
    editor) is taken for no journal at all: the next `cp DIR` says nothing, starts a new one
    beside it (DIR.DIGEST.persevere), sends every file again (all the tree's work lost: here
    "4 sent") and leaves the large file's multipart upload in progress, recorded in the old
    journal's directory, unfinished on S3 for ever (billed, never aborted, never resumed)."""
    from persevere._tree import journal_name

    tree = _tree(tmp_path, 3)
    big = tree / "big"
    big.write_bytes(os.urandom(9 * MiB))
    dest = f"s3://{bucket}/p/"
    first = persevere(s3_env, "cp", tree, dest, "--exclude", "big", "--no-progress")
    assert first.returncode == 0, first.stderr
    # big's upload under way (created, as a run stopped by a crash leaves it)
    left = tmp_path / "tree.persevere.d" / journal_name("big")
    left.parent.mkdir()
    made = persevere(s3_env, "upload", "start", big, f"s3://{bucket}/p/big", "--state-file",
                     left, "--shards", "1")  # fmt: skip
    assert made.returncode == 0, made.stderr
    journal = tmp_path / "tree.persevere"
    data = journal.read_bytes()
    journal.write_bytes(data.replace(b'"version":1', b'"version":1,', 1))  # one byte more
    again = persevere(s3_env, "cp", tree, dest, "--no-progress")
    if again.returncode == 0:
        assert "3 unchanged" in again.stdout, again.stdout
        uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert not uploads, uploads


def test_a_refused_shard_run_does_not_leave_a_journal_that_wedges_the_tree(
    s3_env, bucket, tmp_path
):
    """A tree started with `--checksum SHA256` (recorded: a plain re-run uses it), then
    `--shard 0/2` without repeating it: the shard is refused ("records ... checksum SHA256,
    not CRC64NVME", exit 2: fair), but the refused run has already created its shard journal
    DIR.persevere.shard-0-of-2 with CRC64NVME in its header, and every run after it, the
    plain command and the one *with* `--checksum SHA256` alike, is refused by that journal
    ("checksum CRC64NVME, not SHA256", exit 2): the tree is wedged until a person finds and
    deletes it. (`--processes 2` without the flag does the same through its shard
    processes. Audit 13 fixed this for the tree's own journal, not for a shard's.)"""
    tree = _tree(tmp_path, 8)
    dest = f"s3://{bucket}/p/"
    first = persevere(s3_env, "cp", tree, dest, "--checksum", "SHA256", "--exclude", "f[4567]",
                      "--no-progress")  # fmt: skip
    assert first.returncode == 0, first.stderr
    # (a shard given no --checksum now uses the tree's, audit 15 #2: refused, it is given
    # another one)
    shard = persevere(s3_env, "cp", tree, dest, "--shard", "0/2", "--checksum", "CRC32",
                      "--no-progress")  # fmt: skip
    assert shard.returncode == 2, shard.stderr
    again = persevere(s3_env, "cp", tree, dest, "--checksum", "SHA256", "--no-progress")
    assert again.returncode == 0, again.stderr
    plain = persevere(s3_env, "cp", tree, dest, "--shard", "0/2", "--no-progress")
    assert plain.returncode == 0, plain.stderr


@pytest.mark.slow  # (pairs of processes started together, a few times)
@pytest.mark.process
def test_one_tree_to_two_destinations_started_together_are_two_uploads(s3_env, bucket, tmp_path):
    """README: "Another destination ... is another upload with its own journal
    (DIR.DIGEST.persevere)". Two `cp DIR` of one tree to two prefixes started at the same
    moment (two cron lines at 02:00, a backup to two buckets), on a tree not uploaded
    before: both pick DIR.persevere (none is there yet), and the one that opens it second
    finds the first's lock: exit 3, "state file DIR.persevere is in use by another persevere
    process; wait for it to finish", though no other process uploads to its destination.
    Here 3 times in 4 on this machine; `cp FILE` to two keys at once does the same
    ("already running: another persevere is uploading with state file ...")."""
    for attempt in range(6):
        tree = tmp_path / f"tree{attempt}"
        tree.mkdir()
        (tree / "a").write_bytes(os.urandom(1000))
        runs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "persevere",
                    "cp",
                    str(tree),
                    f"s3://{bucket}/{attempt}/{side}/",
                    "--no-progress",
                ],
                env={**os.environ, **s3_env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for side in ("one", "two")
        ]
        outcomes = [(run.wait(120), run.stderr.read()) for run in runs if run.stderr]
        for run in runs:
            for stream in (run.stdout, run.stderr):
                if stream:
                    stream.close()
        assert [code for code, _ in outcomes] == [0, 0], outcomes


def test_a_journal_kept_in_the_tree_for_another_destination_is_not_uploaded(
    s3_env, bucket, s3_client, tmp_path
):
    """`cp DIR --state-dir DIR/...` keeps the journal in the tree, and the walk leaves the
    run's own journal out (README: "the walk leaves the journal's own name out"). The same
    tree sent to a second destination with the same `--state-dir` has a journal of its own
    (DIR.DIGEST.persevere), and the first destination's journal, a file of the tree now, is
    uploaded as one of its objects (persevere's private state in the backup), and each run
    of either destination sends the other's journal again (it grows with every run)."""
    tree = _tree(tmp_path, 2)
    state_dir = tree / ".state"
    for prefix in ("one", "two"):
        sent = persevere(s3_env, "cp", tree, f"s3://{bucket}/{prefix}/", "--state-dir",
                         state_dir, "--no-progress")  # fmt: skip
        assert sent.returncode == 0, sent.stderr
    keys = [item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == ["one/f0", "one/f1", "two/f0", "two/f1"], keys


def test_names_with_a_newline_do_not_forge_lines_in_a_trees_report(s3_env, bucket, tmp_path):
    """`cp DIR` and `verify DIR` print one line per file ("removed locally, object kept:
    NAME", "missing: NAME: no object ...", "only in S3: KEY"), the name raw: a file named
    `x\\nverified ...` (legal on Linux; and any key under the prefix is listed) breaks its
    line in two, and the rest reads as a line of its own: here a forged summary line "1
    same, 0 differ" above the real one. (`upload list` was fixed for this, audit 13.)"""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok").write_bytes(b"ok\n")
    forged = "x\nverified everything: 9 file(s): 9 same, 0 differ, 0 missing"
    (tree / forged).write_bytes(b"x\n")
    dest = f"s3://{bucket}/p/"
    checked = persevere(s3_env, "verify", tree, dest)
    lines = checked.stdout.splitlines()
    assert not any(line.startswith("verified everything") for line in lines), lines
    sent = persevere(s3_env, "cp", tree, dest, "--no-progress")
    assert sent.returncode == 0, sent.stderr
    (tree / forged).unlink()
    again = persevere(s3_env, "cp", tree, dest, "--no-progress")
    lines = again.stdout.splitlines()
    assert not any(line.startswith("verified everything") for line in lines), lines


def test_a_tree_file_whose_size_is_not_its_length_is_not_said_to_change(s3_env, bucket, tmp_path):
    """`cp FILE` of a file whose size does not give its length (a /proc or /sys file: 0
    bytes, then text) refuses it with the command that streams it. In a tree (a link to one,
    `--follow-symlinks`) it fails with "changed while it was read; run again once it is
    final", exit 1, on every run: it never changes, and running again never helps; the line
    should say what it is (and what to do), as for `cp FILE`."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_bytes(b"a\n")
    (tree / "version").symlink_to("/proc/version")
    dest = f"s3://{bucket}/p/"
    for _ in range(2):
        sent = persevere(s3_env, "cp", tree, dest, "--follow-symlinks", "--no-progress")
        assert sent.returncode != 0, sent.stdout
        assert "changed while it was read" not in sent.stdout + sent.stderr, sent.stdout


def test_the_same_tags_given_in_another_order_are_the_same_options(s3_env, bucket, tmp_path):
    """README: a re-run with "options other than those it was created with" is refused (exit
    2). A tree sent with `--tagging a=1 --tagging b=2`, re-run with the same two tags in the
    other order (a script building them from a set, or an edited crontab), is refused:
    "records ... other options than these (object options)", exit 2, naming no option, for
    options that are the same (a tag set has no order; `--metadata` in another order is
    taken). The command a supervisor re-runs then needs a person."""
    tree = _tree(tmp_path, 2)
    dest = f"s3://{bucket}/p/"
    first = persevere(s3_env, "cp", tree, dest, "--tagging", "a=1", "--tagging", "b=2",
                      "--no-progress")  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = persevere(s3_env, "cp", tree, dest, "--tagging", "b=2", "--tagging", "a=1",
                      "--no-progress")  # fmt: skip
    assert again.returncode == 0, again.stderr


def test_a_file_said_to_be_left_out_with_exclude_can_be_left_out_by_its_name(
    s3_env, bucket, tmp_path
):
    """A tree's file whose key S3 cannot take fails alone, exit 2, "leave it out with
    --exclude". For `win\\copy[1].txt` (a backslash, and brackets, as in names copied from
    Windows or browser caches), `--exclude 'win\\copy[1].txt'` does not leave it out: the
    pattern is a glob, `[1]` matches the character 1, and the run fails again the same way,
    exit 2, with the same advice, on every run. The line should give a pattern that works
    (`win\\copy[[]1].txt`), or the name be matched as itself too."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok").write_bytes(b"ok\n")
    name = "win\\copy[1].txt"
    (tree / name).write_bytes(b"w\n")
    dest = f"s3://{bucket}/p/"
    first = persevere(s3_env, "cp", tree, dest, "--no-progress")
    assert first.returncode == 2 and "--exclude" in first.stdout, first.stdout
    again = persevere(s3_env, "cp", tree, dest, "--exclude", name, "--no-progress")
    assert again.returncode == 0, again.stdout
