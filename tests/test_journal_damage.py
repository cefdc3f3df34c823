"""Damaged journals (an edit, bit rot that left valid JSON): every field of every record is
checked, not only those declared ``int`` or ``str``. A damaged header is refused with one
line naming the file (exit 1); a damaged record after it is skipped and named, as any
damaged line is (what it recorded is rebuilt from S3). Never a traceback; and every header
a real persevere wrote (None values, older files without the newer fields) is still read.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from persevere import StateFileError
from persevere._journal import FORMAT, FORMAT_VERSION, replay
from persevere._tree_journal import _replay as replay_tree
from tests.conftest import persevere
from tests.httpproxy import HttpProxy, Reply
from tests.test_journal import HEADER, header_line, line, part, part_line

MiB = 1024 * 1024


# -- the header ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("shards", "4", "'shards' is not an integer"),
        ("ctime_ns", "x", "'ctime_ns' is not an integer"),
        ("inode", 1.5, "'inode' is not an integer"),
        ("device", [], "'device' is not an integer"),
        ("stream_every", "x", "'stream_every' is not an integer"),
        ("expected_size", "x", "'expected_size' is not an integer"),
        ("object_options", 5, "'object_options' is not an object"),
        ("object_options", [], "'object_options' is not an object"),
        ("checksum_pinned", "no", "'checksum_pinned' is not true or false"),
        ("no_overwrite", 1, "'no_overwrite' is not true or false"),
        ("part_size", True, "'part_size' is not an integer"),
        ("mtime_ns", False, "'mtime_ns' is not an integer"),
        ("endpoint_url", 5, "'endpoint_url' is not a string"),
        ("region", 5, "'region' is not a string"),
        ("profile", 5, "'profile' is not a string"),
        ("ca_bundle", {}, "'ca_bundle' is not a string"),
        ("file_size", -5, "'file_size' is -5, below 0"),
        ("part_size", 0, "'part_size' is 0, below 1"),
        ("part_size", -5, "'part_size' is -5, below 1"),
        ("stream_every", 0, "'stream_every' is 0, below 1"),
        ("expected_size", -1, "'expected_size' is -1, below 0"),
    ],
)
def test_a_damaged_header_field_is_refused_naming_it(field, value, message):
    with pytest.raises(StateFileError, match=f"^j.persevere: header field {message}$"):
        replay(header_line(**{field: value}) + part_line(part(1)), "j.persevere")


OLD = {  # the header of the first format 1 files: none of the optional fields
    name: value
    for name, value in asdict(HEADER).items()
    if name not in ("ca_bundle", "object_options", "ctime_ns", "inode", "device",
                    "checksum_pinned", "stream_every", "expected_size", "shards", "no_overwrite")
}  # fmt: skip


@pytest.mark.parametrize(
    "header",
    [
        asdict(HEADER),  # every optional field None (or false)
        OLD,
        asdict(HEADER)
        | {
            "region": "eu-west-1",
            "profile": "p",
            "ca_bundle": "/ca.pem",
            "object_options": {"ContentType": "text/plain", "Metadata": {"a": "b"}},
            "ctime_ns": -1,
            "inode": 0,
            "device": 0,
            "checksum_pinned": True,
            "shards": 4,
            "no_overwrite": True,
            "mtime_ns": -(10**18),
        },
        asdict(HEADER) | {"file_path": "-", "file_size": 0, "mtime_ns": 0, "stream_every": 128},
        asdict(HEADER) | {"file_path": "-", "expected_size": 0, "file_size": 0, "stream_every": 1},
        asdict(HEADER) | {"file_size": 0, "part_size": 1, "endpoint_url": None},
    ],
)
def test_every_header_persevere_writes_is_read(header):
    data = line({"type": "header", "format": FORMAT, "version": FORMAT_VERSION, **header})
    assert asdict(replay(data + part_line(part(1))).header) == asdict(HEADER) | header


# -- the final record ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        {"type": "completed", "size": "x"},
        {"type": "completed", "size": None},
        {"type": "completed", "size": True},
        {"type": "completed", "etag": 5, "size": 1},
        {"type": "completed", "checksum": ["c"], "size": 1},
        {"type": "completed", "expected_etag": {}, "size": 1},
        {"type": "aborted", "at": 5},
        {"type": "aborted", "reason": 1},
    ],
)
def test_a_damaged_final_record_is_a_damaged_line(record):
    """Skipped and named as any damaged line: the upload's end is then learnt from S3 (the
    upload gone, the object checked), never a ValueError where the size is read."""
    state = replay(header_line() + part_line(part(1)) + line(record) + part_line(part(2)))
    assert state.damaged_lines == [3]
    assert state.outcome is None and state.parts == {1: part(1), 2: part(2)}


@pytest.mark.parametrize(
    "record",
    [
        {"type": "completed"},
        {"type": "completed", "etag": '"e-2"'},
        {
            "type": "completed",
            "etag": '"e-2"',
            "expected_etag": None,
            "checksum": None,
            "size": 0,
            "at": "2026-01-01T00:00:00+00:00",
        },
        {
            "type": "completed",
            "etag": '"e-2"',
            "expected_etag": '"e-2"',
            "checksum": "c==",
            "size": 20 * MiB,
            "at": "2026-01-01T00:00:00+00:00",
            "later": [1],
        },
        {"type": "aborted"},
        {"type": "aborted", "at": "2026-01-01T00:00:00+00:00", "reason": "the key exists"},
    ],
)
def test_every_final_record_persevere_writes_is_read(record):
    state = replay(header_line() + part_line(part(1)) + line(record))
    assert state.outcome == record and not state.damaged_lines


# -- a tree's journal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("ctime_ns", "x"), ("inode", []), ("device", 1.5), ("checksum", 5), ("size", True)],
)
def test_a_damaged_done_record_of_a_tree_is_a_damaged_line(field, value):
    """Its file is sent again, and the run says a line was damaged (it said nothing)."""
    done = {"type": "done", "rel": "a", "key": "p/a", "size": 1, "mtime_ns": 1, "ctime_ns": 1,
            "inode": 1, "device": 1, "etag": '"e"', "checksum": None}  # fmt: skip
    kept, damaged = replay_tree([json.dumps(done | {field: value}).encode()], "t")
    assert (kept, damaged) == ({}, 1)
    assert replay_tree([json.dumps(done).encode()], "t")[1] == 0


# -- through the CLI, against the server -----------------------------------------------------


def _completed(s3_env, bucket, make_file, tmp_path) -> tuple[Path, Path, list[dict]]:
    file, state = make_file(6 * MiB, seed=31), tmp_path / "s.state"
    cp = persevere(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress")
    assert cp.returncode == 0, cp.stderr
    return file, state, [json.loads(raw) for raw in state.read_bytes().splitlines()]


def _write(state: Path, records: list[dict]) -> bytes:
    data = b"".join(line(record) for record in records)
    state.write_bytes(data)
    return data


def _one_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    errors = [text for text in result.stderr.splitlines() if text.startswith("persevere: error")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("object_options", 5, "header field 'object_options' is not an object"),  # TypeError
        ("part_size", 0, "header field 'part_size' is 0, below 1"),  # ZeroDivisionError
        ("endpoint_url", 5, "header field 'endpoint_url' is not a string"),  # AttributeError
        ("region", 5, "header field 'region' is not a string"),  # TypeError
        ("profile", 7, "header field 'profile' is not a string"),  # "--profile: ... 7 not found"
    ],
)
def test_every_command_refuses_a_damaged_header_in_one_line(
    s3_env, bucket, make_file, tmp_path, field, value, message
):
    file, state, records = _completed(s3_env, bucket, make_file, tmp_path)
    header, *rest = records
    records = [header | {field: value}, *rest[:-1]]  # (in progress: abort would send)
    data = _write(state, records)
    for args in (
        ["upload", "status", "--state-file", state],
        ["upload", "resume", "--state-file", state, "--no-progress"],
        ["upload", "abort", "--state-file", state],
        ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"],
    ):
        result = persevere(s3_env, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert _one_line(result) == f"persevere: error: {state}: {message}", args
        assert state.read_bytes() == data


def test_a_completed_record_whose_size_is_damaged(s3_env, s3_server, bucket, make_file, tmp_path):
    """It was taken as the journal's word: with HeadObject refused (no s3:GetObject), its
    size was read with int(), a ValueError traceback; with HeadObject, the object was said
    "replaced" (its size is not "x"). Now the damaged line is skipped and named; the upload,
    gone from S3, is found completed when the object can be checked, and recorded again."""
    _, state, records = _completed(s3_env, bucket, make_file, tmp_path)
    *before, completed = records
    _write(state, [*before, completed | {"size": "x"}])
    resume = ["upload", "resume", "--state-file", state, "--no-progress"]

    def no_head(exchange):
        return Reply(403, b"", ()) if exchange.operation == "HeadObject" else None

    with HttpProxy.in_front_of(s3_server.endpoint_url, reply=no_head) as proxy:
        unchecked = persevere(s3_env, *resume, "--endpoint-url", proxy.url)
    assert unchecked.returncode == 1
    assert "no longer exists on S3" in _one_line(unchecked)  # (cannot tell it completed)

    result = persevere(s3_env, *resume)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert "already completed" in result.stdout
    assert f"{state}: line(s) {len(records)} damaged" in result.stderr
    assert json.loads(state.read_bytes().splitlines()[-1]) | {"at": 0} == completed | {"at": 0}


def test_a_damaged_header_of_a_tree_is_refused(s3_env, bucket, tmp_path):
    (root := tmp_path / "d").mkdir()
    (root / "a").write_bytes(b"a")
    state = tmp_path / "t.state"
    args = ["cp", root, f"s3://{bucket}/p/", "--state-file", state, "--no-progress"]
    assert persevere(s3_env, *args).returncode == 0
    header, *rest = [json.loads(raw) for raw in state.read_bytes().splitlines()]
    (root / "b").write_bytes(b"b")  # a file to send: with its options
    data = _write(state, [header | {"object_options": 5}, *rest])
    result = persevere(s3_env, *args)
    assert result.returncode == 1, result.stderr
    assert _one_line(result) == (
        f"persevere: error: state file {state}: header field 'object_options' is not an object"
    )
    assert state.read_bytes() == data


def _without_initiated(upstream: str):
    """A ListMultipartUploads answer without the uploads' start times (an endpoint that does
    not say them): the real server's answer, its <Initiated> elements taken out."""

    def reply(exchange):
        if exchange.operation != "ListMultipartUploads":
            return None
        where = urlsplit(upstream)
        connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
        try:
            connection.request(exchange.method, exchange.target, headers=dict(exchange.headers))
            answer = connection.getresponse()
            body = re.sub(rb"<Initiated>[^<]*</Initiated>", b"", answer.read())
            return Reply(answer.status, body)
        finally:
            connection.close()

    return reply


def test_an_upload_of_unknown_age_is_not_said_younger(s3_env, s3_server, s3_client, bucket):
    """``upload list --older-than``: an upload the endpoint gives no start time for may be
    younger or older; it was counted "younger", which nobody knows. It is not listed (it may
    be one in progress: not to be aborted on a guess) and counted as of unknown age."""
    s3_client.create_multipart_upload(Bucket=bucket, Key="undated")
    reply = _without_initiated(s3_server.endpoint_url)
    with HttpProxy.in_front_of(s3_server.endpoint_url, reply=reply) as proxy:
        result = persevere(s3_env, "upload", "list", "--s3-bucket", bucket, "--older-than", "0s",
                           "--endpoint-url", proxy.url)  # fmt: skip
        listed = persevere(s3_env, "upload", "list", "--s3-bucket", bucket, "--json",
                           "--endpoint-url", proxy.url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"no multipart uploads in progress older than 0s in s3://{bucket}/ (1 of unknown age, "
        "not listed)\n"
    )
    assert [u["initiated"] for u in json.loads(listed.stdout)["uploads"]] == [None]
