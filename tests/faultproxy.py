"""A fault-injecting TCP proxy for the tests: real bytes, real sockets, chosen faults.

Sits between the client and the S3 server on loopback. Each accepted connection asks
``plan(n)`` (n counts connections from 0) for a :class:`Fault` applied to the client-to-server
direction at a byte offset of that connection's stream: flip one bit (the part's checksum no
longer matches: S3 answers BadDigest), reset the connection (RST), stall (stop forwarding for
a while), or hold (stop forwarding until the test releases a :class:`tests.proxybase.Hold`).
Latency and a shared bandwidth cap apply to every connection.

Built on :class:`tests.proxybase.LoopbackProxy`; one thread per direction per connection.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.proxybase import CHUNK, Hold, LoopbackProxy

__all__ = ["NO_FAULT", "Fault", "FaultProxy", "Hold"]


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # "corrupt", "reset", "stall", "hold" or "none"
    at_byte: int = 0  # offset in the client-to-server stream of the connection
    stall_s: float = 0.0
    hold: Hold | None = None  # kind "hold": forwarding goes on once it is released


NO_FAULT = Fault("none")


class FaultProxy(LoopbackProxy):
    def __init__(
        self,
        upstream: tuple[str, int],
        plan: Callable[[int], Fault] = lambda n: NO_FAULT,
        latency_s: float = 0.0,
        rate_bytes_s: float | None = None,
        repeat: bool = False,
    ) -> None:
        """``repeat``: after a corrupt or stall fault, ask ``plan`` again for the next one on
        the same connection (its ``at_byte`` then counts from where the last one struck)."""
        super().__init__(upstream)
        self.plan = plan
        self.latency_s = latency_s
        self.rate_bytes_s = rate_bytes_s
        self.repeat = repeat
        self.connections = 0
        self.faults_done: list[Fault] = []
        self._bucket_time = time.monotonic()
        if rate_bytes_s is not None:
            # A capped link's sender sees its bytes acknowledged a few at a time, as over a
            # real link (packets of 1.4 KiB); loopback's 64 KiB segments would let a window
            # open only every 64 KiB read, making each connection's bytes move in bursts.
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            number = self.connections
            self.connections += 1
        fault = self.plan(number)
        if fault.hold is not None:
            self.hold(fault.hold)
        try:
            server = self._connect()
        except OSError:
            return
        try:
            answers = threading.Thread(
                target=self._forward, args=(server, client, NO_FAULT, number), daemon=True
            )
            answers.start()
            self._forward(client, server, fault, number)
            answers.join()
        finally:
            self._untrack(server)

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

    def _forward(
        self, source: socket.socket, sink: socket.socket, fault: Fault, number: int
    ) -> None:
        offset = 0  # bytes of this direction's stream received so far
        pending = fault if fault.kind != "none" else None
        # A capped link moves each connection's bytes a little at a time (packets, shared
        # fairly), not a 64 KiB burst per connection in turn: 20 ms of the rate at a time.
        chunk = (
            CHUNK
            if self.rate_bytes_s is None
            else int(min(CHUNK, max(1024, self.rate_bytes_s / 50)))
        )
        try:
            while True:
                data = source.recv(chunk)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                start = offset
                offset += len(data)
                while pending is not None and start <= pending.at_byte < offset:
                    index = pending.at_byte - start
                    if pending.kind == "reset":
                        sink.sendall(data[:index])
                        self._record(pending)
                        _reset(source)
                        _reset(sink)
                        return
                    if pending.kind == "corrupt":
                        data = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
                    elif pending.kind in ("stall", "hold"):
                        sink.sendall(data[:index])
                        data, start = data[index:], pending.at_byte
                        if pending.hold is not None:
                            pending.hold.block()
                        else:
                            self._pause(pending.stall_s)
                        if self._closed:
                            raise OSError("the proxy closed")
                    self._record(pending)
                    pending = self._next_fault(number, pending.at_byte + 1)
                if self.latency_s:
                    time.sleep(self.latency_s)
                self._throttle(len(data))
                sink.sendall(data)
        except OSError:
            _reset(source)
            _reset(sink)

    def _next_fault(self, number: int, from_byte: int) -> Fault | None:
        if not self.repeat:
            return None
        following = self.plan(number)
        if following.kind == "none":
            return None
        return Fault(following.kind, from_byte + following.at_byte, following.stall_s)

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
