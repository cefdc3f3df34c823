"""Resume's reconciliation of the journal with ListParts. Pure: S3 is the truth.

- journal and S3 agree on a part (same ETag and size): kept;
- the journal has a part S3 lost (or S3 holds different bytes for it): uploaded again;
- S3 has a part the journal lacks (a crash between S3's answer and the fsync): a candidate for
  adoption, kept only if it matches the local bytes (checked by the caller, which must read them);
- parts outside the plan are ignored: CompleteMultipartUpload lists only the plan's parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._journal import PartRecord
from ._plan import PartPlan
from ._quirks import ETag, digest_of


@dataclass(frozen=True, slots=True)
class RemotePart:
    part_number: int
    etag: str
    size: int
    checksum: str | None  # present when the endpoint reports it (AWS does; SeaweedFS does not)


@dataclass(slots=True)
class Reconciliation:
    kept: dict[int, PartRecord] = field(default_factory=dict)
    adopt: dict[int, RemotePart] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)  # journal had them, S3 does not (or differs)
    missing: list[int] = field(default_factory=list)  # every part still to upload, in order


def reconcile(
    plan: PartPlan, journal_parts: dict[int, PartRecord], remote: dict[int, RemotePart]
) -> Reconciliation:
    result = Reconciliation()
    for number in plan.part_numbers():
        local = journal_parts.get(number)
        there = remote.get(number)
        if there is not None and there.size != plan.size_of(number):
            there = None  # not bytes of this plan: re-upload overwrites it
        if local is not None and there is not None and agrees(local, there):
            result.kept[number] = local
        elif local is None and there is not None:
            result.adopt[number] = there
        else:
            if local is not None:
                result.lost.append(number)
            result.missing.append(number)
    return result


def agrees(local: PartRecord, there: RemotePart) -> bool:
    """The journal's part and S3's are the same bytes: the same ETag and size, and the
    checksum S3 states (if it states one) the recorded one."""
    return (
        ETag(local.etag).same(there.etag)
        and there.size == local.size
        and (there.checksum is None or digest_of(there.checksum) == local.checksum)
    )


def holds(there: RemotePart, checksum: str, md5: str | None) -> bool:
    """S3's part, unknown to the journal, holds the local bytes of ``checksum`` and ``md5``
    (hex): by the checksum S3 states, else by its ETag, when that is the bytes' MD5."""
    if there.checksum is not None:
        return digest_of(there.checksum) == checksum
    etag = ETag(there.etag)
    return etag.part_count is None and etag.md5 == md5
