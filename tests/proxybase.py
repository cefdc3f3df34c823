"""What the test proxies share: a loopback listener, one thread per connection, and holds.

:class:`LoopbackProxy` listens on ``127.0.0.1:0``, hands each accepted client to
``_serve`` on a thread of its own, tracks every socket it opens, and on exit closes them all
and releases every :class:`Hold`. :class:`HttpForwarder` adds the HTTP/1.1 message loop (one
request at a time per connection, keep-alive; Content-Length, chunked or close-delimited
bodies; interim 1xx answers) with one hook per request: :meth:`HttpForwarder._decide`.

The proxies built on them: :mod:`tests.faultproxy` (bytes: flip, reset, hold the N-th byte),
:mod:`tests.credproxy` and :mod:`tests.ruleproxy` (requests: refuse, hold, rewrite),
:mod:`tests.httpproxy` (records every exchange, strips or rewrites answers).

A *hold* replaces a bandwidth cap or a sleep used to open a window (for a kill, a signal, a
second process): the proxy keeps a chosen request (say UploadPart 3) or byte until the test
says :meth:`Hold.release`, and the test waits for :meth:`Hold.wait` instead of guessing a
duration. Leaving the proxy releases what is still held, so nothing waits past the test.

Standard library only.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Self
from urllib.parse import urlsplit

CHUNK = 64 * 1024
HOLD_TIMEOUT_S = 120.0  # a hold nobody releases ends with the proxy, or after this


class Hold:
    """A request or byte the proxy keeps until the test releases it."""

    def __init__(self) -> None:
        self._reached = threading.Event()
        self._released = threading.Event()
        self.count = 0  # how many times it held something

    def wait(self, timeout_s: float = 60.0) -> None:
        """Until the proxy holds something here; AssertionError after ``timeout_s``."""
        assert self._reached.wait(timeout_s), f"nothing reached the hold in {timeout_s}s"

    @property
    def reached(self) -> bool:
        return self._reached.is_set()

    def release(self) -> None:
        self._released.set()

    def block(self, max_s: float = HOLD_TIMEOUT_S) -> None:
        """Called by the proxy's thread: say it is here, then wait for the release."""
        self.count += 1
        self._reached.set()
        self._released.wait(max_s)


class LoopbackProxy:
    """A listener on loopback that hands each client connection to ``_serve`` (a thread)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._stopped = threading.Event()  # set on exit: waits inside the proxy end early
        self._sockets: set[socket.socket] = set()
        self._holds: list[Hold] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @classmethod
    def in_front_of(cls, endpoint_url: str, *args: Any, **kwargs: Any) -> Self:
        """A proxy for ``http://host:port`` (an ``S3Server``'s or ``MotoServer``'s URL)."""
        parts = urlsplit(endpoint_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"need an http://host:port endpoint, got {endpoint_url!r}")
        return cls((parts.hostname, parts.port), *args, **kwargs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self, hold: Hold) -> Hold:
        """Make ``hold`` released when the proxy closes (if the test has not already)."""
        with self._lock:
            self._holds.append(hold)
        return hold

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed = True
        self._stopped.set()
        self._listener.close()
        with self._lock:
            sockets, holds = list(self._sockets), list(self._holds)
        for hold in holds:
            hold.release()
        for sock in sockets:
            close(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            threading.Thread(target=self._serve_and_close, args=(client,), daemon=True).start()

    def _serve_and_close(self, client: socket.socket) -> None:
        try:
            self._serve(client)
        finally:
            self._untrack(client)

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def _pause(self, seconds: float) -> None:
        """Sleep inside the proxy (a slow answer, a stall), cut short when the proxy closes."""
        self._stopped.wait(seconds)

    def _connect(self) -> socket.socket:
        """A new connection to the upstream, closed with the proxy."""
        server = socket.create_connection(self.upstream)
        self._track(server)
        return server

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        close(sock)


@dataclass(frozen=True)
class Answer:
    """What :meth:`HttpForwarder._decide` says about a request: answer it here with
    ``refuse`` (the whole response), or forward it after ``hold`` (if any) and rewrite the
    head of its answer with ``rewrite`` (if any)."""

    refuse: bytes | None = None
    hold: Hold | None = None
    rewrite: Callable[[bytes], bytes] | None = None


FORWARD = Answer()


class HttpForwarder(LoopbackProxy):
    """Forwards HTTP/1.1 requests byte for byte (signatures stay valid), one at a time per
    connection; ``Expect: 100-continue`` is answered here and not forwarded."""

    def _decide(self, method: bytes, target: bytes, headers: dict[bytes, bytes]) -> Answer:
        return FORWARD

    def _serve(self, client: socket.socket) -> None:
        server: socket.socket | None = None
        from_client = client.makefile("rb")
        from_server: BinaryIO | None = None
        try:
            while True:
                head = read_head(from_client)
                if head is None:
                    return
                method, headers = parse_head(head)
                target = head.split(b" ", 2)[1]
                if headers.get(b"expect", b"").lower() == b"100-continue":
                    # Answer the 100 ourselves (and strip Expect, which SigV4 does not sign),
                    # so a client that waits for it sends the body, whatever happens next.
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = without_header(head, b"expect")
                answer = self._decide(method, target, headers)
                if answer.refuse is not None:
                    copy_body(from_client, None, headers)
                    client.sendall(answer.refuse)
                    continue
                if answer.hold is not None:
                    answer.hold.block()
                if self._closed:
                    return
                if server is None:
                    server = self._connect()
                    from_server = server.makefile("rb")
                assert from_server is not None
                server.sendall(head)
                copy_body(from_client, server, headers)
                while True:  # interim 1xx answers, then the final one
                    reply = read_head(from_server)
                    if reply is None:
                        return  # the server closed: close the client too
                    status = int(reply.split(b" ", 2)[1])
                    if answer.rewrite is not None and status >= 200:
                        reply = answer.rewrite(reply)
                    client.sendall(reply)
                    if not 100 <= status < 200:
                        break
                _, reply_headers = parse_head(reply)
                if method != b"HEAD" and status not in (204, 304):
                    if not copy_body(from_server, client, reply_headers, until_close=True):
                        return
                if reply_headers.get(b"connection", b"").lower() == b"close":
                    return
        except OSError:
            return
        finally:
            if server is not None:
                self._untrack(server)


def s3_error(status: int, code: str, message: str, request_id: str, *, head_only=False) -> bytes:
    """A whole S3 error response (no body for a HEAD request)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} Refused\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-amz-request-id: {request_id}\r\n"
        "\r\n"
    ).encode()
    return head if head_only else head + body


def read_head(stream: BinaryIO) -> bytes | None:
    """The request or status line and headers, through the blank line; None at a clean EOF."""
    lines: list[bytes] = []
    while True:
        line = stream.readline(CHUNK)
        if not line:
            if lines:
                raise ConnectionError("connection closed inside a message head")
            return None
        if not lines and line in (b"\r\n", b"\n"):
            continue  # tolerated between messages
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def parse_head(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The method (or, for an answer, the protocol) and headers, names lowercased."""
    first, *rest = head.split(b"\r\n")
    headers = {}
    for line in rest:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return first.split(b" ", 1)[0], headers


def without_header(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\r\n")
    return b"\r\n".join(line for line in lines if line.partition(b":")[0].strip().lower() != name)


def copy_body(
    source: BinaryIO,
    sink: socket.socket | None,
    headers: dict[bytes, bytes],
    *,
    until_close: bool = False,
) -> bool:
    """Copy (``sink=None``: discard) one message body; False when it ended the connection."""

    def send(data: bytes) -> None:
        if sink is not None:
            sink.sendall(data)

    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while True:
            size_line = source.readline(CHUNK)
            if not size_line:
                raise ConnectionError("connection closed inside a chunked body")
            send(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    line = source.readline(CHUNK)
                    send(line)
                    if line in (b"\r\n", b"\n", b""):
                        return True
            _copy_exactly(source, send, size + 2)  # the chunk and its CRLF
    length = headers.get(b"content-length")
    if length is not None:
        _copy_exactly(source, send, int(length))
        return True
    if until_close:  # an answer without a length ends with the connection
        while data := source.read1(CHUNK):  # type: ignore[attr-defined]
            send(data)
        return False
    return True  # a request without a body


def _copy_exactly(source: BinaryIO, send: Callable[[bytes], None], size: int) -> None:
    while size:
        data = source.read1(min(size, CHUNK))  # type: ignore[attr-defined]
        if not data:
            raise ConnectionError("connection closed inside a body")
        send(data)
        size -= len(data)


def close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
