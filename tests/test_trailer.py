"""The checksum as an aws-chunked trailer (persevere/_trailer.py): each byte of a part read
once; an endpoint that refuses trailers (or ignores them) gets the header form; a part whose
bytes change between attempts is still caught.

Trailers are offered where the kernel does not send parts from the file (TLS): the local
server speaks http, so these tests turn ``sendfile`` off (persevere/_sendfile.py; its own
tests are tests/test_sendfile.py)."""

from __future__ import annotations

import logging

import pytest

import persevere
from persevere import _sendfile
from persevere._checksums import CRC64NVME
from persevere._source import SourceFile
from persevere._trailer import Support, Trailers, encoded_length
from tests.conftest import sha256_of_file, sha256_of_object
from tests.faultproxy import NO_FAULT, Fault, FaultProxy
from tests.proxybase import Answer, s3_error
from tests.ruleproxy import RuleProxy
from tests.test_faults import upstream
from tests.test_reliability import rewrite_in_place

MiB = 1 << 20
TRAILER_LOG = "does not take checksums as aws-chunked trailers"


@pytest.fixture(autouse=True)
def _no_sendfile(monkeypatch):
    monkeypatch.setattr(_sendfile, "ENABLED", False)


def _chunked(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"content-encoding", b"").lower() == b"aws-chunked"


class _Refusing(RuleProxy):
    """An endpoint that refuses aws-chunked bodies (as Cloudflare R2 is reported to)."""

    refused = 0

    def _decide(self, method, target, headers):
        if method == b"PUT" and _chunked(headers):
            self.refused += 1
            return Answer(refuse=s3_error(400, "InvalidArgument", "no aws-chunked", "test"))
        return super()._decide(method, target, headers)


def _without_checksum(head: bytes) -> bytes:
    lines = head.split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.lower().startswith(b"x-amz-checksum"))


class _Ignoring(RuleProxy):
    """An endpoint that takes aws-chunked bodies but echoes no checksum (ignores the trailer)."""

    trailed = 0

    def _decide(self, method, target, headers):
        if method == b"PUT" and _chunked(headers):
            self.trailed += 1
            return Answer(rewrite=_without_checksum)
        return super()._decide(method, target, headers)


def _count_reads(monkeypatch) -> list[int]:
    read: list[int] = [0]
    real_into, real_cached = SourceFile.read_into, SourceFile.read_cached

    def read_into(self, buffer, offset):
        read[0] += len(buffer)
        return real_into(self, buffer, offset)

    def read_cached(self, buffer, offset):
        done = real_cached(self, buffer, offset)
        read[0] += done
        return done

    monkeypatch.setattr(SourceFile, "read_into", read_into)
    monkeypatch.setattr(SourceFile, "read_cached", read_cached)
    return read


def test_encoded_length_counts_every_frame():
    # 2 full chunks of 4 (hex "4"), one of 2, the last chunk and the trailer
    trailer = b"0\r\nx-amz-checksum-crc64nvme:AAAAAAAAAAA=\r\n\r\n"
    assert encoded_length(10, 4, CRC64NVME) == 2 * (1 + 2 + 4 + 2) + (1 + 2 + 2 + 2) + len(trailer)


@pytest.mark.anyio
async def test_parts_larger_than_the_buffer_are_read_once(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    file = make_file(24 * MiB, seed=7)
    read = _count_reads(monkeypatch)
    options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
    result = await persevere.upload_file(file, bucket, "once", tmp_path / "s", part_size=8 * MiB,
                                         options=options)  # fmt: skip
    assert result.part_count == 3
    # Part 1 carries its MD5 (the endpoint's echo is not known yet): header form, read twice;
    # parts 2 and 3 are trailed, read once.
    assert read[0] == 32 * MiB
    assert sha256_of_object(s3_client, bucket, "once") == sha256_of_file(file)


@pytest.mark.anyio
async def test_refused_trailer_falls_back_to_the_header_form_once(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path, caplog
):
    file = make_file(40 * MiB, seed=8)
    caplog.set_level(logging.INFO, logger="persevere")
    with _Refusing.in_front_of(s3_server.endpoint_url) as proxy:
        options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
        endpoint = persevere.Endpoint(endpoint_url=proxy.url)
        await persevere.upload_file(file, bucket, "refused", tmp_path / "s", part_size=8 * MiB,
                                    options=options, endpoint=endpoint)  # fmt: skip
    assert proxy.refused == 1  # part 2 only: the endpoint is then sent the header form
    said = [r.getMessage() for r in caplog.records if TRAILER_LOG in r.getMessage()]
    assert len(said) == 1 and "InvalidArgument" in said[0]
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    assert sha256_of_object(s3_client, bucket, "refused") == sha256_of_file(file)


@pytest.mark.anyio
async def test_trailer_without_an_echo_falls_back(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path, caplog
):
    file = make_file(24 * MiB, seed=9)
    caplog.set_level(logging.INFO, logger="persevere")
    with _Ignoring.in_front_of(s3_server.endpoint_url) as proxy:
        options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
        endpoint = persevere.Endpoint(endpoint_url=proxy.url)
        await persevere.upload_file(file, bucket, "ignored", tmp_path / "s", part_size=8 * MiB,
                                    options=options, endpoint=endpoint)  # fmt: skip
    said = [r.getMessage() for r in caplog.records if TRAILER_LOG in r.getMessage()]
    assert len(said) == 1 and "no checksum" in said[0]
    assert sha256_of_object(s3_client, bucket, "ignored") == sha256_of_file(file)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.anyio
async def test_one_trailed_part_probes_an_endpoint(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path
):
    """Until the endpoint took a trailer, one part at a time is trailed: one that ignores them
    is sent one part twice, not every part of a wave."""
    file = make_file(80 * MiB, seed=12)
    with _Ignoring.in_front_of(s3_server.endpoint_url) as proxy:
        options = persevere.UploadOptions(concurrency=4, buffer_budget_bytes=4 * MiB)
        endpoint = persevere.Endpoint(endpoint_url=proxy.url)
        await persevere.upload_file(file, bucket, "probed", tmp_path / "s", part_size=8 * MiB,
                                    options=options, endpoint=endpoint)  # fmt: skip
    assert proxy.trailed == 1
    assert sha256_of_object(s3_client, bucket, "probed") == sha256_of_file(file)


class _FailingOnce(RuleProxy):
    """Part 2's first trailed attempt reaches the server, whose answer becomes a 500; the file
    is edited before the client hears it, so the next attempt reads other bytes."""

    def __init__(self, upstream, edit) -> None:
        super().__init__(upstream)
        self.edit = edit
        self.failed = False

    def _decide(self, method, target, headers):
        if method == b"PUT" and _chunked(headers) and b"partNumber=2" in target and not self.failed:
            self.failed = True

            def fail(head: bytes) -> bytes:
                self.edit()
                return b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"

            return Answer(rewrite=fail)
        return super()._decide(method, target, headers)


@pytest.mark.anyio
async def test_part_changed_between_trailed_attempts_is_caught(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path
):
    file = make_file(24 * MiB, seed=10)
    edit = lambda: rewrite_in_place(file, 9 * MiB, b"X" * 100)  # noqa: E731
    proxy = _FailingOnce(upstream(s3_server), edit)
    state = tmp_path / "s"
    with proxy:
        options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
        endpoint = persevere.Endpoint(endpoint_url=proxy.url)
        with pytest.raises(persevere.SourceChanged, match="differ from a moment ago"):
            await persevere.upload_file(file, bucket, "changed", state, part_size=8 * MiB,
                                        options=options, endpoint=endpoint)  # fmt: skip
        assert proxy.failed
        result = await persevere.resume(state)  # part 2 sent again, as the file now is
    assert result.part_count == 3
    assert sha256_of_object(s3_client, bucket, "changed") == sha256_of_file(file)


@pytest.mark.anyio
async def test_trailed_part_damaged_in_flight_is_sent_again(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path, caplog
):
    file = make_file(32 * MiB, seed=11)
    # One connection (concurrency 1): Create, part 1 (header form), part 2 (the first trailed
    # one), then part 3, trailed, whose bytes get one bit flipped 3 MiB in.
    plan = lambda n: Fault("corrupt", at_byte=19 * MiB) if n == 0 else NO_FAULT  # noqa: E731
    with FaultProxy(upstream(s3_server), plan) as proxy:
        options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
        endpoint = persevere.Endpoint(endpoint_url=proxy.url)
        await persevere.upload_file(file, bucket, "damaged", tmp_path / "s", part_size=8 * MiB,
                                    options=options, endpoint=endpoint)  # fmt: skip
    assert len(proxy.faults_done) == 1
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 1 and "part 3" in retried[0], retried
    assert not [r for r in caplog.records if TRAILER_LOG in r.getMessage()]
    assert sha256_of_object(s3_client, bucket, "damaged") == sha256_of_file(file)


def test_a_refusal_after_a_trailer_was_taken_is_an_error():
    trailers = Trailers("http://x")
    trailers.taken()
    assert not trailers.on_refusal("InternalError")
    assert trailers.support is Support.TAKEN


def test_refused_stays_refused_and_says_so_once(caplog):
    caplog.set_level(logging.INFO, logger="persevere")
    trailers = Trailers("http://x")
    assert trailers.on_refusal("InvalidArgument") and trailers.on_refusal("InvalidArgument")
    trailers.taken()  # a trailed part in flight before the refusal, answered after it
    assert trailers.support is Support.REFUSED and not trailers.usable(CRC64NVME)
    assert len([r for r in caplog.records if TRAILER_LOG in r.getMessage()]) == 1
