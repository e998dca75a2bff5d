"""The history the dashboard charts: the in-memory twin, SQLite and PostgreSQL keep heartbeat
counts per minute, stake status changes and the payment log and settled payments by time
alike.

Uses the repository contract's fixtures (``backend``, ``repos``), imported: each test's
``repos`` argument names that fixture (hence F811 off in this file).
"""
# ruff: noqa: F811

from __future__ import annotations

import attrs
import pytest

from owm_core.errors import InvalidValue
from owm_core.nodes.activity import HeartbeatCount
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import (
    AttemptOutcome,
    PaymentState,
    attempt_record,
    fail,
    start_attempt,
    succeed,
)
from owm_core.ports.repositories import Repositories
from owm_core.stake.changes import StakeChange
from owm_core.stake.channel import Stake, StakeChannel, StakeStatus
from tests.adapters.storage.test_repositories_contract import (  # noqa: F401 (fixtures)
    a_payment,
    backend,
    identity,
    repos,
    sqlite_template,
)

T0 = 1_800_000_000 - 1_800_000_000 % 60
"""A minute's start."""


# --------------------------------------------------------------------------- heartbeats


def test_heartbeat_counts_add_up_per_minute_and_node_and_are_listed_by_minute_then_node(
    repos: Repositories,
) -> None:
    activity = repos.heartbeat_activity
    activity.add({(T0, "node-b"): 2, (T0, "node-a"): 1})
    activity.add({(T0, "node-a"): 3, (T0 + 60, "node-b"): 1})
    activity.add({})
    assert activity.since(T0) == [
        HeartbeatCount(T0, "node-a", 4),
        HeartbeatCount(T0, "node-b", 2),
        HeartbeatCount(T0 + 60, "node-b", 1),
    ]
    assert activity.since(T0 + 1) == [HeartbeatCount(T0 + 60, "node-b", 1)]


def test_heartbeat_counts_older_than_the_cutoff_are_forgotten(repos: Repositories) -> None:
    activity = repos.heartbeat_activity
    activity.add({(T0 + 60 * i, "node-a"): 1 for i in range(5)})
    assert activity.delete_older_than(T0 + 180) == 3
    assert [c.minute for c in activity.since(0)] == [T0 + 180, T0 + 240]
    assert activity.delete_older_than(T0) == 0


def test_a_heartbeat_count_off_the_minute_or_below_one_is_refused_and_nothing_is_stored(
    repos: Repositories,
) -> None:
    with pytest.raises(InvalidValue, match="minute"):
        repos.heartbeat_activity.add({(T0 + 1, "node-a"): 1})
    with pytest.raises(InvalidValue, match="count"):
        repos.heartbeat_activity.add({(T0, "node-a"): 1, (T0, "node-b"): 0})
    assert repos.heartbeat_activity.since(0) == []


def test_many_nodes_in_one_batch_are_all_counted(repos: Repositories) -> None:
    repos.heartbeat_activity.add({(T0, f"node-{i:04d}"): 1 for i in range(1_200)})
    counted = repos.heartbeat_activity.since(T0)
    assert len(counted) == 1_200 and {c.count for c in counted} == {1}


# --------------------------------------------------------------------------- stakes


def _stake(i: int, status: StakeStatus, at: int) -> Stake:
    channel = StakeChannel(
        channel_id="850000x12x1", channel_point="ab" * 32 + ":1", peer_pubkey="03" + "cd" * 32,
        capacity_sat=2_000_000, local_balance_sat=900_000, remote_balance_sat=1_000_000,
        confirmations=6, active=True,
    )  # fmt: skip
    return Stake(
        public_key=identity(i).public_key_hex, tier=Tier.T2, status=status,
        required_sats=100_000, capacity_sat=900_000, bonus_bps=10_000, changed_at=at,
        channel=channel, grace_until=at + 60 if status is StakeStatus.DEGRADED else None,
        cooldown_until=at + 60 if status is StakeStatus.SLASHED else None,
    )  # fmt: skip


def test_saving_a_stake_records_each_change_of_status_and_only_those(
    repos: Repositories,
) -> None:
    key = identity(1).public_key_hex
    repos.stakes.save(_stake(1, StakeStatus.ACTIVE, T0))
    repos.stakes.save(attrs.evolve(_stake(1, StakeStatus.ACTIVE, T0), capacity_sat=950_000))
    repos.stakes.save(_stake(1, StakeStatus.DEGRADED, T0 + 10))
    repos.stakes.save(_stake(2, StakeStatus.PENDING, T0 + 20))
    repos.stakes.save(_stake(1, StakeStatus.ACTIVE, T0 + 30))
    assert repos.stakes.changes(0) == [
        StakeChange(key, StakeStatus.ACTIVE, T0),
        StakeChange(key, StakeStatus.DEGRADED, T0 + 10),
        StakeChange(identity(2).public_key_hex, StakeStatus.PENDING, T0 + 20),
        StakeChange(key, StakeStatus.ACTIVE, T0 + 30),
    ]
    assert [c.at for c in repos.stakes.changes(T0 + 10, limit=2)] == [T0 + 10, T0 + 20]


def test_a_stake_change_commits_with_its_stake_or_not_at_all(repos: Repositories) -> None:
    with pytest.raises(RuntimeError), repos.atomic():
        repos.stakes.save(_stake(1, StakeStatus.ACTIVE, T0))
        raise RuntimeError("crash before the commit")
    assert repos.stakes.changes(0) == []
    assert repos.stakes.get(identity(1).public_key_hex) is None


# --------------------------------------------------------------------------- payments


def test_the_payment_log_is_read_from_a_time_on_in_logged_order(repos: Repositories) -> None:
    first = start_attempt(a_payment(1), T0 + 5)
    lines = [
        attempt_record(first, AttemptOutcome.STARTED, T0 + 5),
        attempt_record(fail(first, T0 + 6, "no route"), AttemptOutcome.FAILED, T0 + 6),
        attempt_record(a_payment(2), AttemptOutcome.STARTED, T0 + 2),
        attempt_record(a_payment(3), AttemptOutcome.STARTED, T0 + 9),
    ]
    for line in lines:
        repos.payments.log_attempt(line)
    assert repos.payments.attempts_since(T0 + 5) == [lines[0], lines[1], lines[3]]
    assert repos.payments.attempts_since(T0, limit=2) == lines[:2]
    assert repos.payments.attempts_since(T0 + 10) == []


def test_settled_payments_are_listed_by_when_they_settled(repos: Repositories) -> None:
    def settled(i: int, at: int):
        return succeed(start_attempt(a_payment(i), at - 1), at)

    late, early = settled(1, T0 + 50), settled(2, T0 + 20)
    for payment in (late, early, a_payment(3), fail(start_attempt(a_payment(4), T0), T0 + 30, "x")):
        repos.payments.upsert(payment)
    assert [p.state for p in repos.payments.settled_since(0)] == [PaymentState.SUCCEEDED] * 2
    assert repos.payments.settled_since(0) == [early, late]
    assert repos.payments.settled_since(T0 + 21) == [late]
    assert repos.payments.settled_since(0, limit=1) == [early]
