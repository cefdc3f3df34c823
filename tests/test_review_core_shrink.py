"""Review of the core's shrink (ed797a3..335a32b): the behaviours its folds touched that no test
pinned yet. Each passes on both sides of that diff (old and new compared, nothing differed): a
later fold that changes one of them fails here."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from persevere._credentials import CredentialRenewer
from persevere._errors import StateFileError
from persevere._journal import Journal
from tests.conftest import persevere


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_journal_refused_on_opening_leaves_no_descriptor_open(tmp_path: Path):
    """Journal.open and open_log (one closing context since the shrink) close the file on
    every refusal: locked by another holder, not ours, empty, a torn header, a directory."""
    header = b'{"type":"header","format":"persevere-journal","version":1}\n'
    cases = {"hello": b"hello\n", "empty": b"", "torn-header": header[:20], "locked": header}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "a-directory").mkdir()
    holder = os.open(tmp_path / "locked", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another open file description: refused as locked
    try:
        before = _open_fds()
        for name in (*cases, "a-directory"):
            with pytest.raises(StateFileError):
                Journal.open(tmp_path / name)
            assert _open_fds() == before, name
        for name in ("hello", "locked", "a-directory"):  # (a tree's: empty or torn is its own)
            with pytest.raises(StateFileError):
                Journal.open_log(tmp_path / name)
            assert _open_fds() == before, name
    finally:
        os.close(holder)
    assert (tmp_path / "hello").read_bytes() == b"hello\n"  # another file: never cut


class _Frozen:
    def __init__(self, key: str) -> None:
        self.key = key

    async def get_frozen_credentials(self) -> str:
        return self.key


def _renewer(resolve: Any) -> CredentialRenewer:
    renewer = CredentialRenewer(resolve, clock=lambda: 0.0)
    renewer._signer = type("Signer", (), {"_credentials": _Frozen("old")})()
    return renewer


def test_a_failed_renewal_and_one_finding_nothing_newer_warn_with_the_reason(caplog):
    """The two ways a renewal ends without fresh credentials (folded into one warning)."""

    async def failing() -> Any:
        raise RuntimeError("the metadata service timed out")

    async def same() -> Any:
        return _Frozen("old")

    async def nothing() -> Any:
        return None

    caplog.set_level(logging.WARNING, logger="persevere")
    for resolve, why in (
        (failing, "resolving them again failed: the metadata service timed out"),
        (same, "the chain has none newer"),
        (nothing, "the chain has none newer"),
    ):
        caplog.clear()
        assert anyio.run(_renewer(resolve).renew, None, "ExpiredToken") is False
        assert caplog.messages == [f"S3 refused the credentials (ExpiredToken); {why}"]


def test_a_config_file_endpoint_is_refused_in_its_profile_name(tmp_path: Path, monkeypatch):
    """An endpoint_url from the AWS config file is held to the flag's rules, and the refusal
    names where it came from (the default profile, or the named one), exit 2."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "config"
    config.write_text(
        "[default]\nregion = us-east-1\nendpoint_url = http://h/with/path\n"
        "[profile p1]\nregion = us-east-1\nendpoint_url = ftp://h\n"
    )
    env = {
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    default = persevere(env, "upload", "list", "s3://bucket")
    assert default.returncode == 2, default.stderr
    assert "persevere: error: AWS config file (the default profile): the endpoint URL has a " \
           "path after HOST[:PORT]" in default.stderr  # fmt: skip
    named = persevere({**env, "AWS_PROFILE": "p1"}, "upload", "list", "s3://bucket")
    assert named.returncode == 2, named.stderr
    assert "persevere: error: AWS config file (profile 'p1'): the endpoint URL must be " \
           "http://HOST[:PORT] or https://HOST[:PORT]" in named.stderr  # fmt: skip


def test_write_once_against_no_endpoint_leaves_no_state_file(tmp_path: Path, monkeypatch):
    """--no-overwrite's HeadObject fails before anything is created: exit 3 with "nothing was
    created", and the empty state file is removed (since the shrink: by created()'s one
    discard_unwritten, no longer by the HeadObject's own handler)."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    env = {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    file = tmp_path / "small"
    file.write_bytes(b"x" * 100)
    state = tmp_path / "small.st"
    refused = persevere(
        env, "upload", "start", file, "s3://bucket/k", "--state-file", state, "--no-overwrite",
        "--no-progress", "--endpoint-url", "http://127.0.0.1:1",
    )  # fmt: skip
    assert refused.returncode == 3, refused.stderr
    assert "HeadObject failed 4 times" in refused.stderr
    assert "nothing was created: check the endpoint and the network, then run the same " \
           "command again" in refused.stderr  # fmt: skip
    assert not state.exists()
