"""Guards from the review of the code-line shrink (ed797a3..29a5cfc): edges the suite did not
pin, checked identical before and after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from persevere import UsageError, object_options


def _retain(until: str | datetime) -> dict[str, str]:
    return object_options(Path("f"), object_lock_mode="governance", object_lock_retain_until=until)


def test_a_naive_retain_until_datetime_is_utc_and_an_aware_one_keeps_its_offset():
    """The library takes datetimes too: naive ones are UTC, as naive text is."""
    assert _retain(datetime(2099, 1, 31, 12, 30))["ObjectLockRetainUntilDate"] == (
        "2099-01-31T12:30:00Z"
    )
    plus5 = datetime(2099, 1, 31, 12, 30, tzinfo=timezone(timedelta(hours=5)))
    assert _retain(plus5)["ObjectLockRetainUntilDate"] == "2099-01-31T07:30:00Z"
    assert _retain(datetime(2099, 1, 31, tzinfo=UTC))["ObjectLockMode"] == "GOVERNANCE"


@pytest.mark.parametrize("until", [datetime(2001, 1, 1), "2001-01-01", "2001-01-01T00:00"])
def test_a_past_naive_retain_until_is_refused_as_utc(until):
    with pytest.raises(UsageError, match=r"2001-01-01T00:00:00\+00:00 is not in the future"):
        _retain(until)
