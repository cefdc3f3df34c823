"""The knobs of a transfer, and the memory they cost.

Part-data memory is about ``concurrency * (buffer_bytes + 2 MiB)`` with
``buffer_bytes = min(part_size, max(1 MiB, buffer_budget_bytes // concurrency))``: 32 MiB at the
defaults (c=8, 16 MiB budget), on top of the ~80 MiB the Python/botocore stack needs.

A part larger than the buffer (the default: 8 MiB parts, 2 MiB buffers) is streamed in 256 KiB
slices and read once, its checksum sent as a trailer (:mod:`._trailer`); where the endpoint
refuses trailers, it is read twice (a checksum pass through the buffer, then the stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._errors import UsageError
from ._retry import Call, RetryPolicy, policy
from ._units import MiB

MAX_CONCURRENCY = 256
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

    @property
    def max_connections(self) -> int:
        """Connection pool: one per part in flight, plus room for ListParts and Complete."""
        return self.concurrency + 2
