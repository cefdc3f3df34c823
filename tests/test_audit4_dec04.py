"""A fourth audit of 2026-12-04 (false successes: exit 0, or "unchanged", while the object at
the key printed is not the source given this time). Each test failed before its fix."""

from __future__ import annotations

import hashlib
import os

import pytest

from persevere._units import MiB
from tests.conftest import persevere


def _profile(config, endpoint_url, server):
    keys = f"aws_access_key_id = {server.access_key}\naws_secret_access_key = {server.secret_key}"
    config.write_text(
        f"[profile here]\nendpoint_url = {endpoint_url}\n{keys}\nregion = us-east-1\n"
    )


def test_cp_dir_again_after_the_profile_was_edited_to_another_endpoint_looks_there(
    s3_env, s3_server, bucket, tmp_path
):
    """The same profile, its ``endpoint_url`` edited in the AWS config file (staging, then
    production): the tree's journal recorded only the profile's name, so the re-run answered
    "2 unchanged", exit 0, with nothing at the endpoint the profile names now. Here that one
    is unreachable: exit 3; the config put back, the first journal is found (nothing sent)."""
    config = tmp_path / "aws-config"
    env = s3_env | {"AWS_ENDPOINT_URL": "", "AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "here"}
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a", "b"):
        (tree / name).write_bytes(name.encode() * 100)
    args = ["cp", tree, f"s3://{bucket}/t/", "--no-progress", "--max-retries", "1"]
    _profile(config, s3_server.endpoint_url, s3_server)
    first = persevere(env, *args)
    assert first.returncode == 0 and "2 sent" in first.stdout, first.stderr
    _profile(config, "http://127.0.0.1:1", s3_server)
    elsewhere = persevere(env, *args)
    assert elsewhere.returncode == 3, elsewhere.stdout + elsewhere.stderr
    assert "unchanged" not in elsewhere.stdout
    _profile(config, s3_server.endpoint_url, s3_server)
    again = persevere(env, *args)
    assert again.returncode == 0, again.stderr
    assert "0 sent, 0 sent again, 2 unchanged" in again.stdout, again.stdout


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_cp_again_as_a_profile_naming_another_endpoint_than_the_one_recorded_looks_there(
    s3_env, s3_server, bucket, make_file, tmp_path
):
    """``cp f s3://b/k`` with ``AWS_ENDPOINT_URL`` (recorded), then as a profile whose
    ``endpoint_url`` is elsewhere, the variable unset: the recorded URL was kept with the new
    profile, and the run answered "already completed", exit 0, nothing at the profile's
    endpoint. Here that one is unreachable: exit 3."""
    config = tmp_path / "aws-config"
    _profile(config, "http://127.0.0.1:1", s3_server)
    file = make_file(1000, seed=41)
    args = ["cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st", "--no-progress"]
    assert persevere(s3_env | {"AWS_CONFIG_FILE": str(config)}, *args).returncode == 0
    env = s3_env | {"AWS_ENDPOINT_URL": "", "AWS_CONFIG_FILE": str(config)}
    for how in ({"AWS_PROFILE": "here"}, {}):
        elsewhere = persevere(env | how, *args, *([] if how else ["--profile", "here"]))
        assert elsewhere.returncode == 3, elsewhere.stdout + elsewhere.stderr
        assert "already completed" not in elsewhere.stdout
    again = persevere(s3_env | {"AWS_CONFIG_FILE": str(config)}, *args)
    assert again.returncode == 0 and "already completed" in again.stdout, again.stderr


def test_aws_ignore_configured_endpoint_urls_is_honoured(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`` (a job forcing AWS over a leftover
    ``AWS_ENDPOINT_URL``): botocore and the aws cli look at AWS, persevere uploaded to the
    variable's endpoint, exit 0, and the object was not where every other tool looked. Here
    AWS is not reachable, or refuses these credentials: never exit 0, nothing stored."""
    file = make_file(1000, seed=42)
    env = s3_env | {"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}
    args = ["cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st", "--no-progress"]
    result = persevere(env, *args)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "KeyCount" in s3_client.list_objects_v2(Bucket=bucket)
    assert s3_client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.parametrize("url", ["s3://bucket:9000/k", "s3://my bucket/k"])
def test_a_bucket_name_s3_cannot_take_is_one_line(s3_env, make_file, tmp_path, url):
    """A port typed into the URL (``s3://bucket:9000/k``, the endpoint's place): botocore's
    ParamValidationError came out as a traceback, after the plan was said."""
    file = make_file(1000, seed=43)
    result = persevere(s3_env, "cp", file, url, "--state-dir", tmp_path / "st")
    assert result.returncode == 2, result.stderr
    assert "is not one S3 takes" in result.stderr and "Traceback" not in result.stderr


def test_a_file_whose_key_has_a_backslash_never_replaces_another(
    s3_env, bucket, s3_client, tmp_path
):
    """A tree holding ``a/b`` and a file named ``a\\b`` (legal on Linux): SeaweedFS stores the
    key ``a\\b`` as ``a/b``, so one object replaced the other and ``cp DIR`` said "2 sent",
    exit 0, the bytes of ``a/b`` stored nowhere. The backslash's file fails alone now."""
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "b").write_bytes(b"the file a/b")
    (tree / "a\\b").write_bytes(b"the file named a-backslash-b")
    result = persevere(s3_env, "cp", tree, f"s3://{bucket}/t/", "--no-progress")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "backslash" in result.stdout + result.stderr
    body = s3_client.get_object(Bucket=bucket, Key="t/a/b")["Body"].read()
    assert body == b"the file a/b"


def test_cp_again_without_the_endpoint_url_it_was_given_goes_where_the_profile_says(
    s3_env, s3_server, bucket, make_file, tmp_path
):
    """Made with ``--endpoint-url`` and ``AWS_PROFILE=here``; run again with the profile
    alone, whose config names another endpoint: the recorded URL was used, "already
    completed", exit 0, nothing where the command run now sends it (unreachable here)."""
    config = tmp_path / "aws-config"
    _profile(config, "http://127.0.0.1:1", s3_server)
    env = s3_env | {"AWS_ENDPOINT_URL": "", "AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "here"}
    file = make_file(1000, seed=44)
    args = ["cp", file, f"s3://{bucket}/k", "--state-dir", tmp_path / "st", "--no-progress"]
    made = persevere(env, *args, "--endpoint-url", s3_server.endpoint_url)
    assert made.returncode == 0, made.stderr
    elsewhere = persevere(env, *args)
    assert elsewhere.returncode == 3, elsewhere.stdout + elsewhere.stderr
    assert "already completed" not in elsewhere.stdout


def test_a_profile_with_empty_keys_is_one_line(s3_env, s3_server, bucket, make_file, tmp_path):
    """A profile whose ``aws_access_key_id =`` and secret are left blank: awscrt's signer
    raised a bare RuntimeError (AWS_ERROR_INVALID_ARGUMENT), a traceback, exit 1. Now one line
    and the hint, exit 1, and no state file (nothing was created)."""
    config = tmp_path / "aws-config"
    config.write_text(
        f"[profile blank]\nendpoint_url = {s3_server.endpoint_url}\n"
        "region = us-east-1\naws_access_key_id =\naws_secret_access_key =\n"
    )
    env = {
        **s3_env,
        "AWS_ENDPOINT_URL": "",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no"),
    }
    file = make_file(1000, seed=41)
    result = persevere(env, "cp", file, f"s3://{bucket}/k", "--profile", "blank", "--state-dir",
                       tmp_path / "st", "--no-progress")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "RuntimeError" not in result.stderr
    assert "the AWS credentials cannot sign a request" in result.stderr, result.stderr
    assert not list((tmp_path / "st").glob("*.persevere"))


def test_a_tree_whose_journal_was_removed_goes_to_its_new_destination(
    s3_env, bucket, s3_client, tmp_path
):
    """``cp DIR s3://b/A/``, the tree's journal removed (not its directory of large files'
    journals), then ``cp DIR s3://b/B/``: the large file's journal recorded A, so every run
    was exit 2 ("records an upload to .../A/big, not to .../B/big"), naming a --state-file
    no one gave. Now that journal, left by the removed one, is dropped (its unfinished
    upload aborted) and the tree goes to B."""
    from persevere._tree import journal_name
    from tests.conftest import sha256_of_object

    tree = tmp_path / "tree"
    tree.mkdir()
    big = tree / "big"
    big.write_bytes(os.urandom(9 * MiB))
    (tree / "small").write_bytes(b"small")
    first = persevere(s3_env, "cp", tree, f"s3://{bucket}/A/", "--no-progress")
    assert first.returncode == 0, first.stderr
    (tmp_path / "tree.persevere").unlink()
    # and an unfinished upload of big to A in its journal's place: created, nothing sent
    left = tmp_path / "tree.persevere.d" / journal_name("big")
    left.unlink()
    made = persevere(s3_env, "upload", "start", big, f"s3://{bucket}/A/big", "--state-file",
                     left, "--shards", "1")  # fmt: skip
    assert made.returncode == 0, made.stderr
    second = persevere(s3_env, "cp", tree, f"s3://{bucket}/B/", "--no-progress")
    assert second.returncode == 0, second.stderr
    assert "2 sent" in second.stdout, second.stdout
    assert sha256_of_object(s3_client, bucket, "B/big") == hashlib.sha256(
        big.read_bytes()).hexdigest()  # fmt: skip
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert not [u for u in uploads if u["Key"] == "A/big"], uploads  # aborted, not orphaned
