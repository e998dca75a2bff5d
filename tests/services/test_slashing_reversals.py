"""Reversing a slashing on an upheld appeal, on a real coordinator, the embedded Lightning ledger
and the memory, SQLite and PostgreSQL stores (docs/slashing.md, "Appeals"; SRS-STAKE-07,
SRS-SEC-11/14, SRS-LN-13)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_adapters.services.api.config import ApiConfig, ReadCache
from owm_adapters.services.api.views import Views
from owm_adapters.services.slashing import SlashingOutcome
from owm_adapters.services.slashing_reversals import SlashingReversals
from owm_adapters.storage.memory import memory_repositories
from owm_adapters.storage.sql import open_repositories
from owm_core.errors import (
    AcknowledgerMayNotReverse,
    NotAMaintainer,
    ReversalRefused,
    SignatureInvalid,
)
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, SlashingReversal
from owm_core.nodes.registry import Liveness
from owm_core.nodes.tiers import Tier
from owm_core.payments.outbox import due_at
from owm_core.payments.records import (
    REINSTATED_ERROR,
    PaymentState,
    RewardPayment,
    is_forfeited,
)
from owm_core.payments.rewards import RELIABILITY_INITIAL_PPM
from owm_core.stake.channel import StakeCooldownActive, StakeStatus
from owm_core.stake.reversals import statements_problem, verify_reversal_statements
from owm_core.stake.slashing import SlashingReversalEntry, verify_log
from tests.services.test_slashing import (
    STAKE_SAT,
    Operator,
    World,
    ack,
    build_world,
    by,
    channel_point,
    register,
    signal,
    staked,
)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """Four configured maintainers (two to acknowledge, two to review an appeal), a stranger;
    on the memory store, SQLite and PostgreSQL (the reversal's one transaction on each)."""
    if request.param == "memory":
        yield build_world(tmp_path, memory_repositories(), maintainers=5, configured=4)
        return
    url = (
        f"sqlite:///{tmp_path / 'coordinator.sqlite3'}"
        if request.param == "sqlite"
        else request.getfixturevalue("migrated_postgresql_url")
    )
    repositories = open_repositories(url)
    try:
        yield build_world(tmp_path, repositories, maintainers=5, configured=4)
    finally:
        repositories.close()


def reverse(world: World, who: int, op: Operator, index: int = 0) -> bytes:
    body = SlashingReversal(log_index=index, node_id=op.node_id)
    env = envelopes.seal(
        world.maintainers[who], EnvelopeKind.SLASHING_REVERSAL, body, os.urandom(16),
        world.clock.now(), audience=world.coordinator.public_key_hex,
    )  # fmt: skip
    return envelopes.to_bytes(env)


def views(world: World) -> Views:
    """The public read models over the world's store, uncached (what the API publishes)."""
    return Views(world.service.repositories, world.clock, Liveness(),
                 ReadCache(world.clock, 0), ApiConfig())  # fmt: skip


def owed(op: Operator, i: int, amount: int, now: int) -> RewardPayment:
    return RewardPayment(
        payment_id=f"p{i}", task_id=f"t{i}", node_id=op.node_id, amount_msat=amount,
        payment_hash=hashlib.sha256(bytes([i])).hexdigest(), created_at=now, updated_at=now,
    )  # fmt: skip


def slashed_tier2(world: World) -> tuple[Operator, SlashingOutcome]:
    """A tier-2 node with two unpaid rewards, slashed on maintainers 0 and 1's acknowledgements."""
    op = staked(world, Tier.T2)
    payments = world.service.repositories.payments
    payments.upsert(owed(op, 1, 5_000, world.clock.now()))
    payments.upsert(owed(op, 2, 7_000, world.clock.now()))
    evidence = hashlib.sha256(b"disputed proof").hexdigest()
    world.slashing.acknowledge(ack(world.maintainers[0], op, evidence))
    outcome = world.slashing.acknowledge(ack(world.maintainers[1], op, evidence))
    assert outcome is not None and outcome.forfeited_msat == 12_000
    return op, outcome


def test_two_maintainers_who_did_not_acknowledge_reverse_a_slashing_and_restore_the_node(
    world: World,
) -> None:
    op, slashed = slashed_tier2(world)
    repositories = world.service.repositories
    world.clock.advance(3 * 86_400)
    first = world.slashing.reversals.submit(reverse(world, 2, op))
    assert first.recorded and first.outcome is None
    assert first.maintainers == (world.maintainers[2].public_key_hex,)
    receipt = world.slashing.reversals.submit(reverse(world, 3, op))
    done = receipt.outcome
    assert done is not None and done.cooldown_lifted
    assert (done.reissued, done.reissued_msat) == (2, 12_000)

    entries = repositories.slashing_log.entries()
    assert entries[-1] == done.entry and isinstance(done.entry, SlashingReversalEntry)
    assert done.entry.reverses == slashed.entry.index and done.entry.node_id == op.node_id
    assert set(done.entry.maintainers) == {m.public_key_hex for m in world.maintainers[2:4]}
    assert verify_log(entries, world.coordinator.public_key_hex, done.entry.entry_hash()).ok

    stake = repositories.stakes.get(op.identity.public_key_hex)
    assert stake is not None and stake.status is StakeStatus.DEREGISTERED
    assert stake.cooldown_until is None
    for payment in repositories.payments.for_node(op.node_id):
        assert not is_forfeited(payment) and payment.last_error == REINSTATED_ERROR
        assert payment.state is PaymentState.FAILED and due_at(payment) is not None
    node = repositories.nodes.get(op.node_id)
    assert node is not None and node.reliability_ppm == RELIABILITY_INITIAL_PPM

    # the force-closed channel stays closed: the node registers again at once with a new one
    assert world.ledger.closed_channel(channel_point(world, op)) is not None
    world.ledger.open_channel(world.treasury, op.ln, 2 * STAKE_SAT[Tier.T2],
                              push_sat=STAKE_SAT[Tier.T2])  # fmt: skip
    register(world, op)
    again = repositories.stakes.get(op.identity.public_key_hex)
    assert again is not None and again.live


def test_the_statements_published_for_a_reversal_are_the_ones_its_entry_hashes(
    world: World,
) -> None:
    """A maintainer who sent two statements counts once; what the coordinator publishes for
    the reversal (GET /v1/slashing/reversals/{log_index}) is exactly what its entry's
    ``statement_hash`` covers, and it checks out against the configured maintainers."""
    op, slashed = slashed_tier2(world)
    for who in (2, 2, 3):
        receipt = world.slashing.reversals.submit(reverse(world, who, op))
    done = receipt.outcome
    assert done is not None
    evidence = world.service.repositories.slashing_evidence
    assert len(evidence.reversal_statements(slashed.entry.index)) == 3
    published = views(world).reversal(slashed.entry.index)
    assert published.entry == done.entry
    assert [e.signer for e in published.statements] == list(done.entry.maintainers)
    configured, key = world.slashing.policy.maintainer_keys, world.coordinator.public_key_hex
    assert statements_problem(done.entry, published.statements, key, configured) is None


def test_a_statement_a_second_coordinator_stores_after_the_reversal_is_not_published(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two coordinators on one store: B has judged maintainer 2's second, different statement
    against the log before A's reversal committed, and stores it after. What is published for
    the reversal is still what its entry counted (recorded with the entry), so the public
    check passes; re-picking among all stored statements could have taken the new one."""
    op, slashed = slashed_tier2(world)
    other = SlashingReversals(
        world.service.repositories, world.coordinator, world.clock, world.slashing.policy
    )
    counted = envelopes.from_bytes(reverse(world, 2, op))
    world.slashing.reversals.submit(counted)
    later = next(
        e for e in (envelopes.from_bytes(reverse(world, 2, op)) for _ in range(256))
        if e.signature < counted.signature
    )  # sorts first: what a pick by smallest signature would take
    stale = other._case_for(later)
    done = world.slashing.reversals.submit(reverse(world, 3, op)).outcome  # A reverses it
    assert done is not None
    monkeypatch.setattr(SlashingReversals, "_case_for", lambda _self, _envelope: stale)
    with pytest.raises(ReversalRefused, match="already reversed"):
        other.submit(later)  # stored by B, then refused inside its transaction
    monkeypatch.undo()
    evidence = world.service.repositories.slashing_evidence
    assert later in evidence.reversal_statements(slashed.entry.index)

    published = views(world).reversal(slashed.entry.index).statements
    assert counted in published and later not in published
    configured, key = world.slashing.policy.maintainer_keys, world.coordinator.public_key_hex
    assert statements_problem(done.entry, published, key, configured) is None
    log = world.service.repositories.slashing_log.entries()
    assert verify_reversal_statements(log, {done.entry.index: published}, key, configured).ok


def test_without_a_reversal_the_slashed_node_may_not_register(world: World) -> None:
    op, _ = slashed_tier2(world)
    world.slashing.reversals.submit(reverse(world, 2, op))
    world.ledger.open_channel(world.treasury, op.ln, 2 * STAKE_SAT[Tier.T2],
                              push_sat=STAKE_SAT[Tier.T2])  # fmt: skip
    with pytest.raises(StakeCooldownActive):
        register(world, op)


def test_a_maintainer_who_acknowledged_the_slashing_cannot_reverse_it(world: World) -> None:
    op, _ = slashed_tier2(world)
    with pytest.raises(AcknowledgerMayNotReverse):
        world.slashing.reversals.submit(reverse(world, 0, op))
    world.slashing.reversals.submit(reverse(world, 2, op))
    with pytest.raises(AcknowledgerMayNotReverse):
        world.slashing.reversals.submit(reverse(world, 1, op))
    assert world.slashing.reversals.submit(reverse(world, 2, op)).outcome is None
    assert len(world.service.repositories.slashing_log.entries()) == 1
    assert world.service.repositories.slashing_evidence.reversal_statements(0) != []


def test_a_forged_or_single_maintainer_reversal_changes_nothing(world: World) -> None:
    op, _ = slashed_tier2(world)
    repositories = world.service.repositories
    with pytest.raises(NotAMaintainer):
        world.slashing.reversals.submit(reverse(world, 4, op))  # a stranger's key
    forged = envelopes.from_bytes(reverse(world, 4, op))
    forged = envelopes.Envelope(**{**forged.unsigned(), "signature": forged.signature,
                                   "signer": world.maintainers[3].public_key_hex})  # fmt: skip
    with pytest.raises(SignatureInvalid):
        world.slashing.reversals.submit(forged)  # a maintainer's key on another's signature
    world.slashing.reversals.submit(reverse(world, 2, op))
    world.slashing.reversals.submit(reverse(world, 2, op))  # the same maintainer again
    assert len(repositories.slashing_log.entries()) == 1
    stake = repositories.stakes.get(op.identity.public_key_hex)
    assert stake is not None and stake.status is StakeStatus.SLASHED
    assert all(is_forfeited(p) for p in repositories.payments.for_node(op.node_id))


def test_a_repeated_reversal_request_pays_nothing_twice(world: World) -> None:
    op, _ = slashed_tier2(world)
    world.slashing.reversals.submit(reverse(world, 2, op))
    done = world.slashing.reversals.submit(reverse(world, 3, op)).outcome
    assert done is not None and done.reissued == 2
    payments = list(world.service.repositories.payments.for_node(op.node_id))
    for who in (2, 3):
        with pytest.raises(ReversalRefused, match="already reversed"):
            world.slashing.reversals.submit(reverse(world, who, op))
    assert list(world.service.repositories.payments.for_node(op.node_id)) == payments
    assert len(world.service.repositories.slashing_log.entries()) == 2


def test_a_crash_inside_the_reversal_leaves_nothing_half_done_and_a_retry_finishes_it_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    op, _ = slashed_tier2(world)
    repositories = world.service.repositories
    first = reverse(world, 2, op)
    world.slashing.reversals.submit(first)
    real_upsert = repositories.payments.upsert
    calls: list[str] = []

    def crash_on_second(payment: RewardPayment) -> None:
        calls.append(payment.payment_id)
        if len(calls) == 2:
            raise RuntimeError("coordinator killed mid-transaction")
        real_upsert(payment)

    monkeypatch.setattr(repositories.payments, "upsert", crash_on_second)
    second = reverse(world, 3, op)
    with pytest.raises(RuntimeError):
        world.slashing.reversals.submit(second)
    monkeypatch.undo()
    assert len(repositories.slashing_log.entries()) == 1  # rolled back with the effects
    assert all(is_forfeited(p) for p in repositories.payments.for_node(op.node_id))
    stake = repositories.stakes.get(op.identity.public_key_hex)
    assert stake is not None and stake.status is StakeStatus.SLASHED

    receipt = world.slashing.reversals.submit(second)  # sent again: the statement was kept
    assert not receipt.recorded and receipt.outcome is not None
    assert receipt.outcome.reissued == 2
    with pytest.raises(ReversalRefused):
        world.slashing.reversals.submit(first)
    assert [p.last_error for p in repositories.payments.for_node(op.node_id)] == [
        REINSTATED_ERROR, REINSTATED_ERROR,
    ]


def test_a_tier1_slashing_decided_by_signals_is_reversed_by_any_two_maintainers(
    world: World,
) -> None:
    op = staked(world)
    [slashed] = world.slashing.report([signal(op, by(world, r)) for r in ("a", "b", "c")])
    world.slashing.reversals.submit(reverse(world, 0, op, slashed.entry.index))
    done = world.slashing.reversals.submit(reverse(world, 1, op, slashed.entry.index)).outcome
    assert done is not None and done.entry.reverses == slashed.entry.index


def test_two_coordinators_on_one_store_reverse_a_slashing_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Coordinator B judged the statements against the log before A's reversal committed; the
    log read again inside B's transaction refuses the second reversal (SRS-COORD-05)."""
    op, _ = slashed_tier2(world)
    other = SlashingReversals(
        world.service.repositories, world.coordinator, world.clock, world.slashing.policy
    )
    first, second = reverse(world, 2, op), reverse(world, 3, op)
    world.slashing.reversals.submit(first)
    stale = other._case_for(envelopes.from_bytes(second))
    assert world.slashing.reversals.submit(second).outcome is not None  # A reverses it
    monkeypatch.setattr(SlashingReversals, "_case_for", lambda _self, _envelope: stale)
    with pytest.raises(ReversalRefused, match="already reversed"):
        other.submit(second)
    entries = world.service.repositories.slashing_log.entries()
    assert len(entries) == 2
    assert verify_log(entries, world.coordinator.public_key_hex).ok
