"""The local file being uploaded: validated once, read by offset from worker threads.

Reads use ``os.preadv`` into caller-owned buffers (no intermediate copies) so that threads
never share a file position. The identity of the file (size, mtime) is what resume checks.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ._checksums import ChecksumAlgorithm
from ._errors import ResumableError, SourceChanged, SourceFileError


@dataclass(frozen=True, slots=True)
class FileIdentity:
    path: Path
    size: int
    mtime_ns: int


def inspect_file(path: Path) -> FileIdentity:
    """Resolve and check the file to upload; one clear error for anything unusable."""
    try:
        absolute = path.expanduser().resolve(strict=True)
        st = os.stat(absolute)
    except FileNotFoundError:
        raise SourceFileError(f"file to upload {path} does not exist") from None
    except PermissionError:
        raise SourceFileError(
            f"file to upload {path} is not accessible (permission denied)"
        ) from None
    except OSError as exc:
        raise SourceFileError(f"cannot read file to upload {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SourceFileError(f"{path} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise SourceFileError(
            f"{path} is not a regular file (a FIFO, socket or device cannot be resumed: "
            "its bytes cannot be read again)"
        )
    return FileIdentity(absolute, st.st_size, st.st_mtime_ns)


class SourceFile:
    """An open file to upload. ``read_into``/``hash_range`` block: call them from a thread."""

    def __init__(self, identity: FileIdentity) -> None:
        self.identity = identity
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

    def check_unchanged(self) -> None:
        st = os.fstat(self._fd)
        if st.st_size != self.identity.size or st.st_mtime_ns != self.identity.mtime_ns:
            raise SourceChanged(
                f"{self.identity.path} changed while it was being uploaded "
                f"(size {self.identity.size} -> {st.st_size})",
                hint="the upload was not completed; abort it and start again",
            )

    def read_into(self, buffer: memoryview, offset: int) -> None:
        """Fill ``buffer`` exactly from ``offset``; a short read means the file shrank."""
        done = 0
        while done < len(buffer):
            try:
                n = os.preadv(self._fd, [buffer[done:]], offset + done)
            except OSError as exc:
                raise ResumableError(
                    f"cannot read {self.identity.path}: {exc.strerror or exc}",
                    hint="the upload is intact; fix the file's storage, then resume",
                ) from exc
            if n == 0:
                raise SourceChanged(
                    f"{self.identity.path} is shorter than when the upload started",
                    hint="abort the upload and start again",
                )
            done += n

    def read_and_hash(self, buffer: memoryview, offset: int, algorithm: ChecksumAlgorithm) -> bytes:
        self.read_into(buffer, offset)
        return algorithm.of(buffer)

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
