"""Faults injected for real between persevere and SeaweedFS (tests/faultproxy.py).

Every upload must end byte-identical, or stop resumable and then finish on resume.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import persevere, sha256_of_file, sha256_of_object
from tests.faultproxy import NO_FAULT, Fault, FaultProxy
from tests.ruleproxy import Rule, RuleProxy
from tests.s3server import S3Server

MiB = 1024 * 1024


def upstream(server):
    parts = urlsplit(server.endpoint_url)
    return parts.hostname, parts.port


def upload_through(proxy, env, bucket, file, state, *extra):
    return persevere(
        {**env, "AWS_ENDPOINT_URL": proxy.url},
        "upload", "start", "--s3-bucket", bucket, "--s3-key", "faulty", "--file-to-upload",
        file, "--state-file", state, "--no-progress", "--part-size", "5MiB", *extra,
    )  # fmt: skip


def assert_identical(s3_client, bucket, file):
    assert sha256_of_object(s3_client, bucket, "faulty") == sha256_of_file(file)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_bytes_corrupted_in_flight_are_rejected_and_resent(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    file = make_file(30 * MiB, seed=51)
    # Flip one bit 1 MiB into the first three connections: inside a part's body.
    plan = lambda n: Fault("corrupt", at_byte=MiB) if n < 3 else NO_FAULT  # noqa: E731
    with FaultProxy(upstream(s3_server), plan) as proxy:
        result = upload_through(proxy, s3_env, bucket, file, tmp_path / "s", "-c", "3")
    assert result.returncode == 0, result.stderr
    assert len(proxy.faults_done) == 3
    assert "BadDigest" in result.stderr  # S3 caught it, persevere retried
    assert_identical(s3_client, bucket, file)


def test_connection_resets_mid_body(s3_env, s3_server, s3_client, bucket, make_file, tmp_path):
    file = make_file(30 * MiB, seed=52)
    plan = lambda n: Fault("reset", at_byte=2 * MiB) if n % 2 == 0 else NO_FAULT  # noqa: E731
    with FaultProxy(upstream(s3_server), plan) as proxy:
        result = upload_through(proxy, s3_env, bucket, file, tmp_path / "s", "-c", "2")
    assert result.returncode == 0, result.stderr
    assert len(proxy.faults_done) >= 2
    assert_identical(s3_client, bucket, file)


def test_stalled_connection_is_cut_and_retried(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    file = make_file(12 * MiB, seed=53)
    plan = lambda n: Fault("stall", at_byte=MiB, stall_s=30) if n == 0 else NO_FAULT  # noqa: E731
    started = time.monotonic()
    with FaultProxy(upstream(s3_server), plan) as proxy:
        result = upload_through(
            proxy, s3_env, bucket, file, tmp_path / "s", "-c", "1", "--stall-timeout", "1"
        )
    assert result.returncode == 0, result.stderr
    assert "stalled" in result.stderr
    assert time.monotonic() - started < 25  # did not wait for the 30 s stall to end
    assert_identical(s3_client, bucket, file)


def test_latency_and_bandwidth_cap(s3_env, s3_server, s3_client, bucket, make_file, tmp_path):
    file = make_file(16 * MiB, seed=54)
    with FaultProxy(upstream(s3_server), latency_s=0.002, rate_bytes_s=40 * MiB) as proxy:
        started = time.monotonic()
        result = upload_through(proxy, s3_env, bucket, file, tmp_path / "s", "-c", "4")
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed >= 16 / 40  # the cap held
    assert_identical(s3_client, bucket, file)


def test_random_faults_on_many_requests(s3_env, s3_server, s3_client, bucket, make_file, tmp_path):
    """Faults on well over 5% of requests: resets, corruption and short stalls, mixed.

    Every connection gets faults, again and again, 4..24 MiB apart (seeded per connection and
    fault, so the same run repeats exactly whatever the thread timing).
    """
    file = make_file(60 * MiB, seed=55)
    calls: dict[int, int] = {}

    def plan(n):
        calls[n] = calls.get(n, 0) + 1
        rng = random.Random(n * 1000 + calls[n])
        at = rng.randrange(4 * MiB, 24 * MiB)
        return rng.choice(
            [Fault("reset", at_byte=at)] * 2
            + [Fault("corrupt", at_byte=at)] * 2
            + [Fault("stall", at_byte=at, stall_s=0.5)]
        )

    with FaultProxy(upstream(s3_server), plan, repeat=True) as proxy:
        result = upload_through(
            proxy, s3_env, bucket, file, tmp_path / "s", "-c", "4", "--max-retries", "20"
        )
    assert result.returncode == 0, result.stderr
    part_requests = 12 + len(proxy.faults_done)  # at least one request per part and per retry
    assert len(proxy.faults_done) >= 0.05 * part_requests, proxy.faults_done
    assert_identical(s3_client, bucket, file)


def test_retries_exhausted_exit_3_then_resume(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    file = make_file(20 * MiB, seed=56)
    state = tmp_path / "s"
    link_down = True

    # While the link is "down", connections are reset 1 MiB in; the first one (which creates
    # the upload) only 6 MiB in, so one part gets through it and is journaled. The state file
    # records the proxy as the endpoint, so resume goes through it too, once the link is back.
    def plan(n):
        if not link_down:
            return NO_FAULT
        return Fault("reset", at_byte=6 * MiB if n == 0 else MiB)

    with FaultProxy(upstream(s3_server), plan) as proxy:
        result = upload_through(proxy, s3_env, bucket, file, state, "-c", "2", "--max-retries", "2")
        assert result.returncode == 3, result.stderr
        assert "Traceback" not in result.stderr
        assert "failed 3 times" in result.stderr
        assert f"persevere upload resume --state-file {state}" in result.stderr
        records = [json.loads(line) for line in state.read_bytes().splitlines()]
        assert records[0]["type"] == "header"
        assert all(r["type"] == "part" for r in records[1:])
        uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert len(uploads) == 1  # not aborted

        link_down = False
        resumed = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
        assert resumed.returncode == 0, resumed.stderr
    assert_identical(s3_client, bucket, file)


@pytest.mark.process
@pytest.mark.slow  # a second SeaweedFS, killed and started again
def test_server_restart_mid_upload(s3_env, s3_client, make_file, tmp_path_factory, tmp_path):
    """The S3 server dies mid-upload and comes back on the same data: the upload finishes,
    riding through on retries or by a resume."""
    with S3Server(tmp_path_factory.mktemp("crash")) as server:
        env = {**s3_env, **server.env()}
        import boto3

        client = boto3.client(
            "s3", endpoint_url=server.endpoint_url, aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key, region_name=server.region,
        )  # fmt: skip
        client.create_bucket(Bucket="crash-test")
        file = make_file(80 * MiB, seed=57)
        state = tmp_path / "s"
        with FaultProxy(upstream(server), rate_bytes_s=20 * MiB) as proxy:
            proc = subprocess.Popen(
                [sys.executable, "-m", "persevere", "upload", "start", "--s3-bucket",
                 "crash-test", "--s3-key", "faulty", "--file-to-upload", str(file),
                 "--state-file", str(state), "--no-progress", "--part-size", "5MiB",
                 "-c", "2", "--retry-for", "60s"],
                env={**os.environ, **env, "AWS_ENDPOINT_URL": proxy.url},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(1.5)
            server.stop(kill=True)
            time.sleep(2)
            server.start()
            _, stderr = proc.communicate(timeout=240)
        assert proc.returncode in (0, 3), stderr
        assert "Traceback" not in stderr
        if proc.returncode == 3:
            resumed = persevere(env, "upload", "resume", "--state-file", state, "--no-progress")
            assert resumed.returncode == 0, resumed.stderr
        assert sha256_of_object(client, "crash-test", "faulty") == sha256_of_file(file)
        client.close()


@pytest.mark.parametrize("concurrency", ["0", "100000"])
def test_absurd_concurrency_is_refused(s3_env, bucket, make_file, tmp_path, concurrency):
    result = persevere(
        s3_env, "upload", "start", "--s3-bucket", bucket, "--s3-key", "k", "--file-to-upload",
        make_file(10), "--state-file", tmp_path / "s", "--concurrency", concurrency,
    )  # fmt: skip
    assert result.returncode == 2
    assert "concurrency" in result.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("answer", "exit_code"),
    [((500, "InternalError"), 1), ((503, "SlowDown"), 3), ((503, "ServiceUnavailable"), 3)],
)
def test_complete_refused_on_every_attempt(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path, answer, exit_code
):
    """The same InternalError to every CompleteMultipartUpload is the server's refusal: exit
    1 with its words (exit 3 had a supervisor re-run it forever); a 503 stays exit 3. Either
    way the parts are kept and a resume completes once the server does."""
    file, state = make_file(6 * MiB, seed=8), tmp_path / "s"
    with RuleProxy(upstream(s3_server), [Rule("POST", "uploadId", refuse=answer)]) as proxy:
        result = upload_through(proxy, s3_env, bucket, file, state, "--max-retries", "2")
        assert proxy.matched["POST uploadId"] == 3
    assert result.returncode == exit_code, result.stderr
    said = f"CompleteMultipartUpload: {answer[1]}: refused by the test proxy"
    if exit_code == 1:
        error = f"{said} (the same answer to all 3 attempts: the server does not complete this"
    else:
        error = f"CompleteMultipartUpload failed 3 times, last: {said}\n"
    assert f"persevere: error: {error}" in result.stderr
    assert f"persevere upload resume --state-file {state}" in result.stderr
    assert "Traceback" not in result.stderr
    resumed = persevere(s3_env, "upload", "resume", "--state-file", state, "--no-progress",
                        "--endpoint-url", s3_server.endpoint_url)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert_identical(s3_client, bucket, file)
