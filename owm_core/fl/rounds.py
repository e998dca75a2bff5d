"""FL rounds run by the coordinator over the task market: their record and closing rules
(SRS-COORD-03, SRS-SEC-05, SRS-SEC-06, SRS-STAKE-04).

This module owns

* :class:`FlRound`, the record of one round (``open`` → ``closed`` | ``failed``) and its
  transitions (:func:`close`, :func:`fail`, :func:`note_rejection`), which raise
  :class:`~owm_core.errors.InvalidTransition` for any other move;
* :class:`RoundUpdate`, one node's signed update (:class:`~owm_core.fl.updates.SignedUpdate`)
  as stored for a round, with its anomaly score once the round closed;
* the admission rule of an upload (:func:`admit`): the round is open, the update names the
  round's sub-model, its task replica belongs to one of the round's tasks, the replica is
  assigned to the uploading node, and the weights have the global model's size; the part
  that needs no decoding (:func:`admit_claim`) runs first, on what the upload claims;
* :func:`tolerable_f` — the most Byzantine clients a rule can survive with ``n`` updates;
* :func:`close_round` — the pure closing computation: stack the updates, aggregate with the
  robust rule (:mod:`owm_core.fl.aggregation`), score every update (:mod:`owm_core.fl.anomaly`),
  keep only flags that stand above the numerical noise floor, and turn them into
  ``POISONED_UPDATE`` slashing signals whose evidence is the signed statement.

Why the noise floor: anomaly ratios compare each update with the round's median. When honest
nodes train the same partition from the same seed (the market's redundant replicas do) their
updates are equal up to floating-point noise, the median distance is ~0, and a ratio of two
tiny numbers says nothing. A flag therefore also needs a distance to the aggregate above
``noise_floor`` times the median norm of the honest step (default 1 %); poisoned updates sit
10–100 steps away.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from owm_core import fields
from owm_core.errors import ByzantineAssumptionViolated, Conflict, InvalidTransition, InvalidValue
from owm_core.fl.updates import MAX_EXAMPLES, SUB_MODEL_RE, SignedUpdate, check_examples
from owm_core.market.task_types import AGGREGATION_RULES

if TYPE_CHECKING:  # the records are torch-free: the store imports them at start-up
    import torch

    from owm_core.fl.aggregation import Aggregate, Rule
    from owm_core.fl.anomaly import AnomalyScore, AnomalyThresholds
    from owm_core.stake.slashing import SlashingSignal

MAX_REJECTIONS = 100
"""Rejection reasons a round keeps (the first ones; later ones are only counted)."""
DEFAULT_NOISE_FLOOR = 0.01


class RoundState(enum.Enum):
    """Where a round is: collecting updates, done with a new version, or given up."""

    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


def _to_state(value: object) -> object:
    return fields.to_enum(RoundState, "state", value)


def _to_tuple(value: object) -> object:
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return value  # the validator names the field
    return tuple(value)


def _texts(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidValue(attribute.name, "must be a tuple of strings")


def _optional_ppm(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        fields.integer(0, 1_000_000)(_instance, attribute, value)


def _optional_number(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        fields.number()(_instance, attribute, value)


def _optional_time(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        fields.timestamp()(_instance, attribute, value)


@attrs.frozen
class FlRound:
    """One FL round of one sub-model (see the module docstring for its lifecycle).

    ``rule``: the :class:`~owm_core.fl.aggregation.Rule` value (``trimmed``, ``krum``, …);
    ``task_ids``: the submitted task ids (groups) whose replicas train this round;
    ``base_version``: the release id the global model came from (``genesis`` for the
    architecture's deterministic start); ``participants``: updates received;
    ``accepted``/``flagged``: node ids; ``rejected``: reasons, ``<node id>: <why>``;
    ``accuracy_ppm``/``loss``: the new model on the held-out set; ``version_id``: the release
    it produced; ``failure``: why a failed round failed; ``max_examples``: what its task
    assigned each replica.
    """

    number: int = attrs.field(validator=fields.integer(minimum=1, maximum=10**9))
    sub_model: str = attrs.field(validator=fields.matches(SUB_MODEL_RE, "a sub-model slug"))
    state: RoundState = attrs.field(converter=_to_state, validator=fields.instance_of(RoundState))
    started_at: int = attrs.field(validator=fields.timestamp())
    rule: str = attrs.field(validator=fields.one_of(AGGREGATION_RULES))
    task_ids: tuple[str, ...] = attrs.field(converter=_to_tuple, validator=_texts)
    base_version: str = attrs.field(validator=fields.text(max_len=130))
    f: int = attrs.field(default=0, validator=fields.integer(minimum=0))
    closed_at: int | None = attrs.field(default=None, validator=_optional_time)
    participants: int = attrs.field(default=0, validator=fields.integer(minimum=0))
    accepted: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_texts)
    rejected: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_texts)
    flagged: tuple[str, ...] = attrs.field(default=(), converter=_to_tuple, validator=_texts)
    accuracy_ppm: int | None = attrs.field(default=None, validator=_optional_ppm)
    loss: float | None = attrs.field(default=None, validator=_optional_number)
    version_id: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.text(max_len=130))
    )
    failure: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=2_000))
    #: The examples the round's task gave each replica to train on: no update may claim more
    #: (0: not recorded, a round started before it was; the coordinator's cap applies).
    max_examples: int = attrs.field(default=0, validator=fields.integer(0, MAX_EXAMPLES))

    def __attrs_post_init__(self) -> None:
        if self.closed_at is not None and self.closed_at < self.started_at:
            raise InvalidValue("closed_at", "cannot precede started_at")
        if (self.state is RoundState.OPEN) != (self.closed_at is None):
            raise InvalidValue("closed_at", "is set exactly when the round is no longer open")
        if self.state is RoundState.CLOSED and self.version_id is None:
            raise InvalidValue("version_id", "a closed round names the version it produced")
        if self.state is RoundState.FAILED and not self.failure:
            raise InvalidValue("failure", "a failed round says why")


def _require_open(fl_round: FlRound, move: str) -> None:
    if fl_round.state is not RoundState.OPEN:
        raise InvalidTransition(f"round {fl_round.number} is {fl_round.state.value}; cannot {move}")


def note_rejection(fl_round: FlRound, node_id: str, reason: str) -> FlRound:
    """The open round with one more refused upload recorded (the first MAX_REJECTIONS)."""
    _require_open(fl_round, "record a rejection")
    if len(fl_round.rejected) >= MAX_REJECTIONS:
        return fl_round
    return attrs.evolve(fl_round, rejected=(*fl_round.rejected, f"{node_id}: {reason}"[:500]))


def close(
    fl_round: FlRound,
    *,
    now: int,
    f: int,
    participants: int,
    accepted: Sequence[str],
    flagged: Sequence[str],
    accuracy_ppm: int,
    loss: float | None,
    version_id: str,
) -> FlRound:
    """open → closed: the round produced ``version_id`` (SRS-COORD-03)."""
    return _end(
        fl_round, RoundState.CLOSED, "close", now, participants,
        f=f, accepted=tuple(accepted), flagged=tuple(flagged), accuracy_ppm=accuracy_ppm,
        loss=loss, version_id=version_id,
    )  # fmt: skip


def fail(fl_round: FlRound, *, now: int, reason: str, participants: int = 0) -> FlRound:
    """open → failed: the round ends without a new version, saying why."""
    return _end(
        fl_round, RoundState.FAILED, "fail", now, participants, failure=reason[:2_000] or "failed"
    )


def _end(
    fl_round: FlRound, state: RoundState, move: str, now: int, participants: int, **results: Any
) -> FlRound:
    """An open round ended in ``state`` at ``now`` with ``participants`` and its ``results``."""
    _require_open(fl_round, move)
    return attrs.evolve(
        fl_round, state=state, closed_at=now, participants=participants, **results
    )


@attrs.frozen
class RoundUpdate:
    """A signed update as a round keeps it; ``anomaly_score`` and ``flagged`` once scored.

    ``anomaly_score`` is the largest of the update's anomaly ratios (distance, norm, Krum).
    """

    update: SignedUpdate = attrs.field(validator=fields.instance_of(SignedUpdate))
    received_at: int = attrs.field(validator=fields.timestamp())
    anomaly_score: float | None = attrs.field(default=None, validator=_optional_number)
    flagged: bool = attrs.field(default=False, validator=fields.instance_of(bool))

    @property
    def round(self) -> int:
        """The round the update was signed for."""
        return self.update.round

    @property
    def node_id(self) -> str:
        """The uploading node."""
        return self.update.node_id


def same_upload(stored: RoundUpdate, incoming: RoundUpdate) -> bool:
    """Whether ``incoming`` repeats ``stored`` (idempotent); a different one is a Conflict."""
    if stored.round != incoming.round or stored.node_id != incoming.node_id:
        return False
    if stored.update != incoming.update:
        raise Conflict(
            f"node {incoming.node_id} already uploaded a different update for round "
            f"{incoming.round}"
        )
    return True


def admit_claim(
    fl_round: FlRound, *, task_id: str, task_group: str, node_id: str,
    assigned_node_id: str | None,
) -> None:
    """The checks an upload passes before its weights are decoded or its signature checked
    (SRS-SEC-06): the round is open (InvalidTransition), ``task_group`` — the submitted task
    the replica ``task_id`` belongs to — is one of the round's (InvalidValue ``task_id``) and
    the replica is assigned to ``node_id`` now (InvalidTransition). They read only what the
    upload claims, so an upload no open round expects from that node costs no tensor decoding.
    """
    _require_open(fl_round, "accept updates")
    if task_group not in fl_round.task_ids:
        raise InvalidValue("task_id", f"is not a task of round {fl_round.number}")
    if assigned_node_id != node_id:
        raise InvalidTransition(f"task {task_id} is not assigned to {node_id}")


def admit(
    fl_round: FlRound,
    update: SignedUpdate,
    *,
    task_group: str,
    assigned_node_id: str | None,
    parameters: int,
    max_examples: int = MAX_EXAMPLES,
) -> None:
    """Check that ``update`` may join ``fl_round`` (raises the error the uploader sees).

    ``task_group`` is the submitted task its replica belongs to, ``assigned_node_id`` the node
    the replica is assigned to now, ``parameters`` the size of the round's global model,
    ``max_examples`` the examples its task assigned (the round's ``max_examples`` when
    recorded). Refusals: those of :func:`admit_claim`, then the update names another
    sub-model (InvalidValue ``sub_model``), the size differs (InvalidValue ``weights``), or
    it claims more examples than it was given (InvalidValue ``num_examples``,
    :func:`~owm_core.fl.updates.check_examples`): FedAvg and Multi-Krum weigh updates by that
    count, so an inflated one would let one node outweigh every honest one (SRS-SEC-05).
    """
    admit_claim(
        fl_round, task_id=update.task_id, task_group=task_group, node_id=update.node_id,
        assigned_node_id=assigned_node_id,
    )
    if update.sub_model != fl_round.sub_model:
        raise InvalidValue("sub_model", f"round {fl_round.number} trains {fl_round.sub_model}")
    if update.parameters != parameters:
        raise InvalidValue(
            "weights", f"must hold {parameters} values (the global model), got {update.parameters}"
        )
    check_examples(update.num_examples, max_examples)


def assigned_to_round(
    fl_round: FlRound, task_group: str | None, assigned_node_id: str | None, node_id: str
) -> bool:
    """Whether ``node_id`` holds a replica of one of ``fl_round``'s tasks (``task_group``,
    assigned to ``assigned_node_id``): only such a node's refused uploads are recorded in the
    round's ``rejected`` list, so strangers cannot fill its :data:`MAX_REJECTIONS` slots and
    hide the rejections that matter."""
    return task_group in fl_round.task_ids and assigned_node_id == node_id


def tolerable_f(rule: Rule, n: int, cap: int | None = None) -> int:
    """The largest f ≤ ``cap`` for which ``n`` updates satisfy ``rule.min_clients(f)``.

    FedAvg tolerates none (0). Raises ByzantineAssumptionViolated when even f = 0 needs
    more than ``n`` updates.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidValue("n", f"must be a non-negative integer, got {n!r}")
    if n < rule.min_clients(0):
        raise ByzantineAssumptionViolated(f"{rule.value} needs {rule.min_clients(0)} updates")
    if not rule.robust:
        return 0
    f = 0
    while rule.min_clients(f + 1) <= n and (cap is None or f + 1 <= cap):
        f += 1
    return f


@attrs.frozen(eq=False)
class RoundOutcome:
    """What closing a round computed: the new global model and who looked poisoned."""

    weights: torch.Tensor
    aggregate: Aggregate
    f: int
    node_ids: tuple[str, ...]
    scores: tuple[AnomalyScore, ...]
    flagged: tuple[str, ...]
    signals: tuple[SlashingSignal, ...]
    train_loss: float

    def score_of(self, index: int) -> float:
        """The largest anomaly ratio of update ``index`` (what the store keeps)."""
        s = self.scores[index]
        ratios = [s.distance_ratio, s.norm_ratio]
        if s.krum_ratio is not None:
            ratios.append(s.krum_ratio)
        return float(max(ratios))


def close_round(
    updates: Sequence[SignedUpdate],
    *,
    rule: Rule,
    previous_weights: torch.Tensor,
    reporter: str,
    now: int,
    max_f: int | None = None,
    thresholds: AnomalyThresholds | None = None,
    noise_floor: float = DEFAULT_NOISE_FLOOR,
) -> RoundOutcome:
    """Aggregate a round's updates robustly and score them (SRS-SEC-05, SRS-STAKE-04).

    ``f`` is :func:`tolerable_f` of the number of updates (capped by ``max_f``); FedAvg and
    Multi-Krum weigh updates by their example counts. Raises ByzantineAssumptionViolated when
    there are too few updates for the rule, InvalidValue when updates come from the same node
    twice or do not match ``previous_weights`` in size. Imports torch (the records do not).
    """
    import torch

    from owm_core.fl.aggregation import aggregate, deviation_norms
    from owm_core.fl.anomaly import score_updates, slashing_signals

    if not updates:
        raise ByzantineAssumptionViolated("no updates to aggregate")
    node_ids = tuple(u.node_id for u in updates)
    if len(set(node_ids)) != len(node_ids):
        raise InvalidValue("updates", "hold two updates from one node")
    reference = previous_weights.detach().reshape(-1).to(torch.float32)
    d = int(reference.numel())
    for u in updates:
        if u.parameters != d:
            raise InvalidValue("updates", f"node {u.node_id} sent {u.parameters} values, not {d}")
    if not isinstance(noise_floor, int | float) or noise_floor < 0:
        raise InvalidValue("noise_floor", "must be a non-negative number")
    stacked = torch.stack([u.tensor for u in updates])
    f = tolerable_f(rule, len(updates), max_f)
    weights = [float(u.num_examples) for u in updates]
    result = aggregate(stacked, rule, f, weights=weights)
    scores = score_updates(
        stacked,
        result.update,
        reference=reference,
        krum_scores=result.krum_scores,
        thresholds=thresholds,
    )
    steps = deviation_norms(stacked, reference=reference)
    floor = noise_floor * float(torch.quantile(steps, 0.5))
    kept = tuple(
        s if s.distance > floor else attrs.evolve(s, reasons=()) for s in scores
    )
    evidence = [u.statement.hex() for u in updates]
    signals = slashing_signals(kept, node_ids, evidence, reporter=reporter, now=now)
    total = sum(weights)
    train_loss = sum(u.loss * w for u, w in zip(updates, weights, strict=True)) / total
    return RoundOutcome(
        weights=result.update,
        aggregate=result,
        f=f,
        node_ids=node_ids,
        scores=kept,
        flagged=tuple(node_ids[s.index] for s in kept if s.flagged),
        signals=signals,
        train_loss=float(train_loss),
    )


__all__ = [
    "DEFAULT_NOISE_FLOOR",
    "MAX_REJECTIONS",
    "FlRound",
    "RoundOutcome",
    "RoundState",
    "RoundUpdate",
    "admit",
    "admit_claim",
    "assigned_to_round",
    "close",
    "close_round",
    "fail",
    "note_rejection",
    "same_upload",
    "tolerable_f",
]
