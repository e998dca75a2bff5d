"""The pool's public numbers (SRS-POOL-09/10) and the network's (GET /v1/network/stats)."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.stats import (
    DAY_S,
    HASHES_PER_DIFFICULTY_1,
    HOUR_S,
    MiningPayout,
    PaidTotal,
    PoolWork,
    hourly_hashrate,
    hourly_payouts,
    hours_ago,
    miner_stats,
    paid_total,
    per_miner_hashrate_1h,
    pool_stats,
    shares_by_miner_1h,
    sum_hourly_work,
)
from owm_core.provenance.releases import ModelRelease, current_release
from owm_core.provenance.versions import ModelVersion, ProofStatus

NOW = 1_800_000_000


def a_share(i: int, miner: str, difficulty: int, is_block: bool = False) -> AcceptedShare:
    return AcceptedShare(miner, difficulty, Fraction(difficulty), f"{i:064x}", is_block)


@settings(max_examples=50)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 2 * DAY_S), st.sampled_from("abc"), st.integers(1, 10**6)),
        max_size=40,
    )
)
def test_pool_figures_add_up_over_miners_and_only_count_their_window(
    rows: list[tuple[int, str, int]],
) -> None:
    shares = [(NOW - age, a_share(i, m, d)) for i, (age, m, d) in enumerate(rows)]
    day = sum_hourly_work(shares, NOW, 24)
    stats = pool_stats(day, 0, PaidTotal(), NOW)
    in_hour = sum(d for age, _m, d in rows if age < HOUR_S)
    assert stats.hashrate_1h_hps == in_hour * HASHES_PER_DIFFICULTY_1 // HOUR_S
    in_day = sum(d for age, _m, d in rows if age < DAY_S)
    assert stats.hashrate_24h_hps == in_day * HASHES_PER_DIFFICULTY_1 // DAY_S
    assert stats.shares_24h == sum(1 for age, _m, _d in rows if age < DAY_S)
    assert stats.miners_24h == len({m for age, m, _d in rows if age < DAY_S})
    per_miner = per_miner_hashrate_1h(day)
    assert sum(per_miner.values()) <= stats.hashrate_1h_hps
    assert sum(shares_by_miner_1h(day).values()) == sum(1 for age, _, _ in rows if age < HOUR_S)
    assert sum(miner_stats(m, day, 0, PaidTotal(), NOW).shares_24h for m in "abc") == \
        stats.shares_24h


def test_payouts_are_counted_per_miner_and_the_treasurys_only_in_the_pools_total() -> None:
    day = sum_hourly_work([(NOW - 10, a_share(1, "a", 5, is_block=True))], NOW, 24)
    payouts = [MiningPayout(NOW, 10_000, "aa" * 32, "a"), MiningPayout(NOW, 2_500, "bb" * 32, None)]
    stats = pool_stats(day, 1, paid_total(payouts), NOW)
    assert stats.blocks_30d == 1 and stats.paid_sat_total == 12_500
    mine = miner_stats("a", day, 1, paid_total(p for p in payouts if p.miner_id == "a"), NOW)
    assert (mine.blocks_30d, mine.paid_sat, mine.payouts, mine.shares_24h) == (1, 10_000, 1, 1)


def test_the_current_release_is_the_highest_version_not_the_latest_stamped() -> None:
    def release(version: str, at: int) -> ModelRelease:
        digest = f"{at:064x}"
        return ModelRelease(ModelVersion(version, "owm-geo", digest, at), ProofStatus.NONE, at)

    releases = [release("owm-v0.10.0", 1), release("owm-v0.9.9", 5), release("owm-v0.2.0", 9)]
    assert current_release(releases) == releases[0]
    assert current_release([]) is None


@settings(max_examples=50)
@given(ages=st.lists(st.integers(0, 2 * DAY_S), max_size=40))
def test_the_hourly_series_hold_every_share_and_payout_of_the_last_day_once(
    ages: list[int],
) -> None:
    shares = [(NOW - age, a_share(i, "na", 3)) for i, age in enumerate(ages)]
    paid = Counter(hours_ago(NOW - age, NOW) for age in ages if age < DAY_S)
    rates, counts = hourly_hashrate(sum_hourly_work(shares, NOW, 24))
    in_day = sum(1 for age in ages if age < DAY_S)
    assert len(rates) == len(counts) == 24 and sum(counts) == in_day
    assert sum(rates) == sum(c * 3 * HASHES_PER_DIFFICULTY_1 // HOUR_S for c in counts)
    assert hourly_payouts({h: 7 * n for h, n in paid.items()}, 24) == [7 * c for c in counts]


def test_the_fpps_rate_of_the_pools_work_is_the_share_value_less_the_treasurys_20_percent() -> None:
    work = PoolWork(height=840_000, bits=0x1D00FFFF, share_difficulty=65_536)
    assert work.network_difficulty == 1
    # a share is worth at most a block: 3.125 BTC less 20 %, in msat
    assert work.fpps_msat_per_share == 312_500_000 * 1000 * Fraction(8, 10)
