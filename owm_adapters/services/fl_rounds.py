"""Federated-learning rounds run by the coordinator over its task market (SRS-COORD-03,
SRS-SEC-05, SRS-SEC-06, SRS-STAKE-04, SRS-NODE-10).

:class:`FlRoundService` is the I/O side of :mod:`owm_core.fl.rounds`. One worker thread
(one of the coordinator's workers, :mod:`owm_adapters.services.workers`) does, every ``tick_s``:

1. **start** — when no round is open, ``interval_s`` passed since the last start and at least
   ``min_participants`` nodes serving ``fl_training`` have their task stream open (with
   several coordinators on one database, at any of them: the streams' fresh records in the
   shared store, :mod:`owm_core.market.streams`; SRS-COORD-05), store a new
   round and submit one ``fl_training`` task (schema ``owm.fl.train`` v1) whose input carries
   the current global model (``global_weights``), the partition ``round mod partitions``, the
   training hyper-parameters and ``upload_url``. The market gives each replica of a task to a
   different node (replicas of *different* tasks may land on one node, and a node has one
   vote per round), so a round's participants are the task's replicas: ``[tasks]
   redundancy`` of them;
2. **close** — once every replica's node uploaded, ``upload_grace_s`` after the task settled,
   or at ``round_timeout_s``: robust aggregation and anomaly scores
   (:func:`owm_core.fl.rounds.close_round`), accuracy and loss of the new model on the
   held-out set of ``owm_adapters.flower.data``, a
   :class:`~owm_core.provenance.versions.ModelVersion`
   whose digest is stamped through the :class:`~owm_core.ports.timestamping.Timestamping`
   port, the weights file ``<weights_dir>/<sub_model>/<version>.npz`` (the format
   ``owm_adapters.node.weights`` installs), one :class:`~owm_core.provenance.releases.ModelRelease`
   and the round's results — written in one transaction — then the slashing signals go to
   the sink (the slashing service's ``report`` as the composition root wires it, else the log);
3. **upgrade** — a second thread (``owm-ots-upgrade``), never the round worker, stamps the
   releases not stamped yet and upgrades and re-verifies pending OTS proofs until confirmed:
   every ``upgrade_every_s`` while passes change something, backing off (doubling, up to
   ``upgrade_max_backoff_s``) while calendars have nothing new or cannot be reached, and at
   once when a round publishes a release. With ``stamp_in_background`` (remote calendars,
   whose answers may take up to 30 s, SRS-PERF-10) closing a round does not stamp at all:
   the upgrade thread does, so a slow or unreachable calendar never holds up a round.

Uploads arrive through :meth:`FlRoundService.accept_update` (``POST /v1/fl/updates``): what
the upload claims is checked first against the store, without decoding anything
(:func:`owm_core.fl.updates.read_claim`, :func:`owm_core.fl.rounds.admit_claim`: the round is
open and the named replica is assigned to the named key's node), then the weights are decoded
and the signature checked (:func:`owm_core.fl.updates.parse_update`), then the round's rules
(:func:`owm_core.fl.rounds.admit`); refusals of correctly signed uploads are recorded in the
round. The same upload twice is answered like the first; a different one from the same node
for the same round is a Conflict.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from owm_adapters.models.architectures import TINYNET, architecture, size
from owm_adapters.services.coordinator.funding import NETWORK
from owm_adapters.services.fl_data import RoundData, SubModels, evaluate
from owm_adapters.services.fl_releases import (
    ProofUpgrader,
    flat_weights,
    npz_bytes,
    shaped_weights,
)
from owm_adapters.services.workers import Loop
from owm_core.coordination.tasks import task_id_of
from owm_core.errors import (
    ByzantineAssumptionViolated,
    DomainError,
    InvalidTransition,
    InvalidValue,
    NotFound,
)
from owm_core.fl import rounds as fl_rounds
from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate
from owm_core.fl.updates import (
    DEFAULT_MAX_EXAMPLES,
    SUB_MODEL_RE,
    SignedUpdate,
    UpdateClaim,
    parse_update,
    read_claim,
)
from owm_core.knowledge.datasets import Document
from owm_core.market.task_types import AGGREGATION_RULES, FL_MODELS, TaskType
from owm_core.market.tasks import TaskRequest
from owm_core.nodes.tiers import Tier
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories
from owm_core.ports.timestamping import Timestamping
from owm_core.provenance.releases import ModelRelease
from owm_core.stake.reporters import named_by_peers
from owm_core.stake.slashing import SlashingSignal

if TYPE_CHECKING:
    from owm_adapters.services.coordinator.market import TaskMarket

log = logging.getLogger(__name__)

SCHEMA_ID = "owm.fl.train"
SCHEMA_VERSION = 1
UPLOAD_PATH = "/v1/fl/updates"

SignalSink = Callable[[Sequence[SlashingSignal]], object]


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _pairs(value: Iterable[tuple[str, str]] | Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


@attrs.frozen
class FlConfig:
    """How rounds run (``[fl]`` in ``coordinator.toml``, see ``settings.FlSection``)."""

    sub_model: str = attrs.field(default="owm-base")
    #: Rounds take turns over these sub-models (round ``n`` trains ``sub_models[(n - 1) mod
    #: len]``); empty: ``sub_model`` alone.
    sub_models: tuple[str, ...] = attrs.field(default=(), converter=_names)
    #: The architecture rounds train (:mod:`owm_adapters.models.architectures`) ...
    model: str = attrs.field(default=TINYNET)
    #: ... unless ``(sub_model, architecture)`` here names another for a sub-model.
    models: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)
    interval_s: float = 60.0
    min_participants: int = 3
    rule: str = attrs.field(default="trimmed")
    max_f: int | None = None
    round_timeout_s: int = 600
    upload_grace_s: int = 10
    epochs: int = 1
    lr: float = 0.1
    batch_size: int = 16
    partitions: int = 1_000
    #: The most examples an update may claim in a round that recorded none (older rounds).
    max_examples: int = DEFAULT_MAX_EXAMPLES
    max_price_msat: int = 10_000
    anomaly_threshold: float = 3.0
    noise_floor: float = fl_rounds.DEFAULT_NOISE_FLOOR
    tick_s: float = 1.0
    upgrade_every_s: float = 5.0
    upgrade_max_backoff_s: float = 3_600.0
    #: Stamp new releases in the upgrade thread, not while closing the round (remote calendars).
    stamp_in_background: bool = False
    #: Slashing signals name ``<reporter>:<sub_model>:<round>``: each round is one independent
    #: observation, so a node flagged in three rounds meets the tier-1 threshold (SRS-STAKE-06).
    reporter: str = "fl"

    @sub_model.validator
    def _check_sub_model(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not SUB_MODEL_RE.fullmatch(value):
            raise InvalidValue("fl.sub_model", "must be a sub-model slug ([a-z0-9._-])")

    @sub_models.validator
    def _check_sub_models(self, _attribute: attrs.Attribute[str], value: tuple[str, ...]) -> None:
        if len(set(value)) != len(value) or not all(
            isinstance(v, str) and SUB_MODEL_RE.fullmatch(v) for v in value
        ):
            raise InvalidValue("fl.sub_models", "must be distinct sub-model slugs ([a-z0-9._-])")

    @property
    def rotation(self) -> tuple[str, ...]:
        """The sub-models rounds take turns over."""
        return self.sub_models or (self.sub_model,)

    @model.validator
    def _check_model(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if value not in FL_MODELS:
            raise InvalidValue("fl.model", f"must be one of {', '.join(FL_MODELS)}")

    @models.validator
    def _check_models(self, _attribute: object, value: tuple[tuple[str, str], ...]) -> None:
        for name, model in value:
            if not SUB_MODEL_RE.fullmatch(name) or model not in FL_MODELS:
                raise InvalidValue(f"fl.models.{name}",
                                   f"must map a sub-model to one of {', '.join(FL_MODELS)}")

    def model_of(self, sub_model: str) -> str:
        """The architecture ``sub_model``'s rounds train."""
        return dict(self.models).get(sub_model, self.model)

    @rule.validator
    def _check_rule(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if value not in AGGREGATION_RULES:
            raise InvalidValue("fl.rule", f"must be one of {', '.join(AGGREGATION_RULES)}")


@attrs.frozen
class UploadReceipt:
    """What an accepted upload is answered with."""

    round: int
    node_id: str
    digest: str
    duplicate: bool


PARAMETERS = size(architecture(TINYNET))
"""How many values TinyNet's flat vector holds."""


def _log_signals(signals: Sequence[SlashingSignal]) -> None:
    for s in signals:
        log.warning(
            "FL slashing signal: node %s %s (evidence %s)", s.node_id, s.reason.value,
            s.evidence_hash, extra={"node_id": s.node_id, "reason": s.reason.value},
        )


def streamed_trainers(market: TaskMarket) -> int:
    """How many nodes with an open task stream serve ``fl_training`` right now (at any
    coordinator sharing the store: :meth:`TaskMarket.streaming_offers`)."""
    return sum(
        1 for o in market.streaming_offers() if TaskType.FL_TRAINING.value in o.capabilities
    )


def training_task(
    config: FlConfig,
    number: int,
    group: str,
    weights: np.ndarray[Any, Any],
    upload_url: str,
    documents: Sequence[Document] = (),
    sub_model: str | None = None,
) -> tuple[TaskRequest, bytes, int]:
    """Round ``number``'s ``fl_training`` task (schema ``owm.fl.train`` v1) and its input:
    the architecture, the global model, the training data the architecture names for this
    round (:meth:`~owm_core.ports.fl_model.ModelArchitecture.round_data`: the partition
    ``number mod partitions``, training pairs from ``documents``), the hyper-parameters and
    where to upload; and the examples that data holds (what each update may claim).
    InvalidValue when the architecture finds no training data."""
    arch = architecture(config.model_of(sub_model or config.sub_model))
    data = {
        "sub_model": sub_model or config.sub_model,
        "model": arch.name,
        "round": number,
        "partition_id": number % config.partitions,
        **arch.round_data(number, config.partitions, documents),
        "epochs": config.epochs,
        "lr": config.lr,
        "batch_size": config.batch_size,
        "seed": number % (2**31 - 1),
        "global_weights": [float(v) for v in weights],
        "upload_url": upload_url,
    }
    request = TaskRequest(
        task_id=group,
        task_type=TaskType.FL_TRAINING.value,
        input_schema_id=SCHEMA_ID,
        input_schema_version=SCHEMA_VERSION,
        min_tier=Tier.T1,
        min_vram_mb=0,
        min_ram_mb=0,
        gpu_required=False,
        max_price_msat=config.max_price_msat,
    )
    return request, json.dumps(data).encode(), arch.examples(data)


def plan_round(
    config: FlConfig,
    models: SubModels,
    number: int,
    group: str,
    upload_url: str,
    warn: Callable[[str, str], None],
) -> tuple[RoundData, str, TaskRequest, bytes, int] | None:
    """Round ``number``'s sub-model (the next in turn with training data), its base version,
    its task and the examples the task assigns; None (``warn`` says why, once) when no
    sub-model has training data yet."""
    for model in models.turns(number):
        base, weights = model.releases.latest()
        try:
            request, data, examples = training_task(
                config, number, group, weights, upload_url, model.documents()[1],
                model.sub_model,
            )  # fmt: skip
        except InvalidValue as exc:
            warn(f"data:{model.sub_model}",
                 f"FL rounds skip {model.sub_model} for now: {exc.message}")
            continue
        return model, base, request, data, examples
    return None


def check_claim(store: Repositories, claim: UpdateClaim) -> None:
    """The round an upload names exists and is open, and the task replica it names is one of
    the round's and assigned to the node its key derives (:func:`owm_core.fl.rounds.admit_claim`):
    two store reads, whatever the upload's size (SRS-SEC-06). Refusals are not recorded."""
    fl_round = store.fl_rounds.get_round(claim.round)
    if fl_round is None:
        raise NotFound(f"no FL round {claim.round}")
    task = store.tasks.get(claim.task_id)
    if task is None:
        raise NotFound(f"no task {claim.task_id}")
    fl_rounds.admit_claim(
        fl_round, task_id=claim.task_id, task_group=task_id_of(claim.task_id),
        node_id=claim.node_id, assigned_node_id=task.node_id,
    )


def admit_signed(
    store: Repositories, models: SubModels, update: SignedUpdate, max_examples: int
) -> None:
    """The round's rules on an update whose signature verified (:func:`owm_core.fl.rounds.admit`;
    at most the examples the round recorded, else ``max_examples``); a refusal while the round
    is open is recorded in it (its first ``MAX_REJECTIONS``) when the node holds one of its
    replicas (:func:`owm_core.fl.rounds.assigned_to_round`): strangers fill no slots."""
    fl_round = store.fl_rounds.get_round(update.round)
    if fl_round is None:
        raise NotFound(f"no FL round {update.round}")
    task = store.tasks.get(update.task_id)
    try:
        if task is None:
            raise NotFound(f"no task {update.task_id}")
        parameters = len(models.of(fl_round).releases.weights_of(fl_round.base_version))
        fl_rounds.admit(fl_round, update, task_group=task_id_of(update.task_id),
                        assigned_node_id=task.node_id, parameters=parameters,
                        max_examples=fl_round.max_examples or max_examples)
    except (InvalidValue, InvalidTransition, NotFound) as exc:
        if fl_round.state is RoundState.OPEN and task is not None and fl_rounds.assigned_to_round(
            fl_round, task_id_of(task.task_id), task.node_id, update.node_id
        ):
            noted = fl_rounds.note_rejection(fl_round, update.node_id, exc.message)
            if noted != fl_round:
                store.fl_rounds.save_round(noted)
        raise


class FlRoundService:
    """Rounds, uploads, aggregation, releases (see the module docstring)."""

    def __init__(
        self,
        market: TaskMarket,
        timestamping: Timestamping,
        weights_dir: Path,
        config: FlConfig | None = None,
        *,
        store: Repositories,
        clock: Clock,
        replicas_per_task: int = 1,
        upload_url: str = "",
        signals: SignalSink | None = None,
        trainers: Callable[[], int] | None = None,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.market = market
        self.repositories = store
        self.clock = clock
        self.config = config or FlConfig()
        #: Per sub-model: its releases (genesis, weights files, stamps) and its data.
        self.models = SubModels.build(
            self.config.rotation, lambda name: architecture(self.config.model_of(name)), store,
            clock, timestamping, weights_dir,
            stamp_at_publish=not self.config.stamp_in_background)
        self.releases = self.models.by_name[self.config.rotation[0]].releases
        #: How many nodes train one round: the market's task redundancy.
        self.replicas = replicas_per_task
        #: Where nodes POST their updates (``http://<api_listen>/v1/fl/updates``); rounds do
        #: not start while it is empty.
        self.upload_url = upload_url
        self._signals = signals
        self._trainers = trainers or (lambda: streamed_trainers(market))
        self._entropy = entropy
        self._lock = threading.RLock()
        self._loop = Loop("owm-fl-rounds", self.tick, self.config.tick_s)
        self.upgrader = ProofUpgrader(self.releases, self.config.upgrade_every_s,
                                      self.config.upgrade_max_backoff_s)
        self._next_start = time.monotonic() + self.config.interval_s
        self._settled_at: dict[int, float] = {}
        self._warned: set[str] = set()

    @property
    def timestamping(self) -> Timestamping:
        """Where model versions are stamped (the knowledge base stamps its datasets there too)."""
        return self.releases.timestamping

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the round worker and the proof upgrade threads."""
        self._loop.start()
        self.upgrader.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop both threads (a close or an upgrade in progress completes)."""
        self._loop.stop(timeout_s)
        self.upgrader.stop(timeout_s)

    def tick(self) -> None:
        """One pass of the round worker: close what is due, start what is due."""
        for fl_round in self.repositories.fl_rounds.rounds(limit=10, state=RoundState.OPEN):
            if self._due(fl_round):
                self.close_round(fl_round.number)
        if time.monotonic() >= self._next_start and self.maybe_start() is not None:
            self._next_start = time.monotonic() + self.config.interval_s

    # -- starting ----------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def replicas_per_task(self) -> int:
        """How many nodes train one round: the market's task redundancy."""
        return self.replicas

    def maybe_start(self) -> FlRound | None:
        """Start a round if none is open and enough trainers are connected; the new round."""
        with self._lock:
            if self.repositories.fl_rounds.rounds(limit=1, state=RoundState.OPEN):
                return None
            if not self.upload_url:
                self._warn_once("url", "FL rounds wait: no upload URL (set [fl] upload_url or "
                                "[coordinator] api_listen with a fixed port)")
                return None
            if self.replicas_per_task() < self.config.min_participants:
                self._warn_once(
                    "redundancy",
                    f"FL rounds need {self.config.min_participants} participants but a task "
                    f"runs on {self.replicas_per_task()} node(s); raise [tasks] redundancy "
                    "(verification = \"redundant\") or lower [fl] min_participants",
                )
                return None
            if self._trainers() < self.config.min_participants:
                return None
            return self._start_locked()

    def _start_locked(self) -> FlRound | None:
        latest = self.repositories.fl_rounds.rounds(limit=1)
        number = (latest[0].number if latest else 0) + 1
        group = f"fl-r{number}-{self._entropy(4).hex()}"
        planned = plan_round(self.config, self.models, number, group, self.upload_url,
                             self._warn_once)
        if planned is None:
            return None
        model, base, request, data, examples = planned
        fl_round = FlRound(number=number, sub_model=model.sub_model, state=RoundState.OPEN,
                           started_at=self.clock.now(), rule=self.config.rule,
                           task_ids=(group,), base_version=base, max_examples=examples)
        self.repositories.fl_rounds.add_round(fl_round)
        try:
            self.market.submit_task(request, data, NETWORK)
        except DomainError as exc:
            failed = fl_rounds.fail(fl_round, now=self.clock.now(), reason=exc.message)
            self.repositories.fl_rounds.save_round(failed)
            log.warning("FL round %d could not submit its task: %s", number, exc.message)
            return failed
        log.info("FL round %d of %s started from %s (task %s)", number, model.sub_model, base,
                 group, extra={"round": number, "sub_model": model.sub_model, "task_id": group})
        return fl_round

    def global_model(self) -> tuple[str, np.ndarray[Any, Any]]:
        """The release ``[fl] sub_model``'s next round starts from and its flat weights
        (genesis if none)."""
        return self.releases.latest()

    def weights_path(self, release_id: str) -> Path:
        """Where the weights file of ``release_id`` (``<sub_model>@<version>``) is kept."""
        return self.releases.weights_path(release_id)

    def weights_file(self, release_id: str) -> bytes:
        """The ``.npz`` of a version this service published (``GET …/{id}/weights``)."""
        return self.releases.weights_file(release_id)

    def upgrade_proofs(self) -> list[ModelRelease]:
        """Stamp unstamped FL releases, upgrade pending ones; the releases that changed."""
        return self.releases.upgrade_proofs()

    # -- uploads -----------------------------------------------------------------------------

    def accept_update(self, body: Mapping[str, Any]) -> UploadReceipt:
        """Check and store an uploaded update (``POST /v1/fl/updates``, SRS-SEC-06).

        InvalidValue (naming the field) for a malformed or badly signed body, NotFound for an
        unknown round or task, InvalidTransition when the round is not open or the task is
        assigned to another node, Conflict for a different second update of the node.

        What the upload claims is checked first (:func:`check_claim`): an upload no open
        round expects from the node it names is refused before its weights are decoded or its
        signature checked, and not recorded (nothing proves who sent it). Refusals of an upload
        whose signature verified are recorded in the round.
        """
        check_claim(self.repositories, read_claim(body))
        update = parse_update(body)
        with self._lock:
            admit_signed(self.repositories, self.models, update, self.config.max_examples)
            stored = RoundUpdate(update, received_at=self.clock.now())
            new = self.repositories.fl_rounds.add_update(stored)
        if new:
            log.info("FL round %d: update from %s accepted", update.round, update.node_id,
                     extra={"round": update.round, "node_id": update.node_id})
            self._loop.wake()
        return UploadReceipt(update.round, update.node_id, update.digest, duplicate=not new)

    # -- closing -----------------------------------------------------------------------------

    def _due(self, fl_round: FlRound) -> bool:
        now = self.clock.now()
        if now - fl_round.started_at >= self.config.round_timeout_s:
            return True
        updates = self.repositories.fl_rounds.updates(fl_round.number)
        replicas = [r for group in fl_round.task_ids for r in self.market.task(group)[0]]
        uploaded = {u.update.task_id for u in updates}
        if replicas and all(r.task_id in uploaded for r in replicas):
            return True
        outcomes = [self.market.task(group)[1] for group in fl_round.task_ids]
        if all(o != "pending" for o in outcomes):
            first = self._settled_at.setdefault(fl_round.number, time.monotonic())
            return time.monotonic() - first >= self.config.upload_grace_s
        return False

    def close_round(self, number: int) -> FlRound:
        """Close round ``number`` now with the updates it has (the worker calls this when due)."""
        with self._lock:
            fl_round = self.repositories.fl_rounds.get_round(number)
            if fl_round is None:
                raise NotFound(f"no FL round {number}")
            if fl_round.state is not RoundState.OPEN:
                return fl_round
            self._settled_at.pop(number, None)
            updates = list(self.repositories.fl_rounds.updates(number))
            try:
                return self._close_locked(fl_round, updates)
            except (ByzantineAssumptionViolated, NotFound) as exc:
                # NotFound: its sub-model left the rotation (a restart with another [fl]) or
                # its base weights are gone; it can never close, and while it stays open no
                # round starts
                return self._fail(fl_round, exc.message, len(updates))

    def _fail(self, fl_round: FlRound, reason: str, participants: int) -> FlRound:
        failed = fl_rounds.fail(
            fl_round, now=self.clock.now(), reason=reason, participants=participants
        )
        self.repositories.fl_rounds.save_round(failed)
        log.warning("FL round %d failed: %s", fl_round.number, reason,
                    extra={"round": fl_round.number})
        return failed

    def _close_locked(self, fl_round: FlRound, updates: list[RoundUpdate]) -> FlRound:
        import torch

        from owm_core.fl.aggregation import Rule
        from owm_core.fl.anomaly import AnomalyThresholds

        n = len(updates)
        if n < self.config.min_participants:
            return self._fail(
                fl_round,
                f"{n} update(s) arrived, {self.config.min_participants} needed",
                n,
            )
        now = self.clock.now()
        threshold = self.config.anomaly_threshold
        model = self.models.of(fl_round)
        previous = model.releases.weights_of(fl_round.base_version)
        signed: list[SignedUpdate] = [u.update for u in updates]
        outcome = fl_rounds.close_round(
            signed,
            rule=Rule(fl_round.rule),
            previous_weights=torch.from_numpy(previous.copy()),
            reporter=f"{self.config.reporter}:{fl_round.sub_model}:{fl_round.number}",
            now=now,
            max_f=self.config.max_f,
            thresholds=AnomalyThresholds(threshold, threshold, threshold),
            noise_floor=self.config.noise_floor,
        )
        flat = outcome.weights.detach().numpy().astype(np.float32)
        accuracy_ppm, loss = model.evaluate(flat)
        release = model.releases.publish(fl_round, flat, now)
        closed = fl_rounds.close(
            fl_round,
            now=now,
            f=outcome.f,
            participants=n,
            accepted=outcome.node_ids,
            flagged=outcome.flagged,
            accuracy_ppm=accuracy_ppm,
            loss=loss if np.isfinite(loss) else None,
            version_id=release.release_id,
        )
        scores = {
            node_id: (outcome.score_of(i), node_id in outcome.flagged)
            for i, node_id in enumerate(outcome.node_ids)
        }
        with self.repositories.atomic():
            self.repositories.releases.add(release)
            self.repositories.fl_rounds.score_updates(fl_round.number, scores)
            self.repositories.fl_rounds.save_round(closed)
        model.releases.remember(release.release_id, flat)
        self.upgrader.wake()  # stamp (or upgrade) the new release now, in its own thread
        log.info(
            "FL round %d closed: %d updates, rule %s f=%d, accuracy %.4f, %d flagged, version %s",
            fl_round.number, n, fl_round.rule, outcome.f, accuracy_ppm / 1e6,
            len(outcome.flagged), release.release_id,
            extra={"round": fl_round.number, "updates": n, "accuracy_ppm": accuracy_ppm,
                   "flagged": len(outcome.flagged), "version": release.release_id},
        )
        if outcome.signals:
            # The round's other participants exposed the flagged updates: they report them.
            self._report(named_by_peers(outcome.signals, [u.node_id for u in signed]))
        return closed

    def _report(self, signals: Sequence[SlashingSignal]) -> None:
        sink = self._signals or _log_signals
        try:
            sink(signals)
        except Exception:
            log.exception("FL slashing signals could not be handed over; logging them")
            _log_signals(signals)

    # -- reading -----------------------------------------------------------------------------

    def rounds(self, limit: int = 100) -> Sequence[FlRound]:
        """Rounds newest first (``GET /v1/fl/rounds``)."""
        return self.repositories.fl_rounds.rounds(limit=limit)


__all__ = [
    "PARAMETERS",
    "UPLOAD_PATH",
    "FlConfig",
    "FlRoundService",
    "UploadReceipt",
    "evaluate",
    "flat_weights",
    "npz_bytes",
    "shaped_weights",
    "streamed_trainers",
]
