"""A one-node Slurm cluster for the tests: Debian's ``slurm-wlm`` and ``munge``, run as root
without systemd, every file in a temporary directory of its own.

:class:`SlurmCluster` starts ``munged``, ``slurmctld -D`` and ``slurmd -D`` (each in its own
process group), waits until the node is idle, and on exit cancels the jobs left and stops the
three. Nothing under /etc is read or written: the client commands (``sbatch``, ``squeue``,
``scontrol``, ``scancel``) find the cluster through ``SLURM_CONF`` (:meth:`SlurmCluster.env`,
which :meth:`SlurmCluster.run` adds), and Slurm finds its munged through ``AuthInfo=socket=``.

Choices the configuration makes, and why:

- the node declares 8 CPUs whatever the machine has (``SlurmdParameters=config_overrides``), so
  the array tasks of an example asking ``--cpus-per-task=2`` run side by side on a small runner;
- no cgroups, no accounting (``proctrack/linuxproc``, ``task/none``, ``accounting_storage/none``):
  a container has no systemd to delegate cgroups, and ``sacct`` is then unavailable; a finished
  job stays in ``scontrol show job`` (``MinJobAge``) with its state and exit code;
- ``cred_expire=10``: a requeued job waits that long before it may start again (120 s by
  default), and the scheduler looks at pending jobs every second (``sched_interval=1``);
- free ports picked at start, so a second cluster (another pytest worker) does not collide;
- the directory is made with :func:`tempfile.mkdtemp` and opened to all (0755), not under
  pytest's ``tmp_path``: munged refuses a socket in a directory others cannot traverse, and
  ``/tmp/pytest-of-root`` is 0700.

Run as ``python -m tests.slurmcluster`` to get a cluster in the foreground: it prints the
``export SLURM_CONF=...`` line and stops on Ctrl-C. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["PROGRAMS", "SlurmCluster", "SlurmError", "missing_programs"]

# What the cluster needs (Debian: apt-get install slurm-wlm munge; .ci/run does).
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")
# Job states after which a job runs no more (unless requeued).
FINISHED = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
     "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
)  # fmt: skip
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 30


class SlurmError(RuntimeError):
    """The cluster did not start, or a command failed (its output and the daemons' logs)."""


def _which(program: str) -> str | None:
    # The daemons live in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")


def missing_programs() -> list[str]:
    return [program for program in PROGRAMS if _which(program) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class SlurmCluster:
    """``with SlurmCluster() as slurm:`` a controller and one idle node named after this host."""

    def __init__(self, cpus: int = 8) -> None:
        self.cpus = cpus
        self.node = socket.gethostname().split(".")[0]
        self.dir = Path(tempfile.mkdtemp(prefix="persevere-slurm-"))
        self.conf = self.dir / "slurm.conf"
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}

    # -- start and stop ----------------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        missing = missing_programs()
        if missing:
            raise SlurmError(
                f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)"
            )
        if os.geteuid() != 0:
            raise SlurmError("slurmd starts jobs as their user: run as root (CI does, or sudo)")
        self.dir.chmod(0o755)
        for name in ("munge", "state", "spool", "log"):
            (self.dir / name).mkdir(mode=0o755)
        keys = self.dir / "key"
        keys.mkdir(mode=0o700)
        key = keys / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = self.dir / "munge" / "munge.socket"
        self._spawn("munged", _which("munged"), "--foreground", f"--socket={socket_path}",
                    f"--key-file={key}", f"--pid-file={self.dir / 'munge' / 'munged.pid'}",
                    f"--seed-file={self.dir / 'munge' / 'munged.seed'}",
                    f"--log-file={self.dir / 'log' / 'munged.log'}")  # fmt: skip
        self._wait_for(lambda: socket_path.exists(), "munged's socket")
        self.conf.write_text(self._config(socket_path))
        self._spawn("slurmctld", _which("slurmctld"), "-D", "-i")
        self._spawn("slurmd", _which("slurmd"), "-D")
        self._wait_for(self._node_idle, f"node {self.node} idle")

    def _config(self, munge_socket: Path) -> str:
        d = self.dir
        return f"""\
ClusterName=persevere-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=10
StateSaveLocation={d / "state"}
SlurmdSpoolDir={d / "spool"}
SlurmctldPidFile={d / "slurmctld.pid"}
SlurmdPidFile={d / "slurmd.pid"}
SlurmctldLogFile={d / "log" / "slurmctld.log"}
SlurmdLogFile={d / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=600
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""

    def _spawn(self, name: str, *argv: str | None) -> None:
        log = (self.dir / "log" / f"{name}.out").open("wb")
        with log:
            self._daemons[name] = subprocess.Popen(
                [str(arg) for arg in argv],
                env=self.env(os.environ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends it and its children
            )

    def _wait_for(
        self, ready: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S
    ) -> None:
        end = time.monotonic() + timeout_s
        while not ready():
            for name, proc in self._daemons.items():
                if proc.poll() is not None:
                    raise SlurmError(f"{name} exited ({proc.returncode})\n{self.logs()}")
            if time.monotonic() > end:
                raise SlurmError(f"no {what} after {timeout_s:.0f} s\n{self.logs()}")
            time.sleep(0.2)

    def _node_idle(self) -> bool:
        shown = self.run("scontrol", "show", "node", self.node, "-o", check=False)
        return shown.returncode == 0 and re.search(r"\bState=IDLE\b", shown.stdout) is not None

    def stop(self) -> None:
        """Cancel what still runs, stop the daemons (their process groups), remove the
        directory. Safe to call twice, or after a failed start."""
        if "slurmctld" in self._daemons and self._daemons["slurmctld"].poll() is None:
            with contextlib.suppress(SlurmError, subprocess.TimeoutExpired, OSError):
                self._cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._daemons.pop(name, None)
            if proc is not None:
                _end_group(proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _cancel_all(self) -> None:
        jobs = self.run("squeue", "--noheader", "--format=%A").stdout.split()
        if not jobs:
            return
        self.run("scancel", "--signal=KILL", "--full", *jobs, check=False)
        end = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < end and self.run("squeue", "--noheader").stdout.strip():
            time.sleep(0.2)

    def logs(self) -> str:
        parts = []
        for path in sorted((self.dir / "log").glob("*")):
            parts.append(f"--- {path.name}, last lines ---\n{_tail(path)}")
        return "\n".join(parts)

    # -- the client commands -----------------------------------------------------------------
    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: nothing) with SLURM_CONF, and /usr/sbin on PATH."""
        env = dict(base or {})
        env["SLURM_CONF"] = str(self.conf)
        path = env.get("PATH", os.defpath)
        env["PATH"] = path if "/usr/sbin" in path.split(":") else f"{path}:/usr/sbin"
        return env

    def run(
        self,
        *argv: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        check: bool = True,
        timeout_s: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """A client command against this cluster, in ``os.environ`` updated by ``env``."""
        args = [str(arg) for arg in argv]
        done = subprocess.run(
            args,
            env=self.env({**os.environ, **(env or {})}),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and done.returncode != 0:
            raise SlurmError(
                f"{' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done

    def sbatch(
        self,
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> str:
        """``sbatch --parsable ARGS``: the job's id (an array's: the id of all its tasks)."""
        out = self.run("sbatch", "--parsable", *args, env=env, cwd=cwd).stdout
        return out.strip().split(";")[0]

    def jobs(self, job: str) -> dict[str, dict[str, str]]:
        """``scontrol show job JOB``, by task (``12_3``, or ``12`` for a job not an array):
        its fields (JobState, ExitCode, Restarts, JobId, StdOut, ...)."""
        shown = self.run("scontrol", "show", "job", "--oneliner", job).stdout
        jobs = {}
        for line in shown.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if not fields:
                continue
            task = fields.get("ArrayTaskId")
            name = f"{fields['ArrayJobId']}_{task}" if task else fields["JobId"]
            jobs[name] = fields
        return jobs

    def state(self, task: str) -> str:
        return self.jobs(task)[task]["JobState"]

    def wait(self, *jobs: str, timeout_s: float = 120.0) -> dict[str, dict[str, str]]:
        """Until every task of ``jobs`` has finished; their fields (see :meth:`jobs`)."""
        end = time.monotonic() + timeout_s
        while True:
            tasks = {name: f for job in jobs for name, f in self.jobs(job).items()}
            if tasks and all(f["JobState"] in FINISHED for f in tasks.values()):
                return tasks
            if time.monotonic() > end:
                states = {name: f["JobState"] for name, f in tasks.items()}
                raise SlurmError(f"still running after {timeout_s:.0f} s: {states}\n{self.logs()}")
            time.sleep(0.25)

    def wait_running(self, task: str, timeout_s: float = 60.0) -> None:
        end = time.monotonic() + timeout_s
        while (state := self.state(task)) != "RUNNING":
            if state in FINISHED or time.monotonic() > end:
                raise SlurmError(f"{task} is {state}, not running\n{self.logs()}")
            time.sleep(0.1)

    def pids(self, task: str) -> list[int]:
        """The processes of a running task (its batch script's, and what that runs)."""
        job_id = self.jobs(task)[task]["JobId"]
        listed = self.run("scontrol", "listpids", job_id).stdout.splitlines()[1:]
        return [int(line.split()[0]) for line in listed if line.split()]

    def kill(self, task: str) -> None:
        """``kill -9`` the task's processes, as a crash or the OOM killer would: the task
        FAILED (``scancel`` would make it CANCELLED)."""
        for pid in self.pids(task):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def requeue(self, task: str) -> None:
        self.run("scontrol", "requeue", task)


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the daemon's process group, SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # what it started and left behind


def main() -> None:
    with SlurmCluster() as slurm:
        print(f"export SLURM_CONF={slurm.conf} PATH=$PATH:/usr/sbin", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
