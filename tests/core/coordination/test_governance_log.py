"""The governance log: hash-chained, coordinator-signed, statements verbatim (SRS-GOV-01..06)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.coordination.governance_log import (
    GENESIS_HASH,
    GovernanceLogEntry,
    append_to_log,
    check_next_entry,
    verify_log,
)
from owm_core.errors import Conflict
from owm_core.identity.envelopes import Envelope, EnvelopeKind, seal
from tests.governance_keys import COORDINATOR, HOLDER_IDS, MAINTAINERS, STRANGER, statement
from tests.unbound import unbound

T0 = 1_800_000_000


def log_of(n: int) -> list[GovernanceLogEntry]:
    entries: list[GovernanceLogEntry] = []
    for i in range(n):
        signer = HOLDER_IDS[i % 5]
        envelope = statement(signer, "ack", "prop_1", T0 + i)
        entries.append(
            append_to_log(
                COORDINATOR, entries[-1] if entries else None, action="ack",
                proposal_id="prop_1", actor=signer.public_key_hex, statement=envelope,
                detail={"n": i}, at=T0 + i,
            )
        )  # fmt: skip
    return entries


def test_an_untouched_log_verifies_and_ends_at_its_head() -> None:
    entries = log_of(4)
    assert verify_log(entries, COORDINATOR.public_key_hex, entries[-1].entry_hash()).ok
    assert verify_log([], COORDINATOR.public_key_hex, GENESIS_HASH).ok


@given(index=st.integers(0, 3), field=st.sampled_from(["action", "actor", "detail", "at"]))
def test_editing_any_signed_field_of_any_entry_is_found_at_that_entry(
    index: int, field: str
) -> None:
    entries = log_of(4)
    changed = {"action": "close", "actor": "x" * 64, "detail": {"n": 99}, "at": T0 + 50}[field]
    entries[index] = attrs.evolve(entries[index], **{field: changed})
    result = verify_log(entries, COORDINATOR.public_key_hex)
    assert not result.ok and result.index == index


def test_removing_or_reordering_entries_breaks_the_chain() -> None:
    entries = log_of(4)
    assert verify_log([entries[0], *entries[2:]], COORDINATOR.public_key_hex).index == 1
    assert verify_log([entries[1], entries[0]], COORDINATOR.public_key_hex).index == 0
    truncated = verify_log(entries[:3], COORDINATOR.public_key_hex, entries[-1].entry_hash())
    assert not truncated.ok and "truncated" in (truncated.problem or "")


def test_an_entry_signed_by_the_coordinator_over_a_forged_statement_is_found() -> None:
    """Even the coordinator cannot log an action a maintainer did not sign."""
    entries = log_of(2)
    wire = {**(entries[1].statement or {}), "signer": MAINTAINERS[0].public_key_hex}
    forged = append_to_log(
        COORDINATOR, entries[0], action="ack", proposal_id="prop_1",
        actor=MAINTAINERS[0].public_key_hex, statement=Envelope(**wire), detail={}, at=T0 + 1,
    )  # fmt: skip
    result = verify_log([entries[0], forged], COORDINATOR.public_key_hex)
    assert not result.ok and result.index == 1
    assert result.problem == "the statement does not verify against its signer"


def test_a_statement_for_another_action_or_proposal_does_not_back_the_entry() -> None:
    signer = HOLDER_IDS[0]
    envelope = statement(signer, "ack", "prop_1", T0)
    for action, proposal_id in (("close", "prop_1"), ("ack", "prop_2")):
        entry = append_to_log(
            COORDINATOR, None, action=action, proposal_id=proposal_id,
            actor=signer.public_key_hex, statement=envelope, detail={}, at=T0,
        )  # fmt: skip
        assert not verify_log([entry], COORDINATOR.public_key_hex).ok


def test_a_statement_addressed_to_another_coordinator_does_not_back_the_entry() -> None:
    signer = HOLDER_IDS[0]
    # Signed before envelopes named their coordinator, so only its body says where it goes.
    elsewhere = unbound(statement(signer, "ack", "prop_1", T0, to=MAINTAINERS[0].public_key_hex),
                        signer)  # fmt: skip
    entry = append_to_log(
        COORDINATOR, None, action="ack", proposal_id="prop_1", actor=signer.public_key_hex,
        statement=elsewhere, detail={}, at=T0,
    )  # fmt: skip
    checked = verify_log([entry], COORDINATOR.public_key_hex)
    assert not checked.ok and checked.problem == "the statement is addressed to another coordinator"


def test_a_statement_logged_before_statements_named_their_coordinator_still_backs_its_entry(
) -> None:
    signer = HOLDER_IDS[0]
    legacy = unbound(seal(signer, EnvelopeKind.GOVERNANCE_STATEMENT,
                          {"action": "ack", "proposal_id": "prop_1", "args": {}}, b"\x01" * 16,
                          T0, audience=COORDINATOR.public_key_hex), signer)  # fmt: skip
    entry = append_to_log(
        COORDINATOR, None, action="ack", proposal_id="prop_1", actor=signer.public_key_hex,
        statement=legacy, detail={}, at=T0,
    )  # fmt: skip
    assert verify_log([entry], COORDINATOR.public_key_hex).ok


def test_a_statement_signed_for_another_coordinator_does_not_back_an_entry() -> None:
    signer = HOLDER_IDS[0]
    elsewhere = statement(signer, "ack", "prop_1", T0, to=STRANGER.public_key_hex)
    entry = append_to_log(
        COORDINATOR, None, action="ack", proposal_id="prop_1", actor=signer.public_key_hex,
        statement=elsewhere, detail={}, at=T0,
    )  # fmt: skip
    result = verify_log([entry], COORDINATOR.public_key_hex)
    assert not result.ok and result.problem is not None and "verify" in result.problem


def test_an_entry_that_does_not_continue_the_head_is_a_conflict() -> None:
    entries = log_of(2)
    with pytest.raises(Conflict, match="index"):
        check_next_entry(None, entries[1])
    with pytest.raises(Conflict, match="prev_hash"):
        check_next_entry(entries[0], attrs.evolve(entries[1], prev_hash="ab" * 32))


def test_an_entry_round_trips_through_its_published_dict() -> None:
    entry = log_of(1)[0]
    assert GovernanceLogEntry.from_dict(entry.to_dict()) == entry
