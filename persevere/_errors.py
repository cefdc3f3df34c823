"""The one exception tree persevere raises.

The core raises these; the CLI catches them (and only them), prints one line and exits with
``exc.exit_code``. Anything else escaping is a bug and keeps its traceback.

    PersevereError                      exit 1
    ├── UsageError                      exit 2   bad input caught before any request
    │   ├── PlanError                   the file cannot be split into valid parts
    │   └── SourceFileError             missing, a directory, a FIFO, unreadable...
    ├── StateFileError                  exit 1   state file missing, corrupt, locked, foreign
    │   ├── StateFileExists             start refuses to overwrite
    │   ├── StateFileLocked             exit 3   another process holds it (try again later)
    │   ├── StateFileUnwritable         exit 3   disk full or I/O error mid-upload: nothing
    │   │                                        unrecorded counts; resume once fixed
    │   └── UploadFinished              the journal says completed/aborted
    ├── SourceChanged                   exit 1   the file changed since the upload started
    ├── S3Error                         exit 1   a permanent S3/auth/network failure
    │   ├── UploadGone                  NoSuchUpload: aborted elsewhere or expired
    │   └── ObjectExists                write-once: the key exists, left untouched
    ├── IntegrityError                  exit 1   S3's checksum/ETag disagrees with ours
    └── ResumableError                  exit 3   retries exhausted; the journal is intact
                                                 and ``persevere upload resume`` continues
``Interrupted`` (exit 130) is raised when the user stopped the upload (Ctrl-C, SIGTERM).
It is a ``PersevereError`` so the CLI reports it the same way, but it is not a failure.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_RESUMABLE = 3
EXIT_INTERRUPTED = 130


class PersevereError(Exception):
    """Base of every error persevere raises on purpose."""

    exit_code = EXIT_ERROR
    # What to do next about the upload in ``state_file``: "resume" it, or "abort" it (and start
    # again); the CLI spells out the command.
    next_step: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # The API parameter at fault (``part_size``), which the CLI names as its flag.
        self.param = param
        # Set by the uploader once a state file exists, so the CLI can print the resume command.
        self.state_file: str | None = None
        # A command to run next other than resume or abort, spelled out by the core (the cp
        # that starts again over the state file); the hint says it too.
        self.next_command: str | None = None

    def __str__(self) -> str:
        return self.message


class UsageError(PersevereError):
    exit_code = EXIT_USAGE


class PlanError(UsageError):
    """The file cannot be split into valid parts."""


class SourceFileError(UsageError):
    """The source is missing, a directory, a FIFO, unreadable..."""


class StateFileError(PersevereError):
    """The state file is missing, corrupt, locked or foreign."""


class StateFileExists(StateFileError):
    next_step: str | None = "resume"  # (not when it records no upload, or one that is over)


class StateFileLocked(StateFileError):
    exit_code = EXIT_RESUMABLE  # try again later: the other process will finish


class StateFileUnwritable(StateFileError):
    exit_code = EXIT_RESUMABLE
    next_step: str | None = "resume"


class UploadFinished(StateFileError):
    """The journal says the upload completed or was aborted."""


class SourceChanged(PersevereError):
    next_step: str | None = "abort"


class S3Error(PersevereError):
    next_step: str | None = "resume"  # once the cause (credentials, permissions...) is fixed

    def __init__(self, message: str, *, code: str | None = None, **rest: str | None) -> None:
        super().__init__(message, **rest)  # hint, param
        self.code = code


class UploadGone(S3Error):
    next_step: str | None = None


class ObjectExists(S3Error):
    """Write-once (``no_overwrite``): the key exists; the upload, if any, was aborted."""

    next_step: str | None = None


class IntegrityError(PersevereError):
    """S3's checksum or ETag disagrees with ours."""


class ResumableError(PersevereError):
    exit_code = EXIT_RESUMABLE
    next_step: str | None = "resume"


class Interrupted(PersevereError):
    exit_code = EXIT_INTERRUPTED
    next_step: str | None = "resume"
