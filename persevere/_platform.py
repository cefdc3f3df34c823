"""What the operating system gives the journal: an exclusive lock, and a flush to stable storage.

The journal's promises (one process per state file; a recorded part survives a power cut) rest
on two calls, and each OS spells them differently:

- **Linux** (first-class, where the test suite runs): ``flock`` for the lock; ``fsync`` for the
  flush, which on ext4/xfs/btrfs also flushes the drive's write cache (barriers are on by
  default).
- **macOS**: ``fsync`` only hands the data to the drive, which may still lose it from its cache
  in a power cut; ``fcntl(F_FULLFSYNC)`` asks the drive to write its cache out. It is used for
  every journal record and for the state file's directory. A filesystem that does not support
  it (some network filesystems answer ENOTSUP or EINVAL) gets ``fsync`` instead, as SQLite does.
- **Windows** (no ``fcntl``): refused, with one line, by :func:`require_supported`: at the CLI's
  start, in the blocking API, and before a journal is created or opened. ``import persevere``
  still works (no ImportError), so a program can import it and report the refusal itself.
  Supporting Windows would take ``msvcrt.locking``, no directory fsync, no ``os.preadv`` and
  no SIGHUP/SIGTERM handling, none of which has been tested; refusing is honest.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

from ._errors import UsageError

try:
    import fcntl
except ImportError:  # Windows; tests simulate it in a subprocess (tests/test_platform.py)
    HAS_FCNTL = False
else:
    HAS_FCNTL = True

UNSUPPORTED = (
    "persevere needs a POSIX system (Linux or macOS) for its state file's lock and fsync; "
    "this one has no fcntl (Windows: run persevere under WSL)"
)

# The signals that stop persevere (exit 130; SIGHUP 129), but those ignored when it started:
# ``nohup`` ignores SIGHUP and a script's ``cmd &`` SIGINT so that they do not stop it, and
# they do not (as CPython leaves an ignored SIGINT ignored). getattr: Windows has no SIGHUP.
STOP_SIGNALS = tuple(
    signum
    for signum in (getattr(signal, name, None) for name in ("SIGINT", "SIGTERM", "SIGHUP"))
    if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN
)

# F_FULLFSYNC failing with one of these means "not on this filesystem", not "I/O failed".
_NOT_SUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOTTY})


def require_supported() -> None:
    """Refuse, with one line, a platform the journal cannot keep its promises on."""
    if not HAS_FCNTL:
        raise UsageError(UNSUPPORTED)


def lock_exclusive(fd: int) -> bool:
    """Take the advisory lock on an open state file; False if another process holds it.

    Released when the descriptor is closed (or the process dies, even by ``kill -9``).
    """
    require_supported()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def full_fsync(fd: int) -> None:
    """Flush ``fd`` (a file or a directory) to stable storage, or raise ``OSError``.

    ``F_FULLFSYNC`` where the OS has it (macOS), falling back to ``fsync`` on a filesystem
    that does not support it; ``fsync`` elsewhere.
    """
    full = getattr(fcntl, "F_FULLFSYNC", None) if HAS_FCNTL else None
    if full is not None:
        try:
            fcntl.fcntl(fd, full)
            return
        except OSError as exc:
            if exc.errno not in _NOT_SUPPORTED:
                raise
    os.fsync(fd)


def make_dirs(path: Path, mode: int) -> None:
    """``path.mkdir(mode, parents=True, exist_ok=True)``, each directory it makes fsync'd into
    its parent: a journal fsync'd in a directory whose own name a power cut loses is lost
    with it (its upload's parts billed, recorded nowhere). Raises ``OSError``."""
    missing: list[Path] = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):  # (each with ``mode``: mkdir's parents get 0777)
        directory.mkdir(mode=mode, exist_ok=True)
    for directory in reversed(missing):
        fd = os.open(directory.parent, os.O_RDONLY)
        try:
            full_fsync(fd)
        finally:
            os.close(fd)
