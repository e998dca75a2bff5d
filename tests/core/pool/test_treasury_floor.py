"""A payout batch never takes the treasury below its floor; balances that do not fit stay owed
and are paid, oldest first and exactly once, when funds allow (SRS-POOL-07)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.pool.treasury_floor import Owed, pay_within_floor

KEYS = st.sampled_from(["a", "b", "c", "d"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("credit"), KEYS, st.integers(1, 50_000)),
        st.tuples(st.just("income"), st.just(""), st.integers(0, 200_000)),
    ),
    max_size=40,
)


def test_balances_are_paid_oldest_first_and_whole_until_one_does_not_fit() -> None:
    owed = [Owed("new", 10, 300), Owed("old", 60, 100), Owed("mid", 50, 200)]
    assert pay_within_floor(owed, balance_sat=200, floor_sat=100) == (Owed("old", 60, 100),)
    assert pay_within_floor(owed, balance_sat=220, floor_sat=100) == (
        Owed("old", 60, 100),
        Owed("mid", 50, 200),
        Owed("new", 10, 300),
    )


def test_a_treasury_at_or_below_its_floor_pays_nothing() -> None:
    assert pay_within_floor([Owed("a", 1, 0)], balance_sat=-5, floor_sat=0) == ()
    assert pay_within_floor([Owed("a", 1, 0)], balance_sat=7, floor_sat=7) == ()


def test_a_negative_floor_or_a_repeated_key_is_refused() -> None:
    with pytest.raises(InvalidValue):
        pay_within_floor([], balance_sat=0, floor_sat=-1)
    with pytest.raises(InvalidValue):
        pay_within_floor([Owed("a", 1, 0), Owed("a", 2, 1)], balance_sat=10)


@given(steps=STEPS, start=st.integers(0, 100_000), floor=st.integers(0, 50_000))
def test_the_treasury_never_goes_below_the_floor_nothing_owed_is_lost_and_all_is_paid_once(
    steps: list[tuple[str, str, int]], start: int, floor: int
) -> None:
    treasury = max(start, floor)
    credited: dict[str, int] = {}
    paid: dict[str, int] = {}
    owed: dict[str, int] = {}
    since: dict[str, int] = {}

    def sweep(now: int) -> None:
        nonlocal treasury
        due = [Owed(k, v, since.get(k, 0)) for k, v in owed.items() if v > 0]
        for balance in pay_within_floor(due, treasury, floor):
            treasury -= balance.amount_sat
            paid[balance.key] = paid.get(balance.key, 0) + balance.amount_sat
            owed[balance.key] -= balance.amount_sat
            since[balance.key] = now
        assert treasury >= floor

    for now, (kind, key, amount) in enumerate(steps, start=1):
        if kind == "credit":
            credited[key] = credited.get(key, 0) + amount
            owed[key] = owed.get(key, 0) + amount
        else:
            treasury += amount
        sweep(now)
        for k in credited:  # nothing owed is lost
            assert paid.get(k, 0) + owed[k] == credited[k]
    treasury += sum(owed.values())  # funds now suffice for everything owed
    sweep(len(steps) + 1)
    assert paid == {k: v for k, v in credited.items()}  # every credit paid, exactly once
    assert all(v == 0 for v in owed.values())
    sweep(len(steps) + 2)
    assert paid == credited
