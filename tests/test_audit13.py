"""An operator's audit (2026-12-05, thirteenth): persevere tried as a black box, to make it lie
(exit 0 with another object), lose work, or fail unclearly; this time more cores and hosts
(--processes, shards, Slurm arrays), what its reports and printed commands say against what
is true, and odd paths. Each test is a defect found, a strict xfail until it is fixed."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import persevere
from tests.proxybase import Hold
from tests.ruleproxy import Rule

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]


def _upload_id(state: Path) -> str:
    return str(json.loads(state.read_text().splitlines()[0])["upload_id"])


# What Slurm 22.05 (the one-node cluster of tests/slurmcluster.py) sets for a task of
# `sbatch --array=2 ...`: one task resubmitted, as the examples say to do for a failed one.
_RESUBMITTED_TASK_2 = {
    "SLURM_ARRAY_JOB_ID": "7",
    "SLURM_ARRAY_TASK_ID": "2",
    "SLURM_ARRAY_TASK_MIN": "2",
    "SLURM_ARRAY_TASK_MAX": "2",
    "SLURM_ARRAY_TASK_COUNT": "1",
    "SLURM_ARRAY_TASK_STEP": "1",
}


class _PutObject(Rule):
    """A PutObject (a PUT with no uploadId, partNumber or other sub-resource)."""

    def matches(self, method: bytes, target: bytes) -> bool:
        return method == b"PUT" and not urlsplit(target.decode("latin-1")).query.replace(
            "x-id=PutObject", ""
        )


@pytest.mark.process
@pytest.mark.parametrize(
    ("slow_run", "fast_run"),
    [(["--shard", "0/2"], ["--shard", "0/3"]), ([], ["--shard", "0/2"])],
    ids=["shards-of-2-and-3", "whole-tree-and-a-shard"],
)
def test_two_shard_runs_of_one_tree_never_leave_older_bytes_recorded_as_the_newer(
    rule_proxy, bucket, s3_client, tmp_path, slow_run, fast_run
):
    """Two runs of one tree's shards at once, with shard counts that differ (a job array
    resubmitted with another size while the first still runs, or `cp DIR --processes 2` beside
    a `--shard I/16` task), both take file `d` (shard 0 of 2 and shard 0 of 3). The first
    reads it and sends it slowly; the file is rewritten (same size); the second sends the new
    bytes and records them; then the first's PutObject of the old bytes lands, last. The
    object is now the old bytes, yet `cp DIR` (taking the shards' journals in) says "1
    unchanged" and exits 0, and no later run sends the file again: exit 0 with an object
    that is not the file. (Shard journals are taken in by file name, not by when their
    records were made, and a small file's PutObject has no lock, as a large file's
    journal has.) The same with the whole tree's `cp DIR` (the supervisor's command, which
    refuses a running shard only as it starts) as the slow run and one shard task (a
    requeued array task) as the fast one."""
    env, proxy = rule_proxy
    tree = tmp_path / "tree"
    tree.mkdir()
    file = tree / "d"
    file.write_bytes(os.urandom(MiB))
    dest = f"s3://{bucket}/p/"
    hold = proxy.hold(Hold())
    with proxy._lock:
        proxy.rules.insert(0, _PutObject("PUT", "", hold=hold))
    first: list[subprocess.CompletedProcess[str]] = []
    slow = threading.Thread(target=lambda: first.append(persevere(
        env, "cp", tree, dest, *slow_run, "--no-progress")), daemon=True)  # fmt: skip
    slow.start()
    hold.wait()
    with proxy._lock:
        proxy.rules.pop(0)
    file.write_bytes(os.urandom(MiB))  # rewritten in place, same size
    second = persevere(env, "cp", tree, dest, *fast_run, "--no-progress")
    assert second.returncode == 0, second.stderr
    hold.release()
    slow.join(120)
    final = persevere(env, "cp", tree, dest, "--no-progress")
    assert final.returncode == 0, final.stderr
    body = s3_client.get_object(Bucket=bucket, Key="p/d")["Body"].read()
    assert body == file.read_bytes(), (first[0].returncode, first[0].stderr, final.stdout)


@pytest.mark.process
def test_a_tree_file_rewritten_during_its_putobject_is_not_exit_0_with_the_old_bytes(
    rule_proxy, bucket, s3_client, tmp_path
):
    """README: "exit 0 means the object equals the source"; `cp FILE` checks the file's
    identity once more before completing ("nothing may have changed while it was read"), and
    a tree's file "that changes while it is read fails alone". A tree's small file (one
    PutObject) is read, then sent; rewritten in place (same size) while the PutObject is in
    flight (a slow link: seconds for 8 MiB), `cp DIR` says "1 sent, 0 failed" and exits 0
    with the object holding the old bytes and the file the new ones. (The next run sends it
    again, its identity having changed; the exit 0 said done when it was not; and with
    another run beside it, it is not sent again at all: see #1.)"""
    env, proxy = rule_proxy
    tree = tmp_path / "tree"
    tree.mkdir()
    file = tree / "d"
    file.write_bytes(os.urandom(MiB))
    hold = proxy.hold(Hold())
    with proxy._lock:
        proxy.rules.insert(0, _PutObject("PUT", "", hold=hold))
    done: list[subprocess.CompletedProcess[str]] = []
    run = threading.Thread(target=lambda: done.append(persevere(
        env, "cp", tree, f"s3://{bucket}/p/", "--no-progress")), daemon=True)  # fmt: skip
    run.start()
    hold.wait()
    with proxy._lock:
        proxy.rules.pop(0)
    file.write_bytes(os.urandom(MiB))  # rewritten in place, same size, as the PUT is sent
    hold.release()
    run.join(120)
    body = s3_client.get_object(Bucket=bucket, Key="p/d")["Body"].read()
    if done[0].returncode == 0:
        assert body == file.read_bytes(), done[0].stdout


@pytest.mark.parametrize("filters", [["--include", "*.pth"], ["--exclude", "*"]])
def test_cp_dir_whose_filters_take_no_file_does_not_exit_0(s3_env, bucket, tmp_path, filters):
    """`cp DIR s3://B/P/ --include '*.pth'` (a typo for *.pt) on a directory of files sends
    nothing and says "uploaded: s3://B/P/: 0 file(s): 0 sent, ..., 0 failed", exit 0: the
    backup job that a supervisor re-runs "until exit 0" is done at once, having uploaded
    nothing. `verify DIR` was made to refuse exactly this (audit 12: "exit 4 too when
    --include/--exclude leave out every file: a typo in a filter checks nothing"); the
    upload itself still exits 0 over it."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a.pt", "b.pt"):
        (tree / name).write_bytes(name.encode() * 100)
    sent = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", *filters, "--no-progress")
    assert "0 file(s)" in sent.stdout + sent.stderr
    assert sent.returncode != 0, sent.stdout + sent.stderr


def test_a_trees_shards_of_one_destination_do_not_block_another(s3_env, bucket, tmp_path):
    """README (Directories): "Another destination (bucket, prefix, ...) is another upload with
    its own journal (`DIR.DIGEST.persevere`)". After `cp DIR s3://B/p1/ --shard 0/2` (a job
    array's task; the rest not run yet), `cp DIR s3://B/p2/` is refused, exit 2, "--state-file:
    state file DIR.persevere.shard-0-of-2 records an upload of DIR to s3://B/p1/, not this
    one" (no --state-file was given), and is refused so at every run, as long as the shard's
    journal is there. Worse, the refused run has made DIR.persevere p2's, so the p1 run that
    should take the shard's journal in uses DIR.DIGEST.persevere, never reads it, and sends
    the shard's files again; the stale shard journal then blocks p2 for good."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(4):
        (tree / f"f{i}").write_bytes(os.urandom(1000))
    shard = persevere(s3_env, "cp", tree, f"s3://{bucket}/p1/", "--shard", "0/2", "--no-progress")
    assert shard.returncode == 0, shard.stderr
    sent_by_shard = len([line for line in Path(f"{tree}.persevere.shard-0-of-2").read_text()
                         .splitlines() if '"type":"done"' in line.replace(" ", "")])  # fmt: skip
    assert sent_by_shard > 0
    other = persevere(s3_env, "cp", tree, f"s3://{bucket}/p2/", "--no-progress")
    assert other.returncode == 0, other.stderr
    first = persevere(s3_env, "cp", tree, f"s3://{bucket}/p1/", "--no-progress", "--json")
    assert first.returncode == 0, first.stderr
    assert len(json.loads(first.stdout)["sent"]) == 4 - sent_by_shard, first.stdout


def test_a_tree_whose_shards_used_a_checksum_is_taken_in_by_the_command_with_it(
    s3_env, bucket, tmp_path
):
    """README (Many hosts): the shards' run, then "the same command without `--shard` then
    takes the shards' journals in". Shards run with `--checksum SHA256` and then the final
    command given without `--checksum` (as examples/slurm/tree-array.sh's dependent job is
    written) is refused, fairly ("give the options it was started with"); but that refused
    run has already created DIR.persevere with CRC64NVME in its header, so the same command
    *with* `--checksum SHA256` is refused too ("checksum CRC64NVME, not SHA256"), and so is
    every later run: the shards' work can no longer be taken in until a person finds and
    deletes the journal the refused run left."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(4):
        (tree / f"f{i}").write_bytes(os.urandom(1000))
    dest = f"s3://{bucket}/p/"
    for shard in ("0/2", "1/2"):
        sent = persevere(s3_env, "cp", tree, dest, "--shard", shard, "--checksum", "SHA256",
                         "--no-progress")  # fmt: skip
        assert sent.returncode == 0, sent.stderr
    # (audit 15 #1: a run that gives no --checksum uses the one the shards recorded, as a
    # re-run uses the tree's; it was refused, exit 2, before)
    plain = persevere(s3_env, "cp", tree, dest, "--no-progress")
    assert plain.returncode == 0, plain.stderr
    assert "4 unchanged" in plain.stdout, plain.stdout
    merged = persevere(s3_env, "cp", tree, dest, "--checksum", "SHA256", "--no-progress")
    assert merged.returncode == 0, merged.stderr
    assert "4 unchanged" in merged.stdout, merged.stdout
    other = persevere(s3_env, "cp", tree, dest, "--checksum", "CRC32", "--no-progress")
    assert other.returncode == 2, other.stderr  # (another checksum given: still refused)


@pytest.mark.parametrize("command", ["shard", "resume"])
def test_a_wrong_file_flag_is_not_said_to_be_the_upload_s_file_changed(
    s3_env, bucket, make_file, tmp_path, command
):
    """`upload shard --file PATH` (the file as this host mounts it) or `upload resume --file
    PATH`, PATH a file of another size (a typo, the wrong host's copy): persevere says the
    *upload's* file "changed since the upload started (size 15,728,640 -> 10,485,760 bytes):
    its parts on S3 cannot make it", exit 1, and tells the user to give the upload up: "abort
    the upload and start again ... persevere upload abort --state-file ST". The upload's file
    did not change and every other shard's parts are good; following the advice throws away
    the whole upload. A --file that is not the upload's size is bad input (exit 2), to be
    named as such."""
    file = make_file(15 * MiB)
    other = make_file(10 * MiB, seed=1)
    state = tmp_path / "st"
    created = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                        state, "--shards", "3", "--part-size", "5MiB")  # fmt: skip
    assert created.returncode == 0, created.stderr
    extra = ["--shard", "1/3"] if command == "shard" else []
    given = persevere(s3_env, "upload", command, "--state-file", state, "--file", other, *extra,
                      "--no-progress")  # fmt: skip
    assert given.returncode == 2, given.stderr
    assert "abort" not in given.stderr, given.stderr


def test_a_shard_that_stops_resumable_gives_its_own_command_to_run_again(
    s3_env, bucket, make_file, tmp_path
):
    """README: a failure after the upload was created "prints the exact `persevere upload
    resume` command" (`next_command` in --json). For `upload shard --shard 0/2` that stops
    resumable (exit 3: S3 unreachable; or 130: Ctrl-C, a preempted Slurm task) the command
    given is `persevere upload resume --state-file ST`: not this shard's run again but the
    completion of the whole upload, from this one host, sending every other shard's parts
    too while their hosts may still be at work. What resumes this shard is `persevere upload
    shard --state-file ST --shard 0/2`."""
    file = make_file(15 * MiB)
    state = tmp_path / "st"
    created = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                        state, "--shards", "2", "--part-size", "5MiB")  # fmt: skip
    assert created.returncode == 0, created.stderr
    stopped = persevere(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2",
                        "--endpoint-url", "http://127.0.0.1:1", "--max-retries", "0", "--json",
                        "--no-progress")  # fmt: skip
    assert stopped.returncode == 3, stopped.stderr
    command = json.loads(stopped.stdout)["next_command"] or ""
    assert "upload shard" in command and "0/2" in command, command


def test_a_shard_resubmitted_alone_as_the_slurm_example_says_runs_its_shard(
    s3_env, bucket, make_file, tmp_path
):
    """examples/slurm/upload-array.sh: "A failed or preempted task can be requeued (or
    resubmitted with --array=N): a shard resumes from its own journal". Resubmitted with
    `sbatch --array=2`, Slurm gives the task SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_MIN=2 and
    SLURM_ARRAY_TASK_COUNT=1 (seen on the installed Slurm); persevere takes that for shard 0 of
    1 and refuses: "the upload in ST is split into 4 shards, not 1" (exit 2, which the
    contract says needs a person). Shard 2 of the upload's 4 is what the task is."""
    file = make_file(20 * MiB)
    state = tmp_path / "st"
    created = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                        state, "--shards", "4", "--part-size", "5MiB")  # fmt: skip
    assert created.returncode == 0, created.stderr
    env = {**s3_env, **_RESUBMITTED_TASK_2}
    task = persevere(env, "upload", "shard", "--state-file", state, "--no-progress")
    assert task.returncode == 0, task.stderr
    assert Path(f"{state}.shard-2-of-4").exists()


@pytest.mark.process
def test_a_tree_shard_resubmitted_alone_as_the_slurm_example_says_runs_its_shard(
    s3_env, bucket, tmp_path
):
    """examples/slurm/tree-array.sh: "A failed or preempted task can be requeued (or
    resubmitted with --array=N): its shard resumes from its journal". The script passes
    `--shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT"`, which for `sbatch --array=1` is
    `--shard 1/1`: refused ("not I/N with 0 <= I < N", exit 2), shard 1's files not sent."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(6):
        (tree / f"f{i}").write_bytes(os.urandom(1000))
    dest = f"s3://{bucket}/p/"
    first = persevere(s3_env, "cp", tree, dest, "--shard", "0/2", "--no-progress")
    assert first.returncode == 0, first.stderr
    env = {**os.environ, **s3_env, **_RESUBMITTED_TASK_2, "SLURM_ARRAY_TASK_ID": "1",
           "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "1",
           "SHARDS": "2",  # (the lead: the example now says to give the array's size so)
           "PERSEVERE": str(Path(sys.executable).parent / "persevere"), "TREE": str(tree),
           "DEST": dest}  # fmt: skip
    task = subprocess.run(["bash", ROOT / "examples/slurm/tree-array.sh"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert task.returncode == 0, task.stderr
    assert Path(f"{tree}.persevere.shard-1-of-2").exists()


@pytest.mark.slow
def test_cp_dir_max_bandwidth_caps_its_small_files_too(s3_env, bucket, tmp_path):
    """`--max-bandwidth RATE`: "Cap on the upload rate, shared by all parts" (cp's --help; the
    README's table). `cp DIR` honours it for its large files (multipart) but not for the
    small ones (one PutObject each, up to 8 MiB): a 6 MiB file under `--max-bandwidth 1MiB/s`
    went at 27.8 MiB/s, while `cp FILE` of the same file took 5.2 s. A tree of many small
    files (the usual tree) ignores the cap that protects the link. (A lower bound on the
    time, which a loaded machine can only lengthen: 8 MiB at 512 KiB/s is 16 s when capped,
    about a second here when not.)"""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(8):
        (tree / f"f{i}").write_bytes(os.urandom(MiB))
    sent = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", "--max-bandwidth", "512KiB/s",
                     "--json", "--no-progress")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["elapsed_s"] >= 10, sent.stdout


def test_a_directory_whose_name_is_long_is_uploaded_not_a_traceback(s3_env, bucket, tmp_path):
    """A directory name may be up to 255 bytes. `cp DIR s3://B/P/` of one named with 240
    bytes dies with a traceback (OSError: [Errno 36] File name too long: 'DIR.DIGEST.persevere'),
    exit 1: looking for an earlier journal under its digest name (name + 27 bytes) stats a
    name no file system takes. `cp FILE` cuts its own journal names to fit; the tree does not
    (any name over 228 bytes). `verify DIR s3://B/P/` of it: the same traceback."""
    tree = tmp_path / ("d" * 240)
    tree.mkdir()
    (tree / "a").write_bytes(b"a" * 100)
    checked = persevere(s3_env, "verify", tree, f"s3://{bucket}/p/")
    assert "Traceback" not in checked.stderr, checked.stderr[-600:]
    assert checked.returncode == 4, checked.stdout + checked.stderr[-600:]  # (not sent yet)
    sent = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", "--no-progress")
    assert "Traceback" not in sent.stderr, sent.stderr[-600:]
    assert sent.returncode == 0, sent.stderr[-600:]


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_file_whose_name_is_long_uses_its_processes_without_a_traceback(
    s3_env, bucket, s3_client, tmp_path
):
    """`upload start FILE s3://B/K --processes 2` of a file named with 240 bytes: its state
    file FILE.persevere fits (250 bytes), its shards' journals (FILE.persevere.shard-I-of-2,
    263) do not; each shard process prints a full traceback (OSError: File name too long)
    and exits 1, and the parent sends every part itself and exits 0: two tracebacks under an
    exit 0, and `--processes` not done. (`upload shard` of such an upload: the same
    traceback, exit 1.)"""
    file = tmp_path / ("n" * 240)
    file.write_bytes(os.urandom(11 * MiB))
    result = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--processes", "2",
                       "--part-size", "5MiB", "--no-progress", process=True)  # fmt: skip
    assert result.returncode == 0, result.stderr[-600:]
    assert "Traceback" not in result.stderr, result.stderr[-600:]


def test_the_cp_command_given_for_an_aborted_upload_runs_for_a_path_with_a_space(
    s3_env, bucket, s3_client, tmp_path
):
    """README (Running unattended): an aborted upload's message "gives the `cp` command that
    starts again over the same state file (`next_command` in `--json`)". For a file whose path
    needs quoting (a space, a quote, a `$`), that command quotes the path twice
    (`persevere cp ''"'"'/d/my f.bin'"'"'' ...`): pasted into a shell, or split as a shell
    would, it names a file whose name starts and ends with a quote, and fails "file to upload
    '/d/my f.bin' does not exist" (exit 2): the one command offered to recover does not run."""
    folder = tmp_path / "my dir"
    folder.mkdir()
    file = folder / "my f.bin"
    file.write_bytes(os.urandom(6 * MiB))
    state = tmp_path / "st"
    created = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                        state, "--shards", "2", "--part-size", "5MiB")  # fmt: skip
    assert created.returncode == 0, created.stderr
    s3_client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=_upload_id(state))
    gone = persevere(s3_env, "upload", "resume", "--state-file", state, "--json", "--no-progress")
    assert gone.returncode == 1, gone.stdout + gone.stderr
    command = shlex.split(json.loads(gone.stdout)["next_command"])
    assert command[:2] == ["persevere", "cp"], command
    again = persevere(s3_env, *command[1:], "--no-progress")
    assert again.returncode == 0, again.stderr
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == file.read_bytes()


def test_the_cp_command_given_for_an_aborted_upload_keeps_its_object_options(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """README: resume of an aborted upload "gives the `cp` command that starts again over the
    same state file (`next_command` in `--json`)", the command "with the options a re-run
    could lose". It carries the endpoint, profile, CA bundle and --no-overwrite, not the
    object's options the upload was created with (--metadata, --content-type, --tagging,
    --sse, --storage-class ...), which `cp` then compares with the state file's: run as given,
    it is refused, exit 2, "records that s3://B/K is being uploaded with other options than
    these (ContentType; Metadata)"."""
    file = make_file(6 * MiB)
    state = tmp_path / "st"
    created = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                        state, "--shards", "2", "--part-size", "5MiB", "--metadata",
                        "owner=me", "--content-type", "text/x-foo")  # fmt: skip
    assert created.returncode == 0, created.stderr
    s3_client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=_upload_id(state))
    gone = persevere(s3_env, "upload", "resume", "--state-file", state, "--json", "--no-progress")
    assert gone.returncode == 1, gone.stdout + gone.stderr
    command = shlex.split(json.loads(gone.stdout)["next_command"])
    again = persevere(s3_env, *command[1:], "--no-progress")
    assert again.returncode == 0, again.stderr
    head = s3_client.head_object(Bucket=bucket, Key="k")
    assert head["Metadata"] == {"owner": "me"} and head["ContentType"] == "text/x-foo", head


@pytest.mark.process
def test_the_resume_command_given_for_the_other_kind_of_source_quotes_its_key(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """A file's upload given a stream (`... | persevere cp - s3://B/K --state-file ST`) is
    refused with "to resume it: persevere cp FILE s3://B/K --state-file ST": the file and the
    state file are quoted, the URL is not, so for a key with a space (`my key`) the command,
    pasted, is `persevere cp FILE s3://B/my key ...`: "Got unexpected extra argument"."""
    file = make_file(6 * MiB)
    state = tmp_path / "st"
    url = f"s3://{bucket}/my key"
    created = persevere(s3_env, "upload", "start", file, url, "--state-file", state, "--shards",
                        "2", "--part-size", "5MiB")  # fmt: skip
    assert created.returncode == 0, created.stderr
    refused = persevere(s3_env, "cp", "-", url, "--state-file", state, "--json", input="x")
    assert refused.returncode == 2, refused.stderr
    hint = json.loads(refused.stdout)["hint"]
    command = shlex.split(hint.split("to resume it: ", 1)[1].split("; to upload", 1)[0])
    assert command[:2] == ["persevere", "cp"], command
    again = persevere(s3_env, *command[1:], "--part-size", "5MiB", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert s3_client.get_object(Bucket=bucket, Key="my key")["Body"].read() == file.read_bytes()


def test_the_shard_commands_start_prints_run_on_another_host_s_working_directory(
    s3_env, bucket, make_file, tmp_path
):
    """README (shards): "`upload start --shards N` prints these commands", to run "on any host
    that sees the file". Given a relative --state-file, the text output prints it as given
    (`persevere upload shard --state-file st --shard I/2`), though `--json` gives the absolute
    path and the header records the file's absolute path: run from any other directory (a
    Slurm task's, a pod's), the printed command fails, "state file st does not exist"."""
    file = make_file(10 * MiB)
    here = tmp_path / "here"
    here.mkdir()
    created = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                        "st", "--shards", "2", "--part-size", "5MiB", cwd=here)  # fmt: skip
    assert created.returncode == 0, created.stderr
    line = next(x for x in created.stdout.splitlines() if "upload shard" in x)
    command = shlex.split(line.strip().replace("I/2", "0/2"))
    assert command[:3] == ["persevere", "upload", "shard"], command
    task = persevere(s3_env, *command[1:], "--no-progress", cwd=tmp_path)
    assert task.returncode == 0, task.stderr


@pytest.mark.process
def test_start_with_shards_and_processes_does_not_exit_0_over_its_shards_errors(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """`upload start FILE s3://B/K --shards 3 --processes 2` is taken: the upload is created
    for 3 shards, then each of the 2 shard processes fails ("persevere: error: the upload in
    ST is split into 3 shards, not 2", exit 2 each), and the parent sends every part itself
    and exits 0. Two error lines under an exit 0, and `--processes` silently not done: the
    two flags contradict each other and should be refused (exit 2) before anything is
    created, or the count the header records should be used without an error."""
    file = make_file(15 * MiB)
    state = tmp_path / "st"
    result = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                       "--shards", "3", "--processes", "2", "--part-size", "5MiB",
                       "--no-progress", process=True)  # fmt: skip
    if result.returncode == 0:
        assert "error" not in result.stderr, result.stderr
    else:
        assert result.returncode == 2, result.stderr
        assert not state.exists()


@pytest.mark.slow
@pytest.mark.process
def test_a_tree_whose_shard_process_was_killed_lists_what_it_sent_as_sent(s3_env, bucket, tmp_path):
    """README (Directories): "`--json` gives the lists (sent, sent again, refused, removed,
    failed) and the counts". A first `cp DIR --processes 2` one of whose shard processes is
    killed (the OOM killer, kill -9) after it sent some files ends well ("shard exit codes
    [-9, 0]: the whole run sends what they left", exit 0), but the files the killed process
    sent are counted as `skipped` ("4 unchanged" on a first run) and are in no list: a
    script told what this run uploaded misses them, and "unchanged" is untrue: they were
    never uploaded before this run."""
    import psutil

    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(6):
        (tree / f"f{i}").write_bytes(os.urandom(MiB))
    journal = Path(f"{tree}.persevere.shard-0-of-2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", "cp", str(tree), f"s3://{bucket}/t/", "--processes",
         "2", "--concurrency", "1", "--max-bandwidth", "1MiB/s", "--no-progress", "--json"],
        env={**os.environ, **s3_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(6000):
            if journal.exists() and journal.read_text().count('"type":"done"') >= 1:
                break
            time.sleep(0.01)
        children = [c for c in psutil.Process(proc.pid).children()
                    if "0/2" in " ".join(c.cmdline())]  # fmt: skip
        assert children, "shard 0's process not found"
        children[0].kill()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["skipped"] == 0, result
    assert sorted(result["sent"]) == [f"f{i}" for i in range(6)], result


def test_verify_with_the_state_file_of_a_sharded_upload_names_the_differing_part(
    s3_env, bucket, make_file, tmp_path
):
    """README (What verify proves): a mismatch "names the first differing part when per-part
    references exist: ... or the upload's journal (`--state-file`)". For an upload made in
    shards (`--shards N`, or `--processes N`, every upload that uses more than one core), the
    parts are recorded in the shards' journals beside the state file (which `upload status`,
    `resume` and `cp` all read), but verify reads the state file alone: "the state file does
    not hold every part of its upload", no part named, for the very journal that made it."""
    file = make_file(20 * MiB)
    state = tmp_path / "st"
    url = f"s3://{bucket}/k"
    created = persevere(s3_env, "upload", "start", file, url, "--state-file", state, "--shards",
                        "2", "--part-size", "5MiB")  # fmt: skip
    assert created.returncode == 0, created.stderr
    for shard in ("0/2", "1/2"):
        sent = persevere(s3_env, "upload", "shard", "--state-file", state, "--shard", shard,
                         "--no-progress")  # fmt: skip
        assert sent.returncode == 0, sent.stderr
    done = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr
    copy = tmp_path / "copy.bin"
    data = bytearray(file.read_bytes())
    data[16 * MiB] ^= 0xFF  # in part 4
    copy.write_bytes(bytes(data))
    checked = persevere(s3_env, "verify", copy, url, "--state-file", state)
    assert checked.returncode == 4, checked.stdout + checked.stderr
    assert "first differing part: 4" in checked.stdout, checked.stdout


def test_upload_list_shows_a_key_with_a_newline_on_its_own_row(s3_env, bucket, s3_client):
    """`upload list` prints one row per upload, the key raw: a key with a newline (legal in
    S3; any tool, or anyone with PutObject, can make one) breaks its row in two, and the
    rest of the key reads as a row of its own: `zz/evil\\nkey  2026-01-01T00:00:00+00:00
    9    9.0 GiB  other` shows an upload of 9.0 GiB that does not exist, above a total that
    says 0 B; the real key cannot be copied into `upload abort s3://B/KEY` from it."""
    key = "zz/evil\nkey  2026-01-01T00:00:00+00:00       9    9.0 GiB  other"
    s3_client.create_multipart_upload(Bucket=bucket, Key=key)
    listed = persevere(s3_env, "upload", "list", f"s3://{bucket}/zz")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert len(rows) == 3, rows  # the heading, the upload, the total
