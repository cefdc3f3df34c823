"""Credentials that expire mid-upload, for real (persevere/_credentials.py).

tests/credproxy.py stands in front of SeaweedFS and, a few requests into an upload, starts
answering every request signed with key A as S3 answers a dead session (HTTP 400,
ExpiredToken), at the very moment the credentials source (a ``credential_process`` or a
rotated shared credentials file) moves to key B, the server's second identity. The upload must
finish in one run, byte-identical, with ``--max-retries 0``: a renewal is not a failure. When B
is refused too, the upload stops resumable (exit 3) and ``resume`` finishes it.

The last tests exercise the renewer and the error translation without a server.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import botocore.exceptions
import pytest

from persevere import ResumableError, RetryPolicy, S3Error
from persevere._credentials import CredentialRenewer, CredentialsRefused
from persevere._retry import FREE_CREDENTIAL_RETRIES, TransientError, call_with_retry
from persevere._s3 import translate
from tests import conftest
from tests.conftest import sha256_of_file, sha256_of_object
from tests.credproxy import CredentialProxy

MiB = 1024 * 1024
CREDPROCESS = Path(__file__).with_name("credprocess.py")
# cli_env gives the whole environment: without the test's static keys.
persevere = functools.partial(conftest.persevere, whole_env=True)


def upstream(server):
    parts = urlsplit(server.endpoint_url)
    return parts.hostname, parts.port


def write_atomically(path: Path, text: str) -> None:
    """As a credentials broker should: readers see the old file or the new, never half."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class CredentialSource:
    """Where the AWS credential chain finds the keys, and a way to move it to other keys."""

    def __init__(self, kind: str, directory: Path, access_key: str, secret_key: str) -> None:
        self.kind = kind
        self.directory = directory
        self.log = directory / "credprocess.log"
        if kind == "credential_process":
            self.path = directory / "current.json"
            command = shlex.join([sys.executable, str(CREDPROCESS), str(self.path), str(self.log)])
            config = directory / "aws-config"
            config.write_text(f"[default]\ncredential_process = {command}\n")
            self.env = {"AWS_CONFIG_FILE": str(config)}
        else:
            self.path = directory / "aws-credentials"
            self.env = {"AWS_SHARED_CREDENTIALS_FILE": str(self.path)}
        self.rotate(access_key, secret_key)

    def rotate(self, access_key: str, secret_key: str) -> None:
        if self.kind == "credential_process":
            text = json.dumps({"AccessKeyId": access_key, "SecretAccessKey": secret_key})
        else:
            text = (
                f"[default]\naws_access_key_id = {access_key}\n"
                f"aws_secret_access_key = {secret_key}\n"
            )
        write_atomically(self.path, text)

    def runs(self) -> list[str]:
        """Access keys credential_process handed out, one per run."""
        return self.log.read_text().split() if self.log.exists() else []


def cli_env(source: CredentialSource) -> dict[str, str]:
    """The scrubbed test environment, with the keys coming only from ``source``."""
    env = dict(os.environ)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    return {**env, **source.env}


def journal(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_text().splitlines()]


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("credential_process", "ExpiredToken", 400),
        ("credentials_file", "ExpiredToken", 400),
        # A static key rotated in the file and the old one deactivated.
        ("credentials_file", "InvalidAccessKeyId", 403),
    ],
)
def test_upload_outlives_credentials_that_expire_mid_upload(
    kind, code, status, s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    old, new = s3_server.access_key, s3_server.second_access_key
    source = CredentialSource(kind, tmp_path, old, s3_server.secret_key)
    file = make_file(48 * MiB, seed=71)
    state = tmp_path / "state"

    def rotate() -> None:
        source.rotate(new, s3_server.second_secret_key)

    with CredentialProxy(
        upstream(s3_server), expire={old}, arm_after=4, on_armed=rotate, code=code, status=status
    ) as proxy:
        result = persevere(
            cli_env(source), "upload", "start", file, f"s3://{bucket}/renewed",
            "--state-file", state, "--endpoint-url", proxy.url, "--part-size", "5MiB",
            "-c", "3", "--max-retries", "0", "--no-progress",
        )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert proxy.refused[old] >= 1  # the server did refuse the first key mid-upload
    assert proxy.forwarded[old] == 4 and proxy.forwarded[new] >= 1
    assert f"S3 refused the credentials ({code}); using fresh ones" in result.stderr
    for secret in (s3_server.secret_key, s3_server.second_secret_key):
        assert secret not in result.stderr + result.stdout
    if kind == "credential_process":
        runs = source.runs()
        assert runs[0] == old and new in runs
    assert sha256_of_object(s3_client, bucket, "renewed") == sha256_of_file(file)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    records = journal(state)
    assert records[-1]["type"] == "completed"
    assert len([r for r in records if r["type"] == "part"]) == 10


def test_fresh_credentials_refused_too_stop_resumable(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    old, new = s3_server.access_key, s3_server.second_access_key
    source = CredentialSource("credential_process", tmp_path, old, s3_server.secret_key)
    file = make_file(40 * MiB, seed=72)
    state = tmp_path / "state"

    def rotate() -> None:
        source.rotate(new, s3_server.second_secret_key)

    with CredentialProxy(
        upstream(s3_server), expire={old, new}, arm_after=3, on_armed=rotate
    ) as proxy:
        result = persevere(
            cli_env(source), "upload", "start", file, f"s3://{bucket}/refused",
            "--state-file", state, "--endpoint-url", proxy.url, "--part-size", "5MiB",
            "-c", "2", "--max-retries", "1", "--no-progress",
        )  # fmt: skip

        assert result.returncode == 3, result.stderr
        assert proxy.refused[old] >= 1 and proxy.refused[new] >= 1
        assert "ExpiredToken" in result.stderr
        assert "the credential chain gives no newer credentials" in result.stderr
        assert f"persevere upload resume --state-file {state}" in result.stderr
        done = [r for r in journal(state) if r["type"] == "part"]
        assert 1 <= len(done) < 8  # the journal kept what S3 accepted

        proxy.disarm()  # the credentials are good again: resume finishes the same upload
        resumed = persevere(
            cli_env(source), "upload", "resume", "--state-file", state, "--no-progress"
        )

    assert resumed.returncode == 0, resumed.stderr
    assert sha256_of_object(s3_client, bucket, "refused") == sha256_of_file(file)
    assert journal(state)[-1]["type"] == "completed"


def test_unknown_key_with_nothing_newer_is_a_permanent_error(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    """A key the server never knew (a typo): one re-resolution, then exit 1, not "try later"."""
    key = s3_server.access_key
    source = CredentialSource("credential_process", tmp_path, key, s3_server.secret_key)
    file = make_file(6 * MiB, seed=73)
    with CredentialProxy(
        upstream(s3_server), expire={key}, code="InvalidAccessKeyId", status=403,
        message="The AWS Access Key Id you provided does not exist in our records.",
    ) as proxy:  # fmt: skip
        result = persevere(
            cli_env(source), "upload", "start", file, f"s3://{bucket}/typo",
            "--state-file", tmp_path / "state", "--endpoint-url", proxy.url, "--no-progress",
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "InvalidAccessKeyId" in result.stderr
    assert "the credential chain gives no newer credentials" in result.stderr
    assert proxy.refused[key] == 1
    assert source.runs() == [key, key]  # the client's resolution, then the re-resolution
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- without a server -----------------------------------------------------------------------


@pytest.fixture
def anyio_backend():
    return "asyncio"


class FakeCredentials:
    def __init__(self, key: str) -> None:
        self.key = key
        self.method = "fake"

    async def get_frozen_credentials(self) -> tuple[str, str, None]:
        return (self.key, f"secret-of-{self.key}", None)


class FakeSigner:
    def __init__(self, credentials: FakeCredentials) -> None:
        self._credentials = credentials


class FakeClient:
    """What CredentialRenewer.install touches: the signer and the event system."""

    def __init__(self, key: str) -> None:
        from botocore.hooks import HierarchicalEmitter

        self._request_signer = FakeSigner(FakeCredentials(key))
        self.meta = type("Meta", (), {"events": HierarchicalEmitter()})()


class Chain:
    """A credential chain that hands out ``keys`` in turn, counting resolutions."""

    def __init__(self, *keys: str) -> None:
        self.keys = list(keys)
        self.calls = 0

    async def __call__(self) -> FakeCredentials:
        self.calls += 1
        await anyio.sleep(0.01)  # a credential_process or an STS call takes a while
        return FakeCredentials(self.keys[min(self.calls, len(self.keys)) - 1])


def renewer_for(client: FakeClient, chain: Chain) -> CredentialRenewer:
    renewer = CredentialRenewer(chain)
    renewer.install(client)
    return renewer


@pytest.mark.anyio
async def test_requests_failing_together_share_one_renewal():
    client, chain = FakeClient("A"), Chain("B")
    renewer = renewer_for(client, chain)
    signed_with_a = ("A", "secret-of-A", None)
    results: list[bool] = []

    async def fail_once() -> None:
        results.append(await renewer.renew(signed_with_a, "ExpiredToken"))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(fail_once)
    assert results == [True] * 8
    assert chain.calls == 1 and renewer.renewals == 1
    assert client._request_signer._credentials.key == "B"


@pytest.mark.anyio
async def test_nothing_newer_is_not_a_renewal_and_is_not_asked_again_at_once():
    client, chain = FakeClient("A"), Chain("A")
    renewer = renewer_for(client, chain)
    signed_with_a = ("A", "secret-of-A", None)
    assert await renewer.renew(signed_with_a, "ExpiredToken") is False
    assert await renewer.renew(signed_with_a, "ExpiredToken") is False
    assert chain.calls == 1  # the second refusal came within RECHECK_AFTER_S
    assert client._request_signer._credentials.key == "A"


@pytest.mark.anyio
async def test_a_failing_chain_leaves_the_credentials_alone():
    client = FakeClient("A")

    async def broken() -> FakeCredentials:
        raise botocore.exceptions.CredentialRetrievalError(provider="process", error_msg="boom")

    renewer = CredentialRenewer(broken)
    renewer.install(client)
    assert await renewer.renew(("A", "secret-of-A", None), "ExpiredToken") is False
    assert client._request_signer._credentials.key == "A"


def client_error(code: str, status: int = 400) -> dict:
    return {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}


def test_translate_expired_credentials_are_transient():
    plain = translate(
        botocore.exceptions.ClientError(client_error("ExpiredToken"), "UploadPart"), "p"
    )
    assert isinstance(plain, TransientError) and not plain.credentials_renewed
    renewed = translate(
        CredentialsRefused(client_error("ExpiredToken"), "UploadPart", renewed=True), "p"
    )
    assert isinstance(renewed, TransientError) and renewed.credentials_renewed
    stale = translate(
        CredentialsRefused(client_error("ExpiredToken"), "UploadPart", renewed=False), "p"
    )
    assert isinstance(stale, TransientError) and not stale.credentials_renewed
    assert "no newer credentials" in str(stale)


def test_translate_unknown_key_is_transient_only_once_renewed():
    error = client_error("InvalidAccessKeyId", 403)
    renewed = translate(CredentialsRefused(error, "UploadPart", renewed=True), "p")
    assert isinstance(renewed, TransientError) and renewed.credentials_renewed
    stale = translate(CredentialsRefused(error, "UploadPart", renewed=False), "p")
    assert isinstance(stale, S3Error) and stale.code == "InvalidAccessKeyId"
    assert isinstance(translate(botocore.exceptions.ClientError(error, "UploadPart"), "p"), S3Error)


async def no_sleep(seconds: float) -> None:
    raise AssertionError("a renewal retry must not back off")


def exhausted(exc: TransientError, attempts: int) -> ResumableError:
    return ResumableError(f"failed {attempts} times: {exc}")


@pytest.mark.anyio
async def test_retries_after_a_renewal_are_free_but_bounded():
    calls = 0

    async def refused_then_ok() -> str:
        nonlocal calls
        calls += 1
        if calls <= FREE_CREDENTIAL_RETRIES:
            raise TransientError("ExpiredToken", code="ExpiredToken", credentials_renewed=True)
        return "ok"

    single = RetryPolicy(max_attempts=1, sleep=no_sleep)
    assert await call_with_retry(single, "part 1", refused_then_ok, exhausted) == "ok"

    async def always_refused() -> str:
        raise TransientError("ExpiredToken", code="ExpiredToken", credentials_renewed=True)

    with pytest.raises(ResumableError, match="failed 1 times"):
        await call_with_retry(single, "part 1", always_refused, exhausted)
