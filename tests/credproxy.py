"""An HTTP-aware reverse proxy for the tests: an S3 endpoint that declares credentials expired.

Sits between the client and the S3 server on loopback and forwards requests one at a time per
connection (keep-alive; Content-Length, chunked or close-delimited bodies; interim 1xx answers).
It reads each request's access key from its SigV4 ``Authorization`` header
(``Credential=AKID/date/region/s3/aws4_request``) and counts requests per key. Once *armed*, it
answers every request signed with a key in ``expire`` as S3 answers a dead session: HTTP 400,
``<Code>ExpiredToken</Code>``, without passing it on. It arms itself after ``arm_after``
requests signed with those keys were forwarded, first calling ``on_armed`` (under its lock, so
no request is refused before the callback has, say, moved a credentials source to another key).

Forwarding is :class:`tests.proxybase.HttpForwarder`'s. Standard library.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from tests.proxybase import FORWARD, Answer, HttpForwarder, s3_error

_CREDENTIAL_RE = re.compile(rb"Credential=([^/,\s]+)/")


class CredentialProxy(HttpForwarder):
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
        super().__init__(upstream)
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
        if arm_after == 0:
            self._arm()

    def disarm(self) -> None:
        """Forward everything again (the server "accepts" the keys once more)."""
        with self._lock:
            self.armed = False
            self.arm_after = -1  # never re-arm by counting

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

    def _decide(self, method: bytes, target: bytes, headers: dict[bytes, bytes]) -> Answer:
        match = _CREDENTIAL_RE.search(headers.get(b"authorization", b""))
        key = match.group(1).decode() if match else ""
        if self._admit(key):
            return FORWARD
        return Answer(refuse=s3_error(self.status, self.code, self.message, "credproxy"))
