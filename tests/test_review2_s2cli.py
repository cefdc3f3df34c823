"""Review round 2 of branch s2cli (the CLI group's shrink): behaviour it kept that no test
pinned. Each passes on the base (2d120e5) and on the branch."""

from __future__ import annotations

import json
import shlex

import anyio
import pytest

import persevere
from persevere import _bench
from persevere._bench import BenchLeftover, BenchSettings, run_bench
from persevere._cli_admin import _removal
from persevere._session import MultipartSession
from tests.conftest import persevere as persevere_cli

# Pins of the 2026-12-05 review (they pass on the shrink's base too): run by make test-all (CI).
pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def _leftovers(s3_client, bucket):
    objects = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [o["Key"] for o in objects], [u["Key"] for u in uploads]


def _answer_lost(monkeypatch):
    """CompleteMultipartUpload takes effect on S3, but its answer never arrives."""
    complete = MultipartSession.complete

    async def completed_then_lost(self, *args, **kwargs):
        await complete(self, *args, **kwargs)
        raise persevere.PersevereError("the answer to CompleteMultipartUpload was lost")

    monkeypatch.setattr(MultipartSession, "complete", completed_then_lost)


# -- bench: "CompleteMultipartUpload was sent" (held once, in its leftover record) -----------------
@pytest.mark.anyio
async def test_a_bench_completion_whose_answer_was_lost_has_its_object_deleted(
    s3_env, bucket, s3_client, monkeypatch
):
    _answer_lost(monkeypatch)
    leftovers: dict[str, BenchLeftover] = {}
    with pytest.raises(persevere.PersevereError, match="answer to CompleteMultipartUpload"):
        await run_bench(bucket, BenchSettings(6 * MiB, [1], [None]), leftovers=leftovers)
    assert leftovers == {}
    assert _leftovers(s3_client, bucket) == ([], [])


@pytest.mark.anyio
async def test_a_bench_completion_not_cleaned_up_is_recorded_as_completing(
    s3_env, bucket, s3_client, monkeypatch
):
    """The delete fails too: the record says completion was sent, and the removal command the
    CLI prints says to delete the object as well."""
    _answer_lost(monkeypatch)

    async def refused(session):
        raise persevere.PersevereError("DeleteObject refused")

    monkeypatch.setattr(_bench, "_delete", refused)
    leftovers: dict[str, BenchLeftover] = {}
    with pytest.raises(persevere.PersevereError, match="answer to CompleteMultipartUpload"):
        with anyio.fail_after(60):
            await run_bench(bucket, BenchSettings(6 * MiB, [1], [None]), leftovers=leftovers)
    [left] = leftovers.values()
    assert left.completing and left.upload_id is not None and left.bucket == bucket
    assert _leftovers(s3_client, bucket) == ([left.key], [])
    assert _removal(left) == (
        f"upload {left.upload_id} of s3://{bucket}/{left.key}: persevere upload abort "
        f"--s3-bucket {bucket} --s3-key {left.key} --upload-id {left.upload_id} "
        f"(and delete s3://{bucket}/{left.key} if it was completed)"
    )
    s3_client.delete_object(Bucket=bucket, Key=left.key)


# -- bench's flag refusals under --json: one document, the flag named ------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "error"),
    [
        ("--size", "lots",
         "--size: not a size: 'lots' (use bytes or a unit, e.g. 8MiB, 64M, 5GiB)"),
        ("--size", "1.5B", "--size: size '1.5B' is not a whole number of bytes"),
        ("-c", "", "--concurrency: not comma-separated whole numbers from 1 to 256: ''"),
        ("-c", "1,257", "--concurrency: not comma-separated whole numbers from 1 to 256: '1,257'"),
        ("--part-size", "auto,zz",
         "--part-size: not a size: 'zz' (use bytes or a unit, e.g. 8MiB, 64M, 5GiB)"),
    ],
)  # fmt: skip
def test_bench_json_refusal_of_a_bad_value_is_its_one_document(s3_env, flag, value, error):
    result = persevere_cli(s3_env, "bench", "s3://no-request-made", flag, value, "--json")
    assert result.returncode == 2, result.stderr
    expected = {"error": error, "exit_code": 2, "hint": None, "next_command": None}
    assert result.stdout == json.dumps(expected, indent=2) + "\n"
    assert result.stderr == f"persevere: error: {error}\n"


# -- an error whose next step is to abort: the same words, the --json and JSON-log fields ----------
def test_a_grown_file_names_the_abort_command_in_text_json_and_json_logs(s3_env, bucket, tmp_path):
    file, state = tmp_path / "f", tmp_path / "s"
    file.write_bytes(b"x" * (6 * MiB))
    started = persevere_cli(
        s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state, "--shards",
        "2", "--part-size", "5MiB", "--no-progress",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    with open(file, "ab") as grown:
        grown.write(b"more")
    error = (
        f"{file} changed since the upload started (size 6,291,456 -> 6,291,460 bytes): its "
        "parts on S3 cannot make it"
    )
    hint = "abort the upload and start again"
    command = f"persevere upload abort --state-file {shlex.quote(str(state))}"
    resume = ["upload", "resume", "--state-file", state, "--no-progress"]
    text = persevere_cli(s3_env, *resume)
    assert text.returncode == 1, text.stderr
    assert text.stderr.splitlines()[-3:] == [
        f"persevere: error: {error}",
        f"persevere: {hint}",
        f"persevere: to give it up: {command}",
    ]
    document = persevere_cli(s3_env, *resume, "--json")
    assert document.returncode == 1, document.stderr
    expected = {"error": error, "exit_code": 1, "hint": hint, "next_command": command}
    assert document.stdout == json.dumps(expected, indent=2) + "\n"
    logged = persevere_cli(s3_env, "--log-format", "json", *resume, "--json")
    assert logged.returncode == 1, logged.stderr
    assert logged.stdout == document.stdout
    [line] = [json.loads(x) for x in logged.stderr.splitlines() if '"event": "error"' in x]
    del line["ts"]
    assert line == {"level": "error", "event": "error", "message": error, "exit_code": 1,
                    "hint": hint, "next_command": command}  # fmt: skip
    persevere_cli(s3_env, "upload", "abort", "--state-file", state)
