"""An operator's audit (2026-12-05, tenth): persevere tried as a black box, to make it lie
(exit 0 with another object), lose work, or fail unclearly; this time mostly the Python API,
damaged state files, shards and odd endpoints. Each test is a defect found (6, none an exit 0
with another object), each fixed since; #6's assertions changed with its fix: a progress sink
that raises is logged and not called again, the upload completes (not an error raised)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

import persevere
from tests.conftest import persevere as run_persevere

MiB = 1024 * 1024


def _uploads(s3_client, bucket: str) -> list[str]:
    return [u["Key"] for u in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads") or []]


class _Empty200(http.server.BaseHTTPRequestHandler):
    """An endpoint (a broken gateway, a captive portal, a load balancer's health page) that
    answers every request 200 with an empty body."""

    protocol_version = "HTTP/1.1"  # answers Expect: 100-continue, keeps the connection

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def empty_200_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Empty200)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_an_endpoint_answering_200_with_an_empty_body_is_one_line_not_a_traceback(
    s3_env, make_file, tmp_path, empty_200_endpoint, dry_run
):
    """README: errors are one line, never a traceback. An endpoint that answers every request
    200 with an empty body (a proxy's or portal's page, a gateway in a bad state):
    ``cp FILE s3://B/K`` (and ``--dry-run``) die in ``_session.create`` on
    ``response["UploadId"]``: "KeyError: 'UploadId'" under a rich traceback of an
    ExceptionGroup, exit 1. Expected: one line saying the endpoint's answer to
    CreateMultipartUpload is no S3 answer (no upload id), exit 1 (or 3), nothing written."""
    file = make_file(1000, seed=101)
    state = tmp_path / "s"
    env = {**s3_env, "AWS_ENDPOINT_URL": empty_200_endpoint}
    args = ["cp", file, "s3://bkt/k", "--state-file", state, "--no-progress"]
    done = run_persevere(env, *args, *(["--dry-run"] if dry_run else []))
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "KeyError" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (1, 3), done.stderr[-3000:]
    assert not state.exists()


def test_a_resume_through_an_endpoint_answering_200_with_an_empty_body_is_one_line(
    s3_env, bucket, make_file, tmp_path, empty_200_endpoint
):
    """The same endpoint met by ``upload resume --state-file S --endpoint-url URL`` (the
    documented override, e.g. a gateway that moved): UploadPart's answer has no ETag and
    ``_checksum_mode.check`` dies on ``KeyError: 'ETag'``, a rich traceback of an
    ExceptionGroup per part, exit 1. (ListParts' empty answer is first taken for "the journal's
    parts are not on S3".) Expected: one line saying the endpoint's answer is no S3 answer, the
    resume command printed, exit 1 or 3; the journal intact."""
    file = make_file(1000, seed=105)
    state = tmp_path / "s"
    persevere.create_upload_sync(file, bucket, "k", state, shards=1)
    before = state.read_bytes()
    done = run_persevere(
        s3_env,
        "upload",
        "resume",
        "--state-file",
        state,
        "--endpoint-url",
        empty_200_endpoint,
        "--no-progress",
    )
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "KeyError" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (1, 3), done.stderr[-3000:]
    assert state.read_bytes().startswith(before)


@pytest.mark.parametrize("override", [{"Key": "elsewhere"}, {"Bucket": "{other}", "Key": "x"}])
def test_object_options_cannot_send_the_upload_to_another_key_and_leave_it_behind(
    s3_env, bucket, s3_client, make_file, tmp_path, override
):
    """The API's ``object_options`` are "extra CreateMultipartUpload parameters" spread *after*
    the upload's own Bucket and Key (``_session.create``: ``{**self.object_ids,
    **object_options, ...}``): ``object_options={"Key": "elsewhere"}`` creates the multipart
    upload at ``elsewhere`` (or in another bucket), the parts then go to the real key's
    upload id and S3 answers NoSuchUpload: persevere says UploadGone, "the multipart upload was
    aborted, elsewhere or by a lifecycle rule" (untrue), exit 1, and the upload it created at
    the other key is left billed, its id nowhere. Expected: names persevere owns (Bucket,
    Key, UploadId, checksum fields) refused as bad input (UsageError, exit 2) before anything
    is sent; no upload left anywhere."""
    file = make_file(6 * MiB, seed=102)
    options = {k: v.format(other=bucket) for k, v in override.items()}
    with pytest.raises(persevere.PersevereError) as caught:
        persevere.upload_file_sync(file, bucket, "k", tmp_path / "s", object_options=options)
    try:
        assert caught.value.exit_code == 2, caught.value
        assert not isinstance(caught.value, persevere.UploadGone), caught.value
        assert _uploads(s3_client, bucket) == []
    finally:
        for up in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads") or []:
            s3_client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])


@pytest.mark.parametrize(
    "asked",
    [
        {"object_options": {"StorageClas": "STANDARD_IA"}},  # a typo'd name
        {"options": {"concurrency": 2}},  # a dict where UploadOptions goes
        {"endpoint": "http://127.0.0.1:1"},  # a URL where an Endpoint goes
    ],
    ids=["object-option-typo", "options-dict", "endpoint-str"],
)
def test_the_apis_wrong_argument_values_are_named_not_internal_errors(
    s3_env, bucket, s3_client, make_file, tmp_path, asked
):
    """README (Python API): "Errors are persevere.PersevereError subclasses carrying the CLI's
    exit code". ``upload_file_sync(..., object_options={"StorageClas": ...})`` (a typo) raises
    botocore's internal ``KeyError: 'StorageClas'`` from its serializer; ``options={...}`` a
    plain dict raises ``AttributeError: 'dict' object has no attribute 'validate'``;
    ``endpoint="http://..."`` ``AttributeError: 'str' object has no attribute 'profile'``.
    None of these says which argument is wrong. (Bucket and key as Path/bytes are already a
    UsageError naming them: the same is expected here, a UsageError or TypeError naming the
    argument, exit 2.)"""
    file = make_file(1000, seed=103)
    raised: BaseException | None = None
    try:
        persevere.upload_file_sync(file, bucket, "k", tmp_path / "s", **asked)
    except Exception as exc:  # what it raises is the point
        raised = exc
    name = next(iter(asked))
    assert isinstance(raised, (persevere.UsageError, TypeError)), repr(raised)
    assert name in str(raised) or next(iter(asked[name]), "") in str(raised)
    assert _uploads(s3_client, bucket) == []


def test_a_ca_bundle_that_is_a_directory_is_not_said_to_be_missing(s3_env, make_file, tmp_path):
    """``cp FILE s3://B/K --ca-bundle DIR`` (a directory, e.g. /etc/ssl/certs given for
    /etc/ssl/certs/ca-certificates.crt): exit 2, right, but the one line says "CA bundle DIR
    does not exist" of a directory that does exist, sending the user to look for a typo.
    Expected: it says it is a directory (a bundle is one PEM file)."""
    file = make_file(1000, seed=104)
    folder = tmp_path / "certs"
    folder.mkdir()
    done = run_persevere(s3_env, "cp", file, "s3://bkt/k", "--ca-bundle", folder, "--no-progress")
    assert done.returncode == 2, done.stderr
    assert "does not exist" not in done.stderr, done.stderr
    assert "directory" in done.stderr, done.stderr


PROFILES = """\
[profile failing]
credential_process = /bin/false
[profile notjson]
credential_process = /bin/echo not-json
[profile loop1]
source_profile = loop2
role_arn = arn:aws:iam::123456789012:role/one
[profile loop2]
source_profile = loop1
role_arn = arn:aws:iam::123456789012:role/two
"""


@pytest.mark.parametrize("profile", ["failing", "notjson", "loop1"])
@pytest.mark.parametrize("command", ["cp", "dry-run", "verify", "list"])
def test_a_profile_whose_credentials_cannot_be_had_is_one_line(
    s3_env, bucket, make_file, tmp_path, profile, command
):
    """``--profile P`` (or AWS_PROFILE) whose ``credential_process`` fails (a locked aws-vault,
    an expired SSO helper: exits 1) or prints no JSON, or whose ``source_profile`` chain loops:
    botocore's CredentialRetrievalError, JSONDecodeError or InfiniteLoopConfigError as a rich
    traceback (an ExceptionGroup), exit 1, from cp, cp --dry-run, verify and upload list.
    (A profile with no credentials at all is already one line: "no usable AWS credentials
    found".) README: "never a traceback". Expected: one line naming the profile and what
    failed (the process's exit status / its output not JSON / the loop), exit 1 (or 2)."""
    config = tmp_path / "config"
    config.write_text(PROFILES)
    env = {
        **s3_env,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
    }
    env = {k: v for k, v in env.items() if v != ""}
    file = make_file(1000, seed=106)
    args = {
        "cp": ["cp", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s", "--no-progress"],
        "dry-run": ["cp", file, f"s3://{bucket}/k", "--state-file", tmp_path / "s", "--dry-run"],
        "verify": ["verify", file, f"s3://{bucket}/k"],
        "list": ["upload", "list", f"s3://{bucket}"],
    }[command]
    done = run_persevere(env, *args, "--profile", profile, whole_env=True)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (1, 2), done.stderr[-3000:]
    assert profile in done.stderr, done.stderr[-3000:]


class _BrokenSink:
    """A progress sink (README: "any object with start(total, done), advance(delta),
    close()") whose ``advance`` raises: always, or once (its second call)."""

    def __init__(self, always: bool) -> None:
        self.always, self.calls = always, 0

    def start(self, total: int, done: int) -> None:
        pass

    def advance(self, delta: int) -> None:
        self.calls += 1
        if self.always or self.calls == 2:
            raise ValueError("the caller's progress bar broke")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("always", [False, True], ids=["once", "always"])
def test_a_progress_sink_that_raises_is_not_taken_for_the_network(
    s3_env, bucket, s3_client, make_file, tmp_path, caplog, always
):
    """``upload_file_sync(..., progress=sink)`` whose ``advance`` raises (a bug in the caller's
    progress bar): raised once, it is reported as "part N failed (part N: Could not connect
    to the endpoint URL: ...)" and the part is sent again; raised every time, the caller gets
    a nested ``ExceptionGroup`` (no exit_code, not a PersevereError) instead of its own
    ValueError. Expected: the caller's exception is never blamed on the endpoint; it comes
    back as itself (or a PersevereError naming the progress sink), the upload resumable."""
    file = make_file(20 * MiB, seed=107)
    caplog.set_level("INFO")
    raised: BaseException | None = None
    try:
        persevere.upload_file_sync(
            file, bucket, "k", tmp_path / "s", part_size=5 * MiB, progress=_BrokenSink(always)
        )
    except BaseException as exc:  # what it raises is the point
        raised = exc
    assert "Could not connect" not in caplog.text, caplog.text[-2000:]
    # (changed by the fix, both cases: the sink's first error is logged and the sink not
    # called again; the upload goes on and completes: a progress display's bug is no reason
    # to stop a transfer, and the object is the file's)
    assert raised is None, repr(raised)
    assert "the progress sink's advance raised ValueError" in caplog.text, caplog.text[-2000:]
    assert "failed" not in caplog.text, caplog.text[-2000:]  # no part sent again for it
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == file.read_bytes()


def test_bench_through_an_endpoint_answering_200_with_an_empty_body_is_one_line(
    s3_env, empty_200_endpoint
):
    """``bench`` meets the same endpoint: ``KeyError: 'UploadId'`` as a rich traceback (an
    ExceptionGroup), exit 1. Expected: one line, exit 1."""
    env = {**s3_env, "AWS_ENDPOINT_URL": empty_200_endpoint}
    done = run_persevere(env, "bench", "s3://bkt", "--size", "6MiB", "-c", "1")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]
