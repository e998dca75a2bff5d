"""The mining pool's public numbers: hashrate, miners, blocks found and recorded payouts.

This module owns what the pool publishes (SRS-POOL-09/10): statistics computed from the
accepted shares the share repository keeps (SRS-POOL-11) and the payouts the pool recorded
when it paid miners over Lightning (SRS-POOL-07/08). Hashrate is estimated the usual way:
each share at difficulty ``d`` stands for ``d · 2³²`` hashes on average.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


@attrs.frozen
class HourlyWork:
    """Shares one miner had accepted in one hour, summed (the dashboard's aggregate): the hour
    is ``hours_ago`` whole hours before the query's ``now`` (0: the last 3,600 s up to it)."""

    hours_ago: int = attrs.field(validator=fields.integer(minimum=0))
    miner_id: str
    shares: int = attrs.field(validator=fields.integer(minimum=0))
    difficulty: int = attrs.field(validator=fields.integer(minimum=0))


def sum_hourly_work(
    shares: Iterable[tuple[int, AcceptedShare]], now: int, hours: int
) -> list[HourlyWork]:
    """The shares accepted in the ``hours`` hours up to ``now`` summed per hour ago and miner,
    by hour ago then miner (what the share repositories return: SRS-POOL-10)."""
    summed: dict[tuple[int, str], tuple[int, int]] = {}
    for at, share in shares:
        if now - HOUR_S * hours < at <= now:
            key = ((now - at) // HOUR_S, share.miner_id)
            count, work = summed.get(key, (0, 0))
            summed[key] = (count + 1, work + share.share_difficulty)
    return [HourlyWork(ago, miner, n, work) for (ago, miner), (n, work) in sorted(summed.items())]


def _rate_hps(difficulty: int, window_s: int) -> int:
    return difficulty * HASHES_PER_DIFFICULTY_1 // window_s


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


@attrs.frozen
class PaidTotal:
    """How many payouts were recorded (all, or one miner's) and the sat they carried: what
    the stores count (``MiningPayoutRepository.totals``) instead of every payout listed."""

    payouts: int = 0
    sat: int = 0


def paid_total(payouts: Iterable[MiningPayout]) -> PaidTotal:
    """The :class:`PaidTotal` of ``payouts``."""
    listed = list(payouts)
    return PaidTotal(len(listed), sum(p.amount_sat for p in listed))


def pool_stats(
    day: Sequence[HourlyWork], blocks_30d: int, paid: PaidTotal, now: int
) -> PoolStats:
    """Pool statistics at ``now`` from the last 24 hours' hourly work, the blocks found in the
    last 30 days and what the recorded payouts came to."""
    return PoolStats(
        hashrate_1h_hps=_rate_hps(sum(w.difficulty for w in day if w.hours_ago == 0), HOUR_S),
        hashrate_24h_hps=_rate_hps(sum(w.difficulty for w in day if w.hours_ago < 24), DAY_S),
        miners_24h=len({w.miner_id for w in day if w.hours_ago < 24}),
        shares_24h=sum(w.shares for w in day if w.hours_ago < 24),
        blocks_30d=blocks_30d,
        paid_sat_total=paid.sat,
        at=now,
    )


def miner_stats(
    miner_id: str,
    day: Sequence[HourlyWork],
    blocks_30d: int,
    paid: PaidTotal,
    now: int,
) -> MinerStats:
    """One miner's statistics at ``now`` from its own hourly work, blocks and payouts."""
    own = [w for w in day if w.miner_id == miner_id]
    pool = pool_stats(own, blocks_30d, paid, now)
    return MinerStats(
        miner_id=miner_id,
        hashrate_1h_hps=pool.hashrate_1h_hps,
        hashrate_24h_hps=pool.hashrate_24h_hps,
        shares_24h=pool.shares_24h,
        blocks_30d=blocks_30d,
        paid_sat=pool.paid_sat_total,
        payouts=paid.payouts,
    )


def per_miner_hashrate_1h(day: Sequence[HourlyWork]) -> dict[str, int]:
    """Each active miner's hashrate over the last hour (the live dashboard, SRS-POOL-09)."""
    return {w.miner_id: _rate_hps(w.difficulty, HOUR_S) for w in day if w.hours_ago == 0}


@attrs.frozen
class PoolWork:
    """What the pool is mining now (SRS-POOL-10): the template's height and ``nBits`` and the
    share difficulty, from which the network difficulty and the FPPS rate follow."""

    height: int = attrs.field(validator=fields.integer(minimum=0))
    bits: int = attrs.field(validator=fields.integer(0, 0xFFFFFFFF))
    share_difficulty: int = attrs.field(validator=fields.integer(minimum=1))
    #: The block reward FPPS values shares against when not the subsidy (a devnet's pretend).
    subsidy_sat: int | None = None

    @property
    def network_difficulty(self) -> Fraction:
        """The difficulty of a block at ``bits``."""
        return difficulty_of_target(compact_to_target(self.bits))

    @property
    def fpps_msat_per_share(self) -> Fraction:
        """What one share at the pool's difficulty earns its miner, exactly, in msat
        (SRS-POOL-04: the subsidy × share / network difficulty, less the treasury's 20 %;
        a share is never worth more than a block)."""
        terms = FppsTerms.from_block(self.height, self.bits, subsidy_sat=self.subsidy_sat)
        credited = min(Fraction(self.share_difficulty), self.network_difficulty)
        return exact_share_value(terms, credited) * MSAT_PER_SAT


def shares_by_miner_1h(day: Sequence[HourlyWork]) -> dict[str, int]:
    """Shares each miner had accepted in the last hour (the live feed, SRS-POOL-09)."""
    return {w.miner_id: w.shares for w in day if w.hours_ago == 0}


def hourly_hashrate(day: Sequence[HourlyWork], hours: int = 24) -> tuple[list[int], list[int]]:
    """Pool hashrate (H/s) in each of the last ``hours`` whole hours and the shares accepted
    in each, oldest first (the pool page's charts, SRS-POOL-10)."""
    work, counts = [0] * hours, [0] * hours
    for w in day:
        if w.hours_ago < hours:
            work[hours - 1 - w.hours_ago] += w.difficulty
            counts[hours - 1 - w.hours_ago] += w.shares
    return [_rate_hps(d, HOUR_S) for d in work], counts


def hourly_payouts(paid_by_hours_ago: Mapping[int, int], hours: int = 24) -> list[int]:
    """Sat paid by the pool in each of the last ``hours`` whole hours, oldest first, from the
    sat paid ``h`` whole hours ago (what ``MiningPayoutRepository.paid_by_hours_ago`` sums)."""
    return [paid_by_hours_ago.get(hours - 1 - index, 0) for index in range(hours)]


def hours_ago(paid_at: int, now: int) -> int:
    """How many whole hours before ``now`` a payout at ``paid_at`` was made."""
    return (now - paid_at) // HOUR_S
