"""The part plan: how a file of a given size is cut into S3 multipart parts.

Pure arithmetic, no I/O. S3's rules (see shared S3 notes): 1..10,000 parts, each 5 MiB..5 GiB
except the last, which may be smaller; hence at most 48.8 TiB per object. Some S3-compatible
endpoints allow fewer parts (Scaleway: 1,000): ``max_parts`` lowers the limit.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from ._errors import PlanError
from ._units import GiB, MiB, format_size

MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = MAX_PARTS * MAX_PART_SIZE
DEFAULT_MIN_AUTO_PART_SIZE = 8 * MiB


@dataclass(frozen=True, slots=True)
class PartPlan:
    file_size: int
    part_size: int

    @property
    def part_count(self) -> int:
        # A 0-byte file is still one (empty) part: CompleteMultipartUpload needs at least one.
        return max(1, -(-self.file_size // self.part_size))

    def offset(self, part_number: int) -> int:
        return (part_number - 1) * self.part_size

    def size_of(self, part_number: int) -> int:
        if not 1 <= part_number <= self.part_count:
            raise ValueError(f"part {part_number} is outside 1..{self.part_count}")
        return min(self.part_size, self.file_size - self.offset(part_number))

    def part_numbers(self) -> range:
        return range(1, self.part_count + 1)

    def fits(self, part_number: int, size: int) -> bool:
        """Could a part of the plan be this one? Every part has its exact size."""
        return 1 <= part_number <= self.part_count and size == self.size_of(part_number)

    def describe(self) -> str:
        """``1.0 GiB in 135 parts of 7.6 MiB (8,000,000 bytes)``: printed at start, so a part
        size given in decimal units by mistake (8MB for 8MiB) shows before anything is sent."""
        size = format_size(self.file_size)
        if self.part_count == 1:
            return f"{size} in 1 part"
        text = f"{size} in {self.part_count:,} parts of {format_size(self.part_size)}"
        if self.part_size % MiB:
            text += f" ({self.part_size:,} bytes)"
        return text


def auto_part_size(file_size: int, max_parts: int = MAX_PARTS) -> int:
    """The smallest MiB-aligned size >= 8 MiB that keeps the file within ``max_parts`` parts
    (S3's 10,000, or fewer for endpoints that allow fewer: Scaleway allows 1,000)."""
    needed = -(-file_size // max_parts)
    return max(DEFAULT_MIN_AUTO_PART_SIZE, -(-needed // MiB) * MiB)


def make_plan(file_size: int, part_size: int | None = None, max_parts: int = MAX_PARTS) -> PartPlan:
    """Validate and build a plan, refusing any that S3 would reject later.

    ``max_parts``: the endpoint's part limit, when it is below S3's 10,000 (Scaleway: 1,000);
    the automatic part size and every refusal respect it.
    """
    if not 1 <= max_parts <= MAX_PARTS:
        raise PlanError(
            f"the part limit must be between 1 and {MAX_PARTS:,}, not {max_parts:,}",
            param="max_parts",
        )
    limit = "S3 allows" if max_parts == MAX_PARTS else "the part limit allows"
    if file_size < 0:
        raise PlanError(f"file size cannot be negative: {file_size}")
    largest = max_parts * MAX_PART_SIZE
    if file_size > largest:
        if max_parts == MAX_PARTS:
            size, most = _apart(file_size, MAX_OBJECT_SIZE)
            raise PlanError(
                f"file is {size}; S3 objects are at most {most} (10,000 parts of 5 GiB)"
            )
        size, fit = _apart(file_size, largest)
        raise PlanError(
            f"file is {size}; in at most {max_parts:,} parts of 5 GiB (S3's largest part) "
            f"only {fit} fit",
            param="max_parts",
        )
    if part_size is None:  # at most 5 GiB: the size was checked against the largest above
        return PartPlan(file_size, auto_part_size(file_size, max_parts))
    try:  # the journal records it: 8.5 MiB or "8MiB" would be unusable
        part_size = operator.index(part_size)
    except TypeError:
        raise PlanError(f"part size must be a whole number of bytes, not {part_size!r}",
                        param="part_size") from None  # fmt: skip
    if part_size < MIN_PART_SIZE:
        size, least = _apart(part_size, MIN_PART_SIZE, "5 MiB")
        raise PlanError(f"part size {size} is below S3's minimum of {least}")
    if part_size > MAX_PART_SIZE:
        size, most = _apart(part_size, MAX_PART_SIZE, "5 GiB")
        raise PlanError(f"part size {size} is above S3's maximum of {most}")
    plan = PartPlan(file_size, part_size)
    if plan.part_count > max_parts:
        raise PlanError(
            f"part size {format_size(part_size)} would cut this {format_size(file_size)} file "
            f"into {plan.part_count:,} parts; {limit} at most {max_parts:,} "
            f"(use --part-size {auto_part_size(file_size, max_parts) // MiB}MiB or more, or "
            "'auto')"
        )
    return plan


# -- streams: the length is not known in advance ---------------------------------------------
@dataclass(frozen=True, slots=True)
class StreamSchedule:
    """Part sizes for a stream of unknown length: ``first`` for the first ``every`` parts, then
    doubling every ``every`` parts, up to 5 GiB.

    Without an expected size: 8 MiB x 1,000, 16 MiB x 1,000, ... 4 GiB x 1,000, so a stream of
    up to 7.8 TiB fits in 10,000 parts (:attr:`capacity`) and memory (a part stays in memory
    until S3 has it) grows only with the stream: parts stay <= 128 MiB for the first 242 GiB.
    S3's 48.8 TiB needs 10,000 parts of 5 GiB, so only a stream with an expected size near it
    can reach it (and then holds 5 GiB parts in memory).
    With an expected size, the first ``every`` parts cover it (planned as for a quarter more,
    so at most 8,000 parts), and a stream longer than expected goes on with doubled parts.
    S3 allows unequal parts (not every S3-compatible endpoint does: R2 wants them equal).
    """

    first: int = 8 * MiB
    every: int = 1_000

    @classmethod
    def for_expected(cls, expected_size: int | None) -> StreamSchedule:
        """The expected size fits in 8,000 parts (a quarter more would fit in 10,000), so a
        stream somewhat longer than announced still has parts left (at double size)."""
        if expected_size is None:
            return cls()
        if expected_size > MAX_OBJECT_SIZE:  # its last parts could never be sent
            size, most = _apart(expected_size, MAX_OBJECT_SIZE)
            raise PlanError(
                f"the expected size {size} is over S3's largest object, {most} (10,000 parts "
                "of 5 GiB)",
                param="expected_size",
            )
        roomy = make_plan(min(MAX_OBJECT_SIZE, expected_size * 5 // 4))
        needed = max(1, -(-expected_size // roomy.part_size))
        return cls(roomy.part_size, min(MAX_PARTS, needed))

    def size_of(self, part_number: int) -> int:
        if not 1 <= part_number <= MAX_PARTS:
            raise ValueError(f"part {part_number} is outside 1..{MAX_PARTS}")
        step = (part_number - 1) // self.every
        return min(MAX_PART_SIZE, self.first << min(step, 40))

    def fits(self, part_number: int, size: int) -> bool:
        """Could a part of the stream be this one? At most its size: the last may be short."""
        return 1 <= part_number <= MAX_PARTS and size <= self.size_of(part_number)

    def offset(self, part_number: int) -> int:
        """Where part ``part_number`` starts in the stream (every earlier part full)."""
        whole_steps, rest = divmod(part_number - 1, self.every)
        total = sum(self.size_of(1 + step * self.every) * self.every for step in range(whole_steps))
        return total + rest * self.size_of(part_number)

    @property
    def capacity(self) -> int:
        """The longest stream that fits in S3's 10,000 parts."""
        return self.offset(MAX_PARTS) + self.size_of(MAX_PARTS)


def _apart(size: int, limit: int, named: str | None = None) -> tuple[str, str]:
    """``size`` and ``limit`` (as ``named``, else as a size), with their bytes where the sizes
    read the same (5.0 GiB and 5 GiB for 5 GiB + 1 byte): a refusal must not say a value
    equals its limit."""
    said, most = format_size(size), named or format_size(limit)
    if said.replace(".0 ", " ") == most.replace(".0 ", " "):
        return f"{said} ({size:,} bytes)", f"{most} ({limit:,} bytes)"
    return said, most
