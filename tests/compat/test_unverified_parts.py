"""Issue 13's integrity hole: a part the endpoint did not verify is never accepted silently.

Two endpoints that do not verify flexible checksums: moto (it ignores ``x-amz-checksum-*`` and
echoes nothing), and SeaweedFS behind :class:`tests.httpproxy.HttpProxy` with
``strip_checksums`` (the server verifies, but its answers no longer say so: the client sees an
endpoint without flexible checksums). The proxy also records what persevere sent, so the tests
check the requests (Content-MD5 on parts, no checksum fields in Content-MD5 mode) and not only
the outcome.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import ServerTraits
from tests.conftest import persevere, sha256_of_file, sha256_of_object
from tests.faultproxy import NO_FAULT, Fault, FaultProxy
from tests.httpproxy import HttpProxy

# Slow (make test-all, CI): the compatibility matrix (moto, JuiceFS).
pytestmark = pytest.mark.slow

MiB = 1024 * 1024
PART = 5 * MiB


def _parts(state: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in state.read_text().splitlines()]
    return [line for line in lines if line["type"] == "part"]


def _part_md5(file: Path, number: int) -> str:
    with file.open("rb") as f:
        f.seek((number - 1) * PART)
        return hashlib.md5(f.read(PART)).hexdigest()


@pytest.fixture
def unverifying(compat_server, s3_env):
    """An endpoint that confirms no checksum: (env pointing at it, the recording proxy)."""
    with HttpProxy.in_front_of(compat_server.endpoint_url, strip_checksums=True) as proxy:
        yield {**s3_env, "AWS_ENDPOINT_URL": proxy.url}, proxy


def test_default_falls_back_to_content_md5(unverifying, bucket, s3_client, make_file, tmp_path):
    env, proxy = unverifying
    file = make_file(3 * PART + 99, seed=11)
    state = tmp_path / "s"
    result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                       "--part-size", "5MiB", "-c", "2", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
    # One warning, not one per part.
    assert result.stderr.count("Content-MD5") == 1, result.stderr
    # Every part went with Content-MD5 (the first wave too), and each journaled ETag is the
    # MD5 of the local bytes: every part recorded was proven.
    sent = proxy.requests("UploadPart")
    assert sent and all(e.header("content-md5") for e in sent)
    for part in _parts(state):
        assert part["etag"].strip('"') == _part_md5(file, part["part_number"])


def test_pinned_checksum_is_refused_without_echo(unverifying, bucket, s3_client, make_file,
                                                 tmp_path):  # fmt: skip
    env, proxy = unverifying
    file = make_file(2 * PART, seed=12)
    state = tmp_path / "s"
    result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                       state, "--checksum", "CRC64NVME", "--part-size", "5MiB",
                       "--no-progress")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "did not verify the CRC64NVME checksum" in result.stderr
    assert "Traceback" not in result.stderr
    assert _parts(state) == []  # nothing unverified was recorded
    assert proxy.requests("CompleteMultipartUpload") == []
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)


def test_checksum_md5_is_content_md5_mode(
    server_traits: ServerTraits, unverifying, bucket, s3_client, make_file, tmp_path
):
    env, proxy = unverifying
    file = make_file(2 * PART + 5, seed=13)
    result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                       tmp_path / "s", "--checksum", "MD5", "--part-size", "5MiB",
                       "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Content-MD5" not in result.stderr  # chosen, so no fallback warning
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
    (create,) = proxy.requests("CreateMultipartUpload")
    assert create.header("x-amz-checksum-algorithm") is None
    for part in proxy.requests("UploadPart"):
        assert part.header("content-md5")
        assert not [name for name, _ in part.headers if name.lower().startswith("x-amz-checksum")]
    (complete,) = proxy.requests("CompleteMultipartUpload")
    assert complete.header("x-amz-checksum-type") is None
    if server_traits.object_attributes:
        verified = persevere(env, "verify", file, f"s3://{bucket}/k")
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_part_corrupted_in_flight_is_never_kept(
    compat_server, s3_env, server_traits: ServerTraits, bucket, s3_client, make_file,
    tmp_path,
):  # fmt: skip
    """A bit flipped on the wire: the server (if it checks) or persevere (ETag) must catch it."""
    plan = lambda n: Fault("corrupt", at_byte=3 * MiB) if n < 2 else NO_FAULT  # noqa: E731
    with (
        HttpProxy.in_front_of(compat_server.endpoint_url, strip_checksums=True) as proxy,
        FaultProxy(("127.0.0.1", proxy.port), plan) as faults,
    ):
        env = {**s3_env, "AWS_ENDPOINT_URL": faults.url}
        file = make_file(3 * PART, seed=14)
        result = persevere(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                           tmp_path / "s", "--part-size", "5MiB", "-c", "1",
                           "--no-progress")  # fmt: skip
    assert faults.faults_done, "the fault never struck: the test proves nothing"
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
    if not server_traits.verifies_content_md5:
        # Only persevere's ETag comparison can have caught it: the part was sent again.
        assert len(proxy.requests("UploadPart")) > 3
