"""One upload as the user asked for it: a :class:`Request`, built once from the CLI's flags or
the API's keywords, and the :class:`Source` it reads, resolved once (:func:`resolve_source`,
the one place a path is compared with ``"-"``, standard input; the journal spells a stream
the same way, :attr:`._journal.Header.stream`).

The request refuses what cannot work before anything is read or sent (:meth:`Request.check`),
makes the journal's first line (:meth:`Request.new_header`), and says what it asks that an
upload already recorded was not made with (:meth:`Request.conflicts_with`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from ._checksums import ChecksumAlgorithm, checksum_type, get_algorithm
from ._errors import UsageError
from ._journal import (
    Header,
    JournalState,
    SourceRecord,
    followed,
    require_regular,
)
from ._object_options import check_object_options, differing
from ._options import UploadOptions
from ._plan import MAX_PARTS, PartPlan, StreamSchedule, make_plan
from ._s3 import Endpoint
from ._source import FileIdentity, check_expected_size, inspect_file, size_is_true
from ._urls import check_destination
from ._version import __version__

STDIN = "-"
Layout = PartPlan | StreamSchedule  # a new upload's parts: a file's plan, a stream's schedule


def now() -> str:
    """The time a journal line records."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def algorithm_of(checksum: str | None) -> ChecksumAlgorithm:
    """The checksum asked for (None: CRC64NVME), refused as a usage error if unknown."""
    if checksum is not None and not isinstance(checksum, str):  # (the API's: 5, not "CRC32")
        raise UsageError(f"checksum must be an algorithm's name, not {checksum!r}",
                         param="checksum")  # fmt: skip
    try:
        return get_algorithm(checksum or "CRC64NVME")
    except ValueError as exc:
        raise UsageError(str(exc), param="checksum") from None


def names_stdin(path: str | Path | None) -> bool:
    """Is ``path`` ``-`` (or another of standard input's names), standard input (what it is, a
    pipe or a file redirected in, is :func:`resolve_source`'s to say)?"""
    # Standard input's other names, which many tools take for it: read as "-" is (a file
    # redirected in is that file, its state file beside it; a pipe is a stream), never a file
    # in /dev with its state file beside it there (a tmpfs, one for every run).
    return path is not None and str(path) in {STDIN, "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"}


def stdin_kind(fd: int = 0) -> tuple[str, Path | None]:
    """What standard input is: ("stream", None) for a pipe or socket; ("file", path) for a
    regular file or a block device redirected in (``< disk.img``) at its start, read as that
    file (past it: a stream, the bytes from there); a terminal is refused: nothing is being
    piped in."""
    from ._loop import CLOSED_STDIO

    try:
        st = os.fstat(fd)
        if fd in CLOSED_STDIO:  # (closed when the command started: /dev/null since)
            raise OSError
    except OSError:
        raise UsageError("standard input is closed: nothing is being piped in") from None
    if os.isatty(fd):
        raise UsageError("standard input is a terminal: nothing is being piped in")
    if stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode):
        with contextlib.suppress(OSError):
            # One read from past its start (``{ read header; persevere cp -; } < file``) gives
            # what is left, as ``cat`` would: a stream, not the file from byte 0.
            if os.lseek(fd, 0, os.SEEK_CUR) != 0:
                return "stream", None
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
            # A file that does not give the bytes its size says (a /proc or /sys file: its
            # length is known only once read) is read as a stream.
            if path.exists() and os.path.samestat(os.stat(path), st) and (
                    stat.S_ISBLK(st.st_mode) or size_is_true(path, st.st_size)):  # fmt: skip
                return "file", path
    return "stream", None


@dataclass(frozen=True, slots=True)
class Source:
    """What an upload reads: a file (or block device) at ``path``, or a stream (a pipe on
    ``fd``, read once, in order), whose path is ``-`` as the journal records it."""

    path: Path
    stream: bool = False
    fd: int = 0


def refuse_dev_null(fd: int) -> None:
    """A stream on /dev/null is refused: what a service, ``docker run`` without -i or ``ssh
    -n`` leave when the producer is left out (the object would be replaced with an empty
    one)."""
    if os.path.samestat(os.fstat(fd), os.stat(os.devnull)):
        raise UsageError(
            "standard input is /dev/null: nothing is being piped in (an empty object: "
            "true | persevere cp - ...)",
            param="source",
        )


def an_endpoint(value: object) -> Endpoint | None:
    """``endpoint`` as the API takes it: an :class:`Endpoint` (a URL: ``Endpoint(url)``)."""
    if not isinstance(value, Endpoint | None):
        raise UsageError(f"endpoint must be an Endpoint, not {value!r}", param="endpoint")
    return value


def a_path(value: object, name: str) -> Path:
    """``value`` as a path: another type (None, an int, a list: a setting left unset, a glob's
    result) is a UsageError naming ``name``, not a TypeError from deep inside."""
    if not isinstance(value, (str, os.PathLike)):
        raise UsageError(f"{name} must be a path (str or os.PathLike), not "
                         f"{type(value).__name__} {value!r}", param=name)  # fmt: skip
    return Path(value)


def resolve_source(given: str | Path, fd: int = 0) -> Source:
    """The one place ``-`` is read: a pipe is a stream; a file or block device redirected in
    is that file; a terminal is refused (:func:`stdin_kind`)."""
    if not names_stdin(given):
        return Source(Path(given))
    _, path = stdin_kind(fd)  # a path: a file's
    return Source(path) if path is not None else Source(Path(STDIN), stream=True, fd=fd)


def refuse_source_as_state(state_path: Path, source: Path) -> None:
    """The state file is not the file to upload (the path given twice, a link to it): an
    empty one would be taken for a journal a crash left without its header, and removed."""
    with contextlib.suppress(OSError):  # (no state file yet)
        if os.path.samefile(state_path, source):
            raise UsageError("the state file cannot be the file being uploaded",
                             hint="give another --state-file (or none: FILE.persevere beside it)",
                             param="state_file")  # fmt: skip


# CreateMultipartUpload's parameters persevere sets itself: the object options cannot (an
# upload created at another key was left there, its parts sent to this one's: NoSuchUpload).
_OWN_FIELDS = frozenset({"Bucket", "Key", "UploadId", "ChecksumAlgorithm", "ChecksumType"})


class Asked(TypedDict, total=False):
    """A new upload's keywords, as :func:`persevere.upload_file` and
    :func:`persevere.create_upload` take them (each a :class:`Request` field of that name but
    ``options``, its ``transfer``; the defaults are the Request's)."""

    part_size: int | None
    max_parts: int
    checksum: str | None
    object_options: dict[str, Any] | None
    no_overwrite: bool
    endpoint: Endpoint | None
    options: UploadOptions | None


class Copied(Asked, total=False):
    """``cp``'s keywords (:func:`._cp.copy_file`): a new upload's, and a stream's length."""

    expected_size: int | None


class Continued(TypedDict, total=False):
    """A recorded upload's keywords, as :func:`persevere.resume` and
    :func:`persevere.upload_shard` take them (:meth:`Request.resumed`'s)."""

    options: UploadOptions | None
    verify_parts: bool
    file: str | Path | None
    endpoint: Endpoint | None


def given(asked: Mapping[str, Any], keywords: type, door: str) -> dict[str, Any]:
    """The function ``door``'s ``**asked``, of the TypedDict ``keywords``, checked as its
    signature would be: another keyword is Python's TypeError naming ``door`` and the first."""
    for name in asked:
        if name not in keywords.__annotations__:
            raise TypeError(f"{door}() got an unexpected keyword argument {name!r}")
    return dict(asked)


@dataclass(frozen=True, slots=True)
class Request:
    """One upload as the user asked for it. None means "not said": a resume takes what the
    journal's header recorded (its source, or the file at ``source``'s path; its destination:
    ``bucket`` and ``key`` are a new upload's)."""

    state_file: Path
    source: Source | None = None
    bucket: str = ""
    key: str = ""
    part_size: int | None = None  # None: auto; a stream: refused (it has a schedule)
    max_parts: int = MAX_PARTS  # the endpoint's limit; a stream: refused below 10,000
    expected_size: int | None = None  # a stream's length; a file: must be its size
    checksum: str | None = None  # None: CRC64NVME, falling back to Content-MD5
    object_options: dict[str, Any] | None = None  # CreateMultipartUpload's, recorded
    no_overwrite: bool = False  # write-once (:mod:`._write_once`), recorded
    endpoint: Endpoint | None = None  # None: the environment's (a resume: the recorded one)
    transfer: UploadOptions = field(default_factory=UploadOptions)  # never recorded
    verify_parts: bool = False
    shards: int | None = None  # created for this many shards (or processes), nothing sent

    def __post_init__(self) -> None:  # (the API's callers: a dict, a URL; a resume too)
        for name in ("part_size", "max_parts", "expected_size", "shards"):
            value = getattr(self, name)  # ("3" compared with an int: a TypeError; True: 1)
            if value is not None and type(value) is not int:
                what = name.replace("_", " ")
                raise UsageError(f"{what} must be a whole number, not {value!r}", param=name)
        if not isinstance(self.transfer, UploadOptions):  # (the API's callers: a dict)
            raise UsageError(f"options must be an UploadOptions, not {self.transfer!r}",
                             param="options")  # fmt: skip
        an_endpoint(self.endpoint)  # (a URL: Endpoint(url) is one)

    @classmethod
    def of(
        cls,
        file: str | Path,
        bucket: str,
        key: str,
        state_file: str | Path,
        *,
        options: UploadOptions | None = None,
        **fields: Any,
    ) -> Request:
        """A new upload's request from the API's keywords (:func:`persevere.upload_file`'s):
        ``file`` resolved ('-': standard input), ``options`` its transfer options."""
        source = resolve_source(a_path(file, "file"))
        return cls(a_path(state_file, "state_file"), source, bucket, key,
                   transfer=options or UploadOptions(),
                   **fields)  # fmt: skip

    @classmethod
    def resumed(
        cls, state_file: str | Path, file: str | Path | None = None,
        options: UploadOptions | None = None, **fields: Any,
    ) -> Request:  # fmt: skip
        """The request of a recorded upload (resume, a shard): only what is given; the journal's
        header says the rest. ``file``: where the file is now (None: the recorded path; '-':
        standard input, what a stream's resume reads)."""
        source = None if file is None else Source(a_path(file, "file"))
        if file is not None and names_stdin(file):  # (a file's upload refuses it: resume)
            source = Source(Path("-"), stream=True)
        return cls(a_path(state_file, "state_file"), source, transfer=options or UploadOptions(),
                   **fields)  # fmt: skip

    def reads(self) -> Source:
        """What a new upload reads (only a resume leaves it unsaid)."""
        assert self.source is not None, "a new upload's request names its source"
        return self.source

    def file(self) -> Path | None:
        """The file given (None: a stream, or the one the journal's header records)."""
        return None if self.source is None or self.source.stream else self.source.path

    def refuse_for_stream(self, *, dry_run: bool = False) -> None:
        """What a stream cannot do: it is read once, in order, on its own schedule."""
        if not self.reads().stream:
            return
        refuse_dev_null(self.reads().fd)
        if dry_run:
            raise UsageError("a stream can be read only once: --dry-run needs a file",
                             param="dry_run")  # fmt: skip
        if self.shards is not None:
            raise UsageError("a stream cannot be split into shards", param="shards")
        if self.part_size is not None:
            raise UsageError("a stream's parts follow its schedule: give --expected-size "
                             "instead", param="part_size")  # fmt: skip
        if self.max_parts != MAX_PARTS:
            raise UsageError("a stream's parts follow its schedule within 10,000 parts; a lower "
                             "part limit is not supported for streams yet: upload a file",
                             param="max_parts")  # fmt: skip

    def check(self) -> None:
        """Every refusal that needs no request to S3 (a file's size is looked at only to
        check an expected size): one UsageError naming the parameter."""
        if owned := sorted(set(self.object_options or ()) & _OWN_FIELDS):
            raise UsageError(f"object_options cannot set {', '.join(owned)}: persevere sets "
                             "them itself (the destination, the upload, its checksum)",
                             param="object_options")  # fmt: skip
        check_object_options(self.object_options)
        self.transfer.validate()
        if self.shards is not None and not 1 <= self.shards <= MAX_PARTS:
            raise UsageError(f"shards must be between 1 and 10,000, not {self.shards}",
                             param="shards")  # fmt: skip
        self.refuse_for_stream()
        check_destination(self.bucket, self.key)
        algorithm_of(self.checksum)
        if self.expected_size is not None and not self.reads().stream:
            check_expected_size(inspect_file(self.reads().path), self.expected_size)

    def prepare(self) -> tuple[FileIdentity | None, Layout, Path]:
        """:meth:`check`, then the file (None: a stream), its parts and the state file's
        absolute path; blocking (it looks at the file)."""
        self.check()
        identity = None if self.reads().stream else inspect_file(self.reads().path)
        layout = self.layout(identity)
        if isinstance(layout, PartPlan) and (self.shards or 0) > layout.part_count:
            raise UsageError(f"{self.shards} shards for {layout.part_count} part(s): each "
                             "shard needs a part", param="shards")  # fmt: skip
        state_path = followed(self.state_file.expanduser().absolute())
        require_regular(state_path)
        if identity is not None:
            refuse_source_as_state(state_path, identity.path)
        return identity, layout, state_path

    def layout(self, identity: FileIdentity | None) -> Layout:
        """A new upload's parts: the file's plan, or a stream's schedule."""
        if identity is None:
            return StreamSchedule.for_expected(self.expected_size)
        return make_plan(identity.size, self.part_size, self.max_parts)

    def new_header(
        self, endpoint: Endpoint, region: str | None, identity: FileIdentity | None, layout: Layout
    ) -> Header:
        """The journal's header of this new upload but for its id (``identity`` None: a
        stream); ``endpoint`` is the one used, ``region`` the client's."""
        algorithm = algorithm_of(self.checksum)
        schedule = layout if isinstance(layout, StreamSchedule) else None
        stream = SourceRecord(STDIN, self.expected_size or 0, 0)  # its size: the promised one
        return Header(
            bucket=self.bucket,
            key=self.key,
            upload_id="",  # filled in once CreateMultipartUpload answers
            endpoint_url=endpoint.endpoint_url,
            region=endpoint.region or region,
            profile=endpoint.profile,
            ca_bundle=endpoint.ca_bundle,
            object_options=self.object_options or None,
            **asdict(identity.as_record() if identity else stream),
            part_size=layout.first if isinstance(layout, StreamSchedule) else layout.part_size,
            checksum_algorithm=algorithm.name,
            checksum_type=checksum_type(algorithm),
            created_at=now(),
            tool_version=__version__,
            checksum_pinned=self.checksum is not None,
            stream_every=schedule.every if schedule else None,
            expected_size=self.expected_size if schedule else None,
            shards=self.shards,
            no_overwrite=self.no_overwrite,
        )

    def conflicts_with(self, state: JournalState, where: object = "the state file") -> list[str]:
        """What this request asks that the recorded upload was not made with, in words: its
        object options and checksum; then, while it is unfinished, how it is sent (part size,
        expected size, part limit, write-once). Empty: none."""
        header = state.header
        recorded, given = header.object_options or {}, self.object_options
        differ = [] if given is None else differing(given, recorded)
        if self.checksum and self.checksum.upper() != header.checksum_algorithm.upper():
            differ.append(f"checksum {header.checksum_algorithm}, not {self.checksum.upper()}")
        if state.finished is not None:  # how it is sent: moot for an object already made
            return differ
        if self.part_size is not None and self.part_size != header.part_size:
            differ.append(f"part size {header.part_size:,}, not {self.part_size:,}")
        if header.stream and self.expected_size != header.expected_size:
            said = [f"{n:,} bytes" if n is not None else "none" for n in
                    (header.expected_size, self.expected_size)]  # fmt: skip
            differ.append(f"expected size {said[0]}, not {said[1]}")
        plan = header.plan(where)
        if isinstance(plan, PartPlan) and plan.part_count > self.max_parts:
            differ.append(f"{plan.part_count:,} parts, over the part limit {self.max_parts:,}")
        if self.no_overwrite and not header.no_overwrite:  # a finished upload replaced nothing
            differ.append("write-once, which it was started without")
        return differ
