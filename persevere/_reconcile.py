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
        size = plan.size_of(number)
        local = journal_parts.get(number)
        there = remote.get(number)
        if there is not None and there.size != size:
            there = None  # not bytes of this plan: re-upload overwrites it
        if local is not None and there is not None:
            agrees = ETag(local.etag).same(there.etag) and (
                there.checksum is None or digest_of(there.checksum) == local.checksum
            )
            if agrees:
                result.kept[number] = local
                continue
            result.lost.append(number)
        elif local is not None:
            result.lost.append(number)
        elif there is not None:
            result.adopt[number] = there
            continue
        result.missing.append(number)
    return result
