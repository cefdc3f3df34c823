"""Review of the core's round-2 shrink (2d120e5..857c10f, branch s2core): the behaviours its
changes touched. The first test failed on s2core (the state file of a refused start outlived the
client's close); the others pin what was compared on both sides and found unchanged."""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path
from typing import Any

import pytest

import persevere
from persevere._journal import Header, Journal, PartRecord, replay
from persevere._shard_journals import open_shard_journal, refuse_running_shards, shard_journal
from tests.conftest import persevere as cli
from tests.ruleproxy import Rule

# Pins of the 2026-12-05 review (they pass on the shrink's base too): run by make test-all (CI).
pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def test_a_refused_start_removes_its_state_file_before_the_client_closes(
    rule_proxy, bucket, make_file, tmp_path, monkeypatch
):
    """CreateMultipartUpload refused: the empty state file is removed as the failure leaves
    _create, before the client is closed (an await: a kill -9 or a second Ctrl-C there, which
    exits at once, must not leave an empty state file the next start refuses)."""
    from aiobotocore.session import ClientCreatorContext

    state = tmp_path / "st"
    seen: list[bool] = []
    real_exit = ClientCreatorContext.__aexit__

    async def closing(self: Any, *exc: Any) -> Any:
        seen.append(state.exists())
        return await real_exit(self, *exc)

    monkeypatch.setattr(ClientCreatorContext, "__aexit__", closing)
    env, proxy = rule_proxy
    proxy.rules.append(Rule("POST", "uploads", refuse=(403, "AccessDenied")))
    refused = cli(env, "cp", make_file(1000), f"s3://{bucket}/k", "--state-file", state)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr, refused.stderr
    assert proxy.matched["POST uploads"] >= 1
    assert seen and seen[-1] is False  # gone before the client closed
    assert not state.exists()


def test_a_torn_header_that_cannot_be_cut_is_removed_and_the_upload_aborted(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """The header's write was short and the journal could not cut it (ftruncate failed): the
    state file holds bytes, no header; the start still removes it and aborts the upload."""
    import persevere._journal as journal_module

    real = journal_module.os

    class Faulty:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def write(self, fd: int, data: bytes) -> int:
            if data.startswith(b'{"type":"header"'):
                return real.write(fd, data[: len(data) // 2])
            return real.write(fd, data)

        def ftruncate(self, fd: int, length: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal_module, "os", Faulty())
    state = tmp_path / "st"
    failed = cli(s3_env, "cp", make_file(1000), f"s3://{bucket}/k", "--state-file", state)
    assert failed.returncode == 3, failed.stderr
    assert "short write" in failed.stderr
    assert not state.exists()
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def _header(**changes: Any) -> Header:
    fields: dict[str, Any] = dict(
        bucket="b", key="k", upload_id="U1", endpoint_url=None, region=None, profile=None,
        file_path="/f", file_size=100, mtime_ns=1, part_size=10,
        checksum_algorithm="CRC64NVME", checksum_type="FULL_OBJECT", created_at="t",
        tool_version="v", object_options={"Metadata": {"a": "b"}}, shards=2, inode=7,
    )  # fmt: skip
    return Header(**{**fields, **changes})


def _locked(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_new_shard_journal_is_the_header_alone_open_and_locked(tmp_path: Path):
    state = tmp_path / "st"
    main = Journal.create(state)
    main.write_header(_header())
    main.close()
    journal, opened = open_shard_journal(state, 0, 2)
    path = shard_journal(state, 0, 2)
    try:
        data = path.read_bytes()
        assert data == state.read_bytes()  # the main header's line, byte for byte
        assert opened.header == replay(data).header == _header()
        assert (opened.parts, opened.outcome, opened.source) == ({}, None, None)
        assert journal.source == _header().source
        assert _locked(path)
        journal.append_part(PartRecord(1, '"e"', "c", 10))
    finally:
        journal.close()
    assert not _locked(path)
    again, reopened = open_shard_journal(state, 0, 2)  # resumed: its part kept
    again.close()
    assert list(reopened.parts) == [1]


def test_running_shards_are_found_by_their_lock(tmp_path: Path):
    state = tmp_path / "st"
    state.write_bytes(b"")
    refuse_running_shards(state)  # no shard journal: nothing to wait for
    path = shard_journal(state, 1, 3)
    path.write_bytes(b"x")
    refuse_running_shards(state)  # not locked: not running
    holder = os.open(path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with pytest.raises(persevere.StateFileLocked) as running:
            refuse_running_shards(state)
        assert running.value.message == (
            "shard journal st.shard-1-of-3 is in use: that shard is still running"
        )
        assert running.value.hint == "wait for it to finish (or stop it), then complete the upload"
    finally:
        os.close(holder)
    refuse_running_shards(state)  # its lock was not taken over by the check
    assert not _locked(path)


def test_a_journal_of_several_mib_is_read_whole_and_its_torn_tail_cut(tmp_path: Path):
    """Journal.open reads the file to its end (more than one read's worth), from its start."""
    state = tmp_path / "st"
    journal = Journal.create(state)
    journal.write_header(_header(file_size=10**9, part_size=10))
    lines = b"".join(
        json.dumps({"type": "part", "part_number": n, "etag": f'"{n:032x}"', "checksum": "c" * 12,
                    "size": 10}, separators=(",", ":")).encode() + b"\n"
        for n in range(1, 40001)
    )  # fmt: skip
    os.write(os.open(state, os.O_WRONLY | os.O_APPEND), lines + b'{"type":"pa')
    journal.close()
    assert state.stat().st_size > 3 * MiB
    journal, opened = Journal.open(state)
    journal.close()
    assert len(opened.parts) == 40000 and opened.parts[40000].etag == f'"{40000:032x}"'
    assert state.read_bytes().endswith(b"\n") and opened.valid_length == state.stat().st_size


@pytest.mark.anyio
async def test_upload_part_parameters_checksummed_and_trailed(
    s3_env, bucket, make_file, tmp_path, monkeypatch
):
    """Part 1 goes with its checksum and Content-MD5 (the echo not known yet); parts larger
    than the buffer then go trailed: no checksum parameter, a trailer body."""
    from aiobotocore.session import ClientCreatorContext

    from persevere import _sendfile

    monkeypatch.setattr(_sendfile, "ENABLED", False)
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append({k: type(v).__name__ if k == "Body" else v for k, v in params.items()})

    real_enter = ClientCreatorContext.__aenter__

    async def entering(self: Any) -> Any:
        client = await real_enter(self)
        client.meta.events.register("before-parameter-build.s3.UploadPart", record)
        return client

    monkeypatch.setattr(ClientCreatorContext, "__aenter__", entering)
    options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
    file = make_file(20 * MiB, seed=3)
    await persevere.upload_file(file, bucket, "k", tmp_path / "s", part_size=8 * MiB,
                                options=options)  # fmt: skip
    shapes = sorted(
        (p["PartNumber"], p["Body"], p["ContentLength"], sorted(set(p) - {"Body", "UploadId"}))
        for p in sent
    )
    common = ["Bucket", "ContentLength", "Key", "PartNumber"]
    assert shapes == [
        (1, "StreamingBody", 8 * MiB, sorted([*common, "ChecksumCRC64NVME", "ContentMD5"])),
        (2, "TrailerBody", 8 * MiB, common),
        (3, "TrailerBody", 4 * MiB, common),
    ]
