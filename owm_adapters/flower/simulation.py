"""``owm sim fl``'s engine: Flower's message API in-process, with a colluding adversary.

Builds ``clients`` simulated nodes on :class:`~owm_adapters.flower.grid.InProcessGrid` training
the configured FL architecture (TinyNet, or a sub-model's reader adapter), runs
:class:`~owm_adapters.flower.strategy.OwmStrategy` for ``rounds`` rounds and evaluates the
global model on a held-out set after each. The first ``byzantine`` partitions are Byzantine:
they train honestly, then the adversary (:func:`owm_core.fl.attacks.poison`, seeing every honest
update) replaces their updates and re-signs them with their own keys — so signatures verify
and only the robust rule stands between the attack and the model. Implements the
:class:`~owm_core.ports.fl_engine.FlEngine` port.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import attrs
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord

from owm_adapters.flower.clientapp import ARRAYS_KEY, app, simulated_identity
from owm_adapters.flower.data import BlobSpec
from owm_adapters.flower.grid import NODE_ID_BASE, InProcessGrid
from owm_adapters.flower.model import flatten, unflatten
from owm_adapters.flower.signing import sign_reply
from owm_adapters.flower.strategy import OwmStrategy
from owm_adapters.flower.trainable import central_scoring, max_examples
from owm_core.fl.aggregation import Rule
from owm_core.fl.attacks import Attack, poison
from owm_core.fl.reports import RoundReport


@attrs.frozen
class SimConfig:
    """One simulation: population, attack, rule, schedule, seeds and local training."""

    clients: int = 100
    byzantine: int = 20
    attack: Attack | None = Attack.SIGNFLIP
    rule: Rule = Rule.KRUM
    rounds: int = 5
    seed: int = 0
    f: int | None = None
    local_epochs: int = 1
    lr: float = 0.1
    batch_size: int = 16
    spec: BlobSpec = attrs.field(factory=BlobSpec)
    #: The FL architecture (``tinynet`` on ``spec``'s blobs; ``minilm-lora``: ``sub_model``'s
    #: reader adapter on the training pairs of the dataset file ``documents_path``).
    model: str = "tinynet"
    sub_model: str = "owm-geo"
    documents_path: str = ""

    def run_config(self) -> dict[str, bool | float | int | str]:
        """The Flower run config the ClientApp and the scorer read."""
        spec = self.spec
        return {
            "features": spec.features, "classes": spec.classes, "per-client": spec.per_client,
            "data-seed": spec.seed, "local-epochs": self.local_epochs, "lr": self.lr,
            "batch-size": self.batch_size, "model": self.model, "sub-model": self.sub_model,
            "documents-path": self.documents_path,
        }

    @property
    def assumed_f(self) -> int:
        """The ``f`` the rule is told to tolerate: the attackers' count, 0 for FedAvg."""
        if self.f is not None:
            return self.f
        return 0 if self.rule is Rule.FEDAVG else self.byzantine


@attrs.frozen(eq=False)
class SimResult:
    """Accuracy of the global model before training (index 0) and after each round."""

    accuracies: tuple[float, ...]
    reports: tuple[RoundReport, ...]
    seconds: float


def _adversary(config: SimConfig) -> Callable[[Sequence[Message], list[Message]], list[Message]]:
    byzantine_handles = {NODE_ID_BASE + i for i in range(config.byzantine)}
    generator = torch.Generator().manual_seed(config.seed + 99)
    attack = config.attack

    def tamper(sent: Sequence[Message], replies: list[Message]) -> list[Message]:
        if attack is None or not sent or sent[0].metadata.message_type != "train":
            return replies
        reference = flatten(sent[0].content.array_records[ARRAYS_KEY])
        honest = [
            r
            for r in replies
            if r.metadata.src_node_id not in byzantine_handles and not r.has_error()
        ]
        evil = [
            r for r in replies if r.metadata.src_node_id in byzantine_handles and not r.has_error()
        ]
        if not evil or not honest:
            return replies
        like = evil[0].content.array_records[ARRAYS_KEY]
        poisoned = poison(
            attack,
            reference=reference,
            honest=torch.stack([flatten(r.content.array_records[ARRAYS_KEY]) for r in honest]),
            own=torch.stack([flatten(r.content.array_records[ARRAYS_KEY]) for r in evil]),
            generator=generator,
        )
        server_round = sent[0].content.config_records["config"]["server-round"]
        assert isinstance(server_round, int)
        for reply, values in zip(evil, poisoned, strict=True):
            reply.content[ARRAYS_KEY] = unflatten(values, like)
            identity = simulated_identity(reply.metadata.src_node_id - NODE_ID_BASE)
            sign_reply(reply.content, identity, server_round, ARRAYS_KEY)
        return replies

    return tamper


class InProcessEngine:
    """The FlEngine of simulations: OwmStrategy over an InProcessGrid."""

    def __init__(self, config: SimConfig, on_round: Callable[[int, float], None] | None = None):
        self.config = config
        self.on_round = on_round
        run_config = config.run_config()
        self._score, self.initial = central_scoring(run_config, config.seed)
        self.accuracies: list[float] = []
        self.grid = InProcessGrid(
            app,
            [{"partition-id": i} for i in range(config.clients)],
            run_config,
            tamper=_adversary(config),
        )
        flwr_log = logging.getLogger("flwr")
        level = flwr_log.level
        flwr_log.setLevel(logging.ERROR)  # FedAvg warns that client-side evaluation is off
        try:
            self.strategy = OwmStrategy(
                rule=config.rule,
                f=config.assumed_f,
                seed=config.seed.to_bytes(8, "big"),
                min_available_nodes=config.clients,
                max_examples=max_examples(run_config),
            )
        finally:
            flwr_log.setLevel(level)

    def _evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        loss, acc = self._score(arrays)
        self.accuracies.append(acc)
        if self.on_round is not None:
            self.on_round(server_round, acc)
        return MetricRecord({"accuracy": acc, "loss": min(loss, 1e30)})

    def run(self, initial: torch.Tensor, rounds: int) -> Sequence[RoundReport]:
        """Run ``rounds`` rounds from the flat ``initial`` model."""
        arrays = unflatten(initial, self.initial)
        flwr_log = logging.getLogger("flwr")
        level = flwr_log.level
        flwr_log.setLevel(logging.WARNING)
        threads = torch.get_num_threads()
        # The model is tiny: one thread avoids contention that made rounds 8× slower on 2 cores.
        torch.set_num_threads(1)
        try:
            result = self.strategy.start(
                grid=self.grid,
                initial_arrays=arrays,
                num_rounds=rounds,
                train_config=ConfigRecord(),
                evaluate_fn=self._evaluate,
            )
        finally:
            flwr_log.setLevel(level)
            torch.set_num_threads(threads)
        self._final = flatten(result.arrays)
        return list(self.strategy.reports)

    def global_model(self) -> torch.Tensor:
        """The flat global model after the last round."""
        return self._final


def run_simulation(
    config: SimConfig, on_round: Callable[[int, float], None] | None = None
) -> SimResult:
    """Run one simulation; ``on_round(round, accuracy)`` is called after each evaluation."""
    started = time.perf_counter()
    engine = InProcessEngine(config, on_round)
    reports = engine.run(flatten(engine.initial), config.rounds)
    return SimResult(tuple(engine.accuracies), tuple(reports), time.perf_counter() - started)
