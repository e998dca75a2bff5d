"""A coordinator restart (a new service over the same SQLite file) loses no slashing evidence,
finishes an interrupted decision, and never slashes twice (SRS-STAKE-05, SRS-LN-13)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import CoordinatorService, ServiceConfig
from owm_adapters.services.slashing import SlashingService
from owm_adapters.storage.sql import open_repositories
from owm_core.errors import LightningUnavailable
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import StakeStatus
from owm_core.stake.slashing import SlashingPolicy, verify_log
from tests.server.harness import StepClock
from tests.services.test_slashing import (
    SLASHING_COORDINATOR,
    World,
    accusations_a_window_apart_slash_nobody,
    ack,
    by,
    channel_point,
    signal,
    staked,
)

pytestmark = pytest.mark.timeout(120)

COORDINATOR = SLASHING_COORDINATOR  # the one test_slashing's acknowledgements are signed for
MAINTAINERS = [Identity.from_seed(bytes([0x20 + i]) * 32) for i in range(2)]


class LightningDown:
    """A force-close handle whose Lightning node is unreachable (the crash point we inject)."""

    def force_close(self, channel_point: str) -> str:
        raise LightningUnavailable("treasury node unreachable")


class Coordinator:
    """One coordinator process over the SQLite file: open, then 'crash' by dropping it."""

    def __init__(self, tmp: Path, ledger: SimLedger, clock: StepClock) -> None:
        self.repositories: Repositories = open_repositories(f"sqlite:///{tmp / 'c.sqlite3'}")
        self.service = CoordinatorService(
            self.repositories, ledger.lightning("treasury"), clock, ServiceConfig()
        )
        self.ledger, self.clock = ledger, clock

    def slashing(self, force_closer: Lightning | LightningDown | None = None) -> SlashingService:
        closer = force_closer or self.ledger.lightning("treasury", force_close_allowed=True)
        policy = SlashingPolicy(maintainer_keys=[m.public_key_hex for m in MAINTAINERS],
                                coordinator_key=COORDINATOR.public_key_hex)
        return SlashingService(self.repositories, closer, COORDINATOR, self.clock, policy)  # type: ignore[arg-type]

    def world(self) -> World:
        treasury = self.ledger.add_node("treasury")
        return World(self.ledger, treasury, self.clock, self.service, self.slashing(),
                     COORDINATOR, MAINTAINERS)  # fmt: skip


@pytest.fixture
def ledger_and_clock(tmp_path: Path) -> tuple[SimLedger, StepClock]:
    clock = StepClock()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    ledger.add_node("treasury")
    return ledger, clock


def start(tmp: Path, ledger_and_clock: tuple[SimLedger, StepClock]) -> Coordinator:
    return Coordinator(tmp, *ledger_and_clock)


def test_a_restart_keeps_open_signals_and_acknowledgements(
    tmp_path: Path, ledger_and_clock: tuple[SimLedger, StepClock]
) -> None:
    first = start(tmp_path, ledger_and_clock)
    world = first.world()
    t1, t2 = staked(world), staked(world, Tier.T2)
    evidence = hashlib.sha256(b"a disputed proof").hexdigest()
    a, b, c = (by(world, name) for name in "abc")  # stake-backed reporters
    assert world.slashing.report([signal(t1, a), signal(t1, b)]) == []
    assert world.slashing.acknowledge(ack(MAINTAINERS[0], t2, evidence)) is None
    first.repositories.close()

    second = start(tmp_path, ledger_and_clock)  # a new process over the same file
    slashing = second.slashing()
    assert {c.node_id for c in slashing.pending()} == {t1.node_id, t2.node_id}
    assert slashing.resume() == []  # nothing is decided by a restart alone
    [by_signals] = slashing.report([signal(t1, c)])
    outcome = slashing.acknowledge(ack(MAINTAINERS[1], t2, evidence))
    assert outcome is not None and outcome.decision.evidence_hash == evidence
    supporters = by_signals.decision.supporters
    assert len(set(supporters)) == 3 and all(s.startswith("channel:") for s in supporters)

    entries = second.repositories.slashing_log.entries()
    assert [e.node_id for e in entries] == [t1.node_id, t2.node_id]
    assert verify_log(entries, COORDINATOR.public_key_hex).ok
    assert slashing.pending() == []
    second.repositories.close()


def test_a_decision_cut_short_is_finished_after_a_restart_and_never_taken_twice(
    tmp_path: Path, ledger_and_clock: tuple[SimLedger, StepClock]
) -> None:
    first = start(tmp_path, ledger_and_clock)
    world = first.world()
    op = staked(world)
    point = channel_point(world, op)
    broken = first.slashing(LightningDown())
    with pytest.raises(LightningUnavailable):
        broken.report([signal(op, by(world, r)) for r in "abc"])
    assert first.ledger.closed_channel(point) is None  # the force close did not happen
    assert len(first.repositories.slashing_evidence.unfinished_decisions()) == 1
    first.repositories.close()

    second = start(tmp_path, ledger_and_clock)
    slashing = second.slashing()
    [finished] = slashing.resume()
    assert not finished.logged  # the entry written before the crash is the one kept
    assert second.ledger.closed_channel(point) == (finished.closing_txid, True)
    assert slashing.resume() == []
    assert slashing.report([signal(op, r, 7) for r in ("d", "e", "f")]) == []
    assert len(second.repositories.slashing_log.entries()) == 1
    stake = second.repositories.stakes.get(op.identity.public_key_hex)
    assert stake is not None and stake.status is StakeStatus.SLASHED
    second.repositories.close()


def test_the_same_signal_reported_again_after_a_restart_counts_once(
    tmp_path: Path, ledger_and_clock: tuple[SimLedger, StepClock]
) -> None:
    first = start(tmp_path, ledger_and_clock)
    world = first.world()
    op = staked(world)
    same = [signal(op, "verify:a"), signal(op, "verify:b")]
    world.slashing.report(same)
    first.repositories.close()
    second = start(tmp_path, ledger_and_clock)
    slashing = second.slashing()
    assert slashing.report(same) == []  # re-delivered evidence: still two reporters
    assert len(second.repositories.slashing_evidence.open_signals(op.node_id)) == 2
    second.repositories.close()


def test_over_sql_accusations_older_than_the_signal_window_do_not_add_up_to_a_slash(
    tmp_path: Path, ledger_and_clock: tuple[SimLedger, StepClock]
) -> None:
    coordinator = start(tmp_path, ledger_and_clock)
    accusations_a_window_apart_slash_nobody(coordinator.world())
    coordinator.repositories.close()
