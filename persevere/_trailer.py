"""A part's checksum sent after its bytes, as an ``aws-chunked`` trailer: each byte read once.

S3 wants a part's checksum before its body when it travels in a header, so a part larger than
the worker's buffer would be read twice: once to checksum it, once to send it. As a trailer
(``Content-Encoding: aws-chunked``, ``x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER``,
``x-amz-trailer: x-amz-checksum-crc64nvme``, ``x-amz-decoded-content-length``) the checksum is
computed while the body streams (:class:`._body.TrailerBody`) and S3 verifies it as it would
the header, and echoes it: :class:`._checksum_mode.PartVerifier` compares the echo as ever.

Detected, never assumed, once per endpoint (per client: :class:`Trailers`): until an endpoint
has echoed a trailed checksum, a refusal of a trailed part (any S3 error) or an answer without
the echo (an endpoint that ignored the trailer) switches it to the header form for as long as
the client lives, with one log line, and the part is sent again in the header form at once (not
counted as a retry). Cloudflare R2 is reported to refuse trailers; SeaweedFS verifies them.

The request is built by botocore as an ordinary UploadPart with an unsigned payload; the
``before-sign`` hook (:func:`sign_trailer`) gives it the trailer's headers and tells botocore's
signer (its own or awscrt's) to sign ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``.
"""

from __future__ import annotations

import logging
import weakref
from enum import Enum
from typing import Any, ClassVar

from . import _sendfile
from ._checksums import ChecksumAlgorithm
from ._logs import event

log = logging.getLogger("persevere")

# The CRCs: a trailed part is checksummed on the event loop as its slices go (45 us per
# 256 KiB slice for CRC64NVME on the bench machine, loaded). A SHA would hold the loop 30 times
# longer (SHA256: 1.3 ms per slice), so SHAs keep the header form, hashed in worker threads.
TRAILER_ALGORITHMS = frozenset({"CRC64NVME", "CRC32C", "CRC32"})


def trailer_name(algorithm: ChecksumAlgorithm) -> str:
    return f"x-amz-checksum-{algorithm.name.lower()}"


def encoded_length(size: int, slice_bytes: int, algorithm: ChecksumAlgorithm) -> int:
    """The bytes on the wire of ``size`` bytes framed in chunks of ``slice_bytes``: each chunk
    ``<hex size>\\r\\n<bytes>\\r\\n``, then ``0\\r\\n<name>:<base64>\\r\\n\\r\\n``."""
    full, rest = divmod(size, slice_bytes)
    framed = full * (len(f"{slice_bytes:x}") + 4 + slice_bytes)
    if rest:
        framed += len(f"{rest:x}") + 4 + rest
    b64_length = 4 * ((algorithm.width + 2) // 3)
    return framed + 3 + len(trailer_name(algorithm)) + 1 + b64_length + 4


def sign_trailer(request: Any, **kwargs: Any) -> None:
    """botocore ``before-sign.s3.UploadPart``: a body that carries its checksum as a trailer
    (``trailer_name`` and ``decoded_length`` set) gets the headers that say so, and the
    signer is told (``request.context['checksum']``) to sign the streaming-trailer payload."""
    body = request.data  # the body as given (``request.body`` would prepare the request)
    name = getattr(body, "trailer_name", None)
    if name is None:
        return
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Trailer": name,
        "X-Amz-Decoded-Content-Length": str(body.decoded_length),
        "Content-Length": str(len(body)),
    }
    for field, value in headers.items():
        del request.headers[field]  # botocore's headers add on assignment (email.message)
        request.headers[field] = value
    request.context["checksum"] = {
        "request_algorithm": {"in": "trailer", "algorithm": name.rsplit("-", 1)[1], "name": name}
    }


class Support(Enum):
    UNKNOWN = "unknown"  # not tried yet, or no answer yet
    TAKEN = "taken"  # a trailed checksum was echoed: trailer errors are errors from now on
    REFUSED = "refused"  # the header form, for the rest of the process


class TrailerRefused(Exception):
    """A trailed part was refused (or its trailer ignored): send it again in the header form.

    Raised by :meth:`._session.MultipartSession.upload_part`, caught by the sender, which
    sends the part again at once: not an attempt of the retry budget."""


class Trailers:
    """Whether one endpoint takes trailed checksums: one per client (an endpoint, for as long
    as a command or a library call uses it), shared by the sessions that use that client."""

    _known: ClassVar[weakref.WeakKeyDictionary[Any, Trailers]] = weakref.WeakKeyDictionary()

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.support = Support.UNKNOWN
        self._probing = False  # a trailed part is out while the support is unknown

    @property
    def sends_files(self) -> bool:
        """Over plain http the kernel sends a streamed part from the file (:mod:`._sendfile`):
        its one read is the checksum pass, so a trailer would save nothing of the client's and
        cost the server its aws-chunked decoding."""
        return _sendfile.ENABLED and self.endpoint.lower().startswith("http://")

    @classmethod
    def of(cls, client: Any) -> Trailers:
        endpoint = str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "")
        try:
            return cls._known.setdefault(client, cls(endpoint))
        except TypeError:  # not weakly referable (a test's stand-in): decided per session
            return cls(endpoint)

    def usable(self, algorithm: ChecksumAlgorithm) -> bool:
        """Whether a part already trailed may go as it is (the endpoint has not refused)."""
        return self.support is not Support.REFUSED and algorithm.name in TRAILER_ALGORITHMS

    def claim(self, algorithm: ChecksumAlgorithm) -> bool:
        """Whether a part prepared now may be trailed: once the endpoint took a trailer, every
        part; until then only one, the probe (an endpoint that ignores trailers would
        otherwise be sent every part of the first wave twice)."""
        if not self.usable(algorithm) or self.sends_files:
            return False
        probing, self._probing = self._probing, True
        return self.support is Support.TAKEN or not probing

    def taken(self) -> None:
        """A trailed checksum was echoed. Once refused, the header form stays (a trailed part
        already in flight may still be answered)."""
        if self.support is Support.UNKNOWN:
            self.support = Support.TAKEN

    def on_refusal(self, why: str) -> bool:
        """A trailed part was refused (``why``): True if that means the endpoint does not take
        trailers (it never took one), and it is now sent the header form; False: an error to
        report as it is."""
        if self.support is Support.TAKEN:
            return False
        if self.support is Support.UNKNOWN:
            self.support = Support.REFUSED
            log.info(
                "the endpoint %s does not take checksums as aws-chunked trailers (%s): parts "
                "are sent with the checksum in the header, read twice",
                self.endpoint,
                why,
                extra=event("trailer_refused", endpoint=self.endpoint, why=why),
            )
        return True
