"""Shared fixtures: one real S3 server per session, an isolated AWS environment per test.

The digest helpers and :func:`persevere` (the CLI, in this process or as a subprocess) are plain
functions so tests import them: ``from tests.conftest import ...``.

Markers (pyproject.toml; ``pytest -m NAME`` runs one kind):

- ``unit``: no server, no subprocess (given here to every test that is neither ``server`` nor
  ``process``);
- ``server``: talks to an S3 server: the session's SeaweedFS or another (given here to every
  test that uses a fixture named ``*server``);
- ``process``: starts ``persevere`` (or another program) as a process because the process is
  the point: signals, ``kill -9``, locks between two runs, standard input, the entry point.
  a test that starts one without the marker fails (``pytest_runtest_call``);
- ``slow``: minutes, or a build, or another server (HTTPS, moto, JuiceFS): ``make test-all``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeAlias

import boto3  # type: ignore[import-untyped, unused-ignore]
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests import inprocess
from tests.ruleproxy import RuleProxy
from tests.s3server import LOG_TAIL_LINES, S3Server

# boto3 ships no types and boto3-stubs is not a dependency; the alias documents intent.
S3Client: TypeAlias = Any

MiB = 1024 * 1024
_DIGEST_CHUNK_BYTES = MiB

MakeFile = Callable[..., Path]


def sha256_of_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def sha256_of_object(client: S3Client, bucket: str, key: str) -> str:
    """Digest of an object, streamed so multi-GiB objects do not land in memory."""
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        for chunk in body.iter_chunks(_DIGEST_CHUNK_BYTES):
            digest.update(chunk)
    finally:
        body.close()
    return digest.hexdigest()


def _scrub_aws_env(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Leave only what the test sets: the machine has AWS_CA_BUNDLE, a developer has profiles."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    # Point the SDK at files that do not exist, so ~/.aws/* cannot leak in.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
    # Without credentials botocore would otherwise probe the EC2 metadata service for seconds.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# The session's server, for the failure report hook below.
_session_server: S3Server | None = None

# Failure texts that point at the server rather than at persevere: the server's log says why.
_SERVER_SIDE = re.compile(
    r"InternalError|ServiceUnavailable|SlowDown|HTTP 5\d\d|\b50[0-4]\b|writable volumes|"
    r"S3ServerError|weed"
)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    global _session_server
    with S3Server(tmp_path_factory.mktemp("s3server")) as server:
        _session_server = server
        try:
            yield server
        finally:
            _session_server = None
            # Its data dies with the session: no need to wait for weed to drain its components
            # (2-4 s, and 20 s when it hangs: STOP_TIMEOUT_S) at the end of every worker.
            server.stop(kill=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A test that fails on a server-side error gets the server log's last lines in its report,
    so the failure explains itself (e.g. "failed to find writable volumes")."""
    report = yield
    if report.failed and _session_server is not None:
        text = str(report.longrepr) + report.capstdout + report.capstderr
        if _SERVER_SIDE.search(text):
            report.sections.append(
                (
                    f"SeaweedFS log, last lines ({_session_server.log_path})",
                    _session_server.log_tail(LOG_TAIL_LINES),
                )
            )
    return report


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """os.environ holding exactly the server's AWS_* settings; subprocesses inherit it."""
    _scrub_aws_env(monkeypatch, tmp_path)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return {name: value for name, value in os.environ.items() if name.startswith("AWS_")}


def _client_for(server: S3Server, access_key: str, secret_key: str) -> S3Client:
    config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=server.region,
        config=config,
    )


@pytest.fixture(scope="session")
def s3_client(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Client]:
    """Admin client, built once under a scrubbed environment so no profile settings leak in."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _scrub_aws_env(monkeypatch, tmp_path_factory.mktemp("aws-home"))
        client = _client_for(s3_server, s3_server.access_key, s3_server.secret_key)
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_readonly_client(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Client]:
    """Client of the identity that may only Read and List: for AccessDenied paths."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _scrub_aws_env(monkeypatch, tmp_path_factory.mktemp("aws-home"))
        client = _client_for(
            s3_server, s3_server.readonly_access_key, s3_server.readonly_secret_key
        )
    yield client
    client.close()


class _WarmBuckets:
    """New, empty buckets made ahead of the tests that take them, on a thread of their own.

    SeaweedFS answers the first write into a new bucket (a collection of its own) about
    0.2 s late, however small: every test that uploaded paid it. A bucket made here had
    one object written and deleted, so its volumes exist; otherwise it is new and empty.
    """

    AHEAD = 2

    def __init__(self, server: S3Server, home: Path) -> None:
        with pytest.MonkeyPatch.context() as monkeypatch:
            _scrub_aws_env(monkeypatch, home)
            self._client = _client_for(server, server.access_key, server.secret_key)
        self._ready: queue.Queue[str] = queue.Queue(self.AHEAD)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._make, daemon=True)
        self._thread.start()

    def take(self) -> str:
        """A warm bucket if one is ready (or soon), else a new one made now."""
        try:
            return self._ready.get(timeout=0.5 if self._thread.is_alive() else 0)
        except queue.Empty:
            return _new_bucket(self._client)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)
        while not self._ready.empty():
            delete_bucket(self._client, self._ready.get_nowait())
        self._client.close()

    def _make(self) -> None:
        try:
            self._make_until_closed()
        except Exception:  # the server is gone or failing: the tests make their own, and say
            return

    def _make_until_closed(self) -> None:
        while not self._closed.is_set():
            name = _new_bucket(self._client)
            self._client.put_object(Bucket=name, Key="warm", Body=b"")
            self._client.delete_object(Bucket=name, Key="warm")
            while not self._closed.is_set():
                try:
                    self._ready.put(name, timeout=0.2)
                    break
                except queue.Full:
                    pass
            else:
                delete_bucket(self._client, name)


def _new_bucket(client: S3Client) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"  # SeaweedFS rejects very short names
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def _warm_buckets(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_WarmBuckets]:
    buckets = _WarmBuckets(s3_server, tmp_path_factory.mktemp("aws-home"))
    yield buckets
    buckets.close()


@pytest.fixture
def bucket(s3_client: S3Client, _warm_buckets: _WarmBuckets) -> Iterator[str]:
    """A new bucket per test, so tests never see each other's objects or multipart uploads
    (made ahead: :class:`_WarmBuckets`).

    Given back at teardown (uploads aborted, objects and bucket deleted): each bucket is a
    SeaweedFS collection holding volumes of its own, and the server's volumes are finite.
    """
    name = _warm_buckets.take()
    yield name
    delete_bucket(s3_client, name)


def delete_bucket(client: S3Client, name: str) -> None:
    """Abort every multipart upload, delete every object, then the bucket itself."""
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for upload in page.get("Uploads") or []:
            with contextlib.suppress(ClientError):  # completed or aborted meanwhile
                client.abort_multipart_upload(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents") or []]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=name)


@pytest.fixture
def rule_proxy(
    s3_env: dict[str, str], s3_server: S3Server
) -> Iterator[tuple[dict[str, str], RuleProxy]]:
    """``(env, proxy)``: ``s3_env`` with its endpoint a :class:`tests.ruleproxy.RuleProxy` in
    front of the server, to hold parts (``proxy.hold_parts_but``, ``interrupt_after_parts``).
    A state file records that endpoint: the test's later runs go through the proxy too."""
    with RuleProxy.in_front_of(s3_server.endpoint_url) as proxy:
        yield {**s3_env, "AWS_ENDPOINT_URL": proxy.url}, proxy


@pytest.fixture
def make_file(tmp_path: Path) -> MakeFile:
    """``make_file(size, seed=0, name=None) -> Path``: deterministic pseudo-random bytes.

    Every MiB differs, so parts swapped or duplicated by an upload change the digest.
    """

    def make(size: int, seed: int = 0, name: str | None = None) -> Path:
        path = tmp_path / (name or f"data-{size}-{seed}.bin")
        rng = random.Random(seed)
        with path.open("wb") as file:
            remaining = size
            while remaining:
                block = min(remaining, MiB)
                file.write(rng.randbytes(block))
                remaining -= block
        return path

    return make


def interrupt_after_parts(
    env: dict[str, str],
    args: list[Any],
    state: Path,
    parts: int,
    sig: int = signal.SIGKILL,
    deadline_s: float = 60.0,
    stdin: Any = None,
    proxy: RuleProxy | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``persevere ARGS`` and send it ``sig`` once its journal holds ``parts`` part lines
    (or earlier if it ends by itself); the finished process, with its output. ``stdin``: what
    it reads as standard input (an open file: ``< file``). ``proxy``: the RuleProxy ``env``
    points at (the ``rule_proxy`` fixture): it holds every UploadPart but 1..``parts``, so the
    signal finds those parts recorded and the others in flight, however few parts the file
    has; they go on once persevere says it is stopping (an orderly stop waits 10 s for the
    answer to a part whose body is all sent, and a held one may be), or once it is killed."""
    held = proxy.hold_parts_but(*range(1, parts + 1)) if proxy is not None else None

    def default_disposition() -> None:
        # (a suite run under nohup ignores SIGHUP, and persevere keeps an ignored stop signal
        # ignored, as nohup asks: the signal this test sends must not be one)
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)

    proc = subprocess.Popen(
        [sys.executable, "-m", "persevere", *map(str, args)],
        env={**os.environ, **env},
        preexec_fn=default_disposition,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output: dict[str, list[str]] = {"stdout": [], "stderr": []}  # as it comes: see the stop
    stopping = threading.Event()

    def read(name: str) -> None:
        for line in getattr(proc, name):
            output[name].append(line)
            if "received: stopping" in line:
                stopping.set()

    readers = [threading.Thread(target=read, args=(name,), daemon=True) for name in output]
    for reader in readers:
        reader.start()
    try:
        end = time.monotonic() + deadline_s
        while proc.poll() is None and time.monotonic() < end:
            if state.exists() and state.read_bytes().count(b'"type":"part"') >= parts:
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(sig)
            end = time.monotonic() + 60
            while held is not None and sig != signal.SIGKILL and time.monotonic() < end:
                if stopping.wait(0.05) or proc.poll() is not None:
                    break
    finally:
        if held is not None:
            held.release()
        proc.wait(timeout=60)
        for reader in readers:
            reader.join(timeout=60)
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()
    stdout, stderr = ("".join(output[name]) for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def signal_when_handled(proc: subprocess.Popen[Any], sig: int) -> None:
    """Send a stop signal ``sig`` to a starting ``persevere`` process once persevere handles
    it. One that comes before persevere's first lines run (its interpreter still importing:
    seconds, on a loaded machine) kills it as it would any program, with no exit code of
    persevere's. Linux's /proc tells: the interpreter catches SIGINT by itself, persevere's
    ``main()`` SIGTERM and SIGHUP too. Elsewhere, and SIGKILL, at once."""
    status = Path(f"/proc/{proc.pid}/status")
    while sig != signal.SIGKILL and proc.poll() is None:
        try:
            masks = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except OSError:  # no /proc, or it ended meanwhile
            break
        if int(masks.get("SigCgt", "0"), 16) & (1 << (signal.SIGTERM - 1)):
            break
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(sig)


# The test whose call phase is running, and whether it started a process (see below).
_current_item: pytest.Item | None = None
_started_a_process = False
_popen_init = subprocess.Popen.__init__


def _noted_popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    global _started_a_process
    _started_a_process = True
    _popen_init(self, *args, **kwargs)


# Every process a test starts (subprocess.run, Popen, asyncio's, persevere's own shard
# processes) is noted, so the ``process`` marker cannot be forgotten: see pytest_runtest_call.
subprocess.Popen.__init__ = _noted_popen_init  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A test that starts a process (in its body, not in a fixture) must be marked
    ``process``: ``pytest -m "not process"`` then means what it says."""
    global _current_item, _started_a_process
    _current_item, _started_a_process = item, False
    try:
        result = yield
    finally:
        started, _current_item, _started_a_process = _started_a_process, None, False
    if started and item.get_closest_marker("process") is None:
        pytest.fail(f"{item.nodeid} starts a process: mark it @pytest.mark.process", False)
    return result


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``server`` for every test that uses an S3 server (a fixture named ``*server``:
    ``s3_server``, ``tls_server``, ``compat_server``...), ``unit`` for the rest that start no
    process (see the module's docstring)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        uses_server = any(name == "server" or name.endswith("_server") for name in fixtures)
        if uses_server and item.get_closest_marker("server") is None:
            item.add_marker(pytest.mark.server)
        if not any(item.get_closest_marker(name) for name in ("server", "process")):
            item.add_marker(pytest.mark.unit)


def persevere(
    env: Mapping[str, str] | None,
    *args: Any,
    process: bool = False,
    input: str | bytes | None = None,
    stdin: Any = None,
    cwd: Path | str | None = None,
    timeout: float = 300,
    whole_env: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``persevere ARGS`` with ``os.environ`` updated by ``env`` (or exactly ``env``:
    ``whole_env=True``); its exit code, stdout and stderr (text).

    Runs in this process (:mod:`tests.inprocess`, the real entry point, about 100 times
    cheaper than a process) unless the process is the point: ``process=True``, standard
    input given (``input`` text or bytes, ``stdin`` a file or ``subprocess.DEVNULL``), or a
    thread other than the main one. A subprocess needs the test marked ``process``
    (``pytest_runtest_call`` fails it otherwise).
    """
    full_env = dict(env or {}) if whole_env else {**os.environ, **(env or {})}
    argv = [str(arg) for arg in args]
    in_main_thread = threading.current_thread() is threading.main_thread()
    if process or input is not None or stdin is not None or not in_main_thread:
        return subprocess.run(
            [sys.executable, "-m", "persevere", *argv],
            env=full_env,
            capture_output=True,
            text=not isinstance(input, bytes),
            input=input,
            stdin=stdin,
            cwd=cwd,
            timeout=timeout,
        )
    return inprocess.run(argv, full_env, cwd)


def start_stream(bucket, key, state, fd, **asked):
    """A new upload of the stream on ``fd`` (``asked``: the Request's other fields)."""
    from persevere._progress import NullProgress
    from persevere._request import Request, Source
    from persevere._upload import upload

    request = Request(Path(state), Source(Path("-"), stream=True, fd=fd), bucket, key, **asked)
    return upload(request, NullProgress())
