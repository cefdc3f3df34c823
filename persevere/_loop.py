"""The one place an event loop is started: the CLI's commands and the blocking API
(:mod:`._sync`) run their coroutines through :func:`run`.

A module of its own so that the CLI, to run one command, imports nothing of the API's other
coroutines (:mod:`._sync` imports them all, for its twins).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ._platform import require_supported

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
