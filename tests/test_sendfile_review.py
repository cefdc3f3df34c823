"""An adversarial review of the kernel send (persevere/_sendfile.py): a slow link, a stop, a
connection reused after a sent body, descriptors after many failures."""

from __future__ import annotations

import os
import socket
import threading
import time

from persevere import _sendfile

MiB = 1 << 20


def _slow_link(rate_bytes_s: float) -> tuple[socket.socket, threading.Event, threading.Thread]:
    """A TCP connection on loopback with small buffers whose far end reads at ``rate_bytes_s``
    (a slow uplink: the socket takes a little, often), and the event that ends the reader."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
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
                    if not server.recv(32 * 1024):
                        return
                except TimeoutError:
                    continue
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
