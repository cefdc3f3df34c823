"""Streams in: ``producer | persevere cp - s3://B/K``, bounded memory, resumable by piping the
same stream in again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pty
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest

import persevere
from persevere._plan import MAX_OBJECT_SIZE, MAX_PARTS, StreamSchedule
from persevere._units import GiB, MiB, TiB
from tests.conftest import interrupt_after_parts, sha256_of_file, sha256_of_object, start_stream
from tests.conftest import persevere as persevere_cli
from tests.ruleproxy import Rule, RuleProxy

# A deterministic producer: ``python -c PRODUCER SIZE SEED [FLIP_AT [HOLD_AT]]`` writes SIZE
# pseudo-random bytes (one byte flipped at FLIP_AT, if given; -1: none), in small writes, as a
# dump tool would. HOLD_AT: it stops there until its standard input ends (the test's release),
# so a test can stop persevere with whole parts recorded and the next one in flight, no wait.
PRODUCER = textwrap.dedent(
    """
    import random, sys
    size, seed = int(sys.argv[1]), int(sys.argv[2])
    flip = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    hold = int(sys.argv[4]) if len(sys.argv) > 4 else -1
    rng, out, done = random.Random(seed), sys.stdout.buffer, 0
    while done < size:
        block = bytearray(rng.randbytes(min(65536, size - done)))
        if done <= flip < done + len(block):
            block[flip - done] ^= 0xFF
        if done <= hold < done + len(block):
            out.write(block[: hold - done])
            out.flush()
            sys.stdin.buffer.read()
            block = block[hold - done :]
        out.write(block)
        done += len(block)
    """
)


def producer(size: int, seed: int, *, flip: int = -1, hold_at: int = -1) -> subprocess.Popen:
    """The PRODUCER, its standard output a pipe (and its standard input, when it holds)."""
    return subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(size), str(seed), str(flip), str(hold_at)],
        stdout=subprocess.PIPE, stdin=subprocess.PIPE if hold_at >= 0 else subprocess.DEVNULL,
    )  # fmt: skip


def held_after(parts: int) -> int:
    """Where a producer holds so that persevere sends ``parts`` whole parts and waits inside the
    next one: one byte into it (the default schedule's 8 MiB parts; an expected size of a few
    dozen MiB plans the same)."""
    return StreamSchedule().offset(parts + 1) + 1


def produced_blocks(size: int, seed: int) -> Iterator[bytes]:
    """What the PRODUCER writes (without a flip), made here."""
    rng, done = random.Random(seed), 0
    while done < size:
        block = rng.randbytes(min(65536, size - done))
        yield block
        done += len(block)


def produced(size: int, seed: int) -> str:
    digest = hashlib.sha256()
    for block in produced_blocks(size, seed):
        digest.update(block)
    return digest.hexdigest()


def pipe_into(env, size, seed, *args, flip=None, kill_after_parts=None, state=None):
    """``producer | persevere ARGS``; the finished persevere, with its peak RSS (KiB).
    ``kill_after_parts``: the producer holds inside the next part (:func:`held_after`), and
    persevere is SIGKILLed once ``state`` records that many parts."""
    hold_at = -1 if kill_after_parts is None else held_after(kill_after_parts)
    source = producer(size, seed, flip=-1 if flip is None else flip, hold_at=hold_at)
    # persevere's own peak RSS, measured by a small parent that waits for it alone.
    measure = (
        "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(p.returncode)"
    )
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", measure, sys.executable, "-m", "persevere", *map(str, args)],
            stdin=source.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **env},
        )  # fmt: skip
        assert source.stdout is not None
        source.stdout.close()
        if kill_after_parts is not None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if (
                    state.exists()
                    and state.read_bytes().count(b'"type":"part"') >= kill_after_parts
                ):
                    break
                time.sleep(0.005)
            subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)])  # persevere, under the meter
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        source.kill()
        source.wait()
        if source.stdin is not None:
            source.stdin.close()
    lines = stderr.strip().splitlines()
    rss_kib = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), rss_kib


def cp_args(bucket, state, *extra):
    return ["cp", "-", f"s3://{bucket}/k", "--state-file", state, "--no-progress", "-c", "4",
            *extra]  # fmt: skip


def records(state: Path) -> list[dict]:
    return [json.loads(line) for line in state.read_bytes().splitlines()]


# -- the schedule, without data -----------------------------------------------------------------
def test_a_48_8_tib_stream_with_its_size_is_10000_parts_of_5_gib():
    schedule = StreamSchedule.for_expected(MAX_OBJECT_SIZE)
    assert schedule.capacity == MAX_OBJECT_SIZE
    assert {schedule.size_of(n) for n in (1, 5000, MAX_PARTS)} == {5 * GiB}


def test_the_default_schedule():
    schedule = StreamSchedule()
    sizes = [schedule.size_of(n) for n in range(1, MAX_PARTS + 1)]
    assert sizes[0] == 8 * MiB and sizes[-1] == 4 * GiB
    assert sizes == sorted(sizes) and all(5 * MiB <= s <= 5 * GiB for s in sizes)
    assert sum(sizes) == schedule.capacity and 7.8 * TiB < schedule.capacity < 7.9 * TiB
    assert max(sizes[:5000]) == 128 * MiB  # <= 128 MiB parts for the first 242 GiB
    assert sum(sizes[:5000]) < 243 * GiB
    offsets = [schedule.offset(n) for n in (1, 2, 1001, 1002)]
    assert offsets == [0, 8 * MiB, 1000 * 8 * MiB, 1000 * 8 * MiB + 16 * MiB]


@pytest.mark.parametrize("expected", [1, 100 * MiB, 1 * TiB, 40 * TiB])
def test_a_stream_longer_than_expected_still_fits(expected):
    schedule = StreamSchedule.for_expected(expected)
    assert schedule.capacity >= 1.2 * expected  # room for a longer stream than announced


# -- against the local S3 -----------------------------------------------------------------------
@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_a_stream_uploads_byte_identical_in_bounded_memory(s3_env, bucket, s3_client, tmp_path):
    size = 200 * MiB + 12345
    result, rss_kib = pipe_into(s3_env, size, 1, *cp_args(bucket, tmp_path / "s", "--json"))
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 1)
    assert 0 < rss_kib < 256 * 1024, rss_kib  # the README's bound at the defaults
    assert json.loads(result.stdout)["size"] == size


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_kill_then_the_same_stream_resumes(s3_env, bucket, s3_client, tmp_path):
    size, state = 90 * MiB + 7, tmp_path / "s"
    args = cp_args(bucket, state, "--json")
    killed, _ = pipe_into(s3_env, size, 2, *args, kill_after_parts=4, state=state)
    assert killed.returncode != 0
    parts_before = {r["part_number"] for r in records(state) if r["type"] == "part"}
    assert len(parts_before) >= 4
    status = persevere_cli(s3_env, "upload", "status", "--state-file", state)
    assert "file:        standard input (a stream)" in status.stdout, status.stdout
    assert f"parts:       {len(parts_before)} done (" in status.stdout
    resumed, _ = pipe_into(s3_env, size, 2, *cp_args(bucket, state, "--json"))
    assert resumed.returncode == 0, resumed.stderr
    sent = json.loads(resumed.stdout)["bytes_sent"]
    assert sent <= size - len(parts_before) * 8 * MiB  # the recorded parts were not sent again
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 2)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.process
def test_a_completed_stream_resumed_reports_its_size_and_parts(s3_env, bucket, tmp_path):
    """``upload resume`` of a stream's completed upload: exit 0 (already completed), with the
    size and part count the completion recorded, not the header's (0 bytes in 1 part)."""
    size, state = 13_000_000, tmp_path / "s"
    done, _ = pipe_into(s3_env, size, 20, *cp_args(bucket, state))
    assert done.returncode == 0, done.stderr
    again = persevere_cli(s3_env, "upload", "resume", "--state-file", state, "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["already_completed"] is True
    assert (result["size"], result["part_count"], result["bytes_sent"]) == (size, 2, 0)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_different_stream_is_refused_at_its_first_differing_part(s3_env, bucket, s3_client,
                                                                   tmp_path):  # fmt: skip
    size, state = 60 * MiB, tmp_path / "s"
    pipe_into(s3_env, size, 3, *cp_args(bucket, state), kill_after_parts=4, state=state)
    before = state.read_bytes()
    other, _ = pipe_into(s3_env, size, 3, *cp_args(bucket, state), flip=8 * MiB + 5)  # part 2
    assert other.returncode == 1, other.stderr
    assert "the stream differs from the one being uploaded: part 2" in other.stderr
    assert "part 2 (bytes 8,388,608..16,777,215) gives other bytes" in other.stderr
    assert "persevere upload resume" in other.stderr and "Traceback" not in other.stderr
    assert state.read_bytes() == before  # nothing recorded, nothing lost
    same, _ = pipe_into(s3_env, size, 3, *cp_args(bucket, state))
    assert same.returncode == 0, same.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 3)


@pytest.mark.process
def test_an_early_end_with_an_expected_size_is_an_error(s3_env, bucket, s3_client, tmp_path):
    state = tmp_path / "s"
    short, _ = pipe_into(s3_env, 20 * MiB, 4, *cp_args(bucket, state, "--expected-size", "30MiB"))
    assert short.returncode == 1
    assert "the stream ended after 20,971,520 bytes, before the expected 31,457,280" in (
        short.stderr
    )
    assert records(state)[-1]["type"] == "part"  # not completed
    assert "k" not in [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get(
        "Contents", [])]  # fmt: skip


@pytest.mark.process
def test_an_empty_stream_is_an_empty_object(s3_env, bucket, s3_client, tmp_path):
    result, _ = pipe_into(s3_env, 0, 5, *cp_args(bucket, tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert s3_client.head_object(Bucket=bucket, Key="k")["ContentLength"] == 0


@pytest.mark.process
def test_a_terminal_is_not_a_stream(s3_env, bucket, tmp_path):
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "persevere", *map(str, cp_args(bucket, tmp_path / "s"))],
            stdin=terminal, capture_output=True, text=True, env={**os.environ, **s3_env},
            timeout=60,
        )  # fmt: skip
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 2
    assert "nothing is being piped in" in result.stderr


@pytest.mark.process
def test_a_redirected_file_is_read_as_that_file(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(12 * MiB, seed=6)
    with file.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "persevere", "cp", "-", f"s3://{bucket}/k", "--no-progress"],
            stdin=stdin, capture_output=True, text=True, env={**os.environ, **s3_env},
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"state file: {file}.persevere" in result.stderr  # beside it: a file, resumable
    assert records(Path(f"{file}.persevere"))[0]["file_path"] == str(file)


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_1_gib_stream(s3_env, bucket, s3_client, tmp_path):
    size = 1 * GiB
    result, rss_kib = pipe_into(s3_env, size, 7, *cp_args(bucket, tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 7)
    assert 0 < rss_kib < 256 * 1024, rss_kib
    print(f"1 GiB stream: peak RSS {rss_kib / 1024:.0f} MiB")


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_a_resumed_stream_given_another_expected_size_is_refused(s3_env, bucket, tmp_path):
    """Found by an audit: the new size was dropped, so a short stream completed, exit 0."""
    size, state = 40 * MiB, tmp_path / "s"
    pipe_into(s3_env, size, 5, *cp_args(bucket, state), kill_after_parts=1, state=state)
    before = state.read_bytes()
    refused, _ = pipe_into(s3_env, size, 5, *cp_args(bucket, state, "--expected-size", "60MiB"))
    assert refused.returncode == 2, refused.stderr
    assert "expected size none, not 62,914,560 bytes" in refused.stderr
    assert state.read_bytes() == before


# -- standard input: a run resumes only the source it is given ---------------------------------
def redirect_into(env, file, *args):
    """``persevere ARGS < file``: the finished persevere."""
    with Path(file).open("rb") as stdin:
        return subprocess.run(
            [sys.executable, "-m", "persevere", *map(str, args)], stdin=stdin,
            capture_output=True, text=True, env={**os.environ, **env}, timeout=300,
        )  # fmt: skip


def object_keys(s3_client, bucket):
    return [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def stream_journal(s3_client, bucket, state, expected_size=None, parts=(), **header):
    """The journal of a stream upload in progress, as ``cp -`` writes it: a real multipart
    upload, its header (``header`` changes it) and ``parts`` (PartRecords, not sent)."""
    from dataclasses import replace

    from persevere._journal import Journal
    from persevere._request import Request, Source
    from persevere._s3 import Endpoint

    schedule = StreamSchedule.for_expected(expected_size)
    upload_id = s3_client.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    request = Request(state, Source(Path("-"), stream=True), bucket, "k",
                      expected_size=expected_size)  # fmt: skip
    draft = request.new_header(Endpoint(os.environ["AWS_ENDPOINT_URL"]), None, None, schedule)
    journal = Journal.create(state)
    try:
        journal.write_header(replace(draft, upload_id=upload_id, **header))
        for part in parts:
            journal.append_part(part)
    finally:
        journal.close()


def test_a_file_never_resumes_a_stream(s3_env, bucket, s3_client, make_file, tmp_path):
    """``upload resume --file`` over a stream's state: refused as ``cp`` refuses it (the
    README: a file named where a stream was recorded), before any request. It was read by a
    file's plan: resumed when the file had the expected size, else "changed (size 0 -> N)"."""
    state, file = tmp_path / "s", make_file(11 * MiB, seed=19)
    stream_journal(s3_client, bucket, state, expected_size=11 * MiB)
    before = state.read_bytes()
    result = persevere_cli(s3_env, "upload", "resume", "--state-file", state, "--file", file)
    assert result.returncode == 2, result.stderr
    assert f"records an upload of standard input (a stream), not of the file {file}" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert state.read_bytes() == before and object_keys(s3_client, bucket) == []


def test_a_streams_header_without_its_schedule_is_corrupt(s3_env, bucket, s3_client, tmp_path):
    """Every stream recorded its schedule (``stream_every``). Without it, resume guessed twice
    and differently: parts doubling at every part to check the journal, all parts equal to
    read the stream, so the check accepted parts the reading never makes (issue 25, A)."""
    from persevere._journal import PartRecord

    state = tmp_path / "s"
    doubled = PartRecord(2, '"0123456789abcdef0123456789abcdef"', "AAAAAAAAAAA=", 16 * MiB)
    stream_journal(s3_client, bucket, state, parts=[doubled], stream_every=None)
    result = persevere_cli(s3_env, "upload", "resume", "--state-file", state)
    assert result.returncode == 1, result.stderr
    assert (f"{state}: the header is a stream's without its part schedule (stream_every): "
            "corrupt state file") in result.stderr  # fmt: skip
    assert "Traceback" not in result.stderr


def test_a_stream_part_that_does_not_fit_is_named_against_the_streams_schedule(
    s3_env, bucket, s3_client, tmp_path
):
    """A recorded part larger than the stream's schedule makes: corrupt, said in the stream's
    terms, not a file plan's ("plan of 1 parts of 8388608 bytes"; issue 25, B)."""
    from persevere._journal import PartRecord

    state = tmp_path / "s"
    large = PartRecord(1, '"0123456789abcdef0123456789abcdef"', "AAAAAAAAAAA=", 9 * MiB)
    stream_journal(s3_client, bucket, state, parts=[large])
    result = persevere_cli(s3_env, "upload", "resume", "--state-file", state)
    assert result.returncode == 1, result.stderr
    assert (f"{state}: part 1 (size {9 * MiB}) does not fit the upload's stream schedule of "
            f"parts of {8 * MiB} bytes, doubling every 1000 parts: corrupt state file"
            ) in result.stderr  # fmt: skip


@pytest.mark.parametrize("given_as", ["redirect", "path"])
@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_a_pipe_never_completes_the_upload_of_a_file(rule_proxy, bucket, s3_client,
                                                     make_file, tmp_path, given_as):  # fmt: skip
    """Found by a user (issue 23): ``cat other | cp - --state-file S`` over the state of
    ``cp - < data`` completed data's upload from its path, exit 0; the pipe was never read."""
    size, state = 40 * MiB, tmp_path / "s"
    data = make_file(size, seed=8)
    env, proxy = rule_proxy  # recorded: every run goes through it
    first = cp_args(bucket, state)
    if given_as == "redirect":
        with data.open("rb") as stdin:
            interrupt_after_parts(env, first, state, 1, stdin=stdin, proxy=proxy)
    else:
        interrupt_after_parts(env, [first[0], data, *first[2:]], state, 1, proxy=proxy)
    assert records(state)[0]["file_path"] == str(data)
    assert records(state)[-1]["type"] == "part"
    before = state.read_bytes()
    other, _ = pipe_into(env, size, 9, *cp_args(bucket, state))
    assert other.returncode == 2, other.stderr
    assert f"records an upload of the file {data}, not of standard input (a stream)" in (
        other.stderr
    )
    assert "Traceback" not in other.stderr
    assert state.read_bytes() == before and object_keys(s3_client, bucket) == []
    again = redirect_into(env, data, *cp_args(bucket, state))  # the file it records: resumed
    assert again.returncode == 0, again.stderr
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(data)


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_another_file_redirected_in_is_uploaded_or_refused(rule_proxy, bucket, s3_client,
                                                           make_file, tmp_path):  # fmt: skip
    """The state of ``cp - < data``, then ``cp - < other`` (same size): never data's bytes."""
    size, state = 40 * MiB, tmp_path / "s"
    data, other = make_file(size, seed=10), make_file(size, seed=11)
    env, proxy = rule_proxy  # recorded: every run goes through it
    with data.open("rb") as stdin:
        interrupt_after_parts(env, cp_args(bucket, state), state, 1, stdin=stdin, proxy=proxy)
    before = state.read_bytes()
    result = redirect_into(env, other, *cp_args(bucket, state))
    if result.returncode == 2:
        assert str(other) in result.stderr and str(data) in result.stderr
        assert state.read_bytes() == before and object_keys(s3_client, bucket) == []
    else:
        assert result.returncode == 0, result.stderr
        assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(other)


@pytest.mark.parametrize("expected", [None, "40MiB"])
@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_a_redirected_file_never_resumes_a_stream(s3_env, bucket, s3_client, make_file, tmp_path,
                                                  expected):  # fmt: skip
    """The state of ``producer | cp -``, then ``cp - < file`` of the same bytes (and size)."""
    size, state = 40 * MiB, tmp_path / "s"
    sizing = ["--expected-size", expected] if expected else []
    args = cp_args(bucket, state, *sizing)
    pipe_into(s3_env, size, 12, *args, kill_after_parts=1, state=state)
    before = state.read_bytes()
    assert records(state)[0]["file_path"] == "-" and records(state)[-1]["type"] == "part"
    file = tmp_path / "same.bin"
    with file.open("wb") as out:
        out.writelines(produced_blocks(size, 12))
    refused = redirect_into(s3_env, file, *args)
    assert refused.returncode == 2, refused.stderr
    assert f"records an upload of standard input (a stream), not of the file {file}" in (
        refused.stderr
    )
    assert state.read_bytes() == before and object_keys(s3_client, bucket) == []
    resumed, _ = pipe_into(s3_env, size, 12, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 12)


# -- a stream cut short: whole parts only, resumable with the whole stream ----------------------
@pytest.mark.parametrize(("cut", "resumer"), [(20 * MiB, "cp"), (0, "upload resume")])
@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_a_stream_cut_short_of_its_expected_size_resumes_whole(s3_env, bucket, s3_client,
                                                               tmp_path, cut, resumer):  # fmt: skip
    """Found by a user (issue 23): ``(head -c 20M src; exit 3) | cp - --expected-size 50MiB``
    recorded the cut-off part 3 (4 MiB of 8), so the whole stream differed there on every later
    run (exit 1, "part 3 gives other bytes"): only abort got out. A cut at 0 recorded an empty
    part 1 the same way."""
    size, state = 50 * MiB, tmp_path / "s"
    args = cp_args(bucket, state, "--expected-size", "50MiB")
    short, _ = pipe_into(s3_env, cut, 13, *args)  # the stream's first bytes; then it ends
    assert short.returncode == 1, short.stderr
    assert f"the stream ended after {cut:,} bytes, before the expected {size:,}" in short.stderr
    assert f"persevere upload resume --state-file {state}" in short.stderr
    parts = {r["part_number"]: r["size"] for r in records(state) if r["type"] == "part"}
    assert parts == {n: 8 * MiB for n in range(1, cut // (8 * MiB) + 1)}  # whole parts only
    if resumer == "cp":
        whole, _ = pipe_into(s3_env, size, 13, *args)
    else:
        whole, _ = pipe_into(s3_env, size, 13, "upload", "resume", "--state-file", state,
                             "--no-progress")  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 13)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_short_last_part_recorded_earlier_goes_on_whole(s3_env, s3_server, bucket, s3_client,
                                                          tmp_path):  # fmt: skip
    """A stream without an expected size ended inside part 3 and its completion failed: the
    journal holds part 3 short (as 3d573e8 recorded it with one, too). The whole stream, piped
    in next, gives the same bytes there and more: part 3 goes again whole (it was a dead end)."""
    size, state = 30 * MiB, tmp_path / "s"
    upstream = urlsplit(s3_server.endpoint_url)
    refuse_complete = Rule("POST", "uploadId", refuse=(403, "AccessDenied"))
    with RuleProxy((upstream.hostname, upstream.port), [refuse_complete]) as proxy:
        cut, _ = pipe_into(s3_env, 20 * MiB, 16, *cp_args(bucket, state, "--endpoint-url",
                                                          proxy.url))  # fmt: skip
    assert cut.returncode == 1, cut.stderr
    parts = {r["part_number"]: r["size"] for r in records(state) if r["type"] == "part"}
    assert parts == {1: 8 * MiB, 2: 8 * MiB, 3: 4 * MiB}
    args = cp_args(bucket, state, "--endpoint-url", s3_server.endpoint_url, "--json")
    whole, _ = pipe_into(s3_env, size, 16, *args)
    assert whole.returncode == 0, whole.stderr
    assert "part 3: an earlier run's stream ended in it, after 20.0 MiB" in whole.stderr
    assert json.loads(whole.stdout)["bytes_sent"] == size - 16 * MiB
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 16)


@pytest.mark.slow  # 6-10 s: the default run stays under 3 minutes (make test-all runs it)
@pytest.mark.process
def test_a_stream_that_differs_late_records_nothing_of_itself(s3_env, s3_server, bucket,
                                                              s3_client, tmp_path):  # fmt: skip
    """Resuming, parts the other stream sent before its first recorded part was read were
    recorded: the right stream, piped in next, differed from them (a dead end)."""
    size, state = 48 * MiB, tmp_path / "s"
    args = cp_args(bucket, state)
    pipe_into(s3_env, size, 17, *args, kill_after_parts=3, state=state)
    lines = state.read_bytes().splitlines(keepends=True)
    last = max(r["part_number"] for r in records(state) if r["type"] == "part")
    # A crash between S3's answers and the journal's fsyncs: only the last part is recorded.
    keep = [line for line in lines if b'"type":"part"' not in line or
            json.loads(line)["part_number"] == last]  # fmt: skip
    state.write_bytes(b"".join(keep))
    before = state.read_bytes()
    other = random.Random(18).randbytes(size)
    first_md5 = hashlib.md5(other[: 8 * MiB]).hexdigest()
    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", *map(str, args)], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **s3_env},
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(other[: (last - 1) * 8 * MiB])  # the parts before the recorded one
    proc.stdin.flush()
    upload_id = records(state)[0]["upload_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the other stream's part 1 is on S3
        listed = s3_client.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
        if any(p["PartNumber"] == 1 and p["ETag"].strip('"') == first_md5
               for p in listed.get("Parts", [])):  # fmt: skip
            break
        time.sleep(0.02)
    time.sleep(0.5)  # (3d573e8 recorded it at once)
    with contextlib.suppress(BrokenPipeError):  # it stops reading at the differing part
        proc.stdin.write(other[(last - 1) * 8 * MiB :])
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    assert proc.stderr is not None
    with proc.stderr:
        stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 1, stderr
    assert state.read_bytes() == before
    assert f"part {last} (bytes {(last - 1) * 8 * MiB:,}..{last * 8 * MiB - 1:,}) gives other" in (
        stderr.decode()
    )
    assert "nothing of this stream was recorded" in stderr.decode()
    right, _ = pipe_into(s3_env, size, 17, *args)
    assert right.returncode == 0, right.stderr
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 17)


def test_a_completed_stream_resumed_says_its_size_and_parts(s3_env, bucket, s3_client, tmp_path):
    """``upload resume`` of a completed stream (a supervisor's re-run): it said "already
    completed s3://B/k: 0 B in 1 part(s)", and persevere.resume gave size 0, 1 part: the size
    of a stream is not in its header (unknown at start), but in its completion."""
    size, state = 2 * 8 * MiB + 1000, tmp_path / "s"
    data = tmp_path / "data"
    data.write_bytes(random.Random(19).randbytes(size))
    with data.open("rb") as source:  # its descriptor, read as a stream
        made = anyio.run(lambda: start_stream(bucket, "k", state, source.fileno()))
    assert (made.size, made.part_count) == (size, 3)
    result = persevere_cli(s3_env, "upload", "resume", "--state-file", state, "--json")
    assert result.returncode == 0, result.stderr
    said = json.loads(result.stdout)
    assert (said["size"], said["part_count"], said["bytes_sent"]) == (size, 3, 0)
    assert said["already_completed"] is True
    text = persevere_cli(s3_env, "upload", "resume", "--state-file", state)
    assert text.stdout.startswith(f"already completed s3://{bucket}/k: 16.0 MiB in 3 part(s)")
    again = persevere.resume_sync(state)
    assert (again.size, again.part_count, again.already_completed) == (size, 3, True)
    assert sha256_of_object(s3_client, bucket, "k") == sha256_of_file(data)


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_stream_whose_client_cannot_be_made_leaves_no_state_file(
    s3_env, bucket, s3_client, tmp_path
):
    """A stream's start that failed before anything was created (a profile that does not
    exist) left an empty state file: the same command, corrected, then said "state file ...
    already exists" and "the upload is resumable", and resume that it is empty."""
    for command in (["upload", "start"], ["cp"]):
        state = tmp_path / f"s-{command[0]}"
        args = [*command, "-", f"s3://{bucket}/k", "--state-file", state, "--no-progress"]
        refused = persevere_cli(s3_env, *args, "--profile", "nope", input="hello")
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.splitlines() == ["persevere: error: --profile: AWS profile 'nope' "
                                               "not found"]  # fmt: skip
        assert not state.exists(), command
        again = persevere_cli(s3_env, *args, input="hello")
        assert again.returncode == 0, again.stderr
        assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"hello"


def test_a_file_given_a_finished_stream_state_file_is_not_told_to_resume_it(
    s3_env, bucket, tmp_path
):
    """``cp FILE`` with the state file of a stream upload that completed: refused (it records
    another kind of source), with a hint that said "to resume it, pipe the same stream in",
    when nothing is left to resume."""
    data, state = tmp_path / "data", tmp_path / "s"
    data.write_bytes(b"x" * 1000)
    with data.open("rb") as source:
        anyio.run(lambda: start_stream(bucket, "k", state, source.fileno()))
    result = persevere_cli(s3_env, "cp", data, f"s3://{bucket}/k", "--state-file", state)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"persevere: error: --state-file: state file {state} records an upload of standard "
        f"input (a stream), not of the file {data}",
        "persevere: that upload completed: to upload the file, give another state file",
    ]
