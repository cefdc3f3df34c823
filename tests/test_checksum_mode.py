"""The proof policy for parts (pure): echo, ETag fallback, pinned refusal, Content-MD5 mode."""

from __future__ import annotations

import base64
import hashlib

import pytest

from persevere._checksum_mode import ChecksumNotVerified, PartDigests, PartVerifier, Proof
from persevere._checksums import CRC64NVME, MD5, SHA256, b64
from persevere._retry import TransientError

DATA = b"persevere" * 1000


def digests(data: bytes = DATA, *, md5: bool = True) -> PartDigests:
    return PartDigests(b64(CRC64NVME.of(data)), hashlib.md5(data).digest() if md5 else None)


def etag_of(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def echo(d: PartDigests, data: bytes = DATA) -> dict[str, str]:
    return {"ETag": etag_of(data), "ChecksumCRC64NVME": d.checksum}


def test_echo_proves_the_part_and_stops_md5():
    warnings: list[str] = []
    verifier = PartVerifier(CRC64NVME, pinned=False, warn=warnings.append)
    assert verifier.needs_md5()  # the first wave carries MD5 in case there is no echo
    d = digests()
    fields = verifier.request_fields(d)
    assert fields == {
        "ChecksumCRC64NVME": d.checksum,
        "ContentMD5": base64.b64encode(hashlib.md5(DATA).digest()).decode(),
    }
    assert verifier.check(1, d, echo(d)) == etag_of(DATA)
    assert verifier.proof is Proof.ECHO and not verifier.needs_md5()
    later = digests(md5=False)
    assert verifier.request_fields(later) == {"ChecksumCRC64NVME": later.checksum}
    assert warnings == []


def test_echo_of_other_bytes_is_resent():
    verifier = PartVerifier(CRC64NVME, pinned=True)
    d = digests()
    with pytest.raises(TransientError) as bad:
        verifier.check(1, d, {"ETag": etag_of(DATA), "ChecksumCRC64NVME": "AAAAAAAAAAA="})
    assert bad.value.code == "BadDigest"


def test_no_echo_falls_back_to_etag_with_one_warning():
    warnings: list[str] = []
    verifier = PartVerifier(CRC64NVME, pinned=False, warn=warnings.append)
    first_wave = [digests(bytes([n]) * 100) for n in range(3)]
    for number, d in enumerate(first_wave, 1):
        data = bytes([number - 1]) * 100
        assert verifier.check(number, d, {"ETag": etag_of(data)}) == etag_of(data)
    assert verifier.proof is Proof.ETAG and verifier.needs_md5()
    assert len(warnings) == 1 and "part 1" in warnings[0] and "Content-MD5" in warnings[0]
    # Later parts still carry the checksum (journaled, and harmless) and Content-MD5.
    assert set(verifier.request_fields(digests())) == {"ChecksumCRC64NVME", "ContentMD5"}


def test_no_echo_and_wrong_etag_is_resent():
    verifier = PartVerifier(CRC64NVME, pinned=False, warn=lambda _: None)
    with pytest.raises(TransientError) as bad:
        verifier.check(1, digests(), {"ETag": etag_of(b"other bytes")})
    assert bad.value.code == "BadDigest"
    assert verifier.proof is Proof.UNKNOWN  # nothing proven yet


def test_no_echo_and_no_md5_etag_cannot_be_proven():
    verifier = PartVerifier(CRC64NVME, pinned=False, warn=lambda _: None)
    with pytest.raises(ChecksumNotVerified, match="nor returned its MD5"):
        verifier.check(1, digests(), {"ETag": '"0a1b-opaque-id"'})


def test_pinned_algorithm_without_echo_is_refused():
    verifier = PartVerifier(SHA256, pinned=True)
    assert not verifier.needs_md5()
    d = PartDigests(b64(SHA256.of(DATA)))
    with pytest.raises(ChecksumNotVerified) as refused:
        verifier.check(1, d, {"ETag": etag_of(DATA)})
    assert "did not verify the SHA256 checksum of part 1" in str(refused.value)
    assert "x-amz-checksum-sha256" in str(refused.value)
    assert refused.value.exit_code == 1 and refused.value.hint


def test_endpoint_that_stops_echoing_is_refused():
    verifier = PartVerifier(CRC64NVME, pinned=False, warn=lambda _: None)
    d = digests()
    verifier.check(1, d, echo(d))
    with pytest.raises(ChecksumNotVerified, match="stopped confirming"):
        verifier.check(2, digests(md5=False), {"ETag": etag_of(DATA)})


def test_content_md5_mode():
    verifier = PartVerifier(MD5, pinned=True)
    assert verifier.proof is Proof.ETAG and verifier.needs_md5() and not verifier.flexible
    assert verifier.create_fields("COMPOSITE") == {}
    d = PartDigests(b64(hashlib.md5(DATA).digest()), hashlib.md5(DATA).digest())
    assert verifier.request_fields(d) == {"ContentMD5": d.checksum}
    assert verifier.check(1, d, {"ETag": etag_of(DATA)}) == etag_of(DATA)
    with pytest.raises(TransientError):
        verifier.check(2, d, {"ETag": etag_of(b"x")})


def test_create_fields_of_flexible_modes():
    verifier = PartVerifier(CRC64NVME, pinned=False)
    assert verifier.create_fields("FULL_OBJECT") == {
        "ChecksumAlgorithm": "CRC64NVME",
        "ChecksumType": "FULL_OBJECT",
    }
