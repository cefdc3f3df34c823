"""A streamed part's bytes sent by the kernel, from the file to the socket (``sendfile``).

On a plain TCP connection (an ``http://`` endpoint, no TLS between the client and its
socket) a part larger than the worker's buffer goes from the page cache to the socket without
passing through Python: a worker thread calls ``os.sendfile`` on a duplicate of the
connection's descriptor and comes back to the event loop every :data:`HOP_BYTES` or half a
second (progress, stall detection, a stop). The loop neither reads nor writes those bytes, so
on two cores the kernel's copying runs beside the loop's own work instead of inside it.

Nothing is trusted that was not before: the part's checksum comes from its first pass (the
header form) and S3 checks the bytes it received against it; bytes that changed in between are
refused (``BadDigest``) and the range re-read (``PreparedPart.recheck``). A file that ends
before the part does (it shrank) makes ``sendfile`` return 0: the body's error, the request
cut. Where the connection is TLS, compressed or chunked, or a throttle is set, the part goes in
slices as before (:class:`._body.StreamingBody`).

Why duplicate descriptors: the loop may close the connection (a stop, the other side's
answer) and the caller the file while a thread is in ``sendfile``; their numbers could then
name another connection or file. The duplicates keep that socket and that file, and only
those, until the thread is done with them.
"""

from __future__ import annotations

import errno
import math
import os
import select
import time
from collections.abc import Callable
from typing import Any

import anyio

# Off: every streamed part in slices through aiohttp (and trailers offered on http:// too).
ENABLED = hasattr(os, "sendfile")
# Bytes a thread sends before it comes back to the loop (progress, a stop, the stall watchdog):
# 16 MiB rather than 4: one hop per 8 MiB part, 0.95x the wall time to the null sink
# (benchmarks/README.md, "The kernel sends the parts").
HOP_BYTES = 16 << 20
# How long a thread stays out: it comes back with what it sent by then, even on a slow link
# that takes every byte it is given (the stall watchdog and a stop see progress every half second).
_POLL_MS = 500

_NETWORK_ERRNOS = frozenset(
    {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ETIMEDOUT}
)


# The file's failures; another error is the file's only if the file does not read either.
_FILE_ERRNOS = frozenset({errno.EIO, errno.ENXIO, errno.ENODEV, errno.ESTALE, errno.EOVERFLOW})


class SourceEnded(Exception):
    """The file ended inside the part: it is shorter than when the upload started."""


class SourceUnreadable(Exception):
    """``sendfile`` failed on the file's side (an I/O error), not the connection's."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class Unsupported(SourceUnreadable):
    """The kernel cannot send from this file to this socket (EINVAL, ENOSYS...): slices."""


_UNSUPPORTED_ERRNOS = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ESPIPE})


def plain_socket(writer: Any) -> int | None:
    """The descriptor of the socket under aiohttp's ``writer`` if the body may bypass it: plain
    TCP, no compression, no chunked framing, nothing of ours still buffered."""
    if not ENABLED or getattr(writer, "chunked", False) or getattr(writer, "_compress", None):
        return None
    if not hasattr(writer, "send_headers"):  # an aiohttp older than 3.12: slices
        return None
    transport = getattr(writer, "transport", None)
    if transport is None or transport.is_closing():
        return None
    if any(transport.get_extra_info(tls) is not None for tls in ("sslcontext", "ssl_object")):
        return None
    sock = transport.get_extra_info("socket")
    try:
        fd = sock.fileno() if sock is not None else -1
    except (OSError, ValueError):
        return None
    return fd if fd >= 0 else None


def send_some(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    """Blocking (call it from a thread): send up to ``min(count, HOP_BYTES)`` bytes of the file
    from ``offset`` for at most ``_POLL_MS``; returns what was sent (0: the socket took nothing).
    Raises :class:`SourceEnded`, :class:`SourceUnreadable`, or the connection's ``OSError``."""
    limit = min(count, HOP_BYTES)
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    back_by = time.monotonic() + _POLL_MS / 1000
    done = 0
    while done < limit:
        try:
            n = os.sendfile(sock_fd, file_fd, offset + done, limit - done)
        except BlockingIOError:
            wait_ms = math.ceil((back_by - time.monotonic()) * 1000)
            if wait_ms <= 0 or not poller.poll(wait_ms):
                break
            continue
        except OSError as exc:
            if exc.errno in _NETWORK_ERRNOS:
                raise
            if exc.errno in _UNSUPPORTED_ERRNOS and done == 0:
                raise Unsupported(exc) from exc
            if exc.errno in _FILE_ERRNOS or not _reads(file_fd, offset + done):
                raise SourceUnreadable(exc) from exc
            raise  # the file reads: the connection's (no route to host, network down...)
        if n == 0:
            raise SourceEnded
        done += n
        if time.monotonic() >= back_by:
            break
    return done


def _reads(file_fd: int, offset: int) -> bool:
    """Whether the file gives a byte at ``offset`` (a ``sendfile`` error is then the socket's)."""
    try:
        os.pread(file_fd, 1, offset)
    except OSError:
        return False
    return True


async def wait_flushed(writer: Any) -> None:
    """Until what aiohttp wrote (the request's head) has left the transport's buffer; the
    connection's error if the transport closed meanwhile (a close drops what it buffered)."""
    writer.send_headers()
    transport = writer.transport
    while True:
        if transport is None or transport.is_closing():
            raise ConnectionResetError(errno.ECONNRESET, "connection closed before the body")
        if transport.get_write_buffer_size() == 0:
            return
        await anyio.sleep(0.001)


async def send_range(
    writer: Any,
    sock_fd: int,
    file_fd: int,
    offset: int,
    length: int,
    on_sent: Callable[[int], None],
) -> bool:
    """Send ``length`` bytes of the file from ``offset`` as the request's body; False if the
    kernel cannot send from this file (nothing of the body was sent: slices instead).

    Both descriptors are duplicated before anything waits: the loop may close the connection,
    and the caller the file (a cut send's thread runs on until its hop ends), and a new
    connection or file may then take either number."""
    dups = [os.dup(sock_fd)]
    try:
        dups.append(os.dup(file_fd))
        sock, file = dups
        await wait_flushed(writer)
        done = 0
        while done < length:
            try:
                n = await anyio.to_thread.run_sync(
                    send_some, sock, file, offset + done, length - done
                )
            except Unsupported as exc:
                if done:  # it sent before: a failure of the file, not a lack of support
                    raise SourceUnreadable(exc.error) from exc
                return False
            if n:
                done += n
                writer.output_size += n
                on_sent(n)
            else:
                await anyio.lowlevel.checkpoint()  # a stop lands here while the socket is full
    finally:
        for fd in dups:
            os.close(fd)
    return True
