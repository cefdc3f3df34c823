"""The Request (``_request.py``): one value for a new upload, the one place ``-`` is read, and
the API's stream refusals, which the CLI always had (one-path, differences N, Y, Z)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

import persevere
from persevere._journal import JournalState
from persevere._s3 import Endpoint
from persevere._source import inspect_file
from tests.conftest import sha256_of_object

MiB = 1024 * 1024


@pytest.fixture
def piped_stdin():
    """Standard input is a pipe (as in ``producer | ...``); yields its writing end."""
    saved = os.dup(0)
    read, write = os.pipe()
    os.dup2(read, 0)
    os.close(read)
    try:
        yield write
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        with contextlib.suppress(OSError):  # the test may have closed it
            os.close(write)


def test_dash_is_read_once_a_pipe_a_stream_a_file_redirected_in_that_file(tmp_path, piped_stdin):
    from persevere._request import Source, resolve_source

    assert resolve_source("-") == Source(Path("-"), stream=True, fd=0)
    assert resolve_source(tmp_path / "f") == Source(tmp_path / "f")
    file = tmp_path / "data"
    file.write_bytes(b"x" * 100)
    with file.open("rb") as redirected:
        assert resolve_source("-", fd=redirected.fileno()) == Source(file.resolve())


@pytest.mark.parametrize(
    ("keywords", "param", "words"),
    [
        ({"part_size": 8 * MiB}, "part_size", "a stream's parts follow its schedule"),
        ({"max_parts": 1000}, "max_parts", "a lower part limit is not supported for streams"),
    ],
)
def test_api_stream_refuses_part_size_and_max_parts(tmp_path, piped_stdin, keywords, param, words):
    """Y: given '-' (a pipe), part_size and max_parts are refused, not dropped (the API said
    "file to upload - does not exist")."""
    state = tmp_path / "s"
    with pytest.raises(persevere.UsageError) as refused:
        persevere.upload_file_sync("-", "b", "k", state, **keywords)
    assert refused.value.param == param and words in refused.value.message
    assert not state.exists()


@pytest.mark.parametrize(
    ("keywords", "param"),
    [({"part_size": 8 * MiB}, "part_size"), ({"max_parts": 1000}, "max_parts")],
)
def test_cp_of_a_stream_refuses_part_size_and_max_parts(tmp_path, piped_stdin, keywords, param):
    """Y, cp's core: copy_file('-') refused them as upload_file does, rather than dropping
    them silently (the CLI always refused them)."""
    import anyio

    from persevere._cp import copy_file

    state = tmp_path / "s"
    with pytest.raises(persevere.UsageError) as refused:
        anyio.run(lambda: copy_file("-", "b", "k", state, **keywords))
    assert refused.value.param == param
    assert not state.exists()


def test_api_refuses_shards_of_a_stream_in_words(tmp_path, piped_stdin):
    """Z: create_upload of '-' (a pipe) says a stream cannot be split (not "file to upload -
    does not exist")."""
    with pytest.raises(persevere.UsageError) as refused:
        persevere.create_upload_sync("-", "b", "k", tmp_path / "s", shards=2)
    assert refused.value.param == "shards"
    assert refused.value.message == "a stream cannot be split into shards"


def test_a_dry_run_of_a_stream_is_refused_in_words(tmp_path, piped_stdin):
    """Z: the dry run of '-' (a pipe) says a stream can be read only once (not "file to
    upload - does not exist")."""
    from persevere._dry_run import dry_run_start
    from persevere._request import Request, resolve_source
    from persevere._sync import run

    with pytest.raises(persevere.UsageError) as refused:
        run(lambda: dry_run_start(Request(tmp_path / "s", resolve_source("-"), "b", "k")))
    assert refused.value.param == "dry_run"
    assert refused.value.message == "a stream can be read only once: --dry-run needs a file"


def test_api_stream_with_an_unknown_checksum_is_a_usage_error(tmp_path, piped_stdin):
    """N: an unknown checksum name for a stream is a UsageError naming the parameter, as for
    a file (it was a ValueError traceback)."""
    from persevere._sync import run
    from tests.conftest import start_stream

    with pytest.raises(persevere.UsageError) as refused:
        run(lambda: start_stream("b", "k", tmp_path / "s", 0, checksum="NOPE"))
    assert refused.value.param == "checksum"
    with pytest.raises(persevere.UsageError) as refused:
        persevere.upload_file_sync("-", "b", "k", tmp_path / "s", checksum="NOPE")
    assert refused.value.param == "checksum"
    assert not (tmp_path / "s").exists()


def test_create_upload_checks_its_options(s3_env, bucket, make_file, tmp_path):
    """N: create_upload validates the transfer options, as start_upload does (it created the
    upload with concurrency 0)."""
    file, state = make_file(MiB, seed=5), tmp_path / "s"
    with pytest.raises(persevere.UsageError) as refused:
        persevere.create_upload_sync(file, bucket, "k", state, shards=1,
                                     options=persevere.UploadOptions(concurrency=0))  # fmt: skip
    assert refused.value.param == "concurrency"
    assert not state.exists()


def test_upload_file_of_a_pipe_uploads_the_stream(s3_env, bucket, s3_client, tmp_path, piped_stdin):
    """upload_file('-') reads a pipe as ``upload start -`` does: as a stream."""
    import hashlib

    data = os.urandom(50_000)  # within a pipe's buffer: written before it is read
    os.write(piped_stdin, data)
    os.close(piped_stdin)
    result = persevere.upload_file_sync("-", bucket, "k", tmp_path / "s")
    assert result.size == len(data)
    assert sha256_of_object(s3_client, bucket, "k") == hashlib.sha256(data).hexdigest()


def _state(request, identity, finished: str | None = None) -> JournalState:
    header = request.new_header(Endpoint("http://e"), None, identity, request.layout(identity))
    outcome = {"type": finished} if finished else None
    return JournalState(header, outcome=outcome)


def test_conflicts_with_says_what_the_recorded_upload_was_not_made_with(tmp_path):
    from persevere._request import Request, Source

    file = tmp_path / "f"
    file.write_bytes(b"x" * (12 * MiB))
    identity = inspect_file(file)
    made = Request(tmp_path / "s", Source(file), "b", "k", part_size=6 * MiB,
                   object_options={"ContentType": "a/b"})  # fmt: skip
    state = _state(made, identity)
    assert made.conflicts_with(state) == []
    assert Request(tmp_path / "s", Source(file), "b", "k").conflicts_with(state) == []
    other = Request(tmp_path / "s", Source(file), "b", "k", part_size=5 * MiB, max_parts=1,
                    checksum="sha256", no_overwrite=True, object_options={})  # fmt: skip
    assert other.conflicts_with(state) == [
        "ContentType",
        "checksum CRC64NVME, not SHA256",
        f"part size {6 * MiB:,}, not {5 * MiB:,}",
        "2 parts, over the part limit 1",
        "write-once, which it was started without",
    ]
    assert other.conflicts_with(_state(made, identity, "completed")) == [
        "ContentType",
        "checksum CRC64NVME, not SHA256",
    ]
    stream = Request(tmp_path / "s", Source(Path("-"), stream=True), "b", "k", expected_size=MiB)
    assert stream.conflicts_with(_state(stream, None)) == []
    unsaid = Request(tmp_path / "s", Source(Path("-"), stream=True), "b", "k")
    assert unsaid.conflicts_with(_state(stream, None)) == [f"expected size {MiB:,} bytes, not none"]


@pytest.mark.process
@pytest.mark.parametrize(
    ("command", "given", "flag", "message"),
    [
        ("upload start", "--part-size 8MiB", "--part-size",
         "a stream's parts follow its schedule: give --expected-size instead"),
        ("cp", "--max-parts 100", "--max-parts", "a stream's parts follow its schedule within "
         "10,000 parts; a lower part limit is not supported for streams yet: upload a file"),
        ("upload start", "--shards 2", "FILE", "a stream cannot be split into shards"),
        ("upload start", "--processes 2", "FILE", "a stream cannot be split into shards"),
        ("cp", "--dry-run", "--dry-run", "a stream can be read only once: --dry-run needs a file"),
    ],
)  # fmt: skip
def test_the_cli_refuses_for_a_stream_as_before(tmp_path, command, given, flag, message):
    """The stream refusals moved into the Request: the CLI still says them as click does,
    naming the flag, before anything is read."""
    from tests.conftest import persevere as cli

    args = [*command.split(), "-", "s3://b/k", *given.split()]
    refused = cli({"XDG_STATE_HOME": str(tmp_path)}, *args, input="")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.endswith(f"Error: Invalid value for {flag}: {message}\n"), refused.stderr


@pytest.mark.parametrize(
    ("door", "keywords", "wrong"),
    [
        (persevere.upload_file_sync, {"part_sise": MiB}, "part_sise"),
        (persevere.upload_file_sync, {"shards": 2}, "shards"),  # a Request field, not its
        (persevere.upload_file_sync, {"expected_size": 3}, "expected_size"),  # cp's
        (persevere.create_upload_sync, {"shards": 1, "verify_parts": True}, "verify_parts"),
    ],
)
def test_the_public_doors_refuse_a_wrong_keyword_by_name(tmp_path, door, keywords, wrong):
    """The request's keywords are declared once (``_request.Asked``): a keyword that is not
    one of them is a TypeError naming it, before anything is read or created."""
    state = tmp_path / "s"
    with pytest.raises(TypeError, match=repr(wrong)):
        door(tmp_path / "nothing", "b", "k", state, **keywords)
    assert not state.exists()


@pytest.mark.parametrize(
    ("door", "positional"),
    [(persevere.resume_sync, ()), (persevere.upload_shard_sync, (0, 2))],
)
def test_the_resume_doors_refuse_a_wrong_keyword_by_name(tmp_path, door, positional):
    """resume's and upload_shard's keywords are declared once (``_request.Continued``): one
    of a new upload's (``part_size``) is a TypeError naming it, as before."""
    with pytest.raises(TypeError, match="'part_size'"):
        door(tmp_path / "s", *positional, part_size=MiB)
