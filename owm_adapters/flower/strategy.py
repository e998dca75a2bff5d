"""OWM's strategy for Flower's message API: OWM selects, verifies, aggregates and reports.

:class:`OwmStrategy` subclasses ``flwr.serverapp.strategy.FedAvg`` and replaces its two
decisions with OWM's rules (SRS-COORD-03, SRS-SEC-05):

* ``configure_train`` selects participants with :func:`owm_core.fl.participants.select_participants`
  (eligibility by roster — tier, suspension — and the seeded lottery) instead of Flower's
  ``random.sample``;
* ``aggregate_train`` accepts a reply only if its Ed25519 signature record verifies over its
  update and its example count, and that count is at most ``max_examples``
  (:mod:`owm_adapters.flower.signing`); it weighs each update by that signed, bounded count
  (never by an unsigned metric, which would let one client claiming 1e9 examples decide a
  FedAvg or Multi-Krum aggregate), stacks the accepted updates once into an ``(n, d)``
  tensor, aggregates with :func:`owm_core.fl.aggregation.aggregate`, scores every client with
  :func:`owm_core.fl.anomaly.score_updates` and turns flagged clients into ``SlashingSignal``
  values. Each round leaves a :class:`~owm_core.ports.fl_engine.RoundReport` in ``reports``.

It runs on any Flower ``Grid``: the in-process one and the deployment engine's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from owm_adapters.flower.model import flatten, unflatten
from owm_adapters.flower.signing import VerifiedUpdate, verify_reply
from owm_core.errors import ByzantineAssumptionViolated, DomainError, InvalidValue
from owm_core.fl.aggregation import Rule, aggregate
from owm_core.fl.anomaly import AnomalyThresholds, score_updates, slashing_signals
from owm_core.fl.participants import Candidate, select_participants
from owm_core.fl.reports import RoundReport
from owm_core.fl.updates import DEFAULT_MAX_EXAMPLES

log = logging.getLogger(__name__)


class OwmStrategy(FedAvg):
    """Flower strategy delegating selection, verification and aggregation to ``owm_core``.

    ``roster`` maps Flower node ids to known candidates (tier, suspension, OWM node id);
    unknown Flower nodes are tier-1 candidates identified by their handle. ``participants``
    caps the round size (``None``: every eligible node). ``registered_keys``, when given, is
    the set of public keys allowed to contribute. ``max_examples`` is the most examples an
    update may claim: what the run hands each client per round (TinyNet's partition size), else
    :data:`~owm_core.fl.updates.DEFAULT_MAX_EXAMPLES`. ``now`` gives POSIX seconds for signals.
    """

    def __init__(
        self,
        *,
        rule: Rule,
        f: int,
        seed: bytes,
        participants: int | None = None,
        roster: Mapping[int, Candidate] | None = None,
        registered_keys: Collection[str] | None = None,
        thresholds: AnomalyThresholds | None = None,
        reporter: str = "owm-coordinator",
        min_available_nodes: int = 2,
        wait_for_nodes_s: float = 60.0,
        fraction_evaluate: float = 0.0,
        max_examples: int = DEFAULT_MAX_EXAMPLES,
        now: Callable[[], int] = lambda: int(time.time()),
    ) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=fraction_evaluate,
            min_available_nodes=min_available_nodes,
        )
        if participants is not None and participants < rule.min_clients(f):
            raise ByzantineAssumptionViolated(
                f"{rule.value} needs {rule.min_clients(f)} participants for f={f}, "
                f"round size is {participants}"
            )
        if rule is Rule.FEDAVG and f:
            raise ByzantineAssumptionViolated("fedavg tolerates no Byzantine client")
        if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
            raise InvalidValue("max_examples", f"must be a positive integer, got {max_examples!r}")
        self.rule = rule
        self.f = f
        self.seed = seed
        self.participants = participants
        self.roster = dict(roster or {})
        self.registered_keys = registered_keys
        self.thresholds = thresholds or AnomalyThresholds()
        self.reporter = reporter
        self.wait_for_nodes_s = wait_for_nodes_s
        self.max_examples = max_examples
        self.now = now
        self.reports: list[RoundReport] = []
        self._reference: torch.Tensor | None = None
        self._like: ArrayRecord | None = None

    def summary(self) -> None:
        """Log the OWM settings (Flower calls this when a run starts)."""
        log.info(
            "OwmStrategy rule=%s f=%d participants=%s", self.rule.value, self.f, self.participants
        )

    def _node_ids(self, grid: Grid) -> list[int]:
        deadline = time.monotonic() + self.wait_for_nodes_s
        while True:
            ids = list(grid.get_node_ids())
            if len(ids) >= self.min_available_nodes or time.monotonic() >= deadline:
                return ids
            time.sleep(0.5)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Select this round's participants by OWM's rules and send them the global model."""
        candidates = [self.roster.get(h) or Candidate(handle=h) for h in self._node_ids(grid)]
        chosen = select_participants(
            candidates,
            round_number=server_round,
            seed=self.seed,
            size=self.participants or len(candidates),
            rule=self.rule,
            f=self.f,
        )
        self._reference = flatten(arrays)
        self._like = arrays
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, [c.handle for c in chosen], MessageType.TRAIN)

    def _verified(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[list[tuple[VerifiedUpdate, RecordDict]], list[str], int]:
        accepted: list[tuple[VerifiedUpdate, RecordDict]] = []
        rejected: list[str] = []
        seen: set[str] = set()
        total = 0
        d = 0 if self._reference is None else int(self._reference.numel())
        for msg in replies:
            total += 1
            if msg.has_error():
                rejected.append(f"node {msg.metadata.src_node_id}: error {msg.error.reason}")
                continue
            try:
                update = verify_reply(
                    msg.content, server_round, self.arrayrecord_key, self.registered_keys,
                    examples_key=self.weighted_by_key, max_examples=self.max_examples,
                )
            except DomainError as exc:
                rejected.append(f"node {msg.metadata.src_node_id}: {exc.message}")
                continue
            if update.node_id in seen:
                rejected.append(f"{update.node_id}: second update in one round")
                continue
            if update.flat.numel() != d or not bool(torch.isfinite(update.flat).all()):
                rejected.append(f"{update.node_id}: wrong shape or non-finite values")
                continue
            seen.add(update.node_id)
            accepted.append((update, msg.content))
        return accepted, rejected, total

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Verify, robustly aggregate, score; keep the old model if too few updates remain."""
        accepted, rejected, total = self._verified(server_round, replies)
        n = len(accepted)
        if self._reference is None or self._like is None or n < self.rule.min_clients(self.f):
            log.warning(
                "round %d: %d accepted updates, %s needs %d; model unchanged",
                server_round,
                n,
                self.rule.value,
                self.rule.min_clients(self.f),
            )
            self.reports.append(
                RoundReport(server_round, self.rule, total, n, tuple(rejected), (), (), {})
            )
            return None, None
        stacked = torch.empty((n, self._reference.numel()), dtype=torch.float32)
        for row, (update, _) in enumerate(accepted):
            stacked[row] = update.flat
        weights = [float(u.num_examples) for u, _ in accepted]
        result = aggregate(stacked, self.rule, self.f, weights=weights)
        scores = score_updates(
            stacked,
            result.update,
            reference=self._reference,
            krum_scores=result.krum_scores,
            thresholds=self.thresholds,
        )
        signals = slashing_signals(
            scores,
            [u.node_id for u, _ in accepted],
            [u.statement.hex() for u, _ in accepted],
            reporter=self.reporter,
            now=self.now(),
        )
        metrics = self.train_metrics_aggr_fn([c for _, c in accepted], self.weighted_by_key)
        self.reports.append(
            RoundReport(
                round_number=server_round,
                rule=self.rule,
                participants=total,
                accepted=n,
                rejected=tuple(rejected),
                scores=scores,
                signals=signals,
                metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
            )
        )
        return unflatten(result.update, self._like), metrics
