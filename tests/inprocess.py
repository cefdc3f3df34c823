"""Run the ``persevere`` command inside the test's own process, as ``python -m persevere`` would.

A subprocess costs 0.35-0.4 CPU-s of interpreter and import start-up; most CLI tests only
check an exit code, a message or a ``--json`` document, which do not depend on the process.
:func:`run` calls the real entry point (:func:`persevere._cli.main`, so ``sys.argv``, the
early signal handlers and typer's standalone mode are the same) with what a fresh process
would have, and puts back everything it changed:

- ``os.environ`` (replaced whole for the call), the working directory, ``sys.argv``;
- ``sys.stdout``/``sys.stderr``: pipes' stand-ins (not terminals, no ``fileno``), decoded as
  ``subprocess.run(text=True)`` decodes (universal newlines: tqdm's ``\\r`` becomes ``\\n``);
  ``sys.stdin`` reads descriptor 0 as the child would (it inherits the test's);
- the warnings filters of a fresh interpreter (not pytest's ``error``), warnings to stderr;
- an exception that escapes the CLI goes through ``sys.excepthook`` (typer's) to stderr,
  exit 1, as an uncaught one would;
- afterwards: the stop signals' handlers, ``sys.excepthook``, the ``persevere`` logger,
  the CLI's per-process flags (``_cli_run._json_output``, ``_s3.FROZEN_UNTIL_EXIT``) and the
  garbage collector (``gc.freeze`` is meant to last until the process exits).

What it cannot be: a process. Signals, ``kill -9``, ``os._exit``, file locks between two
runs, a pipe on standard input, the installed ``persevere`` script and anything run from a
thread other than the main one (signal handlers need it) go through the subprocess
(``tests.conftest.persevere(..., process=True)``). ``tests/test_inprocess.py`` runs the same
commands both ways and compares what they print and exit with.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["run"]

_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _Pipe(io.TextIOWrapper):
    """What a child's stdout/stderr is when the parent captures it: a pipe, not a terminal."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")

    def text(self) -> str:
        """As ``subprocess.run(text=True)`` reads the pipe: universal newlines."""
        self.flush()
        raw = self.buffer.getvalue()  # type: ignore[attr-defined]
        return io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read()


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _fresh_interpreter_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.resetwarnings()
        # CPython's default filters (python -W unset, not a dev build).
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        warnings.filterwarnings("ignore", category=ImportWarning)
        warnings.filterwarnings("ignore", category=ResourceWarning)
        yield


@contextlib.contextmanager
def _put_back_process_state() -> Iterator[None]:
    from persevere import _cli_run, _journal, _s3

    logger = logging.getLogger("persevere")
    saved_logger = (list(logger.handlers), logger.level, logger.propagate)
    saved_handlers = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    saved_hook = sys.excepthook
    saved_argv = sys.argv
    try:
        yield
    finally:
        for signum, handler in saved_handlers.items():
            signal.signal(signum, handler)
        sys.excepthook = saved_hook
        sys.argv = saved_argv
        logger.handlers[:], logger.level, logger.propagate = saved_logger
        _cli_run._json_output = False
        _cli_run.failed_with = 0
        _journal._COMPLETED_HERE.clear()
        for name in ("botocore", "aiobotocore"):  # (as _logs.setup left them)
            logging.getLogger(name).handlers[:] = []
            logging.getLogger(name).propagate = True
        _s3.FROZEN_UNTIL_EXIT = False
        gc.unfreeze()


def _exit_code(code: object, stderr: io.TextIOBase) -> int:
    """What the interpreter makes of ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=stderr)
    return 1


def run(
    args: list[str],
    env: Mapping[str, str],
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``persevere ARGS`` in this process with exactly ``env`` as its environment."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "the in-process CLI needs the main thread (signal handlers): use process=True"
        )
    from persevere import _cli

    stdout, stderr = _Pipe(), _Pipe()
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    saved_cwd = os.getcwd()
    stdin = open(0, closefd=False)  # the child's stdin: the parent's descriptor 0
    code = 0
    with _put_back_process_state(), _environ(env), _fresh_interpreter_warnings():
        try:
            if cwd is not None:
                os.chdir(cwd)
            sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
            sys.argv = ["persevere", *args]
            try:
                _cli.main()
            except SystemExit as exc:
                code = _exit_code(exc.code, stderr)
            except BaseException as exc:  # an uncaught one: the interpreter's report, exit 1
                if isinstance(exc, KeyboardInterrupt):
                    raise
                try:
                    sys.excepthook(type(exc), exc, exc.__traceback__)
                except Exception:
                    traceback.print_exception(exc, file=stderr)
                code = 1
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            os.chdir(saved_cwd)
            stdin.close()
    return subprocess.CompletedProcess(["persevere", *args], code, stdout.text(), stderr.text())
