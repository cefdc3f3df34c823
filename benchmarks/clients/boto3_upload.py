"""Upload one file with boto3's managed transfer (``upload_file``), as the benchmark's boto3 peer.

Credentials and region come from the environment the harness sets.
"""

import argparse

import boto3
from boto3.s3.transfer import TransferConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("bucket")
    parser.add_argument("key")
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--part-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    client = boto3.client("s3", endpoint_url=args.endpoint_url)
    config = TransferConfig(
        multipart_threshold=args.part_size,
        multipart_chunksize=args.part_size,
        max_concurrency=args.concurrency,
        use_threads=True,
        preferred_transfer_client="classic",  # what "auto" picks on this machine anyway
    )
    client.upload_file(args.file, args.bucket, args.key, Config=config)


if __name__ == "__main__":
    main()
