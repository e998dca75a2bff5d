"""Payout channels to new nodes: the policy never spends the reserve or the daily budget, and
never opens a second route (SRS-LN-03)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from owm_core.payments.lightning import Channel
from owm_core.payments.payout_channels import (
    CONFIRM_WINDOW_S,
    DAY_S,
    PayoutChannelOpening,
    PayoutChannelPolicy,
    day_start,
    decide,
)

sats = st.integers(0, 10**9)


def channel(local_sat: int, active: bool = True) -> Channel:
    return Channel("1x1x1", "ab" * 32 + ":0", "02" + "cd" * 32, 1_000_000, local_sat,
                   1_000_000 - local_sat, active)  # fmt: skip


@given(reserve=sats, size=sats, budget=sats, spendable=sats, spent=sats)
def test_an_opened_channel_keeps_the_reserve_and_stays_within_the_day(
    reserve: int, size: int, budget: int, spendable: int, spent: int
) -> None:
    policy = PayoutChannelPolicy(reserve, size, budget)
    decision = decide(policy, spendable_sat=spendable, opened_today_sat=spent, channels=[])
    if decision.opens:
        assert decision.amount_sat == size > 0
        assert spendable - size >= reserve
        assert spent + size <= budget


def test_a_node_the_treasury_can_already_pay_gets_no_second_channel() -> None:
    policy = PayoutChannelPolicy(0, 500_000, 5_000_000)
    funded = {"spendable_sat": 10**8, "opened_today_sat": 0}
    assert not decide(policy, **funded, channels=[channel(400_000)]).opens
    # a stake channel the node funded holds no treasury balance: it is no payout route
    assert decide(policy, **funded, channels=[channel(0)]).opens
    assert decide(policy, **funded, channels=[channel(400_000, active=False)]).opens
    assert not decide(policy, **funded, channels=[], suspended=True).opens
    assert not decide(PayoutChannelPolicy(0, 0, 10**9), **funded, channels=[]).opens


@given(started=st.integers(0, 2**40), age=st.integers(0, 3 * CONFIRM_WINDOW_S))
def test_a_node_gets_no_other_channel_while_its_last_opening_may_still_confirm(
    started: int, age: int
) -> None:
    last = PayoutChannelOpening("node-1", 500_000, started)
    decision = decide(PayoutChannelPolicy(0, 500_000, 10**9), spendable_sat=10**9,
                      opened_today_sat=0, channels=[], last_opening=last, now=started + age)
    assert decision.opens == (age >= CONFIRM_WINDOW_S)


@given(now=st.integers(0, 2**40))
def test_the_budget_day_starts_at_utc_midnight(now: int) -> None:
    start = day_start(now)
    assert start % DAY_S == 0 and 0 <= now - start < DAY_S
