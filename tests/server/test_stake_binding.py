"""Stake bound to its owner, attacked over the real gRPC control plane (SRS-STAKE-01, SRS-LN-11).

A node proves at registration that it controls the Lightning node in its ``ln_node_uri``: that
node signs the registration challenge and the coordinator checks the signature with its own
Lightning node. Without it, anyone could name a victim's Lightning node and borrow the victim's
stake channel.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import grpc
import pytest

from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.storage.memory import memory_repositories
from owm_core.stake.channel import StakeStatus
from tests.fakes.ln_key import LnKey
from tests.server.harness import Coordinator, SimNode, StepClock, start_coordinator


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def coordinator(tmp_path: Path, clock: StepClock) -> Iterator[Coordinator]:
    running = start_coordinator(memory_repositories(), SimLedger(tmp_path / "ln.sqlite3"), clock)
    yield running
    running.stop()


def refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def nothing_registered(coordinator: Coordinator, node: SimNode) -> bool:
    repositories = coordinator.service.repositories
    return (
        repositories.nodes.get(node.node_id) is None
        and repositories.stakes.get(node.public_key) is None
    )


def test_a_registration_without_the_lightning_nodes_signature_is_refused_naming_the_field(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node = SimNode.create()
    node.stake(coordinator)
    request = node.register_request(coordinator.stub, clock.now())
    request.ln_signature = ""

    error = refusal(lambda: coordinator.stub.Register(request))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "ln_signature" in (error.details() or "")
    assert nothing_registered(coordinator, node)


def test_naming_a_victims_lightning_node_without_its_key_is_refused_and_nothing_is_stored(
    coordinator: Coordinator, clock: StepClock
) -> None:
    """The probe's first step: a fake node claims the victim's Lightning node (and channel)."""
    victim = SimNode.create()
    victim.stake(coordinator)
    attacker = attrs.evolve(SimNode.create(), ln_key=LnKey.fresh())
    forged = attrs.evolve(attacker, ln_key=victim.ln_key)  # names the victim's node ...
    request = forged.register_request(coordinator.stub, clock.now())
    request.ln_signature = attacker.ln_key.sign_registration(  # ... signs with its own key
        attacker.public_key, request.challenge_nonce
    )

    error = refusal(lambda: coordinator.stub.Register(request))

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert f"Lightning node {victim.ln_pubkey}" in (error.details() or "")
    assert nothing_registered(coordinator, attacker)


def test_a_lightning_signature_cannot_be_replayed_for_another_challenge(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node = SimNode.create()
    node.stake(coordinator)
    first = node.register_request(coordinator.stub, clock.now())
    second = node.register_request(coordinator.stub, clock.now())
    second.ln_signature = first.ln_signature

    error = refusal(lambda: coordinator.stub.Register(second))

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert nothing_registered(coordinator, node)


def test_a_lightning_signature_for_another_identity_key_does_not_register_this_one(
    coordinator: Coordinator, clock: StepClock
) -> None:
    """Someone who once saw a victim's signed registration cannot reuse it for its own key."""
    victim = SimNode.create()
    victim.stake(coordinator)
    thief = attrs.evolve(SimNode.create(), ln_key=victim.ln_key)
    request = thief.register_request(coordinator.stub, clock.now())
    request.ln_signature = victim.ln_key.sign_registration(
        victim.public_key, request.challenge_nonce
    )

    error = refusal(lambda: coordinator.stub.Register(request))

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert nothing_registered(coordinator, thief)


def test_a_second_node_id_claiming_a_bound_stake_channel_is_refused_naming_the_channel(
    coordinator: Coordinator, clock: StepClock
) -> None:
    """One operator, one Lightning node, one channel: a Sybil identity gets no stake of its own."""
    honest = SimNode.create()
    honest.stake(coordinator)
    assert honest.register(coordinator.stub, clock.now()).stake_status == "active"
    (channel,) = coordinator.ledger.channels_of(coordinator.treasury, honest.ln_pubkey)
    sybil = attrs.evolve(SimNode.create(), ln_key=honest.ln_key)  # same LN node, signs for real

    error = refusal(lambda: sybil.register(coordinator.stub, clock.now()))

    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert f"channel {channel.channel_point} already backs another node" in (error.details() or "")
    assert nothing_registered(coordinator, sybil)
    bindings = coordinator.service.repositories.channel_bindings
    assert bindings.node_of(channel.channel_point) == honest.node_id


def test_a_second_node_with_its_own_channel_registers_and_a_left_channel_is_free_again(
    coordinator: Coordinator, clock: StepClock
) -> None:
    first = SimNode.create()
    first.stake(coordinator)
    first.register(coordinator.stub, clock.now())
    second = attrs.evolve(SimNode.create(), ln_key=first.ln_key)
    second.stake(coordinator)  # a second channel from the same Lightning node

    assert second.register(coordinator.stub, clock.now()).stake_status == "active"

    bindings = coordinator.service.repositories.channel_bindings
    stakes = coordinator.service.repositories.stakes
    channel_1 = stakes.get(first.public_key).channel  # type: ignore[union-attr]
    channel_2 = stakes.get(second.public_key).channel  # type: ignore[union-attr]
    assert channel_1 is not None and channel_2 is not None
    assert channel_1.channel_point != channel_2.channel_point
    assert bindings.node_of(channel_1.channel_point) == first.node_id
    assert bindings.node_of(channel_2.channel_point) == second.node_id


def test_a_channel_the_treasury_funded_is_no_stake_of_the_node(
    coordinator: Coordinator, clock: StepClock
) -> None:
    """Capacity is not stake: only the node's own balance in the channel counts."""
    node = SimNode.create()
    coordinator.ledger.open_channel(coordinator.treasury, node.ln_pubkey, 1_000_000)

    error = refusal(lambda: node.register(coordinator.stub, clock.now()))

    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "own balance" in (error.details() or "")
    assert nothing_registered(coordinator, node)


def test_a_node_that_moves_its_balance_out_is_degraded_then_suspended_by_reverification(
    coordinator: Coordinator, clock: StepClock
) -> None:
    """Stake as capacity: paying the stake away through the treasury leaves nothing locked."""
    node = SimNode.create()
    ledger = coordinator.ledger
    ledger.add_node("operator", secret_key=node.ln_key.secret)  # the node's own LN node
    node.stake(coordinator)
    assert node.register(coordinator.stub, clock.now()).stake_status == "active"
    invoice = ledger.lightning("treasury").create_invoice(95_000_000, "moving out", 3600)
    assert ledger.lightning("operator").pay(invoice.bolt11, 0, 5).status.value == "succeeded"
    service = coordinator.service
    stake_of = lambda: service.repositories.stakes.get(node.public_key)  # noqa: E731

    clock.advance(6 * 3600)
    service.reverify_stakes()
    degraded = stake_of()
    assert degraded is not None and degraded.status is StakeStatus.DEGRADED
    assert degraded.capacity_sat < degraded.required_sats
    feed = node.open_stream(coordinator.stub)
    assert feed.wait_for(1, timeout_s=2.0) == [] and feed.error is not None
    assert feed.error.code() is grpc.StatusCode.FAILED_PRECONDITION

    clock.advance(24 * 3600)
    service.reverify_stakes()
    suspended = stake_of()
    assert suspended is not None and suspended.status is StakeStatus.SUSPENDED
