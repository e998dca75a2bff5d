"""Governance rules: proposal fields, comment periods, lifecycle, treasury acks and quorum."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidTransition, InvalidValue, PolicyViolation
from owm_core.governance import proposals as gov
from owm_core.governance.proposals import (
    DAY_S,
    Comment,
    Proposal,
    ProposalStatus,
    ProposalType,
    TreasuryConfig,
)

T0 = 1_700_000_000
HOLDERS = tuple(f"02{i:064x}" for i in range(1, 6))
OUTSIDER = "03" + "ab" * 32
TREASURY = TreasuryConfig(frozenset(HOLDERS))
MAINTAINERS = {"alice"}
TXID = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"


def proposal(kind: ProposalType = ProposalType.TECHNICAL, requested_sat: int = 0) -> Proposal:
    return gov.submit_proposal(
        proposal_id="p-1",
        author="bob",
        title="Faster rounds",
        description="Shorten FL rounds.",
        proposal_type=kind,
        implementation_plan="Change the round timer.",
        now=T0,
        requested_sat=requested_sat,
    )


def accepted(p: Proposal) -> Proposal:
    return gov.decide(gov.close_comments(p, p.comment_deadline_at), accept=True)


def acked_by_all(p: Proposal) -> Proposal:
    for holder in HOLDERS:
        p = gov.acknowledge(p, holder, TREASURY)
    return p


# --------------------------------------------------------------------------- fields


def test_a_proposal_opens_with_a_seven_day_comment_period() -> None:
    p = proposal()
    assert p.status is ProposalStatus.OPEN
    assert p.comment_deadline_at == T0 + 7 * DAY_S


def test_a_treasury_proposal_must_request_a_positive_amount() -> None:
    with pytest.raises(InvalidValue) as err:
        proposal(ProposalType.TREASURY, 0)
    assert err.value.field == "requested_sat"


@pytest.mark.parametrize("kind", [ProposalType.TECHNICAL, ProposalType.POLICY])
def test_only_treasury_proposals_may_request_an_amount(kind: ProposalType) -> None:
    with pytest.raises(InvalidValue) as err:
        proposal(kind, 1)
    assert err.value.field == "requested_sat"


def test_a_float_amount_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        proposal(ProposalType.TREASURY, 1.5)  # type: ignore[arg-type]
    assert err.value.field == "requested_sat"


@pytest.mark.parametrize("field", ["title", "description", "implementation_plan"])
def test_every_required_text_field_must_be_present(field: str) -> None:
    with pytest.raises(InvalidValue) as err:
        changes: dict[str, Any] = {field: ""}
        attrs.evolve(proposal(), **changes)
    assert err.value.field == field


def test_an_unknown_proposal_type_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        attrs.evolve(proposal(), type="treasury")  # type: ignore[arg-type]
    assert err.value.field == "type"


def test_a_deadline_outside_the_allowed_period_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        attrs.evolve(proposal(), comment_deadline_at=T0 + 7 * DAY_S - 1)
    assert err.value.field == "comment_deadline_at"
    with pytest.raises(InvalidValue) as err:
        attrs.evolve(proposal(), comment_deadline_at=T0 + 21 * DAY_S + 1)
    assert err.value.field == "comment_deadline_at"


# --------------------------------------------------------------------------- thresholds


def test_exactly_a_tenth_of_a_bitcoin_keeps_seven_days_and_needs_no_five_of_five() -> None:
    p = proposal(ProposalType.TREASURY, 10_000_000)
    assert p.comment_deadline_at == T0 + 7 * DAY_S
    assert not p.needs_all_holder_acks


def test_one_sat_above_a_tenth_of_a_bitcoin_needs_fourteen_days_and_five_of_five() -> None:
    p = proposal(ProposalType.TREASURY, 10_000_001)
    assert p.comment_deadline_at == T0 + 14 * DAY_S
    assert p.needs_all_holder_acks


@given(amount=st.integers(1, 10**15))
def test_the_large_treasury_rule_applies_exactly_above_ten_million_sats(amount: int) -> None:
    p = proposal(ProposalType.TREASURY, amount)
    large = amount > 10_000_000
    assert p.needs_all_holder_acks == large
    assert p.comment_deadline_at - T0 == (14 if large else 7) * DAY_S


@given(amount=st.integers(0, 10**15))
def test_three_of_five_signatures_are_needed_exactly_above_a_hundredth_of_a_bitcoin(
    amount: int,
) -> None:
    assert gov.required_signatures(amount) == (3 if amount > 1_000_000 else 1)


def test_the_multisig_boundary_is_exact() -> None:
    assert gov.required_signatures(1_000_000) == 1
    assert gov.required_signatures(1_000_001) == 3


# --------------------------------------------------------------------------- signatures


@given(signers=st.lists(st.sampled_from(HOLDERS), max_size=12))
def test_signatures_are_counted_distinct(signers: list[str]) -> None:
    distinct = len(set(signers))
    if distinct >= 3:
        assert gov.check_spend_authorised(1_000_001, signers, TREASURY) == frozenset(signers)
    else:
        with pytest.raises(PolicyViolation):
            gov.check_spend_authorised(1_000_001, signers, TREASURY)


def test_the_same_holder_signing_three_times_is_one_signature() -> None:
    with pytest.raises(PolicyViolation, match="got 1"):
        gov.check_spend_authorised(5_000_000, [HOLDERS[0]] * 3, TREASURY)


def test_a_signer_outside_the_five_holders_is_refused() -> None:
    with pytest.raises(PolicyViolation, match="not a treasury multisig holder"):
        gov.check_spend_authorised(5_000_000, [*HOLDERS[:3], OUTSIDER], TREASURY)


def test_the_treasury_has_exactly_five_distinct_compressed_keys() -> None:
    with pytest.raises(InvalidValue) as err:
        TreasuryConfig(frozenset(HOLDERS[:4]))
    assert err.value.field == "holders"
    with pytest.raises(InvalidValue) as err:
        TreasuryConfig(frozenset([*HOLDERS[:4], "04" + "00" * 32]))
    assert err.value.field == "holders"


# --------------------------------------------------------------------------- comments


def test_comments_are_accepted_only_during_the_comment_period() -> None:
    p = proposal()
    p = gov.add_comment(p, Comment("carol", "Looks good", T0))
    p = gov.add_comment(p, Comment("dave", "Last minute", p.comment_deadline_at - 1))
    assert [c.author for c in p.comments] == ["carol", "dave"]
    for at in (T0 - 1, p.comment_deadline_at):
        with pytest.raises(PolicyViolation):
            gov.add_comment(p, Comment("eve", "Too late or early", at))


def test_a_closed_proposal_takes_no_comments() -> None:
    p = gov.close_comments(proposal(), T0 + 7 * DAY_S)
    with pytest.raises(PolicyViolation):
        gov.add_comment(p, Comment("eve", "hello", T0 + 1))


def test_a_comment_names_its_invalid_field() -> None:
    with pytest.raises(InvalidValue) as err:
        Comment("eve", "", T0)
    assert err.value.field == "text"


# --------------------------------------------------------------------------- extension


def test_a_core_maintainer_extends_the_period_up_to_twenty_one_days() -> None:
    p = gov.extend_comment_period(
        proposal(), T0 + 21 * DAY_S, maintainer="alice", core_maintainers=MAINTAINERS, now=T0 + 5
    )
    assert p.comment_deadline_at == T0 + 21 * DAY_S


def test_nobody_extends_beyond_twenty_one_days() -> None:
    with pytest.raises(PolicyViolation):
        gov.extend_comment_period(
            proposal(),
            T0 + 21 * DAY_S + 1,
            maintainer="alice",
            core_maintainers=MAINTAINERS,
            now=T0,
        )


def test_a_comment_period_is_never_shortened() -> None:
    with pytest.raises(PolicyViolation):
        gov.extend_comment_period(
            proposal(), T0 + 6 * DAY_S, maintainer="alice", core_maintainers=MAINTAINERS, now=T0
        )


def test_only_a_core_maintainer_may_extend() -> None:
    with pytest.raises(PolicyViolation, match="not a core maintainer"):
        gov.extend_comment_period(
            proposal(), T0 + 10 * DAY_S, maintainer="mallory", core_maintainers=MAINTAINERS, now=T0
        )


def test_an_expired_period_cannot_be_extended() -> None:
    with pytest.raises(PolicyViolation):
        gov.extend_comment_period(
            proposal(),
            T0 + 10 * DAY_S,
            maintainer="alice",
            core_maintainers=MAINTAINERS,
            now=T0 + 7 * DAY_S,
        )


@given(
    amount=st.integers(0, 10**9),
    kind=st.sampled_from(ProposalType),
    extensions=st.lists(st.integers(-30 * DAY_S, 30 * DAY_S), max_size=6),
)
@settings(max_examples=150)
def test_the_comment_deadline_always_lies_between_seven_and_twenty_one_days(
    amount: int, kind: ProposalType, extensions: list[int]
) -> None:
    requested = amount + 1 if kind is ProposalType.TREASURY else 0
    p = proposal(kind, requested)
    for delta in extensions:
        try:
            p = gov.extend_comment_period(
                p,
                p.comment_deadline_at + delta,
                maintainer="alice",
                core_maintainers=MAINTAINERS,
                now=T0,
            )
        except PolicyViolation:
            assert delta < 0 or p.comment_deadline_at + delta > T0 + 21 * DAY_S
        period = p.comment_deadline_at - T0
        assert 7 * DAY_S <= period <= 21 * DAY_S
        if p.needs_all_holder_acks:
            assert period >= 14 * DAY_S


# --------------------------------------------------------------------------- lifecycle


def test_a_proposal_closes_only_when_its_deadline_has_come() -> None:
    p = proposal()
    with pytest.raises(InvalidTransition):
        gov.close_comments(p, p.comment_deadline_at - 1)
    assert gov.close_comments(p, p.comment_deadline_at).status is ProposalStatus.CLOSED


def test_a_closed_proposal_is_accepted_or_rejected_once() -> None:
    closed = gov.close_comments(proposal(), T0 + 7 * DAY_S)
    assert gov.decide(closed, accept=False).status is ProposalStatus.REJECTED
    done = gov.decide(closed, accept=True)
    assert done.status is ProposalStatus.ACCEPTED
    with pytest.raises(InvalidTransition):
        gov.decide(done, accept=False)
    with pytest.raises(InvalidTransition):
        gov.decide(proposal(), accept=True)


def test_a_rejected_proposal_cannot_be_executed() -> None:
    rejected = gov.decide(gov.close_comments(proposal(), T0 + 7 * DAY_S), accept=False)
    with pytest.raises(InvalidTransition):
        gov.execute(rejected)


def test_an_accepted_technical_proposal_executes_without_a_transaction() -> None:
    done = gov.execute(accepted(proposal()))
    assert done.status is ProposalStatus.EXECUTED
    assert done.txid is None
    with pytest.raises(InvalidValue) as err:
        gov.execute(accepted(proposal()), txid=TXID)
    assert err.value.field == "txid"


def test_an_executed_treasury_proposal_links_its_bitcoin_transaction() -> None:
    p = accepted(proposal(ProposalType.TREASURY, 2_000_000))
    done = gov.execute(p, treasury=TREASURY, signers=HOLDERS[:3], txid=TXID)
    assert done.status is ProposalStatus.EXECUTED
    assert done.txid == TXID
    with pytest.raises(InvalidValue) as err:
        gov.execute(p, treasury=TREASURY, signers=HOLDERS[:3])
    assert err.value.field == "txid"
    with pytest.raises(InvalidValue) as err:
        gov.execute(p, treasury=TREASURY, signers=HOLDERS[:3], txid="XYZ")
    assert err.value.field == "txid"


def test_a_treasury_spend_above_a_hundredth_of_a_bitcoin_needs_three_signers() -> None:
    p = accepted(proposal(ProposalType.TREASURY, 2_000_000))
    with pytest.raises(PolicyViolation):
        gov.execute(p, treasury=TREASURY, signers=[HOLDERS[0], HOLDERS[1], HOLDERS[1]], txid=TXID)


def test_a_large_treasury_proposal_waits_for_all_five_acknowledgements() -> None:
    p = accepted(proposal(ProposalType.TREASURY, 10_000_001))
    for holder in HOLDERS[:4]:
        p = gov.acknowledge(p, holder, TREASURY)
    with pytest.raises(PolicyViolation, match="1 of 5"):
        gov.check_ready_for_signing(p, TREASURY)
    with pytest.raises(PolicyViolation):
        gov.execute(p, treasury=TREASURY, signers=HOLDERS, txid=TXID)
    p = gov.acknowledge(p, HOLDERS[4], TREASURY)
    gov.check_ready_for_signing(p, TREASURY)
    assert gov.execute(p, treasury=TREASURY, signers=HOLDERS[:3], txid=TXID).txid == TXID


def test_a_treasury_proposal_of_exactly_a_tenth_of_a_bitcoin_signs_without_acknowledgements() -> (
    None
):
    p = accepted(proposal(ProposalType.TREASURY, 10_000_000))
    gov.check_ready_for_signing(p, TREASURY)


def test_only_holders_acknowledge_and_repeats_count_once() -> None:
    p = proposal(ProposalType.TREASURY, 20_000_000)
    with pytest.raises(PolicyViolation):
        gov.acknowledge(p, OUTSIDER, TREASURY)
    p = gov.acknowledge(gov.acknowledge(p, HOLDERS[0], TREASURY), HOLDERS[0], TREASURY)
    assert p.acknowledgements == frozenset({HOLDERS[0]})
    assert acked_by_all(p).acknowledgements == TREASURY.holders


def test_non_treasury_proposals_are_not_acknowledged_by_holders() -> None:
    with pytest.raises(PolicyViolation):
        gov.acknowledge(proposal(), HOLDERS[0], TREASURY)


def test_a_txid_on_a_proposal_that_is_not_executed_is_refused() -> None:
    with pytest.raises(InvalidValue) as err:
        attrs.evolve(proposal(), txid=TXID)
    assert err.value.field == "txid"


def test_open_proposals_are_listed_soonest_deadline_first() -> None:
    short = proposal()
    long = attrs.evolve(
        proposal(ProposalType.TREASURY, 20_000_000), proposal_id="p-2", submitted_at=T0 - 1
    )
    closed = attrs.evolve(gov.close_comments(proposal(), T0 + 7 * DAY_S), proposal_id="p-3")
    assert gov.open_proposals([long, closed, short], now=T0 + 1) == [short, long]
    assert gov.open_proposals([long, short], now=T0 + 8 * DAY_S) == [long]
