"""A coordinator (application service + gRPC server) for node-side tests, and node fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.settings import CoordinatorSettings
from owm_adapters.clock import SystemClock
from owm_adapters.control_plane.grpc_client import GrpcControlPlane
from owm_adapters.control_plane.in_process import InProcessControlPlane
from owm_adapters.lightning.embedded import SimLedger, SimLightning
from owm_adapters.services.coordinator.service import CoordinatorService, ServiceConfig
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import DomainError
from owm_core.identity import envelopes
from owm_core.identity.envelopes import CapabilityManifest
from owm_core.identity.keys import Identity
from owm_core.identity.sealing import (
    NONCE_BYTES,
    input_context,
    open_sealed,
    output_context,
    seal,
)
from owm_core.market.tasks import TaskRequest, VerificationMode, VerificationPolicy
from owm_core.nodes.control_plane import AssignedTask
from owm_core.nodes.tiers import Tier
from owm_core.ports.control_plane import ControlPlane
from owm_server.grpc.server import CoordinatorServer
from tests.tls_support import COORDINATOR_TLS, client_tls, identity_for, known

T1_STAKE_SAT = 100_000
COORDINATOR = Identity.from_seed(b"\x0c" * 32)
"""The network's coordinator key (tests/reveals.py signs for it by default, SRS-SEC-03)."""
MANIFEST = CapabilityManifest(tier=Tier.T1, vram_mb=0, ram_mb=16_000, bandwidth_mbps=100,
                              gpu_vendor="none", gpu_count=0)


@attrs.define
class Network:
    service: CoordinatorService
    server: CoordinatorServer
    ledger: SimLedger
    treasury: str

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def coordinator_key(self) -> str:
        """What nodes set as ``[coordinator] public_key`` (SRS-SEC-02)."""
        return self.service.sealing.public_key_hex

    def opened(self, node: Node, task: AssignedTask) -> bytes:
        """The input of ``task`` as ``node`` opens it (sealed to it by the coordinator)."""
        return open_sealed(task.input, recipient=node.identity,
                           sender_public_key=self.coordinator_key,
                           context=input_context(task.task_id))

    def sealed_output(self, node: Node, replica_id: str, output: bytes) -> bytes:
        """``output`` as ``node`` delivers it: sealed to the coordinator (SRS-SEC-02)."""
        return seal(output, sender=node.identity, recipient_public_key=self.coordinator_key,
                    context=output_context(replica_id), nonce=os.urandom(NONCE_BYTES))

    def node(self, alias: str, stake_sat: int = T1_STAKE_SAT) -> Node:
        pubkey = self.ledger.add_node(alias)
        if stake_sat:
            self.ledger.open_channel(self.treasury, pubkey, 2 * stake_sat, push_sat=stake_sat)
        return Node(known(Identity.from_seed(os.urandom(32))), f"{pubkey}@127.0.0.1:9735", pubkey,
                    self.ledger.lightning(alias))

    def submit(self, task_id: str, payload: bytes, task_type: str = "inference",
               schema: str = "owm.inference.text") -> None:
        request = TaskRequest(
            task_id=task_id, task_type=task_type, input_schema_id=schema,
            input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0,
            gpu_required=False, max_price_msat=10_000,
        )
        self.service.submit_task(request, payload)


class PlanePerNode:
    """The gRPC client as node daemons hold it — one :class:`GrpcControlPlane`, with one
    certificate bound to one identity, per node — behind one object, so that the contract
    tests can drive several nodes: each call goes to the plane of the identity it speaks for
    (the signer passed in, or the signer of the envelope), an operator's when none is known."""

    def __init__(self, url: str, coordinator_public_key: str) -> None:
        self.url = url
        self.coordinator_public_key = coordinator_public_key
        self._planes: dict[str, GrpcControlPlane] = {}

    def plane(self, identity: Identity | None) -> GrpcControlPlane:
        slot = identity.public_key_hex if identity is not None else ""
        if slot not in self._planes:
            self._planes[slot] = GrpcControlPlane(
                self.url, tls=client_tls(identity),
                coordinator_public_key=self.coordinator_public_key,
            )
        return self._planes[slot]

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(self.plane(_speaker(args)), method)(*args, **kwargs)

        return call

    def close(self) -> None:
        for plane in self._planes.values():
            plane.close()


def _speaker(args: tuple[Any, ...]) -> Identity | None:
    for arg in args:
        if isinstance(arg, Identity):
            return arg
        if isinstance(arg, bytes) and arg:
            try:
                return identity_for(envelopes.from_bytes(arg).signer)
            except DomainError:
                return None
        if isinstance(arg, str) and len(arg) == 64:
            return identity_for(arg)
    return None


@attrs.define
class Node:
    identity: Identity
    ln_node_uri: str
    ln_pubkey: str
    #: The node's own Lightning node: it signs the registration challenge (SRS-STAKE-01).
    ln_signer: SimLightning


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    treasury = ledger.add_node("treasury")
    coordinator = build_coordinator(
        CoordinatorSettings(),
        store=memory_repositories(),
        treasury=ledger.lightning("treasury"),
        slashing=False,
        coordinator_key=COORDINATOR,
        clock=SystemClock(),
        config=ServiceConfig(
            tick_s=0.05,
            assignment_timeout_s=30,
            verification=VerificationPolicy(mode=VerificationMode.SPOT_CHECK,
                                            spot_check_rate_ppm=0),
        ),
    )
    server = CoordinatorServer(
        coordinator.service, "127.0.0.1:0", tls=COORDINATOR_TLS, max_workers=16
    )
    with coordinator.running(1):
        server.start()
        yield Network(coordinator.service, server, ledger, treasury)
        server.stop(1)


@pytest.fixture(params=["in-process", "grpc"])
def control(request: pytest.FixtureRequest, network: Network) -> Iterator[ControlPlane]:
    plane: ControlPlane
    if request.param == "grpc":
        plane = PlanePerNode(network.url, network.coordinator_key)
    else:
        plane = InProcessControlPlane(network.service)
    yield plane
    plane.close()
