"""Shared fixtures: one real S3 server per session, an isolated AWS environment per test.

The digest helpers are plain functions so tests import them: ``from tests.conftest import ...``.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import boto3  # type: ignore[import-untyped, unused-ignore]
import pytest
from botocore.config import Config

from tests.s3server import S3Server

# boto3 ships no types and boto3-stubs is not a dependency; the alias documents intent.
S3Client: TypeAlias = Any

MiB = 1024 * 1024
_DIGEST_CHUNK_BYTES = MiB

MakeFile = Callable[..., Path]


def sha256_of_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def sha256_of_object(client: S3Client, bucket: str, key: str) -> str:
    """Digest of an object, streamed so multi-GiB objects do not land in memory."""
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        for chunk in body.iter_chunks(_DIGEST_CHUNK_BYTES):
            digest.update(chunk)
    finally:
        body.close()
    return digest.hexdigest()


def _scrub_aws_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Leave only what the test sets: the machine has AWS_CA_BUNDLE, a developer has profiles."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    # Point the SDK at files that do not exist, so ~/.aws/* cannot leak in.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
    # Without credentials botocore would otherwise probe the EC2 metadata service for seconds.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("s3server")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """os.environ holding exactly the server's AWS_* settings; subprocesses inherit it."""
    _scrub_aws_env(monkeypatch, tmp_path)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return {name: value for name, value in os.environ.items() if name.startswith("AWS_")}


def _client_for(server: S3Server, access_key: str, secret_key: str) -> S3Client:
    config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=server.region,
        config=config,
    )


@pytest.fixture(scope="session")
def s3_client(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Client]:
    """Admin client, built once under a scrubbed environment so no profile settings leak in."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _scrub_aws_env(monkeypatch, tmp_path_factory.mktemp("aws-home"))
        client = _client_for(s3_server, s3_server.access_key, s3_server.secret_key)
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_readonly_client(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Client]:
    """Client of the identity that may only Read and List: for AccessDenied paths."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _scrub_aws_env(monkeypatch, tmp_path_factory.mktemp("aws-home"))
        client = _client_for(
            s3_server, s3_server.readonly_access_key, s3_server.readonly_secret_key
        )
    yield client
    client.close()


@pytest.fixture
def bucket(s3_client: S3Client) -> str:
    """A new bucket per test, so tests never see each other's objects or multipart uploads."""
    name = f"test-{uuid.uuid4().hex[:16]}"  # SeaweedFS rejects very short names
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def make_file(tmp_path: Path) -> MakeFile:
    """``make_file(size, seed=0, name=None) -> Path``: deterministic pseudo-random bytes.

    Every MiB differs, so parts swapped or duplicated by an upload change the digest.
    """

    def make(size: int, seed: int = 0, name: str | None = None) -> Path:
        path = tmp_path / (name or f"data-{size}-{seed}.bin")
        rng = random.Random(seed)
        with path.open("wb") as file:
            remaining = size
            while remaining:
                block = min(remaining, MiB)
                file.write(rng.randbytes(block))
                remaining -= block
        return path

    return make


def interrupt_after_parts(
    env: dict[str, str],
    args: list[Any],
    state: Path,
    parts: int,
    sig: int = signal.SIGKILL,
    deadline_s: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``persevere ARGS`` and send it ``sig`` once its journal holds ``parts`` part lines
    (or earlier if it ends by itself); the finished process, with its output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", *map(str, args)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    end = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < end:
        if state.exists() and state.read_bytes().count(b'"type":"part"') >= parts:
            break
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
