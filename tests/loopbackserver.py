"""What the extra S3 servers of the compat matrix share: a subprocess on a loopback port.

:mod:`tests.motoserver` and :mod:`tests.juicefsserver` differ only in the command they run, its
environment and what must exist before it starts; starting, the readiness check (a SigV4-signed
ListBuckets answering 200: the S3 API routes and accepts our keys, not just an open port),
stopping, the log and the foreground ``main`` are here. Standard library only, like
:mod:`tests.s3server` (whose hand-signed ListBuckets this reuses).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import ClassVar, Self

from tests.s3server import _signed_list_buckets

__all__ = ["LoopbackServer", "LoopbackServerError", "find_binary", "free_port"]

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40
_PORT_CLASH_RETRIES = 3  # another process may take the picked port before the server binds it
_CLASH_WORDS = ("address already in use", "bind:")

_running_servers: set[LoopbackServer] = set()


@atexit.register
def _stop_running_servers() -> None:
    for server in list(_running_servers):
        server.stop(kill=True)


class LoopbackServerError(RuntimeError):
    """The server did not come up, or died; the message ends with the tail of its log."""


def find_binary(name: str, package: str) -> Path:
    """``name`` beside the running interpreter (where pip puts a package's scripts), else PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which(name)
    if on_path is None:
        raise LoopbackServerError(
            f"{name!r} not found next to the Python interpreter nor on PATH; install it with "
            f"`pip install '{package}'` (part of the dev extra)"
        )
    return Path(on_path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class LoopbackServer:
    """One S3 server process on ``127.0.0.1:port``, its files and log under ``root``.

    The surface the tests use is :class:`tests.s3server.S3Server`'s: ``endpoint_url``,
    ``env()``, the keys and ``region``, ``start``/``stop``, a context manager.
    """

    name: ClassVar[str]
    access_key: ClassVar[str]
    secret_key: ClassVar[str]
    region: ClassVar[str] = "us-east-1"
    log_name: ClassVar[str] = "server.log"

    def __init__(self, root: Path | None = None, *, port: int | None = None) -> None:
        self.root = Path(root if root is not None else tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.root = self.root.resolve()
        self.log_path = self.root / self.log_name
        self._pinned_port = port
        self._port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None

    # -- what a subclass says ------------------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _extra_env(self) -> dict[str, str]:
        return {}

    def _prepare(self) -> None:
        """Runs before each start (create data directories, format a volume...)."""

    # -- the common part -------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def env(self) -> dict[str, str]:
        """The AWS_* variables that point an SDK or a subprocess at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Start the server and return once a signed ListBuckets answers 200."""
        if self.running:
            raise LoopbackServerError(f"already running at {self.endpoint_url}")
        attempts = 1 if self._pinned_port is not None else _PORT_CLASH_RETRIES
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout_s)
                return
            except LoopbackServerError as exc:
                clash = any(word in str(exc).lower() for word in _CLASH_WORDS)
                if attempt == attempts or not clash:
                    raise
                self._port = free_port()

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM and wait (SIGKILL past STOP_TIMEOUT_S); ``kill=True`` SIGKILLs at once."""
        process, self._process = self._process, None
        _running_servers.discard(self)
        if process is None:
            return
        if process.poll() is None:
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.endpoint_url} {state} root={self.root}>"

    def _start_once(self, timeout_s: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._prepare()
        command = self._command()
        # The machine's AWS_* (a CA bundle, a profile) are not the server's business.
        env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
        env.update(self._extra_env())
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {shlex.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                start_new_session=True,  # a terminal's Ctrl-C reaches only our process
            )
        _running_servers.add(self)
        try:
            self._wait_until_ready(timeout_s)
        except BaseException:
            self.stop(kill=True)
            raise

    def _wait_until_ready(self, timeout_s: float) -> None:
        assert self._process is not None
        deadline_s = time.monotonic() + timeout_s
        while True:
            returncode = self._process.poll()
            if returncode is not None:
                raise LoopbackServerError(
                    f"{self.name} exited with code {returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                status = _signed_list_buckets(self._port, self.access_key, self.secret_key, 2.0)
                problem = None if status == 200 else f"HTTP {status} to a signed ListBuckets"
            except OSError as exc:  # refused, reset, timed out: not listening yet
                problem = f"ListBuckets: {exc!r}"
            if problem is None:
                return
            if time.monotonic() >= deadline_s:
                raise LoopbackServerError(
                    f"{self.name} at {self.endpoint_url} not ready after {timeout_s:.0f} s "
                    f"({problem}); log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    @classmethod
    def main(cls, argv: list[str] | None = None) -> int:
        """Run in the foreground, print eval-able exports, stop on SIGTERM or SIGINT."""
        parser = argparse.ArgumentParser(
            prog=f"python -m tests.{cls.name}server",
            description=f"Run a local {cls.name} S3 server in the foreground; print exports.",
        )
        parser.add_argument("--dir", type=Path, help="files and log (default: a new temp dir)")
        parser.add_argument("--port", type=int, help="port (default: a free one)")
        args = parser.parse_args(argv)

        stop_requested = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop_requested.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, request_stop)

        server = cls(args.dir, port=args.port)
        try:
            server.start()
        except LoopbackServerError as exc:
            print(f"{cls.name}: {exc}", file=sys.stderr)
            return 1
        try:
            for name, value in server.env().items():
                print(f"export {name}={shlex.quote(value)}")
            sys.stdout.flush()
            print(f"{cls.name}: ready at {server.endpoint_url}, log {server.log_path}",
                  file=sys.stderr)  # fmt: skip
            while not stop_requested.wait(0.5):
                if not server.running:
                    print(f"{cls.name}: died; log:\n{server.log_tail()}", file=sys.stderr)
                    return 1
        finally:
            server.stop()
        return 0
