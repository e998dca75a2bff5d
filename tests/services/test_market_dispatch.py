"""A market that cannot be halted (SRS-COORD-02, SRS-PERF-09).

Work nobody can take is refused at submission (no registered node could run it) or
expires after the queue time; dispatch never stops behind it; task inputs live in the store.
Each attack below is run against the in-memory store and SQLite (PostgreSQL where marked).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owm_adapters.services.coordinator import dispatch
from owm_adapters.services.coordinator.sealing import SealedBlobs, TaskSealing
from owm_adapters.storage.memory import memory_repositories
from owm_adapters.storage.sql import open_repositories
from owm_core.coordination.tasks import submit_task
from owm_core.errors import NoMatch
from owm_core.market.tasks import MAX_TASK_INPUT_BYTES, NodeOffer, TaskState, match
from owm_core.nodes.tiers import Tier
from owm_core.ports.repositories import Repositories
from tests.services.market_world import (
    COORDINATOR,
    MarketWorld,
    a_request,
    build_market,
    drain,
    opened,
)

BACKLOG = 10_000


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repositories]:
    if request.param == "memory":
        yield memory_repositories()
        return
    repositories = open_repositories(f"sqlite:///{tmp_path / 'market.sqlite3'}")
    try:
        yield repositories
    finally:
        repositories.close()


def dispatched_within(world: MarketWorld, handle, task_id: str, limit_s: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    """Submit a normal task and return how long until its replica is on ``handle``'s queue."""
    started = time.perf_counter()
    world.market.submit_task(a_request(task_id), b'{"prompt": "normal"}')
    while time.perf_counter() - started < limit_s:
        if any(p.task.task_id == f"{task_id}:0" for p in drain(handle)):
            return time.perf_counter() - started
        time.sleep(0.001)
    raise AssertionError(f"{task_id} was not dispatched within {limit_s} s")


def test_ten_thousand_tasks_nobody_streaming_can_take_never_delay_a_normal_one(
    store: Repositories,
) -> None:
    world = build_market(store)
    node = world.add_node(1)
    handle = world.stream(node, ask_msat=1_000)
    # Admitted (a registered node could run them) but unassignable: every ask is above 1 msat.
    # Stored in one write: the attack is the backlog, not the time it takes to submit it.
    with store.atomic():
        for i in range(BACKLOG):
            submit_task(store, a_request(f"junk-{i}", max_price_msat=1),
                        world.market.config.verification, world.clock.now() + 3_600)
    for _ in range(3):
        world.market.tick()  # the sweep walks past the backlog without stalling

    assert dispatched_within(world, handle, "normal-1") < 1.0
    assert len(store.tasks.waiting(limit=2 * BACKLOG)) == BACKLOG

    # A restarted coordinator over the same store is not halted either.
    restarted = build_market(store, clock=world.clock)
    restarted.nodes.append(node)
    assert dispatched_within(restarted, restarted.stream(node), "normal-2") < 1.0


def test_ten_thousand_tasks_no_registered_node_could_run_are_refused_and_nothing_is_stored(
    store: Repositories,
) -> None:
    world = build_market(store)
    handle = world.stream(world.add_node(1))
    for i in range(BACKLOG):
        with pytest.raises(NoMatch, match="needs 1 online node"):
            world.market.submit_task(
                a_request(f"gpu-{i}", gpu_required=True, min_vram_mb=80_000), b"x" * 1_000
            )
    assert store.tasks.waiting(limit=10) == []
    assert store.task_inputs.get("gpu-0") is None

    assert dispatched_within(world, handle, "normal-1") < 1.0


@pytest.mark.parametrize(
    ("vram_mb", "changes", "reason"),
    [
        (24_000, {"min_tier": Tier.T3}, "tier t3 or above"),
        (0, {"gpu_required": True}, "a GPU"),
        (24_000, {"gpu_required": True, "min_vram_mb": 48_000}, "vram ≥ 48000 MB"),
        (24_000, {"min_ram_mb": 1_000_000}, "ram ≥ 1000000 MB"),
    ],
)
def test_a_refusal_names_the_requirement_no_registered_node_meets(
    vram_mb: int, changes: dict[str, object], reason: str
) -> None:
    world = build_market(memory_repositories())
    world.add_node(1, tier=Tier.T2, vram_mb=vram_mb)
    with pytest.raises(NoMatch) as refused:
        world.market.submit_task(a_request("t1", **changes))
    assert f"with {reason}; 0 registered" in refused.value.message
    assert world.repositories.tasks.get("t1:0") is None


def test_a_task_needs_one_registered_online_node_and_runs_on_as_many_replicas_as_fit() -> None:
    world = build_market(memory_repositories(), redundancy=3)
    world.add_node(1)
    world.add_node(2)
    assert len(world.market.submit_task(a_request("two"))) == 2  # degraded, not refused
    world.clock.advance(10_000)  # the registered nodes fall silent: they no longer count
    with pytest.raises(NoMatch, match="needs 1 online node"):
        world.market.submit_task(a_request("none"))
    world.add_node(3)
    assert len(world.market.submit_task(a_request("one"))) == 1  # one spot-checked replica


def test_a_task_nobody_takes_expires_after_the_queue_time_and_its_input_is_dropped(
    store: Repositories,
) -> None:
    world = build_market(store, queue_timeout_s=60)
    world.add_node(1)  # registered, never streaming
    world.market.submit_task(a_request("idle"), b'{"prompt": "anyone?"}')
    world.clock.advance(60)
    world.market.tick()
    assert world.market.task("idle")[1] == "pending"

    world.clock.advance(1)
    world.market.tick()

    replicas, outcome = world.market.await_task("idle", 0)
    assert outcome == "expired" and [r.state for r in replicas] == [TaskState.EXPIRED]
    assert store.task_inputs.get("idle") is None
    handle = world.stream(world.nodes[0])  # a node that comes later gets nothing stale
    assert drain(handle) == []


def test_inputs_are_read_from_the_store_when_pushed_and_survive_a_restart(
    store: Repositories,
) -> None:
    world = build_market(store)
    node = world.add_node(1)
    big = b"\x00" * (4 * 1024 * 1024)
    assert len(big) <= MAX_TASK_INPUT_BYTES
    world.market.submit_task(a_request("waiting"), big)
    assert not any(isinstance(v, bytes) and len(v) >= len(big)
                   for v in vars(world.market).values())  # no input held by the process

    # What a node gets is what the store holds now, not what the process was handed.
    replaced = SealedBlobs(store.task_inputs, TaskSealing(COORDINATOR), "task-input")
    store.task_inputs.delete("waiting")
    replaced.put("waiting", b"replaced in the store")
    restarted = build_market(store, clock=world.clock)
    (pushed,) = drain(restarted.stream(node))

    assert opened(node, pushed) == b"replaced in the store"


OFFERS = st.lists(
    st.tuples(
        st.sets(st.sampled_from(["inference", "training"]), min_size=1),  # capabilities
        st.integers(1, 3),  # ask
        st.integers(0, 40),  # opens its stream after this many submissions
    ),
    min_size=1,
    max_size=3,
)
TASKS = st.lists(
    st.tuples(st.sampled_from(["inference", "training", "embedding"]), st.integers(1, 3)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offers=OFFERS, tasks=TASKS, ticks_each=st.integers(0, 2))
def test_every_assignable_task_is_dispatched_and_unassignable_ones_never_block(
    offers: list[tuple[set[str], int, int]], tasks: list[tuple[str, int]], ticks_each: int
) -> None:
    with mock.patch.object(dispatch, "SWEEP_PAGE", 2):  # far fewer than the unassignable ones
        world = build_market(memory_repositories())
        nodes = [world.add_node(10 + i) for i in range(len(offers))]
        handles = []

        def open_streams(submitted: int) -> None:
            for who, (caps, ask, opens_after) in zip(nodes, offers, strict=True):
                if opens_after == submitted:
                    handles.append(world.stream(who, sorted(caps), ask))

        for i, (task_type, price) in enumerate(tasks):
            open_streams(i)
            world.market.submit_task(a_request(f"t{i}", task_type=task_type, max_price_msat=price))
            for _ in range(ticks_each):
                world.market.tick()
        open_streams(len(tasks))
        waiting = len(world.repositories.tasks.waiting(limit=1_000))
        for _ in range(waiting // 2 + 2):  # one full turn of the sweep
            world.market.tick()

    streaming = [h.offer for h in handles]
    for i, (task_type, price) in enumerate(tasks):
        replica = world.repositories.tasks.get(f"t{i}:0")
        assert replica is not None
        if _matches(a_request(f"t{i}", task_type=task_type, max_price_msat=price), streaming):
            assert replica.state is TaskState.ASSIGNED
        else:
            assert replica.state is TaskState.SUBMITTED


def _matches(request, offers: list[NodeOffer]) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(match(request, offers))
    except NoMatch:
        return False


def test_a_replica_the_sweep_placed_first_is_not_assigned_again_from_a_stale_copy() -> None:
    world = build_market(memory_repositories())
    node = world.add_node(1)
    handle = world.stream(node)
    (stale,) = submit_task(world.repositories, a_request("raced"),
                           world.market.config.verification)
    world.market.tick()  # the sweep finds it in the store and assigns it
    assert [p.task.task_id for p in drain(handle)] == ["raced:0"]

    planner = dispatch.Dispatcher(world.repositories, world.clock, world.market.config)
    assert planner.plan([handle.offer], [stale]) == []  # no Conflict, no second assignment


def test_a_slashed_nodes_open_stream_is_not_counted_among_the_nodes_that_can_take_work() -> None:
    world = build_market(memory_repositories(), redundancy=3)
    honest, slashed = world.add_node(1), world.add_node(2)
    world.stream(honest, capabilities=("inference", "fl_training"))
    world.stream(slashed, capabilities=("inference", "fl_training"))
    record = world.repositories.nodes.get(slashed.node_id)
    assert record is not None and len(world.market.streaming_offers()) == 2
    world.repositories.nodes.save(attrs.evolve(record, suspended=True))  # what a slash does

    assert [o.node_id for o in world.market.streaming_offers()] == [honest.node_id]
