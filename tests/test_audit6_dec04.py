"""An adversarial audit of ``verify`` and ``cp DIR`` (2026-12-04, sixth): results that are
false, or reasons that say what is not so."""

from __future__ import annotations

import os

import pytest

from tests.conftest import persevere

MiB = 1024 * 1024


@pytest.mark.process
def test_a_stream_uploads_state_file_names_the_differing_part(s3_env, bucket, tmp_path):
    """`verify --state-file` of a stream's upload (`cp -`): its header records file_size 0,
    so verify said "the state file's upload was of 0 bytes ...: the object was not written
    by that upload (replaced since?)" of the very object that upload wrote, and named no
    part."""
    data = os.urandom(9 * MiB)
    state = tmp_path / "s.persevere"
    args = ("cp", "-", f"s3://{bucket}/s", "--state-file", state)  # parts of 8 MiB and 1 MiB
    sent = persevere(s3_env, *args, "--no-progress", input=data)
    assert sent.returncode == 0, sent.stderr
    same = tmp_path / "same.bin"
    same.write_bytes(data)
    checked = persevere(s3_env, "verify", same, f"s3://{bucket}/s", "--state-file", state)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    changed = tmp_path / "changed.bin"
    changed.write_bytes(data[: 8 * MiB] + bytes([data[8 * MiB] ^ 1]) + data[8 * MiB + 1 :])
    checked = persevere(s3_env, "verify", changed, f"s3://{bucket}/s", "--state-file", state)
    assert checked.returncode == 4, checked.stdout + checked.stderr
    assert "not written by that upload" not in checked.stdout, checked.stdout
    assert "first differing part: 2" in checked.stdout, checked.stdout


def test_verify_dir_leaves_out_the_trees_journal_kept_inside_it(s3_env, bucket, tmp_path):
    """`cp DIR --state-dir DIR/.state` never sends its journal (nor its files' journals),
    but `verify DIR` (which has no --state-dir) listed them as files without an object:
    "missing", exit 4, for a tree that is all in S3."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "small.txt").write_bytes(b"small")
    (tree / "big.bin").write_bytes(os.urandom(9 * MiB))  # a multipart file: a journal of its own
    sent = persevere(s3_env, "cp", tree, f"s3://{bucket}/t/", "--state-dir", tree / ".state")
    assert sent.returncode == 0, sent.stderr
    checked = persevere(s3_env, "verify", tree, f"s3://{bucket}/t/")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 file(s): 2 same" in checked.stdout, checked.stdout
    (tree / "small.txt").write_bytes(b"SMALL")
    checked = persevere(s3_env, "verify", tree, f"s3://{bucket}/t/")
    assert checked.returncode == 4, checked.stdout + checked.stderr
    assert "2 file(s): 1 same, 1 differ, 0 missing" in checked.stdout, checked.stdout


def test_an_sse_c_object_in_a_tree_cannot_tell_and_the_rest_is_checked(
    s3_env, s3_client, bucket, tmp_path
):
    """An object encrypted with SSE-C answers HeadObject (without its key) 400 with no body:
    `verify` said "error: HeadObject: 400: Bad Request" (exit 1), and for a tree that one
    object stopped the whole check, where the README promises exit 5 ("cannot be checked
    remotely")."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "plain").write_bytes(b"plain")
    (tree / "secret").write_bytes(b"secret")
    sent = persevere(s3_env, "cp", tree, f"s3://{bucket}/t/")
    assert sent.returncode == 0, sent.stderr
    key = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
    s3_client.put_object(Bucket=bucket, Key="t/secret", Body=b"secret", **key)
    one = persevere(s3_env, "verify", tree / "secret", f"s3://{bucket}/t/secret")
    assert one.returncode == 5, one.stdout + one.stderr
    assert "encrypted with SSE-C" in one.stdout, one.stdout
    checked = persevere(s3_env, "verify", tree, f"s3://{bucket}/t/")
    assert checked.returncode == 5, checked.stdout + checked.stderr
    assert "2 file(s): 1 same, 0 differ, 0 missing, 1 cannot tell" in checked.stdout
