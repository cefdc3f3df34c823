"""Review of the tree shrink (branch s2tree): behaviours of ``cp DIR`` / ``verify DIR`` that
must stay as they were (base 2d120e5), found changed or verified unchanged."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import persevere as cli
from tests.proxybase import Answer, HttpForwarder

# Pins of the 2026-12-05 review (they pass on the shrink's base too): run by make test-all.
pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def write(path: Path, size: int, byte: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([byte]) * size)
    return path


def small_and_multipart_tree(root: Path) -> list[str]:
    """Six small files and three multipart ones (at 5 MiB parts: 4, 3 and 2 parts)."""
    rels = []
    for i in range(6):
        rel = f"{'ab'[i % 2]}/s{i}.txt"
        write(root / rel, 1000 * (i + 1), i)
        rels.append(rel)
    for rel, size in (("L1.bin", 20 * MiB), ("a/L2.bin", 11 * MiB), ("b/L3.bin", 6 * MiB)):
        write(root / rel, size, 7)
        rels.append(rel)
    return rels


class InFlight(HttpForwarder):
    """Forwards everything, each request a little late; counts the requests in flight."""

    def __init__(self, upstream):
        super().__init__(upstream)
        self.now = self.peak = 0
        self.order: list[tuple[str, str]] = []
        self._count = threading.Lock()

    def _decide(self, method, target, headers):
        with self._count:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.order.append((method.decode(), target.decode().split("?")[0]))

        def answered(head: bytes) -> bytes:
            with self._count:
                self.now -= 1
            return head

        time.sleep(0.02)
        return Answer(rewrite=answered)


@pytest.fixture
def in_flight(s3_env, s3_server):
    with InFlight.in_front_of(s3_server.endpoint_url) as proxy:
        yield {**s3_env, "AWS_ENDPOINT_URL": proxy.url}, proxy


def test_a_dangling_symlink_at_the_state_file_is_refused_and_left_alone(s3_env, bucket, tmp_path):
    """It was refused (its journal 'already exists'), the link kept; the shrink's
    unlink(missing_ok=True) removed the user's link and wrote a journal in its place."""
    write(tmp_path / "tree" / "a.txt", 10, 1)
    link = tmp_path / "link.persevere"
    link.symlink_to(tmp_path / "elsewhere" / "journal.persevere")
    result = cli(s3_env, "cp", tmp_path / "tree", f"s3://{bucket}/p/", "--state-file", link,
                 "--no-progress")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "already exists" in result.stderr
    assert link.is_symlink() and not (tmp_path / "elsewhere").exists()


def test_a_journal_with_an_unknown_checksum_is_refused_even_with_nothing_to_send(
    s3_env, bucket, tmp_path
):
    """The journal's checksum was read before the walk: a journal that names one this
    persevere does not know stopped the run (exit 1), not only when a file was to be sent."""
    write(tmp_path / "tree" / "a.txt", 10, 1)
    state = tmp_path / "t.persevere"
    args = ("cp", tmp_path / "tree", f"s3://{bucket}/p/", "--state-file", state, "--no-progress")
    assert cli(s3_env, *args).returncode == 0
    state.write_text(state.read_text().replace('"CRC64NVME"', '"BOGUS"', 1))
    result = cli(s3_env, *args)
    assert result.returncode == 1
    assert "unknown checksum algorithm 'BOGUS'" in result.stderr


def test_check_remote_compares_etags_as_it_did(s3_env, bucket, tmp_path):
    """--check-remote compared the recorded ETag with HeadObject's quotes aside, case kept:
    an ETag recorded in another case is an object that differs (sent again)."""
    write(tmp_path / "tree" / "a.txt", 10, 1)
    state = tmp_path / "t.persevere"
    args = ("cp", tmp_path / "tree", f"s3://{bucket}/p/", "--state-file", state, "--no-progress")
    assert cli(s3_env, *args).returncode == 0
    lines = state.read_text().splitlines()
    done = json.loads(lines[1])
    done["etag"] = done["etag"].upper()
    done["checksum"] = None  # (the ETag alone proves it)
    state.write_text("\n".join([lines[0], json.dumps(done), ""]))
    result = cli(s3_env, *args, "--check-remote")
    assert result.returncode == 0, result.stderr
    assert "1 sent again" in result.stdout, result.stdout


@pytest.mark.parametrize("concurrency", [1, 2, 5])
def test_cp_dir_holds_its_concurrency_over_small_and_multipart_files(
    in_flight, bucket, tmp_path, concurrency
):
    env, proxy = in_flight
    rels = small_and_multipart_tree(tmp_path / "tree")
    result = cli(env, "cp", tmp_path / "tree", f"s3://{bucket}/p/", "--part-size", "5MiB",
                 "--concurrency", concurrency, "--no-progress",
                 "--state-file", tmp_path / "t.persevere")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 1 <= proxy.peak <= concurrency
    if concurrency == 1:  # small files first, then the multipart ones, each in path order
        firsts = list(dict.fromkeys(path.split("/p/", 1)[1] for _, path in proxy.order))
        assert firsts == sorted(rels[:6]) + sorted(rels[6:])
    proxy.peak = 0
    state = tmp_path / "t.persevere"
    result = cli(env, "verify", tmp_path / "tree", f"s3://{bucket}/p/", "--no-progress",
                 "--concurrency", concurrency, "--state-file", state)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 1 <= proxy.peak <= concurrency
