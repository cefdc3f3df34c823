"""What the CLI makes of what people type: a destination ending in ``/``, sizes in either unit
system, and an endpoint URL with credentials in it. Against the real local SeaweedFS."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

import persevere
from tests.conftest import persevere as persevere_cli
from tests.conftest import sha256_of_file, sha256_of_object

MiB = 1024 * 1024


def assert_object_matches(s3_client, bucket, key, file):
    assert sha256_of_object(s3_client, bucket, key) == sha256_of_file(file)


# -- a destination ending in "/" -----------------------------------------------------------
@pytest.mark.parametrize(("prefix", "key"), [("backups/", "backups/db.dump"), ("", "db.dump")])
def test_destination_ending_in_slash_takes_the_file_name(
    s3_env, bucket, s3_client, make_file, tmp_path, prefix, key
):
    file = make_file(1000, name="db.dump")
    state = tmp_path / "db.persevere"
    url = f"s3://{bucket}/{prefix}"
    result = persevere_cli(
        s3_env, "upload", "start", file, url, "--state-file", state, "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    assert f"uploaded s3://{bucket}/{key}:" in result.stdout
    assert_object_matches(s3_client, bucket, key, file)
    assert json.loads(state.read_text().splitlines()[0])["key"] == key

    checked = persevere_cli(s3_env, "verify", file, url, "--no-progress")  # the same rule
    assert checked.returncode == 0, checked.stderr
    assert f"match: s3://{bucket}/{key} vs" in checked.stdout


def test_cp_to_a_prefix_takes_the_file_name(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(1000, name="db.dump")
    url = f"s3://{bucket}/daily/"
    for _ in range(2):  # the second run finds it uploaded: the same key both times
        result = persevere_cli(s3_env, "cp", file, url, "--state-dir", tmp_path, "--no-progress")
        assert result.returncode == 0, result.stderr
    assert_object_matches(s3_client, bucket, "daily/db.dump", file)


@pytest.mark.process
@pytest.mark.parametrize("url", ["s3://bucket/prefix/", "s3://bucket/"])
def test_stdin_to_a_prefix_is_refused(s3_env, tmp_path, url):
    args = ["upload", "start", "-", url, "--state-file", tmp_path / "s"]
    result = persevere_cli(s3_env, *args, stdin=subprocess.DEVNULL)
    assert result.returncode == persevere.EXIT_USAGE
    assert "stdin (-) has no name: give the whole key (s3://BUCKET/KEY)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_a_prefix_without_a_file_name_is_not_an_object():
    from persevere._urls import parse_s3_url

    assert parse_s3_url("s3://b/p/", "f.bin") == ("b", "p/f.bin")
    assert parse_s3_url("s3://b/p/k") == ("b", "p/k")
    assert parse_s3_url("s3://b/", "f.bin") == ("b", "f.bin")
    for url, name in (("s3://b/p/", None), ("s3://b", "f.bin"), ("s3://b/p/", "")):
        with pytest.raises(persevere.UsageError, match="not an object URL"):
            parse_s3_url(url, name)
    with pytest.raises(persevere.UsageError, match="not an S3 URL"):
        parse_s3_url("https://b/k", "f")


# -- sizes: one convention, and the plan shown at start ------------------------------------
def test_plan_line_shows_a_decimal_part_size(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(20 * MiB)
    result = persevere_cli(
        s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s",
        "--part-size", "8MB", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "persevere: plan: 20.0 MiB in 3 parts of 7.6 MiB (8,000,000 bytes)" in lines
    assert any("KB/MB/GB are decimal (the aws cli reads 8MB as 8 MiB)" in x for x in lines)
    assert_object_matches(s3_client, bucket, "k", file)
    # The summary speaks the same units as the plan and the progress bar.
    assert "uploaded s3://" in result.stdout and "20.0 MiB in 3 part(s)" in result.stdout
    assert "MiB/s)" in result.stdout or "KiB/s)" in result.stdout


def test_plan_line_binary_part_size_and_quiet(s3_env, bucket, make_file, tmp_path):
    file = make_file(20 * MiB)
    common = ["upload", "start", file, f"s3://{bucket}/k", "--part-size", "8M", "--no-progress"]
    result = persevere_cli(s3_env, *common, "--state-file", tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert "persevere: plan: 20.0 MiB in 3 parts of 8.0 MiB" in result.stderr.splitlines()
    assert "decimal" not in result.stderr

    quiet = persevere_cli(s3_env, "-q", *common, "--state-file", tmp_path / "b")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""


def test_plan_is_an_event_in_json_lines(s3_env, bucket, make_file, tmp_path):
    file = make_file(20 * MiB)
    result = persevere_cli(
        s3_env, "--log-format", "json", "upload", "start", file, f"s3://{bucket}/k",
        "--state-file", tmp_path / "s", "--part-size", "8M", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    (plan,) = [e for e in events if e["event"] == "plan"]
    assert (plan["file_size"], plan["part_size"], plan["part_count"]) == (20 * MiB, 8 * MiB, 3)


def test_cp_shows_the_plan_of_a_new_upload(s3_env, bucket, s3_client, make_file, tmp_path):
    """cp, the command the README leads with, shows the same plan and note as start: 8MB is
    8,000,000 bytes here, 8 MiB for the aws cli (issue 23, case 10)."""
    file = make_file(20 * MiB)
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s", "--part-size", "8MB",
            "--no-progress"]  # fmt: skip
    result = persevere_cli(s3_env, *args, "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "persevere: plan: 20.0 MiB in 3 parts of 7.6 MiB (8,000,000 bytes)" in lines
    assert "persevere: note: KB/MB/GB are decimal (the aws cli reads 8MB as 8 MiB); write " \
           "KiB/MiB/GiB or K/M/G for binary sizes" in lines  # fmt: skip
    assert json.loads(result.stdout)["part_count"] == 3  # stdout: the one JSON document
    assert_object_matches(s3_client, bucket, "k", file)
    again = persevere_cli(s3_env, *args)  # already uploaded: no new plan to show
    assert again.returncode == 0, again.stderr
    assert "already completed" in again.stdout and "plan:" not in again.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["upload", "start", "{file}", "s3://{bucket}/k"],
        ["cp", "{file}", "s3://{bucket}/k"],
        ["cp", "{file}", "s3://{bucket}/k", "--dry-run"],
        ["cp", "-", "s3://{bucket}/k"],  # the file redirected in: read as that file
    ],
)
@pytest.mark.process
def test_an_expected_size_a_file_does_not_have_is_refused(s3_env, bucket, s3_client, make_file,
                                                          tmp_path, command):  # fmt: skip
    file = make_file(6 * MiB)
    args = [arg.format(file=file, bucket=bucket) for arg in command]
    with file.open("rb") as stdin:
        result = persevere_cli(s3_env, *args, "--state-file", tmp_path / "s", "--expected-size",
                               "5MiB", stdin=stdin)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"error: --expected-size 5,242,880 bytes, but {file} has 6,291,456 bytes" in \
           result.stderr  # fmt: skip
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_an_expected_size_a_file_has_is_accepted(s3_env, bucket, s3_client, make_file, tmp_path):
    file = make_file(6 * MiB)
    result = persevere_cli(s3_env, "cp", file, f"s3://{bucket}/k", "--state-file",
                           tmp_path / "s", "--expected-size", "6MiB")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_object_matches(s3_client, bucket, "k", file)


@pytest.mark.process
def test_help_states_the_size_convention():
    result = subprocess.run(
        [sys.executable, "-m", "persevere", "upload", "start", "--help"],
        capture_output=True,
        text=True,
    )
    text = " ".join(result.stdout.split())  # click wraps the help
    assert "K/M/G and KiB/MiB/GiB are binary, KB/MB/GB decimal: 8MB is 8,000,000 bytes" in text
    assert "100MiB/s (binary) or 50MB/s (decimal)" in text


# -- credentials in an endpoint URL --------------------------------------------------------
@pytest.fixture
def listener():
    """A port that notices any connection: proof that nothing was sent."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


@pytest.mark.parametrize("via", ["--endpoint-url", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_credentials_in_the_endpoint_url_are_refused_before_any_request(
    s3_env, make_file, tmp_path, listener, via
):
    port = listener.getsockname()[1]
    url = f"http://AKIDINURL:s3cr3t-in-url@127.0.0.1:{port}"
    env, args = dict(s3_env), []
    if via.startswith("--"):
        args = [via, url]
    else:
        env[via] = url
    state = tmp_path / "s"
    result = persevere_cli(
        env, "upload", "start", make_file(1000), "s3://b/k", "--state-file", state, *args
    )
    assert result.returncode == persevere.EXIT_USAGE, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        f"persevere: error: {via}: endpoint URL http://***@127.0.0.1:{port} holds "
        "credentials (user:password@): give it without them, and the credentials through the "
        "AWS chain (environment, profile); S3 requests are signed with those, and the URL is "
        "stored in the state file"
    ]
    output = result.stdout + result.stderr
    assert "s3cr3t-in-url" not in output and "AKIDINURL" not in output
    assert not state.exists()
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected


def test_endpoint_with_credentials_is_refused_by_the_api():
    with pytest.raises(persevere.UsageError) as refused:
        persevere.Endpoint("https://someone:hunter2@s3.example.com")
    message = str(refused.value)
    assert refused.value.param == "endpoint_url"
    assert "hunter2" not in message and "someone" not in message
    assert persevere.Endpoint("https://s3.example.com").endpoint_url == "https://s3.example.com"


def test_an_endpoint_with_a_path_is_refused_by_the_api():
    with pytest.raises(persevere.UsageError, match="has a path after HOST") as refused:
        persevere.Endpoint("https://s3.example.com/bucket-t0ken")
    assert "bucket-t0ken" not in str(refused.value)
    assert persevere.Endpoint("https://s3.example.com/").endpoint_url == "https://s3.example.com/"


def test_state_file_holds_no_secret(s3_server, s3_env, bucket, make_file, tmp_path):
    state = tmp_path / "s"
    result = persevere_cli(
        s3_env, "upload", "start", make_file(6 * MiB), f"s3://{bucket}/k", "--state-file", state,
        "--part-size", "5MiB", "--no-progress", "--metadata", "owner=ops",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = state.read_text()
    for secret in (s3_server.secret_key, s3_server.access_key):
        assert secret not in text
    header = json.loads(text.splitlines()[0])
    assert header["endpoint_url"] == s3_server.endpoint_url  # as given, no userinfo
    assert "@" not in header["endpoint_url"]
    # Every field is named here, so a new one that could hold a secret has to be looked at.
    assert set(header) == {
        "type", "format", "version", "bucket", "key", "upload_id", "endpoint_url", "region",
        "profile", "file_path", "file_size", "mtime_ns", "part_size", "checksum_algorithm",
        "checksum_type", "created_at", "tool_version", "ca_bundle", "object_options",
        "ctime_ns", "inode", "device", "checksum_pinned", "expected_size", "stream_every",
        "shards", "no_overwrite",
    }  # fmt: skip
    assert set(header["object_options"]) == {"ContentType", "Metadata"}


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://127.0.0.1:9000", "must be http://HOST[:PORT] or https://HOST[:PORT]"),
        ("127.0.0.1:9000", "must be http://HOST[:PORT] or https://HOST[:PORT]"),
        ("http://127.0.0.1:99999", "is not a valid URL (Port out of range"),
        ("http://[::1", "is not a valid URL"),
        ("http://127.0.0.1:9000?x=1", "must be http://HOST[:PORT] or https://HOST[:PORT]"),
    ],
)
@pytest.mark.parametrize("command", ["cp", "verify"])
def test_an_endpoint_url_that_cannot_be_one_is_one_line(s3_env, tmp_path, url, says, command):
    file = tmp_path / "f"
    file.write_bytes(b"x")
    result = persevere_cli(s3_env, command, file, "s3://b/k", "--endpoint-url", url)
    assert result.returncode == 2, result.stderr
    assert f"error: --endpoint-url: the endpoint URL {says}" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "command",
    [["upload", "resume"], ["upload", "shard", "--shard", "0/1"], ["upload", "status"],
     ["upload", "abort"]],
)  # fmt: skip
def test_an_endpoint_url_override_that_cannot_be_one_is_one_line(
    s3_env, bucket, make_file, tmp_path, command
):
    """resume, shard, status and abort take --endpoint-url as an override of the state file's
    endpoint: a bad one is the same one line (it was a traceback, exit 1), and nothing is
    sent."""
    state = tmp_path / "s"
    made = persevere_cli(s3_env, "upload", "start", make_file(1000), f"s3://{bucket}/k",
                         "--state-file", state, "--shards", "1")  # fmt: skip
    assert made.returncode == 0, made.stderr
    before = state.read_bytes()
    result = persevere_cli(s3_env, *command, "--state-file", state, "--endpoint-url",
                           "ftp://127.0.0.1:9000")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "persevere: error: --endpoint-url: the endpoint URL must be http://HOST[:PORT] or "
        "https://HOST[:PORT] (no path, ?query or #fragment)"
    ]
    assert state.read_bytes() == before


@pytest.mark.parametrize("via", ["--endpoint-url", "AWS_ENDPOINT_URL", "profile"])
def test_an_endpoint_url_with_a_path_is_refused_before_anything_is_created(
    s3_server, s3_env, bucket, s3_client, tmp_path, monkeypatch, via
):
    """``--endpoint-url http://HOST:PORT/BUCKET`` put the path in front of every key: cp
    exited 0 "uploaded s3://BUCKET/k" and the object was BUCKET/k in BUCKET."""
    file = tmp_path / "f"
    file.write_bytes(b"x" * 1000)
    url = f"{s3_server.endpoint_url}/{bucket}"
    args: list[object] = []
    if via == "--endpoint-url":
        args = [via, url]
    elif via == "AWS_ENDPOINT_URL":
        monkeypatch.setenv(via, url)
    else:  # a profile's endpoint_url in the AWS config file, read by botocore itself
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        config = tmp_path / "aws-config"
        config.write_text(
            f"[profile gw]\nendpoint_url = {url}\naws_access_key_id = {s3_server.access_key}\n"
            f"aws_secret_access_key = {s3_server.secret_key}\n"
        )
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
        args = ["--profile", "gw"]
    state = tmp_path / "s"
    commands = {
        "cp": ["cp", file, f"s3://{bucket}/k", "--state-file", state],
        "upload start": ["upload", "start", file, f"s3://{bucket}/k", "--state-file", state],
        "verify": ["verify", file, f"s3://{bucket}/k"],
    }
    for name, command in commands.items():
        result = persevere_cli({}, *command, *args, "--no-progress")
        assert result.returncode == persevere.EXIT_USAGE, (name, result.stderr)
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        assert len(errors) == 1, (name, result.stderr)
        assert "the endpoint URL has a path after HOST[:PORT]" in errors[0]
        assert url not in result.stdout + result.stderr  # the URL is never repeated
        assert "Traceback" not in result.stderr
        assert not state.exists(), name
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    # A bare "/" is no path: the same endpoint without one works.
    root = persevere_cli({}, *commands["cp"], "--endpoint-url", f"{s3_server.endpoint_url}/",
                         "--no-progress")  # fmt: skip
    assert root.returncode == 0, root.stderr
    assert_object_matches(s3_client, bucket, "k", file)


def test_an_override_endpoint_url_with_a_path_is_one_line(
    s3_env, bucket, s3_client, tmp_path, listener
):
    """``upload resume`` and ``upload shard`` take --endpoint-url over the state file's: one
    with a path was a traceback (exit 1), not the one line (exit 2) the other commands give."""
    file = tmp_path / "f"
    file.write_bytes(os.urandom(10 << 20))
    state = tmp_path / "s"
    made = persevere_cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                         state, "--shards", "2", "--part-size", "5MiB")  # fmt: skip
    assert made.returncode == 0, made.stderr
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/{bucket}"
    for command in (["resume"], ["resume", "--processes", "2"], ["shard", "--shard", "0/2"]):
        result = persevere_cli(s3_env, "upload", *command, "--state-file", state,
                               "--endpoint-url", url, "--no-progress")  # fmt: skip
        assert result.returncode == persevere.EXIT_USAGE, (command, result.stderr)
        assert result.stderr.splitlines() == [
            "persevere: error: --endpoint-url: the endpoint URL has a path after HOST[:PORT]: "
            "every request would go under it, so the object would not land at the s3:// URL "
            "given; give http://HOST[:PORT] or https://HOST[:PORT], and the bucket in the "
            "s3:// URL"
        ], command
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    done = persevere_cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_object_matches(s3_client, bucket, "k", file)


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_an_endpoint_url_refused_names_the_variable_it_came_from(
    s3_env, tmp_path, listener, monkeypatch, variable
):
    """An endpoint URL from the environment that cannot be one was reported as the flag's
    ("--endpoint-url: ..."), which the user never gave: the message names the variable."""
    file = tmp_path / "f"
    file.write_bytes(b"x")
    port = listener.getsockname()[1]
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for url, says in (
        (f"http://127.0.0.1:{port}/bench", "the endpoint URL has a path after HOST[:PORT]"),
        (f"http://AKID:s3cr3t@127.0.0.1:{port}", f"endpoint URL http://***@127.0.0.1:{port} "
         "holds credentials"),
        (f"ftp://127.0.0.1:{port}", "the endpoint URL must be http://HOST[:PORT]"),
    ):  # fmt: skip
        monkeypatch.setenv(variable, url)
        result = persevere_cli({}, "cp", file, "s3://b/k", "--state-dir", tmp_path / "state")
        assert result.returncode == persevere.EXIT_USAGE, result.stderr
        error = result.stderr.splitlines()[0]
        assert error.startswith(f"persevere: error: {variable}: {says}"), error
        assert "--endpoint-url" not in result.stderr and "s3cr3t" not in result.stderr
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected


@pytest.mark.process
def test_a_key_longer_than_s3_takes_is_refused_before_any_request(s3_env, bucket, tmp_path):
    file = tmp_path / "f"
    file.write_bytes(b"x" * 100)
    key = "é" * 513  # 1,026 bytes in UTF-8, 513 characters
    for source, piped in ((file, None), ("-", "streamed through a pipe")):
        result = subprocess.run(
            [sys.executable, "-m", "persevere", "cp", str(source), f"s3://{bucket}/{key}",
             "--state-dir", str(tmp_path / "state")],
            env={**os.environ, **s3_env}, capture_output=True, text=True, timeout=120,
            input=piped,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "the key is 1,026 bytes long (UTF-8): S3 takes at most 1,024" in result.stderr


@pytest.mark.parametrize(
    "key",
    ["..", "./x", pytest.param("a/../b", marks=pytest.mark.process), ".", "x/./y", "x/.."],
)
def test_a_key_with_a_dot_segment_is_refused_before_any_request(s3_env, tmp_path, listener, key):
    """SeaweedFS answered these with a bare "Invalid Request" (exit 1); S3 tools resolve them."""
    file = tmp_path / "f"
    file.write_bytes(b"x" * 100)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{listener.getsockname()[1]}"}
    state = tmp_path / "state"
    commands: list[tuple[list[object], str | None]] = [
        (["cp", file], None),
        (["upload", "start", file], None),
        (["upload", "start", file, "--dry-run"], None),
        (["cp", file, "--dry-run"], None),
    ]
    if key == "a/../b":  # a stream too: through a pipe, so as a process (once is enough)
        commands.append((["cp", "-"], "streamed through a pipe"))
    for command, piped in commands:
        result = persevere_cli(
            {**s3_env, **env}, *command, f"s3://b/{key}",
            "--state-dir" if command[0] == "cp" else "--state-file", state, input=piped,
        )  # fmt: skip
        assert result.returncode == 2, (command, result.stderr)
        segment = ".." if ".." in key.split("/") else "."
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        assert errors == [
            f"persevere: error: the key has a '{segment}' path segment, which S3 tools and "
            "servers resolve (or refuse) as a step through directories: the object would not "
            "be stored under this key; give a key without '.' or '..' between slashes"
        ], command
    assert not state.exists() or not any(state.iterdir())
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected


@pytest.mark.parametrize("key", ["a//b", "/x", "x/", "a//"])
def test_a_key_with_an_empty_segment_is_refused_before_any_request(
    s3_env, bucket, s3_client, tmp_path, key
):
    """SeaweedFS keeps keys as file paths and merges an empty segment away: ``cp f
    s3://B/a//b`` exited 0, "uploaded s3://B/a//b", and the object listed was ``a/b`` (for
    ``/x``, ``x``: an object there was replaced); a key ending in '/' (given with --s3-key)
    was stored as ``x/x``, found only once every part was sent (exit 1)."""
    file = tmp_path / "f"
    file.write_bytes(b"x" * 1000)
    state = tmp_path / "state"
    if key.endswith("/"):  # s3://B/x/ names a prefix (the key x/f): only --s3-key gives x/
        commands = [["upload", "start", "--file-to-upload", file, "--s3-bucket", bucket,
                     "--s3-key", key]]  # fmt: skip
    else:
        commands = [[*command, file, f"s3://{bucket}/{key}"]
                    for command in (["cp"], ["upload", "start"], ["cp", "--dry-run"])]  # fmt: skip
    for command in commands:
        result = persevere_cli(s3_env, *command, "--state-file", state, "--no-progress")
        assert result.returncode == persevere.EXIT_USAGE, (command, result.stderr)
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        assert errors == [
            "persevere: error: the key has an empty path segment (two slashes in a row, or a "
            "slash at its start or end), which servers that keep keys as file paths "
            "(SeaweedFS among them) merge away: the object would not be stored under this key; "
            "give a key without them"
        ], command
    with pytest.raises(persevere.UsageError, match="empty path segment"):
        persevere.upload_file_sync(file, bucket, key, tmp_path / "api-state")
    assert not state.exists() and not (tmp_path / "api-state").exists()
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_dots_that_are_not_a_whole_segment_are_a_key_like_any_other():
    from persevere._urls import check_destination

    for key in ("..x", "x/..y", "a.b/c", "x./.y", "...", "a/.../b"):
        check_destination("b", key)


def test_a_key_segment_the_server_will_not_store_is_exit_1_not_try_again(
    s3_env, bucket, s3_client, tmp_path
):
    """A 1,024-byte key with no slash: SeaweedFS keeps keys as file names (255 bytes at most)
    and answers every CompleteMultipartUpload with InternalError. That was exit 3 ("try again
    later"), so a supervisor re-ran it forever; it is exit 1, with the server's words."""
    file = tmp_path / "f"
    file.write_bytes(b"x" * 1000)
    state = tmp_path / "s"
    key = "k" * 1024
    result = persevere_cli(
        s3_env, "cp", file, f"s3://{bucket}/{key}", "--state-file", state, "--max-retries", "1",
        "--no-progress",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    errors = result.stderr.splitlines()[-3:]
    assert errors == [
        "persevere: error: CompleteMultipartUpload: InternalError: We encountered an internal "
        "error, please try again. (the same answer to all 2 attempts: the server does not "
        "complete this upload)",
        "persevere: the key has a path segment of 1,024 bytes: S3-compatible servers that keep "
        "keys as file names (SeaweedFS among them) take at most 255; upload under a shorter "
        "key, and abort this upload",
        f"persevere: to give it up: persevere upload abort --state-file {state}",
    ]
    # 1,024 bytes in segments the server takes (511 slashes; or 255-byte names): uploaded.
    for n, key in enumerate(["a/" * 511 + "ab", "/".join(["d" * 255] * 3 + ["d" * 254, "k"])]):
        assert len(key.encode()) == 1024
        result = persevere_cli(s3_env, "cp", file, f"s3://{bucket}/{key}", "--state-file",
                               tmp_path / f"s{n}", "--no-progress")  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert_object_matches(s3_client, bucket, key, file)


def test_one_internal_error_at_completion_is_try_again_later(
    s3_env, s3_server, bucket, s3_client, tmp_path
):
    """With --max-retries 0, a CompleteMultipartUpload answered InternalError once was taken
    as the server refusing the upload throughout (exit 1: a supervisor stops); one answer is
    no such proof: exit 3, and the same command run again completes it."""
    from urllib.parse import urlsplit

    from tests.ruleproxy import Rule, RuleProxy

    file, state = tmp_path / "f", tmp_path / "s"
    file.write_bytes(b"x" * 1000)
    upstream = urlsplit(s3_server.endpoint_url)
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"]
    refuse_complete = Rule("POST", "uploadId", refuse=(500, "InternalError"))
    with RuleProxy((upstream.hostname, upstream.port), [refuse_complete]) as proxy:
        once = persevere_cli({**s3_env, "AWS_ENDPOINT_URL": proxy.url}, *args, "--max-retries",
                             "0")  # fmt: skip
    assert once.returncode == 3, once.stderr
    assert "the server does not complete this upload" not in once.stderr
    again = persevere_cli(s3_env, *args, "--endpoint-url", s3_server.endpoint_url)
    assert again.returncode == 0, again.stderr
    assert_object_matches(s3_client, bucket, "k", file)


@pytest.mark.process
def test_a_destination_given_twice_and_verify_of_stdin_are_refused(s3_env, bucket, tmp_path):
    file = tmp_path / "f"
    file.write_bytes(b"x" * 100)
    twice = persevere_cli(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--s3-key", "o")
    assert twice.returncode == 2 and "not both" in twice.stderr
    assert not (tmp_path / "f.persevere").exists()
    stdin = persevere_cli(s3_env, "verify", "-", f"s3://{bucket}/k", stdin=subprocess.DEVNULL)
    assert stdin.returncode == 2
    assert "verify needs the path of a file, not - (standard input)" in stdin.stderr


def test_a_state_file_that_is_a_directory_is_bad_input(s3_env, bucket, tmp_path):
    file = tmp_path / "f"
    file.write_bytes(b"x" * 100)
    (tmp_path / "dir").mkdir()
    for command in (
        ["upload", "start", file, f"s3://{bucket}/k"],
        ["cp", file, f"s3://{bucket}/k"],
    ):
        result = persevere_cli(s3_env, *command, "--state-file", tmp_path / "dir")
        assert result.returncode == 2, result.stderr
        assert "is a directory" in result.stderr and "upload resume" not in result.stderr


# -- paths that name nothing usable ----------------------------------------------------------
def test_a_symbolic_link_loop_as_the_file_is_one_line(s3_env, bucket, s3_client, tmp_path):
    """``ln -s loop loop; persevere cp loop ...`` was a 231-line traceback, exit 1."""
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    url = f"s3://{bucket}/k"
    state = ["--state-file", tmp_path / "s"]
    for command in (
        ["cp", loop, url, *state],
        ["upload", "start", loop, url, *state],
        ["verify", loop, url],
        ["cp", loop, url, "--dry-run", *state],
        ["upload", "start", loop, url, "--dry-run", *state],
    ):
        result = persevere_cli(s3_env, *command, "--no-progress")
        assert result.returncode == persevere.EXIT_USAGE, (command, result.stderr)
        role = "local file" if "verify" in command else "file to upload"
        assert result.stderr.splitlines() == [
            f"persevere: error: cannot read {role} {loop}: Too many levels of symbolic links"
        ], command
    assert not (tmp_path / "s").exists()
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)


@pytest.mark.parametrize("bad", ["loop", "name too long", "under a file"])
def test_a_state_file_path_no_file_can_be_at_is_one_line(s3_env, bucket, s3_client, tmp_path, bad):
    """A symbolic-link loop as --state-file: upload start was a traceback, and cp replaced
    the link with its journal."""
    file = tmp_path / "f"
    file.write_bytes(b"x" * 1000)
    state, why = {
        "loop": (tmp_path / "loop", "Too many levels of symbolic links"),
        "name too long": (tmp_path / ("s" * 300), "File name too long"),
        "under a file": (file / "s", "Not a directory"),
    }[bad]
    if bad == "loop":
        state.symlink_to("loop")
    url = f"s3://{bucket}/k"
    for command in (
        ["cp", file, url, "--no-progress"],
        ["cp", file, url, "--dry-run"],
        ["upload", "start", file, url, "--no-progress"],
        ["upload", "start", file, url, "--dry-run"],
        ["upload", "resume", "--no-progress"],
        ["upload", "status"],
        ["upload", "abort"],
        ["verify", file, url],
    ):
        result = persevere_cli(s3_env, *command, "--state-file", state)
        assert result.returncode == persevere.EXIT_USAGE, (command, result.stderr)
        errors = [line for line in result.stderr.splitlines() if "plan:" not in line]
        assert errors == [f"persevere: error: state file {state} cannot be used: {why}"], command
    if bad == "loop":
        assert state.is_symlink() and os.readlink(state) == "loop"  # never replaced
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket)
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")
