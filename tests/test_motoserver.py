"""The second test server itself (moto): starts, serves S3, stops, and says why when it cannot."""

from __future__ import annotations

import os
import socket

import boto3  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests.motoserver import MotoServer, MotoServerError


def test_serves_s3_and_stops(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    with MotoServer(tmp_path) as server:
        assert server.running
        client = boto3.client("s3", **{
            "endpoint_url": server.endpoint_url, "region_name": server.region,
            "aws_access_key_id": server.access_key, "aws_secret_access_key": server.secret_key,
        })  # fmt: skip
        client.create_bucket(Bucket="moto-selftest")
        client.put_object(Bucket="moto-selftest", Key="k", Body=b"hello")
        assert client.get_object(Bucket="moto-selftest", Key="k")["Body"].read() == b"hello"
        client.close()
    assert not server.running
    with socket.socket() as probe:  # the port is free again
        probe.bind(("127.0.0.1", server.port))


def test_busy_pinned_port_is_reported(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(MotoServerError, match="exited with code"):
            MotoServer(tmp_path, port=port).start(timeout_s=20)
