"""Upload one huge file from many machines at once, with Dask scheduling the shards.

Every worker must see the file and the state file's directory at the same paths (a parallel
filesystem: Lustre, GPFS, CephFS, NFS). Run where the Dask client can reach the scheduler:

    python examples/dask/shards.py /lustre/data/checkpoint.bin s3://bucket/ckpt.bin \\
        /lustre/state/ckpt.persevere --scheduler tcp://scheduler:8786 --shards 16

A shard that fails (a lost worker, a killed task) is simply run again by Dask (retries=3);
whatever a shard could not send, the completion step sends itself. Run the same command again
after a stop (the driver killed, the machine rebooted): it goes on with the same upload, and
once that upload is complete it says so and sends nothing.
"""

from __future__ import annotations

import argparse

from dask.distributed import Client, LocalCluster

import persevere


def upload(file: str, url: str, state_file: str, shards: int, client: Client) -> object:
    bucket, key = url.removeprefix("s3://").split("/", 1)
    try:
        persevere.create_upload_sync(file, bucket, key, state_file, shards=shards)
    except persevere.StateFileExists:
        pass  # run again (after a stop, a lost driver): the same upload goes on
    tasks = [
        client.submit(persevere.upload_shard_sync, state_file, index, shards,
                      key=f"persevere-shard-{index}-of-{shards}", retries=3, pure=False)
        for index in range(shards)
    ]  # fmt: skip
    client.gather(tasks, errors="skip")  # completion sends whatever a failed shard left
    return persevere.resume_sync(state_file)  # merges the shards' journals, completes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("url", help="s3://bucket/key")
    parser.add_argument("state_file")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--scheduler", help="address of a Dask scheduler (default: a local one)")
    args = parser.parse_args()
    if args.scheduler:
        with Client(args.scheduler) as client:
            print(upload(args.file, args.url, args.state_file, args.shards, client))
        return
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        with Client(cluster) as client:
            print(upload(args.file, args.url, args.state_file, args.shards, client))


if __name__ == "__main__":
    main()
