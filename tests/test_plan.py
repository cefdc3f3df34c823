"""The part plan: S3's limits (5 MiB..5 GiB parts, at most 10,000 of them) as arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from persevere import PartPlan, PlanError, auto_part_size, make_plan
from persevere._plan import (
    DEFAULT_MIN_AUTO_PART_SIZE,
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    StreamSchedule,
)
from persevere._units import GiB, MiB, TiB


def test_limits_are_s3s():
    assert MIN_PART_SIZE == 5 * MiB
    assert MAX_PART_SIZE == 5 * GiB
    assert MAX_PARTS == 10_000
    assert MAX_OBJECT_SIZE == 10_000 * 5 * GiB
    assert DEFAULT_MIN_AUTO_PART_SIZE == 8 * MiB


@pytest.mark.parametrize(
    ("file_size", "expected"),
    [
        (0, 8 * MiB),
        (1, 8 * MiB),
        (8 * MiB, 8 * MiB),
        (10 * GiB, 8 * MiB),
        # 8 MiB parts carry a file up to exactly 10,000 x 8 MiB (78.1 GiB)...
        (MAX_PARTS * 8 * MiB, 8 * MiB),
        # ...one byte more and the next MiB up is needed.
        (MAX_PARTS * 8 * MiB + 1, 9 * MiB),
        (80 * GiB, 9 * MiB),
        (MAX_PARTS * 9 * MiB, 9 * MiB),
        (MAX_PARTS * 9 * MiB + 1, 10 * MiB),
        (1 * TiB, 105 * MiB),
        (MAX_OBJECT_SIZE - 1, 5 * GiB),
        (MAX_OBJECT_SIZE, 5 * GiB),
    ],
)
def test_auto_part_size(file_size, expected):
    assert auto_part_size(file_size) == expected


def test_largest_object_is_exactly_10000_parts_of_5_gib():
    plan = make_plan(MAX_OBJECT_SIZE)
    assert plan.part_size == 5 * GiB
    assert plan.part_count == 10_000
    assert plan.size_of(10_000) == 5 * GiB
    assert plan.offset(10_000) == MAX_OBJECT_SIZE - 5 * GiB


def test_make_plan_accepts_the_limits():
    assert make_plan(1 * GiB, MIN_PART_SIZE).part_size == 5 * MiB
    assert make_plan(1 * GiB, MAX_PART_SIZE).part_count == 1
    assert make_plan(MAX_PARTS * 5 * MiB, 5 * MiB).part_count == 10_000


@pytest.mark.parametrize(
    ("file_size", "part_size", "message"),
    [
        (1 * GiB, 5 * MiB - 1, "below S3's minimum of 5 MiB"),
        (1 * GiB, 1 * MiB, "part size 1.0 MiB is below S3's minimum of 5 MiB"),
        (1 * GiB, 0, "below S3's minimum"),
        (1 * GiB, 5 * GiB + 1, "above S3's maximum of 5 GiB"),
        (1 * GiB, 6 * GiB, "part size 6.0 GiB is above S3's maximum of 5 GiB"),
        (MAX_PARTS * 5 * MiB + 1, 5 * MiB, "into 10,001 parts; S3 allows at most 10,000"),
        (-1, None, "cannot be negative"),
        (MAX_OBJECT_SIZE + 1, None, "S3 objects are at most 48.8 TiB"),
        (MAX_OBJECT_SIZE + 1, 5 * GiB, "S3 objects are at most 48.8 TiB"),
    ],
)
def test_make_plan_refuses(file_size, part_size, message):
    with pytest.raises(PlanError, match=message):
        make_plan(file_size, part_size)


def test_too_many_parts_suggests_a_part_size_that_works():
    with pytest.raises(PlanError, match=r"use --part-size 11MiB or more") as info:
        make_plan(100 * GiB, 5 * MiB)
    assert "20,480 parts" in str(info.value)
    assert make_plan(100 * GiB, 11 * MiB).part_count <= MAX_PARTS


def test_plan_error_is_a_usage_error():
    with pytest.raises(PlanError) as info:
        make_plan(1, 1)
    assert info.value.exit_code == 2


def test_empty_file_is_one_empty_part():
    plan = make_plan(0)
    assert plan.part_count == 1
    assert list(plan.part_numbers()) == [1]
    assert plan.offset(1) == 0
    assert plan.size_of(1) == 0


def test_last_part_holds_the_remainder():
    plan = PartPlan(file_size=20 * MiB + 123, part_size=8 * MiB)
    assert plan.part_count == 3
    assert [plan.size_of(n) for n in plan.part_numbers()] == [8 * MiB, 8 * MiB, 4 * MiB + 123]
    assert [plan.offset(n) for n in plan.part_numbers()] == [0, 8 * MiB, 16 * MiB]


def test_exact_multiple_has_no_short_part():
    plan = PartPlan(file_size=24 * MiB, part_size=8 * MiB)
    assert plan.part_count == 3
    assert plan.size_of(3) == 8 * MiB


def test_one_byte_file():
    plan = make_plan(1)
    assert plan.part_count == 1
    assert plan.size_of(1) == 1


@pytest.mark.parametrize("part_number", [0, -1, 4])
def test_size_of_refuses_parts_outside_the_plan(part_number):
    plan = PartPlan(file_size=20 * MiB, part_size=8 * MiB)
    with pytest.raises(ValueError, match=r"outside 1\.\.3"):
        plan.size_of(part_number)


@given(st.integers(min_value=0, max_value=MAX_OBJECT_SIZE))
def test_auto_plan_is_always_valid(file_size):
    plan = make_plan(file_size)
    assert plan.part_size == auto_part_size(file_size)
    assert plan.part_size % MiB == 0
    assert MIN_PART_SIZE <= plan.part_size <= MAX_PART_SIZE
    assert 1 <= plan.part_count <= MAX_PARTS
    last = plan.part_count
    # Checking every part of a 10,000-part plan is cheap, and the sum is the real invariant.
    sizes = [plan.size_of(n) for n in plan.part_numbers()]
    assert all(size == plan.part_size for size in sizes[:-1])
    assert 0 <= sizes[-1] <= plan.part_size
    assert sum(sizes) == file_size
    assert plan.offset(last) + plan.size_of(last) == file_size
    # The smallest such size: one MiB less would need more than 10,000 parts (or be < 8 MiB).
    smaller = plan.part_size - MiB
    assert smaller < DEFAULT_MIN_AUTO_PART_SIZE or -(-file_size // smaller) > MAX_PARTS


@given(
    file_size=st.integers(min_value=0, max_value=MAX_OBJECT_SIZE),
    part_size=st.integers(min_value=MIN_PART_SIZE, max_value=MAX_PART_SIZE),
)
def test_explicit_plan_is_valid_or_refused(file_size, part_size):
    if -(-file_size // part_size) > MAX_PARTS:
        with pytest.raises(PlanError, match="S3 allows at most 10,000"):
            make_plan(file_size, part_size)
        return
    plan = make_plan(file_size, part_size)
    assert plan.part_count <= MAX_PARTS
    last = plan.part_count
    assert plan.offset(last) + plan.size_of(last) == file_size
    assert 0 <= plan.size_of(last) <= part_size


# -- endpoints with fewer parts (Scaleway: 1,000) ----------------------------------------------
@pytest.mark.parametrize(
    ("file_size", "max_parts", "expected"),
    [
        (0, 1000, 8 * MiB),
        (1000 * 8 * MiB, 1000, 8 * MiB),
        (1000 * 8 * MiB + 1, 1000, 9 * MiB),
        (1 * TiB, 1000, 1049 * MiB),
        (1000 * 5 * GiB, 1000, 5 * GiB),
        (20 * MiB, 2, 10 * MiB),
        (20 * MiB + 1, 2, 11 * MiB),
        (5 * GiB, 1, 5 * GiB),
    ],
)
def test_auto_part_size_within_a_lower_part_limit(file_size, max_parts, expected):
    assert auto_part_size(file_size, max_parts) == expected
    plan = make_plan(file_size, None, max_parts)
    assert plan.part_size == expected
    assert plan.part_count <= max_parts


def test_a_file_that_cannot_fit_at_5_gib_parts_is_refused_naming_the_limit():
    with pytest.raises(PlanError, match=r"in at most 1,000 parts of 5 GiB") as info:
        make_plan(1000 * 5 * GiB + 1, None, 1000)
    assert info.value.param == "max_parts"
    assert "(5,368,709,120,001 bytes)" in str(info.value)
    with pytest.raises(PlanError, match=r"in at most 1,000 parts"):
        make_plan(1000 * 5 * GiB + 1, 5 * GiB, 1000)


def test_an_explicit_part_size_over_the_limit_suggests_one_within_it():
    with pytest.raises(PlanError, match=r"the part limit allows at most 1,000") as info:
        make_plan(10 * GiB, 8 * MiB, 1000)
    assert "1,280 parts" in str(info.value) and "use --part-size 11MiB or more" in str(info.value)
    assert make_plan(10 * GiB, 11 * MiB, 1000).part_count <= 1000


@pytest.mark.parametrize("max_parts", [0, -1, 10_001])
def test_the_part_limit_itself_is_checked(max_parts):
    with pytest.raises(PlanError, match="between 1 and 10,000") as info:
        make_plan(1, None, max_parts)
    assert info.value.param == "max_parts"


@given(
    file_size=st.integers(min_value=0, max_value=MAX_OBJECT_SIZE),
    max_parts=st.integers(min_value=1, max_value=MAX_PARTS),
)
def test_auto_plan_respects_any_part_limit(file_size, max_parts):
    if file_size > max_parts * MAX_PART_SIZE:
        with pytest.raises(PlanError):
            make_plan(file_size, None, max_parts)
        return
    plan = make_plan(file_size, None, max_parts)
    assert MIN_PART_SIZE <= plan.part_size <= MAX_PART_SIZE
    assert plan.part_count <= max_parts
    smaller = plan.part_size - MiB
    assert smaller < DEFAULT_MIN_AUTO_PART_SIZE or -(-file_size // smaller) > max_parts


def test_a_plan_fits_its_parts_exactly_and_a_schedule_at_most():
    plan = PartPlan(12 * MiB, 5 * MiB)
    assert [plan.fits(n, 5 * MiB) for n in (0, 1, 2, 3)] == [False, True, True, False]
    assert plan.fits(3, 2 * MiB) and not plan.fits(2, 4 * MiB)
    schedule = StreamSchedule(8 * MiB, 2)
    assert schedule.fits(1, 8 * MiB) and schedule.fits(2, 1) and schedule.fits(3, 16 * MiB)
    assert not schedule.fits(2, 16 * MiB) and not schedule.fits(MAX_PARTS + 1, 1)
    assert not schedule.fits(0, 1)
