"""Non-blocking reads of what the page cache holds (``SourceFile.read_cached``)."""

from __future__ import annotations

import os

import anyio
import pytest

from persevere._body import read_slice
from persevere._errors import SourceChanged
from persevere._source import SourceFile, inspect_file
from tests.conftest import MakeFile

KiB = 1024


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="no preadv2(RWF_NOWAIT) here")
def test_cached_bytes_are_read_without_a_thread(make_file: MakeFile) -> None:
    path = make_file(300 * KiB)  # just written: in the page cache
    data = path.read_bytes()
    with SourceFile(inspect_file(path)) as source:
        buffer = bytearray(100 * KiB)
        assert source.read_cached(memoryview(buffer), 7) == len(buffer)
        assert buffer == data[7 : 7 + len(buffer)]
        # Past the end: short, and read_into is left to report it.
        tail = bytearray(100 * KiB)
        assert source.read_cached(memoryview(tail), 250 * KiB) == 50 * KiB
        assert tail[: 50 * KiB] == data[250 * KiB :]


def test_read_slice_gives_the_bytes_and_reports_a_short_file(make_file: MakeFile) -> None:
    path = make_file(300 * KiB)
    data = path.read_bytes()
    with SourceFile(inspect_file(path)) as source:
        buffer = bytearray(64 * KiB)
        anyio.run(read_slice, source, memoryview(buffer), 1000)
        assert buffer == data[1000 : 1000 + 64 * KiB]
        with pytest.raises(SourceChanged):
            anyio.run(read_slice, source, memoryview(bytearray(64 * KiB)), 280 * KiB)
