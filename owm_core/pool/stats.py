"""The mining pool's public numbers: hashrate, miners, blocks found and recorded payouts.

This module owns what the pool publishes (SRS-POOL-09/10): statistics computed from the
accepted shares the share repository keeps (SRS-POOL-11) and the payouts the pool recorded
when it paid miners over Lightning (SRS-POOL-07/08). Hashrate is estimated the usual way:
each share at difficulty ``d`` stands for ``d · 2³²`` hashes on average.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction

import attrs

from owm_core import fields
from owm_core.pool.bitcoin import AcceptedShare, compact_to_target, difficulty_of_target
from owm_core.pool.fpps import MSAT_PER_SAT, FppsTerms, exact_share_value

HASHES_PER_DIFFICULTY_1 = 2**32
HOUR_S = 3_600
DAY_S = 86_400
BLOCK_WINDOW_S = 30 * DAY_S
"""Blocks found are counted over the last 30 days (SRS-POOL-10)."""


@attrs.frozen
class MiningPayout:
    """One Lightning payment the pool made: to a miner, or the treasury's cut (miner None)."""

    paid_at: int = attrs.field(validator=fields.timestamp())
    amount_sat: int = attrs.field(validator=fields.money(minimum=1))
    payment_hash: str = attrs.field(validator=fields.hex_digest(32))
    miner_id: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.text(max_len=256))
    )


def hashrate_hps(shares: Iterable[tuple[int, AcceptedShare]], start: int, window_s: int) -> int:
    """Hashes per second implied by the shares accepted in ``[start, start + window_s)``."""
    work = sum(s.share_difficulty for at, s in shares if start <= at < start + window_s)
    return work * HASHES_PER_DIFFICULTY_1 // window_s


@attrs.frozen
class MinerStats:
    """One miner's contribution (SRS-POOL-09): hashrate, shares and what it was paid."""

    miner_id: str
    hashrate_1h_hps: int
    hashrate_24h_hps: int
    shares_24h: int
    blocks_30d: int
    paid_sat: int
    payouts: int


@attrs.frozen
class PoolStats:
    """Pool-wide figures (SRS-POOL-10)."""

    hashrate_1h_hps: int
    hashrate_24h_hps: int
    miners_24h: int
    shares_24h: int
    blocks_30d: int
    paid_sat_total: int
    at: int


def pool_stats(
    shares: Sequence[tuple[int, AcceptedShare]], payouts: Iterable[MiningPayout], now: int
) -> PoolStats:
    """Pool statistics at ``now`` from the shares of the last 30 days and recorded payouts."""
    day = [(at, s) for at, s in shares if now - DAY_S < at <= now]
    return PoolStats(
        hashrate_1h_hps=hashrate_hps(day, now - HOUR_S + 1, HOUR_S),
        hashrate_24h_hps=hashrate_hps(day, now - DAY_S + 1, DAY_S),
        miners_24h=len({s.miner_id for _, s in day}),
        shares_24h=len(day),
        blocks_30d=sum(1 for at, s in shares if s.is_block and now - BLOCK_WINDOW_S < at <= now),
        paid_sat_total=sum(p.amount_sat for p in payouts),
        at=now,
    )


def miner_stats(
    miner_id: str,
    shares: Sequence[tuple[int, AcceptedShare]],
    payouts: Iterable[MiningPayout],
    now: int,
) -> MinerStats:
    """One miner's statistics at ``now`` (its shares and payouts only are counted)."""
    own = [(at, s) for at, s in shares if s.miner_id == miner_id]
    day = [(at, s) for at, s in own if now - DAY_S < at <= now]
    paid = [p for p in payouts if p.miner_id == miner_id]
    return MinerStats(
        miner_id=miner_id,
        hashrate_1h_hps=hashrate_hps(day, now - HOUR_S + 1, HOUR_S),
        hashrate_24h_hps=hashrate_hps(day, now - DAY_S + 1, DAY_S),
        shares_24h=len(day),
        blocks_30d=sum(1 for at, s in own if s.is_block and now - BLOCK_WINDOW_S < at <= now),
        paid_sat=sum(p.amount_sat for p in paid),
        payouts=len(paid),
    )


def per_miner_hashrate_1h(shares: Sequence[tuple[int, AcceptedShare]], now: int) -> dict[str, int]:
    """Each active miner's hashrate over the last hour (the live dashboard, SRS-POOL-09)."""
    by_miner: dict[str, list[tuple[int, AcceptedShare]]] = {}
    for at, share in shares:
        if now - HOUR_S < at <= now:
            by_miner.setdefault(share.miner_id, []).append((at, share))
    return {m: hashrate_hps(rows, now - HOUR_S + 1, HOUR_S) for m, rows in sorted(by_miner.items())}


@attrs.frozen
class PoolWork:
    """What the pool is mining now (SRS-POOL-10): the template's height and ``nBits`` and the
    share difficulty, from which the network difficulty and the FPPS rate follow."""

    height: int = attrs.field(validator=fields.integer(minimum=0))
    bits: int = attrs.field(validator=fields.integer(0, 0xFFFFFFFF))
    share_difficulty: int = attrs.field(validator=fields.integer(minimum=1))

    @property
    def network_difficulty(self) -> Fraction:
        """The difficulty of a block at ``bits``."""
        return difficulty_of_target(compact_to_target(self.bits))

    @property
    def fpps_msat_per_share(self) -> Fraction:
        """What one share at the pool's difficulty earns its miner, exactly, in msat
        (SRS-POOL-04: the subsidy × share / network difficulty, less the treasury's 20 %;
        a share is never worth more than a block)."""
        terms = FppsTerms.from_block(self.height, self.bits)
        credited = min(Fraction(self.share_difficulty), self.network_difficulty)
        return exact_share_value(terms, credited) * MSAT_PER_SAT


def shares_by_miner_1h(shares: Sequence[tuple[int, AcceptedShare]], now: int) -> dict[str, int]:
    """Shares each miner had accepted in the last hour (the live feed, SRS-POOL-09)."""
    counted: dict[str, int] = {}
    for at, share in shares:
        if now - HOUR_S < at <= now:
            counted[share.miner_id] = counted.get(share.miner_id, 0) + 1
    return dict(sorted(counted.items()))


def hourly_hashrate(
    shares: Sequence[tuple[int, AcceptedShare]], now: int, hours: int = 24
) -> tuple[list[int], list[int]]:
    """Pool hashrate (H/s) in each of the last ``hours`` whole hours up to ``now`` and the
    shares accepted in each, oldest first (the pool page's charts, SRS-POOL-10)."""
    starts = [now - (hours - i) * HOUR_S + 1 for i in range(hours)]
    rates = [hashrate_hps(shares, start, HOUR_S) for start in starts]
    counts = [sum(1 for at, _ in shares if start <= at < start + HOUR_S) for start in starts]
    return rates, counts


def hourly_payouts(payouts: Iterable[MiningPayout], now: int, hours: int = 24) -> list[int]:
    """Sat paid by the pool in each of the last ``hours`` whole hours up to ``now``."""
    paid = [0] * hours
    for payout in payouts:
        index = hours - 1 - (now - payout.paid_at) // HOUR_S
        if 0 <= index < hours and payout.paid_at <= now:
            paid[index] += payout.amount_sat
    return paid
