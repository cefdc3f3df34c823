"""The Python API the CLI is a layer over, used directly against the local SeaweedFS."""

from __future__ import annotations

import json

import anyio
import pytest

import persevere
from tests.conftest import sha256_of_file, sha256_of_object

MiB = 1024 * 1024


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_upload_file_reports_progress(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(17 * MiB, seed=21)
    seen: list[tuple[int, int]] = []

    class Recorder:
        def start(self, total_bytes, done_bytes):
            seen.append((done_bytes, total_bytes))

        def advance(self, delta_bytes):
            done, total = seen[-1]
            seen.append((done + delta_bytes, total))

        def close(self):
            pass

    result = await persevere.upload_file(
        file,
        bucket,
        "api/obj",
        tmp_path / "api.state",
        part_size=5 * MiB,
        options=persevere.UploadOptions(concurrency=2),
        progress=Recorder(),
    )
    assert result.size == 17 * MiB and result.part_count == 4
    assert result.bytes_sent == 17 * MiB
    assert seen[0] == (0, 17 * MiB) and seen[-1] == (17 * MiB, 17 * MiB)
    assert sha256_of_object(s3_client, bucket, "api/obj") == sha256_of_file(file)

    status = await persevere.status(tmp_path / "api.state")
    assert status.parts_done == 4 and status.outcome is not None


@pytest.mark.anyio
async def test_cancelled_upload_resumes(s3_env, bucket, s3_client, make_file, tmp_path):
    """Cancellation (what Ctrl-C does) leaves a resumable journal and the upload in place."""
    file = make_file(60 * MiB, seed=22)
    state = tmp_path / "api.state"
    sent = 0
    three_parts_sent = anyio.Event()

    class StopAfterThreeParts:
        def start(self, total_bytes, done_bytes):
            pass

        def advance(self, delta_bytes):
            nonlocal sent
            sent += delta_bytes
            if sent >= 15 * MiB:
                three_parts_sent.set()

        def close(self):
            pass

    with anyio.move_on_after(30) as scope:
        async with anyio.create_task_group() as tg:

            async def upload():
                await persevere.upload_file(
                    file, bucket, "api/cancel", state, part_size=5 * MiB,
                    options=persevere.UploadOptions(concurrency=1),
                    progress=StopAfterThreeParts(),
                )  # fmt: skip

            tg.start_soon(upload)
            await three_parts_sent.wait()
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    records = [json.loads(line) for line in state.read_bytes().splitlines()]
    assert records[0]["type"] == "header"
    assert all(r["type"] == "part" for r in records[1:])

    result = await persevere.resume(state)
    assert result.size == 60 * MiB
    assert result.bytes_sent < 60 * MiB  # the journaled parts were not sent again
    assert sha256_of_object(s3_client, bucket, "api/cancel") == sha256_of_file(file)


def test_the_readmes_resume_after_completion_returns_the_result(s3_env, bucket, s3_client,
                                                              make_file, tmp_path):  # fmt: skip
    """The README's snippet: upload_file_sync, then resume_sync "after a crash, from another
    process"; the upload had completed: resume returns that, as cp does (no UploadFinished)."""
    file, state = make_file(6 * MiB, seed=96), tmp_path / "db.dump.persevere"
    uploaded = persevere.upload_file_sync(file, bucket, "backups/db.dump", state)
    resumed = persevere.resume_sync(state)
    assert resumed.already_completed and resumed.bytes_sent == 0
    assert (resumed.etag, resumed.checksum, resumed.size) == (
        uploaded.etag, uploaded.checksum, uploaded.size)  # fmt: skip
    assert sha256_of_object(s3_client, bucket, "backups/db.dump") == sha256_of_file(file)
    aborted = tmp_path / "a"  # not a success: an error, with what to do
    persevere.create_upload_sync(file, bucket, "x", aborted, shards=1)
    persevere.abort_sync(aborted)
    with pytest.raises(persevere.UploadFinished, match="was aborted") as refused:
        persevere.resume_sync(aborted)
    assert "persevere cp" in (refused.value.hint or "")


@pytest.mark.anyio
async def test_abort_via_api(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(1000)
    state = tmp_path / "api.state"
    await persevere.upload_file(file, bucket, "api/small", state)
    with pytest.raises(persevere.UploadFinished, match="already completed"):
        await persevere.abort(state)
    with pytest.raises(persevere.StateFileExists):
        await persevere.upload_file(file, bucket, "api/small", state)


@pytest.mark.anyio
async def test_list_parts_follows_every_page(s3_env, bucket, s3_client):
    """The session's ListParts pager follows every page (SeaweedFS ignores MaxParts, so the
    pages are cut here: 2 parts each, 5 parts in 3 pages)."""
    from persevere._checksums import CRC64NVME
    from persevere._s3 import Endpoint, open_client
    from persevere._session import MultipartSession

    upload_id = s3_client.create_multipart_upload(Bucket=bucket, Key="paged")["UploadId"]
    for number in range(1, 6):
        s3_client.upload_part(Bucket=bucket, Key="paged", UploadId=upload_id,
                              PartNumber=number, Body=b"x" * number)  # fmt: skip
    markers = []
    async with open_client(Endpoint.from_environment(None, None, None)) as client:
        real = client.list_parts

        async def two_per_page(**kwargs):
            markers.append(kwargs["PartNumberMarker"])
            page = await real(**kwargs)
            after = [p for p in page["Parts"] if p["PartNumber"] > kwargs["PartNumberMarker"]]
            truncated = len(after) > 2
            following = after[1]["PartNumber"] if truncated else None
            return {**page, "Parts": after[:2], "IsTruncated": truncated,
                    "NextPartNumberMarker": following}  # fmt: skip

        client.list_parts = two_per_page
        session = MultipartSession(client, bucket, "paged", upload_id, CRC64NVME)
        parts = await session.list_parts()
    assert markers == [0, 2, 4]
    assert [(p.part_number, p.size) for p in parts.values()] == [(n, n) for n in range(1, 6)]


@pytest.mark.anyio
async def test_header_write_failure_aborts_the_new_upload(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """CreateMultipartUpload succeeded but the journal cannot take its header: nothing would
    record the upload, so persevere aborts it and reports the state file error."""
    import errno

    from persevere._journal import Journal

    def disk_full(self, header):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Journal, "write_header", disk_full)
    state = tmp_path / "api.state"
    with pytest.raises(persevere.StateFileError, match="No space left on device"):
        await persevere.upload_file(make_file(1000), bucket, "nowhere", state)
    assert not state.exists()
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.anyio
async def test_a_read_failure_while_streaming_is_not_taken_for_the_network(
    s3_env, bucket, make_file, tmp_path, monkeypatch
):
    """aiohttp reports a body's exception as a connection error; persevere must not retry a
    file that shrank as if the link had dropped."""
    from persevere import _sendfile
    from persevere._source import SourceFile

    real_read_into = SourceFile.read_into
    calls_at_2mib = 0

    def shrinking(self, buffer, offset):
        nonlocal calls_at_2mib
        if offset == 2 * MiB:
            calls_at_2mib += 1
            if calls_at_2mib == 2:  # the streaming pass (the first was the checksum pass)
                raise persevere.SourceChanged("the file shrank (simulated)")
        return real_read_into(self, buffer, offset)

    monkeypatch.setattr(SourceFile, "read_into", shrinking)
    # Nothing cached: every slice is read by read_into (a file that shrank is never cached).
    monkeypatch.setattr(SourceFile, "read_cached", lambda self, buffer, offset: 0)
    # Sent in slices (the kernel's sendfile off); its counterpart: tests/test_sendfile.py.
    monkeypatch.setattr(_sendfile, "ENABLED", False)
    options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)  # stream parts
    with pytest.raises(persevere.SourceChanged, match="shrank"):
        await persevere.upload_file(
            make_file(12 * MiB), bucket, "shrinks", tmp_path / "s", part_size=5 * MiB,
            options=options,
        )  # fmt: skip
    assert calls_at_2mib == 2  # no retry read it again
