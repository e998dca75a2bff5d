"""Every funded task ends, so no client's escrow is held forever (owm_core.market.endings).

Before, a task expired only while none of its replicas was assigned or awaiting a verdict: a
spot-checked result whose re-execution no node could take stayed ``pending`` for good, its
escrow open past ``queue_timeout_s`` and ``[funding] task_ttl_s`` alike, and a task whose node
went silent while its sibling never found a node held its escrow for a day. Now a waiting
replica no node takes within ``queue_timeout_s`` expires with its task (nothing live: nobody
paid, all refunded) or is dropped while a sibling runs (the rest judged as planned; a lone
spot-checked result judged on its own and paid) — over the market service as a client sees
it, on the memory, SQLite and PostgreSQL stores, across a restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owm_adapters.services.coordinator.funding import Funder
from owm_adapters.services.coordinator.market import TaskStreamHandle
from owm_adapters.storage.memory import memory_repositories
from owm_adapters.storage.sql import open_repositories, sqlite_url
from owm_core.coordination.endings import end_stalled
from owm_core.errors import InvalidTransition, RevealsNotOpen
from owm_core.identity.keys import Identity
from owm_core.identity.sealing import NONCE_BYTES, output_context, seal
from owm_core.market.endings import end_bound_s
from owm_core.market.funding import Balance, Escrow, credit_balance
from owm_core.market.tasks import TaskState
from owm_core.ports.repositories import Repositories
from tests.core.coordination.test_coordination import stalled
from tests.reveals import commitment_envelope, proof_envelope, salt_of
from tests.services.market_world import (
    COORDINATOR,
    T0,
    MarketWorld,
    a_request,
    build_market,
    drain,
)

CLIENT = Identity.from_seed(b"\x61" * 32)
FUNDED = 1_000_000
PRICE = 10_000  # a_request's maximum; every node asks 1 000
PAID = 1_000 + (PRICE - 1_000) // 2  # the negotiated midpoint
SHARE = PRICE * 50_000 // 1_000_000  # the treasury's 5 %
ESCROW = 3 * (PRICE + SHARE)  # [tasks] redundancy 3 funds three replicas
QUEUE_S = 3_600
TRUTH = b'{"answer":42}'
INPUT = b'{"prompt":"hello"}'

Reopen = Callable[[], Repositories]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Reopen]:
    """How to open the store again, as a restarted coordinator does: the store is the truth."""
    if request.param == "memory":
        memory = memory_repositories()
        yield lambda: memory
        return
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        open_repositories(url).close()
    else:
        url = request.getfixturevalue("migrated_postgresql_url")
    opened: list[Repositories] = []

    def reopen() -> Repositories:
        opened.append(open_repositories(url, migrate=False))
        return opened[-1]

    yield reopen
    for repositories in opened:
        repositories.close()


def funded_market(repositories: Repositories, redundancy: int = 3, **changes: Any) -> MarketWorld:
    """A market verifying on ``redundancy`` nodes, with CLIENT's prepaid balance of
    :data:`FUNDED`."""
    world = build_market(repositories, redundancy=redundancy, queue_timeout_s=QUEUE_S, **changes)
    if repositories.funding.balance(CLIENT.public_key_hex) is None:
        repositories.funding.save_balance(credit_balance(Balance(CLIENT.public_key_hex), FUNDED))
    return world


def submit(world: MarketWorld, task_id: str = "job") -> None:
    world.market.submit_task(a_request(task_id), INPUT, Funder.client(CLIENT.public_key_hex))


def alive(world: MarketWorld, *nodes: Identity) -> None:
    """The nodes' heartbeats arrive: they stay online."""
    for who in nodes:
        node = world.repositories.nodes.get(who.node_id)
        assert node is not None
        world.repositories.nodes.save(attrs.evolve(node, last_heartbeat=world.clock.now()))


def commit(world: MarketWorld, who: Identity, rid: str, output: bytes = TRUTH) -> None:
    world.market.commit_result(commitment_envelope(who, rid, output, world.clock.now()))


def reveal(world: MarketWorld, who: Identity, rid: str, output: bytes = TRUTH) -> bool:
    """Reveal ``output`` for ``rid``; False while the round's reveals are not open yet."""
    sealed = seal(output, sender=who, recipient_public_key=COORDINATOR.public_key_hex,
                  context=output_context(rid), nonce=os.urandom(NONCE_BYTES))
    proof = proof_envelope(who, rid, output, world.clock.now())
    try:
        world.market.submit_proof(proof, sealed, salt_of(who.node_id, rid))
    except RevealsNotOpen:
        return False
    return True


def escrow_of(world: MarketWorld, task_id: str = "job") -> Escrow:
    escrow = world.repositories.funding.escrow(task_id)
    assert escrow is not None
    return escrow


def available(world: MarketWorld) -> int:
    balance = world.repositories.funding.balance(CLIENT.public_key_hex)
    assert balance is not None
    return balance.available_msat


def states(world: MarketWorld, task_id: str = "job") -> dict[str, TaskState]:
    replicas, _ = world.market.task(task_id)
    return {r.task_id: r.state for r in replicas}


def spot_checked_result(world: MarketWorld) -> Identity:
    """One node online, so the task runs on one spot-checked replica; it is drawn (rate
    100 %) and its result is in, but no other node exists to re-execute it."""
    lone = world.add_node(0x21)
    handle = world.stream(lone)
    submit(world)
    (pushed,) = drain(handle)
    commit(world, lone, pushed.task.task_id)
    assert reveal(world, lone, pushed.task.task_id)
    assert states(world) == {"job:0": TaskState.COMPLETED, "job:check": TaskState.SUBMITTED}
    return lone


def test_a_spot_checked_result_no_node_can_recheck_is_paid_and_the_rest_refunded_after_the_queue_time(  # noqa: E501
    store: Reopen,
) -> None:
    world = funded_market(store(), spot_check_rate_ppm=1_000_000)
    lone = spot_checked_result(world)

    world.clock.advance(QUEUE_S)  # the re-execution has waited its whole queue time
    alive(world, lone)
    world.market.tick()
    assert world.market.task("job")[1] == "pending"  # expiry is strictly after
    assert not escrow_of(world).closed
    world.clock.advance(1)
    world.market.tick()

    assert world.market.task("job")[1] == "verified"
    assert states(world) == {"job:0": TaskState.SETTLED, "job:check": TaskState.FORFEITED}
    assert world.market.task_output("job") == TRUTH  # the client gets the result it paid for
    escrow = escrow_of(world)
    assert escrow.closed and escrow.settled_replica_ids == frozenset({"job:0"})
    assert (escrow.paid_to_nodes_msat, escrow.treasury_share_msat) == (PAID, SHARE)
    assert escrow.refunded_msat == ESCROW - PAID - SHARE
    assert escrow.paid_to_nodes_msat + escrow.treasury_share_msat + escrow.refunded_msat == (
        escrow.funded_msat
    )
    assert available(world) == FUNDED - PAID - SHARE
    node = world.repositories.nodes.get(lone.node_id)
    assert node is not None and node.total_tasks_completed == 1


def test_a_task_whose_node_went_silent_while_its_sibling_never_found_a_node_expires_and_is_refunded_in_full(  # noqa: E501
    store: Reopen,
) -> None:
    world = funded_market(store(), redundancy=2)
    silent, idle = world.add_node(0x21), world.add_node(0x22)  # both registered and online
    submit(world)  # planned on two replicas; no node streams yet
    world.clock.advance(QUEUE_S - 100)
    alive(world, silent, idle)
    handle = world.stream(silent)  # takes one replica just before the queue time, then
    # never delivers; the other replica never finds a node
    (pushed,) = drain(handle)
    assigned_at = world.clock.now()
    bound = end_bound_s(QUEUE_S, 600, 600, 120)

    ended_at = None
    while world.clock.now() <= assigned_at + bound + 60:
        world.clock.advance(60)
        alive(world, silent, idle)
        world.market.tick()
        if world.market.task("job")[1] != "pending":
            ended_at = world.clock.now()
            break

    assert ended_at is not None, f"still {states(world)} {bound + 60} s after the assignment"
    assert world.market.task("job")[1] == "expired"
    assert states(world)[pushed.task.task_id] is TaskState.EXPIRED  # timed out, then expired
    escrow = escrow_of(world)
    assert escrow.closed and escrow.paid_to_nodes_msat == escrow.treasury_share_msat == 0
    assert escrow.refunded_msat == escrow.funded_msat == 2 * (PRICE + SHARE)
    assert available(world) == FUNDED
    assert world.market.task_output("job") is None


def test_a_lone_result_of_a_task_planned_for_three_whose_other_nodes_went_offline_fails_and_is_refunded_in_full(  # noqa: E501
) -> None:
    world = funded_market(memory_repositories())
    lone = world.add_node(0x21)
    gone = [world.add_node(0x22), world.add_node(0x23)]  # online at submission, never again
    handle = world.stream(lone)
    submit(world)
    (pushed,) = drain(handle)
    rid = pushed.task.task_id
    commit(world, lone, rid)
    for _ in range(30):  # the node retries its reveal until the round lets it in
        world.clock.advance(60)
        alive(world, lone)
        world.market.tick()
        if reveal(world, lone, rid):
            break

    # Judged as planned: a majority is never taken over fewer replicas than the floor (2), so
    # one result cannot win; nobody is paid and the whole escrow goes back to the client.
    assert world.market.task("job")[1] == "failed"
    escrow = escrow_of(world)
    assert escrow.closed and escrow.paid_to_nodes_msat == 0
    assert escrow.refunded_msat == ESCROW
    assert available(world) == FUNDED
    assert gone and world.market.task_output("job") is None


def test_a_restart_between_ending_a_task_and_closing_its_escrow_pays_once_and_refunds_once(
    store: Reopen,
) -> None:
    first = funded_market(store(), spot_check_rate_ppm=1_000_000)
    spot_checked_result(first)
    first.clock.advance(QUEUE_S + 1)
    # The coordinator ends the task (one transaction) and dies before it reconciles the escrow.
    now = first.clock.now()
    (ended,) = end_stalled(first.repositories, stalled(first.repositories, now), now,
                           first.market.config.verification, b"seed")
    assert ended.outcome is not None and [t.task_id for t in ended.dropped] == ["job:check"]
    assert not escrow_of(first).closed

    for _ in range(2):  # restarted twice: the store says what is done
        again = funded_market(store(), spot_check_rate_ppm=1_000_000, clock=first.clock)
        again.market.tick()
        escrow = escrow_of(again)
        assert escrow.closed and escrow.settled_replica_ids == frozenset({"job:0"})
        assert (escrow.paid_to_nodes_msat, escrow.refunded_msat) == (PAID, ESCROW - PAID - SHARE)
        assert available(again) == FUNDED - PAID - SHARE
        assert again.market.task("job")[1] == "verified"


# -- the property: every task ends in bounded time, and the books balance ----------------------

behaviours = st.sampled_from(["honest", "silent", "absent"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    redundancy=st.integers(1, 3),
    rate=st.sampled_from([0, 1_000_000]),
    nodes=st.lists(behaviours, min_size=1, max_size=3),
    joins=st.lists(st.integers(0, 5_000), min_size=3, max_size=3),
)
def test_every_task_ends_within_the_bound_after_its_last_assignment_and_never_pays_more_than_funded(
    redundancy: int, rate: int, nodes: list[str], joins: list[int]
) -> None:
    world = funded_market(memory_repositories(), redundancy, spot_check_rate_ppm=rate)
    who = [world.add_node(0x21 + i) for i in range(len(nodes))]
    submit(world)
    handles: dict[int, TaskStreamHandle] = {}
    progress = world.clock.now()
    bound = end_bound_s(QUEUE_S, 600, 600, 120)
    held: dict[str, int] = {}  # replica → index of the node holding it
    while world.market.task("job")[1] == "pending":
        assert world.clock.now() <= progress + bound + 120, states(world)
        world.clock.advance(60)
        alive(world, *(w for w, b in zip(who, nodes, strict=True) if b != "absent"))
        for i, (node, behaviour) in enumerate(zip(who, nodes, strict=True)):
            if behaviour != "absent" and i not in handles and world.clock.now() >= T0 + joins[i]:
                handles[i] = world.stream(node)
        world.market.tick()
        for i, handle in handles.items():
            for pushed in drain(handle):
                progress = world.clock.now()
                if nodes[i] == "honest":
                    held[pushed.task.task_id] = i
                    try:
                        commit(world, who[i], pushed.task.task_id)
                    except InvalidTransition:
                        held.pop(pushed.task.task_id)
        for rid, i in list(held.items()):
            try:
                if reveal(world, who[i], rid):
                    held.pop(rid)
            except InvalidTransition:
                held.pop(rid)  # dropped or closed meanwhile

    escrow = escrow_of(world)
    assert escrow.closed and escrow.held_msat == 0
    spent = escrow.paid_to_nodes_msat + escrow.treasury_share_msat
    assert spent + escrow.refunded_msat == escrow.funded_msat
    assert escrow.paid_to_nodes_msat <= len(escrow.settled_replica_ids) * PRICE
    assert available(world) == FUNDED - spent



def test_a_check_stored_without_an_expiry_by_the_old_code_still_ends_at_the_task_ttl(
    store: Reopen,
) -> None:
    world = funded_market(store(), spot_check_rate_ppm=1_000_000)
    spot_checked_result(world)
    check = world.repositories.tasks.get("job:check")
    assert check is not None
    world.repositories.tasks.save(attrs.evolve(check, expires_at=None))  # as the old code did
    world.clock.advance(QUEUE_S + 1)
    world.market.tick()
    assert world.market.task("job")[1] == "pending"  # no expiry: not stalled by time

    world.clock.advance(world.market.config.funding.task_ttl_s)
    restarted = funded_market(store(), spot_check_rate_ppm=1_000_000, clock=world.clock)
    restarted.market.tick()  # its first funding sweep: the task is past [funding] task_ttl_s

    assert restarted.market.task("job")[1] == "verified"
    escrow = escrow_of(restarted)
    assert escrow.closed and (escrow.paid_to_nodes_msat, escrow.treasury_share_msat) == (
        PAID, SHARE,
    )
    assert available(restarted) == FUNDED - PAID - SHARE
