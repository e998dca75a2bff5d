"""The market's tick goes on past a round or a task it cannot close.

Each due round is closed, and each stalled task ended, in a transaction of its own. A round or
task whose transaction keeps failing with a domain error (here: a round whose writes the store
refuses) is logged with its id and left for the next tick; the other rounds are
still judged and the other tasks still ended in the same tick, and the tick goes on to its
dispatch and funding sweep. Before, the first such row raised out of the tick, every tick, so
no later round was ever judged and no later task ever ended (SRS-COORD-02, SRS-PERF-07).

A store outage is not one row's failure: it still ends the tick, which the next tick retries.

Each tick looks at the next page of due rounds and of stalled replicas after the last ones it
looked at, so rows that keep failing never hide the ones after them: every round and task
that can be closed is within ``ceil(rows / page) + 1`` ticks, however many before it fail.
Before, each tick read the same oldest window, and a window full of failing rows (100 rounds,
500 replicas) kept every later round from being judged and every later task from ending.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any
from unittest.mock import patch

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owm_adapters.services.coordinator import reveals as reveals_module
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import InvalidValue, StoreUnavailable
from owm_core.identity.keys import Identity
from owm_core.ports.repositories import CommitmentRepository
from tests.reveals import commitment_envelope
from tests.services.market_world import MarketWorld, a_request, build_market, drain

QUEUE_S = 3_600
TASKS = ("a", "b", "c")
OUTPUT = b'{"answer":42}'


def refused(round_id: str) -> Exception:
    return InvalidValue("amount_msat", "does not fit the store's 64-bit columns")


def outage(round_id: str) -> Exception:
    return StoreUnavailable("the coordinator's database is unavailable; try again later")


@attrs.define
class RoundsThatFail:
    """The store's commitments, except that a round in ``broken`` cannot be locked: every
    transaction that closes or ends it fails with ``error``."""

    inner: CommitmentRepository
    broken: set[str] = attrs.Factory(set)
    error: Callable[[str], Exception] = refused

    def lock_round(self, round_id: str) -> None:
        if round_id in self.broken:
            raise self.error(round_id)
        self.inner.lock_round(round_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def market_with(rounds: list[RoundsThatFail]) -> MarketWorld:
    """A market on one node (one replica a task, no spot checks) over a store whose rounds
    fail as the ``RoundsThatFail`` appended to ``rounds`` says."""
    repositories = memory_repositories()
    failing = RoundsThatFail(repositories.commitments)
    repositories.commitments = failing  # type: ignore[assignment]
    rounds.append(failing)
    return build_market(repositories, queue_timeout_s=QUEUE_S, spot_check_rate_ppm=0)


def status(world: MarketWorld, ids: Iterable[str] = TASKS) -> dict[str, str]:
    return {task_id: world.market.task(task_id)[1] for task_id in ids}


def alive(world: MarketWorld, who: Identity) -> None:
    node = world.repositories.nodes.get(who.node_id)
    assert node is not None
    world.repositories.nodes.save(attrs.evolve(node, last_heartbeat=world.clock.now()))


def stalled(
    error: Callable[[str], Exception] = refused, ids: Iterable[str] = TASKS,
    broken: Iterable[str] = ("b",),
) -> tuple[MarketWorld, RoundsThatFail]:
    """Tasks no node took, past their queue time (by default three, a to c); the ``broken``
    tasks' rounds cannot be written."""
    rounds: list[RoundsThatFail] = []
    world = market_with(rounds)
    idle = world.add_node(0x21)  # registered and online, never streams
    for task_id in ids:
        world.market.submit_task(a_request(task_id), b"{}")
    world.clock.advance(QUEUE_S + 1)
    alive(world, idle)
    rounds[0].broken, rounds[0].error = set(broken), error
    return world, rounds[0]


def silent(
    ids: Iterable[str] = TASKS, broken: Iterable[str] = ("b",)
) -> tuple[MarketWorld, RoundsThatFail]:
    """Tasks whose node committed and never revealed, past the reveal window (by default
    three, a to c); the ``broken`` tasks' rounds cannot be written."""
    rounds: list[RoundsThatFail] = []
    world = market_with(rounds)
    node = world.add_node(0x21)
    handle = world.stream(node)
    for task_id in ids:
        world.market.submit_task(a_request(task_id), b"{}")
    for pushed in drain(handle):
        world.market.commit_result(
            commitment_envelope(node, pushed.task.task_id, OUTPUT, world.clock.now()))
    world.clock.advance(world.market.config.reveal_windows.reveal_window_s + 1)
    alive(world, node)
    rounds[0].broken = set(broken)
    return world, rounds[0]


def tick_warning(world: MarketWorld, caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """Tick once; the one warning the market's rounds logged meanwhile."""
    with caplog.at_level(logging.WARNING, reveals_module.log.name):
        world.market.tick()
    (record,) = [r for r in caplog.records if r.name == reveals_module.log.name]
    return record


def test_a_task_that_cannot_be_ended_is_logged_and_the_other_stalled_tasks_end_in_the_same_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, rounds = stalled()
    record = tick_warning(world, caplog)

    assert status(world) == {"a": "expired", "b": "pending", "c": "expired"}
    assert "task b not ended" in record.getMessage() and "invalid-value" in record.getMessage()
    assert record.__dict__["task_id"] == "b"

    rounds.broken.clear()  # left for the next tick, which ends it
    world.market.tick()
    assert status(world) == {"a": "expired", "b": "expired", "c": "expired"}


def test_a_round_that_cannot_be_closed_is_logged_and_the_other_due_rounds_are_judged_in_the_same_tick(  # noqa: E501
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, rounds = silent()
    record = tick_warning(world, caplog)

    assert status(world) == {"a": "failed", "b": "pending", "c": "failed"}
    assert "round b not closed" in record.getMessage()
    assert record.__dict__["round_id"] == "b"

    rounds.broken.clear()
    world.market.tick()
    assert status(world) == {"a": "failed", "b": "failed", "c": "failed"}


def test_a_store_outage_while_ending_tasks_ends_the_tick_instead_of_being_tried_on_every_task(
) -> None:
    world, rounds = stalled(outage)
    with pytest.raises(StoreUnavailable):
        world.market.tick()
    assert status(world)["c"] == "pending"  # not tried: the store is gone for every task

    rounds.broken.clear()  # the store is back: the next tick ends them all
    world.market.tick()
    assert status(world) == {"a": "expired", "b": "expired", "c": "expired"}


def ids_of(count: int) -> list[str]:
    return [f"t{n:02}" for n in range(count)]


SWEEPS: dict[str, tuple[Callable[[list[str], set[str]], tuple[MarketWorld, Any]], str, str]] = {
    "due rounds": (silent, "ROUND_BATCH", "failed"),
    "stalled tasks": (lambda ids, broken: stalled(ids=ids, broken=broken), "ENDING_BATCH",
                      "expired"),
}


@pytest.mark.parametrize("sweep", list(SWEEPS))
@given(count=st.integers(0, 12), limit=st.integers(1, 4), stuck=st.sets(st.integers(0, 11)))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_row_the_tick_can_close_is_closed_within_ceil_n_over_limit_plus_one_ticks(
    sweep: str, count: int, limit: int, stuck: set[int]
) -> None:
    build, batch, closed = SWEEPS[sweep]
    ids = ids_of(count)
    broken = {ids[n] for n in stuck if n < count}
    world, _ = build(ids, broken)
    with patch.object(reveals_module, batch, limit):
        for _ in range(math.ceil(count / limit) + 1):
            world.market.tick()
    assert status(world, ids) == {i: "pending" if i in broken else closed for i in ids}


def test_rounds_after_a_full_tick_of_rounds_that_cannot_be_closed_are_judged_on_the_next(
) -> None:
    ids = [f"t{n:03}" for n in range(reveals_module.ROUND_BATCH + 2)]
    world, _ = silent(ids, ids[:reveals_module.ROUND_BATCH])  # the first page: the old window
    world.market.tick()
    world.market.tick()
    assert status(world, ids[-2:]) == {ids[-2]: "failed", ids[-1]: "failed"}
