"""What S3 and its look-alikes answer, and how persevere reads it, in one place.

- An ETag comes quoted or not, in either case: ``"md5"`` for a single PUT, ``"md5-N"`` (the
  MD5 of the part MD5s) for a multipart object, and no MD5 at all under SSE-KMS/SSE-C
  (:class:`ETag`).
- A stated checksum or ETag may end in ``-N`` (composite, multipart), and some endpoints drop
  it (moto's HeadObject): :func:`digest_of` reads the digest alone.
- Error codes: what another attempt may cure, what says the credentials are expired or
  unknown, that the object is missing or the request refused (a HEAD's answer has no body:
  the bare HTTP status stands in for the code), a write-once conflict, a feature the endpoint
  does not support.
- Whether an object is the one a completion made (:func:`object_matches`); each caller keeps
  its own evidence (the parts' checksums, or what the completion recorded).

Imports nothing of persevere but :mod:`._errors` (and :mod:`._checksums`' types), so every
module may read S3 through it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import S3Error

if TYPE_CHECKING:
    from ._checksums import ObjectChecksum

# Error codes another attempt may cure. BadDigest: bytes corrupted in flight, resend them.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "BadDigest",
        "XAmzContentSHA256Mismatch",
        "IncompleteBody",
        "OperationAborted",
    }
)
# What an endpoint answers a trailed part (._trailer) whose bytes or framing arrived damaged:
# SeaweedFS says InvalidDigest for a trailer that does not match the bytes; S3 names a bad
# chunk size InvalidChunkSizeError. Another attempt may cure them, as BadDigest. Only for a
# trailed part: to a part with Content-MD5, InvalidDigest says the header itself is malformed,
# which no attempt cures.
TRAILED_DAMAGE_CODES = frozenset(
    {"InvalidDigest", "XAmzContentChecksumMismatch", "InvalidChunkSizeError", "IncompleteBody"}
)
# The server asks to slow down (the sender narrows its window); so does a bare 503.
THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "503"})
# Statuses another attempt may cure, whatever the code: throttling, a server error.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# The server says the session's time is up: another attempt may cure it, since the credential
# chain may hand out new credentials (._credentials). ExpiredToken is S3's ("The provided token
# has expired."), also SeaweedFS's and MinIO's; TokenRefreshRequired is S3's "The provided token
# must be refreshed."; ExpiredTokenException is STS's and the JSON services'. (aws-sdk-go v1
# reloads credentials on ExpiredToken, ExpiredTokenException and EC2's RequestExpired.)
CREDENTIALS_EXPIRED_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"}
)
# The credentials refused: expired, or not known to the server (any more). A rotated or
# deactivated key, or a revoked session, looks like the latter; so does a typo. Transient only
# when the chain has given other credentials since; otherwise permanent.
CREDENTIALS_REJECTED_CODES = CREDENTIALS_EXPIRED_CODES | {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",  # S3: "The provided token is malformed or otherwise invalid."
    "InvalidClientTokenId",  # STS/IAM
    "InvalidTokenId",  # MinIO
}
REFUSED_CODES = frozenset({"AccessDenied", "403"})
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# What S3 answers a conditional Complete that meets an existing key (412), or a write to the
# same key racing with it (409: "re-initiate the multipart upload").
WRITE_CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
# An endpoint refusing a parameter it does not know (a newer checksum algorithm, object lock).
UNSUPPORTED_CODES = frozenset({"InvalidRequest", "InvalidArgument", "NotImplemented"})


def credentials_expired(code: str | None) -> bool:
    return code in CREDENTIALS_EXPIRED_CODES


def refused(exc: S3Error) -> bool:
    """S3 refused the request for lack of permission (AccessDenied, or a bare HTTP 403 where
    the endpoint sent no error body to name it)."""
    return exc.code in REFUSED_CODES


def missing(exc: S3Error) -> bool:
    """The object does not exist: NoSuchKey, or a bare 404 or NotFound (HeadObject's answer
    has no error body to name it)."""
    return exc.code in MISSING_CODES


def is_write_conflict(exc: S3Error) -> bool:
    return exc.code in WRITE_CONFLICT_CODES


def digest_of(stated: str) -> str:
    """A stated checksum or ETag without its ``-N`` (which some endpoints drop)."""
    return stated.split("-")[0]


_ETAG_RE = re.compile(r'^"?([0-9a-fA-F]{32})(?:-(\d+))?"?$')


@dataclass(frozen=True, slots=True)
class ETag:
    """An ETag as S3 sent it (quotes and all), read for what it proves about the bytes."""

    text: str

    @property
    def md5(self) -> str | None:
        """The lowercase hex MD5 (of the object, or of its part MD5s), if it has that shape."""
        match = _ETAG_RE.match(self.text)
        return match.group(1).lower() if match else None

    @property
    def part_count(self) -> int | None:
        """N of an ``md5-N`` multipart ETag."""
        match = _ETAG_RE.match(self.text)
        return int(match.group(2)) if match and match.group(2) else None

    def same(self, other: str) -> bool:
        """The same ETag, however quoted (a cache's weak ``W/"..."`` too)."""
        return _bare(self.text) == _bare(other)

    @staticmethod
    def multipart(part_etags: Sequence[str]) -> str:
        """The ETag S3 gives a multipart object without SSE-KMS/SSE-C: MD5 of part MD5s, -N."""
        joined = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
        return f'"{hashlib.md5(joined).hexdigest()}-{len(part_etags)}"'

    @staticmethod
    def proves_content(response: Mapping[str, object]) -> bool:
        """False under SSE-KMS/SSE-C, where S3's ETag is not an MD5 of the bytes."""
        kms = str(response.get("ServerSideEncryption") or "").startswith("aws:kms")
        return not kms and "SSECustomerAlgorithm" not in response


def _bare(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"').lower()


def object_matches(
    head: Mapping[str, Any], size: object, checksum: ObjectChecksum, etag: str | None
) -> bool:
    """Is the object HeadObject describes the one expected: its size, then the checksum it
    stores or, where it stores none (an upload sent with Content-MD5), its ETag."""
    if int(head.get("ContentLength", -1)) != size:
        return False
    stored = head.get(checksum.algorithm.param)
    if stored is not None:
        return checksum.matches(stored)
    return etag is not None and ETag(etag).same(str(head.get("ETag", "")))


def answered(response: Mapping[str, Any], name: str, what: str) -> str:
    """``response[name]``, which every S3 answer to ``what`` holds: without it (an empty
    body: a proxy's or a captive portal's page, answering 200) it is no S3 answer."""
    value = response.get(name)
    if not value:
        error = S3Error(
            f"{what}: the endpoint's answer has no {name}: it is not an S3 answer",
            code="NotS3",
            hint="check the endpoint URL (is it S3, not a proxy's or a portal's page?) and "
            "the proxy variables (HTTPS_PROXY, HTTP_PROXY)",
        )
        error.next_step = None  # (a resume meets the same endpoint)
        raise error
    return str(value)
