"""``persevere bench``'s engine: generated bodies, the table, and runs against the local SeaweedFS
that must leave the bucket as they found it, whether they succeed, fail or are cancelled."""

from __future__ import annotations

import anyio
import pytest

import persevere
from persevere import _bench
from persevere._bench import (
    BenchRow,
    BenchSettings,
    DataPattern,
    GeneratedBody,
    format_table,
    run_bench,
)
from persevere._checksums import CRC64NVME

MiB = 1024 * 1024


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _leftovers(s3_client, bucket):
    objects = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [o["Key"] for o in objects], [u["Key"] for u in uploads]


# -- no server --------------------------------------------------------------------------------
def _expected(pattern: DataPattern, offset: int, size: int) -> bytes:
    """The endless stream built the obvious way: the pattern's bytes, repeated."""
    stream = b"".join(bytes(piece) for piece in pattern.slices(0, pattern.length))
    assert len(stream) == pattern.length
    return (stream * ((offset + size) // pattern.length + 1))[offset : offset + size]


@pytest.mark.anyio
@pytest.mark.parametrize(("offset", "size"), [(0, 1000), (950, 200), (1234, 5000), (999, 1)])
async def test_generated_body_is_the_pattern_repeated(offset, size):
    """Slices across the pattern's end wrap around; checksum and body agree byte for byte."""
    pattern = DataPattern(length=1000, slice_bytes=300)
    sent: list[int] = []
    body = GeneratedBody(pattern, offset, size, sent.append)
    pieces = [bytes(piece) async for piece in body]
    expected = _expected(pattern, offset, size)
    assert b"".join(pieces) == expected
    assert all(len(piece) <= 300 for piece in pieces)
    assert sent == [len(piece) for piece in pieces] and len(body) == size
    assert pattern.checksum(offset, size, CRC64NVME) == CRC64NVME.of(expected)


def test_pattern_is_random_and_bounded():
    pattern = DataPattern()
    assert pattern.length == _bench.PATTERN_BYTES and pattern.length % 2 == 1
    assert bytes(pattern.view(0, 4096)) != bytes(pattern.view(4096, 4096))
    with pytest.raises(ValueError, match="at most"):
        pattern.view(0, pattern.slice_bytes + 1)


def test_format_table_aligns_and_marks_the_fastest():
    rows = [
        BenchRow(1, 5 * MiB, 24 * MiB, 0.5, 50.3, 0.1),
        BenchRow(16, 64 * MiB, 24 * MiB, 0.02, 1258.3, 0.25),
        BenchRow(4, 5 * MiB, 24 * MiB, 0.1, 251.7, 0.2),
    ]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["concurrency", "part", "size", "MB/s", "seconds", "CPU", "s"]
    assert [line.endswith("<- fastest") for line in lines] == [False, False, True, False]
    assert "1,258.3" in lines[2] and "64.0 MiB" in lines[2]
    # Right-aligned columns: every row's "seconds" cell ends where the header's does.
    end = lines[0].index("seconds") + len("seconds")
    assert [line[:end].split()[-1] for line in lines[1:]] == ["0.50", "0.02", "0.10"]
    assert format_table([]).split() == lines[0].split()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"size": 0}, persevere.UsageError),
        ({"concurrencies": []}, persevere.UsageError),
        ({"concurrencies": [0]}, persevere.UsageError),
        ({"part_sizes": [MiB]}, persevere.PlanError),
        ({"part_sizes": []}, persevere.UsageError),
    ],
)
async def test_bad_settings_are_refused_before_any_request(kwargs, error):
    settings = {"size": 24 * MiB, "concurrencies": [1], "part_sizes": [None], **kwargs}
    # No endpoint is configured: reaching the network would fail differently.
    with pytest.raises(error):
        await run_bench(
            "no-such-bucket",
            BenchSettings(**settings),
            endpoint=persevere.Endpoint("http://127.0.0.1:9"),
        )


# -- against the local S3 ---------------------------------------------------------------------
@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.anyio
async def test_bench_measures_each_setting_and_leaves_nothing(s3_env, bucket, s3_client):
    seen: list[BenchRow] = []
    rows = await run_bench(bucket, BenchSettings(24 * MiB, [1, 4], [5 * MiB]), on_row=seen.append)
    assert seen == rows
    assert [(r.concurrency, r.part_size, r.size) for r in rows] == [
        (1, 5 * MiB, 24 * MiB),
        (4, 5 * MiB, 24 * MiB),
    ]
    for row in rows:
        assert row.seconds > 0 and row.mb_per_s > 0 and row.cpu_seconds >= 0
        assert row.mb_per_s == pytest.approx(24 * MiB / row.seconds / 1e6)
    assert _leftovers(s3_client, bucket) == ([], [])


@pytest.mark.anyio
async def test_auto_part_size_and_duplicates_run_once(s3_env, bucket, s3_client):
    rows = await run_bench(bucket, BenchSettings(20 * MiB, [2, 2], [None, 8 * MiB]))
    assert [(r.concurrency, r.part_size) for r in rows] == [(2, 8 * MiB)]
    assert _leftovers(s3_client, bucket) == ([], [])


@pytest.mark.anyio
async def test_read_only_identity_fails_cleanly(s3_env, s3_server, bucket, s3_client, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.readonly_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.readonly_secret_key)
    with pytest.raises(persevere.S3Error) as caught:
        await run_bench(bucket, BenchSettings(24 * MiB, [1, 4], [5 * MiB]))
    assert caught.value.code == "AccessDenied"
    assert _leftovers(s3_client, bucket) == ([], [])


class _Tripwire(GeneratedBody):
    """Sets ``fired`` once a part's first slice is out: the bench is mid-upload."""

    fired: anyio.Event

    async def __aiter__(self):
        async for piece in super().__aiter__():
            yield piece
            self.fired.set()


@pytest.mark.anyio
async def test_cancelled_bench_aborts_its_upload(s3_env, bucket, s3_client, monkeypatch):
    """Cancellation (what Ctrl-C does) mid-upload: the multipart upload is aborted, then the
    cancellation goes on."""
    monkeypatch.setattr(_Tripwire, "fired", anyio.Event(), raising=False)
    monkeypatch.setattr(_bench, "GeneratedBody", _Tripwire)
    finished = False

    async def bench():
        nonlocal finished
        await run_bench(bucket, BenchSettings(200 * MiB, [2], [5 * MiB]))
        finished = True

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bench)
            await _Tripwire.fired.wait()
            assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")
            tg.cancel_scope.cancel()
    assert not finished
    assert _leftovers(s3_client, bucket) == ([], [])


@pytest.mark.anyio
async def test_upload_removed_midway_fails_with_persevere_error(
    s3_env, bucket, s3_client, monkeypatch
):
    """A permanent failure mid-run (the upload aborted behind the bench's back) is reported as
    persevere's own error, and nothing is left behind."""
    monkeypatch.setattr(_Tripwire, "fired", anyio.Event(), raising=False)
    monkeypatch.setattr(_bench, "GeneratedBody", _Tripwire)

    async def remove_upload():
        await _Tripwire.fired.wait()
        for upload in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3_client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )

    failures: list[BaseException] = []

    async def bench():
        try:
            await run_bench(bucket, BenchSettings(200 * MiB, [1], [5 * MiB]))
        except persevere.PersevereError as exc:
            failures.append(exc)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(remove_upload)
            await bench()
    assert len(failures) == 1 and isinstance(failures[0], persevere.UploadGone)
    assert _leftovers(s3_client, bucket) == ([], [])
