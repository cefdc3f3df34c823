"""An adversarial review of the kernel send (persevere/_sendfile.py): a slow link, a stop, a
connection reused after a sent body, descriptors after many failures."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import anyio
import pytest

import persevere
from persevere import _sendfile
from tests.conftest import persevere as cli
from tests.conftest import sha256_of_file, sha256_of_object
from tests.faultproxy import Fault, FaultProxy
from tests.proxybase import FORWARD, Answer, Hold, HttpForwarder, close, s3_error
from tests.test_faults import upstream

MiB = 1 << 20


def _slow_link(
    rate_bytes_s: float, received: bytearray | None = None
) -> tuple[socket.socket, threading.Event, threading.Thread]:
    """A TCP connection on loopback with small buffers whose far end reads at ``rate_bytes_s``
    (a slow uplink: the socket takes a little, often) into ``received``, and the event that
    ends the reader."""
    client = socket.socket()  # first: it takes the lowest free descriptor number
    listener = socket.create_server(("127.0.0.1", 0))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    client.connect(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.setblocking(False)
    done = threading.Event()

    def read() -> None:
        with server:
            server.settimeout(0.1)
            while not done.is_set():
                try:
                    data = server.recv(32 * 1024)
                except TimeoutError:
                    continue
                if not data:
                    return
                if received is not None:
                    received.extend(data)
                time.sleep(32 * 1024 / rate_bytes_s)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return client, done, reader


def test_a_thread_comes_back_within_its_poll_time_on_a_slow_link(tmp_path):
    """The stall watchdog and a stop see a part's progress only when the thread comes back:
    on a link that takes every byte slowly (about 1.5 MiB/s here; 8 workers sharing a few
    Mbit/s are far slower) it came back only after HOP_BYTES, minutes later on a real uplink
    (a moving part cut as stalled at every attempt, a Ctrl-C waiting as long)."""
    file = tmp_path / "f"
    file.write_bytes(os.urandom(8 * MiB))
    client, done, reader = _slow_link(1.5 * MiB)
    fd = os.open(file, os.O_RDONLY)
    try:
        started = time.monotonic()
        sent = _sendfile.send_some(client.fileno(), fd, 0, 8 * MiB)
        elapsed = time.monotonic() - started
    finally:
        os.close(fd)
        done.set()
        client.close()
        reader.join()
    assert 0 < sent < _sendfile.HOP_BYTES
    assert elapsed < 2 * _sendfile._POLL_MS / 1000


@pytest.mark.slow
@pytest.mark.process
def test_sigterm_while_the_kernel_send_is_blocked_stops_promptly(
    s3_env, s3_server, s3_client, bucket, make_file, tmp_path
):
    """The far end stops reading 2 MiB into each part (a 16 MiB part: more than the socket
    buffers hold, so its body is never all sent): SIGTERM still stops in seconds, exit 130
    with the resume command, and resume finishes the object."""
    file, state = make_file(32 * MiB, seed=32), tmp_path / "s"
    held = Hold()
    plan = lambda n: Fault("hold", at_byte=2 * MiB, hold=held)  # noqa: E731
    with FaultProxy(upstream(s3_server), plan) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        proc = subprocess.Popen(
            [sys.executable, "-m", "persevere", "upload", "start", str(file), f"s3://{bucket}/k",
             "--state-file", str(state), "--part-size", "16MiB", "--no-progress"],
            env={**os.environ, **env}, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        held.wait(60)
        time.sleep(1.0)  # the socket buffers fill: the thread is in sendfile / poll
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=30)
        finally:
            proc.kill()
        elapsed = time.monotonic() - started
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert "persevere upload resume" in stderr
        assert elapsed < 5, stderr
        proxy.plan = lambda n: Fault("none")
        held.release()
        assert cli(env, "upload", "resume", "--state-file", state).returncode == 0
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


class _Transport:
    def __init__(self, on_buffer_size=lambda: 0):
        self.closing = False
        self._on_buffer_size = on_buffer_size

    def is_closing(self):
        return self.closing

    def get_write_buffer_size(self):
        return self._on_buffer_size()


class _Writer:
    """What send_range uses of aiohttp's StreamWriter."""

    def __init__(self, transport):
        self.transport = transport
        self.output_size = 0

    def send_headers(self):
        pass


@pytest.mark.anyio
async def test_a_send_being_cut_never_reads_a_file_opened_after_its_own_closed(tmp_path):
    """aiohttp cancels the body's writer when an answer comes first (an early error): the
    thread goes on until its hop ends while the caller moves on and may close the part's file,
    whose number the next open file takes. The thread must not send from that one."""
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.write_bytes(b"m" * (8 * MiB))
    other.write_bytes(b"X" * (8 * MiB))
    received = bytearray()
    client, done, reader = _slow_link(1 * MiB, received)
    fd = os.open(mine, os.O_RDONLY)
    moved = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                _sendfile.send_range, _Writer(_Transport()), client.fileno(), fd, 0, 8 * MiB,
                lambda n: moved.set(),
            )  # fmt: skip
            await moved.wait()  # a hop came back
            await anyio.sleep(0.2)  # the next one is under way
            tg.cancel_scope.cancel()
            os.close(fd)  # the caller is done with the file
            fd = os.open(other, os.O_RDONLY)  # the lowest free number: the one just closed
    finally:
        os.close(fd)
        await anyio.sleep(0.3)  # the reader takes what was sent
        done.set()
        client.close()
        reader.join()
    assert received and b"X" not in received


@pytest.mark.anyio
async def test_a_connection_closed_while_the_head_flushes_is_not_replaced(tmp_path):
    """The loop closes the connection while send_range waits for the request's head to leave
    (asyncio drops the unsent buffer and marks the transport closing); its descriptor's number
    is taken by a new connection. The body must not go to that one."""
    file = tmp_path / "f"
    file.write_bytes(b"b" * MiB)
    received = bytearray()
    client, done, reader = _slow_link(100 * MiB)
    stranger, stranger_done, stranger_reader = None, None, None
    transport = None

    def close_and_reconnect():
        # What the loop does while send_range waits: the transport closes (its buffer
        # dropped), then a new connection (another worker's) takes the socket's number.
        nonlocal stranger, stranger_done, stranger_reader
        number = client.fileno()
        transport.closing = True
        client.close()
        stranger, stranger_done, stranger_reader = _slow_link(100 * MiB, received)
        assert stranger.fileno() == number

    def buffer_size():
        if stranger is not None:
            return 0
        asyncio.get_running_loop().call_soon(close_and_reconnect)
        return 1  # the head is still in the buffer: send_range waits

    transport = _Transport(buffer_size)
    fd = os.open(file, os.O_RDONLY)
    try:
        with pytest.raises(ConnectionResetError, match="closed before the body"):
            await _sendfile.send_range(
                _Writer(transport), client.fileno(), fd, 0, MiB, lambda n: None
            )
    finally:
        os.close(fd)
        await anyio.sleep(0.2)
        for end, thread, sock in (
            (done, reader, client),
            (stranger_done, stranger_reader, stranger),
        ):
            if end is not None:
                end.set()
                sock.close()
                thread.join()
    assert received == b""


class _EarlyAnswers(HttpForwarder):
    """Answers the first ``count`` UploadParts with 503 SlowDown as soon as their head is in,
    before reading their body (then reads and drops the body, keeping the connection, or
    closes it: ``close``)."""

    def __init__(self, upstream, count: int, close: bool) -> None:
        super().__init__(upstream)
        self.left = count
        self.close = close
        self._client = threading.local()

    def _serve(self, client: socket.socket) -> None:
        self._client.socket = client
        super()._serve(client)

    def _decide(self, method, target, headers) -> Answer:
        if method != b"PUT" or b"partNumber=" not in target:
            return FORWARD
        with self._lock:
            if self.left == 0:
                return FORWARD
            self.left -= 1
        client = self._client.socket
        client.sendall(s3_error(503, "SlowDown", "early", "early-1"))
        if self.close:
            close(client)
        return Answer(refuse=b"")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.parametrize("close_after", [False, True], ids=["drained", "closed"])
@pytest.mark.anyio
async def test_an_answer_before_the_body_is_retried_and_leaks_nothing(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path, close_after
):
    """A server that answers an UploadPart before reading its body (an error, then it reads
    and drops the body on a kept connection, or closes it): each part is retried, the object
    equals the file, and no descriptor is left behind."""
    file = make_file(20 * MiB + 3, seed=33)
    with _EarlyAnswers(upstream(s3_server), count=6, close=close_after) as proxy:
        before = _open_fds()
        await persevere.upload_file(
            file, bucket, "k", tmp_path / "s", part_size=5 * MiB,
            endpoint=persevere.Endpoint(f"http://127.0.0.1:{proxy.port}"),
            options=persevere.UploadOptions(
                concurrency=2, buffer_budget_bytes=2 * MiB,
                retry=persevere.RetryPolicy(base_delay_s=0.01, max_delay_s=0.05),
            ),
        )  # fmt: skip
        await anyio.sleep(0.6)  # a cut send's thread ends within its hop
        assert _open_fds() <= before
        assert proxy.left == 0
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.parametrize("code", [errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN])
@pytest.mark.anyio
async def test_a_network_gone_mid_send_is_retried_not_blamed_on_the_file(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch, code
):
    """The route to the endpoint goes away while the kernel sends a part (a Wi-Fi drop, a VPN
    down): the socket's error (EHOSTUNREACH, ENETUNREACH, ENETDOWN) is the network's, retried
    like a reset, never "cannot read FILE ... fix the file's storage" (the file reads fine)."""
    file = make_file(11 * MiB, seed=35)
    real_sendfile = os.sendfile
    failed = []

    def route_gone_once(out_fd, in_fd, offset, count):
        if not failed and offset >= 2 * MiB:
            failed.append(offset)
            raise OSError(code, os.strerror(code))
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", route_gone_once)
    options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB)
    result = await persevere.upload_file(file, bucket, "k", tmp_path / "s", part_size=5 * MiB,
                                         options=options)  # fmt: skip
    assert failed and result.part_count == 3
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


def test_a_sendfile_error_is_the_files_only_if_the_file_fails(tmp_path, monkeypatch):
    """EIO is the file's; an error the file does not reproduce (it reads) is the socket's."""
    file = tmp_path / "f"
    file.write_bytes(b"x" * MiB)
    client, done, reader = _slow_link(100 * MiB)
    fd = os.open(file, os.O_RDONLY)

    def failing(code):
        def sendfile(out_fd, in_fd, offset, count):
            raise OSError(code, os.strerror(code))

        return sendfile

    try:
        monkeypatch.setattr(os, "sendfile", failing(errno.EIO))
        with pytest.raises(_sendfile.SourceUnreadable):
            _sendfile.send_some(client.fileno(), fd, 0, MiB)
        monkeypatch.setattr(os, "sendfile", failing(errno.EHOSTUNREACH))
        with pytest.raises(OSError, match="No route to host") as caught:
            _sendfile.send_some(client.fileno(), fd, 0, MiB)
        assert not isinstance(caught.value, _sendfile.SourceUnreadable)
    finally:
        os.close(fd)
        done.set()
        client.close()
        reader.join()


@pytest.mark.anyio
async def test_a_reset_mid_send_is_retried_by_persevere_and_progress_stays_exact(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path
):
    """A connection reset under a kernel-sent part (16 MiB: more than the socket buffers, so
    sendfile itself meets the reset): the attempt fails and persevere retries it, its progress
    rewound once. aiohttp must not replay the body itself (it retries a PUT whose payload is
    not marked consumed): the part's bytes were counted twice (progress past 100%)."""
    file = make_file(16 * MiB + 1, seed=36)
    done = 0

    class Progress:
        def start(self, total_bytes, done_bytes):
            pass

        def advance(self, delta_bytes):
            nonlocal done
            done += delta_bytes

        def close(self):
            pass

    plan = lambda n: Fault("reset", at_byte=2 * MiB) if n == 0 else Fault("none")  # noqa: E731
    with FaultProxy(upstream(s3_server), plan) as proxy:
        await persevere.upload_file(
            file, bucket, "k", tmp_path / "s", part_size=16 * MiB,
            endpoint=persevere.Endpoint(f"http://127.0.0.1:{proxy.port}"),
            options=persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB),
            progress=Progress(),
        )  # fmt: skip
    assert proxy.faults_done
    assert done == 16 * MiB + 1
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.anyio
async def test_a_connection_goes_on_after_a_kernel_sent_body(
    s3_env, s3_server, bucket, s3_client, make_file, tmp_path, caplog
):
    """Keep-alive after sendfile: the next request on the connection starts exactly where the
    body ended (a byte too many or too few would break it), every part on the first try."""
    file = make_file(15 * MiB + 3, seed=37)
    seen = []
    real = _sendfile.send_some

    def counted(*args):
        sent = real(*args)
        seen.append(sent)
        return sent

    with FaultProxy(upstream(s3_server)) as proxy, pytest.MonkeyPatch.context() as patch:
        patch.setattr(_sendfile, "send_some", counted)
        result = await persevere.upload_file(
            file, bucket, "k", tmp_path / "s", part_size=5 * MiB,
            endpoint=persevere.Endpoint(f"http://127.0.0.1:{proxy.port}"),
            options=persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB),
        )  # fmt: skip
    assert result.part_count == 4 and sum(seen) == 15 * MiB
    assert proxy.connections == 1  # Create, 4 parts and Complete on one connection
    assert "failed" not in caplog.text
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)
