"""The slashing-evidence repository contract: memory, SQLite and PostgreSQL behave alike.

Uses the backends of ``test_repositories_contract`` (the same fresh, migrated stores and the
same ``reopen`` for a second, independent handle, i.e. a restarted coordinator).
"""

from __future__ import annotations

import hashlib
import os

import pytest

from owm_core.errors import Conflict
from owm_core.identity.chained_log import chain_position
from owm_core.identity.envelopes import (
    AckVerdict,
    Envelope,
    EnvelopeKind,
    MaintainerAcknowledgement,
    SlashingReversal,
    seal,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingReason,
    SlashingReversalEntry,
    SlashingSignal,
    append_to_log,
    verify_log,
)
from tests.adapters.storage import test_repositories_contract as contract
from tests.adapters.storage.test_repositories_contract import Backend
from tests.reveals import COORDINATOR_KEY_HEX

pytestmark = pytest.mark.timeout(120)

backend = contract.backend  # the contract suite's fixtures: memory, SQLite, PostgreSQL
sqlite_template = contract.sqlite_template

T0 = 1_800_000_000
NODE = Identity.from_seed(b"\x05" * 32).node_id
OTHER = Identity.from_seed(b"\x06" * 32).node_id
MAINTAINER = Identity.from_seed(b"\x09" * 32)
OTHER_MAINTAINER = Identity.from_seed(b"\x0a" * 32)
COORDINATOR = Identity.from_seed(b"\x0b" * 32)


def evidence(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def signal(reporter: str, at: int = T0, node_id: str = NODE, label: str = "e") -> SlashingSignal:
    return SlashingSignal(node_id, reporter, SlashingReason.FAKE_PROOF, evidence(label), at)


def ack(node_id: str = NODE, at: int = T0) -> Envelope:
    body = MaintainerAcknowledgement(node_id, evidence("e"), "fake_proof", AckVerdict.SLASH)
    return seal(MAINTAINER, EnvelopeKind.MAINTAINER_ACK, body, os.urandom(16), at,
                audience=COORDINATOR_KEY_HEX)


def decision(node_id: str = NODE, at: int = T0) -> SlashingDecision:
    return SlashingDecision(
        node_id=node_id, channel_id="ab" * 32 + ":0", tier=Tier.T2,
        reason=SlashingReason.FAKE_PROOF, evidence_hash=evidence("e"), decided_at=at,
        supporters=("a" * 64, "b" * 64),
    )  # fmt: skip


def test_signals_and_acknowledgements_survive_a_reopen_and_duplicates_are_stored_once(
    backend: Backend,
) -> None:
    store = backend.repos.slashing_evidence
    assert store.add_signal(signal("verify:t2", T0 + 5))
    assert store.add_signal(signal("verify:t1", T0, label="f"))
    assert not store.add_signal(signal("verify:t2", T0 + 5))
    envelope = ack()
    assert store.add_acknowledgement(NODE, envelope, T0 + 7)
    assert not store.add_acknowledgement(NODE, envelope, T0 + 8)

    again = backend.reopen().slashing_evidence
    assert [s.reporter for s in again.open_signals(NODE)] == ["verify:t1", "verify:t2"]
    assert again.open_acknowledgements(NODE) == [envelope]
    assert again.open_signals(OTHER) == []


def test_open_nodes_are_listed_by_their_oldest_open_evidence(backend: Backend) -> None:
    store = backend.repos.slashing_evidence
    store.add_signal(signal("a", T0 + 10))
    store.add_acknowledgement(OTHER, ack(OTHER), T0 + 3)
    assert store.open_node_ids() == [OTHER, NODE]
    assert store.open_node_ids(limit=1) == [OTHER]
    assert store.close_evidence(OTHER, T0 + 20) == 1
    assert store.open_node_ids() == [NODE]


def test_open_nodes_are_walked_by_node_id_in_pages_after_a_given_id(backend: Backend) -> None:
    store = backend.repos.slashing_evidence
    nodes = sorted(Identity.from_seed(bytes([0x20 + i]) * 32).node_id for i in range(4))
    for n, node_id in enumerate(reversed(nodes)):  # the oldest evidence: the last node id
        store.add_signal(signal("a", T0 + n, node_id=node_id))
        store.add_signal(signal("b", T0 + n, node_id=node_id))
    store.add_acknowledgement(OTHER, ack(OTHER), T0)
    walked = sorted([*nodes, OTHER])
    first = store.open_node_ids_after(limit=3)
    assert first == walked[:3]
    assert store.open_node_ids_after(first[-1], limit=3) == walked[3:]
    assert store.open_node_ids_after(walked[-1]) == []
    store.close_evidence(walked[1], T0 + 50)
    assert store.open_node_ids_after(walked[0]) == walked[2:]


def test_a_decision_is_written_ahead_and_finishing_it_closes_the_evidence_for_good(
    backend: Backend,
) -> None:
    store = backend.repos.slashing_evidence
    store.add_signal(signal("a"))
    store.add_acknowledgement(NODE, ack(), T0)
    first = decision()
    assert store.begin_decision(first) == first
    assert store.begin_decision(decision(at=T0 + 99)) == first  # the unfinished one wins
    assert backend.reopen().slashing_evidence.unfinished_decisions() == [first]

    store.finish_decision(NODE, T0 + 100)
    assert store.unfinished_decisions() == []
    assert store.open_signals(NODE) == [] and store.open_acknowledgements(NODE) == []
    assert not store.add_signal(signal("a"))  # closed evidence never counts again
    assert store.open_node_ids() == []


def reversal(who: Identity, index: int = 0, at: int = T0) -> Envelope:
    body = SlashingReversal(log_index=index, node_id=NODE)
    return seal(who, EnvelopeKind.SLASHING_REVERSAL, body, os.urandom(16), at,
                audience=COORDINATOR_KEY_HEX)


def test_reversal_statements_are_kept_per_log_index_once_each_across_a_reopen(
    backend: Backend,
) -> None:
    store = backend.repos.slashing_evidence
    first, second = reversal(MAINTAINER), reversal(OTHER_MAINTAINER)
    assert store.add_reversal_statement(0, second, T0 + 5)
    assert store.add_reversal_statement(0, first, T0 + 1)
    assert not store.add_reversal_statement(0, first, T0 + 9)
    assert store.add_reversal_statement(3, reversal(MAINTAINER, 3), T0)
    again = backend.reopen().slashing_evidence
    assert again.reversal_statements(0) == [first, second]
    assert [e.signer for e in again.reversal_statements(3)] == [MAINTAINER.public_key_hex]
    assert again.reversal_statements(1) == []


def test_the_statements_a_reversal_counted_stay_its_own_whatever_is_stored_later(
    backend: Backend,
) -> None:
    """The statements reversal entry 5 counted are recorded with it; a counted maintainer's
    second statement stored afterwards is kept for the record but is not among them."""
    store = backend.repos.slashing_evidence
    first, second = reversal(MAINTAINER), reversal(OTHER_MAINTAINER)
    store.add_reversal_statement(0, second, T0 + 1)
    store.add_reversal_statement(0, first, T0 + 2)
    store.count_reversal_statements([second.signature, first.signature], 5)
    later = reversal(MAINTAINER, at=T0 + 9)
    assert store.add_reversal_statement(0, later, T0 + 9)
    again = backend.reopen().slashing_evidence
    by_signer = sorted([first, second], key=lambda e: e.signer)
    assert again.counted_reversal_statements(5) == by_signer
    assert again.counted_reversal_statements(0) == []
    assert again.reversal_statements(0) == [second, first, later]


def test_counting_an_unknown_or_already_counted_statement_is_refused_and_marks_nothing(
    backend: Backend,
) -> None:
    store = backend.repos.slashing_evidence
    first, second = reversal(MAINTAINER), reversal(OTHER_MAINTAINER)
    store.add_reversal_statement(0, first, T0)
    with pytest.raises(Conflict):
        store.count_reversal_statements([first.signature, second.signature], 5)  # unknown
    assert store.counted_reversal_statements(5) == []
    store.add_reversal_statement(0, second, T0)
    store.count_reversal_statements([first.signature], 5)
    with pytest.raises(Conflict):
        store.count_reversal_statements([second.signature, first.signature], 6)
    assert store.counted_reversal_statements(6) == []
    assert store.counted_reversal_statements(5) == [first]


def test_counting_statements_rolls_back_with_the_transaction_around_it(backend: Backend) -> None:
    store = backend.repos.slashing_evidence
    first = reversal(MAINTAINER)
    store.add_reversal_statement(0, first, T0)
    with pytest.raises(RuntimeError), backend.repos.atomic():
        store.count_reversal_statements([first.signature], 5)
        raise RuntimeError("the reversal entry's append failed")
    assert store.counted_reversal_statements(5) == []
    store.count_reversal_statements([first.signature], 5)  # not counted: may be counted now
    assert backend.reopen().slashing_evidence.counted_reversal_statements(5) == [first]


def test_the_decision_behind_a_slashing_is_found_by_its_node_evidence_and_reason(
    backend: Backend,
) -> None:
    store = backend.repos.slashing_evidence
    made = decision()
    store.begin_decision(made)
    store.finish_decision(NODE, T0 + 1)
    found = backend.reopen().slashing_evidence.decision_for(NODE, evidence("e"), "fake_proof")
    assert found == made and found.supporters == ("a" * 64, "b" * 64)
    assert store.decision_for(NODE, evidence("e"), "poisoned_update") is None
    assert store.decision_for(OTHER, evidence("e"), "fake_proof") is None


def test_a_reversal_entry_is_chained_stored_and_read_back_beside_the_slashings(
    backend: Backend,
) -> None:
    log = backend.repos.slashing_log
    slash = append_to_log(COORDINATOR, None, decision())
    log.append(slash)
    entry = SlashingReversalEntry(
        **chain_position(slash), reverses=0, node_id=NODE, channel_id=slash.channel_id,
        reason=slash.reason, statement_hash=evidence("statements"), at=T0 + 50,
        maintainers=tuple(sorted([MAINTAINER.public_key_hex, OTHER_MAINTAINER.public_key_hex])),
    ).signed(COORDINATOR)  # fmt: skip
    log.append(entry)
    with pytest.raises(Conflict):
        log.append(entry)  # a replay does not chain
    again = backend.reopen().slashing_log
    assert again.entries() == [slash, entry] and again.latest() == entry
    assert verify_log(again.entries(), COORDINATOR.public_key_hex, entry.entry_hash()).ok
    # the stake metrics' "slashing events": slashings since a time, never their reversals
    assert [again.slashings_since(at) for at in (T0 - 1, T0 + 1, T0 + 51)] == [1, 0, 0]
