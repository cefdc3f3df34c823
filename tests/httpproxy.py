"""An HTTP-aware proxy for the tests: records what the client asks, can rewrite what S3 answers.

:mod:`tests.faultproxy` works on bytes (flip a bit, cut a connection); this one understands
HTTP/1.1 requests and responses, for two kinds of test:

- **Recording.** Every request's method, target and headers (never the body) with the status
  and headers of its answer, classified by S3 operation (``UploadPart``,
  ``CompleteMultipartUpload``, ...). A test can then assert what persevere *sent*
  (``If-None-Match: *`` on Complete, ``x-amz-object-lock-*`` on Create, a checksum or a
  ``Content-MD5`` on every part) even where the server behind ignores it.
- **An endpoint without flexible checksums.** ``strip_checksums`` removes ``x-amz-checksum-*``
  (and ``x-amz-sdk-checksum-algorithm``) response headers and the ``<Checksum...>`` elements of
  XML answers: to the client, the server looks like one that never verified nor stored a
  checksum, while the real server behind still stores the real bytes. ``reply`` answers chosen
  requests itself (an endpoint that refuses a header, a 501), without forwarding them;
  ``rewrite_headers`` edits the headers of chosen answers (an endpoint that states a value its
  own way, e.g. a composite checksum without its ``-N``).

Plain HTTP only (like the fault proxy): botocore sends checksums in headers over HTTP, and in a
trailer (``aws-chunked``) over HTTPS, which the proxy would pass through untouched anyway.
``Expect: 100-continue`` is answered by the proxy itself and not forwarded.

Built on :class:`tests.proxybase.LoopbackProxy` (its own HTTP loop: it parses every header and
rewrites answers); one thread per client connection, one upstream connection each.
"""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from tests.proxybase import LoopbackProxy

__all__ = ["Exchange", "HttpProxy", "Reply", "s3_operation"]

CHUNK = 64 * 1024
_MAX_REWRITTEN_BODY = 4 * 1024 * 1024  # XML answers are small; object bodies pass untouched
_CHECKSUM_ELEMENT = re.compile(rb"<(Checksum[A-Za-z0-9]*)>[^<]*</\1>")
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Reply:
    """A canned answer the proxy gives instead of forwarding the request."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/xml"),)

    @staticmethod
    def s3_error(status: int, code: str, message: str) -> Reply:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>httpproxy</RequestId></Error>"
        ).encode()
        return Reply(status, body)


@dataclass(slots=True)
class Exchange:
    """One request (headers only) and the answer the client got."""

    method: str
    target: str  # path and query, as sent
    headers: list[tuple[str, str]]  # as the client sent them (names as written)
    operation: str  # see s3_operation
    status: int | None = None  # None: no answer (upstream failed, connection cut)
    response_headers: list[tuple[str, str]] = field(default_factory=list)  # after any rewrite
    stripped: list[str] = field(default_factory=list)  # names of headers/elements removed
    replied_by_proxy: bool = False

    def header(self, name: str) -> str | None:
        """The request header ``name`` (case-insensitive), or None."""
        return _get(self.headers, name)

    def response_header(self, name: str) -> str | None:
        return _get(self.response_headers, name)

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)


def s3_operation(method: str, target: str) -> str:
    """The S3 operation a path-style request is, from its method and query (best effort)."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    path = parts.path.strip("/")
    has_key = "/" in path
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return "UploadPart"
        if not has_key:
            return "CreateBucket" if not query else "PutBucket" + _first(query)
        for sub in ("tagging", "acl", "retention", "legal-hold"):
            if sub in query:
                return "PutObject" + sub.title().replace("-", "")
        return "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "DeleteObjects" if "delete" in query else "POST"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        return "DeleteObject" if has_key else "DeleteBucket"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "GET":
        if not path:
            return "ListBuckets"
        if "uploadId" in query:
            return "ListParts"
        if "uploads" in query:
            return "ListMultipartUploads"
        if "attributes" in query:
            return "GetObjectAttributes"
        if not has_key:
            return (
                "ListObjects" if not query or "list-type" in query else "GetBucket" + _first(query)
            )
        return "GetObject"
    return method


def _first(query: dict[str, list[str]]) -> str:
    return next(iter(query)).title().replace("-", "") if query else ""


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def _is_checksum_header(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("x-amz-checksum-") or lowered == "x-amz-sdk-checksum-algorithm"


class _ConnectionClosed(Exception):
    pass


class HttpProxy(LoopbackProxy):
    """A recording, optionally rewriting, HTTP/1.1 proxy in front of ``upstream``.

    ``strip_checksums``: True, or a predicate on the :class:`Exchange` (e.g. only UploadPart),
    for the answers to strip of checksums. ``reply``: return a :class:`Reply` to answer a
    request without forwarding it (its body is read and dropped), or None to forward.
    ``rewrite_headers``: given the exchange and the answer's headers (after any stripping),
    return the headers the client gets.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        strip_checksums: bool | Callable[[Exchange], bool] = False,
        reply: Callable[[Exchange], Reply | None] | None = None,
        rewrite_headers: Callable[[Exchange, list[tuple[str, str]]], list[tuple[str, str]]]
        | None = None,
    ) -> None:
        super().__init__(upstream)
        self.strip_checksums = strip_checksums
        self.reply = reply
        self.rewrite_headers = rewrite_headers
        self.exchanges: list[Exchange] = []

    # -- what tests read -------------------------------------------------------------------
    def requests(self, operation: str | None = None) -> list[Exchange]:
        """Recorded exchanges, in the order their requests arrived; only ``operation``'s."""
        with self._lock:
            return [e for e in self.exchanges if operation is None or e.operation == operation]

    def clear(self) -> None:
        with self._lock:
            self.exchanges.clear()

    # -- the proxy -------------------------------------------------------------------------
    def _serve(self, client: socket.socket) -> None:
        from_client = client.makefile("rb")
        server: socket.socket | None = None
        from_server: io.BufferedReader | None = None
        try:
            while True:
                request_line = from_client.readline(65_536)
                if not request_line:
                    return
                method, target, _version = request_line.decode("latin-1").rstrip().split(" ", 2)
                headers = _read_headers(from_client)
                exchange = Exchange(method, target, headers, s3_operation(method, target))
                with self._lock:
                    self.exchanges.append(exchange)
                if _get(headers, "Expect") is not None:
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                canned = self.reply(exchange) if self.reply is not None else None
                if canned is not None:
                    _drain_body(from_client, headers)
                    self._send_reply(client, exchange, canned)
                    continue
                if server is None:
                    server = self._connect()
                    from_server = server.makefile("rb")
                assert from_server is not None
                forwarded = [(k, v) for k, v in headers if k.lower() != "expect"]
                server.sendall(_head(request_line.decode("latin-1").rstrip(), forwarded))
                _copy_body(from_client, headers, server)
                keep_upstream = self._relay_response(exchange, from_server, client)
                if not keep_upstream:
                    self._untrack(server)
                    server, from_server = None, None
                if _get(headers, "Connection") == "close":
                    return
        except (OSError, ValueError, _ConnectionClosed):
            return
        finally:
            if server is not None:
                self._untrack(server)

    def _send_reply(self, client: socket.socket, exchange: Exchange, canned: Reply) -> None:
        headers = [*canned.headers, ("Content-Length", str(len(canned.body)))]
        exchange.status = canned.status
        exchange.response_headers = headers
        exchange.replied_by_proxy = True
        client.sendall(_head(f"HTTP/1.1 {canned.status} Proxy Reply", headers) + canned.body)

    def _strips(self, exchange: Exchange) -> bool:
        if callable(self.strip_checksums):
            return self.strip_checksums(exchange)
        return self.strip_checksums

    def _relay_response(
        self, exchange: Exchange, from_server: io.BufferedReader, client: socket.socket
    ) -> bool:
        """Forward one response (rewritten if asked); True if the upstream connection lives on."""
        while True:
            status_line = from_server.readline(65_536)
            if not status_line:
                raise _ConnectionClosed
            text = status_line.decode("latin-1").rstrip()
            status = int(text.split(" ", 2)[1])
            headers = _read_headers(from_server)
            if 100 <= status < 200:  # we never forward Expect, but a server may still send 1xx
                continue
            break
        has_body = exchange.method != "HEAD" and status not in _NO_BODY_STATUSES
        strip = self._strips(exchange)
        if strip:
            kept = [(k, v) for k, v in headers if not _is_checksum_header(k)]
            exchange.stripped += [k for k, v in headers if _is_checksum_header(k)]
            headers = kept
        if self.rewrite_headers is not None:
            headers = self.rewrite_headers(exchange, headers)
        rewrite_body = (
            strip
            and has_body
            and "xml" in (_get(headers, "Content-Type") or "")
            and int(_get(headers, "Content-Length") or 0) <= _MAX_REWRITTEN_BODY
        )
        exchange.status = status
        if rewrite_body:
            framed = (
                _get(headers, "Content-Length") is not None
                or "chunked" in (_get(headers, "Transfer-Encoding") or "").lower()
            )
            body = _read_body(from_server, headers)
            exchange.stripped += [m.group(1).decode() for m in _CHECKSUM_ELEMENT.finditer(body)]
            body = _CHECKSUM_ELEMENT.sub(b"", body)
            headers = [
                (k, v)
                for k, v in headers
                if k.lower() not in ("content-length", "transfer-encoding")
            ] + [("Content-Length", str(len(body)))]
            exchange.response_headers = headers
            client.sendall(_head(text, headers) + body)
            if not framed:
                return False
        else:
            exchange.response_headers = headers
            client.sendall(_head(text, headers))
            if has_body:
                if not _copy_body(from_server, headers, client, until_close=True):
                    return False
        return (_get(headers, "Connection") or "").lower() != "close"


def _head(first_line: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first_line, *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _read_headers(stream: io.BufferedReader) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    while True:
        line = stream.readline(65_536)
        if not line:
            raise _ConnectionClosed
        if line in (b"\r\n", b"\n"):
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))


def _copy_exactly(stream: io.BufferedReader, n: int, sink: socket.socket | None) -> None:
    while n > 0:
        data = stream.read(min(CHUNK, n))
        if not data:
            raise _ConnectionClosed
        if sink is not None:
            sink.sendall(data)
        n -= len(data)


def _copy_body(
    stream: io.BufferedReader,
    headers: list[tuple[str, str]],
    sink: socket.socket | None,
    *,
    until_close: bool = False,
) -> bool:
    """Copy one message body as framed (chunked, Content-Length, or to EOF); False after EOF."""
    if "chunked" in (_get(headers, "Transfer-Encoding") or "").lower():
        while True:
            size_line = stream.readline(65_536)
            if not size_line:
                raise _ConnectionClosed
            if sink is not None:
                sink.sendall(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = stream.readline(65_536)
                    if sink is not None:
                        sink.sendall(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return True
            _copy_exactly(stream, size + 2, sink)  # the chunk and its CRLF
    length = _get(headers, "Content-Length")
    if length is not None:
        _copy_exactly(stream, int(length), sink)
        return True
    if until_close:  # a response framed by closing the connection
        while data := stream.read1(CHUNK):
            if sink is not None:
                sink.sendall(data)
        return False
    return True  # a request without a body


def _drain_body(stream: io.BufferedReader, headers: list[tuple[str, str]]) -> None:
    _copy_body(stream, headers, None)


class _Collect:
    """A sink that keeps what is sent (``sendall`` only), to de-frame a body in memory."""

    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        self.data += data


def _read_body(stream: io.BufferedReader, headers: list[tuple[str, str]]) -> bytes:
    """The whole body, de-chunked."""
    if "chunked" not in (_get(headers, "Transfer-Encoding") or "").lower():
        collected = _Collect()
        _copy_body(stream, headers, collected, until_close=True)  # type: ignore[arg-type]
        return bytes(collected.data)
    body = bytearray()
    while True:
        size = int(stream.readline(65_536).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while stream.readline(65_536) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        body += stream.read(size)
        stream.readline(65_536)
