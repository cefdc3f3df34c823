"""An operator's audit (2026-12-04, seventh): streams, resume and shards run adversarially:
exit 0 only when the object is the bytes given this time, no upload left that nothing will
resume or abort, one line rather than a traceback."""

from __future__ import annotations

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
