"""An HTTP-aware reverse proxy for the tests: an S3 endpoint that refuses, holds or rewrites
chosen requests, the way a real endpoint or an IAM policy would.

Each request is matched against :class:`Rule` s by method and query parameter (S3 names its
sub-resources there: ``?attributes`` is GetObjectAttributes, ``?partNumber=`` a part of an
object, ``?uploadId=`` a multipart upload). A matching rule may answer it here with an S3
error (e.g. 403 AccessDenied for GetObjectAttributes: an identity without
``s3:GetObjectAttributes``; SeaweedFS's identities only know coarse actions such as Read,
which allow both), hold it before forwarding (a slow AbortMultipartUpload, or UploadPart 3
kept until the test has killed the client: a :class:`tests.proxybase.Hold`), or rewrite the
head of the answer (an endpoint that ignores ``partNumber``). Signatures stay valid: requests
are forwarded byte for byte.

Forwarding is :class:`tests.proxybase.HttpForwarder`'s. Standard library.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from tests.proxybase import FORWARD, Answer, Hold, HttpForwarder, s3_error


@dataclass(frozen=True)
class Rule:
    method: str  # "GET", "HEAD", "DELETE", ...
    query: str  # a query parameter the request has: "attributes", "partNumber", "uploadId"
    refuse: tuple[int, str] | None = None  # (HTTP status, S3 error code), answered here
    hold_s: float = 0.0  # forwarded only after this long
    rewrite: Callable[[bytes], bytes] | None = None  # of the answer's status line and headers
    value: str | None = None  # the parameter's value, if it matters: "3" for partNumber=3
    hold: Hold | None = None  # forwarded only once the test releases it (or the proxy closes)
    but: frozenset[str] = frozenset()  # values of the parameter it leaves alone: {"1", "5"}

    def matches(self, method: bytes, target: bytes) -> bool:
        query = urlsplit(target.decode("latin-1")).query
        params = dict(parse_qsl(query, keep_blank_values=True))
        if method.decode() != self.method or self.query not in params:
            return False
        if params[self.query] in self.but:
            return False
        return self.value is None or params[self.query] == self.value


def hold_part(number: int, hold: Hold | None = None) -> Rule:
    """UploadPart ``number`` kept by the proxy until ``hold`` is released."""
    return Rule("PUT", "partNumber", value=str(number), hold=hold or Hold())


class RuleProxy(HttpForwarder):
    def __init__(self, upstream: tuple[str, int], rules: Sequence[Rule] = ()) -> None:
        super().__init__(upstream)
        self.rules = list(rules)
        self.matched: Counter[str] = Counter()  # by "METHOD query"
        for rule in self.rules:
            if rule.hold is not None:
                self.hold(rule.hold)

    def hold_parts_but(self, *numbers: int) -> Hold:
        """From now on (ahead of the other rules), keep every UploadPart but ``numbers`` until
        the hold returned is released: the way to stop a client once those parts are
        recorded, the others in flight (what a bandwidth cap did, without the wait)."""
        hold = self.hold(Hold())
        rule = Rule("PUT", "partNumber", but=frozenset(map(str, numbers)), hold=hold)
        with self._lock:
            self.rules.insert(0, rule)
        return hold

    def _rule(self, method: bytes, target: bytes) -> Rule | None:
        with self._lock:
            rules = list(self.rules)
        for rule in rules:
            if rule.matches(method, target):
                with self._lock:
                    self.matched[f"{rule.method} {rule.query}"] += 1
                return rule
        return None

    def _decide(self, method: bytes, target: bytes, headers: dict[bytes, bytes]) -> Answer:
        rule = self._rule(method, target)
        if rule is None:
            return FORWARD
        if rule.refuse is not None:
            status, code = rule.refuse
            return Answer(
                refuse=s3_error(
                    status,
                    code,
                    "refused by the test proxy",
                    "ruleproxy",
                    head_only=method == b"HEAD",
                )
            )
        if rule.hold_s:
            self._pause(rule.hold_s)
        return Answer(hold=rule.hold, rewrite=rule.rewrite)


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
