"""persevere: resumable, parallel, checksummed multipart uploads of huge files to S3.

The CLI (``persevere upload ...``) is a thin layer over these coroutines::

    import anyio, persevere

    result = anyio.run(persevere.upload_file, "dump.sql", "my-bucket", "dumps/dump.sql",
                       "dump.persevere")
"""

from ._completion import UploadResult
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
from ._upload import (
    UploadStatus,
    create_upload,
)
from ._upload import (
    abort_upload as abort,
)
from ._upload import (
    start_upload as upload_file,
)
from ._upload import (
    upload_status as status,
)
from ._verify import VerifyResult
from ._verify import verify_object as verify
from ._version import __version__

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
