"""The journal: append-only JSONL that survives a crash at any byte."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persevere import StateFileError, StateFileExists, StateFileLocked, StateFileUnwritable
from persevere._journal import (
    FORMAT,
    FORMAT_VERSION,
    Header,
    Journal,
    PartRecord,
    _dumps,
    _header_line,
    read_state,
    replay,
)

HEADER = Header(
    bucket="bucket",
    key="dumps/dump.sql",
    upload_id="upload-1",
    endpoint_url="http://127.0.0.1:8333",
    region=None,
    profile=None,
    file_path="/data/dump.sql",
    file_size=20 * 1024 * 1024,
    mtime_ns=1_700_000_000_000_000_000,
    part_size=8 * 1024 * 1024,
    checksum_algorithm="CRC64NVME",
    checksum_type="FULL_OBJECT",
    created_at="2024-01-01T00:00:00Z",
    tool_version="0.1.0",
)


def part(number: int, etag: str | None = None, size: int = 8 * 1024 * 1024) -> PartRecord:
    return PartRecord(number, etag or f'"etag-{number}"', f"crc{number}==", size)


def line(record: dict | list) -> bytes:
    """One journal line, serialised the way Journal writes it."""
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def header_line(**changes) -> bytes:
    return line(
        {"type": "header", "format": FORMAT, "version": FORMAT_VERSION, **asdict(HEADER)} | changes
    )


def part_line(record: PartRecord) -> bytes:
    return line({"type": "part", **asdict(record)})


def write_journal(path: Path, parts: list[PartRecord], outcome: str | None = None) -> None:
    journal = Journal.create(path)
    try:
        journal.write_header(HEADER)
        for record in parts:
            journal.append_part(record)
        if outcome is not None:
            journal.append_outcome(outcome, etag='"final-2"')
    finally:
        journal.close()


# -- replay ----------------------------------------------------------------------------------


def test_replay_header_parts_and_outcome():
    data = header_line() + part_line(part(1)) + part_line(part(2)) + line({"type": "completed"})
    state = replay(data)
    assert state.header == HEADER
    assert state.parts == {1: part(1), 2: part(2)}
    assert state.finished == "completed"
    assert state.outcome == {"type": "completed"}
    assert state.valid_length == len(data)
    assert state.torn_tail is False


def test_replay_header_only():
    data = header_line()
    state = replay(data)
    assert state.header == HEADER
    assert state.parts == {}
    assert state.finished is None
    assert state.valid_length == len(data)


def test_replay_aborted():
    state = replay(header_line() + line({"type": "aborted", "reason": "user"}))
    assert state.finished == "aborted"


def test_torn_last_line_is_ignored():
    whole = header_line() + part_line(part(1))
    torn = part_line(part(2))[:-9]
    state = replay(whole + torn)
    assert state.parts == {1: part(1)}
    assert state.torn_tail is True
    assert state.valid_length == len(whole)


def test_last_line_missing_only_its_newline_is_still_torn():
    """Its fsync never returned, so the part never counted, even if the JSON is whole."""
    whole = header_line() + part_line(part(1))
    state = replay(whole + part_line(part(2))[:-1])
    assert state.parts == {1: part(1)}
    assert state.torn_tail is True
    assert state.valid_length == len(whole)


def test_later_duplicate_part_wins():
    again = part(1, etag='"second"')
    state = replay(header_line() + part_line(part(1)) + part_line(part(2)) + part_line(again))
    assert state.parts == {1: again, 2: part(2)}


def test_malformed_line_in_the_middle_is_skipped_and_named():
    """Resume rebuilds what a damaged line recorded from ListParts and the file's bytes."""
    data = header_line() + part_line(part(1)) + b'{"type":"part","part_nu\n' + part_line(part(2))
    state = replay(data, "journal.persevere")
    assert state.damaged_lines == [3]
    assert state.parts == {1: part(1), 2: part(2)}
    assert state.valid_length == len(data)


def test_blank_line_in_the_middle_is_damage():
    state = replay(header_line() + b"\n" + part_line(part(1)))
    assert state.damaged_lines == [2] and state.parts == {1: part(1)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"\n  \n", "is empty"),
        (b"\x00\xffgarbage\n", "is not a persevere state file"),
        (b"just some text\nmore text\n", "is not a persevere state file"),
        (b'{"a":1}\n', "is not a persevere state file"),
        (b"[1, 2, 3]\n", "is not a persevere state file"),
        (b'{"format":"persevere-journal"}\n', "header has no format version"),
        (header_line()[:-20], "header line is incomplete"),
        (header_line(version=99), r"newer persevere \(format 99; this one reads 1\)"),
        (header_line(version=99), "upgrade persevere"),
    ],
)
def test_replay_refuses(data, message):
    with pytest.raises(StateFileError, match=message):
        replay(data)


def test_header_missing_a_field():
    record = json.loads(header_line())
    del record["upload_id"]
    with pytest.raises(StateFileError, match="header lacks 'upload_id'"):
        replay(line(record))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("file_size", "20", "'file_size' is not an integer"),
        ("part_size", None, "'part_size' is not an integer"),
        ("upload_id", 7, "'upload_id' is not a string"),
    ],
)
def test_header_field_types(field, value, message):
    with pytest.raises(StateFileError, match=message):
        replay(header_line(**{field: value}))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"type": "part", "part_number": 1, "etag": "e", "size": 1},
            "line 2: part record lacks 'checksum'",
        ),
        (
            {"type": "part", "part_number": "1", "etag": "e", "checksum": "c", "size": 1},
            "line 2: part number",
        ),
        (
            {"type": "part", "part_number": 1, "etag": None, "checksum": "c", "size": 1},
            "line 2: part ETag",
        ),
        ({"type": "mystery"}, "line 2 is not a journal record"),
        ([1, 2], "line 2 is not a journal record"),
    ],
)
def test_bad_records_are_skipped_with_their_line(record, message):
    state = replay(header_line() + line(record) + part_line(part(1)))
    assert state.damaged_lines == [2]
    assert state.parts == {1: part(1)}


@pytest.mark.parametrize("invalid", [3, "1", [[1]], [1.0], [None]])
def test_a_source_record_whose_invalid_parts_are_not_numbers_is_damage(invalid):
    """A source line whose 'invalid' is not a list of part numbers (an edit, bit rot that left
    valid JSON) is skipped as damaged, like any bad record: it neither crashes replay
    (TypeError) nor drops a recorded part, and its identity is not taken."""
    source = {"type": "source", "file_path": "/other", "file_size": 1, "mtime_ns": 1}
    state = replay(header_line() + part_line(part(1)) + line(source | {"invalid": invalid}))
    assert state.damaged_lines == [3]
    assert state.parts == {1: part(1)} and state.source is None and not state.invalid


@pytest.mark.parametrize(
    "after", [part_line(part(3)), line({"type": "completed"}), line({"type": "aborted"})]
)
def test_record_after_completed_is_refused(after):
    data = header_line() + part_line(part(1)) + line({"type": "completed"}) + after
    with pytest.raises(
        StateFileError, match="line 4 follows the upload's final 'completed' record"
    ):
        replay(data)


def test_torn_line_after_completed_is_ignored():
    whole = header_line() + line({"type": "completed"})
    state = replay(whole + b'{"type":"pa')
    assert state.finished == "completed"
    assert state.valid_length == len(whole)


# -- Journal ---------------------------------------------------------------------------------


def test_appends_write_one_line_each(tmp_path):
    path = tmp_path / "s.persevere"
    write_journal(path, [part(1), part(2), part(1, etag='"again"')], outcome="completed")
    data = path.read_bytes()
    lines = data.split(b"\n")
    assert data.endswith(b"\n")
    assert len(lines) == 6  # header, 3 parts, completed, and b"" after the last newline
    assert lines[-1] == b""
    assert [json.loads(raw)["type"] for raw in lines[:-1]] == [
        "header",
        "part",
        "part",
        "part",
        "completed",
    ]
    state = replay(data)
    assert state.parts == {1: part(1, etag='"again"'), 2: part(2)}
    assert state.outcome == {"type": "completed", "etag": '"final-2"'}
    assert read_state(path) == state


def test_create_refuses_an_existing_file(tmp_path):
    path = tmp_path / "s.persevere"
    write_journal(path, [part(1)])
    before = path.read_bytes()
    with pytest.raises(StateFileExists, match="already exists") as info:
        Journal.create(path)
    assert info.value.next_step == "resume" and info.value.state_file == str(path)
    assert path.read_bytes() == before


def test_create_in_a_missing_directory(tmp_path):
    with pytest.raises(StateFileError, match="cannot create state file"):
        Journal.create(tmp_path / "nowhere" / "s.persevere")


def test_second_open_of_a_locked_file_is_refused(tmp_path):
    path = tmp_path / "s.persevere"
    write_journal(path, [part(1)])
    first, _ = Journal.open(path)
    try:
        # flock locks belong to the open file description: a second open() conflicts even here.
        with pytest.raises(StateFileLocked, match="in use by another persevere process"):
            Journal.open(path)
    finally:
        first.close()
    second, state = Journal.open(path)  # the lock went with the close
    second.close()
    assert state.parts == {1: part(1)}


def test_open_while_creator_holds_the_lock_is_refused(tmp_path):
    """The lock is taken before the header exists, so resume cannot race start.

    Checked through a raw flock, as another process would see it.
    """
    import fcntl

    path = tmp_path / "s.persevere"
    journal = Journal.create(path)
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        journal.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by close()
    finally:
        os.close(fd)


def test_open_missing_file(tmp_path):
    with pytest.raises(StateFileError, match="does not exist"):
        Journal.open(tmp_path / "absent.persevere")
    with pytest.raises(StateFileError, match="does not exist"):
        read_state(tmp_path / "absent.persevere")


def test_open_a_directory(tmp_path):
    with pytest.raises(StateFileError, match="is a directory"):
        read_state(tmp_path)


def test_open_corrupt_file_releases_it(tmp_path):
    path = tmp_path / "s.persevere"
    path.write_bytes(b'{"a":1}\n')
    with pytest.raises(StateFileError, match="not a persevere state file"):
        Journal.open(path)
    with pytest.raises(StateFileError, match="not a persevere state file"):
        Journal.open(path)  # not left locked by the failed attempt


def test_open_truncates_a_torn_tail_then_appends_cleanly(tmp_path):
    path = tmp_path / "s.persevere"
    write_journal(path, [part(1), part(2)])
    whole = path.read_bytes()
    with path.open("ab") as f:
        f.write(part_line(part(3))[:-7])  # the crash: a prefix of the last write
    journal, state = Journal.open(path)
    try:
        assert state.parts == {1: part(1), 2: part(2)}
        assert state.torn_tail is False  # handled
        assert path.read_bytes() == whole
        journal.append_part(part(3))
    finally:
        journal.close()
    data = path.read_bytes()
    assert data == whole + part_line(part(3))
    state = replay(data)
    assert state.parts == {1: part(1), 2: part(2), 3: part(3)}
    assert state.torn_tail is False


def test_discard_removes_a_headerless_file(tmp_path):
    path = tmp_path / "s.persevere"
    journal = Journal.create(path)
    journal.discard()
    assert not path.exists()


# -- the crash property ----------------------------------------------------------------------

part_records = st.builds(
    PartRecord,
    part_number=st.integers(1, 10_000),
    etag=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    checksum=st.text(alphabet="ABCDEFabcdef0123456789+/=", max_size=16),
    size=st.integers(0, 5 * 1024**3),
)


@settings(deadline=None, max_examples=200)
@given(parts=st.lists(part_records, max_size=25), data=st.data())
def test_any_crash_replays_to_the_whole_lines_before_it(tmp_path_factory, parts, data):
    path = tmp_path_factory.mktemp("crash") / "s.persevere"
    journal = Journal.create(path)
    ends = []  # byte offset where each part's line (newline included) ends
    try:
        journal.write_header(HEADER)
        header_length = path.stat().st_size
        for record in parts:
            journal.append_part(record)
            ends.append(path.stat().st_size)
    finally:
        journal.close()
    size = path.stat().st_size
    # Cuts next to a line's end are the interesting ones (a whole JSON object without its
    # newline is still torn), and a uniform draw would rarely land there.
    near_ends = sorted(
        {c for end in ends for c in (end - 1, end, end + 1) if header_length <= c <= size}
    )
    anywhere = st.integers(header_length, size)
    cut = data.draw(
        st.one_of(anywhere, st.sampled_from(near_ends)) if near_ends else anywhere, label="cut"
    )
    os.truncate(path, cut)

    expected: dict[int, PartRecord] = {}
    for record, end in zip(parts, ends, strict=True):
        if end <= cut:
            expected[record.part_number] = record  # later duplicates win
    whole_end = max([header_length, *(end for end in ends if end <= cut)])

    state = replay(path.read_bytes())
    assert state.header == HEADER
    assert state.parts == expected
    assert state.valid_length == whole_end
    assert state.torn_tail is (cut != whole_end)

    # Resuming cuts the torn tail; the next append lands on a line of its own.
    journal, resumed = Journal.open(path)
    try:
        assert resumed.parts == expected
        journal.append_part(PartRecord(10_001, '"after"', "x", 1))
    finally:
        journal.close()
    after = replay(path.read_bytes())
    assert after.parts == {**expected, 10_001: PartRecord(10_001, '"after"', "x", 1)}
    assert after.torn_tail is False


def test_header_alone_replays_to_an_upload_with_nothing_done():
    data = _dumps(_header_line(HEADER))
    state = replay(data)
    assert state.header == HEADER
    assert state.parts == {}
    assert state.finished is None
    assert state.torn_tail is False
    assert state.valid_length == len(data)


@settings(deadline=None, max_examples=50)
@given(
    numbers=st.lists(st.integers(1, 200), min_size=1, max_size=60),
    workers=st.integers(1, 8),
    crash_fraction=st.floats(0, 1),
)
def test_parts_finishing_in_any_interleaving_then_a_crash_replay_consistently(
    tmp_path_factory, numbers, workers, crash_fraction
):
    """Parts complete on worker threads in whatever order they like, each appending its line;
    then the machine dies at an arbitrary byte. Replay gives exactly the parts whose lines
    were whole, each line intact (no interleaved bytes), whatever the interleaving."""
    import threading

    path = tmp_path_factory.mktemp("interleave") / "s.persevere"
    journal = Journal.create(path)
    journal.write_header(HEADER)
    chunks = [numbers[i::workers] for i in range(workers)]

    def worker(mine):
        for n in mine:
            journal.append_part(PartRecord(n, f'"etag-{n}"', f"crc{n}", n))

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.close()

    data = path.read_bytes()
    header_length = data.index(b"\n") + 1
    cut = header_length + int((len(data) - header_length) * crash_fraction)
    os.truncate(path, cut)
    state = replay(path.read_bytes())

    whole_lines = data[:cut].split(b"\n")[1:-1]  # the header, then complete part lines
    expected = {}
    for raw in whole_lines:
        record = json.loads(raw)  # every whole line parses: appends never interleave
        expected[record["part_number"]] = PartRecord(
            record["part_number"], record["etag"], record["checksum"], record["size"]
        )
    assert state.parts == expected
    assert all(p == PartRecord(n, f'"etag-{n}"', f"crc{n}", n) for n, p in state.parts.items())
    assert set(state.parts) <= set(numbers)


def test_a_failed_append_leaves_the_file_whole_and_stops_appends(tmp_path, monkeypatch):
    """Disk full mid-line: the torn bytes are cut, and no later line may follow them."""
    import persevere._journal as journal_module

    path = tmp_path / "s.persevere"
    journal = Journal.create(path)
    journal.write_header(HEADER)
    journal.append_part(part(1))
    before = path.read_bytes()
    real_write = os.write

    def half_write(fd, data):
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(journal_module.os, "write", half_write)
    with pytest.raises(StateFileUnwritable, match="short write") as failed:
        journal.append_part(part(2))
    assert failed.value.exit_code == 3 and failed.value.next_step == "resume"
    monkeypatch.setattr(journal_module.os, "write", real_write)
    assert path.read_bytes() == before  # the half line was cut
    with pytest.raises(StateFileUnwritable, match="cannot write state file"):
        journal.append_part(part(3))  # another worker's part: refused, not appended
    journal.close()
    assert replay(path.read_bytes()).parts == {1: part(1)}


def test_the_header_gives_back_its_plan():
    from dataclasses import replace

    from persevere._plan import PartPlan, StreamSchedule

    assert HEADER.plan() == PartPlan(20 * 1024 * 1024, 8 * 1024 * 1024)
    stream = replace(HEADER, file_path="-", file_size=0, stream_every=1000)
    assert stream.plan() == StreamSchedule(8 * 1024 * 1024, 1000)
    with pytest.raises(StateFileError, match=r"^s: the header is a stream's without its part "):
        replace(stream, stream_every=None).plan("s")
