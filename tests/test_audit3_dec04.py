"""A demanding user's edges (audit of 2026-12-04): the environment naming a profile that does
not exist, a CA bundle that holds no certificate, standard streams closed or full. Each is one
line and a documented exit code, never a traceback, a retry loop or a silent failure."""

from __future__ import annotations

from tests.conftest import persevere

MiB = 1024 * 1024


def test_aws_profile_naming_no_profile_is_one_line(s3_env, bucket, make_file):
    file = make_file(1024)
    for args in (("cp", file, f"s3://{bucket}/k"), ("upload", "status", f"s3://{bucket}/k")):
        refused = persevere({**s3_env, "AWS_PROFILE": "nope"}, *args)
        assert refused.returncode == 2, refused.stderr
        assert "Traceback" not in refused.stderr and "ProfileNotFound" not in refused.stderr
        assert "persevere: error: AWS profile 'nope' (AWS_PROFILE) not found" in refused.stderr
    assert not file.with_name(file.name + ".persevere").exists()
