"""Blocking twins of the async API, for scripts that do not run an event loop, and the one
place an event loop is started (the CLI runs its coroutines through :func:`run` too).

Each call runs its own event loop (uvloop where available); do not call these from async code.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import anyio

from ._platform import require_supported
from ._resume import resume_upload
from ._shards import upload_shard
from ._upload import abort_upload, create_upload, start_upload, upload_status
from ._verify import verify_object

P = ParamSpec("P")
T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a new event loop (uvloop where installed).

    Every CLI command and blocking call enters here, so a platform persevere does not support
    (Windows) is refused here, with one line, before anything is sent (:mod:`._platform`).
    """
    require_supported()

    async def wrapped() -> T:
        from ._s3 import quiet_abandoned_connection_errors

        quiet_abandoned_connection_errors()
        return await main()

    try:
        import uvloop  # noqa: F401

        use_uvloop = True
    except ImportError:  # pragma: no cover - platforms without uvloop
        use_uvloop = False
    return anyio.run(wrapped, backend="asyncio", backend_options={"use_uvloop": use_uvloop})


def _blocking(fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    @functools.wraps(fn)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return run(lambda: fn(*args, **kwargs))

    twin.__doc__ = f":func:`persevere.{fn.__name__}`, blocking.\n\n{fn.__doc__ or ''}"
    return twin


upload_file_sync = _blocking(start_upload)
resume_sync = _blocking(resume_upload)
abort_sync = _blocking(abort_upload)
status_sync = _blocking(upload_status)
verify_sync = _blocking(verify_object)
create_upload_sync = _blocking(create_upload)
upload_shard_sync = _blocking(upload_shard)
