"""Micro-benchmarks that need no server: checksum throughput and journal bookkeeping at scale.

    .venv/bin/python -m benchmarks.micro [--out benchmarks/results]

- Checksums: GB/s of each algorithm persevere can send, single thread, on 8 MiB buffers (the
  per-part cost; the target for CRCs is >= 2 GB/s so checksumming is never the bottleneck).
  Combining 10,000 part CRCs into the full-object CRC is timed too (no second read).
- Bookkeeping: replaying a 10,000-part journal (the most S3 allows) and reconciling it with a
  10,000-part ListParts result; both should take well under a second.
Writes ``micro.json`` and ``micro.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.model import GiB, MiB
from persevere import PartPlan
from persevere._checksums import ALGORITHMS
from persevere._journal import Header, Journal, PartRecord, replay
from persevere._reconcile import RemotePart, reconcile


def _best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def checksum_throughput() -> list[dict]:
    buffer = memoryview(bytearray(os.urandom(8 * MiB)))
    rows = []
    for name, algorithm in ALGORITHMS.items():
        rounds = 64 if algorithm.full_object else 8  # CRCs are fast: more bytes for a stable time

        def hash_rounds(algorithm=algorithm, rounds=rounds) -> None:
            hasher = algorithm.new()
            for _ in range(rounds):
                hasher.update(buffer)
            hasher.digest()

        seconds = _best_of(3, hash_rounds)
        rows.append({"algorithm": name, "gb_per_s": rounds * len(buffer) / seconds / 1e9})
    crc = ALGORITHMS["CRC64NVME"]
    parts = [(crc.of(buffer[:4096]), 5 * GiB)] * 10_000
    combine_s = _best_of(3, lambda: crc.combine(parts))
    rows.append({"algorithm": "CRC64NVME combine of 10,000 part CRCs", "seconds": combine_s})
    return rows


def _journal_bytes(header: Header, parts: list[PartRecord]) -> bytes:
    """A journal written the way an upload writes it (Journal.create, write_header,
    append_part), read back as bytes. On tmpfs where there is one: each append fsyncs."""
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as scratch:
        path = Path(scratch) / "bench.persevere"
        journal = Journal.create(path)
        try:
            journal.write_header(header)
            for part in parts:
                journal.append_part(part)
        finally:
            journal.close()
        return path.read_bytes()


def bookkeeping() -> dict:
    part_size = 5 * GiB
    header = Header(
        bucket="bucket", key="key", upload_id="upload", endpoint_url=None, region=None,
        profile=None, file_path="/data/file", file_size=10_000 * part_size, mtime_ns=1,
        part_size=part_size, checksum_algorithm="CRC64NVME", checksum_type="FULL_OBJECT",
        created_at="2026-01-01T00:00:00+00:00", tool_version="bench",
    )  # fmt: skip
    etag = '"{:032x}"'.format
    data = _journal_bytes(
        header, [PartRecord(n, etag(n), "AAAAAAAAAAA=", part_size) for n in range(1, 10_001)]
    )
    replay_s = _best_of(5, lambda: replay(data))
    state = replay(data)
    remote = {n: RemotePart(n, etag(n), part_size, None) for n in range(1, 10_001)}
    plan = PartPlan(header.file_size, part_size)
    reconcile_s = _best_of(5, lambda: reconcile(plan, state.parts, remote))
    return {
        "journal_bytes": len(data),
        "replay_10000_parts_s": replay_s,
        "reconcile_10000_parts_s": reconcile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    results = {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "checksums": checksum_throughput(),
        "bookkeeping": bookkeeping(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "micro.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"# Micro-benchmarks ({results['date']}, {results['machine']})",
        "",
        "| checksum (one thread, 8 MiB buffers) | GB/s |",
        "|---|---|",
    ]
    for row in results["checksums"]:
        if "gb_per_s" in row:
            lines.append(f"| {row['algorithm']} | {row['gb_per_s']:.2f} |")
    combine = results["checksums"][-1]
    book = results["bookkeeping"]
    lines += [
        "",
        f"- {combine['algorithm']}: {combine['seconds'] * 1000:.1f} ms",
        f"- replay of a 10,000-part journal ({book['journal_bytes'] / MiB:.1f} MiB): "
        f"{book['replay_10000_parts_s'] * 1000:.0f} ms",
        f"- reconcile 10,000 journal parts with 10,000 ListParts entries: "
        f"{book['reconcile_10000_parts_s'] * 1000:.0f} ms",
    ]
    (args.out / "micro.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
