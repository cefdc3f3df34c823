"""Review 9 (adversarial, of cfec42d): holes in that commit's fixes (stall watchdog on the
send queue, tree journal relocation, input refusals, messages). Each test is a defect found,
a strict xfail until it is fixed."""

from __future__ import annotations

import queue
import socket
import threading

import pytest

from tests.conftest import persevere, sha256_of_file, sha256_of_object
from tests.faultproxy import FaultProxy
from tests.proxybase import CHUNK, LoopbackProxy, close

MiB = 1024 * 1024
KiB = 1024


@pytest.mark.slow  # (~6 s once fixed: 5 MiB through a 1 MiB/s link)
def test_a_part_moving_at_1_mib_s_is_not_cut_as_stalled_while_it_is_handed_over(
    s3_server, s3_env, bucket, make_file, tmp_path
):
    """cfec42d follows the socket's send queue (SIOCOUTQ) only once the whole body is handed
    to the connection (Attempt.look, from handed(sent_all)). While it is handed, progress is
    still 'the kernel took more': with the send buffer full (4 MiB, autotuned), a sendfile
    hop (or aiohttp's write of a slice) only goes once the buffer drained by a third or more,
    which on a link slower than that per --stall-timeout is no progress at all. A 5 MiB part
    (a StreamingBody: sendfile) through a 1 MiB/s link with --stall-timeout 1 is cut every
    time (exit 3), though the queue shrank all along. (Same at 08fa8a6; with the default 60 s,
    a connection below ~25 KiB/s: 8 connections sharing a 1.5 Mbit/s uplink.)"""
    file = make_file(5 * MiB, seed=91)
    from tests.test_faults import upstream

    with FaultProxy(upstream(s3_server), rate_bytes_s=1 * MiB) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = persevere(env, "cp", file, f"s3://{bucket}/slow", "--state-file",
                           tmp_path / "s", "--stall-timeout", "1", "--max-retries", "0",
                           "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # (over 3 s in make test: make test-all runs it)
@pytest.mark.process
def test_two_cp_dir_processes_2_to_two_destinations_together_leave_no_shard_journals(
    s3_env, bucket, s3_client, tmp_path
):
    """cfec42d moves the whole run's journal to DIR.DIGEST.persevere when a run to another
    destination holds DIR.persevere (_open_journal, state_instead). With --processes N the
    shards were already given DIR.persevere.shard-I-of-N (located before any run made
    DIR.persevere): the run that relocates merges DIR.DIGEST.persevere.shard-* (none), so
    its shards' journals are left beside the tree, what they sent is sent again by the whole
    run, and the other destination's shards find them ('records an upload ... not this
    one', exit 2 each) at every later --processes run. Worse, the relocation is only for a
    journal *locked* by the other run: the shards run for seconds between the whole run's
    locate_tree_state and its _open_journal, the other destination's run has often ended by
    then, and the whole run opens its unlocked DIR.persevere: 'state file .../tree.persevere
    records an upload of ... to s3://B/B/, not this one', exit 2, after its shards sent
    every file (4 of 4 runs here)."""
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(12):
        (root / f"f{i}").write_bytes(bytes([i]) * 1000)
    results: dict[str, object] = {}

    def run(dest: str) -> None:
        results[dest] = persevere(s3_env, "cp", root, f"s3://{bucket}/{dest}/",
                                  "--processes", "2", "--no-progress", process=True)  # fmt: skip

    threads = [threading.Thread(target=run, args=(d,)) for d in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for dest in ("A", "B"):
        assert results[dest].returncode == 0, results[dest].stderr  # type: ignore[attr-defined]
    again = {d: persevere(s3_env, "cp", root, f"s3://{bucket}/{d}/", "--processes", "2",
                          "--no-progress", process=True) for d in ("A", "B")}  # fmt: skip
    left = sorted(p.name for p in tmp_path.glob("tree*.shard-*"))
    said = {d: r.stderr for d, r in again.items()}
    for dest in ("A", "B"):
        assert sha256_of_object(s3_client, bucket, f"{dest}/f3") == sha256_of_file(root / "f3")
    assert not left and not any("error" in s for s in said.values()), (left, said)


class _BufferingProxy(LoopbackProxy):
    """A middlebox that takes the request's bytes as fast as they come (its socket
    acknowledges them all at once: a TLS-inspecting corporate proxy, a DLP scanner, nginx's
    request buffering) and forwards them upstream at ``rate_bytes_s`` (its WAN uplink)."""

    def __init__(self, upstream: tuple[str, int], rate_bytes_s: float) -> None:
        super().__init__(upstream)
        self.rate_bytes_s = rate_bytes_s

    def _serve(self, client: socket.socket) -> None:
        try:
            server = self._connect()
        except OSError:
            return
        buffered: queue.Queue[bytes | None] = queue.Queue()

        def take() -> None:
            try:
                while data := client.recv(CHUNK):
                    buffered.put(data)
            except OSError:
                pass
            buffered.put(None)

        def answers() -> None:
            try:
                while data := server.recv(CHUNK):
                    client.sendall(data)
            except OSError:
                pass
            close(client)

        threads = [threading.Thread(target=f, daemon=True) for f in (take, answers)]
        for t in threads:
            t.start()
        try:
            while (data := buffered.get()) is not None:
                for i in range(0, len(data), 16 * KiB):
                    self._pause(min(16 * KiB, len(data) - i) / self.rate_bytes_s)
                    server.sendall(data[i : i + 16 * KiB])
        except OSError:
            pass
        for t in threads:
            t.join(5)
        self._untrack(server)


@pytest.mark.slow  # (~9 s once fixed: 5 MiB at 640 KiB/s)
def test_a_part_a_buffering_proxy_acknowledged_at_once_is_not_cut_while_it_forwards_it(
    s3_server, s3_env, bucket, make_file, tmp_path
):
    """Once the peer acknowledged every byte (SIOCOUTQ 0), Attempt.look gives the answer
    the timeout plus twice the time the bytes took to be acknowledged. Behind a middlebox
    that takes the whole request at LAN speed and forwards it at its WAN rate (a
    TLS-inspecting/DLP proxy, nginx request buffering), that is a fraction of the time S3
    needs to get the part: a healthy part is cut, retried, cut again (exit 3 at every run).
    With the defaults: a 512 MiB part (a 5 TiB file's) acknowledged in 5 s on the LAN and
    forwarded at 50 Mbit/s (85 s) is cut at 70 s. Here: 5 MiB acknowledged at once,
    forwarded at 640 KiB/s (8 s), --stall-timeout 1: acknowledged by ~0.4 s, the emptied
    queue seen at the watchdog's next wake (~1.3 s: it slept until the attempt's due time,
    the drain looks only begin after that), cut at ~4.3 s, every attempt."""
    file = make_file(5 * MiB, seed=93)
    from tests.test_faults import upstream

    with _BufferingProxy(upstream(s3_server), rate_bytes_s=640 * KiB) as proxy:
        env = {**s3_env, "AWS_ENDPOINT_URL": proxy.url}
        result = persevere(env, "cp", file, f"s3://{bucket}/buffered", "--state-file",
                           tmp_path / "s", "--stall-timeout", "1", "--max-retries", "2",
                           "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr


ACCESS_POINT = "arn:aws:s3:us-east-1:123456789012:accesspoint/my-ap"


def test_an_access_point_arn_given_as_the_bucket_is_not_refused():
    """Audit 18 asked that an ARN in the *URL* (split at its first slash: the bucket became
    `arn:...:accesspoint`) be one line, not a traceback. cfec42d refuses every bucket
    starting `arn:` in require_utf8, so `--s3-bucket arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME`
    (and the API's bucket argument), which at 08fa8a6 botocore sent to the access point
    (https://my-ap-123456789012.s3-accesspoint.us-east-1.amazonaws.com), is now refused:
    'is an ARN: ... not supported', exit 2. Access-point users cannot upload at all."""
    from persevere._urls import check_destination

    check_destination(ACCESS_POINT, "k")  # (upload start/cp --s3-bucket, the API: refused)


def test_file_and_the_file_option_naming_the_same_file_are_not_refused(
    s3_env, bucket, tmp_path, monkeypatch
):
    """one_file compares the two Paths as typed: `verify ./f s3://B/K --file $PWD/f` (or
    `upload start f --file-to-upload ./sub/../f`), one file, is 'give FILE (f) or --file
    (/abs/f), not both', exit 2. Before cfec42d the option was taken."""
    source = tmp_path / "f"
    source.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    sent = persevere(s3_env, "cp", source, f"s3://{bucket}/f", "--no-progress")
    assert sent.returncode == 0, sent.stderr
    done = persevere(s3_env, "verify", "f", f"s3://{bucket}/f", "--file", source)
    assert done.returncode == 0, done.stderr


def test_upload_status_takes_a_listed_key_ending_in_a_slash(s3_env, bucket, s3_client):
    """cfec42d lets `upload abort s3://B/dir/ --upload-id ID` take a key ending in '/' that
    `upload list` shows (another tool's upload), but `upload status s3://B/dir/`, the way to
    look at it first, is still 'not an object URL', exit 2."""
    upload = s3_client.create_multipart_upload(Bucket=bucket, Key="dir/")["UploadId"]
    listed = persevere(s3_env, "upload", "list", f"s3://{bucket}/")
    assert "dir/" in listed.stdout, listed.stdout
    status = persevere(s3_env, "upload", "status", f"s3://{bucket}/dir/")
    assert status.returncode == 0 and upload in status.stdout, status.stderr


def test_a_typed_key_holding_a_unicode_line_separator_is_refused_as_a_line_break(
    s3_env, bucket, tmp_path
):
    """require_typed and _split refuse a typed key holding a line break, but only '\\r' and
    '\\n': U+2028 (and U+2029, U+0085, '\\v', '\\f', which str.splitlines and persevere's own
    one_line treat as line breaks: it escapes U+2028 in every result line) is taken, exit 0,
    the object under a key no one can type back from what persevere printed."""
    source = tmp_path / "f"
    source.write_bytes(b"x")
    done = persevere(s3_env, "upload", "start", source, "--s3-bucket", bucket,
                     "--s3-key", "a\u2028b", "--state-file", tmp_path / "s",
                     "--no-progress")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr


def test_upload_abort_takes_a_listed_key_ending_in_whitespace_by_its_url(s3_env, bucket, s3_client):
    """parse_listed_url (cfec42d) is for 'an upload `upload list` shows, aborted by the URL
    given', and `upload list` ends with 'persevere upload abort s3://B/KEY --upload-id ID'.
    Another tool's upload to `k ` (a trailing space) is listed, but its URL is refused by
    _split ('ends with whitespace ... give it without'), exit 2: the hint names another key
    (NoSuchUpload), and says nothing of --s3-bucket/--s3-key, which do take it."""
    upload = s3_client.create_multipart_upload(Bucket=bucket, Key="k ")["UploadId"]
    done = persevere(s3_env, "upload", "abort", f"s3://{bucket}/k ", "--upload-id", upload)
    assert done.returncode == 0 or "--s3-key" in done.stderr, done.stderr
