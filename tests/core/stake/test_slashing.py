"""The slashing decision (spec 4.12.3): tier-1 signals, tier-2/3 maintainer quorum, consequences,
and the signed log."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue, PolicyViolation
from owm_core.identity.envelopes import (
    AckVerdict,
    Envelope,
    EnvelopeKind,
    MaintainerAcknowledgement,
    seal,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import (
    COOLDOWN_S,
    GENESIS_HASH,
    SIGNAL_WINDOW_S,
    Consequence,
    SlashingDecision,
    SlashingLogEntry,
    SlashingPolicy,
    SlashingReason,
    SlashingSignal,
    SlashingTarget,
    append_to_log,
    recent_signals,
    verify_log,
)
from tests.unbound import unbound

T0 = 1_700_000_000
NODE = Identity.from_seed(b"\x31" * 32)
MAINTAINERS = [Identity.from_seed(bytes([0x40 + i]) * 32) for i in range(3)]
OUTSIDER = Identity.from_seed(b"\x50" * 32)
COORDINATOR = Identity.from_seed(b"\x60" * 32)
POLICY = SlashingPolicy(maintainer_keys={m.public_key_hex for m in MAINTAINERS},
                        coordinator_key=COORDINATOR.public_key_hex)
EVIDENCE = "e0" * 32
CHANNEL = "871234x1x0"


def target(tier: Tier) -> SlashingTarget:
    return SlashingTarget(node_id=NODE.node_id, tier=tier, channel_id=CHANNEL)


def signal(reporter: str, reason: str = "poisoned_update", node_id: str | None = None) -> Any:
    return SlashingSignal(
        node_id=node_id or NODE.node_id,
        reporter=reporter,
        reason=reason,
        evidence_hash=EVIDENCE,
        at=T0,
    )


def ack(
    maintainer: Identity,
    evidence_hash: str = EVIDENCE,
    verdict: AckVerdict = AckVerdict.SLASH,
    reason: str = "fake_proof",
    node_id: str | None = None,
    nonce: int = 0,
) -> Envelope:
    body = MaintainerAcknowledgement(
        node_id=node_id or NODE.node_id,
        evidence_hash=evidence_hash,
        reason=reason,
        verdict=verdict,
    )
    return seal(maintainer, EnvelopeKind.MAINTAINER_ACK, body, nonce.to_bytes(16, "big"), T0,
                audience=COORDINATOR.public_key_hex)


# --- tier 1: distinct reporters -----------------------------------------------------------


def test_three_signals_from_three_distinct_reporters_slash_a_tier1_node() -> None:
    decision = POLICY.decide(target(Tier.T1), [signal("a"), signal("b"), signal("c")], [], T0)
    assert decision.node_id == NODE.node_id
    assert decision.channel_id == CHANNEL
    assert decision.reason is SlashingReason.POISONED_UPDATE
    assert decision.supporters == ("a", "b", "c")


def test_the_same_reporter_three_times_counts_once() -> None:
    with pytest.raises(PolicyViolation, match="3 distinct reporters, got 1"):
        POLICY.decide(target(Tier.T1), [signal("a"), signal("a"), signal("a")], [], T0)
    assert POLICY.evaluate(target(Tier.T1), [signal("a")] * 5 + [signal("b")], [], T0) is None


def test_signals_about_other_nodes_and_self_reports_do_not_count() -> None:
    other = Identity.from_seed(b"\x32" * 32).node_id
    signals = [signal("a"), signal("b"), signal("c", node_id=other), signal(NODE.node_id)]
    assert POLICY.evaluate(target(Tier.T1), signals, [], T0) is None


reporters = st.sampled_from(["r1", "r2", "r3", "r4", "r5"])
reasons = st.sampled_from([r.value for r in SlashingReason])


@given(picks=st.lists(st.tuples(reporters, reasons), max_size=20))
@settings(max_examples=150)
def test_tier1_slashing_happens_exactly_when_three_distinct_reporters_signal(
    picks: list[tuple[str, str]],
) -> None:
    signals = [signal(reporter, reason) for reporter, reason in picks]
    decision = POLICY.evaluate(target(Tier.T1), signals, [], T0)
    distinct = {reporter for reporter, _ in picks}
    assert (decision is not None) == (len(distinct) >= 3)
    if decision is not None:
        assert set(decision.supporters) == distinct


@pytest.mark.parametrize("tier", [Tier.T2, Tier.T3])
@given(picks=st.lists(st.tuples(reporters, reasons), max_size=20))
@settings(max_examples=60)
def test_signals_alone_never_slash_tier2_or_tier3(tier: Tier, picks: list[tuple[str, str]]) -> None:
    signals = [signal(reporter, reason) for reporter, reason in picks]
    assert POLICY.evaluate(target(tier), signals, [], T0) is None


# --- tier 1: signals expire after the window ----------------------------------------------

NEVER_EXPIRES = attrs.evolve(POLICY, signal_window_s=10**12)
"""The rule before signals expired: every signal counts, however old."""


def aged(reporter: str, reason: str, age_s: int) -> Any:
    return attrs.evolve(signal(reporter, reason), at=T0 - age_s)



@given(
    recent=st.lists(st.tuples(reporters, reasons, st.integers(0, SIGNAL_WINDOW_S - 1)),
                    max_size=12),
    old=st.lists(st.tuples(reporters, reasons, st.integers(SIGNAL_WINDOW_S, 3 * SIGNAL_WINDOW_S)),
                 max_size=12),
)
@settings(max_examples=150)
def test_signals_older_than_the_window_never_count_and_recent_ones_decide_as_before(
    recent: list[tuple[str, str, int]], old: list[tuple[str, str, int]]
) -> None:
    fresh = [aged(r, why, age) for r, why, age in recent]
    expired = [aged(r, why, age) for r, why, age in old]
    mixed = fresh + expired
    # within the window the decision is exactly the one every signal counting gave
    assert POLICY.evaluate(target(Tier.T1), mixed, [], T0) == NEVER_EXPIRES.evaluate(
        target(Tier.T1), fresh, [], T0
    )
    # expired signals alone never slash, however many distinct reporters
    assert POLICY.evaluate(target(Tier.T1), expired, [], T0) is None
    assert recent_signals(mixed, T0) == fresh


def test_three_reporters_a_window_apart_slash_nobody_but_within_it_they_do() -> None:
    spread = [aged("a", "fake_proof", SIGNAL_WINDOW_S), aged("b", "fake_proof", 10),
              aged("c", "fake_proof", 0)]
    assert POLICY.evaluate(target(Tier.T1), spread, [], T0) is None
    assert POLICY.evaluate(target(Tier.T1), spread, [], T0 - 1) is not None
    with pytest.raises(PolicyViolation, match="3 distinct reporters, got 2"):
        POLICY.decide(target(Tier.T1), spread, [], T0)


# --- tier 2/3: maintainer acknowledgements ------------------------------------------------


@pytest.mark.parametrize("tier", [Tier.T2, Tier.T3])
def test_two_distinct_maintainers_acknowledging_the_same_evidence_slash(tier: Tier) -> None:
    acks = [ack(MAINTAINERS[0]), ack(MAINTAINERS[1])]
    decision = POLICY.decide(target(tier), [], acks, T0)
    assert decision.evidence_hash == EVIDENCE
    assert decision.reason is SlashingReason.FAKE_PROOF
    assert decision.tier is tier
    assert set(decision.supporters) == {
        MAINTAINERS[0].public_key_hex,
        MAINTAINERS[1].public_key_hex,
    }


def test_stored_acknowledgements_signed_before_envelopes_named_their_coordinator_count() -> None:
    legacy = [unbound(ack(m), m) for m in MAINTAINERS[:2]]
    assert POLICY.decide(target(Tier.T2), [], legacy, T0).evidence_hash == EVIDENCE
    other = Identity.from_seed(b"\x61" * 32).public_key_hex
    elsewhere = [seal(m, EnvelopeKind.MAINTAINER_ACK, ack(m).body, b"\x05" * 16, T0,
                      audience=other) for m in MAINTAINERS[:2]]  # fmt: skip
    assert POLICY.evaluate(target(Tier.T2), [], elsewhere, T0) is None


@pytest.mark.parametrize(
    ("acks", "why"),
    [
        ([ack(MAINTAINERS[0]), ack(MAINTAINERS[0], nonce=1)], "same maintainer twice"),
        ([ack(MAINTAINERS[0]), ack(OUTSIDER)], "signer not a maintainer"),
        ([ack(MAINTAINERS[0]), ack(MAINTAINERS[1], evidence_hash="e1" * 32)], "other evidence"),
        ([ack(MAINTAINERS[0]), ack(MAINTAINERS[1], reason="poisoned_update")], "other reason"),
        ([ack(MAINTAINERS[0]), ack(MAINTAINERS[1], verdict=AckVerdict.DISMISS)], "dismissed"),
        (
            [ack(MAINTAINERS[0]), ack(MAINTAINERS[1], node_id=OUTSIDER.node_id)],
            "about another node",
        ),
        ([ack(MAINTAINERS[0]), ack(MAINTAINERS[1], reason="bribery")], "unknown reason"),
        (
            [
                ack(MAINTAINERS[0]),
                attrs.evolve(ack(MAINTAINERS[1]), issued_at=T0 + 1),
            ],
            "forged signature",
        ),
        (
            [
                ack(MAINTAINERS[0]),
                seal(
                    MAINTAINERS[1],
                    EnvelopeKind.TASK_PROOF,
                    ack(MAINTAINERS[1]).body,
                    b"\x00" * 16,
                    T0, audience=COORDINATOR.public_key_hex,
                ),
            ],
            "wrong envelope kind",
        ),
    ],
)
def test_acknowledgements_that_do_not_qualify_are_not_counted(
    acks: list[Envelope], why: str
) -> None:
    with pytest.raises(PolicyViolation, match="2 acknowledgements"):
        POLICY.decide(target(Tier.T2), [], acks, T0)


def test_maintainer_acknowledgements_do_not_slash_tier1_without_signals() -> None:
    acks = [ack(m) for m in MAINTAINERS]
    assert POLICY.evaluate(target(Tier.T1), [], acks, T0) is None


@given(
    choices=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([EVIDENCE, "e1" * 32]), st.booleans()),
        max_size=8,
    )
)
@settings(max_examples=40, deadline=None)
def test_tier2_slashing_needs_two_maintainers_backing_the_same_evidence(
    choices: list[tuple[int, str, bool]],
) -> None:
    signers = [*MAINTAINERS, OUTSIDER]
    acks = []
    backers: dict[str, set[int]] = {}
    for n, (who, evidence, slash) in enumerate(choices):
        verdict = AckVerdict.SLASH if slash else AckVerdict.DISMISS
        acks.append(ack(signers[who], evidence_hash=evidence, verdict=verdict, nonce=n))
        if slash and who < len(MAINTAINERS):
            backers.setdefault(evidence, set()).add(who)
    decision = POLICY.evaluate(target(Tier.T2), [signal("a"), signal("b"), signal("c")], acks, T0)
    quorate = sorted(e for e, who in backers.items() if len(who) >= 2)
    assert (decision is not None) == bool(quorate)
    if decision is not None:
        assert decision.evidence_hash == quorate[0]


# --- consequences -------------------------------------------------------------------------


def test_a_decision_forces_close_suspends_forfeits_rewards_zeroes_reputation_and_cools_down() -> (
    None
):
    decision = POLICY.decide(target(Tier.T1), [signal("a"), signal("b"), signal("c")], [], T0)
    assert decision.consequences == {
        Consequence.FORCE_CLOSE_CHANNEL,
        Consequence.SUSPEND_NODE,
        Consequence.START_COOLDOWN,
        Consequence.FORFEIT_UNPAID_REWARDS,
        Consequence.ZERO_REPUTATION,
    }
    assert decision.cooldown_until == T0 + 30 * 24 * 3600 == T0 + COOLDOWN_S
    assert decision.cooldown_active(T0 + COOLDOWN_S - 1)
    assert not decision.cooldown_active(T0 + COOLDOWN_S)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (
            SlashingSignal,
            {"node_id": "bad", "reporter": "a", "reason": "fake_proof"},
            "node_id",
        ),
        (SlashingSignal, {"reporter": "", "reason": "fake_proof"}, "reporter"),
        (SlashingSignal, {"reporter": "a", "reason": "rudeness"}, "reason"),
        (SlashingSignal, {"reporter": "a", "reason": "fake_proof", "at": -5}, "at"),
        (SlashingSignal, {"reporter": "a", "reason": "fake_proof", "at": 1.0}, "at"),
        (
            SlashingSignal,
            {"reporter": "a", "reason": "fake_proof", "evidence_hash": "xyz"},
            "evidence_hash",
        ),
        (SlashingTarget, {"tier": "t4", "channel_id": CHANNEL}, "tier"),
        (SlashingTarget, {"tier": "t1", "channel_id": "bad channel"}, "channel_id"),
    ],
)
def test_invalid_slashing_values_are_refused_naming_the_field(
    cls: Any, kwargs: dict[str, Any], field: str
) -> None:
    defaults: dict[str, Any] = {"node_id": NODE.node_id}
    if cls is SlashingSignal:
        defaults |= {"evidence_hash": EVIDENCE, "at": T0}
    with pytest.raises(InvalidValue) as caught:
        cls(**(defaults | kwargs))
    assert caught.value.field == field


def test_a_policy_refuses_malformed_maintainer_keys() -> None:
    with pytest.raises(InvalidValue) as caught:
        SlashingPolicy(maintainer_keys={"not-a-key"}, coordinator_key=COORDINATOR.public_key_hex)
    assert caught.value.field == "maintainer_keys"


# --- the slashing log ---------------------------------------------------------------------


def _decision(i: int) -> SlashingDecision:
    node = Identity.from_seed(bytes([0x70 + i]) * 32)
    return SlashingDecision(
        node_id=node.node_id,
        channel_id=f"{800000 + i}x1x0",
        tier=Tier.T1,
        reason=list(SlashingReason)[i % len(SlashingReason)],
        evidence_hash=f"{i:02x}" * 32,
        decided_at=T0 + 60 * i,
        supporters=("a", "b", "c"),
    )


def signed_log(n: int, coordinator: Identity = COORDINATOR) -> list[SlashingLogEntry]:
    """A valid log of ``n`` entries signed by ``coordinator`` (the chain tests use it too)."""
    entries: list[SlashingLogEntry] = []
    for i in range(n):
        entries.append(append_to_log(coordinator, entries[-1] if entries else None, _decision(i)))
    return entries


LOG = signed_log(6)
HEAD = LOG[-1].entry_hash()
KEY = COORDINATOR.public_key_hex


def test_a_log_built_by_the_coordinator_verifies() -> None:
    assert verify_log(LOG, KEY, expected_head=HEAD).ok
    assert verify_log([], KEY, expected_head=GENESIS_HASH).ok
    assert LOG[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash() for a, b in itertools.pairwise(LOG))


def test_a_log_signed_by_another_key_does_not_verify() -> None:
    result = verify_log(LOG, OUTSIDER.public_key_hex)
    assert (result.ok, result.index) == (False, 0)


def test_log_entries_round_trip_through_their_published_form() -> None:
    for entry in LOG:
        assert SlashingLogEntry.from_dict(entry.to_dict()) == entry
    with pytest.raises(InvalidValue) as caught:
        SlashingLogEntry.from_bytes(b'{"index": 0.5}')
    assert caught.value.field == "entry"
    with pytest.raises(InvalidValue) as caught:
        SlashingLogEntry.from_dict({k: v for k, v in LOG[0].to_dict().items() if k != "at"})
    assert caught.value.field == "at"


def _edit(entry: SlashingLogEntry, field: str) -> SlashingLogEntry:
    value = getattr(entry, field)
    if field in ("index", "at"):
        return attrs.evolve(entry, **{field: value + 1})
    if field == "reason":
        others = [r for r in SlashingReason if r is not value]
        return attrs.evolve(entry, reason=others[0])
    if field == "channel_id":
        return attrs.evolve(entry, channel_id=value + "1")
    flipped = "1" if value[5] == "0" else "0"
    return attrs.evolve(entry, **{field: value[:5] + flipped + value[6:]})


FIELDS = [a.name for a in attrs.fields(SlashingLogEntry)]


@given(index=st.integers(0, len(LOG) - 1), field=st.sampled_from(FIELDS))
@settings(max_examples=80)
def test_editing_any_field_of_any_entry_is_detected_at_that_entry(index: int, field: str) -> None:
    entries = list(LOG)
    entries[index] = _edit(entries[index], field)
    result = verify_log(entries, KEY, expected_head=HEAD)
    assert not result.ok
    assert result.index == index


@given(index=st.integers(0, len(LOG) - 1))
@settings(max_examples=20)
def test_removing_any_entry_is_detected(index: int) -> None:
    entries = LOG[:index] + LOG[index + 1 :]
    result = verify_log(entries, KEY, expected_head=HEAD)
    assert not result.ok
    assert result.index == index


def test_without_a_known_head_only_a_removal_at_the_end_goes_unseen() -> None:
    assert verify_log(LOG[:-1], KEY).ok  # documented limit: truncation needs expected_head
    assert not verify_log(LOG[:-1], KEY, expected_head=HEAD).ok


@given(i=st.integers(0, len(LOG) - 1), j=st.integers(0, len(LOG) - 1))
@settings(max_examples=40)
def test_swapping_any_two_entries_is_detected(i: int, j: int) -> None:
    entries = list(LOG)
    entries[i], entries[j] = entries[j], entries[i]
    result = verify_log(entries, KEY, expected_head=HEAD)
    assert result.ok == (i == j)
    if i != j:
        assert result.index == min(i, j)


@given(position=st.integers(0, len(LOG)), source=st.integers(0, len(LOG) - 1))
@settings(max_examples=40)
def test_inserting_a_genuine_or_forged_entry_anywhere_is_detected(
    position: int, source: int
) -> None:
    forged = append_to_log(OUTSIDER, LOG[position - 1] if position else None, _decision(9))
    for extra in (LOG[source], forged):
        entries = [*LOG[:position], extra, *LOG[position:]]
        result = verify_log(entries, KEY, expected_head=HEAD)
        assert not result.ok
        # A copy of the entry already at ``position`` is indistinguishable from it: the
        # first of the twins verifies and the second is the one reported.
        duplicate = position < len(LOG) and extra == LOG[position]
        assert result.index == (position + 1 if duplicate else position)


def test_a_genuine_entry_appended_by_the_coordinator_needs_the_new_head() -> None:
    longer = [*LOG, append_to_log(COORDINATOR, LOG[-1], _decision(7))]
    assert verify_log(longer, KEY, expected_head=longer[-1].entry_hash()).ok
    stale = verify_log(longer, KEY, expected_head=HEAD)
    assert (stale.ok, stale.index) == (False, len(longer))
