"""``persevere cp``: the one idempotent command for cron, systemd and Kubernetes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    interrupt_after_parts,
    sha256_of_file,
    sha256_of_object,
    signal_when_handled,
)
from tests.conftest import persevere as cli
from tests.faultproxy import NO_FAULT, Fault, FaultProxy
from tests.httpproxy import HttpProxy, Reply
from tests.test_faults import upstream

MiB = 1024 * 1024


def clean(result):
    assert "Traceback" not in result.stderr, result.stderr
    return result


def assert_same(s3_client, bucket, key, file):
    assert sha256_of_object(s3_client, bucket, key) == sha256_of_file(file)


def no_uploads(s3_client, bucket):
    return s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.process
def test_cp_starts_resumes_and_then_has_nothing_to_do(s3_env, bucket, s3_client, make_file):
    file = make_file(40 * MiB, seed=120)
    command = ["cp", file, f"s3://{bucket}/k", "--part-size", "5MiB", "-c", "2", "--no-progress"]
    state = file.with_name(file.name + ".persevere")
    killed = interrupt_after_parts(s3_env, command, state, 3)
    assert killed.returncode == -signal.SIGKILL
    resumed = clean(cli(s3_env, *command, "--json"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"state file: {state}" in resumed.stderr
    assert 0 < json.loads(resumed.stdout)["bytes_sent"] < 40 * MiB  # only what was missing
    assert_same(s3_client, bucket, "k", file)
    again = clean(cli(s3_env, *command, "--json"))
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["already_completed"] is True and result["bytes_sent"] == 0
    assert no_uploads(s3_client, bucket)


def test_cp_of_a_changed_file_uploads_it_again(s3_env, bucket, s3_client, make_file):
    file = make_file(12 * MiB, seed=121)
    command = ["cp", file, f"s3://{bucket}/k", "--part-size", "5MiB", "--no-progress"]
    assert clean(cli(s3_env, *command)).returncode == 0
    os.utime(file)  # touched only: proven equal by re-reading, then trusted
    touched = clean(cli(s3_env, *command, "--json"))
    assert touched.returncode == 0 and json.loads(touched.stdout)["already_completed"]
    assert "re-reading it" in touched.stderr
    quiet = clean(cli(s3_env, *command, "--json"))
    assert "re-reading" not in quiet.stderr  # the new identity was recorded
    with file.open("r+b") as f:
        f.write(b"new")
    changed = clean(cli(s3_env, *command, "--json"))
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["bytes_sent"] == 12 * MiB
    assert_same(s3_client, bucket, "k", file)


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_cp_restarts_an_upload_that_cannot_go_on(s3_env, bucket, s3_client, make_file):
    """The file changed size mid-upload, or the upload was aborted behind its back: the old
    one is given up and a new one made, in the same run."""
    file = make_file(30 * MiB, seed=122)
    command = ["cp", file, f"s3://{bucket}/k", "--part-size", "5MiB", "-c", "1", "--no-progress"]
    state = file.with_name(file.name + ".persevere")
    interrupt_after_parts(s3_env, command, state, 2)
    with file.open("ab") as f:
        f.write(b"grown")
    result = clean(cli(s3_env, *command))
    assert result.returncode == 0, result.stderr
    assert "starting the upload again" in result.stderr
    assert_same(s3_client, bucket, "k", file)
    assert no_uploads(s3_client, bucket)

    state.unlink()
    interrupt_after_parts(s3_env, command, state, 2)
    upload_id = json.loads(state.read_bytes().splitlines()[0])["upload_id"]
    s3_client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    again = clean(cli(s3_env, *command))
    assert again.returncode == 0, again.stderr
    assert_same(s3_client, bucket, "k", file)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory on a read-only mount, holding one file (as a backup source often is)."""
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    (mount_point / "data.bin").write_bytes(random.Random(123).randbytes(30 * MiB))
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_cp_from_a_read_only_directory_keeps_its_state_under_xdg(
    s3_env, bucket, s3_client, read_only_dir, tmp_path
):
    env = {**s3_env, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    file = read_only_dir / "data.bin"
    command = ["cp", file, f"s3://{bucket}/k", "--part-size", "5MiB", "-c", "1", "--no-progress"]
    probe = subprocess.Popen(
        [sys.executable, "-m", "persevere", *map(str, command)],
        env={**os.environ, **env}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    states = tmp_path / "xdg" / "persevere"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(states.glob("data.bin.*.persevere")) if states.exists() else []
        if found and found[0].read_bytes().count(b'"type":"part"') >= 2:
            break
        time.sleep(0.01)
    probe.send_signal(signal.SIGKILL)
    _, stderr = probe.communicate(timeout=60)
    [state] = found
    assert f"state file: {state}" in stderr
    resumed = clean(cli(env, *command, "--json"))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["bytes_sent"] < 30 * MiB  # resumed, not restarted
    assert_same(s3_client, bucket, "k", file)


@pytest.mark.parametrize(
    ("setup", "url", "message"),
    [
        (lambda p: None, "s3://{b}/k", "does not exist"),
        (lambda p: os.mkfifo(p), "s3://{b}/k", "not a regular file"),
        (lambda p: p.write_bytes(b"x"), "s3://{b}", "expected s3://bucket/key"),
    ],
)
def test_cp_bad_input(s3_env, bucket, s3_client, tmp_path, setup, url, message):
    target = tmp_path / "thing"
    setup(target)
    result = clean(cli(s3_env, "cp", target, url.format(b=bucket), "--no-progress"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 6
    assert no_uploads(s3_client, bucket)
    assert not list(tmp_path.glob("*.persevere"))


def test_cp_refuses_a_state_file_of_another_destination(s3_env, bucket, make_file):
    file = make_file(1000)
    assert clean(cli(s3_env, "cp", file, f"s3://{bucket}/a", "--no-progress")).returncode == 0
    state = file.with_name(file.name + ".persevere")  # records s3://BUCKET/a
    other = clean(cli(s3_env, "cp", file, f"s3://{bucket}/b", "--state-file", state))
    assert other.returncode == 2
    assert "records an upload to" in other.stderr and f"s3://{bucket}/a" in other.stderr


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
@pytest.mark.process
def test_a_second_destination_of_a_file_has_a_state_file_of_its_own(
    s3_env, bucket, s3_client, make_file
):
    """``cp f s3://b/k2`` after ``cp f s3://b/k1`` was exit 2 (FILE.persevere records k1).
    Each destination has its own journal, and the same command finds it again: killed, it
    resumes; done, it is "already completed"."""
    from persevere._cp import locate_state_file

    file = make_file(30 * MiB, seed=125)
    beside = file.with_name(file.name + ".persevere")
    first = ["cp", file, f"s3://{bucket}/k1", "--part-size", "5MiB", "--no-progress"]
    assert clean(cli(s3_env, *first)).returncode == 0
    own = locate_state_file(file, bucket, "k2")
    assert own.parent == file.parent and own.name.startswith(file.name + ".") and own != beside
    second = ["cp", file, f"s3://{bucket}/k2", "--part-size", "5MiB", "-c", "1", "--no-progress"]
    killed = interrupt_after_parts(s3_env, second, own, 2)
    assert killed.returncode == -signal.SIGKILL
    for _ in range(2):  # resumed, then already completed: the same state file both times
        result = clean(cli(s3_env, *second, "--json"))
        assert result.returncode == 0, result.stderr
        assert f"state file: {own}\n" in result.stderr
        assert json.loads(result.stdout)["bytes_sent"] < 30 * MiB  # not started again
    assert json.loads(result.stdout)["already_completed"] is True
    again = clean(cli(s3_env, *first, "--json"))  # FILE.persevere still serves k1
    assert again.returncode == 0 and f"state file: {beside}\n" in again.stderr
    assert json.loads(again.stdout)["already_completed"] is True
    assert json.loads(beside.read_text().splitlines()[0])["key"] == "k1"
    assert json.loads(own.read_text().splitlines()[0])["key"] == "k2"
    assert_same(s3_client, bucket, "k1", file)
    assert_same(s3_client, bucket, "k2", file)
    assert no_uploads(s3_client, bucket)


def test_a_file_name_too_long_for_its_state_file_name_gets_one_cut_short(
    s3_env, bucket, s3_client, tmp_path
):
    file = tmp_path / ("b" * 250)  # FILE.persevere would be 260 bytes: too long a name
    file.write_bytes(b"x" * 1000)
    for _ in range(2):
        result = clean(cli(s3_env, "cp", file, f"s3://{bucket}/k", "--no-progress"))
        assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("already completed")
    [state] = tmp_path.glob("*.persevere")
    # (cut to leave room for the names made from it: its shard journals, 24 bytes; audit 13 #10)
    assert len(state.name) == 255 - 24 and state.name.startswith("b" * 200)
    assert_same(s3_client, bucket, "k", file)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_another_file_of_the_same_size_is_proven_part_by_part(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """A state file of file A given to cp of file B (same size, other bytes): what it records
    counts only once B's bytes are read and compared; exit 0 means the object is B."""
    a, b = make_file(30 * MiB, seed=126), make_file(30 * MiB, seed=127)
    state = tmp_path / "s"
    url = f"s3://{bucket}/k"
    # In progress: A's parts are re-read from B, found to differ, sent again.
    started = ["cp", a, url, "--state-file", state, "--part-size", "5MiB", "-c", "1"]
    assert interrupt_after_parts(s3_env, started, state, 1).returncode == -signal.SIGKILL
    result = clean(cli(s3_env, "cp", b, url, "--state-file", state, "--part-size", "5MiB",
                       "--no-progress"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "re-reading" in result.stderr
    assert_same(s3_client, bucket, "k", b)
    # Completed from B: cp of A re-reads A, finds other bytes, uploads A.
    result = clean(cli(s3_env, "cp", a, url, "--state-file", state, "--no-progress"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uploaded")
    assert_same(s3_client, bucket, "k", a)


def test_a_completion_proven_against_another_file_is_not_taken_for_it(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """The upload of A completed, the "completed" line lost in a crash; ``upload resume
    --file B`` (same size) found B's parts differ and said so (exit 1), but recorded B as the
    file the completed object came from: the next ``cp B`` exited 0 "already completed" with
    A's bytes in the object."""
    a, b = make_file(12 * MiB, seed=128), make_file(12 * MiB, seed=129)
    state = tmp_path / "s"
    url = f"s3://{bucket}/k"
    done = clean(cli(s3_env, "upload", "start", a, url, "--state-file", state, "--part-size",
                     "5MiB", "--no-progress"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = state.read_bytes().splitlines(keepends=True)
    state.write_bytes(b"".join(lines[:-1]))  # the crash came before the "completed" line
    resumed = clean(cli(s3_env, "upload", "resume", "--state-file", state, "--file", b,
                        "--no-progress"))  # fmt: skip
    assert resumed.returncode == 1, resumed.stderr
    assert "the file has changed since (part 1 differs)" in resumed.stderr
    result = clean(cli(s3_env, "cp", b, url, "--state-file", state, "--no-progress"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uploaded"), result.stdout
    assert "was found to differ from the object (part 1)" in result.stderr
    assert_same(s3_client, bucket, "k", b)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_two_cp_at_once(rule_proxy, bucket, s3_client, make_file):
    file = make_file(30 * MiB, seed=124)
    command = ["cp", file, f"s3://{bucket}/k", "--part-size", "5MiB", "-c", "1", "--no-progress"]
    state = file.with_name(file.name + ".persevere")
    env, proxy = rule_proxy  # recorded: both go through it
    held = proxy.hold_parts_but(1)  # the first cp runs on, part 2 in flight
    first = subprocess.Popen(
        [sys.executable, "-m", "persevere", *map(str, command)],
        env={**os.environ, **env}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and b'"type":"part"' not in (
        state.read_bytes() if state.exists() else b""
    ):
        time.sleep(0.01)
    second = clean(cli(env, *command))
    assert second.returncode == 3, second.stderr  # try again later
    assert "already running" in second.stderr
    held.release()
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert_same(s3_client, bucket, "k", file)


@pytest.mark.process
def test_resume_with_overrides(s3_env, s3_server, bucket, s3_client, make_file, tmp_path):
    """Another machine: the file is elsewhere and the endpoint has another address."""
    file = make_file(30 * MiB, seed=125)
    state = tmp_path / "s"
    with FaultProxy(upstream(s3_server)) as proxy:
        args = ["upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                "--part-size", "5MiB", "-c", "1", "--no-progress", "--endpoint-url",
                proxy.url]  # fmt: skip
        interrupt_after_parts(s3_env, args, state, 2)
    moved = tmp_path / "elsewhere.bin"
    file.rename(moved)
    result = clean(cli(s3_env, "upload", "resume", "--state-file", state, "--no-progress",
                       "--file", moved, "--endpoint-url", s3_server.endpoint_url))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "re-reading the 2 part(s)" in result.stderr
    assert_same(s3_client, bucket, "k", moved)


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
def test_the_check_of_a_completed_upload_rides_out_an_outage_with_retry_for(
    s3_env, s3_server, bucket, make_file, tmp_path
):
    """cp over an upload it completed asks HeadObject first; ``--retry-for`` is the user's
    patience for that request too. It had 3 tries of its own (issue 25, K): exit 3."""
    file, state = make_file(MiB, seed=127), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"]
    assert cli(s3_env, *args).returncode == 0
    busy = iter(range(4))

    def unavailable(exchange):
        if exchange.operation == "HeadObject" and next(busy, None) is not None:
            return Reply(503, b"", ())
        return None

    with HttpProxy.in_front_of(s3_server.endpoint_url, reply=unavailable) as proxy:
        again = cli(s3_env, *args, "--endpoint-url", proxy.url, "--retry-for", "1m", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["already_completed"] is True
    assert [e.operation for e in proxy.requests()] == ["HeadObject"] * 5


@pytest.mark.slow  # 6-10 s: the default run stays under 3 minutes (make test-all runs it)
@pytest.mark.process
def test_the_supervisor_loop(s3_env, s3_server, bucket, s3_client, make_file):
    """What systemd's Restart=on-failure or a Kubernetes Job does: run the same command again
    after every kill and failure, until it exits 0."""
    file = make_file(60 * MiB, seed=126)
    rng = random.Random(126)

    def plan(n):
        return Fault(rng.choice(["reset", "corrupt"]), at_byte=rng.randrange(MiB, 6 * MiB)) if (
            rng.random() < 0.3
        ) else NO_FAULT  # fmt: skip

    codes = []
    with FaultProxy(upstream(s3_server), plan) as proxy:
        command = [sys.executable, "-m", "persevere", "cp", str(file), f"s3://{bucket}/k",
                   "--part-size", "5MiB", "-c", "4", "--no-progress", "--endpoint-url",
                   proxy.url, "--max-retries", "2", "--max-bandwidth", "20MiB/s"]  # fmt: skip
        journal = file.with_name(file.name + ".persevere")

        def parts_recorded():
            return journal.read_bytes().count(b'"type":"part"') if journal.exists() else 0

        for _ in range(30):
            # Each run is stopped once it has recorded 1-3 more parts (or ends by itself): a
            # clock would stop a run that is still importing on a loaded machine, every time.
            goal = parts_recorded() + rng.randint(1, 3)
            proc = subprocess.Popen(command, env={**os.environ, **s3_env},
                                    stderr=subprocess.PIPE, text=True)  # fmt: skip
            end = time.monotonic() + 120
            while proc.poll() is None and parts_recorded() < goal and time.monotonic() < end:
                time.sleep(0.02)
            try:
                _, stderr = proc.communicate(timeout=0 if proc.poll() is None else 60)
            except subprocess.TimeoutExpired:
                signal_when_handled(proc, rng.choice([signal.SIGKILL, signal.SIGTERM,
                                                      signal.SIGHUP]))  # fmt: skip
                _, stderr = proc.communicate(timeout=60)
            assert "Traceback" not in stderr, stderr
            codes.append(proc.returncode)
            if proc.returncode == 0:
                break
            assert proc.returncode in (3, 129, 130, -signal.SIGKILL), (codes, stderr)
    assert codes[-1] == 0, codes
    assert len(codes) > 1, codes  # it was interrupted at least once
    assert_same(s3_client, bucket, "k", file)
    assert no_uploads(s3_client, bucket)


def test_json_logs_for_collectors(s3_env, bucket, make_file):
    file = make_file(6 * MiB, seed=127)
    result = clean(cli(s3_env, "--log-format", "json", "cp", file, f"s3://{bucket}/k",
                       "--part-size", "5MiB"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    names = [e["event"] for e in events]
    assert {"state_file", "start", "progress", "completed"} <= set(names)
    assert all({"ts", "level", "message"} <= set(e) for e in events)
    failed = clean(cli(s3_env, "--log-format", "json", "cp", Path(file.parent, "nope"),
                       f"s3://{bucket}/k"))  # fmt: skip
    [error] = [json.loads(line) for line in failed.stderr.splitlines()]
    assert error["event"] == "error" and error["exit_code"] == 2 == failed.returncode


def _example_commands() -> dict[str, str]:
    """The persevere command line of each example under examples/."""
    import yaml  # type: ignore[import-untyped, unused-ignore]

    root = Path(__file__).parent.parent / "examples"
    service = (root / "systemd" / "persevere-backup.service").read_text().replace("\\\n", " ")
    [systemd] = [
        line.split("=", 1)[1] for line in service.splitlines() if line.startswith("ExecStart=")
    ]
    job = yaml.safe_load((root / "kubernetes" / "upload-job.yaml").read_text())
    [container] = job["spec"]["template"]["spec"]["containers"]
    kubernetes = container["args"][0].split("exec ", 1)[1]
    [entry] = [x for x in (root / "cron" / "crontab").read_text().splitlines() if x[:1] == "*"]
    cron = entry.split(None, 5)[5].split(">>")[0]
    return {"systemd": systemd, "kubernetes": kubernetes, "cron": cron}


@pytest.mark.parametrize("example", ["systemd", "kubernetes", "cron"])
def test_the_examples_run(s3_env, bucket, s3_client, make_file, tmp_path, example):
    """Each example's command, pointed at a local file and bucket, uploads it; run again,
    it has nothing to do."""
    import shlex

    file = make_file(6 * MiB, seed=128)
    words = shlex.split(_example_commands()[example])
    assert Path(words[0]).name == "persevere"
    state = str(tmp_path / "state")
    replace = {"/var/backups/db.dump": str(file), "/data/db.dump": str(file),
               "s3://my-bucket/backups/db.dump": f"s3://{bucket}/db.dump",
               "/var/lib/persevere": state, "/state": state}  # fmt: skip
    args = [replace.get(word, word) for word in words[1:]]
    for attempt in ("first", "again"):
        result = clean(cli(s3_env, *args))
        assert result.returncode == 0, (attempt, result.stderr)
    assert_same(s3_client, bucket, "db.dump", file)
    assert list((tmp_path / "state").glob("*.persevere"))


# -- what a re-run is given must apply, or it is refused (the audit's findings) -----------------
@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--no-overwrite"], "write-once, which it was started without"),
        (["--sse", "AES256", "--tagging", "k=v"], "ServerSideEncryption; Tagging"),
        (["--checksum", "SHA256"], "checksum CRC64NVME, not SHA256"),
        (["--part-size", "6MiB"], "part size 5,242,880, not 6,291,456"),
    ],
)
def test_cp_rerun_with_other_options_is_refused_not_ignored(s3_env, bucket, s3_client, make_file,
                                                           tmp_path, extra, named):  # fmt: skip
    file, state = make_file(30 * MiB, seed=71), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--part-size", "5MiB", "-c",
            "1", "--no-progress"]  # fmt: skip
    interrupt_after_parts(s3_env, args, state, 2)
    before = state.read_bytes()
    refused = clean(cli(s3_env, *args, *extra))
    assert refused.returncode == 2, refused.stderr
    assert f"with other options than these ({named})" in refused.stderr
    assert state.read_bytes() == before
    dry = clean(cli(s3_env, *args, *extra, "--dry-run"))  # fails the same way
    assert dry.returncode == 2 and f"with other options than these ({named})" in dry.stderr
    done = clean(cli(s3_env, *args))  # the same command as before goes on
    assert done.returncode == 0, done.stderr
    assert_same(s3_client, bucket, "k", file)
    again = clean(cli(s3_env, *args, "--metadata", "owner=me"))  # "already completed" would lie
    assert again.returncode == 2 and "was uploaded with other options" in again.stderr
    assert not s3_client.head_object(Bucket=bucket, Key="k").get("Metadata")


def test_a_state_file_path_that_is_a_device_is_refused_and_left_alone(s3_env, bucket, make_file,
                                                                      tmp_path):  # fmt: skip
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    null = tmp_path / "null"
    os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))  # a character device, as /dev/null
    file = make_file(1000)
    for command in (
        ["cp", file, f"s3://{bucket}/k"],
        ["upload", "start", file, f"s3://{bucket}/k"],
    ):
        result = clean(cli(s3_env, *command, "--state-file", null, "--no-progress"))
        assert result.returncode == 2, result.stderr
        assert "is not a regular file" in result.stderr and "upload resume" not in result.stderr
        assert null.is_char_device()


def test_cp_with_its_state_on_a_read_only_mount_says_so(s3_env, bucket, read_only_dir):
    result = clean(cli(s3_env, "cp", read_only_dir / "data.bin", f"s3://{bucket}/k",
                       "--state-dir", read_only_dir / "state", "--no-progress"))  # fmt: skip
    assert result.returncode == 1
    assert "cannot create state file" in result.stderr and "Read-only file system" in result.stderr


def test_cp_starts_again_after_a_header_torn_by_a_crash(s3_env, bucket, s3_client, make_file,
                                                        tmp_path):  # fmt: skip
    file, state = make_file(6 * MiB, seed=72), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"]
    assert clean(cli(s3_env, *args)).returncode == 0
    state.write_bytes(state.read_bytes()[:100])  # the header line, cut by a crash
    resumed = clean(cli(s3_env, "upload", "resume", "--state-file", state))
    assert resumed.returncode == 1 and "delete it and start again" in resumed.stderr
    again = clean(cli(s3_env, *args))
    assert again.returncode == 0, again.stderr
    assert "header line is incomplete" in again.stderr and "starting again" in again.stderr
    assert_same(s3_client, bucket, "k", file)


# -- cp and its dry run decide alike (one-path section 13, rows F and M) ------------------------
def dry_run(env, args):
    """``cp ARGS --dry-run --json``: its exit code, and its report (None if it failed)."""
    result = clean(cli(env, *args, "--dry-run", "--json"))
    report = json.loads(result.stdout) if result.returncode == 0 else None
    return result, report


def test_the_dry_run_after_a_header_torn_by_a_crash_would_start(s3_env, bucket, make_file,
                                                                tmp_path):  # fmt: skip
    file, state = make_file(MiB, seed=73), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"]
    assert clean(cli(s3_env, *args)).returncode == 0
    state.write_bytes(state.read_bytes()[:100])  # the header line, cut by a crash
    result, report = dry_run(s3_env, args)
    assert result.returncode == 0, result.stderr
    assert report["action"] == "start" and "torn" in report["state"]
    assert len(state.read_bytes()) == 100  # the dry run replaced nothing
    assert clean(cli(s3_env, *args)).returncode == 0  # as cp does


def test_a_completed_upload_whose_object_is_gone_is_uploaded_again_with_other_options(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    file, state = make_file(MiB, seed=74), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"]
    assert clean(cli(s3_env, *args)).returncode == 0
    s3_client.delete_object(Bucket=bucket, Key="k")
    other = [*args, "--checksum", "SHA256"]  # moot: the upload it recorded is not the object
    result, report = dry_run(s3_env, other)
    assert result.returncode == 0, result.stderr
    assert report["action"] == "start" and report["checksum_algorithm"] == "SHA256"
    assert report["object_exists"] is False
    again = clean(cli(s3_env, *other, "--json"))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["checksum_algorithm"] == "SHA256"
    assert_same(s3_client, bucket, "k", file)


@pytest.mark.process
def test_a_write_once_upload_whose_key_was_taken_meanwhile_is_given_up_by_both(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    file, state = make_file(30 * MiB, seed=75), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--part-size", "5MiB", "-c",
            "1", "--no-progress", "--no-overwrite"]  # fmt: skip
    interrupt_after_parts(s3_env, args, state, 2)
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"another writer's")
    before = state.read_bytes()
    dry, _ = dry_run(s3_env, args)
    assert state.read_bytes() == before
    result = clean(cli(s3_env, *args))
    assert result.returncode == dry.returncode == 1, (result.stderr, dry.stderr)
    assert "already exists; it was left untouched (write-once)" in dry.stderr
    assert "already exists; it was left untouched (write-once)" in result.stderr
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"another writer's"


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_the_dry_run_of_a_file_that_changed_size_would_start_again(s3_env, bucket, make_file,
                                                                   tmp_path):  # fmt: skip
    file, state = make_file(30 * MiB, seed=76), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--part-size", "5MiB", "-c",
            "1", "--no-progress"]  # fmt: skip
    interrupt_after_parts(s3_env, args, state, 2)
    with file.open("ab") as f:
        f.write(b"grown")
    result, report = dry_run(s3_env, args)
    assert result.returncode == 0, result.stderr
    assert report["action"] == "start", report
    assert "cp aborts that upload and starts again" in report["state"]
    assert report["size"] == 30 * MiB + 5 and report["part_count"] == 7


def test_a_completed_upload_whose_object_was_replaced_is_not_overwritten_by_either(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    file, state = make_file(MiB, seed=77), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--no-progress"]
    assert clean(cli(s3_env, *args)).returncode == 0
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"another writer's")
    dry, _ = dry_run(s3_env, [*args, "--no-overwrite"])
    result = clean(cli(s3_env, *args, "--no-overwrite"))
    assert result.returncode == dry.returncode == 1, (result.stderr, dry.stderr)
    assert "already exists; it was left untouched (write-once)" in dry.stderr
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"another writer's"


def test_an_upload_completed_by_a_run_that_crashed_before_recording_it_is_found_done(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    file, state = make_file(12 * MiB, seed=78), tmp_path / "s"
    args = ["cp", file, f"s3://{bucket}/k", "--state-file", state, "--part-size", "5MiB",
            "--no-progress"]  # fmt: skip
    assert clean(cli(s3_env, *args)).returncode == 0
    lines = state.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "completed"
    state.write_bytes(b"".join(lines[:-1]))  # completed, but the record of it lost
    result, report = dry_run(s3_env, args)
    assert result.returncode == 0, result.stderr
    assert report["action"] == "check", report
    assert "an earlier run completed it" in report["state"]
    done = clean(cli(s3_env, *args, "--json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["already_completed"] is True


@pytest.mark.process
@pytest.mark.slow  # (the default suite's 3 minutes; CI runs it: make test-all)
def test_a_stream_whose_upload_is_gone_starts_again(s3_env, bucket, s3_client, tmp_path):
    """Gone (aborted elsewhere, a lifecycle rule): standard input is not read yet, so the
    stream piped in again is uploaded whole, as a file would be."""
    from tests.test_stream import cp_args as stream_args
    from tests.test_stream import pipe_into, produced

    size, state = 40 * MiB + 3, tmp_path / "s"
    killed, _ = pipe_into(s3_env, size, 9, *stream_args(bucket, state), kill_after_parts=2,
                          state=state)  # fmt: skip
    assert killed.returncode != 0
    upload_id = json.loads(state.read_bytes().splitlines()[0])["upload_id"]
    s3_client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    again, _ = pipe_into(s3_env, size, 9, *stream_args(bucket, state, "--json"))
    assert again.returncode == 0, again.stderr
    assert "starting the upload again" in again.stderr
    assert json.loads(again.stdout)["bytes_sent"] == size
    assert sha256_of_object(s3_client, bucket, "k") == produced(size, 9)
    assert no_uploads(s3_client, bucket)
