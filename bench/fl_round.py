"""Benchmark: one FL round of 100 simulated nodes over the coordinator's real upload path, with
a sub-model's LoRA reader adapter (SRS-PERF-05 allows 30 minutes; the target here is 60 s).

    .venv/bin/python bench/fl_round.py [--nodes 100] [--byzantine 20] [--model minilm-lora]

What runs, in one process, on the coordinator built by ``owm_adapters.bootstrap`` (memory
store, embedded calendar, its public HTTP API served by uvicorn on 127.0.0.1):

1. **start** — ``FlRoundService.maybe_start``: the round's sub-model (``owm-geo``, the shipped
   geography dataset contributed), its training pairs built from the documents, the task
   (adapter + 16 pairs) submitted to the market for ``--nodes`` replicas;
2. **train** — the node's own worker code (``task_exec.run_training``) trains the adapter on
   the task's input once. Every honest replica trains the same pairs from the same start with
   the same seed, so their updates are identical; on a real network they train in parallel
   on their own machines, so one training is the round's critical path;
3. **upload** — every node signs its update with its own key (``sign_update``; the first
   ``--byzantine`` nodes send the sign-flipped, boosted update of ``owm_core.fl.attacks``)
   and POSTs it as JSON to ``/v1/fl/updates`` over HTTP, 8 at a time: the API parses and
   checks every value, verifies the Ed25519 signature and stores the update;
4. **close** — ``close_round``: trimmed-mean aggregation of the adapter weights, anomaly
   scores and slashing signals, scoring of the new version on the held-out pairs, the
   weights file and the OpenTimestamps stamp of the release.

Prints each phase's seconds, how many updates were flagged, the held-out accuracy before and
after, and the upload body size; the last line is machine-readable:
``nodes=<n> params=<values per update> seconds=<start + train + upload + close>``.
Loading MiniLM (once per process, seconds) happens before the clock starts, as on a node
whose worker is warm.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import torch

from owm_adapters.bootstrap.coordinator import build_coordinator, replicas_per_task
from owm_adapters.bootstrap.settings import (
    CoordinatorSection,
    CoordinatorSettings,
    FlSection,
    ProvenanceSection,
)
from owm_adapters.clock import SystemClock
from owm_adapters.knowledge import demo_data
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.models.architectures import MINILM_LORA, architecture
from owm_adapters.node.task_exec import run_training
from owm_adapters.provenance.embedded import EmbeddedProvenance
from owm_adapters.services.coordinator.sealing import SealedBlobs
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.services.fl_rounds import FlConfig, FlRoundService
from owm_adapters.storage.memory import memory_repositories
from owm_core.fl.attacks import Attack, poison
from owm_core.fl.updates import sign_update
from owm_core.identity.keys import Identity
from owm_core.knowledge.datasets import parse_dataset, record_for
from owm_core.market import tasks as market
from owm_core.market.tasks import Match, NodeOffer, VerificationPolicy
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import SlashingSignal
from owm_server.http.serve import api_server_for

SUB_MODEL = "owm-geo"
LN_URI = LnNodeUri.parse("02" + "11" * 32 + "@127.0.0.1:9735")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--byzantine", type=int, default=20)
    parser.add_argument("--model", default=MINILM_LORA)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--upload-threads", type=int, default=8)
    return parser.parse_args()


@attrs.define
class Bench:
    """The coordinator, its API and the simulated nodes."""

    fl: FlRoundService
    nodes: list[Identity]
    inputs: SealedBlobs
    signals: list[SlashingSignal]
    close: Any

    def assign(self, group: str) -> dict[str, str]:
        """Give the round's replicas to the nodes, one each (the market's dispatch, done in
        the store: the bench measures the round, not the task stream)."""
        replicas, _ = self.fl.market.task(group)
        repos = self.fl.repositories
        out = {}
        for replica, node in zip(replicas, self.nodes, strict=True):
            offer = NodeOffer(node_id=node.node_id, capabilities={"fl_training"}, tier=Tier.T1,
                              has_gpu=False, vram_mb=0, ram_mb=16_000, ask_msat=1_000,
                              reliability_ppm=1_000_000)
            repos.tasks.save(market.assign(replica, Match(offer, 1_000), self.fl.clock.now(), 600),
                             expected_state=replica.state)
            out[node.node_id] = replica.task_id
        return out


def build(tmp: Path, args: argparse.Namespace) -> Bench:
    clock = SystemClock()
    ledger = SimLedger(tmp / "ln.sqlite3", clock=clock.now)
    ledger.add_node("treasury")
    store = memory_repositories()
    settings = CoordinatorSettings(
        coordinator=CoordinatorSection(data_dir=str(tmp / "coordinator"),
                                       api_listen="127.0.0.1:0"),
        fl=FlSection(enabled=False), provenance=ProvenanceSection(calendar_interval_s=3_600),
    )
    app = build_coordinator(
        settings, store=store, treasury=ledger.lightning("treasury"), clock=clock,
        config=ServiceConfig(verification=VerificationPolicy(redundancy=args.nodes)),
        slashing=False,
    )
    nodes = [Identity.from_seed(i.to_bytes(4, "big") * 8) for i in range(args.nodes)]
    now = clock.now()
    for node in nodes:  # the market admits tasks as many registered nodes can run
        store.nodes.add(Node(node_id=node.node_id, public_key=node.public_key_hex,
                             ln_node_uri=LN_URI, tier=Tier.T1, vram_mb=0, ram_mb=16_000,
                             bandwidth_mbps=100, registered_at=now, last_heartbeat=now))
    dataset = parse_dataset((Path(demo_data.__file__).parent / f"{SUB_MODEL}.json").read_bytes())
    store.datasets.add(record_for(dataset, "bench", now, 1, None), dataset.documents)
    provenance = EmbeddedProvenance(tmp / "provenance", interval_s=3_600)
    signals: list[SlashingSignal] = []
    fl = FlRoundService(
        app.service.market, provenance, tmp / "weights",
        FlConfig(sub_model=SUB_MODEL, model=args.model, lr=args.lr, epochs=1,
                 min_participants=args.nodes, interval_s=0.0, round_timeout_s=3_600),
        store=store, clock=clock, replicas_per_task=replicas_per_task(app.service.config
                                                                      .verification),
        trainers=lambda: args.nodes, signals=signals.extend,
    )
    api = api_server_for(attrs.evolve(app, fl=fl), "127.0.0.1:0", data_dir=tmp / "coordinator")
    api.start()
    fl.upload_url = f"http://127.0.0.1:{api.port}/v1/fl/updates"
    app.service.market.advertised_api_url = lambda: fl.upload_url

    def close() -> None:
        api.stop(1)
        provenance.stop()

    inputs = SealedBlobs(store.task_inputs, app.service.sealing, "task-input")
    return Bench(fl, nodes, inputs, signals, close)


def post(url: str, body: dict[str, Any]) -> int:
    raw = json.dumps(body).encode()
    request = urllib.request.Request(url, data=raw, method="POST",
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as reply:
        return int(reply.status)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="owm-fl-bench-") as tmp:
        bench = build(Path(tmp), args)
        try:
            run(bench, args)
        finally:
            bench.close()


def run(bench: Bench, args: argparse.Namespace) -> None:
    fl = bench.fl
    arch = architecture(args.model)
    warm = time.perf_counter()
    arch.genesis(SUB_MODEL)  # loads the encoder once, as a warm node worker has
    before, _ = fl.models.by_name[SUB_MODEL].evaluate(fl.global_model()[1])
    print(f"warm-up (imports, encoder, genesis score): {time.perf_counter() - warm:.2f} s")

    t0 = time.perf_counter()
    fl_round = fl.maybe_start()
    assert fl_round is not None, "the round did not start"
    replicas = bench.assign(fl_round.task_ids[0])
    raw_input = bench.inputs.get(fl_round.task_ids[0])
    assert raw_input is not None
    task_input = json.loads(raw_input)
    t1 = time.perf_counter()
    trained = run_training(task_input, None)
    t2 = time.perf_counter()
    honest = torch.tensor(trained["weights"], dtype=torch.float32)
    start = torch.tensor(task_input["global_weights"], dtype=torch.float32)
    bad = poison(Attack.SIGNFLIP, reference=start, honest=honest[None, :],
                 own=honest.repeat(max(1, args.byzantine), 1),
                 generator=torch.Generator().manual_seed(7))

    def upload(i: int) -> int:
        node = bench.nodes[i]
        weights = bad[i] if i < args.byzantine else honest
        body = sign_update(node, round_number=fl_round.number, sub_model=fl_round.sub_model,
                           task_id=replicas[node.node_id], num_examples=trained["num_examples"],
                           loss=trained["loss"], weights=weights)
        return post(fl.upload_url, body)

    with ThreadPoolExecutor(args.upload_threads) as pool:
        statuses = list(pool.map(upload, range(len(bench.nodes))))
    t3 = time.perf_counter()
    closed = fl.close_round(fl_round.number)
    t4 = time.perf_counter()
    assert all(s == 202 for s in statuses), statuses
    size = len(json.dumps({"weights": trained["weights"]}).encode())
    print(f"model {args.model}: {len(trained['weights'])} float32 values a update, "
          f"{size / 1024:.0f} KiB of JSON; {len(task_input.get('pairs') or [])} pairs a round")
    print(f"start  {t1 - t0:6.2f} s  (training pairs, task of {len(replicas)} replicas)")
    print(f"train  {t2 - t1:6.2f} s  (one local round on the task's input, loss "
          f"{trained['loss']:.3f})")
    print(f"upload {t3 - t2:6.2f} s  ({len(statuses)} signed uploads over HTTP, "
          f"{args.upload_threads} at a time)")
    print(f"close  {t4 - t3:6.2f} s  (aggregation, anomaly scores, held-out score, stamp)")
    accuracy = (closed.accuracy_ppm or 0) / 1e6
    print(f"round {closed.number} {closed.state.value}: {len(closed.flagged)} of "
          f"{args.byzantine} poisoned updates flagged, held-out accuracy {before / 1e6:.3f} -> "
          f"{accuracy:.3f}, {len(bench.signals)} slashing signals, version {closed.version_id}")
    print(f"nodes={len(bench.nodes)} params={len(trained['weights'])} seconds={t4 - t0:.2f}")


if __name__ == "__main__":
    main()
