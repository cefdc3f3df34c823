"""The extra test servers themselves (moto, JuiceFS): start, serve S3, stop, say why not."""

from __future__ import annotations

import os
import socket

import boto3  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests.juicefsserver import JuiceFSServer
from tests.loopbackserver import LoopbackServerError
from tests.motoserver import MotoServer

# Slow (make test-all, CI): moto and JuiceFS servers (the compatibility matrix's).
pytestmark = pytest.mark.slow


@pytest.mark.process
@pytest.mark.parametrize("server_class", [MotoServer, JuiceFSServer])
def test_serves_s3_and_stops(server_class, tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    with server_class(tmp_path) as server:
        assert server.running
        client = boto3.client("s3", **{
            "endpoint_url": server.endpoint_url, "region_name": server.region,
            "aws_access_key_id": server.access_key, "aws_secret_access_key": server.secret_key,
        })  # fmt: skip
        client.create_bucket(Bucket="server-selftest")
        client.put_object(Bucket="server-selftest", Key="k", Body=b"hello")
        assert client.get_object(Bucket="server-selftest", Key="k")["Body"].read() == b"hello"
        client.close()
    assert not server.running
    with socket.socket() as probe:  # the port is free again (TIME_WAIT aside)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))


@pytest.mark.process
def test_busy_pinned_port_is_reported(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(LoopbackServerError, match="exited with code"):
            MotoServer(tmp_path, port=port).start(timeout_s=20)
