"""Resume's reconciliation: ListParts is the truth, the journal is a claim to check."""

from __future__ import annotations

from persevere._journal import PartRecord
from persevere._plan import PartPlan
from persevere._reconcile import Reconciliation, RemotePart, reconcile
from persevere._units import MiB

# Three parts: 8 MiB, 8 MiB, 4 MiB + 5.
PLAN = PartPlan(file_size=20 * MiB + 5, part_size=8 * MiB)
SIZES = {1: 8 * MiB, 2: 8 * MiB, 3: 4 * MiB + 5}


def local(number: int, etag: str | None = None, checksum: str | None = None) -> PartRecord:
    return PartRecord(number, etag or f'"etag{number}"', checksum or f"crc{number}", SIZES[number])


def remote(
    number: int,
    etag: str | None = None,
    checksum: str | None = "same",
    size: int | None = None,
) -> RemotePart:
    if checksum == "same":
        checksum = f"crc{number}"
    return RemotePart(
        number, etag or f'"etag{number}"', SIZES[number] if size is None else size, checksum
    )


def test_nothing_anywhere_means_everything_is_missing():
    result = reconcile(PLAN, {}, {})
    assert result == Reconciliation(missing=[1, 2, 3])


def test_agreeing_parts_are_kept():
    journal = {n: local(n) for n in (1, 2, 3)}
    result = reconcile(PLAN, journal, {n: remote(n) for n in (1, 2, 3)})
    assert result.kept == journal
    assert result.lost == []
    assert result.missing == []
    assert result.adopt == {}


def test_etag_comparison_ignores_quotes_and_case():
    journal = {1: local(1, etag='"ABCDEF"')}
    result = reconcile(PLAN, journal, {1: remote(1, etag="abcdef")})
    assert result.kept == journal


def test_endpoint_without_checksums_agrees_on_etag_and_size():
    """SeaweedFS's ListParts reports no checksum: the ETag and size have to do."""
    journal = {1: local(1)}
    result = reconcile(PLAN, journal, {1: remote(1, checksum=None)})
    assert result.kept == journal


def test_composite_checksum_suffix_is_ignored():
    journal = {1: local(1)}
    result = reconcile(PLAN, journal, {1: remote(1, checksum="crc1-1")})
    assert result.kept == journal


def test_part_s3_lost_is_uploaded_again():
    journal = {1: local(1), 2: local(2)}
    result = reconcile(PLAN, journal, {1: remote(1)})
    assert result.kept == {1: local(1)}
    assert result.lost == [2]
    assert result.missing == [2, 3]


def test_different_etag_on_s3_is_lost():
    result = reconcile(PLAN, {1: local(1)}, {1: remote(1, etag='"other"')})
    assert result.kept == {}
    assert result.lost == [1]
    assert result.missing == [1, 2, 3]


def test_remote_checksum_mismatch_is_lost():
    result = reconcile(PLAN, {2: local(2)}, {2: remote(2, checksum="not-crc2")})
    assert result.kept == {}
    assert result.lost == [2]
    assert 2 in result.missing


def test_remote_part_of_the_wrong_size_counts_as_absent():
    # Same ETag even, but not bytes of this plan: re-uploading overwrites it.
    result = reconcile(
        PLAN, {1: local(1)}, {1: remote(1, size=5 * MiB), 3: remote(3, size=8 * MiB)}
    )
    assert result.kept == {}
    assert result.lost == [1]
    assert result.adopt == {}  # part 3 has the wrong size, so it is not adoptable either
    assert result.missing == [1, 2, 3]


def test_part_on_s3_but_not_in_the_journal_is_a_candidate_for_adoption():
    """A crash between S3's answer and the fsync: the caller checks the bytes before adopting."""
    result = reconcile(PLAN, {1: local(1)}, {1: remote(1), 3: remote(3)})
    assert result.kept == {1: local(1)}
    assert result.adopt == {3: remote(3)}
    assert result.lost == []
    assert result.missing == [2]


def test_remote_parts_beyond_the_plan_are_ignored():
    extra = RemotePart(4, '"etag4"', 8 * MiB, "crc4")
    far = RemotePart(10_000, '"etag"', 8 * MiB, None)
    journal = {n: local(n) for n in (1, 2, 3)}
    result = reconcile(PLAN, journal, {**{n: remote(n) for n in (1, 2, 3)}, 4: extra, 10_000: far})
    assert result.kept == journal
    assert result.adopt == {}
    assert result.lost == []
    assert result.missing == []


def test_missing_is_every_part_to_upload_in_order():
    journal = {1: local(1), 3: local(3)}
    remote_parts = {1: remote(1, etag='"changed"'), 2: remote(2), 3: remote(3)}
    result = reconcile(PLAN, journal, remote_parts)
    assert result.kept == {3: local(3)}
    assert result.adopt == {2: remote(2)}
    assert result.lost == [1]
    assert result.missing == [1]


def test_empty_file_plan_has_one_empty_part():
    plan = PartPlan(file_size=0, part_size=8 * MiB)
    assert reconcile(plan, {}, {}).missing == [1]
    record = PartRecord(1, '"d41d8cd98f00b204e9800998ecf8427e"', "AAAAAAAAAAA=", 0)
    there = RemotePart(1, record.etag, 0, None)
    assert reconcile(plan, {1: record}, {1: there}).kept == {1: record}
