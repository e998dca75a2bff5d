"""Reversing a slashing on an upheld appeal: who may, what, once; and the log that records it
(docs/slashing.md, "Appeals"; SRS-STAKE-06/07, SRS-SEC-11/14, SRS-LN-13)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import (
    AcknowledgerMayNotReverse,
    InvalidTransition,
    NotAMaintainer,
    ReversalRefused,
    SignatureInvalid,
)
from owm_core.identity.chained_log import chain_position
from owm_core.identity.envelopes import Envelope, EnvelopeKind, SlashingReversal, seal
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.payments.outbox import due_at
from owm_core.payments.records import (
    REINSTATED_ERROR,
    PaymentState,
    RewardPayment,
    forfeit,
    is_forfeited,
    reinstate,
)
from owm_core.stake.channel import Stake, StakeStatus
from owm_core.stake.reversals import (
    ReversalCase,
    authorise,
    check_statement,
    reversal_entry,
)
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogEntry,
    SlashingLogRecord,
    SlashingReason,
    SlashingReversalEntry,
    append_to_log,
    log_entry_from_dict,
    verify_log,
)
from tests.unbound import unbound

T0 = 1_800_000_000
COORDINATOR = Identity.from_seed(b"\x11" * 32)
KEYS = [Identity.from_seed(bytes([0x40 + i]) * 32) for i in range(6)]
MAINTAINERS = KEYS[:4]  # configured; KEYS[4:] are strangers
ACKERS = KEYS[:2]  # acknowledged the slashing
NODE = Identity.from_seed(b"\x21" * 32).node_id
OTHER = Identity.from_seed(b"\x22" * 32).node_id


def decision(node_id: str, at: int, evidence: str = "cd") -> SlashingDecision:
    return SlashingDecision(
        node_id=node_id, channel_id="ab" * 32 + ":0", tier=Tier.T2,
        reason=SlashingReason.FAKE_PROOF, evidence_hash=evidence * 32, decided_at=at,
        supporters=tuple(sorted(k.public_key_hex for k in ACKERS)),
    )  # fmt: skip


def slashing_log() -> list[SlashingLogRecord]:
    """Entry 0 slashes NODE, entry 1 slashes OTHER."""
    first = append_to_log(COORDINATOR, None, decision(NODE, T0))
    return [first, append_to_log(COORDINATOR, first, decision(OTHER, T0 + 10, "ef"))]


def case(log: list[SlashingLogRecord] | None = None) -> ReversalCase:
    return ReversalCase(
        log=slashing_log() if log is None else log,
        maintainer_keys=frozenset(m.public_key_hex for m in MAINTAINERS),
        acknowledged_by=frozenset(a.public_key_hex for a in ACKERS),
        coordinator_key=COORDINATOR.public_key_hex,
    )


def statement(who: Identity, index: int = 0, node_id: str = NODE, nonce: int = 0) -> Envelope:
    body = SlashingReversal(log_index=index, node_id=node_id)
    return seal(who, EnvelopeKind.SLASHING_REVERSAL, body, bytes([nonce]) * 16, T0 + 100,
                audience=COORDINATOR.public_key_hex)


def reversed_log() -> list[SlashingLogRecord]:
    log = slashing_log()
    done = authorise(case(log), 0, NODE, [statement(KEYS[2]), statement(KEYS[3])])
    return [*log, reversal_entry(COORDINATOR, log[-1], done, T0 + 200)]


# --- who may reverse what ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    picks=st.lists(
        st.tuples(
            st.integers(0, len(KEYS) - 1), st.sampled_from([(0, NODE), (1, OTHER), (0, OTHER)])
        ),
        max_size=6,
    )
)
def test_a_reversal_needs_two_distinct_maintainers_who_did_not_acknowledge_the_slashing(
    picks: list[tuple[int, tuple[int, str]]],
) -> None:
    statements = [statement(KEYS[k], i, n, nonce) for nonce, (k, (i, n)) in enumerate(picks)]
    eligible = {
        KEYS[k].public_key_hex
        for k, target in picks
        if KEYS[k] in MAINTAINERS and KEYS[k] not in ACKERS and target == (0, NODE)
    }
    if len(eligible) >= 2:
        done = authorise(case(), 0, NODE, statements)
        assert set(done.maintainers) == eligible
        assert [s.signer for s in done.statements] == list(done.maintainers)
    else:
        with pytest.raises(ReversalRefused, match="needs 2 distinct maintainers"):
            authorise(case(), 0, NODE, statements)


def test_the_same_maintainer_twice_counts_once() -> None:
    twice = [statement(KEYS[2], nonce=1), statement(KEYS[2], nonce=2)]
    with pytest.raises(ReversalRefused, match="got 1"):
        authorise(case(), 0, NODE, twice)


def test_a_maintainer_who_acknowledged_the_slashing_may_not_reverse_it() -> None:
    with pytest.raises(AcknowledgerMayNotReverse, match="acknowledged slashing-log entry 0"):
        check_statement(case(), statement(ACKERS[0]))
    with pytest.raises(ReversalRefused, match=r"not counted: .*acknowledged"):
        authorise(case(), 0, NODE, [statement(ACKERS[0]), statement(KEYS[2])])


def test_a_statement_signed_for_another_coordinator_or_unbound_is_refused() -> None:
    elsewhere = seal(KEYS[2], EnvelopeKind.SLASHING_REVERSAL, SlashingReversal(0, NODE),
                     b"\x07" * 16, T0 + 100, audience=KEYS[5].public_key_hex)  # fmt: skip
    with pytest.raises(SignatureInvalid):
        check_statement(case(), elsewhere)
    with pytest.raises(SignatureInvalid):  # unbound only as read back from the log
        check_statement(case(), unbound(statement(KEYS[2]), KEYS[2]))


def test_an_unknown_key_or_a_forged_statement_is_refused() -> None:
    with pytest.raises(NotAMaintainer, match="not a configured maintainer"):
        check_statement(case(), statement(KEYS[5]))
    forged = attrs.evolve(statement(KEYS[2]), signer=KEYS[3].public_key_hex)
    with pytest.raises(SignatureInvalid):
        check_statement(case(), forged)


@pytest.mark.parametrize(
    ("index", "node_id", "why"),
    [
        (0, OTHER, "is about"),
        (7, NODE, "has no entry 7"),
    ],
)
def test_a_statement_naming_the_wrong_index_or_node_is_refused(
    index: int, node_id: str, why: str
) -> None:
    with pytest.raises(ReversalRefused, match=why):
        check_statement(case(), statement(KEYS[2], index, node_id))


def test_a_reversed_slashing_cannot_be_reversed_again_nor_a_reversal_reversed() -> None:
    log = reversed_log()
    again = [statement(KEYS[2], nonce=5), statement(KEYS[3], nonce=6)]
    with pytest.raises(ReversalRefused, match="already reversed by entry 2"):
        authorise(case(log), 0, NODE, again)
    with pytest.raises(ReversalRefused, match="is a reversal, not a slashing"):
        check_statement(case(log), statement(KEYS[2], 2, NODE))


def test_only_the_latest_slashing_of_a_node_can_be_reversed() -> None:
    log = slashing_log()
    log.append(append_to_log(COORDINATOR, log[-1], decision(NODE, T0 + 40 * 86_400, "aa")))
    with pytest.raises(ReversalRefused, match="slashed again at entry 2"):
        check_statement(case(log), statement(KEYS[2]))


# --- the log that records it ------------------------------------------------------------------

# A slashing log published before reversals existed (written by the code of that time): it
# must keep verifying byte for byte, with the same hashes.
OLD_LOG = json.loads("""[
 {"at": 1800000000,
  "channel_id": "abababababababababababababababababababababababababababababababab:0",
  "evidence_hash": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
  "index": 0, "node_id": "n31d9ccaf6a10c08e5d41f6182cf06deb805da68e",
  "prev_hash": "0000000000000000000000000000000000000000000000000000000000000000",
  "reason": "fake_proof",
  "signature": "094f3c5ddcd33ba200eb2dc30fec69d5b3caea8afe618b45fdcc5efd7513cac54edd09de00b7896df0724e1c9abd35a6fae0ed4b756c4eef1914410885d65007"},
 {"at": 1800000100,
  "channel_id": "efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef:1",
  "evidence_hash": "1212121212121212121212121212121212121212121212121212121212121212",
  "index": 1, "node_id": "nb4f2cb445edc04650f8a32e4be0428ea71b08a83",
  "prev_hash": "c3b846d60167d4970a5a3d64b7e6b24ed4c497ad4a73d11b50eecbb33820e3aa",
  "reason": "poisoned_update",
  "signature": "ac5b9edde525f271942865666cf144ef6ae895208fc6a4f83dd19f634ead788297ebf012811db995f5c316829c47e30315a154bf225795c7fa022842480d9c09"}
]""")  # noqa: E501
OLD_HEAD = "43b7eccc4af36e3acad452cb8ebe91d324cadec5c90369e0ef8a43af2d4da69d"


def test_a_log_written_before_reversals_existed_still_verifies_byte_for_byte() -> None:
    entries = [log_entry_from_dict(e) for e in OLD_LOG]
    assert all(type(e) is SlashingLogEntry for e in entries)
    assert [e.to_dict() for e in entries] == OLD_LOG
    assert entries[1].prev_hash == entries[0].entry_hash()
    assert verify_log(entries, COORDINATOR.public_key_hex, expected_head=OLD_HEAD).ok


def test_a_reversal_appended_to_an_old_log_verifies_and_reads_back_as_published() -> None:
    old = [log_entry_from_dict(e) for e in OLD_LOG]
    node = old[0].node_id
    done = authorise(case(old), 0, node, [statement(KEYS[2], 0, node), statement(KEYS[3], 0, node)])
    entry = reversal_entry(COORDINATOR, old[-1], done, T0 + 500)
    published = entry.to_dict()
    assert published["reverses"] == 0 and published["maintainers"] == sorted(done.maintainers)
    assert log_entry_from_dict(json.loads(json.dumps(published))) == entry
    assert verify_log([*old, entry], COORDINATOR.public_key_hex, entry.entry_hash()).ok
    assert entry.at >= old[-1].at and entry.index == 2


def forged_reversal(log: list[SlashingLogRecord], **fields: Any) -> SlashingReversalEntry:
    """A reversal the coordinator key signed, whatever it says (a rogue coordinator)."""
    base = {
        "reverses": 0, "node_id": NODE, "channel_id": "ab" * 32 + ":0",
        "reason": SlashingReason.FAKE_PROOF,
        "maintainers": tuple(sorted(k.public_key_hex for k in KEYS[2:4])),
        "statement_hash": "00" * 32, "at": T0 + 300,
    }  # fmt: skip
    return SlashingReversalEntry(**chain_position(log[-1]), **{**base, **fields}).signed(
        COORDINATOR
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"reverses": 2}, "not an earlier entry"),
        ({"reverses": 9}, "not an earlier entry"),
        ({"node_id": OTHER}, "does not match slashing entry 0"),
        ({"reason": SlashingReason.EQUIVOCATION}, "does not match slashing entry 0"),
        ({"maintainers": (KEYS[2].public_key_hex,)}, "fewer than 2 distinct maintainers"),
    ],
)
def test_a_reversal_of_no_earlier_matching_slashing_fails_verification(
    fields: dict[str, Any], problem: str
) -> None:
    log = slashing_log()
    result = verify_log([*log, forged_reversal(log, **fields)], COORDINATOR.public_key_hex)
    assert not result.ok and result.index == 2 and problem in (result.problem or "")


def test_a_reversal_of_a_reversal_or_a_second_reversal_fails_verification() -> None:
    log = reversed_log()
    of_reversal = verify_log([*log, forged_reversal(log, reverses=2)], COORDINATOR.public_key_hex)
    assert not of_reversal.ok and "not a slashing" in (of_reversal.problem or "")
    twice = verify_log([*log, forged_reversal(log)], COORDINATOR.public_key_hex)
    assert not twice.ok and twice.index == 3 and "reversed twice" in (twice.problem or "")


def test_an_edited_reversal_fails_its_signature() -> None:
    log = reversed_log()
    assert isinstance(log[2], SlashingReversalEntry)
    edited = attrs.evolve(log[2], reverses=1)
    result = verify_log([*log[:2], edited], COORDINATOR.public_key_hex)
    assert not result.ok and "signature" in (result.problem or "")


# --- what a reversal undoes -------------------------------------------------------------------


def slashed_stake() -> Stake:
    return Stake(
        public_key="ee" * 32, tier=Tier.T2, status=StakeStatus.SLASHED, required_sats=1_000_000,
        capacity_sat=1_000_000, bonus_bps=10_000, changed_at=T0,
        cooldown_until=T0 + 30 * 86_400,
    )  # fmt: skip


def test_reinstating_a_slashed_stake_lifts_its_cooldown_at_once() -> None:
    stake = slashed_stake()
    assert not stake.may_register(T0 + 60)
    lifted = stake.reinstated(T0 + 60)
    assert lifted.status is StakeStatus.DEREGISTERED and lifted.cooldown_until is None
    assert lifted.may_register(T0 + 60)
    with pytest.raises(InvalidTransition):
        lifted.reinstated(T0 + 61)


@given(amount=st.integers(1, 10**12), attempts=st.integers(0, 5), late=st.integers(0, 10**6))
def test_a_forfeited_payment_is_reinstated_once_and_becomes_due(
    amount: int, attempts: int, late: int
) -> None:
    owed = RewardPayment(
        payment_id="p", task_id="t", node_id=NODE, amount_msat=amount,
        payment_hash="ab" * 32, created_at=T0, updated_at=T0, attempts=attempts,
        state=PaymentState.FAILED if attempts else PaymentState.PENDING,
    )  # fmt: skip
    lost = forfeit(owed, T0 + 1)
    assert due_at(lost) is None
    back = reinstate(lost, T0 + 1 + late)
    assert not is_forfeited(back) and back.last_error == REINSTATED_ERROR
    assert back.attempts == lost.attempts and back.payment_hash == owed.payment_hash
    assert due_at(back) is not None
    with pytest.raises(InvalidTransition):
        reinstate(back, T0 + 2 + late)
