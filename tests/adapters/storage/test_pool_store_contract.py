"""The pool's share aggregates and rejection totals: the same contract on the memory twin,
SQLite and PostgreSQL, and the totals survive a reopen (SRS-POOL-06/09/10, SRS-LN-14)."""

from __future__ import annotations

import attrs
import pytest

from owm_core.pool.stats import HourlyWork, MiningPayout, PaidTotal
from tests.adapters.storage import test_repositories_contract as contract
from tests.adapters.storage.test_repositories_contract import Backend, a_share

pytestmark = pytest.mark.timeout(120)

backend = contract.backend
sqlite_template = contract.sqlite_template

NOW = 1_800_000_000


def test_the_hourly_work_sums_shares_per_hour_ago_and_miner_inside_the_window(
    backend: Backend,
) -> None:
    shares = backend.repos.shares
    placed = [
        (NOW, "a", 1), (NOW - 3_599, "a", 2), (NOW - 3_599, "b", 3),  # the last hour
        (NOW - 3_600, "a", 4),  # one hour ago
        (NOW - 2 * 3_600 + 1, "b", 5),  # still one hour ago
        (NOW - 2 * 3_600, "a", 6),  # outside a 2-hour window
        (NOW + 1, "a", 7),  # after now
    ]  # fmt: skip
    for i, (at, miner, _) in enumerate(placed):
        shares.add(attrs.evolve(a_share(i, miner), share_difficulty=placed[i][2]), at)
    assert backend.reopen().shares.hourly_work(NOW, 2) == [
        HourlyWork(0, "a", 2, 3), HourlyWork(0, "b", 1, 3),
        HourlyWork(1, "a", 1, 4), HourlyWork(1, "b", 1, 5),
    ]  # fmt: skip
    assert shares.hourly_work(NOW, 3)[-1] == HourlyWork(2, "a", 1, 6)
    assert shares.hourly_work(NOW - 10**6, 24) == []


def test_payouts_are_summed_per_hour_ago_and_totalled_by_the_store(backend: Backend) -> None:
    """The pool page's hourly chart and the paid totals, counted by the store over every
    payout (not a capped listing of them)."""
    payouts = backend.repos.mining_payouts
    placed = [
        (NOW, 1, "a"), (NOW - 3_599, 2, "b"),  # the last hour
        (NOW - 3_600, 4, "a"), (NOW - 2 * 3_600 + 1, 8, None),  # one hour ago
        (NOW - 24 * 3_600 + 1, 16, "a"),  # 23 hours ago: the window's oldest hour
        (NOW - 24 * 3_600, 32, "a"),  # outside a day
        (NOW + 1, 64, "b"),  # after now
    ]  # fmt: skip
    for i, (at, sat, miner) in enumerate(placed):
        payouts.add(MiningPayout(at, sat, f"{i:064x}", miner))
    again = backend.reopen().mining_payouts
    assert again.paid_by_hours_ago(NOW, 24) == {0: 3, 1: 12, 23: 16}
    assert again.paid_by_hours_ago(NOW, 1) == {0: 3}
    assert again.totals() == PaidTotal(7, 127)
    assert again.totals("a") == PaidTotal(4, 53)
    assert [p.amount_sat for p in again.recent(10, since=NOW - 3_600)] == [64, 1, 2, 4]


def test_blocks_are_counted_since_a_time_and_the_newest_block_is_found(backend: Backend) -> None:
    shares = backend.repos.shares
    assert shares.latest_block_at() is None
    shares.add(a_share(1), NOW - 100)
    assert shares.latest_block_at() is None  # an ordinary share is no block
    shares.add(attrs.evolve(a_share(2), is_block=True), NOW - 50)
    shares.add(attrs.evolve(a_share(3, "miner-b"), is_block=True), NOW - 10)
    shares.add(attrs.evolve(a_share(4), is_block=True), NOW - 90)
    again = backend.reopen().shares
    assert again.latest_block_at() == NOW - 10
    assert again.blocks_since(NOW - 60) == 2
    assert again.blocks_since(NOW - 60, miner_id="miner-a") == 1
    assert again.blocks_since(0) == 3
    assert again.blocks_since(NOW) == 0


def test_rejection_totals_add_up_per_miner_and_code_and_survive_a_reopen(
    backend: Backend,
) -> None:
    rejections = backend.repos.share_rejections
    assert rejections.by_miner() == {}
    rejections.add({("nb", "stale-share"): 2, ("na", "duplicate-share"): 1}, NOW)
    rejections.add({("nb", "stale-share"): 3, ("nb", "invalid-job-id"): 1}, NOW + 5)
    rejections.add({}, NOW + 6)
    assert backend.reopen().share_rejections.by_miner() == {
        "na": {"duplicate-share": 1},
        "nb": {"invalid-job-id": 1, "stale-share": 5},
    }
