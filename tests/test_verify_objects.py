"""``verify`` against objects made the way other tools make them, on the real local SeaweedFS.

A property test writes objects as single PUTs (each checksum SeaweedFS accepts, or none) and as
multipart uploads (equal and unequal parts, composite and full-object checksums, or none), by
persevere or over an earlier persevere upload whose state file is then passed along; and reads
them through three endpoints: SeaweedFS itself, one that refuses GetObjectAttributes (an
identity without s3:GetObjectAttributes) and one that also ignores HeadObject's PartNumber.
Identical bytes must match, one changed byte must not; "cannot tell" only where nothing can
(the part sizes of an object whose value is built from its parts, from an endpoint that tells
none); never a traceback.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import persevere
from tests.conftest import persevere as persevere_cli
from tests.ruleproxy import Rule, RuleProxy, ignoring_part_number

MiB = 1024 * 1024
EXIT_MISMATCH = 4
EXIT_UNKNOWN = 5

REFUSE_ATTRIBUTES = Rule("GET", "attributes", refuse=(403, "AccessDenied"))
IGNORE_PART_NUMBER = Rule("HEAD", "partNumber", rewrite=ignoring_part_number)
ENDPOINTS = ("direct", "no-attributes", "no-part-sizes")


@dataclass(frozen=True)
class Shape:
    """How a tool writes an object."""

    parts: tuple[int, ...] | None  # None: a single PUT; else the sizes of a multipart upload
    algorithm: str | None  # the checksum the tool asks for; None: none at all
    checksum_type: str | None = None  # a multipart upload's COMPOSITE/FULL_OBJECT, or default
    by_persevere: bool = False  # persevere's own upload (parts equal but the last)
    single_size: int = 0  # of a single PUT

    @property
    def size(self) -> int:
        return sum(self.parts) if self.parts is not None else self.single_size

    def built_from_parts(self) -> bool:
        """Whether the object's value is computed from its parts' (composite checksum or
        multipart ETag), so its part sizes are needed to reproduce it."""
        if self.parts is None or len(self.parts) == 1:
            return False
        if self.by_persevere:
            return self.algorithm in ("SHA1", "SHA256")  # composite; CRCs are full-object
        if self.algorithm is None:
            return True  # the multipart ETag
        return self.checksum_type == "COMPOSITE" or (
            self.checksum_type is None and self.algorithm not in ("CRC64NVME",)
        )


ALGORITHMS = (None, "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
TYPES = {
    None: (None,),
    "CRC32": (None, "COMPOSITE", "FULL_OBJECT"),
    "CRC32C": (None, "COMPOSITE", "FULL_OBJECT"),
    "CRC64NVME": (None, "FULL_OBJECT"),
    "SHA1": (None, "COMPOSITE"),
    "SHA256": (None, "COMPOSITE"),
}


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    kind = draw(st.sampled_from(["single", "equal", "unequal", "persevere"]))
    if kind == "persevere":
        algorithm = draw(st.sampled_from(["CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1"]))
        count = draw(st.integers(1, 3))
        last = draw(st.integers(1, 5 * MiB))
        return Shape((5 * MiB,) * (count - 1) + (last,), algorithm, by_persevere=True)
    algorithm = draw(st.sampled_from(ALGORITHMS))
    if kind == "single":
        return Shape(None, algorithm, single_size=draw(st.integers(0, 2 * MiB)))
    count = draw(st.integers(1, 3))
    if kind == "equal":
        sizes = [5 * MiB] * (count - 1)
    else:
        sizes = [5 * MiB + draw(st.integers(1, MiB)) for _ in range(count - 1)]
    sizes.append(draw(st.integers(1, 5 * MiB)))
    return Shape(tuple(sizes), algorithm, draw(st.sampled_from(TYPES[algorithm])))


def _client(s3_server, url: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=url or s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=s3_server.region,
        # Checksums only where asked: "none at all" must mean none.
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def write_object(client, bucket: str, key: str, data: bytes, shape: Shape, state: Path) -> None:
    """Write ``data`` as ``shape`` says (``state``: persevere's state file, if it uploads)."""
    if shape.by_persevere:
        assert shape.parts is not None
        persevere.upload_file_sync(
            _file(state.with_suffix(".src"), data), bucket, key, state,
            part_size=max(shape.parts[0], 5 * MiB), checksum=shape.algorithm,
        )  # fmt: skip
        return
    asked = {"ChecksumAlgorithm": shape.algorithm} if shape.algorithm else {}
    if shape.parts is None:
        client.put_object(Bucket=bucket, Key=key, Body=data, **asked)
        return
    create = dict(asked)
    if shape.checksum_type:
        create["ChecksumType"] = shape.checksum_type
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    parts, offset = [], 0
    for number, size in enumerate(shape.parts, start=1):
        answer = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
            Body=data[offset : offset + size], **asked,
        )  # fmt: skip
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if shape.algorithm:
            part[f"Checksum{shape.algorithm}"] = answer[f"Checksum{shape.algorithm}"]
        parts.append(part)
        offset += size
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _changed(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


@pytest.fixture(scope="module")
def endpoints(s3_server):
    """Each endpoint's URL: SeaweedFS, and the proxies that refuse what some endpoints do."""
    upstream = urlsplit(s3_server.endpoint_url)
    address = (upstream.hostname, upstream.port)
    with (
        RuleProxy(address, [REFUSE_ATTRIBUTES]) as no_attributes,
        RuleProxy(address, [REFUSE_ATTRIBUTES, IGNORE_PART_NUMBER]) as no_part_sizes,
    ):
        yield {
            "direct": s3_server.endpoint_url,
            "no-attributes": no_attributes.url,
            "no-part-sizes": no_part_sizes.url,
        }


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shape=shapes(),
    earlier=st.one_of(st.none(), st.sampled_from(["CRC64NVME", "CRC32", "SHA256"])),
    endpoint=st.sampled_from(ENDPOINTS),
    seed=st.integers(0, 2**32 - 1),
    where=st.floats(0, 1, exclude_max=True),
)
@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
def test_identical_bytes_match_and_one_changed_byte_does_not(
    s3_env, s3_server, bucket, endpoints, tmp_path, shape, earlier, endpoint, seed, where
):
    key = f"obj-{uuid.uuid4().hex[:8]}"
    work = tmp_path / key
    work.mkdir()
    data = random.Random(seed).randbytes(shape.size)
    state = None
    if earlier is not None and not shape.by_persevere:
        # An earlier persevere upload of other bytes; its state file goes along with verify.
        state = work / "earlier.persevere"
        other = random.Random(seed + 1).randbytes(6 * MiB)
        persevere.upload_file_sync(_file(work / "earlier.src", other), bucket, key, state,
                                   part_size=5 * MiB, checksum=earlier)  # fmt: skip
    if shape.by_persevere:
        state = work / "own.persevere"
    write_object(_client(s3_server), bucket, key, data, shape, work / "own.persevere")
    where_to = persevere.Endpoint(endpoints[endpoint], s3_server.region)
    # persevere's own state file gives the part sizes that such an endpoint does not
    cannot_tell = (
        endpoint == "no-part-sizes" and shape.built_from_parts() and not shape.by_persevere
    )

    same = persevere.verify_sync(_file(work / "same", data), bucket, key, endpoint=where_to,
                                 state_file=state)  # fmt: skip
    assert same.outcome == ("unknown" if cannot_tell else "match"), (shape, same)
    if cannot_tell:
        assert "needs the sizes of the object's parts" in same.reason
        assert "GetObjectAttributes answers AccessDenied" in same.reason
    if not data:
        return
    offset = int(where * len(data))
    changed = persevere.verify_sync(_file(work / "changed", _changed(data, offset)), bucket,
                                    key, endpoint=where_to, state_file=state)  # fmt: skip
    assert changed.outcome == ("unknown" if cannot_tell else "mismatch"), (shape, changed)
    if shape.by_persevere and changed.outcome == "mismatch":
        assert shape.parts is not None
        assert changed.first_bad_part == offset // shape.parts[0] + 1, changed
    elif state is not None and changed.outcome == "mismatch":
        assert "not written by that upload" in changed.reason, changed


# -- each case of issue 18, through the command -----------------------------------------------
def assert_clean(result):
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA1"])
def test_single_put_with_a_sha_checksum_matches(s3_env, s3_server, bucket, tmp_path, algorithm):
    """Case 1: a plain SHA digest was compared as a composite of one part (MISMATCH)."""
    data = random.Random(1).randbytes(3 * MiB + 5)
    _client(s3_server).put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm=algorithm)
    same = persevere_cli(s3_env, "verify", _file(tmp_path / "f", data), f"s3://{bucket}/k",
                         "--no-progress")  # fmt: skip
    assert same.returncode == 0, same.stdout + same.stderr
    assert (
        same.stdout.startswith(f"match: s3://{bucket}/k") and f"{algorithm} checksum" in same.stdout
    )
    changed = persevere_cli(s3_env, "verify", _file(tmp_path / "g", _changed(data, 7)),
                            f"s3://{bucket}/k", "--no-progress")  # fmt: skip
    assert changed.returncode == EXIT_MISMATCH, changed.stdout + changed.stderr


@pytest.mark.slow  # (over 3 s in make test: make test-all runs it)
def test_unequal_parts_without_get_object_attributes(
    s3_env, s3_server, bucket, tmp_path, endpoints
):
    """Case 2: with GetObjectAttributes refused, each part's size is asked (HeadObject with
    PartNumber); an endpoint that cannot tell them gets "cannot tell" (5), never MISMATCH."""
    data = random.Random(2).randbytes(19 * MiB)
    shape = Shape((6 * MiB, 5 * MiB + 17, 8 * MiB - 17), "SHA256", "COMPOSITE")
    write_object(_client(s3_server), bucket, "k", data, shape, tmp_path / "unused")
    file, changed = _file(tmp_path / "f", data), _file(tmp_path / "g", _changed(data, 12 * MiB))

    def verify(endpoint, local):
        env = {**s3_env, "AWS_ENDPOINT_URL": endpoints[endpoint]}
        return persevere_cli(env, "verify", local, f"s3://{bucket}/k", "--no-progress")

    same = verify("no-attributes", file)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "composite checksum of 3 parts" in same.stdout
    differs = verify("no-attributes", changed)
    assert differs.returncode == EXIT_MISMATCH, differs.stdout + differs.stderr
    for local in (file, changed):
        unknown = verify("no-part-sizes", local)
        assert unknown.returncode == EXIT_UNKNOWN, unknown.stdout + unknown.stderr
        assert unknown.stdout.startswith("cannot tell:")
        assert "GetObjectAttributes answers AccessDenied" in unknown.stdout
        assert "HeadObject with PartNumber answers sizes that are not the parts'" in unknown.stdout
        assert_clean(unknown)


def test_state_file_of_an_overwritten_object(s3_env, s3_server, bucket, tmp_path):
    """Case 3: the journal's CRC64NVME part values were combined as CRC32 (a traceback)."""
    first = random.Random(3).randbytes(12 * MiB)
    state = tmp_path / "s"
    persevere.upload_file_sync(_file(tmp_path / "first", first), bucket, "k", state,
                               part_size=5 * MiB)  # fmt: skip
    data = random.Random(4).randbytes(12 * MiB)  # another tool writes other bytes, 3 parts
    shape = Shape((5 * MiB, 5 * MiB, 2 * MiB), "CRC32", "FULL_OBJECT")
    write_object(_client(s3_server), bucket, "k", data, shape, tmp_path / "unused")
    changed = persevere_cli(s3_env, "verify", _file(tmp_path / "g", _changed(data, 6 * MiB)),
                            f"s3://{bucket}/k", "--state-file", state, "--no-progress")  # fmt: skip
    assert_clean(changed)
    assert changed.returncode == EXIT_MISMATCH, changed.stdout + changed.stderr
    assert (
        "the state file's parts carry CRC64NVME checksums, the object CRC32: the object was "
        "not written by that upload" in changed.stdout
    )
    same = persevere_cli(s3_env, "verify", _file(tmp_path / "f", data), f"s3://{bucket}/k",
                         "--state-file", state, "--no-progress")  # fmt: skip
    assert same.returncode == 0, same.stdout + same.stderr


def test_missing_object_is_named(s3_env, bucket, tmp_path):
    result = persevere_cli(s3_env, "verify", _file(tmp_path / "f", b"x"),
                           f"s3://{bucket}/nothing-here")  # fmt: skip
    assert result.returncode == 1
    assert f"persevere: error: s3://{bucket}/nothing-here does not exist" in result.stderr
    assert_clean(result)


def test_missing_bucket_is_named(s3_env, bucket, tmp_path):
    """HeadObject's 404 has no body: HeadBucket tells a missing bucket from a missing key."""
    gone = f"{bucket}-gone"
    result = persevere_cli(s3_env, "verify", _file(tmp_path / "f", b"x"), f"s3://{gone}/k")
    assert result.returncode == 1
    assert f"persevere: error: s3://{gone}/k: the bucket {gone} does not exist" in result.stderr
    assert_clean(result)


def test_missing_local_file_is_not_called_an_upload(s3_env, bucket, tmp_path):
    result = persevere_cli(s3_env, "verify", tmp_path / "nofile", f"s3://{bucket}/k")
    assert result.returncode == 2
    assert f"persevere: error: local file {tmp_path / 'nofile'} does not exist" in result.stderr
    assert "upload" not in result.stderr
