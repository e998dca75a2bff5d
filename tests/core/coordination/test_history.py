"""The coordinator's history in time buckets: windows, and the series each dashboard chart
plots from stored records."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.coordination.history import (
    Window,
    activity,
    latency,
    payment_flow,
    round_quality,
    stake_events,
)
from owm_core.errors import InvalidValue
from owm_core.fl.rounds import FlRound
from owm_core.nodes.activity import HeartbeatCount, count_heartbeats, merge_counts, minute_of
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import (
    AttemptOutcome,
    RewardPayment,
    attempt_record,
    start_attempt,
    succeed,
)
from owm_core.stake.changes import StakeChange, change_of
from owm_core.stake.channel import Stake, StakeStatus
from owm_core.stake.slashing import SlashingLogEntry

T0 = 1_800_000_000
KEY = "ab" * 32


@given(now=st.integers(0, 10**10), width=st.integers(1, 86_400), count=st.integers(1, 500))
def test_a_window_ends_with_the_bucket_holding_now_and_files_each_time_in_one_bucket(
    now: int, width: int, count: int
) -> None:
    window = Window.ending_at(now, width, count)
    assert window.index(now) == min(count, (now // width) + 1) - 1
    assert window.end > now >= window.start
    starts = window.starts()
    assert len(starts) == count and starts == sorted(starts)
    for at in (window.start, window.end - 1, now):
        i = window.index(at)
        assert i is not None and starts[i] <= at < starts[i] + width
    assert window.index(window.end) is None
    assert window.start == 0 or window.index(window.start - 1) is None


def test_a_window_needs_a_positive_width() -> None:
    with pytest.raises(InvalidValue):
        Window.ending_at(T0, 0, 10)


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(T0, T0 + 3_600))))
def test_heartbeat_counts_add_up_to_the_heartbeats_admitted(beats: list[tuple[str, int]]) -> None:
    counts = count_heartbeats(beats)
    assert sum(counts.values()) == len(beats)
    assert all(minute % 60 == 0 for minute, _ in counts)
    halves = merge_counts(count_heartbeats(beats[::2]), count_heartbeats(beats[1::2]))
    assert halves == counts


def test_online_nodes_are_distinct_senders_and_heartbeats_their_sum_per_bucket() -> None:
    window = Window.ending_at(T0, 300, 3)
    start = window.start
    counts = [
        HeartbeatCount(minute_of(start), "a", 5),
        HeartbeatCount(minute_of(start + 60), "a", 5),
        HeartbeatCount(minute_of(start + 60), "b", 2),
        HeartbeatCount(minute_of(start + 600), "b", 1),
        HeartbeatCount(minute_of(start - 60), "c", 9),  # before the window
    ]
    seen = activity(window, counts)
    assert seen.online == (2, 0, 1)
    assert seen.heartbeats == (12, 0, 1)


def _payment(i: int, created: int, settled: int) -> RewardPayment:
    owed = RewardPayment(
        payment_id=f"p{i}", task_id=f"t{i}", node_id="n", amount_msat=1_500 * i,
        payment_hash=f"{i:064x}", created_at=created, updated_at=created,
    )  # fmt: skip
    return succeed(start_attempt(owed, settled), settled)


def test_payments_and_earnings_are_counted_from_the_payment_log() -> None:
    window = Window.ending_at(T0, 60, 2)
    first, second = _payment(1, window.start, window.start + 1), _payment(2, window.start, T0)
    lines = [
        attempt_record(first, AttemptOutcome.STARTED, window.start + 1),
        attempt_record(first, AttemptOutcome.SUCCEEDED, window.start + 1),
        attempt_record(second, AttemptOutcome.FAILED, window.start + 2),
        attempt_record(second, AttemptOutcome.SUCCEEDED, T0),
        attempt_record(second, AttemptOutcome.SUCCEEDED, window.start - 1),  # outside
    ]
    flow = payment_flow(window, lines)
    assert flow.succeeded == (1, 1)
    assert flow.failed == (1, 0)
    assert flow.earned_sat == (1, 3)  # 1.5 sat and 3 sat, rounded down


def test_latency_is_the_median_and_longest_wait_from_owed_to_paid_by_settlement_bucket() -> None:
    window = Window.ending_at(T0, 600, 3)
    b0 = window.start
    settled = [_payment(1, b0, b0 + 10), _payment(2, b0, b0 + 30), _payment(3, b0, b0 + 40),
               _payment(4, b0 + 1_200, b0 + 1_205)]  # fmt: skip
    waits = latency(window, settled)
    assert waits.median_s == (30, None, 5)
    assert waits.max_s == (40, None, 5)
    even = latency(window, settled[:2])
    assert even.median_s[0] == 20


def test_stake_events_count_changes_into_each_status_and_slashing_log_entries() -> None:
    window = Window.ending_at(T0, 3_600, 2)
    changes = [
        StakeChange(KEY, StakeStatus.ACTIVE, window.start),
        StakeChange(KEY, StakeStatus.DEGRADED, window.start + 3_600),
        StakeChange(KEY, StakeStatus.PENDING, window.start + 3_600),  # not charted
    ]
    entry = SlashingLogEntry(
        index=0, prev_hash="00" * 32, node_id="n" + "ab" * 20, channel_id="800000x1x0",
        reason="fake_proof", evidence_hash="cd" * 32, at=T0, signature="ef" * 64,
    )  # fmt: skip
    events = stake_events(window, changes, [entry])
    assert events == {"active": (1, 0), "degraded": (0, 1), "suspended": (0, 0),
                      "slashed": (0, 1)}  # fmt: skip


def test_a_stake_change_is_recorded_only_when_the_status_moves() -> None:
    assert change_of(None, _stake(StakeStatus.PENDING)) == StakeChange(
        KEY, StakeStatus.PENDING, T0
    )
    assert change_of(_stake(StakeStatus.PENDING), _stake(StakeStatus.PENDING)) is None


def _stake(status: StakeStatus) -> Stake:
    return Stake(public_key=KEY, tier=Tier.T1, status=status, required_sats=1,
                 capacity_sat=0, bonus_bps=10_000, changed_at=T0)  # fmt: skip


def test_rounds_are_plotted_in_round_order_with_accuracy_in_percent() -> None:
    def a_round(n: int, accuracy: int | None, flagged: tuple[str, ...]) -> FlRound:
        return FlRound(number=n, sub_model="owm-base", state="closed", started_at=T0,
                       rule="trimmed", task_ids=(f"fl-{n}",), base_version="genesis",
                       closed_at=T0 + 30, version_id=f"owm-base@fl-{n}", flagged=flagged,
                       accuracy_ppm=accuracy)  # fmt: skip

    quality = round_quality([a_round(5, 912_300, ("x", "y")), a_round(4, None, ())])
    assert quality.numbers == (4, 5)
    assert quality.accuracy_pct == (None, 91.23)
    assert quality.flagged == (0, 2)
