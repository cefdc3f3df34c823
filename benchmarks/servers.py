"""The S3 servers a benchmark uploads to: SeaweedFS (a real one) or the null sink (nginx).

One small interface for both, so the harness (run.py) and sink_compare.py start, check and
stop them the same way: where to upload, with which credentials, how to name a key (the sink
answers HeadObject from the key's name), the server's CPU so far, and how to check an upload
(HeadObject's size; for SeaweedFS also the downloaded bytes' SHA-256).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import uuid
from pathlib import Path

import boto3
import psutil
from botocore.config import Config as BotoConfig

from benchmarks.measure import process_cpu_s
from benchmarks.model import BUCKET, SEAWEEDFS, SINK, MiB
from benchmarks.nullsink import NullSink
from tests.s3server import S3Server

DOWNLOAD_CHUNK = 8 * MiB


def _weed_pid(server: S3Server) -> int | None:
    """The ``weed`` process under this harness (the S3Server's child)."""
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "weed" and str(server.root) in " ".join(child.cmdline()):
                return int(child.pid)
        except psutil.Error:
            pass
    return None


class BenchServer:
    """A started S3 server of one kind (``seaweedfs`` or ``sink``) with the bucket created."""

    def __init__(self, kind: str, root: Path) -> None:
        if kind not in (SEAWEEDFS, SINK):
            raise ValueError(f"unknown server kind {kind!r}")
        self.kind = kind
        self.root = root
        self._sink: NullSink | None = None
        self._weed: S3Server | None = None
        if kind == SINK:
            self._sink = NullSink(root).start()
            self.endpoint_url = self._sink.endpoint_url
            self.access_key, self.secret_key = self._sink.access_key, self._sink.secret_key
            self.region = self._sink.region
            self.pid: int | None = self._sink.pid
        else:
            self._weed = S3Server(root)
            self._weed.start()
            self.endpoint_url = self._weed.endpoint_url
            self.access_key, self.secret_key = self._weed.access_key, self._weed.secret_key
            self.region = self._weed.region
            self.pid = _weed_pid(self._weed)
        self.s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=BotoConfig(retries={"max_attempts": 3}),
        )
        if self._weed is not None:
            self.s3.create_bucket(Bucket=BUCKET)

    def key(self, prefix: str, size: int) -> str:
        """A fresh key; on the sink, one whose HeadObject answers ``size``."""
        if self._sink is not None:
            return self._sink.key_for(size, prefix)
        return f"{prefix}/{uuid.uuid4().hex}"

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid) if self.pid else 0.0

    def check_size(self, key: str, size: int) -> str | None:
        """None if HeadObject shows the object with exactly ``size`` bytes, else what is wrong."""
        try:
            found = int(self.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"])
        except Exception as exc:  # any failure to find the object is the finding
            return f"HeadObject failed: {exc!r}"
        return None if found == size else f"the object has {found} bytes, not {size}"

    def check_bytes(self, key: str, sha256: str) -> str | None:
        """None if the object's bytes, downloaded, have this SHA-256 (SeaweedFS only)."""
        if self._weed is None:
            raise ValueError("the null sink stores nothing to download")
        digest = hashlib.sha256()
        try:
            body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"]
            while chunk := body.read(DOWNLOAD_CHUNK):
                digest.update(chunk)
        except Exception as exc:
            return f"GetObject failed: {exc!r}"
        if digest.hexdigest() != sha256:
            return f"the downloaded object's SHA-256 is {digest.hexdigest()}, not the file's"
        return None

    def listing(self, prefix: str) -> dict[str, int]:
        """Every object under ``prefix``: key -> size (ListObjectsV2, all pages)."""
        found: dict[str, int] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            found.update((o["Key"], int(o["Size"])) for o in page.get("Contents", []))
        return found

    def drop_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix`` (a tree), 1,000 per request, then vacuum."""
        if self._weed is None:
            return
        keys = list(self.listing(prefix))
        for start in range(0, len(keys), 1000):
            objects = [{"Key": key} for key in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": objects, "Quiet": True})
        self._vacuum()

    def drop(self, key: str) -> None:
        """Delete an uploaded object and have SeaweedFS reclaim its space at once.

        Deleting only marks the needles; the space comes back when the master vacuums the
        volumes (every 15 minutes by default): five 4 GiB runs of three tools would fill the
        disk before that. Vacuuming volumes that hold nothing live takes well under a second.
        """
        if self._weed is None:
            return
        self.s3.delete_object(Bucket=BUCKET, Key=key)
        self._vacuum()

    def _vacuum(self) -> None:
        assert self._weed is not None
        master = json.loads(self._weed.ports_path.read_text())["master"]
        connection = http.client.HTTPConnection("127.0.0.1", master, timeout=120)
        try:
            connection.request("GET", "/vol/vacuum?garbageThreshold=0.01")
            connection.getresponse().read()
        finally:
            connection.close()

    def stop(self) -> None:
        if self._sink is not None:
            self._sink.stop()
            self._sink = None
        if self._weed is not None:
            self._weed.stop()
            self._weed = None
        shutil.rmtree(self.root, ignore_errors=True)
