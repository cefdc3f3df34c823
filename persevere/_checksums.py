"""Checksums S3 verifies, and S3's rules for an object's checksum, in one place.

Digests are computed natively (awscrt for CRCs, hashlib for SHAs/MD5). A CRC of a whole object
is combined from the CRCs of its parts (``awscrt.checksums.combine_*``), so a full-object
checksum never needs a second read of the file.

S3's shapes, as :class:`ObjectChecksum` reads and writes them (and :class:`._quirks.ETag`):
- a full-object checksum (CRC64NVME always; CRC32/CRC32C when asked) is ``base64``: the CRC of
  every byte, whatever the parts;
- a composite checksum is ``base64-N``: the checksum of the N part checksums concatenated
  (SHA1/SHA256 of a multipart upload always, CRCs when asked);
- a single PUT's checksum is the plain digest of the bytes, ``base64`` whatever the algorithm;
- an ETag is ``"md5"`` for a single PUT, ``"md5-N"`` (MD5 of the part MD5s) for a multipart
  upload, and no MD5 at all under SSE-KMS/SSE-C (then it proves nothing about the bytes).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

from awscrt import checksums as _crt


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview) -> None: ...
    def digest(self) -> bytes: ...


@dataclass(slots=True)
class _Crc:
    _fn: Callable[[bytes | bytearray | memoryview, int], int]
    _width: int
    _value: int = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


@dataclass(frozen=True, slots=True)
class ChecksumAlgorithm:
    """One of S3's checksum algorithms, as persevere uses it."""

    name: str  # S3's name: "CRC64NVME"
    width: int  # digest size in bytes
    full_object: bool  # True: the multipart object carries a checksum of all its bytes
    new: Callable[[], Hasher]
    _combine: Callable[[int, int, int], int] | None = None

    @property
    def param(self) -> str:
        """The botocore parameter / response field: ``ChecksumCRC64NVME``."""
        return f"Checksum{self.name}"

    @property
    def may_be_composite(self) -> bool:
        """Whether a multipart object may carry it as ``digest-N``: every algorithm but
        CRC64NVME, which S3 keeps full-object only."""
        return self.name != "CRC64NVME"

    def of(self, data: bytes | bytearray | memoryview) -> bytes:
        hasher = self.new()
        hasher.update(data)
        return hasher.digest()

    def combine(self, parts: Sequence[tuple[bytes, int]], *, composite: bool = False) -> bytes:
        """Whole-object checksum from ``(part digest, part length)`` pairs, in order.

        Full-object checksums (CRCs only) combine arithmetically into the CRC of all the bytes;
        composite ones are the checksum of the concatenated part digests, which S3 shows with
        a ``-N`` suffix (SHA1/SHA256 always, CRCs when the upload asked for COMPOSITE).
        """
        if composite or self._combine is None:
            return self.of(b"".join(digest for digest, _ in parts))
        value = 0  # the CRC of no bytes
        for digest, length in parts:
            value = self._combine(value, int.from_bytes(digest, "big"), length)
        return value.to_bytes(self.width, "big")


CRC64NVME = ChecksumAlgorithm(
    "CRC64NVME", 8, True, partial(_Crc, _crt.crc64nvme, 8), _crt.combine_crc64nvme
)
CRC32C = ChecksumAlgorithm("CRC32C", 4, True, partial(_Crc, _crt.crc32c, 4), _crt.combine_crc32c)
CRC32 = ChecksumAlgorithm("CRC32", 4, True, partial(_Crc, _crt.crc32, 4), _crt.combine_crc32)
SHA256 = ChecksumAlgorithm("SHA256", 32, False, hashlib.sha256)
SHA1 = ChecksumAlgorithm("SHA1", 20, False, hashlib.sha1)


class _XXHash:
    __slots__ = ("_state",)

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._state = factory()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # awscrt's xxhash takes read-only buffers only: parts live in reusable bytearrays.
        self._state.update(data if isinstance(data, bytes) else bytes(data))

    def digest(self) -> bytes:
        return bytes(self._state.finalize())


# Added to S3's model in 2026; endpoints that do not know them refuse the upload's first
# request, which persevere reports as "not supported by this endpoint".
SHA512 = ChecksumAlgorithm("SHA512", 64, False, hashlib.sha512)
MD5 = ChecksumAlgorithm("MD5", 16, False, hashlib.md5)
XXHASH64 = ChecksumAlgorithm("XXHASH64", 8, False, partial(_XXHash, _crt.XXHash.new_xxhash64))
XXHASH3 = ChecksumAlgorithm("XXHASH3", 8, False, partial(_XXHash, _crt.XXHash.new_xxhash3_64))
XXHASH128 = ChecksumAlgorithm("XXHASH128", 16, False, partial(_XXHash, _crt.XXHash.new_xxhash3_128))

AlgorithmName = Literal[
    "CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1", "SHA512", "MD5", "XXHASH64", "XXHASH3",
    "XXHASH128",
]  # fmt: skip
ALGORITHMS: dict[str, ChecksumAlgorithm] = {
    a.name: a
    for a in (CRC64NVME, CRC32C, CRC32, SHA256, SHA1, SHA512, MD5, XXHASH64, XXHASH3, XXHASH128)
}


def get_algorithm(name: str) -> ChecksumAlgorithm:
    try:
        return ALGORITHMS[name.upper()]
    except KeyError:
        raise ValueError(
            f"unknown checksum algorithm {name!r} (choose from {', '.join(ALGORITHMS)})"
        ) from None


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.split("-", 1)[0], validate=True)


def checksum_type(algorithm: ChecksumAlgorithm) -> str:
    """The ChecksumType persevere asks for: full-object wherever the algorithm allows it."""
    return "FULL_OBJECT" if algorithm.full_object else "COMPOSITE"


@dataclass(frozen=True, slots=True)
class ObjectChecksum:
    """A whole object's checksum as S3 states it: ``digest`` or, composite, ``digest-N``."""

    algorithm: ChecksumAlgorithm
    digest: str  # base64
    part_count: int | None = None  # composite checksums only

    def __str__(self) -> str:
        return self.digest if self.part_count is None else f"{self.digest}-{self.part_count}"

    @classmethod
    def of_parts(
        cls, algorithm: ChecksumAlgorithm, parts: Sequence[tuple[str, int]], *, composite: bool
    ) -> ObjectChecksum:
        """From ``(base64 part checksum, part size)`` pairs in order, without reading bytes."""
        pairs = [(unb64(checksum), size) for checksum, size in parts]
        combined = b64(algorithm.combine(pairs, composite=composite))
        return cls(algorithm, combined, len(pairs) if composite else None)

    def matches(self, stated: object) -> bool:
        """Whether a checksum an endpoint states (Complete's answer, HeadObject) is this one.

        Some endpoints (moto) state a composite checksum without its ``-N``: the digest alone
        is then compared. No strength is lost: a composite digest hashes the N part digests
        one after the other, so another part count gives another digest (and the object's
        size is compared besides). A different ``-M`` is a mismatch.
        """
        text = str(stated)
        return text == str(self) or (self.part_count is not None and text == self.digest)

    @classmethod
    def parse(cls, algorithm: ChecksumAlgorithm, text: str) -> ObjectChecksum:
        """``digest`` or ``digest-N`` (base64 has no ``-``), as recorded or stated."""
        digest, _, count = text.partition("-")
        return cls(algorithm, digest, int(count) if count.isdigit() else None)

    @classmethod
    def stored(cls, response: Mapping[str, object]) -> ObjectChecksum | None:
        """The checksum a HeadObject/Complete answer reports, whatever the algorithm."""
        for algorithm in ALGORITHMS.values():
            if value := response.get(algorithm.param):
                return cls.parse(algorithm, str(value))
        return None
