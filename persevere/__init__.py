"""persevere: resumable, parallel, checksummed multipart uploads of huge files to S3.

The CLI (``persevere upload ...``) is a thin layer over these coroutines::

    import anyio, persevere

    result = anyio.run(persevere.upload_file, "dump.sql", "my-bucket", "dumps/dump.sql",
                       "dump.persevere")
"""

import importlib as _importlib
import typing as _typing

from ._errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RESUMABLE,
    EXIT_USAGE,
    IntegrityError,
    Interrupted,
    ObjectExists,
    PersevereError,
    PlanError,
    ResumableError,
    S3Error,
    SourceChanged,
    SourceFileError,
    StateFileError,
    StateFileExists,
    StateFileLocked,
    StateFileUnwritable,
    UploadFinished,
    UploadGone,
    UsageError,
)
from ._version import __version__

if _typing.TYPE_CHECKING:
    from ._completion import UploadResult
    from ._object_options import build_object_options as object_options
    from ._options import UploadOptions
    from ._plan import PartPlan, auto_part_size, make_plan
    from ._progress import ProgressSink
    from ._resume import resume_upload as complete
    from ._resume import resume_upload as resume
    from ._retry import RetryPolicy
    from ._s3 import Endpoint
    from ._shards import ShardResult, upload_shard
    from ._sync import (
        abort_sync,
        create_upload_sync,
        resume_sync,
        status_sync,
        upload_file_sync,
        upload_shard_sync,
        verify_sync,
    )
    from ._upload import UploadStatus, create_upload
    from ._upload import abort_upload as abort
    from ._upload import start_upload as upload_file
    from ._upload import upload_status as status
    from ._verify import VerifyResult
    from ._verify import verify_object as verify

# The rest of the API is imported on first use (PEP 562): the CLI imports ``persevere._cli``,
# which runs this file, and an upload must not pay for verify, shards, dask... at start-up.
_LAZY: dict[str, tuple[str, str]] = {
    "Endpoint": ("_s3", "Endpoint"),
    "PartPlan": ("_plan", "PartPlan"),
    "ProgressSink": ("_progress", "ProgressSink"),
    "RetryPolicy": ("_retry", "RetryPolicy"),
    "ShardResult": ("_shards", "ShardResult"),
    "UploadOptions": ("_options", "UploadOptions"),
    "UploadResult": ("_completion", "UploadResult"),
    "UploadStatus": ("_upload", "UploadStatus"),
    "VerifyResult": ("_verify", "VerifyResult"),
    "abort": ("_upload", "abort_upload"),
    "abort_sync": ("_sync", "abort_sync"),
    "auto_part_size": ("_plan", "auto_part_size"),
    "complete": ("_resume", "resume_upload"),
    "create_upload": ("_upload", "create_upload"),
    "create_upload_sync": ("_sync", "create_upload_sync"),
    "make_plan": ("_plan", "make_plan"),
    "object_options": ("_object_options", "build_object_options"),
    "resume": ("_resume", "resume_upload"),
    "resume_sync": ("_sync", "resume_sync"),
    "status": ("_upload", "upload_status"),
    "status_sync": ("_sync", "status_sync"),
    "upload_file": ("_upload", "start_upload"),
    "upload_file_sync": ("_sync", "upload_file_sync"),
    "upload_shard": ("_shards", "upload_shard"),
    "upload_shard_sync": ("_sync", "upload_shard_sync"),
    "verify": ("_verify", "verify_object"),
    "verify_sync": ("_sync", "verify_sync"),
}


def __getattr__(name: str) -> object:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RESUMABLE",
    "EXIT_USAGE",
    "Endpoint",
    "IntegrityError",
    "Interrupted",
    "ObjectExists",
    "PartPlan",
    "PersevereError",
    "PlanError",
    "ProgressSink",
    "ResumableError",
    "RetryPolicy",
    "S3Error",
    "ShardResult",
    "SourceChanged",
    "SourceFileError",
    "StateFileError",
    "StateFileExists",
    "StateFileLocked",
    "StateFileUnwritable",
    "UploadFinished",
    "UploadGone",
    "UploadOptions",
    "UploadResult",
    "UploadStatus",
    "UsageError",
    "VerifyResult",
    "__version__",
    "abort",
    "abort_sync",
    "auto_part_size",
    "complete",
    "create_upload",
    "create_upload_sync",
    "make_plan",
    "object_options",
    "resume",
    "resume_sync",
    "status",
    "status_sync",
    "upload_file",
    "upload_file_sync",
    "upload_shard",
    "upload_shard_sync",
    "verify",
    "verify_sync",
]
