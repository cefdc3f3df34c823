"""The in-process runner (tests/inprocess.py) says what the process says.

The same commands, one after another (so state left by one run shows in the next), run as
``python -m persevere`` and in this process: exit codes, stdout and stderr must be the same,
once what differs by nature between two uploads is put aside (the bucket, the directory, the
upload id, timings).
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import MiB, delete_bucket, persevere

_VARYING = [
    (re.compile(r"\d+\.\d+s\b"), "T"),  # "in 0.3s"
    (re.compile(r"\(\d+(?:\.\d+)? [KMGT]?i?B/s\)"), "(RATE)"),
    (re.compile(r'"(elapsed_s|rate_bytes_s|ts|created_at|completed_at)": ?[^,}\n]+'), r'"\1": X'),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?"), "TIME"),
    (re.compile(r"(--upload-id |upload id |\"upload_id\": \")[A-Za-z0-9_.=-]+"), r"\1ID"),
]


def _normalized(text: str, bucket: str, where: str) -> str:
    text = text.replace(bucket, "BUCKET").replace(where, "DIR")
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return text


def _commands(bucket: str, file: str, state: str) -> list[list[str]]:
    url = f"s3://{bucket}/k"
    return [
        ["--version"],
        ["upload"],  # no subcommand: the help, exit 2
        ["upload", "start", "--part-size", "1"],  # click's usage error
        ["upload", "start", file, url, "--part-size", "1MiB", "--state-file", state],
        ["upload", "start", file, url, "--state-file", state, "--no-progress", "--json"],
        ["upload", "start", file, url, "--state-file", state, "--no-progress", "--json"],
        ["upload", "status", "--state-file", state, "--json"],
        ["upload", "resume", "--state-file", state, "--no-progress"],
        ["verify", file, url, "--json"],
        ["verify", file, f"s3://{bucket}/nothing"],
        ["--log-format", "json", "verify", file, f"s3://{bucket}/nothing"],
        ["-q", "cp", file, f"s3://{bucket}/c", "--state-file", state + ".cp", "--no-progress"],
        ["cp", file, f"s3://{bucket}/c", "--state-file", state + ".cp", "--json"],
        ["upload", "start", file, url, "--endpoint-url", "ftp://x", "--json"],
        ["upload", "list", f"s3://{bucket}/"],
        [
            "cp",
            file,
            url + "u",
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--state-file",
            state + "u",
            "--max-retries",
            "0",
        ],
    ]


@pytest.mark.slow
@pytest.mark.process
def test_the_runner_says_what_the_process_says(s3_env, s3_client, make_file, tmp_path):
    file = make_file(6 * MiB + 7, seed=3)
    env = dict(os.environ)  # taken now: an in-process run replaces os.environ while it runs

    def run_all(process: bool) -> list[tuple[int, str, str]]:
        bucket = f"inprocess-{'p' if process else 'i'}-{tmp_path.name[-8:].lower()}"
        bucket = re.sub(r"[^a-z0-9-]", "-", bucket)
        where = tmp_path / ("p" if process else "i")
        where.mkdir()
        s3_client.create_bucket(Bucket=bucket)
        try:
            runs = []
            for args in _commands(bucket, str(file), str(where / "state")):
                done = persevere(env, *args, process=process, whole_env=True)
                runs.append(
                    (
                        done.returncode,
                        _normalized(done.stdout, bucket, str(where)),
                        _normalized(done.stderr, bucket, str(where)),
                    )
                )
            return runs
        finally:
            delete_bucket(s3_client, bucket)

    # The processes run beside the in-process runs (which need the main thread): apart,
    # each in its own bucket and directory, they only share the server.
    with ThreadPoolExecutor(1) as pool:
        by_process = pool.submit(run_all, True)
        seen = {False: run_all(False), True: by_process.result()}
    differ = [
        (args, by_process, in_process)
        for args, by_process, in_process in zip(
            _commands("B", "F", "S"), seen[True], seen[False], strict=True
        )
        if in_process != by_process
    ]
    assert differ == []
    codes = [code for code, _, _ in seen[False]]
    assert codes == [0, 2, 2, 2, 0, 1, 0, 0, 0, 1, 1, 0, 0, 2, 0, 3], codes


@pytest.mark.process
def test_the_runner_puts_the_process_back(s3_env):
    """A --json run leaves no JSON mode behind, nor its handlers, nor its environment."""
    import logging
    import os
    import signal

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    env_before = dict(os.environ)
    failed = persevere({"PERSEVERE_X": "1"}, "upload", "start", "a", "b", "--endpoint-url",
                       "ftp://x", "--json")  # fmt: skip
    assert failed.returncode == 2 and json.loads(failed.stdout)["exit_code"] == 2
    plain = persevere(None, "upload", "start", "a", "b", "--endpoint-url", "ftp://x")
    by_process = persevere(
        None, "upload", "start", "a", "b", "--endpoint-url", "ftp://x", process=True
    )
    assert (plain.returncode, plain.stdout, plain.stderr) == (
        by_process.returncode, by_process.stdout, by_process.stderr,
    )  # fmt: skip
    assert plain.stdout == ""
    assert {s: signal.getsignal(s) for s in before} == before
    assert dict(os.environ) == env_before
    assert logging.getLogger("persevere").propagate
