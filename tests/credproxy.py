"""An HTTP-aware reverse proxy for the tests: an S3 endpoint that declares credentials expired.

Sits between the client and the S3 server on loopback and forwards requests one at a time per
connection (keep-alive; Content-Length, chunked or close-delimited bodies; interim 1xx answers).
It reads each request's access key from its SigV4 ``Authorization`` header
(``Credential=AKID/date/region/s3/aws4_request``) and counts requests per key. Once *armed*, it
answers every request signed with a key in ``expire`` as S3 answers a dead session: HTTP 400,
``<Code>ExpiredToken</Code>``, without passing it on. It arms itself after ``arm_after``
requests signed with those keys were forwarded, first calling ``on_armed`` (under its lock, so
no request is refused before the callback has, say, moved a credentials source to another key).

Standard library, one thread per client connection: simple enough to trust in tests.
"""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import BinaryIO

CHUNK = 64 * 1024
_CREDENTIAL_RE = re.compile(rb"Credential=([^/,\s]+)/")


class CredentialProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        expire: Iterable[str] = (),
        arm_after: int = 0,
        on_armed: Callable[[], None] | None = None,
        code: str = "ExpiredToken",
        status: int = 400,
        message: str = "The provided token has expired.",
    ) -> None:
        """``arm_after=0`` refuses the ``expire`` keys from the first request on."""
        self.upstream = upstream
        self.expire = frozenset(expire)
        self.arm_after = arm_after
        self.on_armed = on_armed
        self.code = code
        self.status = status
        self.message = message
        self.forwarded: Counter[str] = Counter()  # by access key ("" when unsigned)
        self.refused: Counter[str] = Counter()
        self.armed = False
        self._forwarded_expiring = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        if arm_after == 0:
            self._arm()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def disarm(self) -> None:
        """Forward everything again (the server "accepts" the keys once more)."""
        with self._lock:
            self.armed = False
            self.arm_after = -1  # never re-arm by counting

    def __enter__(self) -> CredentialProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def _arm(self) -> None:
        if self.on_armed is not None:
            self.on_armed()
        self.armed = True

    def _admit(self, key: str) -> bool:
        """Whether to forward a request signed with ``key`` (else it is refused as expired)."""
        with self._lock:
            if key in self.expire:
                if self.armed:
                    self.refused[key] += 1
                    return False
                self._forwarded_expiring += 1
                if self._forwarded_expiring == self.arm_after:
                    self._arm()  # this request still goes through; the next ones do not
            self.forwarded[key] += 1
            return True

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        server: socket.socket | None = None
        from_client = client.makefile("rb")
        from_server: BinaryIO | None = None
        try:
            while True:
                head = _read_head(from_client)
                if head is None:
                    return
                method, headers = _parse_head(head)
                match = _CREDENTIAL_RE.search(headers.get(b"authorization", b""))
                key = match.group(1).decode() if match else ""
                expects_continue = headers.get(b"expect", b"").lower() == b"100-continue"
                if expects_continue:
                    # Answer the 100 ourselves (and strip Expect, which SigV4 does not sign), so
                    # a client that waits for it sends the body, whatever happens next.
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = _without_header(head, b"expect")
                if not self._admit(key):
                    _copy_body(from_client, None, headers)
                    client.sendall(self._expired_answer(key))
                    continue
                if server is None:
                    server = socket.create_connection(self.upstream)
                    with self._lock:
                        self._sockets.add(server)
                    from_server = server.makefile("rb")
                assert from_server is not None
                server.sendall(head)
                _copy_body(from_client, server, headers)
                while True:  # interim 1xx answers, then the final one
                    answer = _read_head(from_server)
                    if answer is None:
                        return  # the server closed: close the client too
                    client.sendall(answer)
                    status = int(answer.split(b" ", 2)[1])
                    if not 100 <= status < 200:
                        break
                _, answer_headers = _parse_head(answer)
                if method != b"HEAD" and status not in (204, 304):
                    if not _copy_body(from_server, client, answer_headers, until_close=True):
                        return
                if answer_headers.get(b"connection", b"").lower() == b"close":
                    return
        except OSError:
            return
        finally:
            for sock in (client, server):
                if sock is not None:
                    _close(sock)
                    with self._lock:
                        self._sockets.discard(sock)

    def _expired_answer(self, key: str) -> bytes:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{self.message}</Message>"
            f"<RequestId>credproxy</RequestId><HostId>credproxy</HostId></Error>"
        ).encode()
        head = (
            f"HTTP/1.1 {self.status} Refused\r\n"
            "Content-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            "x-amz-request-id: credproxy\r\n"
            "\r\n"
        ).encode()
        return head + body


def _read_head(stream: BinaryIO) -> bytes | None:
    """The request or status line and headers, through the blank line; None at a clean EOF."""
    lines = []
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


def _parse_head(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The method (or, for an answer, the protocol) and headers, names lowercased."""
    first, *rest = head.split(b"\r\n")
    headers = {}
    for line in rest:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return first.split(b" ", 1)[0], headers


def _without_header(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\r\n")
    return b"\r\n".join(line for line in lines if line.partition(b":")[0].strip().lower() != name)


def _copy_body(
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


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
