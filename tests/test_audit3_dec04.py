"""A demanding user's edges (audit of 2026-12-04): the environment naming a profile that does
not exist, a CA bundle that holds no certificate, standard streams closed or full. Each is one
line and a documented exit code, never a traceback, a retry loop or a silent failure."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading

import pytest

from tests.conftest import persevere
from tests.ruleproxy import Rule

MiB = 1024 * 1024


def test_aws_profile_naming_no_profile_is_one_line(s3_env, bucket, make_file):
    file = make_file(1024)
    for args in (("cp", file, f"s3://{bucket}/k"), ("upload", "status", f"s3://{bucket}/k")):
        refused = persevere({**s3_env, "AWS_PROFILE": "nope"}, *args)
        assert refused.returncode == 2, refused.stderr
        assert "Traceback" not in refused.stderr and "ProfileNotFound" not in refused.stderr
        assert "persevere: error: AWS profile 'nope' (AWS_PROFILE) not found" in refused.stderr
    assert not file.with_name(file.name + ".persevere").exists()


def test_a_ca_bundle_without_a_certificate_is_bad_input_not_retried(s3_env, bucket, make_file):
    """Was exit 3 after four attempts ("run the same command later"): a supervisor would retry
    a configuration mistake for ever. No port answers here: the bundle is loaded before."""
    file = make_file(1024)
    not_pem = make_file(100, name="not-a-ca.pem")
    https = {**s3_env, "AWS_ENDPOINT_URL": "https://127.0.0.1:1"}
    for env, flags in (
        (https, ("--ca-bundle", not_pem)),
        ({**https, "AWS_CA_BUNDLE": str(not_pem)}, ()),
        ({**https, "AWS_CA_BUNDLE": str(not_pem.with_name("missing.pem"))}, ()),
    ):
        refused = persevere(env, "cp", file, f"s3://{bucket}/k", "--json", *flags)
        assert refused.returncode == 2, refused.stderr
        assert "retrying" not in refused.stderr
        assert "the CA bundle cannot be used" in json.loads(refused.stdout)["error"]
    assert not file.with_name(file.name + ".persevere").exists()


def _persevere_process(*args, **popen):
    return subprocess.Popen([sys.executable, "-m", "persevere", *map(str, args)], **popen)


@pytest.mark.process
def test_a_log_pipe_that_closes_does_not_fail_the_upload(s3_env, bucket, s3_client, make_file):
    """stderr a pipe whose reader went away (journald restarted, `2> >(head -c 10)`): the
    progress line's write failed, the upload's coroutine died on it, and the completed upload
    exited 1 ("needs a person") with its result never printed."""
    file = make_file(6 * MiB)
    proc = _persevere_process(
        "cp", file, f"s3://{bucket}/k", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stderr.close()  # the log's reader is gone before the first line
    with proc.stdout:
        out = proc.stdout.read().decode()
    assert proc.wait(120) == 0, out
    assert out.startswith(f"uploaded s3://{bucket}/k: 6.0 MiB"), out
    assert s3_client.head_object(Bucket=bucket, Key="k")["ContentLength"] == 6 * MiB


def _journal_completed(state):
    return json.loads(state.read_text().splitlines()[-1])["type"] == "completed"


@pytest.mark.process
@pytest.mark.parametrize("closed", [">&-", "2>&-", "<&- >&- 2>&-"])
def test_a_closed_standard_stream_is_no_failure(s3_env, bucket, s3_client, make_file, closed):
    """`>&-` aborted the process in the event loop (exit 134: a socket took descriptor 1, and
    libuv asserts when closing one <= 2); `2>&-` exited 1 silently before sending anything
    (sys.stderr is None). Either may point a file or socket at what is printed."""
    file = make_file(6 * MiB)
    script = f'exec "$0" -m persevere "$@" {closed}'
    done = subprocess.run(["sh", "-c", script, sys.executable, "cp", file, f"s3://{bucket}/k"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert s3_client.head_object(Bucket=bucket, Key="k")["ContentLength"] == 6 * MiB
    assert _journal_completed(file.with_name(file.name + ".persevere"))


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_full_standard_output_is_one_line_not_a_traceback(s3_env, bucket, make_file):
    """`> /dev/full`: the result's write raised ENOSPC out of the command, a traceback."""
    file = make_file(6 * MiB)
    for flags in ((), ("--json",)):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "persevere", "cp", file,
                                   f"s3://{bucket}/k", *flags], stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.splitlines()[-1] == (
            "persevere: error: the result could not be written to standard output (No space "
            "left on device); what the command did stands: run it again to see it"
        )
    again = persevere(s3_env, "cp", file, f"s3://{bucket}/k")
    assert again.returncode == 0 and again.stdout.startswith("already completed"), again.stderr


@pytest.fixture
def redirecting_endpoint(s3_env):
    """An endpoint that answers every request 307 to the real one (a load balancer, a moved
    host)."""
    target = s3_env["AWS_ENDPOINT_URL"]

    class Redirect(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(307)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_endpoint_that_redirects_is_named_not_an_access_denied(
    s3_env, bucket, make_file, redirecting_endpoint
):
    """aiohttp follows the redirect and drops the signature: S3 answered AccessDenied and the
    hint sent the user to the IAM policy (exit 1); `upload status` said "cannot tell"."""
    file = make_file(1024)
    for args in (("cp", file, f"s3://{bucket}/k"), ("upload", "status", f"s3://{bucket}/k")):
        refused = persevere(s3_env, *args, "--endpoint-url", redirecting_endpoint, "--json")
        assert refused.returncode == 2, refused.stderr
        error = json.loads(refused.stdout)["error"]
        assert "the endpoint answered 307 (a redirect) to " + s3_env["AWS_ENDPOINT_URL"] in error
        assert "AccessDenied" not in refused.stderr
    assert not file.with_name(file.name + ".persevere").exists()


def test_bench_log_lines_are_json_lines(s3_env, bucket):
    """`--log-format json bench`: each row was also a plain line among the JSON ones."""
    done = persevere(s3_env, "--log-format", "json", "bench", f"s3://{bucket}", "--size", "5MiB",
                     "-c", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["log"], lines


@pytest.mark.process
def test_a_stop_before_anything_started_still_gives_the_json_document():
    """--json promises one document on stdout, always: a SIGTERM between reading the command
    line and starting the work printed only the stderr line."""
    done = stopped_before_starting(
        ["cp", "f", "s3://b/k", "--json"],
        "from persevere import _cli_run\n_cli_run._note_json(True)",
    )
    assert done.returncode == 130, done.stderr
    assert json.loads(done.stdout) == {
        "error": "SIGTERM received before anything started; nothing to resume",
        "exit_code": 130, "hint": None, "next_command": None,
    }  # fmt: skip


def test_a_bucket_in_another_region_is_left_to_botocore_and_named(rule_proxy, bucket, make_file):
    """AWS's 301 PermanentRedirect has no Location: no redirect was followed (it is botocore's
    region redirector's to handle), and when it stays, the hint names the region."""
    env, proxy = rule_proxy
    proxy.rules.append(Rule("POST", "uploads", refuse=(301, "PermanentRedirect")))
    file = make_file(1024)
    refused = persevere(env, "cp", file, f"s3://{bucket}/k")
    assert refused.returncode == 1, refused.stderr
    assert "CreateMultipartUpload: PermanentRedirect:" in refused.stderr
    assert "a redirect" not in refused.stderr
    assert "the bucket is in another region, or on another endpoint" in refused.stderr


@pytest.mark.process
def test_a_result_pipe_whose_reader_left_is_said(s3_env, bucket, s3_client, make_file):
    """`persevere cp ... --json | head -c1` after head left: click ended it with exit 1 and not
    a word; the upload itself stands."""
    file = make_file(6 * MiB)
    proc = _persevere_process("cp", file, f"s3://{bucket}/k", "--json",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # the reader is gone before the result
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(120) == 1, err
    assert err.splitlines()[-1] == (
        "persevere: error: the result could not be written to standard output (its reader is "
        "gone); what the command did stands: run it again to see it"
    )
    assert s3_client.head_object(Bucket=bucket, Key="k")["ContentLength"] == 6 * MiB


@pytest.mark.process
def test_a_closed_standard_input_is_still_refused_for_a_stream(s3_env, bucket):
    """Standard input closed is put on /dev/null (no socket may take descriptor 0); `cp -`
    still refuses it, never uploading /dev/null's nothing as an empty object."""
    script = 'exec "$0" -m persevere "$@" <&-'
    done = subprocess.run(["sh", "-c", script, sys.executable, "cp", "-", f"s3://{bucket}/k"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "standard input is closed: nothing is being piped in" in done.stderr


def test_a_tree_journal_given_to_upload_status_is_named(s3_env, bucket, tmp_path):
    """`upload status --state-file DIR.persevere` said "is not a persevere state file" of the
    journal persevere itself wrote for `cp DIR`."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a")
    assert persevere(s3_env, "cp", tree, f"s3://{bucket}/p/").returncode == 0
    journal = tmp_path / "tree.persevere"
    for command in ("status", "resume"):
        refused = persevere(s3_env, "upload", command, "--state-file", journal)
        assert refused.returncode == 1, refused.stderr
        assert "is the journal of a directory's upload (cp DIR)" in refused.stderr


def test_upload_status_json_says_s3_unreachable_when_it_is(s3_env, bucket, make_file):
    """ListParts' retries running out (the endpoint down) came back as reachable: true with
    exists: false, which a script reads as "the upload is gone"."""
    file = make_file(16 * MiB)
    state = file.with_name("s.persevere")
    created = persevere(s3_env, "upload", "start", file, f"s3://{bucket}/k", "--state-file",
                        state, "--shards", "2")  # fmt: skip
    assert created.returncode == 0, created.stderr
    down = persevere(s3_env, "upload", "status", "--state-file", state, "--endpoint-url",
                     "http://127.0.0.1:1", "--json")  # fmt: skip
    assert down.returncode == 0, down.stderr
    remote = json.loads(down.stdout)["remote"]
    assert remote["reachable"] is False and "ListParts failed" in remote["error"], remote


def test_bench_refuses_a_prefix_its_keys_could_not_be_stored_under(s3_env, bucket):
    """`bench s3://B/a/../b`: SeaweedFS answered a bare "InvalidRequest: Invalid Request"
    (exit 1); cp refuses such a key before any request, and so does bench now."""
    refused = persevere(s3_env, "bench", f"s3://{bucket}/a/../b", "--size", "5MiB", "-c", "1",
                        "--json")  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "the key has a '..' path segment" in json.loads(refused.stdout)["error"]


def stopped_before_starting(argv: list[str], setup: str) -> subprocess.CompletedProcess[str]:
    """A process that read ``persevere ARGV``, ran ``setup`` (what the command line set up),
    then got SIGTERM before the work started (the CLI's handler for that moment)."""
    script = (
        "import os, signal, sys\n"
        "from persevere import _cli\n"
        f"sys.argv = ['persevere', *{argv!r}]\n"
        f"{setup}\n"
        "signal.signal(signal.SIGTERM, _cli._stopped_before_starting)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
