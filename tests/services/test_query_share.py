"""Each caller's share of the treasury's daily query budget: whatever a caller sends, in one
coordinator's memory or in the store several coordinators share (SRS-COORD-05), its admitted
queries at their most never draw more than its share a UTC day, and other callers keep theirs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.services.api.quotas import QueryShare
from owm_adapters.storage.memory import memory_repositories
from owm_core.access.api_keys import Plan
from owm_core.access.callers import Caller, CallerKind
from owm_core.access.ratelimit import DAY_S
from owm_core.errors import RateLimited

T0 = 1_800_000_000 - 1_800_000_000 % DAY_S


def token(name: str) -> Caller:
    return Caller(CallerKind.L402, name, f"l402:{name}", Plan.COMMERCIAL)


@given(
    share=st.integers(1, 10**10),
    most=st.integers(1, 10**7),
    asks=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3 * DAY_S)), max_size=80),
    shared=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_no_caller_draws_more_than_its_share_of_a_days_query_budget(
    share: int, most: int, asks: list[tuple[str, int]], shared: bool
) -> None:
    ledger = memory_repositories().quotas if shared else None
    quota = QueryShare(share, most, ledger=ledger)
    admitted: dict[tuple[str, int], int] = {}
    for name, at in sorted(asks, key=lambda a: a[1]):
        try:
            quota.admit(token(name), T0 + at)
        except RateLimited as refused:
            assert 0 < refused.retry_after_s <= DAY_S
            assert (T0 + at + refused.retry_after_s) % DAY_S == 0  # the next UTC day
            continue
        key = (name, (T0 + at) // DAY_S)
        admitted[key] = admitted.get(key, 0) + 1
    for count in admitted.values():
        assert count * most <= max(share, most)  # one query always fits


def test_a_ten_sat_token_cannot_spend_the_default_daily_query_budget() -> None:
    budget, share, most = 1_000_000_000, 10_000_000, 3 * 10_000 * 3
    quota = QueryShare(share, most)
    answered = 0
    with pytest.raises(RateLimited, match="resets at 00:00 UTC"):
        while True:
            quota.admit(token("cheap"), T0)
            answered += 1
    assert answered * most <= budget // 100
    quota.admit(token("someone-else"), T0)


@given(
    share=st.integers(1, 10**7),
    most=st.integers(1, 10**6),
    steps=st.lists(
        st.tuples(st.sampled_from("ab"), st.one_of(st.none(), st.integers(0, 10**6))),
        max_size=60,
    ),
    shared=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_what_answered_queries_cost_and_running_holds_never_pass_a_callers_share(
    share: int, most: int, steps: list[tuple[str, int | None]], shared: bool
) -> None:
    """Each step asks a query of a caller; it is answered at once at a cost (at most its worst
    case) or left running (None: its hold stays). Whatever the order, a caller's costs plus its
    running holds stay within its share, and a query that costs less leaves room for more."""
    ledger = memory_repositories().quotas if shared else None
    quota = QueryShare(share, most, ledger=ledger)
    drawn = {"a": 0, "b": 0}
    for name, cost in steps:
        try:
            hold = quota.admit(token(name), T0)
        except RateLimited:
            assert drawn[name] + most > max(share, most)  # refused only when a hold would not fit
            continue
        spent = None if cost is None else min(cost, most)
        quota.settle(hold, spent)
        drawn[name] += most if spent is None else spent
        assert drawn[name] <= max(share, most)


def test_queries_that_cost_nothing_never_use_up_a_share_and_a_running_one_keeps_its_hold() -> None:
    quota = QueryShare(100, 100)
    for _ in range(1_000):
        quota.settle(quota.admit(token("free"), T0), 0)
    running = quota.admit(token("free"), T0)
    quota.settle(running, None)
    with pytest.raises(RateLimited):
        quota.admit(token("free"), T0)
