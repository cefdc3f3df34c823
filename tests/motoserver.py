"""A second, independent S3 implementation on loopback (moto's server) for the tests.

SeaweedFS (:mod:`tests.s3server`) is one implementation with its own quirks; a test that passes
only there proves persevere works with SeaweedFS. moto is written against AWS's documented
behaviour by other people, in another language, so the integration subset in ``tests/compat``
runs against both (``moto[server]`` is part of the dev extra; ``crc32c`` too, without which moto
silently computes CRC32 where CRC32C is asked).

What moto is and is not (probed; see /work/notes/compat-findings.md):
- it verifies no checksum: ``x-amz-checksum-*`` alone is ignored and not echoed (with
  ``x-amz-sdk-checksum-algorithm`` it echoes the client's value unchecked), and a wrong
  ``Content-MD5`` is accepted. Part ETags are the MD5 of the bytes stored;
- it keeps everything in memory: ``stop()`` then ``start()`` gives an empty server;
- it accepts any credentials and checks no signature, so there is no read-only identity;
- ``min_part_size`` sets ``S3_UPLOAD_PART_MIN_SIZE`` (5 MiB, as AWS, by default).

Run as ``python -m tests.motoserver [--port N]`` for a server in the foreground.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.loopbackserver import HOST, LoopbackServer, LoopbackServerError, find_binary

__all__ = ["MotoServer", "MotoServerError"]

MotoServerError = LoopbackServerError


class MotoServer(LoopbackServer):
    name = "moto"
    # moto accepts any keys; these only have to look like keys (and be ours, not the machine's).
    access_key = "PERSEVEREMOTOKEY0000"
    secret_key = "persevere-moto-secret-key-for-local-tests"
    log_name = "moto.log"

    def __init__(
        self,
        root: Path | None = None,
        *,
        port: int | None = None,
        min_part_size: int | None = None,
        moto_server: Path | None = None,
    ) -> None:
        super().__init__(root, port=port)
        self._moto_server = moto_server or find_binary("moto_server", "moto[server]")
        self._min_part_size = min_part_size

    def _command(self) -> list[str]:
        return [str(self._moto_server), "-H", HOST, "-p", str(self.port)]

    def _extra_env(self) -> dict[str, str]:
        env = {"MOTO_PORT": str(self.port)}
        if self._min_part_size is not None:
            env["S3_UPLOAD_PART_MIN_SIZE"] = str(self._min_part_size)
        return env


if __name__ == "__main__":
    sys.exit(MotoServer.main())
