"""The bounty rules: commands, closing keywords, who is paid, caps and the treasury budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue, PolicyViolation
from owm_core.governance.bounty_rules import (
    CLAIM_GRACE_S,
    ClaimCommand,
    Funding,
    OpenCommand,
    Outcome,
    check_budget,
    check_payee,
    claim_lapsed,
    closing_issues,
    on_issue_closed,
    on_pull_request_closed,
    parse_command,
)

KEY = "02" + "ab" * 32


@given(amount=st.integers(1, 10**15), before=st.text(max_size=40).map(lambda t: t.replace("/", "")))
def test_a_bounty_command_on_its_own_line_opens_exactly_its_amount(
    amount: int, before: str
) -> None:
    assert parse_command(f"{before}\n/bounty {amount}\nthanks") == OpenCommand(amount)


def test_commands_are_read_only_on_their_own_line_and_claims_carry_their_payee() -> None:
    assert parse_command("please do /bounty 100 later") is None
    assert parse_command(f"/claim {KEY}") == ClaimCommand(KEY)
    assert parse_command("/claim") == ClaimCommand("")
    assert parse_command("/bounty 2,100 sats") == OpenCommand(2_100)
    with pytest.raises(InvalidValue, match="amount_sat"):
        parse_command("/bounty 0")


def test_a_payee_is_a_lightning_node_key_and_nothing_else() -> None:
    assert check_payee(KEY.upper() + "@1.2.3.4:9735") == KEY
    for bad in ("", "lnbc1...", "02" + "ab" * 31, "04" + "ab" * 32):
        with pytest.raises(InvalidValue, match="payee"):
            check_payee(bad)


def test_closing_keywords_name_the_issues_a_pull_request_closes() -> None:
    body = "Fixes #3, closes #12 and resolved: #7; mentions #9"
    assert closing_issues(body) == {3, 12, 7}


@given(merged=st.booleans(), author=st.sampled_from(["alice", "Alice", "bob"]),
       claimant=st.sampled_from([None, "alice", "bob"]))
def test_only_a_merged_pull_request_by_the_claimant_pays(
    merged: bool, author: str, claimant: str | None
) -> None:
    outcome = on_pull_request_closed(merged, author, claimant)
    paid = merged and claimant is not None and author.lower() == claimant
    assert (outcome is Outcome.PAY) == paid


@given(committed=st.integers(0, 10**9), amount=st.integers(1, 10**9),
       budget=st.integers(0, 2 * 10**9))
def test_treasury_bounties_never_hold_more_than_the_budget(
    committed: int, amount: int, budget: int
) -> None:
    try:
        check_budget(committed, amount, budget)
    except PolicyViolation:
        assert committed + amount > budget
    else:
        assert committed + amount <= budget


def test_a_closed_issue_refunds_sponsors_cancels_treasury_bounties_and_spares_paid_ones() -> None:
    assert on_issue_closed(Funding.SPONSOR, False) is Outcome.REFUND
    assert on_issue_closed(Funding.TREASURY, False) is Outcome.CANCEL
    assert on_issue_closed(Funding.SPONSOR, True) is Outcome.NOTHING


@given(funding=st.sampled_from(Funding), closed_at=st.integers(0, 2**40),
       age=st.integers(0, 3 * CLAIM_GRACE_S))  # fmt: skip
def test_a_claimed_bounty_waits_for_its_claimants_merge_until_the_grace_is_over(
    funding: Funding, closed_at: int, age: int
) -> None:
    """GitHub sends the merge's pull_request event and the closed issue's event in no set
    order: a claimed bounty is not cancelled before CLAIM_GRACE_S has passed (SRS-LN-08)."""
    assert on_issue_closed(funding, False, claimed=True) is Outcome.WAIT
    assert on_issue_closed(funding, True, claimed=True) is Outcome.NOTHING
    assert claim_lapsed(closed_at, closed_at + age) is (age >= CLAIM_GRACE_S)
    assert not claim_lapsed(None, closed_at + age)
