"""Review of the pipeline's reshaping (ed797a3..d826202): what it changed that users see.

The doors' keywords went from signatures to ``**asked: Unpack[...]`` checked by
``_request.given``; a wrong keyword must stay the TypeError Python gave before: naming the
function, and the first wrong keyword of the call (not the alphabetically first)."""

from __future__ import annotations

import pytest

import persevere

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("door", "name", "positional"),
    [
        (persevere.upload_file_sync, "start_upload", ("nothing", "b", "k", "s")),
        (persevere.create_upload_sync, "create_upload", ("nothing", "b", "k", "s")),
        (persevere.resume_sync, "resume_upload", ("s",)),
        (persevere.upload_shard_sync, "upload_shard", ("s", 0, 2)),
    ],
)
def test_a_wrong_keyword_is_pythons_type_error_as_before(
    tmp_path, monkeypatch, door, name, positional
):
    """Two wrong keywords, the later one first in the alphabet: the message is Python's own
    for the function's signature, as before the keywords were declared once."""
    monkeypatch.chdir(tmp_path)
    extra = {"shards": 2} if name == "create_upload" else {}
    with pytest.raises(TypeError) as raised:
        door(*positional, **extra, part_sise=MiB, chunk=MiB)
    assert str(raised.value) == f"{name}() got an unexpected keyword argument 'part_sise'"
    assert not (tmp_path / "s").exists()
