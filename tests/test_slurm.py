"""The README's Slurm example, run for real on a one-node Slurm (tests/slurmcluster.py).

The commands are the ones examples/slurm/upload-array.sh shows in its header, and the job is
that script, with its paths swapped for the test's: the installed command for this Python's
persevere, the Lustre paths for the test's file and state file, 16 shards for 4.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import persevere
from persevere._journal import read_state
from persevere._shards import shard_range
from tests.conftest import sha256_of_file, sha256_of_object
from tests.proxybase import Hold
from tests.ruleproxy import hold_part
from tests.slurmcluster import SlurmCluster, missing_programs

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "slurm" / "upload-array.sh"


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    """One cluster for the module's tests (about 1 s to start, 2 s to stop)."""
    missing = missing_programs()
    if missing:
        pytest.skip(f"no Slurm here ({', '.join(missing)}): apt-get install slurm-wlm munge")
    with SlurmCluster() as cluster:
        yield cluster


def usage_commands(script: str) -> list[str]:
    """The commands of the script's header (``#   command \\`` and its continued lines),
    one string each, as bash reads them."""
    lines = [line[1:] for line in script.splitlines() if line.startswith("#   ")]
    commands, current = [], []
    for line in lines:
        current.append(line)
        if not line.endswith("\\"):
            commands.append("\n".join(current))
            current = []
    return commands


def swapped(text: str, swaps: dict[str, str]) -> str:
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def bash(command: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    return done.stdout


def recorded_parts(journal: Path) -> int:
    return journal.read_bytes().count(b'"type":"part"') if journal.exists() else 0


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.timeout(240)
def test_the_array_example_with_a_task_killed_and_requeued(
    slurm, rule_proxy, bucket, s3_client, make_file, tmp_path
):
    """start --shards 4, the array of 4 shards, one task killed (kill -9) while it holds a
    part in flight and requeued (scontrol requeue), the completing job after the array: the
    object is the file, the upload completed, no multipart upload left."""
    env, proxy = rule_proxy
    file = make_file(96 * MiB, seed=270)
    state = tmp_path / "state" / "ckpt.persevere"
    state.parent.mkdir()
    job_script = tmp_path / "upload-array.sh"
    swaps = {
        "/opt/persevere/bin/persevere": f"{shlex.quote(sys.executable)} -m persevere",
        "/lustre/data/ckpt.bin": str(file),
        "s3://bucket/": f"s3://{bucket}/",
        "/lustre/state/ckpt.persevere": str(state),
        "--shards 16": "--shards 4",
        "--array=0-15": "--array=0-3",
        "examples/slurm/upload-array.sh": str(job_script),
    }
    text = swapped(SCRIPT.read_text(), swaps)
    job_script.write_text(text)
    start, array, completion = usage_commands(text)
    # The jobs get this environment (sbatch exports the submitter's): the endpoint, the keys,
    # this persevere.
    pythonpath = str(Path(persevere.__file__).parent.parent)
    env = slurm.env({**os.environ, **env, "PYTHONPATH": pythonpath})

    began = time.monotonic()
    bash(start, env, tmp_path)
    header = json.loads(state.read_text().splitlines()[0])
    parts = -(-header["file_size"] // header["part_size"])
    shard1 = shard_range(parts, 1, 4)
    assert len(shard1) >= 2, parts
    # Shard 1's last part is held by the proxy: the task is killed with that part in flight.
    held = proxy.hold(Hold())
    proxy.rules.insert(0, hold_part(shard1[-1], held))

    job = bash(f'{array}\necho "$jobid"', env, tmp_path).strip()
    task = f"{job}_1"
    held.wait(60)
    journal = Path(f"{state}.shard-1-of-4")
    end = time.monotonic() + 60
    while recorded_parts(journal) < len(shard1) - 1 and time.monotonic() < end:
        time.sleep(0.05)
    assert recorded_parts(journal) == len(shard1) - 1
    slurm.kill(task)
    killed = slurm.wait(task, timeout_s=30)[task]
    held.release()
    assert (killed["JobState"], killed["ExitCode"]) == ("FAILED", "0:9")
    slurm.requeue(task)

    submitted = bash(completion, {**env, "jobid": job}, tmp_path)
    [completing] = re.findall(r"Submitted batch job (\d+)", submitted)
    jobs = slurm.wait(job, completing, timeout_s=150)
    elapsed = time.monotonic() - began

    outputs = {name: Path(fields["StdOut"]).read_text() for name, fields in jobs.items()}
    report = f"{outputs=}\n{slurm.logs()}"
    assert {name: (f["JobState"], f["ExitCode"]) for name, f in jobs.items()} == {
        **{f"{job}_{i}": ("COMPLETED", "0:0") for i in range(4)},
        completing: ("COMPLETED", "0:0"),
    }, report
    assert jobs[task]["Restarts"] == "1", report
    for i in range(4):
        shard = shard_range(parts, i, 4)
        assert f"shard {i}/4: parts {shard[0]}..{shard[-1]} done" in outputs[f"{job}_{i}"], report
    # The requeued task sent what its journal lacked: the part in flight when it was killed.
    [sent] = re.findall(r"shard 1/4: .* done, ([\d.]+) MiB sent", outputs[task])
    assert float(sent) * MiB == header["part_size"], report
    assert f"96.0 MiB in {parts} part(s)" in outputs[completing], report
    assert sha256_of_object(s3_client, bucket, "ckpt.bin") == sha256_of_file(file)
    assert read_state(state).finished == "completed"
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    print(f"the array, a task killed and requeued, the completion: {elapsed:.1f} s")


TREE_SCRIPT = ROOT / "examples" / "slurm" / "tree-array.sh"


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.timeout(240)
def test_the_tree_array_example_with_a_task_killed_and_requeued(
    slurm, rule_proxy, bucket, s3_client, tmp_path
):
    """A tree of mixed files as an array of 3 shards (cp DIR --shard I/N), the task holding a
    multipart file killed (kill -9) with a part in flight and requeued, then the whole run:
    every object equals its file, the shards' journals taken in, no upload left."""
    import random

    from persevere._tree_journal import shard_of

    env, proxy = rule_proxy
    tree = tmp_path / "ckpt"
    files = {"big.bin": 20 * MiB + 3, "a/small": 1000, "a/five": 5 * MiB, "empty": 0}
    files.update({f"many/{i}": 100 * i for i in range(12)})
    for rel, size in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(random.Random(rel).randbytes(size))
    wrapper = tmp_path / "bin" / "persevere"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m persevere "$@"\n')
    wrapper.chmod(0o755)
    job_script = tmp_path / "tree-array.sh"
    swaps = {
        "/opt/persevere/bin/persevere": str(wrapper),
        "/lustre/data/ckpt": str(tree),
        "s3://bucket/ckpt/": f"s3://{bucket}/ckpt/",
        "--array=0-15": "--array=0-2",
        "examples/slurm/tree-array.sh": str(job_script),
    }
    text = swapped(TREE_SCRIPT.read_text(), swaps)
    job_script.write_text(text)
    array, completion = usage_commands(text)
    pythonpath = str(Path(persevere.__file__).parent.parent)
    env = slurm.env({**os.environ, **env, "PYTHONPATH": pythonpath})

    # The big file's last part (8 MiB parts: 3) is held: its task is killed with it in flight.
    held = proxy.hold(Hold())
    proxy.rules.insert(0, hold_part(3, held))
    job = bash(f'{array}\necho "$jobid"', env, tmp_path).strip()
    task = f"{job}_{shard_of('big.bin', 3)}"
    held.wait(90)
    slurm.kill(task)
    killed = slurm.wait(task, timeout_s=30)[task]
    held.release()
    assert (killed["JobState"], killed["ExitCode"]) == ("FAILED", "0:9")
    proxy.rules.pop(0)
    slurm.requeue(task)

    submitted = bash(completion, {**env, "jobid": job}, tmp_path)
    [completing] = re.findall(r"Submitted batch job (\d+)", submitted)
    jobs = slurm.wait(job, completing, timeout_s=150)
    outputs = {name: Path(fields["StdOut"]).read_text() for name, fields in jobs.items()}
    report = f"{outputs=}\n{slurm.logs()}"
    assert {name: (f["JobState"], f["ExitCode"]) for name, f in jobs.items()} == {
        **{f"{job}_{i}": ("COMPLETED", "0:0") for i in range(3)},
        completing: ("COMPLETED", "0:0"),
    }, report
    assert jobs[task]["Restarts"] == "1", report
    assert (
        f"{len(files)} file(s): 0 sent, 0 sent again, {len(files)} unchanged"
        in (outputs[completing])
    ), report  # the shards did it all; the whole run only took their journals in
    for rel in files:
        assert sha256_of_object(s3_client, bucket, f"ckpt/{rel}") == sha256_of_file(tree / rel)
    assert not list(tmp_path.glob("ckpt.persevere.shard-*"))
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
