"""Federated-learning rounds run by the coordinator over its task market (SRS-COORD-03,
SRS-SEC-05, SRS-SEC-06, SRS-STAKE-04, SRS-NODE-10).

:class:`FlRoundService` is the I/O side of :mod:`owm_core.fl.rounds`. One worker thread
(one of the coordinator's workers, :mod:`owm_adapters.services.workers`) does, every ``tick_s``:

1. **start** — when no round is open, ``interval_s`` passed since the last start and at least
   ``min_participants`` nodes serving ``fl_training`` have their task stream open, store a new
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
3. **upgrade** — pending OTS proofs of FL releases are upgraded and re-verified every
   ``upgrade_every_s`` until confirmed.

Uploads arrive through :meth:`FlRoundService.accept_update` (``POST /v1/fl/updates``): the
signature is checked first (:func:`owm_core.fl.updates.parse_update`), then the round's rules
(:func:`owm_core.fl.rounds.admit`); refusals of correctly signed uploads are recorded in the
round. The same upload twice is answered like the first; a different one from the same node
for the same round is a Conflict.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from owm_adapters.models.tinynet import GENESIS, PARAM_SHAPES, genesis_weights, infer
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
from owm_core.fl.updates import SUB_MODEL_RE, SignedUpdate, parse_update
from owm_core.market.task_types import AGGREGATION_RULES, CLASSES, FEATURES, TaskType
from owm_core.market.tasks import TaskRequest, VerificationMode
from owm_core.nodes.tiers import Tier
from owm_core.ports.timestamping import Timestamping
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion, ProofStatus, new_model_version
from owm_core.stake.slashing import SlashingSignal

if TYPE_CHECKING:
    from owm_adapters.services.coordinator.service import CoordinatorService

log = logging.getLogger(__name__)

SCHEMA_ID = "owm.fl.train"
SCHEMA_VERSION = 1
UPLOAD_PATH = "/v1/fl/updates"
HOLDOUT_SIZE = 2_000

SignalSink = Callable[[Sequence[SlashingSignal]], object]


@attrs.frozen
class FlConfig:
    """How rounds run (``[fl]`` in ``coordinator.toml``, see ``settings.FlSection``)."""

    sub_model: str = attrs.field(default="owm-base")
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
    max_price_msat: int = 10_000
    anomaly_threshold: float = 3.0
    noise_floor: float = fl_rounds.DEFAULT_NOISE_FLOOR
    tick_s: float = 1.0
    upgrade_every_s: float = 5.0
    #: Slashing signals name ``<reporter>:<sub_model>:<round>``: each round is one independent
    #: observation, so a node flagged in three rounds meets the tier-1 threshold (SRS-STAKE-06).
    reporter: str = "fl"

    @sub_model.validator
    def _check_sub_model(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not SUB_MODEL_RE.fullmatch(value):
            raise InvalidValue("fl.sub_model", "must be a sub-model slug ([a-z0-9._-])")

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


def flat_weights(arrays: Mapping[str, Any]) -> np.ndarray[Any, Any]:
    """The built-in architecture's tensors as one flat float32 vector (state_dict order)."""
    return np.concatenate(
        [np.asarray(arrays[name], dtype=np.float32).reshape(-1) for name, _ in PARAM_SHAPES]
    )


def shaped_weights(flat: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """A flat float32 vector as the architecture's named tensors."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    offset = 0
    for name, shape in PARAM_SHAPES:
        size = int(np.prod(shape))
        out[name] = np.asarray(flat[offset : offset + size], dtype=np.float32).reshape(shape)
        offset += size
    if offset != flat.size:
        raise InvalidValue("weights", f"must hold {offset} values, got {flat.size}")
    return out


PARAMETERS = sum(int(np.prod(shape)) for _, shape in PARAM_SHAPES)


def evaluate(flat: np.ndarray[Any, Any]) -> tuple[int, float]:
    """``(accuracy in ppm, cross-entropy loss)`` of the model on the held-out set."""
    from owm_adapters.flower.data import BlobSpec, holdout

    x, y = holdout(BlobSpec(features=FEATURES, classes=CLASSES), HOLDOUT_SIZE)
    logits = infer(shaped_weights(flat), x.numpy().astype(np.float64))
    labels = y.numpy()
    if not np.isfinite(logits).all():
        return 0, float("inf")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    return round(accuracy * 1_000_000), loss


def npz_bytes(version: str, arrays: Mapping[str, np.ndarray[Any, Any]]) -> bytes:
    """The weights file of a version: the named tensors plus ``__version__`` (the node's cache
    format; dunder entries are metadata and not part of the digest)."""
    buffer = io.BytesIO()
    entries: dict[str, Any] = {"__version__": np.array(version), **arrays}
    np.savez(buffer, **entries)
    return buffer.getvalue()


def _log_signals(signals: Sequence[SlashingSignal]) -> None:
    for s in signals:
        log.warning(
            "FL slashing signal: node %s %s (evidence %s)", s.node_id, s.reason.value,
            s.evidence_hash,
        )


def streamed_trainers(coordinator: CoordinatorService) -> int:
    """How many nodes with an open task stream serve ``fl_training`` right now."""
    return sum(
        1 for o in coordinator.streaming_offers() if TaskType.FL_TRAINING.value in o.capabilities
    )


class FlRoundService:
    """Rounds, uploads, aggregation, releases (see the module docstring)."""

    def __init__(
        self,
        coordinator: CoordinatorService,
        timestamping: Timestamping,
        weights_dir: Path,
        config: FlConfig | None = None,
        *,
        upload_url: str = "",
        signals: SignalSink | None = None,
        trainers: Callable[[], int] | None = None,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.coordinator = coordinator
        self.repositories = coordinator.repositories
        self.clock = coordinator.clock
        self.timestamping = timestamping
        self.weights_dir = weights_dir
        self.config = config or FlConfig()
        #: Where nodes POST their updates (``http://<api_listen>/v1/fl/updates``); rounds do
        #: not start while it is empty.
        self.upload_url = upload_url
        self._signals = signals
        self._trainers = trainers or (lambda: streamed_trainers(coordinator))
        self._entropy = entropy
        self._lock = threading.RLock()
        self._loop = Loop("owm-fl-rounds", self.tick, self.config.tick_s)
        self._next_start = time.monotonic() + self.config.interval_s
        self._next_upgrade = 0.0
        self._settled_at: dict[int, float] = {}
        self._globals: dict[str, np.ndarray[Any, Any]] = {}
        self._warned: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the round worker thread."""
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the worker (a close in progress completes) and the embedded calendar."""
        self._loop.stop(timeout_s)
        stop = getattr(self.timestamping, "stop", None)
        if callable(stop):
            stop()

    def tick(self) -> None:
        """One pass of the worker: close what is due, start what is due, upgrade proofs."""
        for fl_round in self.repositories.fl_rounds.rounds(limit=10, state=RoundState.OPEN):
            if self._due(fl_round):
                self.close_round(fl_round.number)
        if time.monotonic() >= self._next_start and self.maybe_start() is not None:
            self._next_start = time.monotonic() + self.config.interval_s
        if time.monotonic() >= self._next_upgrade:
            self._next_upgrade = time.monotonic() + self.config.upgrade_every_s
            self.upgrade_proofs()

    # -- starting ----------------------------------------------------------------------------

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def replicas_per_task(self) -> int:
        """How many nodes train one round: the coordinator's task redundancy."""
        policy = self.coordinator.config.verification
        return policy.redundancy if policy.mode is VerificationMode.REDUNDANT else 1

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

    def _start_locked(self) -> FlRound:
        latest = self.repositories.fl_rounds.rounds(limit=1)
        number = (latest[0].number if latest else 0) + 1
        base, weights = self.global_model()
        group = f"fl-r{number}-{self._entropy(4).hex()}"
        fl_round = FlRound(
            number=number,
            sub_model=self.config.sub_model,
            state=RoundState.OPEN,
            started_at=self.clock.now(),
            rule=self.config.rule,
            task_ids=(group,),
            base_version=base,
        )
        self.repositories.fl_rounds.add_round(fl_round)
        data = {
            "sub_model": self.config.sub_model,
            "round": number,
            "partition_id": number % self.config.partitions,
            "epochs": self.config.epochs,
            "lr": self.config.lr,
            "batch_size": self.config.batch_size,
            "seed": number % (2**31 - 1),
            "global_weights": [float(v) for v in weights],
            "upload_url": self.upload_url,
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
            max_price_msat=self.config.max_price_msat,
        )
        try:
            self.coordinator.submit_task(request, json.dumps(data).encode())
        except DomainError as exc:
            failed = fl_rounds.fail(fl_round, now=self.clock.now(), reason=exc.message)
            self.repositories.fl_rounds.save_round(failed)
            log.warning("FL round %d could not submit its task: %s", number, exc.message)
            return failed
        log.info("FL round %d of %s started from %s (task %s)", number,
                 self.config.sub_model, base, group)
        return fl_round

    def global_model(self) -> tuple[str, np.ndarray[Any, Any]]:
        """The release the next round starts from and its flat weights (genesis if none)."""
        for fl_round in self.repositories.fl_rounds.rounds(limit=50, state=RoundState.CLOSED):
            if fl_round.sub_model != self.config.sub_model or fl_round.version_id is None:
                continue
            try:
                return fl_round.version_id, self.weights_of(fl_round.version_id)
            except NotFound:
                self._warn_once(fl_round.version_id, f"weights of {fl_round.version_id} are "
                                "missing; FL continues from an older version")
        return GENESIS, self.weights_of(GENESIS)

    def weights_of(self, base: str) -> np.ndarray[Any, Any]:
        """The flat weights of a release produced here, or of ``genesis``."""
        if base not in self._globals:
            if base == GENESIS:
                self._globals[base] = flat_weights(genesis_weights(self.config.sub_model))
            else:
                with np.load(io.BytesIO(self.weights_file(base)), allow_pickle=False) as data:
                    self._globals[base] = flat_weights({n: data[n] for n, _ in PARAM_SHAPES})
        return self._globals[base]

    def weights_path(self, release_id: str) -> Path:
        """Where the weights file of ``release_id`` (``<sub_model>@<version>``) is kept."""
        sub_model, _, version = release_id.partition("@")
        if not SUB_MODEL_RE.fullmatch(sub_model) or not version or "/" in version:
            raise NotFound(f"no weights for {release_id}")
        return self.weights_dir / sub_model / f"{version}.npz"

    def weights_file(self, release_id: str) -> bytes:
        """The ``.npz`` of a version this service published (``GET …/{id}/weights``)."""
        try:
            return self.weights_path(release_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no weights are published for {release_id}") from None

    # -- uploads -----------------------------------------------------------------------------

    def accept_update(self, body: Mapping[str, Any]) -> UploadReceipt:
        """Check and store an uploaded update (``POST /v1/fl/updates``, SRS-SEC-06).

        InvalidValue (naming the field) for a malformed or badly signed body, NotFound for an
        unknown round or task, InvalidTransition when the round is not open or the task is
        assigned to another node, Conflict for a different second update of the node.
        """
        update = parse_update(body)
        with self._lock:
            fl_round = self.repositories.fl_rounds.get_round(update.round)
            if fl_round is None:
                raise NotFound(f"no FL round {update.round}")
            task = self.repositories.tasks.get(update.task_id)
            try:
                if task is None:
                    raise NotFound(f"no task {update.task_id}")
                fl_rounds.admit(
                    fl_round,
                    update,
                    task_group=task_id_of(update.task_id),
                    assigned_node_id=task.node_id,
                    parameters=len(self.weights_of(fl_round.base_version)),
                )
            except (InvalidValue, InvalidTransition, NotFound) as exc:
                if fl_round.state is RoundState.OPEN:
                    noted = fl_rounds.note_rejection(fl_round, update.node_id, exc.message)
                    if noted != fl_round:
                        self.repositories.fl_rounds.save_round(noted)
                raise
            stored = RoundUpdate(update, received_at=self.clock.now())
            new = self.repositories.fl_rounds.add_update(stored)
        if new:
            log.info("FL round %d: update from %s accepted", update.round, update.node_id)
            self._loop.wake()
        return UploadReceipt(update.round, update.node_id, update.digest, duplicate=not new)

    # -- closing -----------------------------------------------------------------------------

    def _due(self, fl_round: FlRound) -> bool:
        now = self.clock.now()
        if now - fl_round.started_at >= self.config.round_timeout_s:
            return True
        updates = self.repositories.fl_rounds.updates(fl_round.number)
        replicas = [r for group in fl_round.task_ids for r in self.coordinator.task(group)[0]]
        uploaded = {u.update.task_id for u in updates}
        if replicas and all(r.task_id in uploaded for r in replicas):
            return True
        outcomes = [self.coordinator.task(group)[1] for group in fl_round.task_ids]
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
            except ByzantineAssumptionViolated as exc:
                return self._fail(fl_round, exc.message, len(updates))

    def _fail(self, fl_round: FlRound, reason: str, participants: int) -> FlRound:
        failed = fl_rounds.fail(
            fl_round, now=self.clock.now(), reason=reason, participants=participants
        )
        self.repositories.fl_rounds.save_round(failed)
        log.warning("FL round %d failed: %s", fl_round.number, reason)
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
        previous = self.weights_of(fl_round.base_version)
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
        accuracy_ppm, loss = evaluate(flat)
        release = self._publish(fl_round, flat, now)
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
        self._globals[release.release_id] = flat
        log.info(
            "FL round %d closed: %d updates, rule %s f=%d, accuracy %.4f, %d flagged, version %s",
            fl_round.number, n, fl_round.rule, outcome.f, accuracy_ppm / 1e6,
            len(outcome.flagged), release.release_id,
        )
        if outcome.signals:
            self._report(outcome.signals)
        return closed

    def _publish(self, fl_round: FlRound, flat: np.ndarray[Any, Any], now: int) -> ModelRelease:
        version = f"owm-v0.{fl_round.number}.0"
        arrays = shaped_weights(flat)
        parent = None
        if fl_round.base_version != GENESIS:
            base = self.repositories.releases.get(fl_round.base_version)
            parent = base.version.digest if base is not None else None
        model = new_model_version(version, fl_round.sub_model, arrays, created_at=now,
                                  parent=parent)
        self._write_weights(model, arrays)
        try:
            proof = self.timestamping.stamp(model.digest_bytes)
        except DomainError as exc:  # the upgrade pass stamps it later
            log.warning("model version %s could not be stamped yet: %s", model.id, exc.message)
            return ModelRelease(version=model, proof_status=ProofStatus.NONE, checked_at=now)
        return ModelRelease(
            version=model, proof_status=ProofStatus.PENDING, checked_at=now, ots_proof=proof
        )

    def _write_weights(self, model: ModelVersion, arrays: Mapping[str, Any]) -> None:
        path = self.weights_path(model.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(npz_bytes(model.version, arrays))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _report(self, signals: Sequence[SlashingSignal]) -> None:
        sink = self._signals or _log_signals
        try:
            sink(signals)
        except Exception:
            log.exception("FL slashing signals could not be handed over; logging them")
            _log_signals(signals)

    # -- provenance --------------------------------------------------------------------------

    def upgrade_proofs(self) -> list[ModelRelease]:
        """Stamp unstamped FL releases, upgrade pending ones; the releases that changed."""
        changed = []
        for fl_round in self.repositories.fl_rounds.rounds(limit=20, state=RoundState.CLOSED):
            if fl_round.version_id is None:
                continue
            release = self.repositories.releases.get(fl_round.version_id)
            if release is None or release.proof_status is ProofStatus.CONFIRMED:
                continue
            try:
                updated = self._upgraded(release)
            except DomainError as exc:
                log.info("proof of %s not upgraded yet: %s", release.release_id, exc.message)
                continue
            if updated != release:
                self.repositories.releases.save(updated)
                changed.append(updated)
        return changed

    def _upgraded(self, release: ModelRelease) -> ModelRelease:
        now = max(self.clock.now(), release.version.created_at)
        digest = release.version.digest_bytes
        if release.ots_proof is None:
            proof = self.timestamping.stamp(digest)
            return attrs.evolve(
                release, ots_proof=proof, proof_status=ProofStatus.PENDING, checked_at=now
            )
        proof = self.timestamping.upgrade(release.ots_proof)
        status = ProofStatus(self.timestamping.verify(proof, digest).status)
        if proof == release.ots_proof and status is release.proof_status:
            return release
        return attrs.evolve(release, ots_proof=proof, proof_status=status, checked_at=now)

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
