"""Resume's bookkeeping at S3's limit: ListParts over a 10,000-part upload, all pages.

moto's S3 server stands in for 10,000 real 5 MiB parts (``S3_UPLOAD_PART_MIN_SIZE=1``: the
parts are 1 byte, but ListParts pages through 10 x 1,000 entries just the same), and the
journal replay and reconcile are timed on a generated 10,000-part journal (benchmarks.micro).

    .venv/bin/python -m benchmarks.resume_scale [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

PARTS = 10_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    import boto3
    from botocore.config import Config

    from persevere._checksums import CRC64NVME
    from persevere._s3 import Endpoint, open_client
    from persevere._session import MultipartSession

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "S3_UPLOAD_PART_MIN_SIZE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            config=Config(max_pool_connections=16, retries={"mode": "standard"}),
        )  # fmt: skip
        for _ in range(100):
            try:
                s3.create_bucket(Bucket="scale")
                break
            except Exception:
                time.sleep(0.1)
        upload_id = s3.create_multipart_upload(Bucket="scale", Key="k")["UploadId"]

        def put(number: int) -> None:
            s3.upload_part(Bucket="scale", Key="k", UploadId=upload_id, PartNumber=number,
                           Body=b"x")  # fmt: skip

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(1, PARTS + 1)))

        async def list_them() -> tuple[int, float]:
            async with open_client(Endpoint(endpoint, "us-east-1", None)) as client:
                started = time.perf_counter()
                session = MultipartSession(client, "scale", "k", upload_id, CRC64NVME)
                parts = await session.list_parts()
                return len(parts), time.perf_counter() - started

        count, seconds = anyio.run(list_them)
    finally:
        moto.terminate()
        moto.wait()
    assert count == PARTS, count
    result = {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "server": "moto_server (S3_UPLOAD_PART_MIN_SIZE=1)",
        "parts": count,
        "listparts_all_pages_s": seconds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "resume_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"ListParts of a {count:,}-part upload, all pages, through persevere's pager: "
          f"{seconds:.2f} s ({result['server']})")  # fmt: skip


if __name__ == "__main__":
    main()
