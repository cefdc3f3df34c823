"""Checksums: part CRCs combine into the whole object's CRC without a second read."""

from __future__ import annotations

import base64
import hashlib
import itertools
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from persevere._checksums import (
    ALGORITHMS,
    CRC32,
    CRC32C,
    CRC64NVME,
    SHA1,
    SHA256,
    ObjectChecksum,
    b64,
    get_algorithm,
    unb64,
)
from persevere._quirks import ETag

CHECK = b"123456789"  # the CRC catalogue's check input


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        (CRC64NVME, 0xAE8B14860A799888),
        (CRC32C, 0xE3069283),
        (CRC32, 0xCBF43926),
    ],
    ids=lambda v: getattr(v, "name", None),
)
def test_crc_check_values(algorithm, expected):
    assert algorithm.of(CHECK) == expected.to_bytes(algorithm.width, "big")


@pytest.mark.parametrize(
    ("algorithm", "reference"),
    [(SHA256, hashlib.sha256), (SHA1, hashlib.sha1)],
    ids=["SHA256", "SHA1"],
)
def test_sha_matches_hashlib(algorithm, reference):
    assert algorithm.of(CHECK) == reference(CHECK).digest()
    assert len(algorithm.of(b"")) == algorithm.width


def test_crc32_matches_zlib():
    data = bytes(range(256)) * 3
    assert CRC32.of(data) == zlib.crc32(data).to_bytes(4, "big")


@pytest.mark.parametrize("algorithm", list(ALGORITHMS.values()), ids=list(ALGORITHMS))
def test_incremental_update_equals_one_shot(algorithm):
    hasher = algorithm.new()
    for chunk in (b"1234", b"", b"56789"):
        hasher.update(chunk)
    assert hasher.digest() == algorithm.of(CHECK)
    assert algorithm.new().digest() == algorithm.of(b"")


def test_algorithms_are_the_ones_botocore_sends():
    """Each algorithm's name and parameter exist in botocore's S3 model, and the CLI's
    choices are exactly the algorithms persevere can compute."""
    from typing import get_args

    import botocore.session

    from persevere._checksums import AlgorithmName

    model = botocore.session.get_session().get_service_model("s3")
    upload_part = model.operation_model("UploadPart").input_shape.members
    create = model.operation_model("CreateMultipartUpload").input_shape.members
    assert set(get_args(AlgorithmName)) == set(ALGORITHMS)
    for algorithm in ALGORITHMS.values():
        assert algorithm.param in upload_part, algorithm.name
        assert algorithm.name in create["ChecksumAlgorithm"].enum, algorithm.name
    assert [a.name for a in ALGORITHMS.values() if a.full_object] == [
        "CRC64NVME",
        "CRC32C",
        "CRC32",
    ]
    assert {a.name: a.width for a in ALGORITHMS.values()} == {
        "CRC64NVME": 8,
        "CRC32C": 4,
        "CRC32": 4,
        "SHA512": 64,
        "MD5": 16,
        "XXHASH64": 8,
        "XXHASH3": 8,
        "XXHASH128": 16,
        "SHA256": 32,
        "SHA1": 20,
    }


@st.composite
def split_data(draw):
    """Random bytes and a random cut into consecutive (possibly empty) parts."""
    data = draw(st.binary(max_size=4096))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("algorithm", [CRC64NVME, CRC32C, CRC32], ids=lambda a: a.name)
@given(case=split_data())
def test_full_object_crc_combines_from_parts(algorithm, case):
    data, parts = case
    combined = algorithm.combine([(algorithm.of(part), len(part)) for part in parts])
    assert combined == algorithm.of(data)


@pytest.mark.parametrize("algorithm", [SHA256, SHA1], ids=lambda a: a.name)
@given(case=split_data())
def test_composite_checksum_is_hash_of_part_digests(algorithm, case):
    _, parts = case
    digests = [algorithm.of(part) for part in parts]
    combined = algorithm.combine(
        [(digest, len(part)) for digest, part in zip(digests, parts, strict=True)]
    )
    assert combined == algorithm.of(b"".join(digests))


def test_multipart_etag_known_parts():
    md5s = [hashlib.md5(chunk).hexdigest() for chunk in (b"a" * 10, b"b" * 20, b"c")]
    expected = hashlib.md5(b"".join(bytes.fromhex(m) for m in md5s)).hexdigest()
    # S3 returns part ETags quoted; both forms are accepted.
    assert ETag.multipart([f'"{m}"' for m in md5s]) == f'"{expected}-3"'
    assert ETag.multipart(md5s) == f'"{expected}-3"'


def test_multipart_etag_single_part():
    md5 = hashlib.md5(b"").hexdigest()
    expected = hashlib.md5(bytes.fromhex(md5)).hexdigest()
    assert ETag.multipart([md5]) == f'"{expected}-1"'


@pytest.mark.parametrize(
    ("etag", "md5", "parts"),
    [
        ('"d41d8cd98f00b204e9800998ecf8427e"', "d41d8cd98f00b204e9800998ecf8427e", None),
        ("D41D8CD98F00B204E9800998ECF8427E", "d41d8cd98f00b204e9800998ecf8427e", None),
        ('"d41d8cd98f00b204e9800998ecf8427e-2"', "d41d8cd98f00b204e9800998ecf8427e", 2),
        ("d41d8cd98f00b204e9800998ecf8427", None, None),
        ("z41d8cd98f00b204e9800998ecf8427e", None, None),
    ],
)
def test_etag_shapes(etag, md5, parts):
    assert ETag(etag).md5 == md5
    assert ETag(etag).part_count == parts
    assert ETag(etag).same(etag.strip('"').upper())


@pytest.mark.parametrize(
    ("response", "proves"),
    [({}, True), ({"ServerSideEncryption": "AES256"}, True),
     ({"ServerSideEncryption": "aws:kms"}, False), ({"SSECustomerAlgorithm": "AES256"}, False)],
)  # fmt: skip
def test_etag_proves_content_unless_kms_or_sse_c(response, proves):
    assert ETag.proves_content(response) is proves


def test_object_checksum_shapes():
    parts = [(b64(CRC64NVME.of(b"a" * 10)), 10), (b64(CRC64NVME.of(b"b" * 3)), 3)]
    full = ObjectChecksum.of_parts(CRC64NVME, parts, composite=False)
    assert str(full) == b64(CRC64NVME.of(b"a" * 10 + b"b" * 3))
    composite = ObjectChecksum.of_parts(SHA256, [(b64(SHA256.of(b"x")), 1)] * 2, composite=True)
    assert str(composite) == b64(SHA256.of(SHA256.of(b"x") * 2)) + "-2"
    stored = ObjectChecksum.stored({"ChecksumSHA256": str(composite)})
    assert stored == composite
    assert ObjectChecksum.stored({"ETag": '"x"'}) is None


def test_a_composite_checksum_stated_without_its_part_count_still_matches():
    """moto's HeadObject drops the ``-N``: the digest (which implies N) is compared alone."""
    part = (b64(SHA256.of(b"x")), 1)
    two = ObjectChecksum.of_parts(SHA256, [part] * 2, composite=True)
    three = ObjectChecksum.of_parts(SHA256, [part] * 3, composite=True)
    assert two.matches(str(two)) and two.matches(two.digest)
    assert not two.matches(f"{two.digest}-3")  # another count stated: a mismatch
    assert not two.matches(three.digest) and not two.matches(str(three))
    full = ObjectChecksum.of_parts(CRC64NVME, [(b64(CRC64NVME.of(b"x")), 1)], composite=False)
    assert full.matches(full.digest) and not full.matches(f"{full.digest}-1")
    assert ObjectChecksum.parse(SHA256, str(two)) == two
    assert ObjectChecksum.parse(CRC64NVME, full.digest) == full


@given(st.binary(max_size=64))
def test_b64_round_trip(digest):
    text = b64(digest)
    assert text == base64.b64encode(digest).decode()
    assert unb64(text) == digest
    assert unb64(f"{text}-17") == digest


def test_unb64_strips_part_count_suffix():
    digest = CRC64NVME.of(CHECK)
    assert unb64(b64(digest) + "-3") == digest


def test_unb64_refuses_garbage():
    with pytest.raises(ValueError, match="base64"):
        unb64("not base64!")


@pytest.mark.parametrize("name", ["crc64nvme", "CRC64NVME", "Crc64Nvme"])
def test_get_algorithm_is_case_insensitive(name):
    assert get_algorithm(name) is CRC64NVME


def test_get_algorithm_refuses_unknown_names():
    with pytest.raises(
        ValueError, match=r"unknown checksum algorithm 'crc16' \(choose from CRC64NVME"
    ):
        get_algorithm("crc16")


@pytest.mark.parametrize("name", ["XXHASH64", "XXHASH3", "XXHASH128", "SHA512", "MD5"])
def test_newer_algorithms_hash_mutable_buffers(name):
    """Parts are hashed from reusable bytearrays/memoryviews, not bytes."""
    algorithm = ALGORITHMS[name]
    data = bytearray(b"123456789" * 1000)
    assert algorithm.of(memoryview(data)) == algorithm.of(bytes(data))
    assert algorithm.of(data) == algorithm.of(bytes(data))


def test_xxhash64_known_vector():
    assert ALGORITHMS["XXHASH64"].of(b"").hex() == "ef46db3751d8e999"
