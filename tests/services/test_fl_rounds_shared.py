"""FL rounds with several coordinators on one store (SRS-COORD-03, SRS-COORD-05).

The FL scheduler runs on one coordinator (the ``fl-rounds`` lead) and waits for
``min_participants`` nodes serving ``fl_training`` with an open task stream. Behind a balancer
those streams are spread over the coordinators, so it counts the streams every coordinator
recorded in the shared store, fresh ones only; the round's replicas then reach the nodes
through each coordinator's own dispatch. Two markets over one in-memory store stand in for two
coordinator processes on one PostgreSQL database (the SQL adapter keeps the same contract:
``tests/adapters/storage/test_shared_state_contract.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from owm_adapters.provenance.embedded import EmbeddedProvenance
from owm_adapters.services.fl_rounds import FlConfig, FlRoundService, streamed_trainers
from owm_adapters.storage.memory import memory_repositories
from owm_core.fl.rounds import RoundState
from owm_core.identity.keys import Identity
from owm_core.market.streams import STREAM_FRESH_S
from owm_core.ports.repositories import Repositories
from tests.server.harness import StepClock
from tests.services.market_world import T0, MarketWorld, build_market, drain

UPLOAD_URL = "http://127.0.0.1:9/v1/fl/updates"
TRAINER = ("inference", "fl_training")


@attrs.define
class TwoCoordinators:
    """Coordinator ``a`` leads the FL rounds; ``b`` only holds streams."""

    a: MarketWorld
    b: MarketWorld
    fl: FlRoundService
    repositories: Repositories
    clock: StepClock

    def node(self, seed: int) -> Identity:
        """A registered node, known to both (one registry)."""
        who = self.a.add_node(seed)
        self.b.market.admission.forget()
        return who


@pytest.fixture
def two(tmp_path: Path) -> Iterator[TwoCoordinators]:
    repositories, clock = memory_repositories(), StepClock(T0)
    a, b = (build_market(repositories, redundancy=3, clock=clock, shared_state=True,
                         stream_refresh_s=0.0) for _ in range(2))
    provenance = EmbeddedProvenance(tmp_path / "provenance", interval_s=3_600)
    provenance.stop()
    fl = FlRoundService(a.market, provenance, tmp_path / "weights",
                        FlConfig(interval_s=0.0, min_participants=3),
                        store=repositories, clock=clock, replicas_per_task=3,
                        upload_url=UPLOAD_URL)
    for world in (a, b):
        world.market.advertised_api_url = lambda: UPLOAD_URL
    yield TwoCoordinators(a, b, fl, repositories, clock)
    provenance.stop()


def test_a_round_starts_and_reaches_its_trainers_when_they_stream_at_different_coordinators(
    two: TwoCoordinators,
) -> None:
    n1, n2, n3 = (two.node(seed) for seed in (1, 2, 3))
    at_a = [two.a.stream(n1, TRAINER)]
    at_b = [two.b.stream(n, TRAINER) for n in (n2, n3)]
    assert len(two.a.market.streaming_offers()) == 3  # one stream here, two at b

    fl_round = two.fl.maybe_start()

    assert fl_round is not None and fl_round.state is RoundState.OPEN
    two.b.market.tick(housekeeping=False)  # b's dispatch sweep finds the waiting replicas
    pushed = {h.node_id: [p.task.request.task_type for p in drain(h)] for h in at_a + at_b}
    assert pushed == {n.node_id: ["fl_training"] for n in (n1, n2, n3)}
    replicas, _ = two.a.market.task(fl_round.task_ids[0])
    assert sorted(r.node_id or "" for r in replicas) == sorted(n.node_id for n in (n1, n2, n3))


def test_streams_of_a_coordinator_that_stopped_confirming_them_are_not_counted(
    two: TwoCoordinators,
) -> None:
    n1, n2, n3 = (two.node(seed) for seed in (1, 2, 3))
    two.a.stream(n1, TRAINER)
    for n in (n2, n3):
        two.b.stream(n, TRAINER)
    assert streamed_trainers(two.a.market) == 3

    two.clock.advance(STREAM_FRESH_S + 1)  # b died: its records age; a confirms its own
    for who in (n1, n2, n3):  # the nodes themselves still heartbeat (online)
        record = two.repositories.nodes.get(who.node_id)
        assert record is not None
        two.repositories.nodes.save(attrs.evolve(record, last_heartbeat=two.clock.now()))
    two.a.market.tick()

    assert streamed_trainers(two.a.market) == 1
    assert two.fl.maybe_start() is None and two.repositories.fl_rounds.rounds() == []
    two.b.market.tick(housekeeping=False)  # b is back and confirms its streams
    assert streamed_trainers(two.a.market) == 3


def test_a_closed_stream_stops_counting_at_once_and_a_non_trainer_never_counts(
    two: TwoCoordinators,
) -> None:
    n1, n2, n3, n4 = (two.node(seed) for seed in (1, 2, 3, 4))
    two.a.stream(n1, TRAINER)
    two.b.stream(n2, TRAINER)
    closing = two.b.stream(n3, TRAINER)
    two.b.stream(n4, ("inference",))
    assert streamed_trainers(two.a.market) == 3

    two.b.market.close_task_stream(closing)

    assert streamed_trainers(two.a.market) == 2
    assert two.fl.maybe_start() is None


def test_alone_on_its_store_a_coordinator_counts_its_own_streams_and_records_none() -> None:
    repositories = memory_repositories()
    world = build_market(repositories, redundancy=3)
    for seed in (1, 2):
        world.stream(world.add_node(seed), TRAINER)
    world.market.tick()
    assert streamed_trainers(world.market) == 2
    assert repositories.task_streams.seen_since(0) == []
