"""Blocking wrappers of the async API, for scripts that do not run an event loop.

Each call runs its own event loop (uvloop where available); do not call these from async code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ._journal import Header
from ._s3 import quiet_abandoned_connection_errors
from ._upload import UploadResult, UploadStatus, abort_upload, resume_upload, start_upload
from ._upload import upload_status as _status
from ._verify import VerifyResult, verify_object

T = TypeVar("T")


def _run(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    async def main() -> T:
        quiet_abandoned_connection_errors()
        return await fn(*args, **kwargs)

    try:
        import uvloop  # noqa: F401

        options = {"use_uvloop": True}
    except ImportError:  # pragma: no cover - platforms without uvloop
        options = {}
    return anyio.run(main, backend_options=options)


def upload_file_sync(*args: Any, **kwargs: Any) -> UploadResult:
    """:func:`persevere.upload_file`, blocking."""
    return _run(start_upload, *args, **kwargs)


def resume_sync(*args: Any, **kwargs: Any) -> UploadResult:
    """:func:`persevere.resume`, blocking."""
    return _run(resume_upload, *args, **kwargs)


def abort_sync(*args: Any, **kwargs: Any) -> Header:
    """:func:`persevere.abort`, blocking."""
    return _run(abort_upload, *args, **kwargs)


def status_sync(*args: Any, **kwargs: Any) -> UploadStatus:
    """:func:`persevere.status`, blocking."""
    return _run(_status, *args, **kwargs)


def verify_sync(*args: Any, **kwargs: Any) -> VerifyResult:
    """:func:`persevere.verify`, blocking."""
    return _run(verify_object, *args, **kwargs)
