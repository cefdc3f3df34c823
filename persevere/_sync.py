"""Blocking twins of the async API, for scripts that do not run an event loop; each runs its
coroutine through :func:`._loop.run`, as the CLI does.

Each call runs its own event loop (uvloop where available); do not call these from async code.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from ._errors import UsageError
from ._loop import run as run
from ._resume import resume_upload
from ._shards import upload_shard
from ._upload import abort_upload, create_upload, start_upload, upload_status
from ._verify import verify_object

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(fn: Callable[P, Awaitable[T]], name: str) -> Callable[P, T]:
    @functools.wraps(fn)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # (none: the blocking twin's place)
            return run(lambda: fn(*args, **kwargs))
        raise UsageError(f"persevere.{name}_sync blocks: it was called from async code (an "
                         f"event loop runs in this thread); await persevere.{name}(...) "
                         "there")  # fmt: skip

    twin.__doc__ = f":func:`persevere.{fn.__name__}`, blocking.\n\n{fn.__doc__ or ''}"
    return twin


upload_file_sync = _blocking(start_upload, "upload_file")
resume_sync = _blocking(resume_upload, "resume")
abort_sync = _blocking(abort_upload, "abort")
status_sync = _blocking(upload_status, "status")
verify_sync = _blocking(verify_object, "verify")
create_upload_sync = _blocking(create_upload, "create_upload")
upload_shard_sync = _blocking(upload_shard, "upload_shard")
