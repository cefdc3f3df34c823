"""What the CLI's shrink (ed797a3..e7f93a1: PayerFlags, BenchFlags, _checked, abort reading its
URL or long flags itself, one except in _run) had to keep: which input is reported first, which
flag an error names, and --request-payer reaching the bucket tools' requests.

A review compared the old and the new CLI on 337 invocations against the local S3 server and
found them identical; these pin the paths the rest of the suite did not.
"""

from __future__ import annotations

import pytest

from persevere import _errors, _orphans
from tests.conftest import persevere

BAD_ENDPOINT = "must be http://HOST[:PORT] or https://HOST[:PORT]"


def _usage(result, message):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # status s3://BUCKET/KEY reads the endpoint before the URL
        (["upload", "status", "s3:///k"], BAD_ENDPOINT),
        # abort and list read the URL first
        (["upload", "abort", "s3:///k", "--upload-id", "x"], "s3:///k"),
        (["upload", "list", "s3://"], "s3://"),
        # bench: the URL, then its settings, then the endpoint
        (["bench", "s3://", "--size", "lots"], "s3://"),
        (["bench", "s3://b", "--size", "lots", "-c", "0"], "Invalid value for --size"),
        (["bench", "s3://b", "-c", "0", "--part-size", "x"], "Invalid value for --concurrency"),
        (["bench", "s3://b", "--part-size", "x,5MiB"], "Invalid value for --part-size"),
    ],
)
def test_the_first_bad_input_is_the_one_reported(args, message):
    result = persevere(None, *args, "--endpoint-url", "ftp://nope")
    _usage(result, message)


def test_abort_takes_a_url_or_the_long_flags_not_both():
    both = persevere(None, "upload", "abort", "s3://b/k", "--s3-key", "k", "--upload-id", "x")
    _usage(both, "give s3://b/k or --s3-bucket/--s3-key, not both")
    half = persevere(None, "upload", "abort", "--s3-bucket", "b", "--upload-id", "x")
    _usage(half, "give --state-file, or s3://BUCKET/KEY and --upload-id")
    # the long flags' names are checked as a URL's are, before the missing upload id
    bad = persevere(None, "upload", "abort", "--s3-bucket", "b", "--s3-key", "k\udcff")
    _usage(bad, "is not UTF-8, so S3 cannot take it")


def test_a_tree_flag_for_a_file_is_named_in_field_order():
    result = persevere(None, "cp", "f", "s3://b/k", "--processes", "2", "--check-remote",
                       "--include", "x")  # fmt: skip
    _usage(result, "Invalid value for --include: --include is for a directory")


@pytest.mark.parametrize(
    ("args", "spied"),
    [
        (["upload", "list", "s3://b/p"], "list_uploads"),
        (["upload", "list", "--s3-bucket", "b", "--prefix", "p"], "list_uploads"),
        (["upload", "abort", "s3://b/k", "--upload-id", "u"], "abort_by_id"),
        (
            ["upload", "abort", "--s3-bucket", "b", "--s3-key", "k", "--upload-id", "u"],
            "abort_by_id",
        ),
        (["upload", "status", "s3://b/k"], "key_status"),
    ],
)
@pytest.mark.parametrize("payer", [None, "requester"])
def test_request_payer_reaches_the_bucket_tools(s3_env, monkeypatch, args, spied, payer):
    seen = []

    def spy(where, *rest, **named):
        seen.append((where.bucket, where.request_payer, rest))
        raise _errors.UsageError("spied")

    monkeypatch.setattr(_orphans, spied, spy)
    given = ["--request-payer", payer] if payer else []
    result = persevere(s3_env, *args, *given)
    assert result.returncode == 2 and "spied" in result.stderr, result.stderr
    assert len(seen) == 1 and seen[0][:2] == ("b", payer), seen
    if spied != "list_uploads":
        assert seen[0][2][0] == "k"
