"""The compatibility matrix: the tests under ``tests/compat`` run once per S3 implementation.

``s3_server`` is overridden here by a parametrized session fixture, so the shared fixtures of
``tests/conftest.py`` (``s3_env``, ``s3_client``, ``bucket``) follow it unchanged:

- ``seaweedfs``: the suite's own SeaweedFS (the parent ``s3_server``; started once per session
  for the whole suite, not a second one);
- ``moto``: moto's server (:mod:`tests.motoserver`), written against AWS's documented behaviour.

Tests say what differs through :class:`ServerTraits` (``server_traits``), facts probed on each
server (see /work/notes/compat-findings.md), never by testing the server's name. Select one
server with ``-k seaweedfs`` or ``-k moto``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

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
    # UploadPart to an aborted upload answers NoSuchUpload (moto: 500 InternalError).
    no_such_upload_on_upload_part: bool


TRAITS = {
    "seaweedfs": ServerTraits(
        name="seaweedfs",
        verifies_part_checksums=True,
        refuses_extended_algorithms=True,
        composite_checksum_has_part_count=True,
        verifies_content_md5=True,
        if_none_match_on_complete=True,
        object_lock_on_multipart=True,
        no_such_upload_on_upload_part=True,
    ),
    "moto": ServerTraits(
        name="moto",
        verifies_part_checksums=False,
        refuses_extended_algorithms=False,
        composite_checksum_has_part_count=False,
        verifies_content_md5=False,
        if_none_match_on_complete=True,
        object_lock_on_multipart=False,
        no_such_upload_on_upload_part=False,
    ),
}


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session", params=sorted(TRAITS))
def s3_server(request: pytest.FixtureRequest) -> Any:
    """The S3 server of this run of the matrix; the parent's SeaweedFS for ``seaweedfs``."""
    if request.param == "seaweedfs":
        return request.getfixturevalue("s3_server")  # the parent fixture of the same name
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(scope="session")
def server_traits(s3_server: Any) -> ServerTraits:
    return TRAITS[getattr(s3_server, "name", "seaweedfs")]  # S3Server has no name: SeaweedFS
