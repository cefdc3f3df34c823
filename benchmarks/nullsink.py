"""An S3 *null sink*: nginx answering a multipart upload's requests and storing nothing.

What a client can do when the server costs almost nothing: its own ceiling, and its own CPU
per GiB without a server pushing back. Standard library only, with benchmarks.model (the
harness and the tests can both use it); needs nginx (Debian: ``apt-get install -y nginx-light``).

    with NullSink() as sink:                       # nginx on a free loopback port
        key = sink.key_for(size)                   # HeadObject of this key answers ``size``
        ...upload to sink.endpoint_url, any credentials...

    python -m benchmarks.nullsink [--port N] [--access-log]   # foreground; prints export lines

What it answers (path-style requests, ``/BUCKET/KEY``):

- ``POST ?uploads`` (CreateMultipartUpload): ``InitiateMultipartUploadResult`` XML, UploadId
  ``nullsink``;
- ``PUT`` (UploadPart, PutObject): 200 with ``ETag: "nullsink"`` and every ``x-amz-checksum-*``
  request header echoed back, *after* the whole body was read; the body is thrown away;
- ``POST ?uploadId=`` (CompleteMultipartUpload): ``CompleteMultipartUploadResult`` XML echoing
  the request's full-object checksum and checksum type headers, if any;
- ``HEAD`` (HeadObject): 200 with the object's size and the completed ETag
  (``"nullsink-1"``), for a key ending in ``size-N`` (see :meth:`NullSink.key_for`) or one
  declared with :meth:`NullSink.expect`; else 404;
- ``DELETE`` (AbortMultipartUpload): 204.

Why the body is read before the answer: nginx's cheapest way to drop a body (``return 200``)
answers as soon as the headers arrive and discards the body *afterwards*, so a client would
see each part "done" before it had sent it: nothing like S3, and wall times that flatter the
client. ``mirror_request_body on`` makes nginx read the whole body first (into a buffer of
``client_body_buffer_size``: parts up to that size never touch a disk; larger ones go to a
temporary file under the sink's directory, which should then be on tmpfs); a static handler
then refuses the PUT (405), and ``error_page`` turns that into the 200 with the ETag.

The part ETag is not an MD5 on purpose: a client that predicts the multipart ETag from MD5
ETags (persevere does) then has nothing to predict and does not warn that the sink's
completed ETag differs. The sizes behind HEAD are sparse files (``truncate``): a HEAD is an
``fstat``, and nothing is ever read.

nginx runs as one process (``master_process off``) by default, so the server's CPU is that
process's (:attr:`NullSink.pid`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType, TracebackType

from benchmarks.model import MiB

__all__ = ["NullSink", "NullSinkError", "find_nginx"]

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 10.0
# Parts up to this size are read into memory; larger ones go to a temporary file.
DEFAULT_BODY_BUFFER_BYTES = 64 * MiB
ACCESS_KEY = "NULLSINKACCESSKEY000"
SECRET_KEY = "nullsink-secret-key-anything-goes"
REGION = "us-east-1"
PART_ETAG = '"nullsink"'
UPLOAD_ID = "nullsink"
# The checksum headers S3 echoes on UploadPart (and CompleteMultipartUpload), by XML element.
CHECKSUMS = {
    "ChecksumCRC64NVME": "x_amz_checksum_crc64nvme",
    "ChecksumCRC32": "x_amz_checksum_crc32",
    "ChecksumCRC32C": "x_amz_checksum_crc32c",
    "ChecksumSHA1": "x_amz_checksum_sha1",
    "ChecksumSHA256": "x_amz_checksum_sha256",
}
_NO_NGINX = (
    "nginx not found (on PATH or in /usr/sbin); install it with: apt-get install -y nginx-light"
)
_SIZE_KEY_RE = re.compile(r"size-(\d+)$")


class NullSinkError(RuntimeError):
    """nginx is missing, refused the configuration, or did not come up."""


def find_nginx() -> Path:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise NullSinkError(_NO_NGINX)
    return Path(found)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _element(name: str, value: str) -> str:
    return f"<{name}>{value}</{name}>"


def _xml(root: str, inner: str) -> str:
    """An S3 XML answer, quoted for an nginx string."""
    xmlns = "http://s3.amazonaws.com/doc/2006-03-01/"
    text = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{xmlns}">{inner}</{root}>'
    return text.replace('"', '\\"').replace("\n", "\\n")


def nginx_config(
    root: Path,
    port: int,
    *,
    workers: int = 1,
    access_log: bool = False,
    body_buffer_bytes: int = DEFAULT_BODY_BUFFER_BYTES,
) -> str:
    """The whole nginx.conf of a sink rooted at ``root`` (see the module docstring)."""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {root / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    echo_part = "\n".join(
        f"            add_header {var.replace('_', '-')} $http_{var} always;"
        for var in CHECKSUMS.values()
    )
    checksum_maps = "\n".join(
        f'    map $http_{var} $ns_xml_{var} {{ "" ""; '
        f'default "{_element(name, "$http_" + var)}"; }}'
        for name, var in CHECKSUMS.items()
    )
    process = (
        "master_process off;\nworker_processes 1;"
        if workers == 1
        else f"worker_processes {workers};"
    )
    log = f"access_log {root / 'access.log'} sink;" if access_log else "access_log off;"
    create_xml = _xml(
        "InitiateMultipartUploadResult",
        _element("Bucket", "$ns_bucket")
        + _element("Key", "$ns_key")
        + _element("UploadId", UPLOAD_ID),
    )
    complete_xml = _xml(
        "CompleteMultipartUploadResult",
        _element("Location", f"http://{HOST}:{port}/$ns_bucket/$ns_key")
        + _element("Bucket", "$ns_bucket")
        + _element("Key", "$ns_key")
        + _element("ETag", "&quot;nullsink-1&quot;")
        + "".join(f"$ns_xml_{var}" for var in CHECKSUMS.values())
        + "$ns_xml_type",
    )
    denied_xml = _xml(
        "Error",
        _element("Code", "AccessDenied") + _element("Message", "a null sink keeps no parts"),
    )
    return f"""# Generated by benchmarks/nullsink.py: an S3 null sink. Do not edit; regenerate.
daemon off;
{process}
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    log_format sink '$request_method $request_uri $status $request_length $request_time';
    {log}
{temp_paths}
    server_tokens off;
    default_type application/xml;
    client_max_body_size 0;
    client_body_buffer_size {body_buffer_bytes};
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    # Path-style requests: /BUCKET/KEY
    map $uri $ns_bucket {{ "~^/(?<b>[^/]+)" $b; default ""; }}
    map $uri $ns_key {{ "~^/[^/]+/(?<k>.+)$" $k; default ""; }}
    map "$request_method:$arg_uploadId" $ns_complete {{ "~^POST:." 1; default ""; }}
    map "$request_method:$arg_uploadId" $ns_list_parts {{ "~^GET:." 1; default ""; }}
    map $uri $ns_size {{ "~size-(?<n>[0-9]+)$" $n; default "unknown"; }}
{checksum_maps}
    map $http_x_amz_checksum_type $ns_xml_type {{
        "" ""; default "{_element("ChecksumType", "$http_x_amz_checksum_type")}";
    }}
    server {{
        listen {HOST}:{port} backlog=1024;
        root {root};
        location / {{
            if ($request_method = PUT) {{
                rewrite ^ /.nullsink/put last;
            }}
            if ($request_method = DELETE) {{
                return 204;
            }}
            if ($ns_complete) {{
                return 200 "{complete_xml}";
            }}
            # ListParts: a sink keeps no parts, so it cannot say which it has; refusing it is
            # what an identity without s3:ListMultipartUploadParts gets, and persevere then
            # resumes (and completes shards) from its journals alone.
            if ($ns_list_parts) {{
                return 403 "{denied_xml}";
            }}
            if ($args ~ "(^|&)uploads(=|&|$)") {{
                return 200 "{create_xml}";
            }}
            if ($request_method = POST) {{
                return 501;
            }}
            # HEAD (and GET): a declared object, else a key ending in size-N; its ETag the
            # one CompleteMultipartUpload gave (as S3's), not nginx's of the sparse file.
            etag off;
            add_header ETag '"nullsink-1"';
            try_files /objects$uri /sizes/$ns_size =404;
        }}
        location = /.nullsink/put {{
            internal;
            # Read the whole body before answering (see the module docstring)...
            mirror /.nullsink/null;
            mirror_request_body on;
            # ...then the static handler refuses the PUT, and this turns that into the answer.
            error_page 405 = @part_stored;
        }}
        location = /.nullsink/null {{
            internal;
            return 204;
        }}
        location @part_stored {{
            add_header ETag '{PART_ETAG}' always;
{echo_part}
            return 200;
        }}
    }}
}}
"""


class NullSink:
    """nginx as an S3 null sink on a free loopback port; a context manager."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        port: int | None = None,
        workers: int = 1,
        access_log: bool = False,
        body_buffer_bytes: int = DEFAULT_BODY_BUFFER_BYTES,
    ) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="nullsink-")) if root is None else root
        self.port = port
        self.workers = workers
        self.access_log = access_log
        self.body_buffer_bytes = body_buffer_bytes
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self._process: subprocess.Popen[bytes] | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise NullSinkError("the sink is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """nginx's (with one worker, the only) process: measure the server's CPU here."""
        if self._process is None:
            raise NullSinkError("the sink is not started")
        return self._process.pid

    def start(self) -> NullSink:
        nginx = find_nginx()
        for name in ("objects", "sizes", "tmp"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # another process may take the picked port first
            port = self.port if self.port is not None else _free_port()
            conf = self.root / "nginx.conf"
            conf.write_text(
                nginx_config(
                    self.root,
                    port,
                    workers=self.workers,
                    access_log=self.access_log,
                    body_buffer_bytes=self.body_buffer_bytes,
                )
            )
            log = (self.root / "error.log").open("ab")
            process = subprocess.Popen(
                [
                    str(nginx),
                    "-p",
                    str(self.root),
                    "-c",
                    str(conf),
                    "-e",
                    str(self.root / "error.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
            log.close()
            if self._wait_listening(process, port):
                self._process = process
                self.port = port
                return self
            if self.port is not None or attempt == 2:
                break
        raise NullSinkError(f"nginx did not start:\n{self._log_tail()}")

    def _wait_listening(self, process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        process.kill()
        process.wait()
        return False

    def _log_tail(self) -> str:
        try:
            return "\n".join((self.root / "error.log").read_text().splitlines()[-20:])
        except OSError:
            return "(no error log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: finish requests in progress
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> NullSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what HEAD answers -----------------------------------------------------------------

    def key_for(self, size: int, prefix: str = "nullsink") -> str:
        """A fresh key whose HeadObject answers ``size`` bytes: ``PREFIX/<uuid>/size-N``."""
        sizes = self.root / "sizes"
        sizes.mkdir(parents=True, exist_ok=True)
        path = sizes / str(size)
        if not path.exists():
            with path.open("wb") as sparse:
                sparse.truncate(size)
        return f"{prefix}/{uuid.uuid4().hex}/size-{size}"

    def expect(self, bucket: str, key: str, size: int) -> None:
        """Make HeadObject of ``bucket/key`` answer ``size`` bytes (any key)."""
        path = self.root / "objects" / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as sparse:
            sparse.truncate(size)

    def environment(self) -> dict[str, str]:
        """AWS variables that point an SDK-style client at the sink."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }


def size_of_key(key: str) -> int | None:
    """The size a :meth:`NullSink.key_for` key announces, if it is one."""
    match = _SIZE_KEY_RE.search(key)
    return int(match.group(1)) if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nullsink",
        description="Run an S3 null sink (nginx) in the foreground until SIGTERM or Ctrl-C.",
    )
    parser.add_argument("--port", type=int, help="loopback port (default: a free one)")
    parser.add_argument("--dir", type=Path, help="working directory (default: a temporary one)")
    parser.add_argument("--workers", type=int, default=1, help="nginx worker processes")
    parser.add_argument("--access-log", action="store_true", help="log requests to DIR/access.log")
    args = parser.parse_args(argv)
    sink = NullSink(args.dir, port=args.port, workers=args.workers, access_log=args.access_log)
    try:
        sink.start()
    except NullSinkError as exc:
        print(f"nullsink: {exc}", file=sys.stderr)
        return 1
    stop = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for name, value in sink.environment().items():
            print(f"export {name}={value}")
        print(
            f"# nginx pid {sink.pid}, directory {sink.root}; keys ending in size-N answer HEAD "
            "with N bytes",
            flush=True,
        )
        while not stop and sink._process is not None and sink._process.poll() is None:
            time.sleep(0.2)
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
