"""A second, independent S3 implementation on loopback (moto's server) for the tests.

SeaweedFS (:mod:`tests.s3server`) is one implementation with its own quirks; a test that passes
only there proves persevere works with SeaweedFS. moto is written against AWS's documented
behaviour by different people, in another language, so the integration subset in
``tests/compat`` runs against both. Standard library only, like :mod:`tests.s3server`, so
scripts can use it without the test extras (moto itself comes from ``moto[server]``, part of
the dev extra).

What moto is and is not (see /work/notes/compat-findings.md for the probed details):
- it keeps everything in memory: ``stop()`` then ``start()`` gives an empty server on the same
  port, not the same data (SeaweedFS keeps its data);
- it accepts any credentials and does not check signatures, so there is no read-only identity;
- ``min_part_size`` sets ``S3_UPLOAD_PART_MIN_SIZE`` (5 MiB, as AWS, by default): 1 lets tests
  complete uploads of tiny parts.

Run as ``python -m tests.motoserver [--port N]`` to get a server in the foreground; it prints
``export AWS_...=...`` lines for ``eval`` and stops on SIGTERM or SIGINT.
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

# The same hand-signed ListBuckets proves moto routes and answers S3 requests, not just that a
# port is open (moto's server dispatches on the service named in the Authorization header).
from tests.s3server import _signed_list_buckets

__all__ = ["MotoServer", "MotoServerError", "find_moto_server"]

REGION = "us-east-1"
HOST = "127.0.0.1"
# moto accepts any keys; these only have to look like keys (and be ours, not the machine's).
ACCESS_KEY = "PERSEVEREMOTOKEY0000"
SECRET_KEY = "persevere-moto-secret-key-for-local-tests"

STARTUP_TIMEOUT_S = 60.0  # importing flask and moto takes ~1-3 s on this machine
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40
_PORT_CLASH_RETRIES = 3  # another process may take the picked port before moto binds it

_running_servers: set[MotoServer] = set()


@atexit.register
def _stop_running_servers() -> None:
    for server in list(_running_servers):
        server.stop(kill=True)


class MotoServerError(RuntimeError):
    """The server did not come up, or died; the message ends with the tail of its log."""


def find_moto_server() -> Path:
    """``moto_server`` of the running venv (``moto[server]`` installs it there), else PATH's."""
    beside_python = Path(sys.executable).parent / "moto_server"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("moto_server")
    if on_path is None:
        raise MotoServerError(
            "'moto_server' not found next to the Python interpreter nor on PATH; "
            "install it with `pip install 'moto[server]'` (part of the dev extra)"
        )
    return Path(on_path)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class MotoServer:
    """A ``moto_server`` process serving S3 on loopback, its log under ``root``.

    The same surface as :class:`tests.s3server.S3Server` where the tests need it
    (``endpoint_url``, ``env()``, keys, ``region``, ``start``/``stop``, a context manager), so
    a fixture can hand either to a test.
    """

    name = "moto"
    access_key = ACCESS_KEY
    secret_key = SECRET_KEY
    region = REGION

    def __init__(
        self,
        root: Path | None = None,
        *,
        port: int | None = None,
        min_part_size: int | None = None,
        moto_server: Path | None = None,
    ) -> None:
        self.root = Path(root if root is not None else tempfile.mkdtemp(prefix="moto-")).resolve()
        self.log_path = self.root / "moto.log"
        self._moto_server = moto_server if moto_server is not None else find_moto_server()
        self._pinned_port = port
        self._port = port if port is not None else _free_port()
        self._min_part_size = min_part_size
        self._process: subprocess.Popen[bytes] | None = None

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
        """Start moto and return once a signed ListBuckets answers 200."""
        if self.running:
            raise MotoServerError(f"already running at {self.endpoint_url}")
        attempts = 1 if self._pinned_port is not None else _PORT_CLASH_RETRIES
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout_s)
                return
            except MotoServerError as exc:
                if attempt == attempts or "Address already in use" not in str(exc):
                    raise
                self._port = _free_port()

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

    def __enter__(self) -> MotoServer:
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
        return f"<MotoServer {self.endpoint_url} {state} root={self.root}>"

    def _start_once(self, timeout_s: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [str(self._moto_server), "-H", HOST, "-p", str(self._port)]
        # moto needs no credentials; the machine's AWS_* (a CA bundle, a profile) stay out.
        env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
        env.pop("MOTO_PORT", None)
        if self._min_part_size is not None:
            env["S3_UPLOAD_PART_MIN_SIZE"] = str(self._min_part_size)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {shlex.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
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
                raise MotoServerError(
                    f"moto_server exited with code {returncode} while starting; "
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
                raise MotoServerError(
                    f"moto at {self.endpoint_url} not ready after {timeout_s:.0f} s "
                    f"({problem}); log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.motoserver",
        description="Run a local moto S3 server in the foreground; print eval-able exports.",
    )
    parser.add_argument("--dir", type=Path, help="log directory (default: a new temp dir)")
    parser.add_argument("--port", type=int, help="port (default: a free one)")
    parser.add_argument(
        "--min-part-size", type=int, help="S3_UPLOAD_PART_MIN_SIZE (default: moto's 5 MiB)"
    )
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, request_stop)

    server = MotoServer(args.dir, port=args.port, min_part_size=args.min_part_size)
    try:
        server.start()
    except MotoServerError as exc:
        print(f"motoserver: {exc}", file=sys.stderr)
        return 1
    try:
        for name, value in server.env().items():
            print(f"export {name}={shlex.quote(value)}")
        sys.stdout.flush()
        print(f"motoserver: ready at {server.endpoint_url}, log {server.log_path}", file=sys.stderr)
        while not stop_requested.wait(0.5):
            if not server.running:
                print(f"motoserver: moto died; log:\n{server.log_tail()}", file=sys.stderr)
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
