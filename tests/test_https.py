"""Over HTTPS, as real S3 is: SeaweedFS with a certificate made by the test (trustme)."""

from __future__ import annotations

import json

import boto3
import pytest
import trustme

from persevere import Endpoint, UploadOptions, upload_file
from tests.conftest import interrupt_after_parts, persevere, sha256_of_file, sha256_of_object
from tests.s3server import S3Server
from tests.test_sendfile import count_reads_and_sends

# Slow (make test-all, CI): a second SeaweedFS, with TLS.
pytestmark = pytest.mark.slow

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = root / "cert.pem", root / "key.pem", root / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    with S3Server(root / "s3", tls=(cert, key)) as server:
        server.ca_file = ca_file
        yield server


@pytest.fixture
def tls_env(tls_server, s3_env):
    return {**s3_env, **tls_server.env(), "AWS_ENDPOINT_URL": tls_server.https_endpoint_url}


@pytest.fixture
def tls_client(tls_server, tls_env):
    client = boto3.client(
        "s3", endpoint_url=tls_server.https_endpoint_url, verify=str(tls_server.ca_file),
        aws_access_key_id=tls_server.access_key, aws_secret_access_key=tls_server.secret_key,
        region_name=tls_server.region,
    )  # fmt: skip
    yield client
    client.close()


@pytest.fixture
def tls_bucket(tls_client, bucket):
    tls_client.create_bucket(Bucket=bucket)
    return bucket


@pytest.mark.parametrize("checksum", ["CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1"])
def test_every_algorithm_over_https(
    tls_server, tls_env, tls_client, tls_bucket, make_file, tmp_path, checksum
):
    file = make_file(11 * MiB + 1, seed=61)
    ca = tls_server.ca_file
    result = persevere(
        tls_env, "upload", "start", "--s3-bucket", tls_bucket, "--s3-key", "k",
        "--file-to-upload", file, "--state-file", tmp_path / "s", "--part-size", "5MiB",
        "--checksum", checksum, "--ca-bundle", ca, "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(tls_client, tls_bucket, "k") == sha256_of_file(file)
    verified = persevere(
        tls_env, "verify", file, f"s3://{tls_bucket}/k", "--ca-bundle", ca, "--no-progress"
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert checksum in verified.stdout


def test_untrusted_certificate_is_a_clear_error(tls_env, tls_bucket, make_file, tmp_path):
    result = persevere(
        tls_env, "upload", "start", "--s3-bucket", tls_bucket, "--s3-key", "k",
        "--file-to-upload", make_file(100), "--state-file", tmp_path / "s",
    )  # fmt: skip
    assert result.returncode == 1
    assert "TLS failure" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.process
def test_aws_ca_bundle_and_resume_over_https(
    tls_server, tls_env, tls_client, tls_bucket, make_file, tmp_path
):
    """AWS_CA_BUNDLE works, and a kill -9 then resume uses the recorded HTTPS endpoint."""
    env = {**tls_env, "AWS_CA_BUNDLE": str(tls_server.ca_file)}
    file = make_file(60 * MiB, seed=62)
    state = tmp_path / "s"
    args = ["upload", "start", "--s3-bucket", tls_bucket, "--s3-key", "resumed",
            "--file-to-upload", file, "--state-file", state, "--part-size", "5MiB", "-c", "1",
            "--no-progress"]  # fmt: skip
    interrupt_after_parts(env, args, state, 2)
    header = json.loads(state.read_bytes().splitlines()[0])
    assert header["endpoint_url"] == tls_server.https_endpoint_url

    resumed = persevere(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_of_object(tls_client, tls_bucket, "resumed") == sha256_of_file(file)


INSECURE = "WARNING: --no-verify-ssl: the endpoint's TLS certificate is NOT verified"


@pytest.mark.process
def test_no_verify_ssl_trusts_any_certificate_loudly_and_is_never_recorded(
    tls_server, tls_env, tls_client, tls_bucket, make_file, tmp_path
):
    """No CA bundle anywhere: --no-verify-ssl gets through, with a warning, on every command
    that talks to S3; the state file does not remember it, so resume must be told again."""
    file = make_file(20 * MiB, seed=63)
    state = tmp_path / "s"
    args = ["upload", "start", file, f"s3://{tls_bucket}/k", "--state-file", state,
            "--part-size", "5MiB", "-c", "1", "--no-progress", "--no-verify-ssl"]  # fmt: skip
    interrupt_after_parts(tls_env, args, state, 1)
    header = json.loads(state.read_bytes().splitlines()[0])
    assert not any("verify" in name for name in header)

    refused = persevere(tls_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert refused.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    for command in (
        ["upload", "status", "--state-file", state, "--json"],
        ["upload", "list", "--s3-bucket", tls_bucket, "--json"],
        ["upload", "resume", "--state-file", state, "--no-progress"],
        ["verify", file, f"s3://{tls_bucket}/k", "--no-progress"],
    ):
        result = persevere(tls_env, *command, "--no-verify-ssl")
        assert result.returncode == 0, (command, result.stderr)
        assert INSECURE in result.stderr, command
        assert "Traceback" not in result.stderr
        if command[1] == "status":
            assert json.loads(result.stdout)["remote"]["exists"] is True
    assert sha256_of_object(tls_client, tls_bucket, "k") == sha256_of_file(file)

    both = persevere(tls_env, "upload", "start", file, f"s3://{tls_bucket}/k2",
                     "--state-file", tmp_path / "s2", "--no-verify-ssl", "--ca-bundle",
                     tls_server.ca_file)  # fmt: skip
    assert both.returncode == 2 and "--ca-bundle" in both.stderr


@pytest.mark.anyio
async def test_over_tls_the_parts_go_in_slices(
    tls_server, tls_env, tls_client, tls_bucket, make_file, tmp_path, monkeypatch
):
    file = make_file(12 * MiB, seed=25)
    seen = count_reads_and_sends(monkeypatch)
    options = UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
    endpoint = Endpoint(
        endpoint_url=tls_server.https_endpoint_url, ca_bundle=str(tls_server.ca_file)
    )
    await upload_file(file, tls_bucket, "k", tmp_path / "s", part_size=5 * MiB,
                      options=options, endpoint=endpoint)  # fmt: skip
    assert seen["sent"] == 0
    assert seen["read"] >= 12 * MiB
    assert sha256_of_object(tls_client, tls_bucket, "k") == sha256_of_file(file)
