"""An operator's audit (2026-12-04, seventh): streams, resume and shards run adversarially:
exit 0 only when the object is the bytes given this time, no upload left that nothing will
resume or abort, one line rather than a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import persevere


@pytest.mark.process
def test_a_stream_expected_over_s3s_largest_object_is_refused_before_anything(
    s3_env, bucket, s3_client, tmp_path
):
    """`cp - --expected-size 60TiB`: the schedule was clamped to 10,000 parts of 5 GiB and the
    upload created (exit 0 for the start): a stream as long as promised would stop at S3's
    48.8 TiB after days, the upload left behind. Bad size: exit 2, no upload, no state file."""
    state = tmp_path / "s"
    done = persevere(s3_env, "cp", "-", f"s3://{bucket}/k", "--state-file", state,
                     "--expected-size", "60TiB", input="x")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "expected size 60.0 TiB is over S3's largest object" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not state.exists()
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.mark.process
def test_a_stop_while_the_producer_is_silent_does_not_wait_for_it(s3_env, bucket, tmp_path):
    """SIGTERM to `cp -` while its producer paused (a dump between tables, a stalled `zfs
    send`): "stopping" was said at once but the run went on until the producer wrote again or
    ended (minutes, or never): the read of stdin was on a worker thread the stop, then the
    interpreter's exit, waited for. Now: exit 130 at once, resumable."""
    state = tmp_path / "s"
    with subprocess.Popen(
        [sys.executable, "-m", "persevere", "cp", "-", f"s3://{bucket}/k", "--state-file", state],
        env={**os.environ, **s3_env}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write("x" * 1000)
        proc.stdin.flush()
        assert "state file:" in proc.stderr.readline()
        time.sleep(0.5)  # the first part's read waits for bytes that do not come
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        finally:
            proc.stdin.close()  # the producer ends (before the fix: what let the run end)
        said = proc.stderr.read()
    assert code == 130, said
    assert "the upload is resumable" in said, said
