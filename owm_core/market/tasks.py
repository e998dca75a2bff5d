"""The task market: matching requests to node offers, verification, settlement, lifecycle.

This module owns the task flow of seed 003 (submission → discovery → capability match → price
negotiation → execution → verification → settlement) as realised by OWM (docs/architecture.md,
"The domain modules"):

* :class:`TaskRequest` (input validated against a named schema, SRS-NODE-07) /
  :class:`NodeOffer` (from the node's capability manifest, SRS-COORD-01) and :func:`match`
  (task dispatch, SRS-COORD-02), which filters offers by capability (the task type), hardware
  tier (SRS-NODE-03), resources and price, and ranks the survivors: lowest ask first, then a
  reliability-weighted lottery among equal asks (:func:`dispatch_key`), so work spreads over
  every fitting node in proportion to its track record instead of always going to the same
  few, and a newcomer (reliability 0.5) still wins its share.
* The negotiated price (:func:`negotiated_price_msat`): the floor of the midpoint between the
  node's ask and the requester's maximum, so the surplus is split evenly, any odd msat staying
  with the requester. It always lies in ``[ask, max_price]``.
* Verification (:func:`verify_outcome`): redundant execution on ``k`` nodes (a strict majority
  of the ``k`` output hashes wins) or random spot checks whose sampling is decided from
  caller-supplied seed bytes at a configurable rate (defaults: ``k = 3``, 10 % spot checks).
* Settlement: a verified node is paid its negotiated price (SRS-LN-04 dispatches it); a failed
  one forfeits (no payment) and is flagged for a reliability penalty (fake task proofs,
  SRS-SEC-11).
* The task lifecycle, a state machine that never loses a task::

      submitted ─assign─▶ assigned ─commit─▶ committed ─complete─▶ completed ─verdict─▶ verified
          │                  │  ▲                 │                          │            │
          │            time_out  reassign      silent ──▶ failed ◀──────────┘         settle
          │                  ▼  │                          │                           ▼
          └──expire──▶ expired ◀─expire── timed_out   settle ──▶ forfeited          settled

  A waiting replica (submitted or timed out) carries ``expires_at``: the time by which some
  node must have taken a replica of its task, else the task expires (:func:`expire`), so work
  no node takes cannot pile up in the market (SRS-COORD-02).

  ``commit`` and ``complete`` are the two phases of commit–reveal
  (:mod:`owm_core.market.commit_reveal`): a committed replica waits for its siblings' commitments
  without timing out; ``silent`` fails one whose node never revealed. A replica nobody had
  committed when its task's commit window closed is ``abandon``-ed (submitted, assigned or
  timed-out → forfeited, no settlement).

  Redundant execution runs one :class:`Task` per replica (same request, different nodes) and
  judges them together with :func:`verify_outcome`.

Money is integer msat; time is POSIX seconds passed in; randomness is passed-in seed bytes.
"""

from __future__ import annotations

import enum
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping

import attrs

from owm_core import fields
from owm_core.errors import InvalidTransition, InvalidValue, NoMatch
from owm_core.nodes.tiers import Tier

PPM = 1_000_000
DEFAULT_REDUNDANCY = 3
"""Nodes that run the same task under redundant verification."""
DEFAULT_REDUNDANCY_FLOOR = 2
"""The fewest replicas a redundant task runs on before it degrades to a spot check."""
DEFAULT_SPOT_CHECK_RATE_PPM = 100_000
"""Share of tasks re-executed by a trusted verifier under spot checking: 10 %."""
DEFAULT_ASSIGNMENT_TIMEOUT_S = 600
"""How long an assigned node has to deliver before the task may be reassigned."""
MAX_TASK_INPUT_BYTES = 16 * 1024 * 1024
"""The largest task input or output (16 MiB); larger ones are InvalidValue(``input``)."""
MAX_STORED_TASK_DATA_BYTES = MAX_TASK_INPUT_BYTES + 1024
"""The largest row a store of task inputs and outputs keeps: the data sealed at rest, with room
for the sealing header, nonce, MAC and context (SRS-SEC-02)."""


def check_task_input(
    data: object, field: str = "input", limit: int = MAX_TASK_INPUT_BYTES
) -> bytes:
    """``data`` as immutable bytes; InvalidValue(``field``) unless bytes of at most ``limit``
    (:data:`MAX_TASK_INPUT_BYTES` for data, :data:`MAX_STORED_TASK_DATA_BYTES` for rows)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidValue(field, "must be bytes")
    if len(data) > limit:
        raise InvalidValue(field, f"is longer than {limit} bytes")
    return bytes(data)


GENESIS_VERSION = "genesis"
"""The version name of a sub-model's untrained weights (deterministic, the same on every node)."""
MODEL_VERSION_PIN = r"(genesis|owm-v[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?)?"
"""What :attr:`TaskRequest.model_version` may hold: nothing, ``genesis`` or a release's
version (``owm_core.provenance.versions.VERSION_PATTERN``)."""

_TIER_RANK = {Tier.T1: 1, Tier.T2: 2, Tier.T3: 3}
_NAME = r"[a-z0-9][a-z0-9._:-]*"
_OUTPUT_HASH = r"[0-9a-f]{64}"
#: Built once: a validator built per call would compile its pattern and forget what it
#: accepted each time (capability names and output hashes are checked on every offer and
#: every verdict).
_CHECK_NAME = fields.text(max_len=64, pattern=_NAME)
_CHECK_OUTPUT_HASH = fields.text(min_len=64, max_len=64, pattern=_OUTPUT_HASH)


def tier_at_least(tier: Tier, minimum: Tier) -> bool:
    """Whether ``tier`` is ``minimum`` or a stronger hardware class (t1 < t2 < t3, SRS-NODE-03)."""
    return _TIER_RANK[tier] >= _TIER_RANK[minimum]


def _capability_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _names(_instance: object, attribute: attrs.Attribute[frozenset[str]], value: object) -> None:
    if not isinstance(value, frozenset) or not value:
        raise InvalidValue(attribute.name, "must name at least one capability")
    for name in value:
        _CHECK_NAME(None, attribute, name)


@attrs.frozen
class TaskRequest:
    """A submitted task: what to run, on what hardware, for at most how much (data flow 3).

    ``task_type`` is the capability a node must offer (e.g. ``inference``, ``training``);
    ``input_schema_id``/``input_schema_version`` name the schema its input was validated
    against. Resource needs: ``min_tier``, ``min_vram_mb``, ``min_ram_mb``, ``gpu_required``.
    """

    task_id: str = attrs.field(validator=fields.text(max_len=128))
    task_type: str = attrs.field(validator=fields.text(max_len=64, pattern=_NAME))
    input_schema_id: str = attrs.field(validator=fields.text(max_len=128))
    input_schema_version: int = attrs.field(validator=fields.integer(minimum=1))
    min_tier: Tier = attrs.field(validator=fields.instance_of(Tier))
    min_vram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    min_ram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    gpu_required: bool = attrs.field(validator=fields.instance_of(bool))
    max_price_msat: int = attrs.field(validator=fields.money())
    model_version: str = attrs.field(
        default="", validator=fields.text(min_len=0, max_len=64, pattern=MODEL_VERSION_PIN)
    )
    """The sub-model version every replica runs (``genesis`` for the untrained weights), set
    by the coordinator at submission for a task that runs a sub-model's weights, empty for the
    others (:func:`owm_core.provenance.releases.pinned_version`). One pin per task, so honest
    replicas on nodes that installed different versions still agree (SRS-SEC-11)."""

    def __attrs_post_init__(self) -> None:
        """VRAM is GPU memory: asking for it without a GPU is contradictory."""
        if self.min_vram_mb > 0 and not self.gpu_required:
            raise InvalidValue("gpu_required", "must be true when min_vram_mb > 0")


@attrs.frozen
class NodeOffer:
    """A node's standing offer: what it runs, on what hardware, at what ask (data flow 3).

    ``reliability_ppm`` is the node's track record in parts per million (1,000,000 = never
    failed); a node without a GPU has ``vram_mb == 0``.
    """

    node_id: str = attrs.field(validator=fields.text(max_len=128))
    capabilities: frozenset[str] = attrs.field(converter=_capability_set, validator=_names)
    tier: Tier = attrs.field(validator=fields.instance_of(Tier))
    has_gpu: bool = attrs.field(validator=fields.instance_of(bool))
    vram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    ram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    ask_msat: int = attrs.field(validator=fields.money())
    reliability_ppm: int = attrs.field(validator=fields.integer(0, PPM))

    def __attrs_post_init__(self) -> None:
        """A node without a GPU cannot claim GPU memory."""
        if self.vram_mb > 0 and not self.has_gpu:
            raise InvalidValue("vram_mb", "must be 0 for a node without a GPU")


@attrs.frozen
class Match:
    """An offer that fits a request, and the price both sides settle on."""

    offer: NodeOffer
    price_msat: int = attrs.field(validator=fields.money())

    @property
    def node_id(self) -> str:
        """The matched node."""
        return self.offer.node_id


def negotiated_price_msat(ask_msat: int, max_price_msat: int) -> int:
    """The agreed price: ``ask + (max − ask) // 2``, the midpoint floored (data flow 3).

    Splits the surplus between node and requester evenly; the odd msat stays with the
    requester. Always ``ask ≤ price ≤ max``; an ask above the maximum cannot be agreed.
    """
    for name, value in (("ask_msat", ask_msat), ("max_price_msat", max_price_msat)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidValue(name, f"must be an integer ≥ 0, got {value!r}")
    if ask_msat > max_price_msat:
        raise NoMatch(f"ask {ask_msat} msat exceeds the maximum price {max_price_msat} msat")
    return ask_msat + (max_price_msat - ask_msat) // 2


def _fits_resources(request: TaskRequest, offer: NodeOffer) -> bool:
    return (
        (offer.has_gpu or not request.gpu_required)
        and offer.vram_mb >= request.min_vram_mb
        and offer.ram_mb >= request.min_ram_mb
    )


def match(
    request: TaskRequest, offers: Iterable[NodeOffer], exclude: Iterable[str] = ()
) -> list[Match]:
    """Every offer that can run ``request``, best first, each with its negotiated price.

    Filters, in order: not excluded (e.g. nodes that already timed out on this task), offers
    the task type, tier ≥ ``min_tier``, GPU/VRAM/RAM, ask ≤ ``max_price_msat``. Ranking:
    lowest ask, then the highest :func:`dispatch_key` for this task (deterministic: anyone can
    recompute it), then ``node_id``. Raises ``NoMatch`` naming the first filter that left
    nothing.
    """
    listed = list(offers)
    if len({o.node_id for o in listed}) != len(listed):
        raise InvalidValue("offers", "a node appears more than once")
    excluded = set(exclude)
    stages: list[tuple[str, list[NodeOffer]]] = []
    remaining = [o for o in listed if o.node_id not in excluded]
    stages.append(("no offers from nodes not yet tried", remaining))
    remaining = [o for o in remaining if request.task_type in o.capabilities]
    stages.append((f"no offer serves task type {request.task_type!r}", remaining))
    remaining = [o for o in remaining if tier_at_least(o.tier, request.min_tier)]
    stages.append((f"no offer at tier {request.min_tier.value} or above", remaining))
    remaining = [o for o in remaining if _fits_resources(request, o)]
    stages.append(
        (
            f"no offer has gpu={request.gpu_required}, vram ≥ {request.min_vram_mb} MB and "
            f"ram ≥ {request.min_ram_mb} MB",
            remaining,
        )
    )
    remaining = [o for o in remaining if o.ask_msat <= request.max_price_msat]
    stages.append((f"every fitting offer asks more than {request.max_price_msat} msat", remaining))
    for reason, survivors in stages:
        if not survivors:
            raise NoMatch(f"task {request.task_id}: {reason}")
    ranked = sorted(
        remaining, key=lambda o: (o.ask_msat, -dispatch_key(request.task_id, o), o.node_id)
    )
    return [Match(o, negotiated_price_msat(o.ask_msat, request.max_price_msat)) for o in ranked]


DISPATCH_DOMAIN = b"owm/dispatch/v1\x00"


def dispatch_key(task_id: str, offer: NodeOffer) -> float:
    """The offer's lottery key for ``task_id``: ``u ** (1 / w)``, highest wins.

    ``u`` in (0, 1) comes from ``SHA-256(DISPATCH_DOMAIN + task_id + 0x00 + node_id)`` and ``w``
    is the node's reliability (ppm / 10^6). Ranking equal asks by this key draws each node first
    with probability ``w / Σw`` (weighted sampling without replacement, Efraimidis–Spirakis), so
    reliable nodes get more work but none is starved; reliability 0 never wins a draw.
    """
    digest = hashlib.sha256(
        DISPATCH_DOMAIN + task_id.encode("utf-8") + b"\x00" + offer.node_id.encode("utf-8")
    ).digest()
    u = (int.from_bytes(digest[:8], "big") + 0.5) / 2.0**64
    weight = offer.reliability_ppm / PPM
    return 0.0 if weight == 0 else float(u ** (1.0 / weight))


# --------------------------------------------------------------------------- verification


class VerificationMode(enum.Enum):
    """How a task's result is checked before anyone is paid (data flow 3)."""

    REDUNDANT = "redundant"
    SPOT_CHECK = "spot-check"


def _default_floor(policy: VerificationPolicy) -> int:
    return min(DEFAULT_REDUNDANCY_FLOOR, policy.redundancy)


def _floor_within_redundancy(
    instance: VerificationPolicy, attribute: attrs.Attribute[int], value: int
) -> None:
    fields.integer(1, instance.redundancy)(instance, attribute, value)


@attrs.frozen
class VerificationPolicy:
    """Redundant execution on ``redundancy`` nodes, or spot checks at ``spot_check_rate_ppm``.

    ``redundancy_floor`` (1 ≤ floor ≤ ``redundancy``, default ``min(2, redundancy)``) is the
    fewest replicas a redundant task runs on when fewer than ``redundancy`` nodes could take
    it; below the floor a task runs once and is spot-checked instead
    (:mod:`owm_core.market.redundancy`, graceful degradation, SRS-PERF-07).
    """

    mode: VerificationMode = attrs.field(
        default=VerificationMode.REDUNDANT, validator=fields.instance_of(VerificationMode)
    )
    redundancy: int = attrs.field(default=DEFAULT_REDUNDANCY, validator=fields.integer(1, 101))
    spot_check_rate_ppm: int = attrs.field(
        default=DEFAULT_SPOT_CHECK_RATE_PPM, validator=fields.integer(0, PPM)
    )
    redundancy_floor: int = attrs.field(
        default=attrs.Factory(_default_floor, takes_self=True),
        validator=_floor_within_redundancy,
    )


def _sorted_ids(value: Iterable[str]) -> tuple[str, ...]:
    if value == ():
        return ()  # every copy of a task never tried elsewhere: nothing to sort
    return tuple(sorted(value))


@attrs.frozen
class Verified:
    """The result holds: ``paid_node_ids`` delivered it, ``penalised_node_ids`` did not."""

    output_hash: str
    paid_node_ids: tuple[str, ...] = attrs.field(converter=_sorted_ids)
    penalised_node_ids: tuple[str, ...] = attrs.field(default=(), converter=_sorted_ids)
    spot_checked: bool = False


@attrs.frozen
class Failed:
    """No result can be trusted; nobody is paid and ``penalised_node_ids`` are flagged."""

    reason: str
    penalised_node_ids: tuple[str, ...] = attrs.field(converter=_sorted_ids)


Verdict = Verified | Failed


def spot_check_selected(policy: VerificationPolicy, task_id: str, seed: bytes) -> bool:
    """Whether ``task_id`` is re-executed by a verifier, drawn from the caller's ``seed``.

    The draw is ``SHA-256(seed ‖ task_id)`` mapped onto [0, 1,000,000); the task is checked
    when it falls below ``spot_check_rate_ppm``. Nodes cannot predict it without the seed.
    """
    if not isinstance(seed, bytes) or not seed:
        raise InvalidValue("seed", "must be non-empty bytes")
    digest = hashlib.sha256(b"owm-spot-check\x00" + seed + b"\x00" + task_id.encode()).digest()
    draw = int.from_bytes(digest[:8], "big") * PPM >> 64
    return draw < policy.spot_check_rate_ppm


def majority_output(results: Mapping[str, str], redundancy: int) -> str | None:
    """The output hash reported by more than half of the ``redundancy`` nodes, if any.

    Missing replies count against every hash, so silence never makes a majority. The answer
    depends only on the multiset of hashes, never on the order nodes replied in.
    """
    counts = Counter(results.values())
    for output, count in counts.items():
        if 2 * count > redundancy:
            return output
    return None


def _check_hashes(outputs: Iterable[str], field: str) -> None:
    attribute = attrs.fields(Verified).output_hash
    for output in outputs:
        try:
            _CHECK_OUTPUT_HASH(None, attribute, output)
        except InvalidValue as exc:
            raise InvalidValue(field, exc.reason) from None


def verify_outcome(
    policy: VerificationPolicy,
    task_id: str,
    results: Mapping[str, str],
    *,
    seed: bytes,
    reference_output_hash: str | None = None,
) -> Verdict:
    """Judge the output hashes ``results`` (node_id → SHA-256 hex) of one task (data flow 3).

    Redundant: up to ``redundancy`` results; a strict majority of ``redundancy`` wins, the
    agreeing nodes are paid, the others penalised; without a majority everyone who replied is
    penalised. Spot check: exactly one result; if :func:`spot_check_selected` picks the task,
    ``reference_output_hash`` (a trusted re-execution) must be given and must agree.
    """
    _check_hashes(results.values(), "results")
    if policy.mode is VerificationMode.REDUNDANT:
        if len(results) > policy.redundancy:
            raise InvalidValue("results", f"more than {policy.redundancy} redundant results")
        winner = majority_output(results, policy.redundancy)
        if winner is None:
            return Failed(
                f"no majority among {policy.redundancy} redundant executions", results.keys()
            )
        return Verified(
            winner,
            [n for n, h in results.items() if h == winner],
            [n for n, h in results.items() if h != winner],
        )
    if len(results) != 1:
        raise InvalidValue("results", "a spot-checked task has exactly one result")
    ((node_id, output),) = results.items()
    if not spot_check_selected(policy, task_id, seed):
        return Verified(output, [node_id])
    if reference_output_hash is None:
        raise InvalidValue("reference_output_hash", "this task was drawn for a spot check")
    if reference_output_hash != output:
        return Failed("spot check: output differs from the reference execution", [node_id])
    return Verified(output, [node_id], spot_checked=True)


# --------------------------------------------------------------------------- settlement


class SettlementKind(enum.Enum):
    """Paid, or forfeited (no payment, reliability penalty signal)."""

    SETTLE = "settle"
    FORFEIT = "forfeit"


@attrs.frozen
class Settlement:
    """What one node receives for one task; forfeits carry the reliability penalty signal."""

    task_id: str = attrs.field(validator=fields.text(max_len=128))
    node_id: str = attrs.field(validator=fields.text(max_len=128))
    kind: SettlementKind = attrs.field(validator=fields.instance_of(SettlementKind))
    amount_msat: int = attrs.field(validator=fields.money())

    def __attrs_post_init__(self) -> None:
        """A forfeit pays nothing."""
        if self.kind is SettlementKind.FORFEIT and self.amount_msat != 0:
            raise InvalidValue("amount_msat", "a forfeit pays nothing")

    @property
    def reliability_penalty(self) -> bool:
        """Whether the node's reliability should be lowered (every forfeit)."""
        return self.kind is SettlementKind.FORFEIT


def settlements_for(task_id: str, verdict: Verdict, price_msat: int) -> tuple[Settlement, ...]:
    """Pay every node the verdict credits ``price_msat``; every penalised node forfeits."""
    paid = verdict.paid_node_ids if isinstance(verdict, Verified) else ()
    return tuple(Settlement(task_id, n, SettlementKind.SETTLE, price_msat) for n in paid) + tuple(
        Settlement(task_id, n, SettlementKind.FORFEIT, 0) for n in verdict.penalised_node_ids
    )


# --------------------------------------------------------------------------- lifecycle


class TaskState(enum.Enum):
    """Where one task (or one replica of a redundant task) stands."""

    SUBMITTED = "submitted"
    ASSIGNED = "assigned"
    COMMITTED = "committed"
    COMPLETED = "completed"
    TIMED_OUT = "timed-out"
    VERIFIED = "verified"
    FAILED = "failed"
    SETTLED = "settled"
    FORFEITED = "forfeited"
    EXPIRED = "expired"


TERMINAL_STATES = frozenset({TaskState.SETTLED, TaskState.FORFEITED, TaskState.EXPIRED})
"""States a task ends in; every other state has a way forward."""
ASSIGNABLE_STATES = frozenset({TaskState.SUBMITTED, TaskState.TIMED_OUT})
"""States from which a task can be handed to a (new) node."""

_MOVES: dict[TaskState, frozenset[TaskState]] = {
    TaskState.SUBMITTED: frozenset({TaskState.ASSIGNED, TaskState.EXPIRED, TaskState.FORFEITED}),
    TaskState.ASSIGNED: frozenset(
        {TaskState.COMMITTED, TaskState.COMPLETED, TaskState.TIMED_OUT, TaskState.FORFEITED}
    ),
    TaskState.COMMITTED: frozenset({TaskState.COMPLETED, TaskState.FAILED}),
    TaskState.TIMED_OUT: frozenset({TaskState.ASSIGNED, TaskState.EXPIRED, TaskState.FORFEITED}),
    TaskState.COMPLETED: frozenset({TaskState.VERIFIED, TaskState.FAILED}),
    TaskState.VERIFIED: frozenset({TaskState.SETTLED}),
    TaskState.FAILED: frozenset({TaskState.FORFEITED}),
    TaskState.SETTLED: frozenset(),
    TaskState.FORFEITED: frozenset(),
    TaskState.EXPIRED: frozenset(),
}


@attrs.frozen
class Task:
    """One task's progress through the market; every step returns a new ``Task``.

    ``tried_node_ids`` lists nodes that timed out on it, so reassignment picks someone else.
    ``expires_at`` (POSIX seconds, None = never) is when the task expires if no node has
    taken any of its replicas by then (:func:`expire`).
    """

    request: TaskRequest = attrs.field(validator=fields.instance_of(TaskRequest))
    state: TaskState = attrs.field(
        default=TaskState.SUBMITTED, validator=fields.instance_of(TaskState)
    )
    node_id: str | None = None
    price_msat: int | None = None
    deadline_at: int | None = None
    output_hash: str | None = None
    tried_node_ids: tuple[str, ...] = attrs.field(default=(), converter=_sorted_ids)
    expires_at: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.timestamp())
    )

    @property
    def task_id(self) -> str:
        """The request's id."""
        return self.request.task_id


def _move(task: Task, to: TaskState, **changes: object) -> Task:
    if to not in _MOVES[task.state]:
        raise InvalidTransition(
            f"task {task.task_id} cannot go from {task.state.value} to {to.value}"
        )
    return fields.evolve(task, state=to, **changes)


def submit(request: TaskRequest, expires_at: int | None = None) -> Task:
    """A new task, waiting for a node until ``expires_at`` (None: until one comes)."""
    return Task(request, expires_at=expires_at)


def assign(
    task: Task, chosen: Match, now: int, timeout_s: int = DEFAULT_ASSIGNMENT_TIMEOUT_S
) -> Task:
    """Hand the task to ``chosen`` (submitted or timed-out → assigned) until ``now + timeout_s``.

    The price must be one :func:`match` could agree (≤ the request's maximum, ≥ the ask), and a
    node that already timed out on this task is not chosen again.
    """
    if task.state not in ASSIGNABLE_STATES:
        raise InvalidTransition(f"task {task.task_id} is {task.state.value}, not assignable")
    if chosen.node_id in task.tried_node_ids:
        raise InvalidTransition(f"node {chosen.node_id} already timed out on {task.task_id}")
    if not chosen.offer.ask_msat <= chosen.price_msat <= task.request.max_price_msat:
        raise InvalidValue("price_msat", "must lie between the ask and the maximum price")
    for name, value in (("now", now), ("timeout_s", timeout_s)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidValue(name, f"must be an integer ≥ 0, got {value!r}")
    return _move(
        task,
        TaskState.ASSIGNED,
        node_id=chosen.node_id,
        price_msat=chosen.price_msat,
        deadline_at=now + timeout_s,
        output_hash=None,
    )


def commit(task: Task, now: int) -> Task:
    """The assigned node committed to its output by its deadline (assigned → committed).

    A committed replica no longer times out: its node did its work and now waits for the
    other replicas' commitments before it may reveal (commit–reveal, SRS-SEC-11).
    """
    if task.state is TaskState.ASSIGNED and task.deadline_at is not None and now > task.deadline_at:
        raise InvalidTransition(f"task {task.task_id} passed its deadline; time it out instead")
    return _move(task, TaskState.COMMITTED)


def fail_silent(task: Task) -> Task:
    """A committed replica whose node never revealed (committed → failed): like a wrong answer."""
    return _move(task, TaskState.FAILED)


def abandon(task: Task) -> Task:
    """A replica nobody committed to before its task's commit window closed (→ forfeited).

    No node delivered it, so nobody is paid or penalised for it: no settlement follows.
    """
    if task.state not in {TaskState.SUBMITTED, TaskState.ASSIGNED, TaskState.TIMED_OUT}:
        raise InvalidTransition(f"task {task.task_id} is {task.state.value}; cannot abandon it")
    tried = (*task.tried_node_ids, task.node_id) if task.node_id else task.tried_node_ids
    return _move(task, TaskState.FORFEITED, node_id=None, price_msat=None, tried_node_ids=tried)


def complete(task: Task, output_hash: str, now: int) -> Task:
    """The node delivered ``output_hash`` (assigned or committed → completed); an assigned
    replica only by its deadline."""
    if task.state is TaskState.ASSIGNED and task.deadline_at is not None and now > task.deadline_at:
        raise InvalidTransition(f"task {task.task_id} passed its deadline; time it out instead")
    _check_hashes([output_hash], "output_hash")
    return _move(task, TaskState.COMPLETED, output_hash=output_hash)


def time_out(task: Task, now: int) -> Task:
    """The node missed its deadline (assigned → timed-out); the task becomes assignable again."""
    if (
        task.state is TaskState.ASSIGNED
        and task.deadline_at is not None
        and now <= task.deadline_at
    ):
        raise InvalidTransition(f"task {task.task_id} is within its deadline")
    tried = (*task.tried_node_ids, task.node_id) if task.node_id else task.tried_node_ids
    return _move(task, TaskState.TIMED_OUT, tried_node_ids=tried, node_id=None, price_msat=None)


def expire(task: Task) -> Task:
    """Nobody ran the task in time (submitted or timed-out → expired): it is never assigned
    again and its funding is refunded. Terminal: nobody is paid, nobody is penalised. The
    market expires a task past its ``expires_at`` (``[tasks] queue_timeout_s``), funding one
    past ``[funding] task_ttl_s``."""
    return _move(task, TaskState.EXPIRED, node_id=None, price_msat=None)


def record_verdict(task: Task, verdict: Verdict) -> Task:
    """Apply the verification verdict to this task's node (completed → verified | failed).

    Verified only if the verdict pays this node; a dissenting replica or a failed check fails.
    """
    ok = isinstance(verdict, Verified) and task.node_id in verdict.paid_node_ids
    return _move(task, TaskState.VERIFIED if ok else TaskState.FAILED)


def settle(task: Task) -> tuple[Task, Settlement]:
    """Close the books on the task (verified → settled paying the price; failed → forfeited).

    A forfeit pays nothing and signals a reliability penalty for the node.
    """
    if task.state is TaskState.VERIFIED and task.node_id and task.price_msat is not None:
        done = _move(task, TaskState.SETTLED)
        return done, Settlement(task.task_id, task.node_id, SettlementKind.SETTLE, task.price_msat)
    if task.state is TaskState.FAILED and task.node_id:
        done = _move(task, TaskState.FORFEITED)
        return done, Settlement(task.task_id, task.node_id, SettlementKind.FORFEIT, 0)
    raise InvalidTransition(f"task {task.task_id} is {task.state.value}; nothing to settle")
