"""Part payloads handed to aiohttp: async iterables of bounded slices, never whole copies.

aiohttp writes each yielded slice and waits for the socket to drain past a small high-water
mark before asking for the next, so a body holds at most about one slice in the transport.
Each yielded slice is reported through ``on_sent`` (progress, stall detection).

``read``/``seek``/``tell`` exist only because botocore's CRT signer wraps any body without
``seek`` in a ``BytesIO`` (a full copy) and awscrt wants a ``read``; with an unsigned payload
the signer never reads the body, so ``read`` refuses loudly rather than consume it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from . import _sendfile
from ._checksums import ChecksumAlgorithm, b64
from ._trailer import encoded_length, trailer_name

# 256 KiB: peak RSS -10 MiB at c=8 against 1 MiB, same CPU (benchmarks/README.md)
SLICE_BYTES = 256 << 10


Throttle = Callable[[int], Awaitable[None]]
# ``make_body(on_sent, throttle)``: a fresh body for one attempt.
BodyFactory = Callable[[Callable[[int], None], Throttle | None], Any]


@dataclass(frozen=True, slots=True)
class PreparedPart:
    """A part ready to send: its checksum, and how to make its body for each attempt."""

    number: int
    size: int
    # base64, sent in the request headers so S3 verifies the bytes; None: computed as the body
    # streams and sent as its trailer (a TrailerBody's ``digest``; see ._trailer)
    checksum: str | None
    make_body: BodyFactory
    # For bodies read again on every attempt: after S3 saw other bytes than ``checksum``,
    # raises SourceChanged if the source itself now gives other bytes (retrying cannot help).
    recheck: Callable[[], Awaitable[None]] | None = None
    # Gives back what holds the part's bytes once it is recorded (a stream's memory budget).
    release: Callable[[], Awaitable[None]] | None = None
    # Raw MD5 of the part, when the session asked for it (PartVerifier.needs_md5): sent as
    # Content-MD5 and compared with the ETag where the endpoint does not echo checksums.
    md5: bytes | None = None
    # A trailed part (checksum None), once the endpoint refused trailers: the same part in the
    # header form, checksummed in a first pass.
    header_form: Callable[[], Awaitable[PreparedPart]] | None = None


class Readable(Protocol):
    """The file a streamed part is read from (:class:`._source.SourceFile`): by a thread, or
    from the page cache on the loop; or sent by the kernel (:mod:`._sendfile`) from its
    descriptor, with the errors :meth:`read_into` would raise for the same failures."""

    def read_into(self, buffer: memoryview, offset: int) -> None: ...

    def read_cached(self, buffer: memoryview, offset: int) -> int: ...

    def fileno(self) -> int: ...

    def shrunk(self) -> Exception: ...

    def unreadable(self, error: OSError) -> Exception: ...


async def read_slice(source: Readable, view: memoryview, offset: int) -> None:
    """Fill ``view`` from the page cache on the loop if it is there, else in a worker thread.

    A part streamed right after it was hashed is in the page cache: a non-blocking read
    (``SourceFile.read_cached``) then saves the hop to a thread and back for every slice
    (measured: 0.83x the client's CPU per GiB at c=8, 8 MiB parts; benchmarks/README.md).
    """
    cached = source.read_cached(view, offset)
    if cached < len(view):
        await anyio.to_thread.run_sync(source.read_into, view[cached:], offset + cached)


async def _unthrottled(n_bytes: int) -> None:
    return None


class _Body:
    def __init__(
        self, length: int, on_sent: Callable[[int], None], throttle: Throttle | None = None
    ) -> None:
        self._length = length
        self._on_sent = on_sent
        self._throttle = throttle or _unthrottled
        # A failure of the body itself (the file shrank, a read error). aiohttp reports any
        # body exception as a connection error; the sender re-raises this one instead.
        self.error: BaseException | None = None
        # The socket of the connection it is written to, once aiohttp writes it: how much of
        # it the peer has not acknowledged yet is the stall watchdog's to read (._stall).
        self.sock: Any = None

    def connected(self, writer: Any) -> None:
        """aiohttp is about to write the body through ``writer``: note its socket."""
        transport = getattr(writer, "transport", None)
        self.sock = transport.get_extra_info("socket") if transport is not None else None

    def __len__(self) -> int:
        return self._length

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        raise RuntimeError("part bodies are async iterables; nothing may read them synchronously")

    def __bool__(self) -> bool:
        # botocore treats a falsy body as "no body"; an empty part is still a body.
        return True


class BufferedBody(_Body):
    """A part already read into memory (it fit the worker's buffer): slices of that buffer.

    The buffer is not refilled until S3 has answered, by which time the transport has sent
    (and dropped its references to) every slice.
    """

    def __init__(
        self, view: memoryview, on_sent: Callable[[int], None], throttle: Throttle | None = None
    ) -> None:
        super().__init__(len(view), on_sent, throttle)
        self._view = view

    async def __aiter__(self) -> AsyncIterator[memoryview]:
        for start in range(0, len(self._view), SLICE_BYTES):
            piece = self._view[start : start + SLICE_BYTES]
            await self._throttle(len(piece))
            yield piece
            self._on_sent(len(piece))


class StreamingBody(_Body):
    """A part larger than the worker's buffer, read from the file slice by slice as it is sent.

    Each slice is a fresh buffer (the transport may still hold the previous one), so peak
    memory per body is about two slices whatever the part size.
    """

    def __init__(
        self,
        source: Readable,
        offset: int,
        length: int,
        on_sent: Callable[[int], None],
        throttle: Throttle | None = None,
    ) -> None:
        super().__init__(length, on_sent, throttle)
        self._source = source
        self._offset = offset

    async def __aiter__(self) -> AsyncIterator[bytearray]:
        end = self._offset + self._length
        offset = self._offset
        while offset < end:
            size = min(SLICE_BYTES, end - offset)
            # A fresh buffer per slice (the transport may still hold the previous one),
            # allocated here rather than in the worker thread so that freed slices return to
            # one malloc arena instead of fragmenting one per thread.
            piece = bytearray(size)
            try:
                await read_slice(self._source, memoryview(piece), offset)
            except Exception as exc:
                self.error = exc
                raise
            await self._throttle(size)
            yield piece
            self._on_sent(size)
            offset += size

    async def send_to(self, writer: Any) -> bool:
        """Send the part by the kernel, from the file to the socket (:mod:`._sendfile`), if the
        connection allows; False (nothing written) if it does not: slices, as ``__aiter__``."""
        if self._throttle is not _unthrottled:
            return False
        sock_fd = _sendfile.plain_socket(writer)
        if sock_fd is None:
            return False
        try:
            return await _sendfile.send_range(
                writer, sock_fd, self._source.fileno(), self._offset, self._length, self._on_sent
            )
        except _sendfile.SourceEnded:
            self.error = self._source.shrunk()
            raise self.error from None
        except _sendfile.SourceUnreadable as exc:
            self.error = self._source.unreadable(exc.error)
            raise self.error from None


@functools.cache
def register_payload() -> None:
    """Have aiohttp write a :class:`StreamingBody` through :meth:`StreamingBody.send_to`
    first, and tell every body the socket it is written to (once; aiohttp is imported here,
    where a client is made, not at import)."""
    from aiohttp.payload import PAYLOAD_REGISTRY, AsyncIterablePayload

    class BodyPayload(AsyncIterablePayload):
        async def write_with_length(self, writer: Any, content_length: int | None) -> None:
            body = self._value
            assert isinstance(body, _Body)
            body.connected(writer)
            await super().write_with_length(writer, content_length)

    class StreamingPayload(AsyncIterablePayload):
        async def write_with_length(self, writer: Any, content_length: int | None) -> None:
            body = self._value
            assert isinstance(body, StreamingBody)
            body.connected(writer)
            # Consumed before a byte goes, as the slices are: aiohttp would otherwise replay a
            # body cut by a reset itself, its bytes counted twice (the sender retries it).
            self._consumed = True
            if not await body.send_to(writer):
                await super().write_with_length(writer, content_length)

    PAYLOAD_REGISTRY.register(StreamingPayload, StreamingBody)
    # (by exact type first; any other body, as the bench's, by isinstance)
    PAYLOAD_REGISTRY.register(BodyPayload, (BufferedBody, TrailerBody, _Body))


class TrailerBody(_Body):
    """A part streamed from the file and checksummed as it goes: ``aws-chunked``, one chunk per
    slice, the checksum last as a trailer (:mod:`._trailer`). Each byte is read once.

    Each chunk is framed in its own fresh buffer (``<hex size>\\r\\n`` + slice + ``\\r\\n``), read
    into in place: one write per slice, as :class:`StreamingBody`. ``settle(digest)`` is called
    with the digest of all the bytes read, before the trailer is sent: it raises (and the
    request is cut) if an earlier attempt read other bytes. The digest is ``digest`` after.
    """

    def __init__(
        self,
        source: Readable,
        offset: int,
        length: int,
        algorithm: ChecksumAlgorithm,
        settle: Callable[[bytes], None],
        on_sent: Callable[[int], None],
        throttle: Throttle | None = None,
    ) -> None:
        super().__init__(encoded_length(length, SLICE_BYTES, algorithm), on_sent, throttle)
        self._source = source
        self._offset = offset
        self._algorithm = algorithm
        self._settle = settle
        self.decoded_length = length
        self.trailer_name = trailer_name(algorithm)
        self.digest: bytes | None = None

    async def __aiter__(self) -> AsyncIterator[bytearray | bytes]:
        hasher = self._algorithm.new()
        end = self._offset + self.decoded_length
        offset = self._offset
        while offset < end:
            size = min(SLICE_BYTES, end - offset)
            head = b"%x\r\n" % size
            piece = bytearray(len(head) + size + 2)
            piece[: len(head)] = head
            piece[-2:] = b"\r\n"
            with memoryview(piece)[len(head) : len(head) + size] as data:
                try:
                    await read_slice(self._source, data, offset)
                except Exception as exc:
                    self.error = exc  # the body's own failure; not the throttle's or on_sent's
                    raise
                hasher.update(data)
            await self._throttle(size)
            yield piece
            self._on_sent(size)
            offset += size
        digest = hasher.digest()
        try:
            self._settle(digest)
        except Exception as exc:
            self.error = exc
            raise
        self.digest = digest
        yield b"0\r\n%s:%s\r\n\r\n" % (self.trailer_name.encode(), b64(digest).encode())
