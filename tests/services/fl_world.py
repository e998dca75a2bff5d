"""An in-process coordinator with an FL round service, and nodes that train like node daemons.

The coordinator is the real :class:`CoordinatorService` over in-memory repositories; replicas
of a round's task are assigned to the test's nodes directly in the store (the market's
dispatch is exercised by the integration test), and each node trains with the node's own
``task_exec.run_training`` on the task's real input, then signs its update.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch

from owm_adapters.bootstrap.coordinator import replicas_per_task
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.node.task_exec import run_training
from owm_adapters.provenance.embedded import EmbeddedProvenance
from owm_adapters.services import fl_rounds as fl_rounds_service
from owm_adapters.services.coordinator.sealing import SealedBlobs
from owm_adapters.services.coordinator.service import CoordinatorService, ServiceConfig
from owm_adapters.services.fl_rounds import FlConfig, FlRoundService
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.fl.attacks import Attack, poison
from owm_core.fl.rounds import FlRound
from owm_core.fl.updates import parse_update, sign_update
from owm_core.identity.keys import Identity
from owm_core.market import tasks as market
from owm_core.market.tasks import Match, NodeOffer, VerificationPolicy
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import SlashingSignal
from tests.server.harness import StepClock
from tests.services.market_world import register

T0 = 1_800_000_000
UPLOAD_URL = "http://127.0.0.1:9/v1/fl/updates"


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The bodies the FL round service decodes and verifies from now on (``parse_update``'s
    calls), so a test can show an upload was refused without that work."""
    decoded: list[object] = []

    def counting(body: Any) -> Any:
        decoded.append(body)
        return parse_update(body)

    monkeypatch.setattr(fl_rounds_service, "parse_update", counting)
    return decoded


def node_identity(i: int) -> Identity:
    return Identity.from_seed(bytes([0x60 + i]) * 32)


@attrs.define
class FlWorld:
    """Everything an FL service test needs."""

    clock: StepClock
    repos: MemoryRepositories
    coordinator: CoordinatorService
    provenance: EmbeddedProvenance
    fl: FlRoundService
    signals: list[SlashingSignal]
    nodes: list[Identity]

    def start_round(self) -> FlRound:
        """Start a round and assign its replicas to the nodes, in order."""
        fl_round = self.fl.maybe_start()
        assert fl_round is not None
        replicas, _ = self.coordinator.task(fl_round.task_ids[0])
        for replica, node in zip(replicas, self.nodes, strict=False):
            offer = NodeOffer(
                node_id=node.node_id, capabilities={"fl_training"}, tier=Tier.T1,
                has_gpu=False, vram_mb=0, ram_mb=16_000, ask_msat=1_000,
                reliability_ppm=1_000_000,
            )
            self.repos.tasks.save(
                market.assign(replica, Match(offer, 1_000), self.clock.now(), 600),
                expected_state=replica.state,
            )
        return fl_round

    def stored_input(self, task_id: str) -> bytes | None:
        """A submitted task's input, as the coordinator opens its stored row (SRS-SEC-02)."""
        stored = SealedBlobs(self.repos.task_inputs, self.coordinator.sealing, "task-input")
        return stored.get(task_id)

    def task_input(self, fl_round: FlRound) -> dict[str, Any]:
        raw = self.stored_input(fl_round.task_ids[0])
        assert raw is not None
        data: dict[str, Any] = json.loads(raw)
        return data

    def replica_of(self, fl_round: FlRound, node: Identity) -> str:
        replicas, _ = self.coordinator.task(fl_round.task_ids[0])
        (replica,) = [r.task_id for r in replicas if r.node_id == node.node_id]
        return replica

    def trained(self, fl_round: FlRound) -> dict[str, Any]:
        """What an honest node's worker returns for the round's task."""
        return run_training(self.task_input(fl_round), None)

    def body(self, fl_round: FlRound, node: Identity, weights: Any,
             output: dict[str, Any] | None = None) -> dict[str, Any]:
        """The signed upload of ``node`` for ``weights``."""
        out = output or {"num_examples": 64, "loss": 0.5}
        return sign_update(
            node, round_number=fl_round.number, sub_model=fl_round.sub_model,
            task_id=self.replica_of(fl_round, node), num_examples=int(out["num_examples"]),
            loss=float(out["loss"]), weights=weights,
        )

    def honest_round(self, nodes: int = 3) -> FlRound:
        """A round where the first ``nodes`` nodes upload honestly trained updates."""
        fl_round = self.start_round()
        out = self.trained(fl_round)
        for node in self.nodes[:nodes]:
            self.fl.accept_update(self.body(fl_round, node, out["weights"], out))
        return fl_round

    def poisoned_body(self, fl_round: FlRound, node: Identity, attack: Attack) -> dict[str, Any]:
        """A colluding attacker's update (owm_core.fl.attacks) signed by ``node``'s own key."""
        out = self.trained(fl_round)
        own = torch.tensor(out["weights"], dtype=torch.float32)
        reference = torch.tensor(self.task_input(fl_round)["global_weights"], dtype=torch.float32)
        bad = poison(attack, reference=reference, honest=own[None, :], own=own[None, :],
                     generator=torch.Generator().manual_seed(5))
        return self.body(fl_round, node, bad[0], out)


def build_fl_world(tmp_path: Path, *, redundancy: int = 4, **config: Any) -> FlWorld:
    clock = StepClock(T0)
    tmp_path.mkdir(parents=True, exist_ok=True)
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    ledger.add_node("treasury")
    repos = memory_repositories()
    coordinator = CoordinatorService(
        repos, ledger.lightning("treasury"), clock,
        ServiceConfig(verification=VerificationPolicy(redundancy=redundancy)),
    )
    provenance = EmbeddedProvenance(tmp_path / "provenance", interval_s=3_600)
    provenance.stop()  # tests flush by hand: no calendar thread outlives its test
    signals: list[SlashingSignal] = []
    options: dict[str, Any] = {"interval_s": 0.0, "epochs": 2, "upload_grace_s": 0}
    options.update(config)
    fl = FlRoundService(
        coordinator.market, provenance, tmp_path / "weights", FlConfig(**options),
        store=repos, clock=clock,
        replicas_per_task=replicas_per_task(coordinator.config.verification),
        upload_url=UPLOAD_URL, signals=signals.extend, trainers=lambda: redundancy,
    )
    coordinator.market.advertised_api_url = lambda: fl.upload_url
    nodes = [node_identity(i) for i in range(redundancy + 1)]
    register(repos, nodes, T0)  # the market admits tasks enough registered nodes can run
    return FlWorld(clock, repos, coordinator, provenance, fl, signals, nodes)
