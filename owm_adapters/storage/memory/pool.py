"""In-memory twin: accepted mining shares and mining payouts."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

from owm_adapters.storage.memory.state import PutStateRepository, StateRepository
from owm_core.errors import Conflict
from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.fpps import MinerCredit
from owm_core.pool.stats import (
    HourlyWork,
    MiningPayout,
    PaidTotal,
    hours_ago,
    paid_total,
    sum_hourly_work,
)


class MemoryShareRepository(StateRepository):
    """Accepted shares per header hash, with their acceptance time and order."""

    def add(self, share: AcceptedShare, accepted_at: int) -> None:
        """Record an accepted share at ``accepted_at``; Conflict if its hash is already stored."""
        self.add_many([share], accepted_at)

    def add_many(self, shares: Sequence[AcceptedShare], accepted_at: int) -> None:
        """Record ``shares`` in order, all or none; Conflict if a hash is stored or repeats."""
        with self._lock:
            stored = self._state.shares
            hashes = [share.hash_hex for share in shares]
            if len(set(hashes)) != len(hashes) or not stored.keys().isdisjoint(hashes):
                clash = next(h for i, h in enumerate(hashes) if h in stored or h in hashes[:i])
                raise Conflict(f"share {clash} is already recorded")
            for share in shares:
                stored[share.hash_hex] = (self._state.next_seq(), accepted_at, share)

    def contains(self, hash_hex: str) -> bool:
        """Whether a share with this header hash is stored (duplicate detection)."""
        with self._lock:
            return hash_hex in self._state.shares

    def since(self, start: int, miner_id: str | None = None) -> Sequence[tuple[int, AcceptedShare]]:
        """(accepted_at, share) with accepted_at ≥ ``start`` (of one miner), in accepted order."""
        with self._lock:
            rows = sorted(self._state.shares.values(), key=lambda r: (r[1], r[0]))
            return [
                (at, s)
                for _, at, s in rows
                if at >= start and (miner_id is None or s.miner_id == miner_id)
            ]

    def delete_older_than(self, cutoff: int) -> int:
        """Delete shares accepted before ``cutoff`` but blocks (retention, SRS-POOL-11)."""
        return self._drop_where(
            "shares", lambda _h, share: share[1] < cutoff and not share[2].is_block
        )

    def latest_block_at(self) -> int | None:
        """When the newest stored share that was a block was accepted; None if there is none."""
        with self._lock:
            return max((at for _, at, s in self._state.shares.values() if s.is_block), default=None)

    def hourly_work(self, now: int, hours: int) -> Sequence[HourlyWork]:
        """The shares of the last ``hours`` hours up to ``now``, summed per hour ago and miner."""
        with self._lock:
            rows = [(at, s) for _, at, s in self._state.shares.values()]
        return sum_hourly_work(rows, now, hours)

    def blocks_since(self, start: int, miner_id: str | None = None) -> int:
        """How many stored shares (of one miner) accepted at ≥ ``start`` were blocks."""
        with self._lock:
            return sum(
                1 for _, at, s in self._state.shares.values()
                if s.is_block and at >= start and miner_id in (None, s.miner_id)
            )  # fmt: skip


class MemoryShareRejectionRepository(StateRepository):
    """Rejected-share totals per (miner id, reason code)."""

    def add(self, counts: Mapping[tuple[str, str], int], at: int) -> None:
        """Add ``counts`` (per ``(miner_id, code)``) to the stored totals, in one write."""
        with self._lock:
            totals = dict(self._state.share_rejections)
            for key, n in counts.items():
                totals[key] = totals.get(key, 0) + n
            self._state.share_rejections = totals

    def by_miner(self) -> dict[str, dict[str, int]]:
        """The stored totals per miner id, then reason code (both sorted)."""
        with self._lock:
            counted = sorted(self._state.share_rejections.items())
        found: dict[str, dict[str, int]] = {}
        for (miner, code), n in counted:
            found.setdefault(miner, {})[code] = n
        return found


class MemoryMiningPayoutRepository(StateRepository):
    """Mining payouts per payment hash."""

    def add(self, payout: MiningPayout) -> None:
        """Record one payout; Conflict if its payment_hash is already recorded."""
        self._insert_new(
            "mining_payouts",
            payout.payment_hash,
            payout,
            f"payout {payout.payment_hash} is already recorded",
        )

    def recent(
        self, limit: int = 100, miner_id: str | None = None, since: int | None = None
    ) -> Sequence[MiningPayout]:
        """Up to ``limit`` payouts (to one miner if given; paid at or after ``since`` if
        given), newest first, then by hash."""
        with self._lock:
            chosen = [
                p
                for p in self._state.mining_payouts.values()
                if (miner_id is None or p.miner_id == miner_id)
                and (since is None or p.paid_at >= since)
            ]
            chosen.sort(key=lambda p: (-p.paid_at, p.payment_hash))
            return chosen[:limit]

    def paid_by_hours_ago(self, now: int, hours: int) -> Mapping[int, int]:
        """The sat paid each whole hour before ``now``, the last ``hours``."""
        paid: collections.Counter[int] = collections.Counter()
        with self._lock:
            for p in self._state.mining_payouts.values():
                if p.paid_at <= now and (ago := hours_ago(p.paid_at, now)) < hours:
                    paid[ago] += p.amount_sat
        return paid

    def totals(self, miner_id: str | None = None) -> PaidTotal:
        """How many payouts were recorded (to one miner if given) and their sat, counted."""
        with self._lock:
            payouts = self._state.mining_payouts.values()
            return paid_total(p for p in payouts if miner_id is None or p.miner_id == miner_id)


class MemoryMinerCreditRepository(PutStateRepository[MinerCredit]):
    """Miners' FPPS credits per miner id."""

    _table = "miner_credits"
    _key = "miner_id"

    def list(self, limit: int = 10_000, after: str = "") -> Sequence[MinerCredit]:
        """Up to ``limit`` credits, by miner id, each after ``after`` (a sweep's keyset page)."""
        return self._in_key_order(limit, after)
