"""The one place an event loop is started: the CLI's commands and the blocking API
(:mod:`._sync`) run their coroutines through :func:`run`.

A module of its own so that the CLI, to run one command, imports nothing of the API's other
coroutines (:mod:`._sync` imports them all, for its twins).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ._platform import require_supported

T = TypeVar("T")

_collector_paused = False  # by pause_collector, until run's loop has started
CLOSED_STDIO: set[int] = set()  # standard descriptors found closed, /dev/null since (run)


def pause_collector() -> None:
    """Pause the cyclic garbage collector until :func:`run` starts the work (the CLI's start-up).

    Parsing the command line and importing what the command needs (aiohttp among it) allocate
    objects by the hundred thousand and free almost none: the collector's passes over them
    (about 65 for a ``cp``) find nothing to free. It runs again before the command's work
    starts (see :func:`resume_collector`), so nothing long-lived runs without it; what start-up
    loaded is frozen then (``gc.freeze``: later passes skip it, as ``_s3.open_client`` does for
    botocore's objects), else the first pass would scan all of it at once.
    """
    global _collector_paused
    if gc.isenabled():
        gc.disable()
        _collector_paused = True


def resume_collector(*, freeze: bool = True) -> None:
    """Undo :func:`pause_collector` (no-op if it did not pause, or already resumed)."""
    global _collector_paused
    if _collector_paused:
        _collector_paused = False
        if freeze:
            gc.freeze()
        gc.enable()


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a new event loop (uvloop where installed).

    Every CLI command and blocking call enters here, so a platform persevere does not support
    (Windows) is refused here, with one line, before anything is sent (:mod:`._platform`).
    """
    require_supported()
    fill_closed_stdio()

    async def wrapped() -> T:
        from ._s3 import quiet_abandoned_connection_errors

        quiet_abandoned_connection_errors()  # imports aiohttp
        resume_collector()
        return await main()

    try:  # imported, not only found: a uvloop that fails to import leaves asyncio
        import uvloop  # noqa: F401

        use_uvloop = True
    except ImportError:  # pragma: no cover - platforms without uvloop
        use_uvloop = False
    return anyio.run(wrapped, backend="asyncio", backend_options={"use_uvloop": use_uvloop})


def fill_closed_stdio() -> None:
    """A standard descriptor (0, 1, 2) left closed (``<&-``, ``>&-``, ``2>&-``) would be the
    number the next socket gets, and uvloop aborts the process (SIGABRT) when it closes one
    below 3: every command so run died with 134, a completed upload's and "already completed"
    too; and a closed stderr is ``sys.stderr`` None, which the CLI's progress output did not
    survive (exit 1). Each one closed is /dev/null from here on (the CLI's first step, and
    :func:`run`'s); :data:`CLOSED_STDIO` says which (standard input closed is still "nothing
    is being piped in", never an empty stream)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            CLOSED_STDIO.add(fd)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "w", closefd=False))
