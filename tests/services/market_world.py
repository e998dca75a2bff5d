"""A task market over a real store with registered nodes and open streams, for market tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from owm_adapters.services.coordinator.funding import TaskFunding
from owm_adapters.services.coordinator.market import Market, PushedTask, TaskStreamHandle
from owm_adapters.services.coordinator.sealing import TaskSealing
from owm_adapters.services.coordinator.shared import (
    ClientGuards,
    LockedGuard,
    Observed,
    ServiceConfig,
)
from owm_core.identity.envelopes import CapabilityManifest
from owm_core.identity.keys import Identity
from owm_core.identity.sealing import input_context, open_sealed
from owm_core.market.tasks import TaskRequest, VerificationPolicy
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import Tier
from owm_core.ports.repositories import Repositories
from tests.server.harness import StepClock

T0 = 1_800_000_000
COORDINATOR = Identity.from_seed(b"\x0c" * 32)
LN_URI = LnNodeUri.parse("02" + "11" * 32 + "@127.0.0.1:9735")


def node_record(who: Identity, now: int, tier: Tier = Tier.T1, vram_mb: int = 0,
                ram_mb: int = 16_000) -> Node:
    """A registered node heard from at ``now``."""
    return Node(node_id=who.node_id, public_key=who.public_key_hex, ln_node_uri=LN_URI,
                tier=tier, vram_mb=vram_mb, ram_mb=ram_mb, bandwidth_mbps=100,
                registered_at=now, last_heartbeat=now)


def register(repositories: Repositories, identities: Iterable[Identity], now: int) -> None:
    """Add each identity to the registry as an online T1 CPU node."""
    for who in identities:
        repositories.nodes.add(node_record(who, now))


def register_idle(repositories: Repositories, count: int, now: int, seed: int = 0x40) -> None:
    """Register ``count`` online nodes that never stream, so that a task for several replicas
    passes admission (it needs as many registered nodes as replicas) while one node serves."""
    register(repositories, [Identity.from_seed(bytes([seed + i]) * 32) for i in range(count)], now)


def a_request(task_id: str, **changes: Any) -> TaskRequest:
    """An inference task any T1 CPU node asking ≤ 10,000 msat can run."""
    values: dict[str, Any] = {
        "task_id": task_id, "task_type": "inference", "input_schema_id": "owm.inference.text",
        "input_schema_version": 1, "min_tier": Tier.T1, "min_vram_mb": 0, "min_ram_mb": 0,
        "gpu_required": False, "max_price_msat": 10_000,
    }
    values.update(changes)
    return TaskRequest(**values)


@attrs.define
class MarketWorld:
    """A market, its store and clock, and the nodes it knows."""

    repositories: Repositories
    clock: StepClock
    market: Market
    nodes: list[Identity] = attrs.Factory(list)

    def add_node(self, seed: int, **hardware: Any) -> Identity:
        """Register an online node (not streaming yet)."""
        who = Identity.from_seed(bytes([seed]) * 32)
        self.repositories.nodes.add(node_record(who, self.clock.now(), **hardware))
        self.market.admission.forget()
        self.nodes.append(who)
        return who

    def stream(self, who: Identity, capabilities: Iterable[str] = ("inference",),
               ask_msat: int = 1_000) -> TaskStreamHandle:
        """Open ``who``'s task stream with its registered hardware."""
        node = self.repositories.nodes.get(who.node_id)
        assert node is not None
        manifest = CapabilityManifest(
            tier=node.tier, vram_mb=node.vram_mb, ram_mb=node.ram_mb, bandwidth_mbps=100,
            gpu_vendor="nvidia" if node.vram_mb else "none", gpu_count=1 if node.vram_mb else 0,
        )
        return self.market.open_stream(node, manifest, list(capabilities), ask_msat)


def build_market(repositories: Repositories, *, redundancy: int = 1,
                 queue_timeout_s: int = 3_600, clock: StepClock | None = None,
                 spot_check_rate_ppm: int = 100_000, **config_changes: Any) -> MarketWorld:
    """A market with redundant verification on ``redundancy`` nodes over ``repositories``
    (``config_changes``: other :class:`ServiceConfig` fields, e.g. ``shared_state``)."""
    clock = clock or StepClock(T0)
    policy = VerificationPolicy(redundancy=redundancy, spot_check_rate_ppm=spot_check_rate_ppm)
    config = ServiceConfig(verification=policy, queue_timeout_s=queue_timeout_s,
                           **config_changes)
    guard = LockedGuard()
    # Tasks are funded from the network budget (no top-ups, so no Lightning node is needed).
    funding = TaskFunding(repositories, None, clock, config.funding,  # type: ignore[arg-type]
                          config.verification, ClientGuards.sized_by(config),
                          coordinator_key=COORDINATOR.public_key_hex)
    market = Market(repositories, clock, config, guard, Observed(),
                    sealing=TaskSealing(COORDINATOR), funding=funding)
    return MarketWorld(repositories, clock, market)


def drain(handle: TaskStreamHandle) -> list[PushedTask]:
    """Every assignment queued on ``handle`` so far."""
    pushed = []
    while (item := handle.next(0.0)) is not None:
        pushed.append(item)
    return pushed


def opened(who: Identity, pushed: PushedTask) -> bytes:
    """The plaintext of an input the market sealed to ``who`` (SRS-SEC-02)."""
    return open_sealed(pushed.input, recipient=who, sender_public_key=COORDINATOR.public_key_hex,
                       context=input_context(pushed.task.task_id), field="input")
