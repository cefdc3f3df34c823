"""The local file being uploaded: validated once, read by offset from worker threads.

Reads use ``os.preadv`` into caller-owned buffers (no intermediate copies) so that threads
never share a file position.

A file's identity is its size, modification time, change time, inode and device. The change
time (ctime) is what makes it hard to fool: every write and every ``utime`` moves it, and no
ordinary tool can put it back, so a file edited with its mtime restored (rsync -t, tar, backup
restores) still shows as changed. Resume re-reads what an identity change puts in doubt.

A block device (a disk, an LVM snapshot, a zvol) is uploaded like a file, but its node's times
do not move when its bytes do: nothing but its bytes can vouch for it, so every resume re-reads
the parts already sent (``FileIdentity.block_device``). It must not change while it is read
(upload a snapshot): writes to it cannot be seen during the upload.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path

import anyio

from ._body import BufferedBody, PreparedPart, StreamingBody, TrailerBody
from ._checksums import ChecksumAlgorithm, b64, unb64
from ._errors import ResumableError, SourceChanged, SourceFileError, UsageError
from ._journal import SourceRecord

_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)


# FileIdentity's fields from ``size`` to ``device``, in words (``path`` is compared as text).
_IN_WORDS = ("size", "modification time", "change time", "inode", "device")


@dataclass(frozen=True, slots=True)
class FileIdentity:
    path: Path
    size: int
    mtime_ns: int
    ctime_ns: int | None = None  # None: not recorded (state files of persevere <= 0.1)
    inode: int | None = None
    device: int | None = None
    # Not recorded: a block device's times do not date its bytes (see the module docstring)
    block_device: bool = field(default=False, compare=False)
    # Not recorded: the path as given, its links not resolved (``path`` is resolved). The
    # file must still be what it names at completion: a link swapped mid-run (``ln -sfn``, a
    # ``latest`` rotation) names another file, as a rename over it does.
    given: Path | None = field(default=None, compare=False)

    @classmethod
    def of(cls, path: Path, st: os.stat_result, fd: int | None = None) -> FileIdentity:
        """The identity in ``st``; a block device's size is asked of it (``fd`` if open)."""
        size, block = st.st_size, stat.S_ISBLK(st.st_mode)
        if block:
            size = _device_size(path) if fd is None else os.lseek(fd, 0, os.SEEK_END)
        return cls(path, size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, block)

    @classmethod
    def of_record(cls, record: SourceRecord) -> FileIdentity:
        """The identity a journal recorded (:meth:`as_record` read back): its fields are these,
        in this order, the path as a string."""
        return cls(Path(record.file_path), *astuple(record)[1:])

    def as_record(self) -> SourceRecord:
        """This identity as the journal records it (``block_device`` is not recorded)."""
        return SourceRecord(str(self.path), *astuple(self)[1:6])

    def differences(self, recorded: FileIdentity) -> list[str]:
        """What differs from ``recorded``, in words; an unrecorded field counts as different."""
        pairs = zip(_IN_WORDS, astuple(self)[1:6], astuple(recorded)[1:6], strict=True)
        differ = [words for words, now, then in pairs if now != then]
        if str(self.path) != str(recorded.path):
            differ.append("path")
        return differ


def _other_size(message: str) -> SourceChanged:
    """The file has another size now: the parts sent cannot make it, so no resume can (a
    SourceChanged's next step is an abort)."""
    return SourceChanged(
        message,
        hint="abort the upload and start again once the file is final (persevere cp, run "
        "again, does both)",
    )


def _device_size(path: Path) -> int:
    with open(path, "rb", buffering=0) as device:
        return device.seek(0, os.SEEK_END)


def is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def inspect_file(path: Path, role: str = "file to upload") -> FileIdentity:
    """Resolve and check the file to upload (or ``role``: what the file is to the caller, as
    its messages name it); one clear error for anything unusable.

    The one place a path the user gave becomes a source (start, cp, resume, shards, verify,
    --dry-run). ``os.stat`` comes first, following the links: it answers a symbolic-link
    loop, a name too long, a file used as a directory or a search permission refused with
    an ``OSError``, said in one line here (``Path.resolve`` raises RuntimeError on a loop).
    """
    try:
        expanded = path.expanduser()
        st = os.stat(expanded)
        absolute = Path(os.path.realpath(expanded))
        if stat.S_ISBLK(st.st_mode):
            return FileIdentity.of(absolute, st)
    except FileNotFoundError:
        raise SourceFileError(f"{role} {path} does not exist") from None
    except PermissionError:
        raise SourceFileError(f"{role} {path} is not accessible (permission denied)") from None
    except OSError as exc:
        raise SourceFileError(f"cannot read {role} {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SourceFileError(f"{path} is a directory, not a file")
    # How to upload it once, as a stream (not said to verify, which cannot take one)
    as_stream = role == "file to upload"
    if not stat.S_ISREG(st.st_mode):
        how = f"; to upload it once, as a stream: persevere cp - s3://BUCKET/KEY < {path}"
        if os.path.samestat(st, os.stat(os.devnull)):  # (it gives nothing: refused as stdin)
            how = "; an empty object: true | persevere cp - s3://BUCKET/KEY"
        raise SourceFileError(
            f"{path} is not a regular file or a block device (a FIFO, socket or character "
            f"device gives its bytes once: they cannot be read again){how if as_stream else ''}"
        )
    if not size_is_true(absolute, st.st_size):
        how = f"; to upload it as a stream: cat {path} | persevere cp - s3://BUCKET/KEY"
        raise SourceFileError(
            f"{path} does not give the {st.st_size:,} bytes its size says (a /proc or /sys "
            f"file: its length is known only once read){how if as_stream else ''}"
        )
    return replace(FileIdentity.of(absolute, st), given=expanded.absolute())  # (".." kept)


_PSEUDO_MAX = 64 * 1024  # /proc and /sys files say 0 or one page; a file this small is read


def check_expected_size(identity: FileIdentity, expected_size: int | None) -> None:
    """A size promised for a file (``--expected-size``, meant for streams) must be its size:
    a promise that does not hold is refused, never ignored."""
    if expected_size is not None and expected_size != identity.size:
        raise UsageError(
            f"--expected-size {expected_size:,} bytes, but {identity.path} has "
            f"{identity.size:,} bytes",
            hint="a file's size is known: give its size, or leave --expected-size out",
            param="expected_size",
        )


def size_is_true(path: Path, size: int) -> bool:
    """Does a small regular file give as many bytes as its size says? /proc and /sys files
    say 0 (or 4,096) and give something else; larger files are taken at their word."""
    if size > _PSEUDO_MAX:
        return True
    try:
        with open(path, "rb") as f:  # buffered: its read(n) reads until n bytes or the end
            return len(f.read(size + 1)) == size
    except OSError:
        return True  # the upload's own open says why


@dataclass(frozen=True, slots=True)
class PartSpec:
    """A part of a planned source to prepare: where it lies, and how it is checksummed."""

    number: int
    offset: int
    size: int
    algorithm: ChecksumAlgorithm
    with_md5: bool = False  # Content-MD5 mode: the verifier needs the part's MD5 too
    # The endpoint may take the checksum as a trailer (._trailer): a part larger than the
    # buffer is then read once, as it is sent
    trailer: bool = False


class SourceFile:
    """An open file to upload. ``read_into``/``hash_range`` block: call them from a thread.

    As the sender's part source, a part that fits the worker's buffer is read once into it and
    sent from it; a larger one is streamed in 256 KiB slices, about two of which are alive per
    worker, so memory stays flat from 5 MiB to 5 GiB parts. Where the endpoint takes the
    checksum as a trailer (:mod:`._trailer`) it is computed as the part streams: each byte is
    read once. Otherwise S3 needs it in the request headers, before the body: the part is
    checksummed in a first pass through the buffer, and its bytes read again (from the page
    cache) as it is sent.
    """

    def __init__(self, identity: FileIdentity) -> None:
        self.identity = identity
        self._nowait = _RWF_NOWAIT != 0
        try:
            self._fd = os.open(identity.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise SourceFileError(f"cannot open {identity.path}: {exc.strerror}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def prepare(self, part: PartSpec, buffer: memoryview) -> PreparedPart:
        if part.size > len(buffer) and part.trailer:
            return self._trailed(part, buffer)
        return await self._checksummed(part, buffer)

    async def _checksummed(self, part: PartSpec, buffer: memoryview) -> PreparedPart:
        """Checksummed in a pass through the buffer: a part that fits is then in it, and sent
        from it; a larger one is read again as it is sent."""
        offset, size, algorithm = part.offset, part.size, part.algorithm
        view = buffer[:size]
        digest, md5_hex = await anyio.to_thread.run_sync(
            self.hash_range, offset, size, view, algorithm, part.with_md5
        )
        md5 = bytes.fromhex(md5_hex) if md5_hex is not None else None
        checksum = b64(digest)
        if size <= len(buffer):
            body = functools.partial(BufferedBody, view)  # the part is in it: sent from there
            return PreparedPart(part.number, size, checksum, body, md5=md5)
        make_body = functools.partial(StreamingBody, self, offset, size)
        return PreparedPart(
            part.number, size, checksum, make_body,
            recheck=lambda: self.still_reads(offset, size, checksum, algorithm), md5=md5,
        )  # fmt: skip

    def _trailed(self, part: PartSpec, buffer: memoryview) -> PreparedPart:
        """Read once as it is sent, its checksum computed on the way and sent last (a trailer,
        :mod:`._trailer`). The first attempt that reads the whole part fixes its digest; a
        later one (or the header form, if the endpoint refuses trailers) that reads other
        bytes means the file changed under the upload."""
        offset, size, algorithm = part.offset, part.size, part.algorithm
        first: list[bytes] = []

        def settle(digest: bytes) -> None:
            if not first:
                first.append(digest)
            elif digest != first[0]:
                raise self._range_changed(offset, size)

        make_body = functools.partial(TrailerBody, self, offset, size, algorithm, settle)

        async def header_form() -> PreparedPart:
            prepared = await self._checksummed(part, buffer)
            assert prepared.checksum is not None
            settle(unb64(prepared.checksum))
            return prepared

        return PreparedPart(part.number, size, None, make_body, header_form=header_form)

    def check_unchanged(self) -> None:
        """Before completing: the file must be as it was when its parts were read, and still
        the file its path names (an editor's save or a log rotation puts another file there,
        by a rename: the object would be the file no longer named, not the one given)."""
        now = FileIdentity.of(self.identity.path, os.fstat(self._fd), self._fd)
        try:
            named = os.stat(self.identity.given or self.identity.path)
        except OSError:
            raise self._changed("nothing is at its path now: it was moved or deleted") from None
        if (named.st_dev, named.st_ino) != (now.device, now.inode):
            given = self.identity.given
            target = os.path.realpath(given) if given is not None else str(self.identity.path)
            if target == str(self.identity.path):
                raise self._changed("its path names another file now: it was replaced, as an "
                                    "editor's save or a rotation does")  # fmt: skip
            # A link on the path given names another file now (``ln -sfn``): the upload's
            # file, the one the journal records, did not change; resuming completes it
            swapped = self._changed(f"{given} names another file now, {target}: a symbolic "
                                    "link on its path was changed")  # fmt: skip
            swapped.hint = (
                f"to upload what {given} names now, run persevere cp with it (it starts again); "
                f"persevere upload resume completes {self.identity.path}, the file it started from"
            )
            swapped.next_step = None
            raise swapped
        if now.size != self.identity.size:
            raise _other_size(
                f"{self.identity.path} changed size while it was being uploaded "
                f"({self.identity.size:,} -> {now.size:,} bytes); the upload was not completed"
            )
        if differ := now.differences(self.identity):
            raise self._changed(", ".join(differ))

    async def still_reads(
        self, offset: int, size: int, checksum: str, algorithm: ChecksumAlgorithm
    ) -> None:
        """S3 saw other bytes than the checksum promised: was it the network, or the file?

        Re-hashes the range; if the file now gives another checksum, it changed under the
        upload and sending it again cannot help.
        """
        scratch = memoryview(bytearray(min(size, 8 << 20) or 1))
        digest, _ = await anyio.to_thread.run_sync(
            self.hash_range, offset, size, scratch, algorithm
        )
        if b64(digest) != checksum:
            raise self._range_changed(offset, size)

    def _range_changed(self, offset: int, size: int) -> SourceChanged:
        return self._changed(
            f"the bytes at {offset:,}..{offset + size - 1:,} differ from a moment ago"
        )

    def _changed(self, what: str) -> SourceChanged:
        """The file changed under the upload: resumable (the parts are re-read) once it is
        final."""
        changed = SourceChanged(
            f"{self.identity.path} changed while it was being uploaded ({what}); the upload "
            "was not completed",
            hint="when the file is final, resume: it re-reads the parts already sent and "
            "sends again those that changed",
        )
        changed.next_step = "resume"
        return changed

    def fileno(self) -> int:
        """The open file's descriptor: the kernel sends parts from it (._sendfile)."""
        return self._fd

    def shrunk(self) -> SourceChanged:
        return _other_size(f"{self.identity.path} is shorter than when the upload started")

    def unreadable(self, error: OSError) -> ResumableError:
        return ResumableError(
            f"cannot read {self.identity.path}: {error.strerror or error}",
            hint="the upload is intact; fix the file's storage, then resume",
        )

    def read_into(self, buffer: memoryview, offset: int) -> None:
        """Fill ``buffer`` exactly from ``offset``; a short read means the file shrank."""
        done = 0
        while done < len(buffer):
            try:
                n = os.preadv(self._fd, [buffer[done:]], offset + done)
            except OSError as exc:
                raise self.unreadable(exc) from exc
            if n == 0:
                raise self.shrunk()
            done += n

    def read_cached(self, buffer: memoryview, offset: int) -> int:
        """Fill ``buffer`` from ``offset`` as far as the page cache allows, without blocking.

        ``preadv2`` with ``RWF_NOWAIT`` copies only what is already cached and never waits for
        the disk (it fails with EAGAIN instead), so the event loop may call it. Returns the
        bytes read: short when part of the range is not cached or at the end of the file (the
        caller reads the rest with :meth:`read_into` from a thread, which reports a shrunk
        file); 0 where the kernel or filesystem does not support the flag, after which it is
        not tried again.
        """
        if not self._nowait or self._fd < 0:
            return 0
        done = 0
        while done < len(buffer):
            try:
                n = os.preadv(self._fd, [buffer[done:]], offset + done, _RWF_NOWAIT)
            except BlockingIOError:
                break
            except OSError:  # EOPNOTSUPP, EINVAL: no non-blocking reads here
                self._nowait = False
                break
            if n == 0:
                break
            done += n
        return done

    def hash_range(
        self,
        offset: int,
        length: int,
        scratch: memoryview,
        algorithm: ChecksumAlgorithm,
        with_md5: bool = False,
        on_read: Callable[[int], None] | None = None,
    ) -> tuple[bytes, str | None]:
        """Checksum (and optionally MD5 hex) of a range, streamed through ``scratch``;
        ``on_read(n)`` after each chunk (progress)."""
        hasher = algorithm.new()
        md5 = hashlib.md5() if with_md5 else None
        for view in self.iter_range(offset, length, scratch):
            hasher.update(view)
            if md5 is not None:
                md5.update(view)
            if on_read is not None:
                on_read(len(view))
        return hasher.digest(), (md5.hexdigest() if md5 is not None else None)

    def iter_range(self, offset: int, length: int, scratch: memoryview) -> Iterator[memoryview]:
        end = offset + length
        while offset < end:
            view = scratch[: min(len(scratch), end - offset)]
            self.read_into(view, offset)
            yield view
            offset += len(view)
