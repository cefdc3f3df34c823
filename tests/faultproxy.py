"""A fault-injecting TCP proxy for the tests: real bytes, real sockets, chosen faults.

Sits between the client and the S3 server on loopback. Each accepted connection asks
``plan(n)`` (n counts connections from 0) for a :class:`Fault` applied to the client-to-server
direction at a byte offset of that connection's stream: flip one bit (the part's checksum no
longer matches: S3 answers BadDigest), reset the connection (RST), or stall (stop forwarding
for a while). Latency and a shared bandwidth cap apply to every connection.

Standard library, one thread per direction per connection: simple enough to trust in tests.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # "corrupt", "reset", "stall" or "none"
    at_byte: int = 0  # offset in the client-to-server stream of the connection
    stall_s: float = 0.0


NO_FAULT = Fault("none")


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        plan: Callable[[int], Fault] = lambda n: NO_FAULT,
        latency_s: float = 0.0,
        rate_bytes_s: float | None = None,
    ) -> None:
        self.upstream = upstream
        self.plan = plan
        self.latency_s = latency_s
        self.rate_bytes_s = rate_bytes_s
        self.connections = 0
        self.faults_done: list[Fault] = []
        self._lock = threading.Lock()
        self._bucket_time = time.monotonic()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                number = self.connections
                self.connections += 1
            fault = self.plan(number)
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, server, fault), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(server, client, NO_FAULT), daemon=True
            ).start()

    def _throttle(self, n: int) -> None:
        if self.rate_bytes_s is None:
            return
        with self._lock:
            # A shared schedule: each chunk is due after the previous ones at the capped rate.
            now = time.monotonic()
            self._bucket_time = max(self._bucket_time, now) + n / self.rate_bytes_s
            wait = self._bucket_time - now
        if wait > 0:
            time.sleep(wait)

    def _pump(self, source: socket.socket, sink: socket.socket, fault: Fault) -> None:
        offset = 0
        pending = fault if fault.kind != "none" else None
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if pending is not None and offset + len(data) > pending.at_byte:
                    index = pending.at_byte - offset
                    if pending.kind == "corrupt":
                        data = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
                    elif pending.kind == "reset":
                        sink.sendall(data[:index])
                        self._record(pending)
                        _reset(source)
                        _reset(sink)
                        return
                    elif pending.kind == "stall":
                        sink.sendall(data[:index])
                        data = data[index:]
                        time.sleep(pending.stall_s)
                    self._record(pending)
                    pending = None
                offset += len(data)
                if self.latency_s:
                    time.sleep(self.latency_s)
                self._throttle(len(data))
                sink.sendall(data)
        except OSError:
            _reset(source)
            _reset(sink)

    def _record(self, fault: Fault) -> None:
        with self._lock:
            self.faults_done.append(fault)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped link or a crashed peer would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
