"""An HTTP-aware reverse proxy for the tests: an S3 endpoint that refuses, holds or rewrites
chosen requests, the way a real endpoint or an IAM policy would.

Each request is matched against :class:`Rule` s by method and query parameter (S3 names its
sub-resources there: ``?attributes`` is GetObjectAttributes, ``?partNumber=`` a part of an
object, ``?uploadId=`` a multipart upload). A matching rule may answer it here with an S3
error (e.g. 403 AccessDenied for GetObjectAttributes: an identity without
``s3:GetObjectAttributes``; SeaweedFS's identities only know coarse actions such as Read,
which allow both), hold it before forwarding (a slow AbortMultipartUpload), or rewrite the
head of the answer (an endpoint that ignores ``partNumber``). Signatures stay valid: requests
are forwarded byte for byte.

Message framing is :mod:`tests.credproxy`'s. Standard library, one thread per connection.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import parse_qsl, urlsplit

from tests.credproxy import _close, _copy_body, _parse_head, _read_head, _without_header


@dataclass(frozen=True)
class Rule:
    method: str  # "GET", "HEAD", "DELETE", ...
    query: str  # a query parameter the request has: "attributes", "partNumber", "uploadId"
    refuse: tuple[int, str] | None = None  # (HTTP status, S3 error code), answered here
    hold_s: float = 0.0  # forwarded only after this long
    rewrite: Callable[[bytes], bytes] | None = None  # of the answer's status line and headers

    def matches(self, method: bytes, target: bytes) -> bool:
        query = urlsplit(target.decode("latin-1")).query
        names = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
        return method.decode() == self.method and self.query in names


class RuleProxy:
    def __init__(self, upstream: tuple[str, int], rules: Sequence[Rule] = ()) -> None:
        self.upstream = upstream
        self.rules = list(rules)
        self.matched: Counter[str] = Counter()  # by "METHOD query"
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RuleProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)

    def _rule(self, method: bytes, target: bytes) -> Rule | None:
        for rule in self.rules:
            if rule.matches(method, target):
                with self._lock:
                    self.matched[f"{rule.method} {rule.query}"] += 1
                return rule
        return None

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
                target = head.split(b" ", 2)[1]
                if headers.get(b"expect", b"").lower() == b"100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = _without_header(head, b"expect")
                rule = self._rule(method, target)
                if rule is not None and rule.refuse is not None:
                    _copy_body(from_client, None, headers)
                    client.sendall(_error_answer(method, *rule.refuse))
                    continue
                if rule is not None and rule.hold_s:
                    time.sleep(rule.hold_s)
                if self._closed:
                    return
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
                        return
                    status = int(answer.split(b" ", 2)[1])
                    if rule is not None and rule.rewrite is not None and status >= 200:
                        answer = rule.rewrite(answer)
                    client.sendall(answer)
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


def _error_answer(method: bytes, status: int, code: str) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>refused by the test proxy</Message>"
        "<RequestId>ruleproxy</RequestId><HostId>ruleproxy</HostId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} Refused\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        "x-amz-request-id: ruleproxy\r\n"
        "\r\n"
    ).encode()
    return head if method == b"HEAD" else head + body


def ignoring_part_number(answer: bytes) -> bytes:
    """The answer of an endpoint that ignores ``partNumber``: the whole object's length, no
    Content-Range, no parts count."""
    lines = answer.split(b"\r\n")
    total = None
    kept = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-range":
            total = value.strip().rsplit(b"/", 1)[1]
        elif lowered not in (b"x-amz-mp-parts-count", b"content-length"):
            kept.append(line)
    assert total is not None, "a part's answer has a Content-Range"
    status = b"HTTP/1.1 200 OK"
    return b"\r\n".join([status, b"Content-Length: " + total, *kept])
