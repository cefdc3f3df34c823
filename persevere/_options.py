"""The knobs of a transfer, and the memory they cost.

Part-data memory is about ``concurrency * (buffer_bytes + 2 MiB)`` with
``buffer_bytes = min(part_size, max(1 MiB, buffer_budget_bytes // concurrency))``: 32 MiB at the
defaults (c=8, 16 MiB budget), on top of the ~80 MiB the Python/botocore stack needs.

A part larger than the buffer (the default: 8 MiB parts, 2 MiB buffers) is streamed in 256 KiB
slices and read once, its checksum sent as a trailer (:mod:`._trailer`); where the endpoint
refuses trailers, it is read twice (a checksum pass through the buffer, then the stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ._errors import UsageError
from ._retry import Call, RetryPolicy, policy
from ._units import MiB

MAX_CONCURRENCY = 256


def _positive(value: object, name: str, *, zero: bool = False) -> None:
    """``value`` a finite number above 0 (or 0, if ``zero``), else a UsageError naming it."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        least = "0 or more" if zero else "above 0"
        raise UsageError(f"{name} must be a number {least}, not {value!r}", param=name)


MAX_PROCESSES = 64  # --processes: shard processes of one machine


@dataclass(slots=True)
class UploadOptions:
    """Tuning knobs of an upload (and of ``bench``); see the module docstring for memory."""

    concurrency: int = 8
    buffer_budget_bytes: int = 16 * MiB
    stall_timeout_s: float = 60.0
    max_bandwidth_bytes_s: float | None = None  # shared by all parts; None: unlimited
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # The first call of a new upload fails fast: an unreachable endpoint is reported in
    # seconds, not after minutes of retrying.
    first_call_attempts: int = 4

    def policy(self, kind: Call) -> RetryPolicy:
        """The retry policy for a call of this kind in this transfer (:func:`._retry.policy`)."""
        return policy(kind, self.retry, self.first_call_attempts)

    def validate(self) -> None:
        if type(self.concurrency) is not int or not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise UsageError(
                f"concurrency must be between 1 and {MAX_CONCURRENCY}, not {self.concurrency!r}",
                param="concurrency",
            )
        if not self.stall_timeout_s > 0:  # (NaN compares false: click's min=1 lets it by)
            raise UsageError(
                f"the stall timeout must be a number of seconds, not {self.stall_timeout_s}",
                param="stall_timeout",
            )
        # (the Python API's values: out of their domain, each was blamed on the network)
        for name in ("connect_timeout_s", "read_timeout_s"):
            _positive(getattr(self, name), name)
        if self.max_bandwidth_bytes_s is not None:
            _positive(self.max_bandwidth_bytes_s, "max_bandwidth_bytes_s")
        if type(self.first_call_attempts) is not int or self.first_call_attempts < 1:
            raise UsageError(
                f"first_call_attempts must be a whole number >= 1, not "
                f"{self.first_call_attempts!r}",
                param="first_call_attempts",
            )
        retry = self.retry
        if not isinstance(retry, RetryPolicy):
            raise UsageError(f"retry must be a persevere.RetryPolicy, not {retry!r}", param="retry")
        for name in ("base_delay_s", "max_delay_s"):
            _positive(getattr(retry, name), f"retry.{name}", zero=True)
        if retry.patience_s is not None:
            _positive(retry.patience_s, "retry.patience_s", zero=True)
        if retry.max_attempts is not None and (
            type(retry.max_attempts) is not int or retry.max_attempts < 1
        ):
            raise UsageError(f"retry.max_attempts must be a whole number >= 1, not "
                             f"{retry.max_attempts!r}", param="retry")  # fmt: skip

    @property
    def max_connections(self) -> int:
        """Connection pool: one per part in flight, plus room for ListParts and Complete."""
        return self.concurrency + 2
