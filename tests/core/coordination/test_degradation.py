"""Graceful degradation over the store (owm_core.coordination.degradation, SRS-PERF-07).

A network that loses a node keeps verifying and paying: a task planned for fewer replicas is
judged over them; a replica no connected node can take any more is dropped (never below the
floor) so its round closes at once instead of after the commit window; a lone replica is
spot-checked, its reward held until the check is in.
"""

from __future__ import annotations

import os

from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.coordination.degradation import shed_unplaceable
from owm_core.coordination.reveals import RevealWindows, commit_result, reveal_result
from owm_core.coordination.tasks import (
    offer_of,
    plan_dispatch,
    siblings,
    submit_task,
    task_outcome,
)
from owm_core.identity.keys import Identity
from owm_core.market.redundancy import plan_replicas
from owm_core.market.tasks import PPM, NodeOffer, SettlementKind, TaskState, VerificationPolicy
from tests.core.coordination.test_coordination import MANIFEST, NOW, node_record, request
from tests.reveals import COORDINATOR_KEY_HEX, commitment_envelope, proof_envelope, salt_of

WINDOWS = RevealWindows(commit_window_s=600, reveal_window_s=120)
TRUTH = b'{"answer":42}'
LIE = b'{"answer":41}'


class World:
    """A store with ``nodes`` registered nodes and one task planned for ``eligible`` of them."""

    def __init__(self, nodes: int, eligible: int, policy: VerificationPolicy) -> None:
        self.policy = policy
        self.repos: MemoryRepositories = memory_repositories()
        self.who = [Identity.from_seed(os.urandom(32)) for _ in range(nodes)]
        for n in self.who:
            self.repos.nodes.add(node_record(n))
        self.plan = plan_replicas(policy, eligible)
        self.replicas = submit_task(self.repos, request(), policy, None, self.plan.count)

    def offers(self, *who: Identity) -> list[NodeOffer]:
        return [offer_of(node_record(n), MANIFEST, ["inference"], 1_000) for n in who]

    def dispatch(self, *who: Identity) -> dict[str, str]:
        waiting = [t for t in siblings(self.repos, "job") if t.state is TaskState.SUBMITTED]
        done = plan_dispatch(self.repos, waiting, self.offers(*who), NOW, 600)
        return {a.node_id: a.task.task_id for a in done}

    def commit(self, who: Identity, rid: str, output: bytes, now: int = NOW):  # type: ignore[no-untyped-def]
        raw = commitment_envelope(who, rid, output, now)
        return commit_result(self.repos, raw, now, self.policy, WINDOWS,
                             audience=COORDINATOR_KEY_HEX)

    def reveal(self, who: Identity, rid: str, output: bytes, now: int = NOW):  # type: ignore[no-untyped-def]
        raw = proof_envelope(who, rid, output, now)
        return reveal_result(
            self.repos, raw, salt_of(who.node_id, rid), output, now, self.policy, b"seed", WINDOWS,
            audience=COORDINATOR_KEY_HEX,
        )

    def deliver(self, who: Identity, rid: str, output: bytes):  # type: ignore[no-untyped-def]
        """Commit, then reveal (a lone replica's reveals open at once)."""
        self.commit(who, rid, output)
        return self.reveal(who, rid, output)

    def state(self, rid: str) -> TaskState:
        task = self.repos.tasks.get(rid)
        assert task is not None
        return task.state


def test_a_task_planned_for_the_two_nodes_left_is_verified_and_both_are_paid() -> None:
    world = World(2, 2, VerificationPolicy(redundancy=3))
    a, b = world.who
    assert len(world.replicas) == 2
    replica = world.dispatch(a, b)
    world.commit(a, replica[a.node_id], TRUTH)
    assert world.commit(b, replica[b.node_id], TRUTH).reveals_open  # nobody else awaited
    world.reveal(a, replica[a.node_id], TRUTH)
    outcome = world.reveal(b, replica[b.node_id], TRUTH)

    assert {s.kind for s in outcome.settlements} == {SettlementKind.SETTLE}
    assert len(outcome.settlements) == 2
    assert task_outcome(siblings(world.repos, "job")) == "verified"


def test_two_replicas_that_disagree_are_both_penalised_and_nobody_is_paid() -> None:
    world = World(2, 2, VerificationPolicy(redundancy=3))
    a, b = world.who
    replica = world.dispatch(a, b)
    world.commit(a, replica[a.node_id], TRUTH)
    world.commit(b, replica[b.node_id], LIE)
    world.reveal(a, replica[a.node_id], TRUTH)
    outcome = world.reveal(b, replica[b.node_id], LIE)

    assert {s.kind for s in outcome.settlements} == {SettlementKind.FORFEIT}
    assert task_outcome(siblings(world.repos, "job")) == "failed"


def test_a_replica_nobody_connected_can_take_is_dropped_and_the_round_closes_at_once() -> None:
    # Planned when three nodes were online; then the third was slashed (its offer is gone).
    world = World(3, 3, VerificationPolicy(redundancy=3))
    a, b, _slashed = world.who
    replica = world.dispatch(a, b)
    world.commit(a, replica[a.node_id], TRUTH)
    world.commit(b, replica[b.node_id], TRUTH)
    waiting = [t for t in siblings(world.repos, "job") if t.state is TaskState.SUBMITTED]
    assert len(waiting) == 1

    dropped = shed_unplaceable(world.repos, waiting, world.offers(a, b), world.policy)

    assert [d.task_id for d in dropped] == [waiting[0].task_id]
    assert world.state(waiting[0].task_id) is TaskState.FORFEITED
    world.reveal(a, replica[a.node_id], TRUTH)  # open now, not after the 600 s window
    outcome = world.reveal(b, replica[b.node_id], TRUTH)
    assert sorted(s.node_id for s in outcome.settlements) == sorted([a.node_id, b.node_id])
    assert all(s.kind is SettlementKind.SETTLE for s in outcome.settlements)
    assert task_outcome(siblings(world.repos, "job")) == "verified"


def test_a_dropped_replica_is_not_a_vote_so_one_liar_of_two_still_fails_the_round() -> None:
    world = World(3, 3, VerificationPolicy(redundancy=3))
    a, liar, _gone = world.who
    replica = world.dispatch(a, liar)
    waiting = [t for t in siblings(world.repos, "job") if t.state is TaskState.SUBMITTED]
    shed_unplaceable(world.repos, waiting, world.offers(a, liar), world.policy)
    world.commit(a, replica[a.node_id], TRUTH)
    world.commit(liar, replica[liar.node_id], LIE)
    world.reveal(a, replica[a.node_id], TRUTH)
    outcome = world.reveal(liar, replica[liar.node_id], LIE)

    assert all(s.kind is SettlementKind.FORFEIT for s in outcome.settlements)
    assert task_outcome(siblings(world.repos, "job")) == "failed"


def test_nothing_is_dropped_that_a_connected_node_can_take_or_below_the_floor() -> None:
    world = World(3, 3, VerificationPolicy(redundancy=3))
    a, b, c = world.who
    world.dispatch(a, b)
    waiting = [t for t in siblings(world.repos, "job") if t.state is TaskState.SUBMITTED]
    assert shed_unplaceable(world.repos, waiting, world.offers(a, b, c), world.policy) == []

    strict = World(3, 3, VerificationPolicy(redundancy=3, redundancy_floor=3))
    a, b, _c = strict.who
    strict.dispatch(a, b)
    waiting = [t for t in siblings(strict.repos, "job") if t.state is TaskState.SUBMITTED]
    assert shed_unplaceable(strict.repos, waiting, strict.offers(a, b), strict.policy) == []
    assert strict.state(waiting[0].task_id) is TaskState.SUBMITTED  # it waits instead


def test_replicas_of_a_task_no_node_has_started_are_not_dropped() -> None:
    world = World(3, 3, VerificationPolicy(redundancy=3))
    waiting = siblings(world.repos, "job")
    assert shed_unplaceable(world.repos, waiting, [], world.policy) == []


def test_a_lone_replica_not_drawn_for_a_check_is_verified_and_paid_on_its_own() -> None:
    world = World(1, 1, VerificationPolicy(redundancy=3, spot_check_rate_ppm=0))
    (a,) = world.who
    assert world.plan.spot_checked and len(world.replicas) == 1
    replica = world.dispatch(a)
    outcome = world.deliver(a, replica[a.node_id], TRUTH)

    assert [s.kind for s in outcome.settlements] == [SettlementKind.SETTLE]
    assert task_outcome(siblings(world.repos, "job")) == "verified"


def test_a_lone_replica_drawn_for_a_check_is_held_until_a_second_node_re_executes_it() -> None:
    world = World(2, 1, VerificationPolicy(redundancy=3, spot_check_rate_ppm=PPM))
    a, b = world.who
    replica = world.dispatch(a)
    outcome = world.deliver(a, replica[a.node_id], TRUTH)

    assert outcome.settlements == ()  # reward held
    assert task_outcome(siblings(world.repos, "job")) == "pending"
    check = world.repos.tasks.get("job:check")
    assert check is not None and check.state is TaskState.SUBMITTED
    assert world.dispatch(a) == {}  # never the same node
    (rid,) = world.dispatch(b).values()
    judged = world.deliver(b, rid, TRUTH)

    assert sorted(s.node_id for s in judged.settlements) == sorted([a.node_id, b.node_id])
    assert task_outcome(siblings(world.repos, "job")) == "verified"


def test_a_lone_replica_contradicted_by_its_check_forfeits_and_only_the_checker_is_paid() -> None:
    world = World(2, 1, VerificationPolicy(redundancy=3, spot_check_rate_ppm=PPM))
    liar, b = world.who
    replica = world.dispatch(liar)
    world.deliver(liar, replica[liar.node_id], LIE)
    (rid,) = world.dispatch(b).values()
    judged = world.deliver(b, rid, TRUTH)

    kinds = {s.node_id: s.kind for s in judged.settlements}
    assert kinds == {liar.node_id: SettlementKind.FORFEIT, b.node_id: SettlementKind.SETTLE}


def test_a_replica_a_registered_online_node_could_take_once_it_reconnects_is_kept() -> None:
    world = World(3, 3, VerificationPolicy(redundancy=3))
    a, b, reconnecting = world.who
    world.dispatch(a, b)
    waiting = [t for t in siblings(world.repos, "job") if t.state is TaskState.SUBMITTED]
    standby = [node_record(reconnecting)]  # online in the registry, its stream not open now

    kept = shed_unplaceable(world.repos, waiting, world.offers(a, b), world.policy, standby)

    assert kept == [] and world.state(waiting[0].task_id) is TaskState.SUBMITTED
    busy = [node_record(a)]  # a registered node already holding a sibling is no taker
    assert shed_unplaceable(world.repos, waiting, world.offers(a, b), world.policy, busy)
