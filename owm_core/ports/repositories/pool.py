"""The mining pool's repositories: accepted shares and the payouts made to miners and the
treasury (SRS-POOL-06, SRS-POOL-07/08).

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.fpps import MinerCredit
from owm_core.pool.stats import HourlyWork, MiningPayout, PaidTotal


class ShareRepository(Protocol):
    """Accepted mining shares, kept 30 days for dispute resolution (SRS-POOL-06, SRS-POOL-11)."""

    def add(self, share: AcceptedShare, accepted_at: int) -> None:
        """Record an accepted share at ``accepted_at``; Conflict if its hash is already stored."""
        ...

    def add_many(self, shares: Sequence[AcceptedShare], accepted_at: int) -> None:
        """Record ``shares``, accepted together at ``accepted_at``, in their order, in one
        write (a batch of one connection, SRS-PERF-11): all of them or, with Conflict if a hash
        is already stored or repeats in ``shares``, none."""
        ...

    def contains(self, hash_hex: str) -> bool:
        """Whether a share with this header hash is stored (duplicate detection)."""
        ...

    def since(self, start: int, miner_id: str | None = None) -> Sequence[tuple[int, AcceptedShare]]:
        """(accepted_at, share) with accepted_at ≥ ``start`` (of one miner), in accepted order."""
        ...

    def delete_older_than(self, cutoff: int) -> int:
        """Delete shares accepted before ``cutoff`` (retention, SRS-POOL-11), except blocks:
        they are kept (a few a year) so :meth:`blocks_since` counts every block the pool found,
        which the FPPS treasury floor's funds figure needs (SRS-POOL-07); count deleted."""
        ...

    def latest_block_at(self) -> int | None:
        """When the newest stored share that was a block was accepted; None if there is none."""
        ...

    def hourly_work(self, now: int, hours: int) -> Sequence[HourlyWork]:
        """The shares accepted in the ``hours`` hours up to ``now`` (``now − 3600·hours <
        accepted_at ≤ now``) summed per hour ago and miner, by hour ago then miner id."""
        ...

    def blocks_since(self, start: int, miner_id: str | None = None) -> int:
        """How many stored shares (of one miner) accepted at ≥ ``start`` were blocks."""
        ...


class ShareRejectionRepository(Protocol):
    """Shares rejected per miner and reason code, counted for the dashboard (SRS-POOL-06/09)."""

    def add(self, counts: Mapping[tuple[str, str], int], at: int) -> None:
        """Add ``counts`` (per ``(miner_id, code)``) to the stored totals, in one write."""
        ...

    def by_miner(self) -> dict[str, dict[str, int]]:
        """The stored totals per miner id, then reason code (both sorted)."""
        ...


class MiningPayoutRepository(Protocol):
    """Lightning payouts the pool made to miners and the treasury (SRS-POOL-07/08/10)."""

    def add(self, payout: MiningPayout) -> None:
        """Record one payout; Conflict if its payment_hash is already recorded."""
        ...

    def recent(
        self, limit: int = 100, miner_id: str | None = None, since: int | None = None
    ) -> Sequence[MiningPayout]:
        """Up to ``limit`` payouts (to one miner if given; paid at or after ``since`` if
        given), newest first, then by hash."""
        ...

    def totals(self, miner_id: str | None = None) -> PaidTotal:
        """How many payouts were recorded (to one miner if given) and their sat, counted."""
        ...

    def paid_by_hours_ago(self, now: int, hours: int) -> Mapping[int, int]:
        """The sat paid ``h`` whole hours before ``now`` (:func:`~owm_core.pool.stats.hours_ago`)
        for each ``h`` below ``hours`` with any, summed by the store."""
        ...


class MinerCreditRepository(Protocol):
    """What each miner has earned at the FPPS rate, in msat (SRS-POOL-04/07)."""

    def put(self, credit: MinerCredit) -> None:
        """Store or replace the credit of ``credit.miner_id``."""
        ...

    def get(self, miner_id: str) -> MinerCredit | None:
        """The credit of ``miner_id``, or None before its first share."""
        ...

    def list(self, limit: int = 10_000, after: str = "") -> Sequence[MinerCredit]:
        """Up to ``limit`` credits, by miner id, each after ``after`` (a sweep's keyset page)."""
        ...
