"""``--processes N``: the shards of one upload as N processes of this machine, then completion.

Each shard process has an event loop and a core of its own (the reason for ``--processes``);
it is given its work as one value, a :class:`ShardRequest` pickled on its standard input (the
state file, its shard, the transfer options, the endpoint's overrides, ``verify_parts``, the
file's path, how to log), never a command line rebuilt from flags: every option the caller
gives reaches every shard. Each runs ``persevere upload shard --under-processes`` (its state
file and shard named on its command line for ``ps``), which reads the request with
:func:`read_request`.

A stop signal (Ctrl-C, SIGTERM, SIGHUP) is passed on to the shards once: they settle their
journals and stop, and :class:`Interrupted` is raised, the upload left resumable and never
completed by this process alone. The shards share this process's group, so the terminal's
Ctrl-C reaches them too: each takes a repeat of the stop as the same stop, and a second signal
here (the user insisting) ends them at once (every part they recorded is safe: a journal line
counts once it is fsync'd).

``--processes auto`` is :func:`auto_processes`: one process per usable core, no more than there
is to share out (a file's parts, the shards an upload was made for, a tree's files); 1 is the
usual run in the caller's process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING, BinaryIO

from ._completion import UploadResult, planned
from ._errors import Interrupted, PersevereError
from ._journal import read_state
from ._logs import json_lines
from ._options import MAX_PROCESSES, UploadOptions
from ._plan import PartPlan
from ._platform import STOP_SIGNALS
from ._progress import ProgressSink
from ._request import Request
from ._resume import resume
from ._shard_journals import refuse_shard_journal
from ._sync import run

if TYPE_CHECKING:
    from ._tree import TreeRequest

log = logging.getLogger("persevere")

Runner = Callable[[Callable[[], Awaitable[UploadResult]]], UploadResult]


@dataclass(frozen=True, slots=True)
class ShardRequest:
    """What one shard process is given (pickled on its standard input): shard ``shard`` of
    ``shards`` of the upload ``request`` names, as :func:`._shards.send_one` takes it, and how
    to log (the parent's level and format: ``-q``, ``-v``, ``--log-format``)."""

    request: Request | TreeRequest  # a tree: its files split by path (_tree.TreeRequest)
    shard: int
    shards: int
    log_level: int
    json_lines: bool


def read_request(stream: BinaryIO) -> ShardRequest:
    """A shard process's request, as its parent wrote it (a pipe between two processes of one
    user: pickle is safe here)."""
    request = pickle.load(stream)
    if not isinstance(request, ShardRequest):
        raise TypeError(f"not a shard's request: {type(request).__name__}")
    return request


@dataclass(frozen=True, slots=True)
class ShardRun:
    """How a shard process ended: its exit code, and the bytes it sent (0 if it said none);
    a tree's shard, the files it sent too (for the first time, and again)."""

    exit_code: int
    bytes_sent: int
    sent: tuple[str, ...] = ()
    resent: tuple[str, ...] = ()


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or ``taskset``'s
    share of the machine), else all the machine's (macOS, Windows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def auto_processes(pieces: int, cores: int | None = None) -> int:
    """``--processes auto``: one process per usable core (``cores``, default
    :func:`usable_cores`), no more than the ``pieces`` there are to share out (a file's parts,
    the shards an upload was made for, a tree's files) nor ``MAX_PROCESSES``. 1 (one core; a
    stream or a single part, which cannot be split): the usual run, in the caller's process.
    Cores, not idle ones: a server or other work on the same cores is not counted."""
    return max(1, min(usable_cores() if cores is None else cores, pieces, MAX_PROCESSES))


def pieces_of(state_file: Path) -> int:
    """What the upload ``state_file`` records can be shared out as: the shards it was made for,
    else its parts; 1 when nothing is to be split: a stream (read once, in order) or an upload
    that is over (completed or aborted)."""
    state = read_state(state_file)
    if state.finished is not None or state.header.stream:
        return 1
    return state.header.shards or planned(state.header, PartPlan, state_file).part_count


def shard_count(state_file: Path, processes: int) -> int:
    """How many shard processes an existing upload of a file runs: the shards it was made with
    (a warning if ``processes`` differs), else no more than it has parts."""
    header = read_state(state_file).header
    if header.shards and header.shards != processes:  # its shards, as they were made
        log.warning("the upload is split into %d shards: %d processes", header.shards,
                    header.shards)  # fmt: skip
    return header.shards or min(processes, planned(header, PartPlan, state_file).part_count)


def upload_in_processes(
    request: Request,
    processes: int,
    progress: ProgressSink,
    *,
    runner: Runner = run,
    started: float | None = None,
    sending: ProgressSink | None = None,
) -> UploadResult:
    """Send the upload ``request``'s state file records (made with ``shards=processes``, or any
    upload of a file) as ``processes`` shard processes, each given its transfer options (its
    share of the bandwidth cap), endpoint overrides, ``verify_parts`` and file; then complete
    it here (``runner`` runs the completion's coroutine: the CLI's turns signals into a stop),
    sending whatever a shard left. The result counts what the shards sent too, in the time
    since ``started`` (default: now). ``sending`` sees the shards' progress, as their journals
    record it (:class:`JournalsProgress`)."""
    started = time.monotonic() if started is None else started
    request.transfer.validate()
    try:
        state_path = request.state_file.expanduser().absolute()
        refuse_shard_journal(state_path, read_state(state_path).header)  # (not N shards of it)
        watch = JournalsProgress(state_path, sending) if sending is not None else None
        try:
            shards = run_children(shard_requests(request, processes), watch=watch)
        finally:
            if watch is not None:
                watch.close()
    except PersevereError as exc:
        exc.state_file = str(request.state_file)  # (see _completion.continuing)
        raise
    codes = [shard.exit_code for shard in shards]
    if any(code != 0 for code in codes):
        log.warning("shard exit codes %s: completing sends what they left", codes)
    result = runner(lambda: resume(dataclasses.replace(request, verify_parts=False), progress))
    return dataclasses.replace(
        result,
        bytes_sent=result.bytes_sent + sum(shard.bytes_sent for shard in shards),
        elapsed_s=time.monotonic() - started,
    )


def shard_requests(request: Request | TreeRequest, processes: int) -> list[ShardRequest]:
    """The request of each of ``processes`` shard processes: each its own share of a
    bandwidth cap and its own retry jitter, and the parent's log level and format."""
    share = request.transfer
    if share.max_bandwidth_bytes_s is not None:  # shared among the shards, whole bytes/s
        each = max(1.0, float(share.max_bandwidth_bytes_s // processes))
        share = dataclasses.replace(share, max_bandwidth_bytes_s=each)
    return [
        ShardRequest(dataclasses.replace(request, transfer=_own_jitter(share)), index, processes,
                     log.getEffectiveLevel(), json_lines())
        for index in range(processes)
    ]  # fmt: skip


def _own_jitter(options: UploadOptions) -> UploadOptions:
    """``options`` with a random source of their own: shards that retried with one and the same
    (a copy of this process's) would retry in step after an outage."""
    return dataclasses.replace(options, retry=dataclasses.replace(options.retry, rng=Random()))


def _as_shard() -> None:
    """In a shard process, before it runs persevere. Its stop signals are held (blocked: one
    sent waits) until its ``main`` has their handlers in place: a Ctrl-C while Python starts
    and imports was a ``KeyboardInterrupt`` traceback in each shard. And on Linux, it is sent
    SIGTERM if its parent dies (``kill -9``), so that it settles its journal and stops rather
    than upload on, orphaned (PR_SET_PDEATHSIG)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class JournalsProgress:
    """The shards' progress, for a parent that waits for them: the parts their journals and
    the state file record, read about every second (each a few lines more than last time;
    one that cannot be read yet, as a shard makes it, counts next time)."""

    def __init__(self, state_path: Path, progress: ProgressSink, every_s: float = 1.0) -> None:
        self._state_path, self._progress, self._every_s = state_path, progress, every_s
        self._next = 0.0
        self._done: int | None = None

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every_s
        from ._shard_journals import journals_of

        sizes: dict[int, int] = {}
        total = upload_id = None
        for path in (self._state_path, *journals_of(self._state_path)):
            try:
                state = read_state(path)
            except (PersevereError, OSError):
                continue
            if upload_id is None:  # (the state file's, read first)
                total, upload_id = state.header.file_size, state.header.upload_id
            elif state.header.upload_id != upload_id:
                continue  # another upload's, left beside (merge_shards ignores it too)
            sizes.update((n, part.size) for n, part in state.parts.items())
        if total is None:
            return
        done = min(sum(sizes.values()), total)
        if self._done is None:
            self._progress.start(total, done)
        elif done > self._done:
            self._progress.advance(done - self._done)
        self._done = max(done, self._done or 0)

    def close(self) -> None:
        if self._done is not None:
            self._progress.close()


def run_children(
    requests: list[ShardRequest], *, watch: Callable[[], None] | None = None
) -> list[ShardRun]:
    """One process per request, each given its request on standard input; wait for all, and
    say how each ended. A stop signal is passed on (see the module docstring). ``watch`` is
    called as they run, about 20 times a second."""
    stopped: list[int] = []

    def pass_on(signum: int, frame: object) -> None:
        stopped.append(signum)
        for proc in procs:
            if proc.poll() is None:
                if len(stopped) == 1:
                    proc.send_signal(signum)
                else:
                    proc.kill()

    before = {signum: signal.signal(signum, pass_on) for signum in STOP_SIGNALS}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for request in requests:
            shard = f"{request.shard}/{request.shards}"  # (names it for ps; the value decides)
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "persevere",
                    "upload",
                    "shard",
                    "--state-file",
                    str(request.request.state_file),
                    "--shard",
                    shard,
                    "--under-processes",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,  # its summary; errors and warnings stay on stderr
                preexec_fn=_as_shard,
            )
            procs.append(proc)
            assert proc.stdin is not None
            with proc.stdin, contextlib.suppress(BrokenPipeError):  # (it died: its code says)
                proc.stdin.write(pickle.dumps(request))
        while any(proc.poll() is None for proc in procs):
            # Polled, not blocked in a wait: a signal may be taken by another thread of this
            # process (one the event loop that created the upload left), which interrupts no
            # wait here, and its handler runs once this thread runs Python again.
            time.sleep(0.05)
            if watch is not None:
                watch()
        runs = [_finished(proc) for proc in procs]
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    # A shard stopped by a signal the terminal sent its whole group: a stop all the same.
    if stopped or any(r.exit_code in (129, 130, -2, -15, -1) for r in runs):
        name = ", then ".join(signal.Signals(s).name for s in stopped[:2]) or "a signal"
        settled = "the shards settled their journals"
        if any(run.exit_code == -getattr(signal, "SIGKILL", 9) for run in runs):
            settled = "the shards were stopped at once; every part they recorded is safe"
        stop = Interrupted(f"interrupted ({name}); {settled}")
        stop.exit_code = 129 if stopped and stopped[0] == getattr(signal, "SIGHUP", -1) else 130
        raise stop
    return runs


def _finished(proc: subprocess.Popen[bytes]) -> ShardRun:
    """A shard process that has ended: its exit code, and what it sent (its JSON summary, all
    it writes on standard output: a few bytes, which the pipe holds until read)."""
    assert proc.stdout is not None
    assert proc.returncode is not None
    with proc.stdout:
        output = proc.stdout.read()
    try:
        said = json.loads(output)
        sent, resent = (tuple(map(str, said.get(name, ()))) for name in ("sent", "resent"))
        return ShardRun(proc.returncode, int(said["bytes_sent"]), sent, resent)
    except (ValueError, KeyError, TypeError, AttributeError):
        return ShardRun(proc.returncode, 0)  # it failed (its error is on stderr) or was stopped
