"""The compatibility matrix: the tests under ``tests/compat`` run once per S3 implementation.

``compat_server`` is a parametrized session fixture; ``s3_env``, ``s3_client`` and ``bucket``
are overridden here to be built on it, so the tests read like the rest of the suite:

- ``seaweedfs``: the suite's own SeaweedFS (the ``s3_server`` of ``tests/conftest.py``; started
  once per session for the whole suite, not a second one);
- ``moto``: moto's server (:mod:`tests.motoserver`), written against AWS's documented behaviour;
- ``juicefs``: JuiceFS's S3 gateway (:mod:`tests.juicefsserver`, MinIO's gateway code), a real
  endpoint without flexible checksums.

Why not override ``s3_server`` itself: the session ``s3_client`` that depends on it is cached
by its own parameters only, so a client built for moto in here leaked, pointing at the wrong
server, into the tests outside ``tests/compat``. Here ``s3_client`` is per test (cheap).

Tests say what differs through :class:`ServerTraits` (``server_traits``), facts probed on each
server (see /work/notes/compat-findings.md), never by testing the server's name. Select one
server with ``-k seaweedfs`` or ``-k moto``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import S3Client, _client_for, _scrub_aws_env
from tests.juicefsserver import JuiceFSServer
from tests.motoserver import MotoServer


@dataclass(frozen=True)
class ServerTraits:
    """What one S3 implementation does where implementations differ (probed, not assumed)."""

    name: str
    # UploadPart with x-amz-checksum-<alg> only: the part is refused when it does not match, and
    # the checksum is echoed in the response. moto stores and echoes nothing unless
    # x-amz-sdk-checksum-algorithm is sent too, and then echoes the client's value unverified.
    verifies_part_checksums: bool
    # SHA512, MD5, XXHASH64, XXHASH3, XXHASH128 (added to S3's model in 2026).
    refuses_extended_algorithms: bool
    # HeadObject of a COMPOSITE object shows the part count suffix (``xxx-N``) like AWS.
    composite_checksum_has_part_count: bool
    # Content-MD5 of a part is checked (BadDigest when wrong).
    verifies_content_md5: bool
    # CompleteMultipartUpload with If-None-Match: * answers 412 when the key exists.
    if_none_match_on_complete: bool
    # x-amz-object-lock-* on CreateMultipartUpload is applied to the completed object.
    object_lock_on_multipart: bool
    # x-amz-object-lock-* on CreateMultipartUpload, bucket without object lock: refused
    # (InvalidRequest); moto accepts it (and applies nothing).
    refuses_lock_without_bucket_lock: bool
    # UploadPart to an aborted upload answers NoSuchUpload (moto: 500 InternalError).
    no_such_upload_on_upload_part: bool
    # GetObjectAttributes answers (persevere's verify reads the part layout from it).
    object_attributes: bool


TRAITS = {
    "seaweedfs": ServerTraits(
        name="seaweedfs",
        verifies_part_checksums=True,
        refuses_extended_algorithms=True,
        composite_checksum_has_part_count=True,
        verifies_content_md5=True,
        if_none_match_on_complete=True,
        object_lock_on_multipart=True,
        refuses_lock_without_bucket_lock=True,
        no_such_upload_on_upload_part=True,
        object_attributes=True,
    ),
    "moto": ServerTraits(
        name="moto",
        verifies_part_checksums=False,
        refuses_extended_algorithms=False,
        composite_checksum_has_part_count=False,
        verifies_content_md5=False,
        if_none_match_on_complete=True,
        object_lock_on_multipart=False,
        refuses_lock_without_bucket_lock=False,
        no_such_upload_on_upload_part=False,
        object_attributes=True,
    ),
    "juicefs": ServerTraits(
        name="juicefs",
        verifies_part_checksums=False,
        refuses_extended_algorithms=False,
        composite_checksum_has_part_count=False,  # it shows no checksum at all
        verifies_content_md5=True,
        if_none_match_on_complete=False,
        object_lock_on_multipart=False,
        refuses_lock_without_bucket_lock=True,
        no_such_upload_on_upload_part=True,
        object_attributes=False,  # 500
    ),
}


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def juicefs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JuiceFSServer]:
    with JuiceFSServer(tmp_path_factory.mktemp("juicefs")) as server:
        yield server


@pytest.fixture(scope="session", params=sorted(TRAITS))
def compat_server(request: pytest.FixtureRequest) -> Any:
    """The S3 server of this run of the matrix (an ``S3Server`` or a ``LoopbackServer``)."""
    fixture = "s3_server" if request.param == "seaweedfs" else f"{request.param}_server"
    return request.getfixturevalue(fixture)


@pytest.fixture(scope="session")
def server_traits(compat_server: Any) -> ServerTraits:
    return TRAITS[getattr(compat_server, "name", "seaweedfs")]  # S3Server has no name


@pytest.fixture
def s3_env(compat_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """os.environ holding exactly the server's AWS_* settings; subprocesses inherit it."""
    _scrub_aws_env(monkeypatch, tmp_path)
    for name, value in compat_server.env().items():
        monkeypatch.setenv(name, value)
    return {name: value for name, value in os.environ.items() if name.startswith("AWS_")}


@pytest.fixture
def s3_client(compat_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Client]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _scrub_aws_env(monkeypatch, tmp_path_factory.mktemp("aws-home"))
        client = _client_for(compat_server, compat_server.access_key, compat_server.secret_key)
    yield client
    client.close()


@pytest.fixture
def bucket(s3_client: S3Client) -> Iterator[str]:
    """A new bucket per test, given back at teardown (SeaweedFS's volumes are finite)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    _delete_bucket(s3_client, name)


def _delete_bucket(client: S3Client, name: str) -> None:
    """``tests.conftest.delete_bucket``, objects deleted one by one: JuiceFS's gateway (old
    MinIO) wants Content-MD5 on DeleteObjects, where boto3 now sends a CRC32
    (MissingContentMD5: the aws-cli#9214 family of breakages)."""
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for upload in page.get("Uploads") or []:
            with contextlib.suppress(ClientError):  # completed or aborted meanwhile
                client.abort_multipart_upload(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents") or []:
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)
