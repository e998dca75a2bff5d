"""The slashing-evidence repository contract: memory, SQLite and PostgreSQL behave alike.

Uses the backends of ``test_repositories_contract`` (the same fresh, migrated stores and the
same ``reopen`` for a second, independent handle, i.e. a restarted coordinator).
"""

from __future__ import annotations

import hashlib
import os

import pytest

from owm_core.identity.envelopes import (
    AckVerdict,
    Envelope,
    EnvelopeKind,
    MaintainerAcknowledgement,
    seal,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import SlashingDecision, SlashingReason, SlashingSignal
from tests.adapters.storage import test_repositories_contract as contract
from tests.adapters.storage.test_repositories_contract import Backend

pytestmark = pytest.mark.timeout(120)

backend = contract.backend  # the contract suite's fixtures: memory, SQLite, PostgreSQL
sqlite_template = contract.sqlite_template

T0 = 1_800_000_000
NODE = Identity.from_seed(b"\x05" * 32).node_id
OTHER = Identity.from_seed(b"\x06" * 32).node_id
MAINTAINER = Identity.from_seed(b"\x09" * 32)


def evidence(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def signal(reporter: str, at: int = T0, node_id: str = NODE, label: str = "e") -> SlashingSignal:
    return SlashingSignal(node_id, reporter, SlashingReason.FAKE_PROOF, evidence(label), at)


def ack(node_id: str = NODE, at: int = T0) -> Envelope:
    body = MaintainerAcknowledgement(node_id, evidence("e"), "fake_proof", AckVerdict.SLASH)
    return seal(MAINTAINER, EnvelopeKind.MAINTAINER_ACK, body, os.urandom(16), at)


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
