"""Upload one file with obstore (Rust object_store), as the benchmark's obstore peer.

Credentials and region come from the environment the harness sets.
"""

import argparse
import os
from pathlib import Path

import obstore
from obstore.store import S3Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("bucket")
    parser.add_argument("key")
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--part-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    store = S3Store(
        args.bucket,
        endpoint=args.endpoint_url,
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ["AWS_REGION"],
        client_options={"allow_http": True},
    )
    obstore.put(
        store,
        args.key,
        Path(args.file),
        chunk_size=args.part_size,
        max_concurrency=args.concurrency,
    )


if __name__ == "__main__":
    main()
