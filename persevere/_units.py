"""Human sizes: ``8MiB``, ``64M``, ``5GiB``, ``1234``.

Decimal (``MB``) and binary (``MiB``) suffixes mean what they say; a bare ``M``/``G`` means
binary, as in ``dd``, because that is what people mean for part sizes. (The aws cli reads
``MB`` as MiB; ``start`` prints its plan, with the exact bytes when a part size is not a whole
MiB, so a size copied from its config shows.) Output is always binary (:func:`format_size`).
"""

from __future__ import annotations

import re
from decimal import Decimal

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_UNITS = {"": 1, "b": 1}
for _power, _prefix in enumerate("kmgt", start=1):  # k and kib binary, kb decimal
    _UNITS[_prefix] = _UNITS[f"{_prefix}ib"] = 1024**_power
    _UNITS[f"{_prefix}b"] = 1000**_power

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Parse a size in bytes; raise ``ValueError`` with a readable message."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use bytes or a unit, e.g. 8MiB, 64M, 5GiB)")
    number, unit = match.groups()
    if (factor := _UNITS.get(unit.lower())) is None:
        raise ValueError(
            f"unknown size unit {unit!r} in {text!r} (use KiB, MiB, GiB, TiB, MB, ...)"
        )
    value = Decimal(number) * factor
    if value != int(value):
        raise ValueError(f"size {text!r} is not a whole number of bytes")
    return int(value)


def format_size(n_bytes: float) -> str:
    """``format_size(8388608) == '8.0 MiB'``."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_DURATION_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, unit_required: bool = False) -> float:
    """Seconds in ``90``, ``90s``, ``30m``, ``2h``, ``7d``. ``unit_required``: a bare number
    is refused, where its unit is a guess (``--older-than 7``: seconds, or the 7 days meant?)."""
    match = _DURATION_RE.match(text.lower())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 7d)")
    number, unit = match.groups()
    if unit is None and unit_required:
        raise ValueError(f"{text.strip()!r} has no unit: write e.g. {number}d, {number}h, "
                         f"{number}m or {number}s")  # fmt: skip
    return float(number) * _DURATION_UNITS[unit]


def format_duration(seconds: float) -> str:
    """``format_duration(3600) == '1h'``: the largest unit that gives a whole number."""
    for unit in ("d", "h", "m"):
        count = seconds / _DURATION_UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"
