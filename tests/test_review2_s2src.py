"""Review of the src group's round-2 shrink (2d120e5..7bf28da): what it changed that users see.

- A trailed part's body (``_body.TrailerBody``) caught every failure between its first read and
  its trailer as its own, so a progress sink's error became a "local failure" that stopped the
  upload; before, as with every other body, only the file's reads and ``settle`` were.
- uvloop was chosen when its module could be found, not when it could be imported: an
  installed uvloop that fails to import (a build for another libuv) stopped every command.
- Changed for the better (kept): a /proc file that refuses 1-byte reads is refused as one.
- Pinned, unchanged: a part that fits the buffer carries the MD5 of its bytes (Content-MD5
  mode), and a part changed on disk between its hash pass and its send is still caught.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import persevere
from persevere import _sendfile, _verify
from persevere._source import size_is_true
from tests.conftest import sha256_of_file, sha256_of_object

# Pins of the 2026-12-05 review (they pass on the shrink's base too): run by make test-all (CI).
pytestmark = pytest.mark.slow

MiB = 1 << 20
REPO = Path(__file__).resolve().parent.parent


class _ProgressFailingOnce:
    """A progress sink whose ``advance`` fails once, in the middle of the second part."""

    def __init__(self, at_call: int) -> None:
        self.calls = 0
        self.at_call = at_call

    def start(self, total_bytes: int, done_bytes: int) -> None:
        pass

    def advance(self, delta_bytes: int) -> None:
        if delta_bytes > 0:
            self.calls += 1
            if self.calls == self.at_call:
                raise RuntimeError("the progress sink failed once")

    def close(self) -> None:
        pass


@pytest.mark.anyio
async def test_a_progress_failure_in_a_trailed_part_is_no_body_failure(
    s3_env, bucket, s3_client, make_file, tmp_path, monkeypatch
):
    """The trailed part's attempt fails as a streamed part's would (the network's failure, as
    aiohttp reports it): the part is sent again and the upload completes, as at 2d120e5."""
    monkeypatch.setattr(_sendfile, "ENABLED", False)  # trailers are offered (tests/test_trailer)
    file = make_file(24 * MiB, seed=31)
    retry = persevere.RetryPolicy(max_attempts=3, base_delay_s=0.01)
    options = persevere.UploadOptions(concurrency=1, buffer_budget_bytes=MiB, retry=retry)
    # 256 KiB slices: part 1 (8 MiB, header form) is 32 of them; call 40 is in part 2 (trailed)
    sink = _ProgressFailingOnce(40)
    result = await persevere.upload_file(file, bucket, "k", tmp_path / "s", part_size=8 * MiB,
                                         options=options, progress=sink)  # fmt: skip
    assert result.part_count == 3
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(file)


@pytest.mark.process
def test_an_installed_uvloop_that_fails_to_import_leaves_asyncio(tmp_path):
    """``run`` uses uvloop only if it imports; one that is found but fails to import (as a
    build against another libuv does) leaves the standard loop, as at 2d120e5."""
    broken = tmp_path / "uvloop"
    broken.mkdir()
    (broken / "__init__.py").write_text('raise ImportError("libuv.so.1: cannot open")\n')
    code = (
        "import asyncio\n"
        "from persevere._loop import run\n"
        "async def main():\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
        "print(run(main))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("asyncio")


@pytest.mark.anyio
async def test_a_buffered_part_carries_the_md5_of_its_bytes(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """Content-MD5 mode: a part that fits the buffer is hashed (both digests) in the one pass
    that reads it, and S3 takes its Content-MD5 (unchanged by the merge of the two passes)."""
    file = make_file(11 * MiB, seed=32)
    options = persevere.UploadOptions(concurrency=2, buffer_budget_bytes=64 * MiB)
    result = await persevere.upload_file(file, bucket, "md5", tmp_path / "s", part_size=5 * MiB,
                                         checksum="MD5", options=options)  # fmt: skip
    assert result.part_count == 3
    assert sha256_of_object(s3_client, bucket, "md5") == sha256_of_file(file)


def _pagemap_readable() -> bool:
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError:
        return False
    try:
        return len(os.pread(fd, 8, 0)) == 8
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.mark.skipif(not _pagemap_readable(), reason="no readable /proc/self/pagemap")
def test_a_proc_file_that_refuses_one_byte_reads_is_not_taken_at_its_size():
    """Changed by the shrink (a buffered read): /proc/self/pagemap says 0 bytes and refuses
    reads that are not a multiple of 8 (EINVAL). 2d120e5's unbuffered 1-byte probe failed and
    took the file at its size (``cp`` uploaded an empty object); the buffered read gets its
    bytes, so it is refused with the stream command, as d709afd meant for such files. Kept:
    a fix, not a regression; this fails at 2d120e5."""
    assert not size_is_true(Path("/proc/self/pagemap"), 0)


@pytest.mark.anyio
async def test_verifys_single_attempt_probes_leave_their_shared_policy_as_it_was(
    s3_env, bucket, make_file
):
    """``_verify._ONCE`` is one RetryPolicy (a mutable dataclass) shared by every failure-path
    probe: a probe reads it and never writes it (its rng is never drawn: one attempt)."""
    once = getattr(_verify, "_ONCE", None)
    if once is None:
        pytest.skip("before the shrink, each probe made its own policy")
    before = (once.max_attempts, once.base_delay_s, once.max_delay_s, once.patience_s,
              once.clock, once.sleep, once.rng.getstate())  # fmt: skip
    file = make_file(1000)
    with pytest.raises(persevere.S3Error, match="does not exist"):
        await persevere.verify(file, bucket + "-missing", "k")
    after = (once.max_attempts, once.base_delay_s, once.max_delay_s, once.patience_s,
             once.clock, once.sleep, once.rng.getstate())  # fmt: skip
    assert after == before and once.max_attempts == 1
