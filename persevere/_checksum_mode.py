"""Proof that the endpoint verified each part, and the fallback when it does not.

Parts go with an unsigned payload (:mod:`._s3`), so the checksum S3 verifies is the only thing
that protects their bytes. AWS proves it verified the ``x-amz-checksum-<alg>`` header by echoing
the value in UploadPart's answer. Endpoints without flexible checksums (JuiceFS's MinIO-based
gateway, moto, older Ceph/MinIO, ...) accept the header, ignore it and echo nothing: over plain
HTTP the bytes are then unverified end to end. A part is therefore only recorded with a proof:

- ``ECHO``: the answer echoes our checksum (a different value is a corrupted part: resent);
- ``ETAG``: the answer's ETag is the MD5 of our bytes. Every S3 implementation probed computes
  a part's ETag as the MD5 of the bytes it stored (SSE-KMS/SSE-C aside, and those are AWS, which
  echoes). The part also carries ``Content-MD5``, which most endpoints check themselves.

Policy, decided on the first answer and kept for the run:

- pinned algorithm (the caller chose it): only ``ECHO`` counts; the first answer without it
  raises :class:`ChecksumNotVerified` before the part is recorded: nothing unverified is kept;
- default algorithm: parts prepared before the first answer carry their MD5 too (the first
  wave: ``concurrency`` parts, no waiting for an answer), so a first answer without an echo is
  proven by its ETag; the run then stays in ``ETAG`` (one warning) and every later part is sent
  with ``Content-MD5``. The algorithm's checksum is still computed and journaled: resume,
  ``verify`` and the full-object checksum sent to CompleteMultipartUpload keep working;
- algorithm ``MD5`` (``--checksum MD5``): ``ETAG`` from the start; no flexible checksum is
  sent anywhere (CreateMultipartUpload gets no ChecksumAlgorithm, parts only ``Content-MD5``).

Pure: no I/O; the sender asks :meth:`PartVerifier.needs_md5` when preparing a part,
:meth:`PartVerifier.request_fields` when sending it, :meth:`PartVerifier.check` on the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ._checksums import ChecksumAlgorithm, b64
from ._errors import S3Error
from ._quirks import ETag, answered
from ._retry import TransientError

log = logging.getLogger("persevere")


class ChecksumNotVerified(S3Error):
    """The endpoint accepted a part without proving it verified the checksum (exit 1).

    Raised before the part is recorded, so the journal never holds an unverified part.
    """


class Proof(Enum):
    UNKNOWN = "unknown"  # no answer yet
    ECHO = "echo"  # the endpoint echoes (hence verified) the flexible checksum
    ETAG = "etag"  # Content-MD5 sent, ETag compared with the part's MD5


@dataclass(frozen=True, slots=True)
class PartDigests:
    """What a part is sent and checked with."""

    checksum: str  # base64 of the algorithm's digest: journaled, and sent when flexible
    md5: bytes | None = None  # raw MD5 of the part, when :meth:`PartVerifier.needs_md5` said so


class PartVerifier:
    """The proof policy of one run of one upload, shared by its workers (one event loop).

    ``pinned``: the caller chose ``algorithm`` and wants that or nothing. ``warn`` receives the
    one fallback warning (tests pass a list's ``append``).
    """

    def __init__(
        self,
        algorithm: ChecksumAlgorithm,
        *,
        pinned: bool,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.algorithm = algorithm
        # Whether x-amz-checksum-* fields go anywhere (Create, parts, Complete): not for
        # --checksum MD5, which sends Content-MD5 per part, not x-amz-checksum-md5.
        self.flexible = algorithm.name != "MD5"
        self.pinned = pinned and self.flexible
        self.proof = Proof.UNKNOWN if self.flexible else Proof.ETAG
        self._warn = warn if warn is not None else log.warning
        self._header = f"x-amz-checksum-{algorithm.name.lower()}"

    # -- preparing and sending a part -----------------------------------------------------------
    def needs_md5(self) -> bool:
        """Whether a part prepared now must carry its MD5 (read once, both digests computed)."""
        return not self.pinned and self.proof is not Proof.ECHO

    def request_fields(self, digests: PartDigests) -> dict[str, str]:
        """UploadPart parameters proving the part's bytes: the checksum, Content-MD5, or both."""
        fields: dict[str, str] = {}
        if self.flexible:
            fields[self.algorithm.param] = digests.checksum
        if digests.md5 is not None:
            fields["ContentMD5"] = b64(digests.md5)
        return fields

    # -- the answer -----------------------------------------------------------------------------
    def check(self, number: int | str, digests: PartDigests, response: Mapping[str, Any]) -> str:
        """The ETag to record, once the answer proves the part; else raise.

        ``TransientError`` (code BadDigest): the endpoint saw other bytes; send the part again.
        :class:`ChecksumNotVerified`: no proof, and none to be had by sending it again.
        """
        what = number if isinstance(number, str) else f"part {number}"  # (str: a whole file)
        etag = answered(response, "ETag", what)
        echoed = response.get(self.algorithm.param) if self.flexible else None
        if echoed is not None:
            if echoed != digests.checksum:
                raise TransientError(
                    f"{what}: S3 computed checksum {echoed}, expected {digests.checksum}",
                    code="BadDigest",
                )
            if self.proof is Proof.UNKNOWN:
                self.proof = Proof.ECHO
            return etag
        if self.pinned:
            unverified = ChecksumNotVerified(
                f"the endpoint did not verify the {self.algorithm.name} checksum of {what} "
                f"(its answer has no {self._header}): it does not support flexible checksums, "
                "so the part's bytes are unverified and were not recorded",
                code="ChecksumNotVerified",
                hint="abort this upload and start it again with checksum MD5 (Content-MD5 per "
                "part, checked against the ETag), or leave the checksum algorithm at its default",
            )
            unverified.next_step = "abort"  # a resume would meet the same endpoint
            raise unverified
        if digests.md5 is None:
            # Prepared after the endpoint had echoed; it has stopped: nothing proves this part.
            raise ChecksumNotVerified(
                f"the endpoint stopped confirming {self.algorithm.name} checksums at {what} "
                f"(no {self._header} in its answer after earlier parts had one)",
                code="ChecksumNotVerified",
                hint="resume: a new run starts by checking again, and falls back to Content-MD5",
            )
        md5 = ETag(etag).md5 if ETag(etag).part_count is None else None
        if md5 is None:
            raise ChecksumNotVerified(
                f"the endpoint neither verified the {self.algorithm.name} checksum of {what} "
                f"nor returned its MD5 as ETag ({etag}): its bytes cannot be proven",
                code="ChecksumNotVerified",
            )
        if md5 != digests.md5.hex():
            raise TransientError(
                f"{what}: S3 returned ETag {etag}, the part's MD5 is {digests.md5.hex()}",
                code="BadDigest",
            )
        if self.proof is not Proof.ETAG:
            self.proof = Proof.ETAG
            self._warn(
                f"the endpoint did not confirm the {self.algorithm.name} checksum of {what} "
                f"(no {self._header} in its answer): it may not verify flexible checksums; "
                "every part is now sent with Content-MD5 and checked against its ETag"
            )
        return etag

    # -- what Create and Complete send ------------------------------------------------------------
    def create_fields(self, checksum_type: str) -> dict[str, str]:
        """CreateMultipartUpload parameters: none for Content-MD5 mode."""
        if not self.flexible:
            return {}
        return {"ChecksumAlgorithm": self.algorithm.name, "ChecksumType": checksum_type}
