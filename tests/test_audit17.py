"""An operator's audit (2026-12-05, seventeenth): persevere tried as a black box, to make it lie
(exit 0 with another object), lose work, or fail unclearly; this time the crash promise,
measured (kill -9 at random moments of `cp FILE`, `cp -`, `cp DIR`, `--processes 2`, the parent
or one child; journals cut at random offsets), and the Python API's doors (from a running
event loop, from threads, twice at once, cancelled mid-upload, with wrong types). Each test is
a defect found, a strict xfail until it is fixed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import persevere as api
from tests.conftest import persevere, sha256_of_file, sha256_of_object

MiB = 1024 * 1024


def _sharded_upload(s3_env, bucket: str, tmp_path: Path) -> tuple[Path, Path]:
    """A 12 MiB file, its upload created for 2 shards of 5 MiB parts (nothing sent)."""
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(range(256)) * (12 * MiB // 256))
    state = tmp_path / "data.persevere"
    made = persevere(s3_env, "upload", "start", source, f"s3://{bucket}/data.bin",
                     "--state-file", state, "--shards", "2", "--part-size", "5MiB")  # fmt: skip
    assert made.returncode == 0, made.stderr
    return source, state


@pytest.mark.parametrize("left", ["empty", "torn header"])
def test_a_shard_killed_as_it_created_its_journal_can_be_run_again(
    s3_env, s3_client, bucket, tmp_path, left
):
    """`upload shard --help`: "A shard keeps its own journal beside the state file, and is
    resumable: run it again." The shard's journal is created (O_EXCL), then locked, then its
    header (a copy of the upload's) is written: a kill -9 or power cut in between leaves
    STATE.shard-0-of-2 empty, or with a torn header. Running the shard again (what a Slurm
    array or Kubernetes Indexed Job retry does) then exits 1, for ever, with "... is empty: the
    upload was interrupted before it was created on S3 / delete it and start the upload again"
    (or "the header line is incomplete ... nothing to resume: delete it and start again"):
    false (the upload exists, the main state file is intact) and harmful (starting the upload
    again throws away every other shard's parts). Such a journal holds nothing (no part
    recorded): the shard should replace it and send its parts, as `cp` does with a state
    file whose header was torn ("nothing to resume, starting again").

    The same message reaches a shard run while another run of the same shard is between
    creating and locking that journal (two `upload_shard(state, 0, 2)` at once: seen once in
    six runs in one process): StateFileError exit 1 telling to delete a running shard's
    journal, where the lock's StateFileLocked (exit 3, "in use") is meant."""
    source, state = _sharded_upload(s3_env, bucket, tmp_path)
    journal = state.with_name(f"{state.name}.shard-0-of-2")
    header = state.read_bytes().split(b"\n")[0]
    journal.write_bytes(b"" if left == "empty" else header[: len(header) // 2])
    shard = persevere(s3_env, "upload", "shard", "--state-file", state, "--shard", "0/2")
    assert shard.returncode == 0, shard.stderr
    done = persevere(s3_env, "upload", "resume", "--state-file", state)
    assert done.returncode == 0, done.stderr
    assert sha256_of_object(s3_client, bucket, "data.bin") == sha256_of_file(source)


def _doors(tmp_path: Path, bucket: str, wrong: object) -> dict[str, object]:
    """Each API door with ``wrong`` where a path (the file or the state file) belongs."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 1000)
    state = tmp_path / "f.persevere"
    return {
        "upload_file_sync(file)": lambda: api.upload_file_sync(wrong, bucket, "k", state),
        "upload_file_sync(state_file)": lambda: api.upload_file_sync(source, bucket, "k", wrong),
        "create_upload_sync(file)": lambda: api.create_upload_sync(
            wrong, bucket, "k", state, shards=2
        ),
        "resume_sync": lambda: api.resume_sync(wrong),
        "status_sync": lambda: api.status_sync(wrong),
        "abort_sync": lambda: api.abort_sync(wrong),
        "upload_shard_sync": lambda: api.upload_shard_sync(wrong, 0, 2),
        "verify_sync(file)": lambda: api.verify_sync(wrong, bucket, "k"),
    }


@pytest.mark.parametrize("wrong", [None, 5, ["f.bin"]], ids=["None", "int", "list"])
def test_a_wrong_type_for_a_path_is_a_usage_error_naming_it(s3_env, bucket, tmp_path, wrong):
    """README (Python API): "a wrong value (options a dict, endpoint a URL string, ...) is a
    UsageError (exit 2) naming it, before anything is sent"; `bucket` and `key` are checked so
    (123 as the bucket: UsageError "bucket and key must be strings, not 123 and 'k'"). The
    file and the state file are not: None, an int or a list where a path belongs (a config
    value not set, an fd, a glob's result) raise a bare TypeError "expected str, bytes or
    os.PathLike object, not NoneType" from every door (upload_file, create_upload, resume,
    status, abort, upload_shard, verify, their *_sync twins), which a caller catching
    PersevereError (to read exc.exit_code) does not catch, and which names no parameter."""
    unclear = []
    for door, call in _doors(tmp_path, bucket, wrong).items():
        try:
            call()
        except api.UsageError:
            continue
        except Exception as exc:  # what each door raises is the point
            unclear.append(f"{door}: {type(exc).__name__}: {exc}")
        else:
            unclear.append(f"{door}: no error")
    assert not unclear, "\n".join(unclear)


def test_a_blocking_twin_called_from_async_code_is_a_persevere_error(s3_env, bucket, tmp_path):
    """README (Python API): "blocking twins for scripts"; a script that is itself async (a
    Jupyter cell, a FastAPI handler, an asyncio main) calling `persevere.status_sync(...)` gets
    anyio's bare `RuntimeError: Already running asyncio in this thread`: not a PersevereError
    (no exit_code), no word of `await persevere.status(...)`, the twin to use there (only the
    `_sync` module's docstring says "do not call these from async code"). Expected a
    UsageError naming the coroutine to await instead."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 1000)
    state = tmp_path / "f.persevere"

    async def main() -> None:
        api.upload_file_sync(source, bucket, "k", state)

    with pytest.raises(api.UsageError, match="await"):
        asyncio.run(main())
    assert not state.exists()


@pytest.mark.slow
def test_two_starts_on_one_new_state_file_never_tell_the_loser_to_delete_it(
    s3_env, bucket, tmp_path
):
    """Two starts of one new state file at once (two threads of a script, two tasks, or a job
    launched twice) must leave one running and tell the other the state file "is in use"
    (StateFileLocked, exit 3), as they do most of the time. About one time in eight (two
    `create_upload_sync` in threads behind a barrier; the same with `upload_file_sync`), the
    loser gets StateFileExists (exit 1) "state file S already exists: S is empty: the upload
    was interrupted before it was created on S3", hint "delete it and start the upload again":
    the winner has created the file (O_EXCL) but not yet locked it or written its header.
    Deleting it, as told, unlinks the journal the winner is writing: its parts are then
    recorded nowhere, and a crash after that leaves nothing to resume. (`upload shard` has the
    same window: see #1.) Up to 100 races; one such answer fails the test."""
    import threading

    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * (11 * MiB))
    told = []
    for attempt in range(100):
        state = tmp_path / f"s{attempt}.persevere"
        barrier = threading.Barrier(2)

        def start(state: Path = state, attempt: int = attempt, barrier=barrier) -> None:
            barrier.wait()
            try:
                api.create_upload_sync(
                    source, bucket, f"k{attempt}", state, shards=2, part_size=5 * MiB
                )
            except api.StateFileExists as exc:
                told.append(f"{exc} ({exc.hint})")
            except api.StateFileLocked:
                pass

        threads = [threading.Thread(target=start) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if told:
            break
    assert not told, told[0]


def test_cp_dir_killed_as_it_wrote_its_header_runs_again_as_with_processes(
    s3_env, s3_client, bucket, tmp_path
):
    """A kill -9 or power cut while `cp DIR` writes its tree journal's header leaves that line
    torn (the crash loop of this audit met it: a state file cut at byte 128 of its 319). The
    same command again then exits 1: "state file S: its header is incomplete (a crash while
    it was written) / delete it and run again", where the README promises a crash is picked
    up by running the command again. Every sibling takes it in its stride: the same tree with
    `--processes 2`, an empty tree journal (the crash a moment earlier), and `cp FILE` over a
    torn header ("nothing to resume, starting again") all replace it and exit 0: a torn tree
    header records nothing (no file is sent before it is written)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a.bin", "b.bin"):
        (tree / name).write_bytes(name.encode() * 1000)
    state = tmp_path / "tree.persevere"
    first = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", "--state-file", state)
    assert first.returncode == 0, first.stderr
    header = state.read_bytes().split(b"\n")[0]
    state.write_bytes(header[: len(header) // 2])
    again = persevere(s3_env, "cp", tree, f"s3://{bucket}/p/", "--state-file", state)
    assert again.returncode == 0, again.stderr
    for name in ("a.bin", "b.bin"):
        assert sha256_of_object(s3_client, bucket, f"p/{name}") == sha256_of_file(tree / name)


@pytest.mark.parametrize("door", ["status", "abort", "verify"])
def test_an_endpoint_given_as_a_url_is_a_usage_error_from_every_door(
    s3_env, bucket, tmp_path, door
):
    """README (Python API), word for word: "a wrong value (`options` a dict, `endpoint` a URL
    string, ...) is a UsageError (exit 2) naming it, before anything is sent". upload_file,
    create_upload, resume and upload_shard keep it ("endpoint must be an Endpoint, not
    'http://...'"); status, abort and verify, which take the same `endpoint=` keyword, raise a
    bare AttributeError instead ("'str' object has no attribute 'endpoint_url'", "... no
    attribute 'profile'"): not a PersevereError, no exit_code, no word of Endpoint."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * (11 * MiB))
    state = tmp_path / "f.persevere"
    api.create_upload_sync(source, bucket, "k", state, shards=2, part_size=5 * MiB)
    url = s3_env["AWS_ENDPOINT_URL"]
    calls = {
        "status": lambda: api.status_sync(state, endpoint=url),
        "abort": lambda: api.abort_sync(state, endpoint=url),
        "verify": lambda: api.verify_sync(source, bucket, "k", endpoint=url),
    }
    with pytest.raises(api.UsageError, match="endpoint"):
        calls[door]()


@pytest.mark.parametrize(
    "call",
    [
        lambda state: api.upload_shard_sync(state, True, 2),
        lambda state: api.upload_shard_sync(state, 0.0, 2),
        lambda state: api.upload_shard_sync(state, "0", 2),
        lambda state: api.resume_sync(state, options=api.UploadOptions(concurrency="4")),
    ],
    ids=["shard True", "shard 0.0", "shard '0'", "concurrency '4'"],
)
def test_a_number_of_the_wrong_type_is_a_usage_error(s3_env, bucket, tmp_path, call):
    """`part_size`, `max_parts` and `shards` of another type are refused ("part size must be a
    whole number, not '5MiB'"; "shards must be a whole number, not '2'"). Not so the shard
    given to upload_shard: True runs shard 1 of 2 (ShardResult(shard=True, ...), parts 4..5
    sent), 0.0 raises TypeError "'float' object cannot be interpreted as an integer", "0" (an
    environment variable read as is) TypeError "'<=' not supported between instances of 'int'
    and 'str'"; nor UploadOptions(concurrency="4"), the same TypeError, where
    concurrency=0 is the UsageError "concurrency must be between 1 and 256, not 0"."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * (11 * MiB))
    state = tmp_path / "f.persevere"
    api.create_upload_sync(source, bucket, "k", state, shards=2, part_size=5 * MiB)
    with pytest.raises(api.UsageError):
        call(state)


@pytest.mark.process
def test_abort_waits_for_a_running_shard_as_it_waits_for_a_running_upload(
    s3_env, s3_client, bucket, tmp_path
):
    """`upload abort` of an upload that a `cp`/`upload resume` is sending is refused ("state
    file S is in use by another persevere process", exit 3), and completing a sharded upload
    is refused while a shard still holds its journal's lock ("that shard is still running").
    Aborting a sharded upload is not: with `upload shard --shard 0/2` running (here: its
    journal held locked, as the running shard holds it), `upload abort` aborts at once (exit
    0); the running shard then fails (exit 1) with its parts lost. Expected: exit 3 as for
    the unsharded upload, naming the running shard."""
    import fcntl
    import os

    _source, state = _sharded_upload(s3_env, bucket, tmp_path)
    journal = state.with_name(f"{state.name}.shard-0-of-2")
    journal.write_bytes(state.read_bytes().split(b"\n")[0] + b"\n")
    fd = os.open(journal, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the running shard's lock
        aborted = persevere(s3_env, "upload", "abort", "--state-file", state, process=True)
    finally:
        os.close(fd)
    assert aborted.returncode == 3, aborted.stdout + aborted.stderr
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [upload["Key"] for upload in uploads] == ["data.bin"]


@pytest.mark.process
def test_status_of_a_sharded_upload_says_a_running_shard_is_running(s3_env, bucket, tmp_path):
    """`upload status` of an upload a `cp` is sending says "in progress, being run now
    (another persevere process holds its state file)" (`--json`: "running": true). With
    `upload shard --shard 0/2` running (seen with a real shard at 10 MiB/s; here its journal
    held locked, as the running shard holds it), status says "in progress (resumable)" and
    "running": false: the `upload resume` it invites is refused (exit 3, "that shard is still
    running"), and a supervisor polling `running` to know when to complete never waits."""
    import fcntl
    import json
    import os

    _source, state = _sharded_upload(s3_env, bucket, tmp_path)
    journal = state.with_name(f"{state.name}.shard-0-of-2")
    journal.write_bytes(state.read_bytes().split(b"\n")[0] + b"\n")
    fd = os.open(journal, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the running shard's lock
        shown = persevere(s3_env, "upload", "status", "--state-file", state, "--json",
                          process=True)  # fmt: skip
    finally:
        os.close(fd)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["running"] is True
