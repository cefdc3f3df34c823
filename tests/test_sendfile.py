"""A streamed part sent by the kernel from the file (persevere/_sendfile.py): each byte read
once (the checksum pass), nothing weaker than the slices it replaces: a file edited or cut
short under the send is caught, a bandwidth limit keeps the slices (and TLS:
tests/test_https.py)."""

from __future__ import annotations

import errno
import os

import pytest

import persevere
from persevere import _sendfile
from persevere._source import SourceFile
from tests.conftest import sha256_of_file, sha256_of_object
from tests.test_reliability import rewrite_in_place

MiB = 1 << 20


def count_reads_and_sends(monkeypatch) -> dict[str, int]:
    """Bytes read by Python (read_into / read_cached) and bytes the kernel sent."""
    seen = {"read": 0, "sent": 0}
    real_into, real_cached, real_send = (
        SourceFile.read_into, SourceFile.read_cached, _sendfile.send_some,
    )  # fmt: skip

    def read_into(self, buffer, offset):
        seen["read"] += len(buffer)
        return real_into(self, buffer, offset)

    def read_cached(self, buffer, offset):
        done = real_cached(self, buffer, offset)
        seen["read"] += done
        return done

    def send_some(*args):
        sent = real_send(*args)
        seen["sent"] += sent
        return sent

    monkeypatch.setattr(SourceFile, "read_into", read_into)
    monkeypatch.setattr(SourceFile, "read_cached", read_cached)
    monkeypatch.setattr(_sendfile, "send_some", send_some)
    return seen


@pytest.mark.anyio
async def test_each_byte_is_read_once_and_sent_by_the_kernel(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    file = make_file(24 * MiB + 5, seed=21)
    seen = count_reads_and_sends(monkeypatch)
    options = persevere.UploadOptions(concurrency=2, buffer_budget_bytes=2 * MiB)
    result = await persevere.upload_file(file, bucket, "k", tmp_path / "s", part_size=8 * MiB,
                                         options=options)  # fmt: skip
    assert result.part_count == 4
    # Parts 1-3 (8 MiB, more than a worker's 1 MiB buffer): read once by the checksum pass,
    # sent by the kernel. Part 4 (5 bytes) fits the buffer: read once, sent from it.
    assert seen == {"read": 24 * MiB + 5, "sent": 24 * MiB}
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.anyio
async def test_file_edited_under_the_send_is_caught_not_retried(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """The checksum pass saw the old bytes, the kernel sends the new ones: S3 refuses the part
    (BadDigest), the range is re-read, and the upload stops as changed (no retry)."""
    file = make_file(12 * MiB, seed=22)
    real_send = _sendfile.send_some
    sends = []

    def edited_meanwhile(sock_fd, file_fd, offset, count):
        sends.append(offset)
        if offset == 5 * MiB:  # part 2's first bytes: someone writes to the file first
            rewrite_in_place(file, 6 * MiB, b"X" * 100, keep_mtime=False)
        return real_send(sock_fd, file_fd, offset, count)

    monkeypatch.setattr(_sendfile, "send_some", edited_meanwhile)
    options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
    with pytest.raises(persevere.SourceChanged, match="changed while it was being uploaded"):
        await persevere.upload_file(file, bucket, "k", tmp_path / "s", part_size=5 * MiB,
                                    options=options)  # fmt: skip
    assert sends.count(5 * MiB) == 1  # sent once: a retry would send it again
    result = await persevere.resume(tmp_path / "s")  # the file is final now
    assert result.part_count == 3
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.anyio
async def test_file_cut_short_under_the_send_stops_cleanly(
    s3_env, bucket, make_file, tmp_path, monkeypatch
):
    file = make_file(12 * MiB, seed=23)
    real_send = _sendfile.send_some

    def truncated_meanwhile(sock_fd, file_fd, offset, count):
        if offset == 5 * MiB:
            os.truncate(file, 6 * MiB)
        return real_send(sock_fd, file_fd, offset, count)

    monkeypatch.setattr(_sendfile, "send_some", truncated_meanwhile)
    options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
    with pytest.raises(persevere.SourceChanged, match="shorter than when the upload started"):
        await persevere.upload_file(file, bucket, "k", tmp_path / "s", part_size=5 * MiB,
                                    options=options)  # fmt: skip


@pytest.mark.anyio
async def test_a_bandwidth_limit_keeps_the_slices(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    file = make_file(6 * MiB, seed=24)
    seen = count_reads_and_sends(monkeypatch)
    options = persevere.UploadOptions(
        concurrency=1, buffer_budget_bytes=MiB, max_bandwidth_bytes_s=200 * MiB
    )
    await persevere.upload_file(file, bucket, "k", tmp_path / "s", part_size=5 * MiB,
                                options=options)  # fmt: skip
    assert seen["sent"] == 0
    assert seen["read"] == 6 * MiB + 5 * MiB  # part 1 read twice (checksum pass, slices)
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


def test_only_a_plain_socket_is_sent_to():
    class Transport:
        def __init__(self, **extra):
            self.extra = extra

        def is_closing(self):
            return False

        def get_extra_info(self, name):
            return self.extra.get(name)

    class Sock:
        def fileno(self):
            return 7

    class Writer:
        chunked = False
        _compress = None

        def __init__(self, transport):
            self.transport = transport

        def send_headers(self):
            pass

    assert _sendfile.plain_socket(Writer(Transport(socket=Sock()))) == 7
    assert _sendfile.plain_socket(Writer(Transport(socket=Sock(), sslcontext=object()))) is None
    assert _sendfile.plain_socket(Writer(Transport(socket=Sock(), ssl_object=object()))) is None
    assert _sendfile.plain_socket(Writer(None)) is None
    chunked = Writer(Transport(socket=Sock()))
    chunked.chunked = True
    assert _sendfile.plain_socket(chunked) is None

    class OldWriter:  # an aiohttp before 3.12 sends its head with the first body bytes
        chunked = False
        _compress = None
        transport = Transport(socket=Sock())

    assert _sendfile.plain_socket(OldWriter()) is None


@pytest.mark.anyio
async def test_a_file_the_kernel_cannot_send_from_goes_in_slices(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    file = make_file(11 * MiB, seed=26)
    refused = []

    def no_sendfile(out_fd, in_fd, offset, count):
        refused.append(offset)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", no_sendfile)
    options = persevere.UploadOptions(concurrency=2, buffer_budget_bytes=2 * MiB)
    result = await persevere.upload_file(file, bucket, "k", tmp_path / "s", part_size=5 * MiB,
                                         options=options)  # fmt: skip
    assert result.part_count == 3 and len(refused) == 2  # parts 1 and 2 tried, then slices
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
