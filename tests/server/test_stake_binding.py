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
