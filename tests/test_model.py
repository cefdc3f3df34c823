"""A randomised model of everything that happens to an upload left unattended.

A seeded driver runs persevere and, between runs, does what the world does: kills it (SIGKILL,
SIGTERM, SIGHUP) at random moments, edits the file (with and without its mtime put back),
touches it, grows it, tears or damages the journal, aborts the upload behind its back, fills
the state file's disk. The invariant, checked after every run:

- exit 0 means the object's bytes equal the file's bytes at that moment;
- any other exit ends with persevere's own words (``persevere: ...``), never a traceback;

and, once the world stops interfering, following persevere's advice always reaches exit 0.
``make test`` runs one short seed; ``make test-all`` (marker ``slow``) runs several long ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import persevere, sha256_of_object, signal_when_handled

MiB = 1024 * 1024
FILE_BYTES = 23 * MiB + 12_345  # 5 parts of 5 MiB
# Killed by SIGKILL, or an exit code (SIGTERM/SIGHUP are handled: 130/129, or 0 if done).
OK_CODES = {0, 1, 3, 129, 130, -signal.SIGKILL}


@dataclass
class World:
    env: dict[str, str]
    s3: object
    bucket: str
    file: Path
    disk: Path | None  # a small tmpfs for the state files, when mounting is allowed
    rng: random.Random
    states: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return (self.disk or self.file.parent) / f"upload-{self.states}.persevere"

    def new_state(self) -> None:
        self.states += 1

    # -- persevere --------------------------------------------------------------------------
    def run(self, kill_after_s: float | None, sig: int = signal.SIGKILL) -> tuple[int, str]:
        state = self.state
        if state.exists() and state.stat().st_size == 0:
            state.unlink()  # stopped before the upload was created: nothing to resume
        if state.exists():
            args = ["upload", "resume", "--state-file", state]
        else:
            args = ["upload", "start", self.file, f"s3://{self.bucket}/k", "--state-file",
                    state, "--part-size", "5MiB"]  # fmt: skip
        args += ["--no-progress", "-c", str(self.rng.choice([1, 2, 4]))]
        if kill_after_s is None:  # nothing to time: in this process, at full speed
            done = persevere(self.env, *args)
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
        else:  # capped, so that a run lasts about a second and the kill lands inside it
            code, stdout, stderr = self._killed([*args, "--max-bandwidth", "20MiB/s"],
                                                kill_after_s, sig)  # fmt: skip
        self.log.append(f"{args[1]} -> {code}: {stderr.strip().splitlines()[-1:] or stdout}")
        self.check(code, stdout, stderr)
        return code, stderr

    def _killed(self, args: list, kill_after_s: float, sig: int) -> tuple[int, str, str]:
        """``persevere ARGS`` as a process, sent ``sig`` after ``kill_after_s`` unless done."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "persevere", *map(str, args)],
            env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            signal_when_handled(proc, sig)
            stdout, stderr = proc.communicate(timeout=120)
        return proc.returncode, stdout, stderr

    def check(self, code: int, stdout: str, stderr: str) -> None:
        where = "\n".join(self.log)
        assert "Traceback" not in stderr, f"{where}\n{stderr}"
        assert code in OK_CODES, f"{where}\n{stderr}"
        if code == 0:
            assert sha256_of_object(self.s3, self.bucket, "k") == _sha256(self.file), where
        elif code > 0:
            last = stderr.strip().splitlines()[-1]
            assert last.startswith("persevere: "), f"{where}\n{stderr}"

    def follow_advice(self, code: int, stderr: str) -> None:
        """Do what the message says: resume (the default), abort and start again, or start a
        new upload when this one is finished or gone."""
        if code == 0 or ("state file" in stderr and "already exists" in stderr):
            self.new_state()
        elif "persevere upload abort --state-file" in stderr:
            persevere(self.env, "upload", "abort", "--state-file", self.state)
            self.new_state()
        elif code == 1 and "resumable" not in stderr:
            self.new_state()  # finished, gone, or refused: a new upload

    # -- the world ---------------------------------------------------------------------------
    def edit(self, keep_mtime: bool) -> None:
        st = self.file.stat()
        with self.file.open("r+b") as f:
            f.seek(self.rng.randrange(FILE_BYTES - 4096))
            f.write(self.rng.randbytes(self.rng.choice([1, 4096])))
        if keep_mtime:
            os.utime(self.file, ns=(st.st_atime_ns, st.st_mtime_ns))

    def damage_journal(self, how: str) -> None:
        if not self.state.exists() or self.state.stat().st_size == 0:
            return
        lines = self.state.read_bytes().splitlines(keepends=True)
        if how == "tear" and len(lines) > 1:
            cut = self.rng.randrange(1, len(lines[-1]) + 1)
            self.state.write_bytes(b"".join(lines)[:-cut])
        elif how == "damage" and len(lines) > 2:
            index = self.rng.randrange(1, len(lines) - 1)
            lines[index] = b'{"type":"part","garbled\n'
            self.state.write_bytes(b"".join(lines))

    def abort_behind_its_back(self) -> None:
        if self.state.exists() and self.state.stat().st_size:
            header = json.loads(self.state.read_bytes().splitlines()[0])
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key="k",  # type: ignore[attr-defined]
                                           UploadId=header["upload_id"])  # fmt: skip

    def fill_disk(self, full: bool) -> None:
        if self.disk is None:
            return
        filler = self.disk / "filler"
        if full:
            free = os.statvfs(self.disk).f_bavail * os.statvfs(self.disk).f_frsize
            with filler.open("ab") as f:
                f.write(b"f" * free)
        else:
            filler.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _drive(world: World, steps: int) -> None:
    actions = ["run", "kill", "kill", "kill", "kill", "edit", "edit_keep_mtime", "touch", "grow",
               "tear", "damage", "abort", "disk_full"]  # fmt: skip
    for _ in range(steps):
        action = world.rng.choice(actions)
        world.log.append(f"- {action}")
        if action in ("run", "kill"):
            # From the process's start: ~0.5 s of start-up, then ~1.2 s of upload at the cap.
            delay = world.rng.uniform(0.5, 1.5) if action == "kill" else None
            sig = world.rng.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
            code, stderr = world.run(delay, sig)
            world.follow_advice(code, stderr)
            world.fill_disk(False)  # a full disk is noticed and cleared by the operator
        elif action in ("edit", "edit_keep_mtime"):
            world.edit(keep_mtime=action == "edit_keep_mtime")
        elif action == "touch":
            os.utime(world.file)
        elif action == "grow":
            with world.file.open("ab") as f:
                f.write(world.rng.randbytes(world.rng.randrange(1, 100)))
            with world.file.open("r+b") as f:
                f.truncate(FILE_BYTES)  # back to the planned size, with a new identity
        elif action in ("tear", "damage"):
            world.damage_journal(action)
        elif action == "abort":
            world.abort_behind_its_back()
        elif action == "disk_full":
            world.fill_disk(True)
    # The world stops interfering: persevere's advice must lead to exit 0.
    world.fill_disk(False)
    for _ in range(6):
        code, stderr = world.run(None)
        if code == 0:
            return
        world.follow_advice(code, stderr)
    raise AssertionError("no exit 0 after the world stopped interfering:\n" + "\n".join(world.log))


@pytest.fixture
def world(s3_env, s3_client, bucket, make_file, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True).returncode == 0  # fmt: skip

    def make(seed: int) -> World:
        file = make_file(FILE_BYTES, seed=seed)
        return World(s3_env, s3_client, bucket, file, disk if mounted else None,
                     random.Random(seed))  # fmt: skip

    yield make
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_model_short(world):
    started = time.monotonic()
    driven = world(seed=7)
    _drive(driven, steps=24)
    print("\n".join(driven.log))
    assert time.monotonic() - started < 100


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_model_long(world, seed):
    driven = world(seed=seed)
    _drive(driven, steps=60)
    print("\n".join(driven.log))
