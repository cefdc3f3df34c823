"""A TCP proxy that makes loopback look like a long-haul link: latency plus a shared bottleneck.

Each direction of the link has:

- a **bottleneck** of ``rate`` bytes/s shared by every connection (a FIFO virtual clock: each
  chunk reserves ``len / rate`` seconds of the wire after the previous reservation, with a small
  burst allowance), and
- a **propagation delay** applied per chunk: the chunk is timestamped when it leaves the
  bottleneck and forwarded when ``delay`` has passed. Chunks wait in a per-connection delay
  queue, so many chunks are in flight at once and throughput is not one chunk per round trip.

A new connection waits one round trip (2 x delay) before any byte moves, as a TCP handshake
would. The queues are bounded, so a slow receiver pushes back on the sender through TCP.

What it does not emulate: TCP's congestion window (the client's TCP talks to the proxy over
loopback), loss, or jitter. Run it as its own process so its CPU is not the client's:

    python -m benchmarks.linkproxy --target 127.0.0.1:8333 --delay-ms 25 --rate-mbps 40

It prints ``listening HOST PORT`` once ready and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHUNK_BYTES = 64 * 1024
QUEUE_CHUNKS = 256  # per connection and direction: 16 MiB at most waiting in the delay line
BURST_S = 0.002  # bottleneck credit an idle link may accumulate


class Bottleneck:
    """One direction's wire: bytes leave at ``rate_bps``, first come first served."""

    def __init__(self, rate_bps: float) -> None:
        self._rate_bps = rate_bps
        self._next_free = 0.0
        self.bytes_total = 0

    async def transmit(self, nbytes: int) -> float:
        """Wait until ``nbytes`` have crossed the wire; return the time they finished."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(self._next_free, now - BURST_S)
        self._next_free = start + nbytes / self._rate_bps
        self.bytes_total += nbytes
        if self._next_free > now:
            await asyncio.sleep(self._next_free - now)
        return self._next_free


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    wire: Bottleneck,
    delay_s: float,
) -> None:
    """Copy one direction: read -> bottleneck -> delay line -> write."""
    loop = asyncio.get_running_loop()
    line: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

    async def ingress() -> None:
        try:
            while chunk := await reader.read(CHUNK_BYTES):
                left_wire_at = await wire.transmit(len(chunk))
                await line.put((left_wire_at + delay_s, chunk))
        finally:
            await line.put(None)

    async def egress() -> None:
        while (item := await line.get()) is not None:
            due, chunk = item
            wait_s = due - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async with asyncio.TaskGroup() as group:
        group.create_task(ingress())
        group.create_task(egress())


@dataclasses.dataclass
class Link:
    target_host: str
    target_port: int
    delay_s: float
    up: Bottleneck
    down: Bottleneck
    connections: int = 0

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        server_w: asyncio.StreamWriter | None = None
        try:
            server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
            await asyncio.sleep(2 * self.delay_s)  # the handshake's round trip
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(client_r, server_w, self.up, self.delay_s))
                group.create_task(_pump(server_r, client_w, self.down, self.delay_s))
        except* OSError:
            pass  # one side hung up; the client sees the reset, as on a real link
        finally:
            for w in (client_w, server_w):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()


async def serve(args: argparse.Namespace) -> None:
    host, port = args.target.rsplit(":", 1)
    rate_bps = args.rate_mbps * 1e6
    link = Link(host, int(port), args.delay_ms / 1000, Bottleneck(rate_bps), Bottleneck(rate_bps))
    server = await asyncio.start_server(link.handle, args.host, args.port)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"listening {bound_host} {bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
    print(
        f"linkproxy: {link.connections} connections, {link.up.bytes_total} bytes up, "
        f"{link.down.bytes_total} bytes down",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.linkproxy", description=__doc__)
    parser.add_argument("--target", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay")
    parser.add_argument("--rate-mbps", type=float, default=40.0, help="cap per direction, MB/s")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


class LinkProxy:
    """The proxy as a child process, for the harness: ``with LinkProxy(...) as url: ...``."""

    def __init__(self, target_url: str, delay_ms: float, rate_mbps: float, log_path: Path):
        self._target = target_url.removeprefix("http://").rstrip("/")
        self._delay_ms = delay_ms
        self._rate_mbps = rate_mbps
        self._log_path = log_path
        self._process: subprocess.Popen[str] | None = None
        self.endpoint_url = ""

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> LinkProxy:
        argv = [
            sys.executable,
            "-m",
            "benchmarks.linkproxy",
            "--target",
            self._target,
            "--delay-ms",
            str(self._delay_ms),
            "--rate-mbps",
            str(self._rate_mbps),
        ]
        repo_root = Path(__file__).resolve().parent.parent
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, cwd=repo_root, stdout=subprocess.PIPE, stderr=log, text=True
            )
        assert self._process.stdout is not None
        deadline = time.monotonic() + 20
        line = self._process.stdout.readline()
        if not line.startswith("listening ") or time.monotonic() > deadline:
            self.__exit__()
            raise RuntimeError(f"link proxy did not start; see {self._log_path}")
        _, host, port = line.split()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
