"""The coordinator application: the use cases of :mod:`owm_core.coordination` with their I/O.

:class:`CoordinatorService` owns what the pure use cases cannot: locks (a threaded gRPC server
calls it concurrently), the clock and the OS randomness, the in-memory state of one coordinator
process (outstanding challenges, the replay guard, the registration limiter, open task streams),
the heartbeat writer thread that persists verified heartbeats in batches (SRS-PERF-04), the
heartbeat verifier threads (large batches' Ed25519 checks, which release the GIL), and the
market thread that times out overdue assignments and dispatches waiting tasks (SRS-PERF-09).

Durability rules: a submitted task (with its input bytes) is committed before
:meth:`submit_task` returns, a proof
before :meth:`submit_proof` returns, and a heartbeat before :meth:`heartbeat` returns (it waits
for the batch it joined). Tasks already assigned to a node are pushed again when the node
reopens its stream (after a disconnect or a coordinator restart). A replica its node rejects
(:meth:`CoordinatorService.reject_task`, SRS-NODE-07) is dispatched again before the call
returns; rejection reasons are logged and kept in this process's memory (the latest
:data:`MAX_REMEMBERED_REJECTIONS` tasks) for :meth:`CoordinatorService.rejections`.

Shells (gRPC, HTTP, CLI) call this class only; :class:`CoordinatorObserver` is how metrics
learn about events without this module importing a metrics library.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import attrs

from owm_core.access.ratelimit import (
    SlidingWindowLimiter,
    Transport,
    registration_limit,
)
from owm_core.coordination.challenges import Challenge, ChallengeBook, ChallengePurpose
from owm_core.coordination.heartbeats import (
    HeartbeatFields,
    KnownNode,
    admit_heartbeat,
    verify_heartbeat,
)
from owm_core.coordination.registration import (
    Registered,
    Registration,
    deregister_node,
    node_status,
    register_node,
)
from owm_core.coordination.rejections import (
    Rejection,
    RejectionOutcome,
    open_rejection,
    reject_task,
)
from owm_core.coordination.stakes import (
    StakeTerms,
    recheck_stake,
    reverify_due_stakes,
    stake_of,
    stake_terms,
)
from owm_core.coordination.tasks import (
    Assignment,
    ProofOutcome,
    accept_proof,
    offer_of,
    plan_dispatch,
    siblings,
    submit_task,
    task_outcome,
    time_out_overdue,
    verified_output,
)
from owm_core.coordination.wire import open_envelope
from owm_core.errors import (
    DomainError,
    InvalidTransition,
    InvalidValue,
    NotFound,
)
from owm_core.identity.envelopes import CapabilityManifest, EnvelopeKind, ReplayGuard, open_body
from owm_core.identity.keys import node_id_from_public_key
from owm_core.market.tasks import (
    NodeOffer,
    Settlement,
    Task,
    TaskRequest,
    TaskState,
    VerificationPolicy,
)
from owm_core.nodes.registry import Liveness, Node, NodeStatus
from owm_core.nodes.tiers import StakeRequirements, Tier
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import Stake, StakePolicy, StakeStatus

log = logging.getLogger(__name__)

DEFAULT_ASSIGNMENT_TIMEOUT_S = 600
DEFAULT_TICK_S = 0.2
DEFAULT_FLUSH_S = 0.05
DEFAULT_BATCH_MAX = 5_000
WARM_KNOWN_MIN = 32
"""A heartbeat batch naming this many uncached nodes loads the whole registry once."""
VERIFY_CHUNK = 128
"""Heartbeats per task handed to the verifier threads (a batch of fewer than two stays inline)."""
MAX_WAITING_SCAN = 1_000
MAX_REMEMBERED_REJECTIONS = 10_000
_CLOSED = object()


class CoordinatorObserver(Protocol):
    """What metrics want to hear about (registry size and task counts are polled instead)."""

    def heartbeats_accepted(self, count: int) -> None:
        """``count`` heartbeats passed verification."""
        ...

    def heartbeats_rejected(self, count: int) -> None:
        """``count`` heartbeats were refused (signature, replay, unknown node, stale manifest)."""
        ...

    def task_dispatched(self, latency_s: float) -> None:
        """A replica was pushed to a node ``latency_s`` after it became assignable."""
        ...


class _NoObserver:
    def heartbeats_accepted(self, count: int) -> None:
        pass

    def heartbeats_rejected(self, count: int) -> None:
        pass

    def task_dispatched(self, latency_s: float) -> None:
        pass


@attrs.frozen
class PushedTask:
    """One assignment as it goes down a node's task stream."""

    task: Task
    assigned_at_ms: int
    input: bytes


@attrs.define
class TaskStreamHandle:
    """A node's open task stream: its offer and the queue of assignments pushed to it."""

    node_id: str
    offer: NodeOffer
    queue: queue.Queue[object] = attrs.field(factory=queue.Queue)
    closed: bool = False

    def next(self, timeout_s: float) -> PushedTask | None:
        """The next assignment, or None after ``timeout_s`` (raises StopIteration once closed)."""
        try:
            item = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self.closed = True
            raise StopIteration
        assert isinstance(item, PushedTask)
        return item


@attrs.frozen
class HeartbeatResult:
    """Accepted / rejected counts of a heartbeat batch, with the first few reasons."""

    accepted: int
    rejected: int
    errors: tuple[str, ...] = ()


@attrs.define
class ServiceConfig:
    """Tuning of one coordinator process (from ``[tasks]`` and defaults)."""

    verification: VerificationPolicy = attrs.field(factory=VerificationPolicy)
    assignment_timeout_s: int = DEFAULT_ASSIGNMENT_TIMEOUT_S
    liveness: Liveness = attrs.field(factory=Liveness)
    stake_requirements: StakeRequirements = attrs.field(factory=StakeRequirements)
    tick_s: float = DEFAULT_TICK_S
    heartbeat_flush_s: float = DEFAULT_FLUSH_S
    heartbeat_batch_max: int = DEFAULT_BATCH_MAX
    stake_check_s: float = 60.0
    #: Re-verification period, degraded grace and cooldown (SRS-STAKE-02/03/07).
    stake_policy: StakePolicy = attrs.field(factory=StakePolicy)


def _verify_chunk(raws: Sequence[bytes]) -> list[HeartbeatFields | DomainError]:
    checked: list[HeartbeatFields | DomainError] = []
    for raw in raws:
        try:
            checked.append(verify_heartbeat(raw))
        except DomainError as exc:
            checked.append(exc)
    return checked


class CoordinatorService:
    """One coordinator process: registry, heartbeats, task market (see module docstring)."""

    def __init__(
        self,
        repositories: Repositories,
        lightning: Lightning,
        clock: Clock,
        config: ServiceConfig | None = None,
        *,
        entropy: Callable[[int], bytes] = os.urandom,
        observer: CoordinatorObserver | None = None,
        settlement_listeners: Sequence[Callable[[Settlement], None]] = (),
    ) -> None:
        self.repositories = repositories
        self.lightning = lightning
        self.clock = clock
        self.config = config or ServiceConfig()
        self.observer: CoordinatorObserver = observer or _NoObserver()
        self._entropy = entropy
        self._seed = entropy(32)
        self._challenges = ChallengeBook()
        self._guard = ReplayGuard()
        self._limiters = {t: SlidingWindowLimiter(registration_limit(t)) for t in Transport}
        self._auth_lock = threading.Lock()
        self._guard_lock = threading.Lock()
        self._market_lock = threading.RLock()
        self._known: dict[str, KnownNode] = {}
        self._known_lock = threading.Lock()
        self._known_warm_lock = threading.Lock()
        self._known_warmed = False
        self._verifiers: ThreadPoolExecutor | None = None
        self._verifiers_lock = threading.Lock()
        self._streams: dict[str, TaskStreamHandle] = {}
        self._inputs: dict[str, bytes] = {}
        self._ready_ms: dict[str, int] = {}
        #: Told of every settlement after its proof is stored (the payout dispatcher, the
        #: fake-proof detector); a failing listener is logged and the others still run.
        self._settlement_listeners = tuple(settlement_listeners)
        self._task_changed = threading.Condition()
        self._task_changes = 0
        self._rejections: OrderedDict[str, list[Rejection]] = OrderedDict()
        self._hb_cond = threading.Condition()
        self._hb_write_lock = threading.Lock()
        self._hb_pending: dict[str, int] = {}
        self._hb_open_gen = 1
        self._hb_flushed_gen = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat writer and the market thread (a no-op while they run)."""
        if self._threads:
            return
        for name, target in (("owm-hb-writer", self._run_writer), ("owm-market", self._run_market)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close task streams, flush pending heartbeats, stop the threads (graceful shutdown)."""
        self._stopping.set()
        with self._market_lock:
            for handle in list(self._streams.values()):
                handle.queue.put(_CLOSED)
            self._streams.clear()
        with self._hb_cond:
            self._hb_cond.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
        with self._verifiers_lock:
            verifiers, self._verifiers = self._verifiers, None
        if verifiers is not None:
            verifiers.shutdown(wait=True)  # lets running batches finish their chunks
        if self._hb_pending:
            self._flush_once()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    # -- registration ------------------------------------------------------------------------

    def challenge(self, public_key: str, purpose: str) -> Challenge:
        """Issue a one-use challenge for ``public_key`` and ``purpose`` (SRS-SEC-03)."""
        try:
            kind = ChallengePurpose(purpose)
        except ValueError:
            raise InvalidValue("purpose", "must be register, task_stream or deregister") from None
        with self._auth_lock:
            return self._challenges.issue(public_key, kind, self._entropy(32), self.clock.now())

    def register(
        self,
        registration: Registration,
        *,
        challenge_nonce: str,
        signature: str,
        transport: Transport,
        client_ip: str | None,
    ) -> Registered:
        """Register a node (spec 4.12.2).

        See :func:`owm_core.coordination.registration.register_node`.
        """
        with self._auth_lock:
            registered = register_node(
                self.repositories,
                self.lightning,
                self._limiters[transport],
                self._challenges,
                registration,
                challenge_nonce=challenge_nonce,
                signature=signature,
                transport=transport,
                client_ip=client_ip,
                now=self.clock.now(),
                requirements=self.config.stake_requirements,
                policy=self.config.stake_policy,
            )
        manifest = self.repositories.manifests.get(registered.node.node_id)
        if manifest is not None:
            digest = CapabilityManifest.from_body(manifest.body).digest()
            with self._known_lock:
                self._known[registered.node.node_id] = KnownNode(
                    registered.node.public_key, digest
                )
        return registered

    def deregister(self, public_key: str, challenge_nonce: str, signature: str) -> Stake:
        """Leave cooperatively after an answered challenge (SRS-STAKE-08)."""
        now = self.clock.now()
        with self._auth_lock:
            self._challenges.redeem(
                public_key, ChallengePurpose.DEREGISTER, challenge_nonce, signature, {}, now
            )
        stake = deregister_node(self.repositories, public_key, now)
        node_id = stake_node_id(stake)
        with self._known_lock:
            self._known.pop(node_id, None)
        with self._market_lock:
            handle = self._streams.pop(node_id, None)
        if handle is not None:
            handle.queue.put(_CLOSED)
        return stake

    def stake_terms(self, tier: str) -> StakeTerms:
        """What a node of ``tier`` must lock before registering (SRS-NODE-11); no auth needed."""
        return stake_terms(self.lightning, tier, self.config.stake_requirements)

    def stake_status(self, node_id: str | None, public_key: str | None) -> Stake:
        """The stake record of a node (spec 4.12)."""
        return stake_of(self.repositories, node_id, public_key)

    def status_of(self, node_id: str) -> NodeStatus:
        """online / offline / suspended for ``node_id`` now (spec §5.1)."""
        node = self.repositories.nodes.get(node_id)
        if node is None:
            raise NotFound(f"no node {node_id}")
        stake = self.repositories.stakes.get(node.public_key)
        return node_status(node, stake, self.clock.now(), self.config.liveness)

    def registry_counts(self) -> dict[str, int]:
        """How many registered nodes are online, offline and suspended (metrics)."""
        counts = {status.value: 0 for status in NodeStatus}
        now = self.clock.now()
        for node in self.repositories.nodes.list():
            stake = self.repositories.stakes.get(node.public_key)
            counts[node_status(node, stake, now, self.config.liveness).value] += 1
        return counts

    def task_counts(self, limit: int = 100_000) -> dict[str, int]:
        """How many replicas are in each task state (metrics; capped at ``limit`` per state)."""
        return {s.value: len(self.repositories.tasks.with_state(s, limit)) for s in TaskState}

    # -- heartbeats --------------------------------------------------------------------------

    def heartbeat(self, raw: bytes, manifest_raw: bytes = b"") -> tuple[str, NodeStatus]:
        """Verify one heartbeat (and an optional new manifest); return once it is persisted.

        Returns the node id and its status after the heartbeat.
        """
        if manifest_raw:
            self._replace_manifest(manifest_raw)
        node_id, at = self._check_heartbeat(raw)
        generation = self._enqueue({node_id: at})
        self.observer.heartbeats_accepted(1)
        self._wait_flushed(generation)
        return node_id, self.status_of(node_id)

    def heartbeats(self, raws: Iterable[bytes], wait: bool = True) -> HeartbeatResult:
        """Verify a batch of heartbeats; persist the accepted ones in the writer's next batch.

        With ``wait`` the call returns once that batch is committed.
        """
        seen: dict[str, int] = {}
        errors: list[str] = []
        accepted = rejected = 0
        checked = self._verify_all(list(raws))
        if not self._known_warmed:
            self._warm_known(checked)
        for item in checked:
            try:
                if isinstance(item, DomainError):
                    raise item
                node_id, at = self._admit_heartbeat(item)
            except DomainError as exc:
                rejected += 1
                if len(errors) < 5:
                    errors.append(exc.message)
                continue
            accepted += 1
            if at > seen.get(node_id, -1):
                seen[node_id] = at
        if rejected:
            self.observer.heartbeats_rejected(rejected)
        if seen:
            self.observer.heartbeats_accepted(accepted)
            generation = self._enqueue(seen)
            if wait:
                self._wait_flushed(generation)
        return HeartbeatResult(accepted=accepted, rejected=rejected, errors=tuple(errors))

    def _check_heartbeat(self, raw: bytes) -> tuple[str, int]:
        return self._admit_heartbeat(verify_heartbeat(raw))

    def _admit_heartbeat(self, body: HeartbeatFields) -> tuple[str, int]:
        """Admit a verified heartbeat by the core's rule (:func:`admit_heartbeat`, SRS-NODE-04).

        Only the I/O is here: the node's key and manifest digest come from the cache, reloaded
        first when the heartbeat cites another manifest (another coordinator process may have
        stored a newer one, SRS-COORD-05); the replay guard is shared, hence the lock.
        """
        known = self._lookup_known(body.node_id)
        if known is not None and known.manifest_digest != body.manifest_digest:
            with self._known_lock:
                self._known.pop(body.node_id, None)
            known = self._lookup_known(body.node_id)
        now = self.clock.now()
        with self._guard_lock:
            return admit_heartbeat(body, known, self._guard, now)

    def _verify_all(self, raws: list[bytes]) -> list[HeartbeatFields | DomainError]:
        """Signature and shape of every heartbeat in ``raws``, in order (no replay guard yet).

        Why threads: the Ed25519 check releases the GIL, so a large batch is cut into chunks
        verified on one thread per core (started on first use, shut down by :meth:`stop`);
        small batches are verified inline (SRS-PERF-04).
        """
        cores = os.cpu_count() or 1
        if len(raws) < 2 * VERIFY_CHUNK or cores < 2 or self.stopping:
            return _verify_chunk(raws)
        with self._verifiers_lock:
            if self._verifiers is None:
                self._verifiers = ThreadPoolExecutor(cores, thread_name_prefix="owm-hb-verify")
            verifiers = self._verifiers
        chunks = [raws[i : i + VERIFY_CHUNK] for i in range(0, len(raws), VERIFY_CHUNK)]
        try:
            futures = [verifiers.submit(_verify_chunk, chunk) for chunk in chunks]
        except RuntimeError:  # shut down by stop() meanwhile
            return _verify_chunk(raws)
        return [item for future in futures for item in future.result()]

    def _warm_known(self, checked: Iterable[HeartbeatFields | DomainError]) -> None:
        """Load every registered node's key and manifest digest into the cache, once.

        Why: a coordinator that has just started would otherwise spend two queries (about a
        millisecond of Python, holding the GIL) on each node's first heartbeat (SRS-PERF-04).
        Only a batch naming at least :data:`WARM_KNOWN_MIN` uncached nodes triggers it, and only
        once per process; cached entries are never overwritten, and later misses (new nodes,
        newer manifests) take the per-node path of :meth:`_lookup_known`.
        """
        with self._known_lock:
            missing = {
                c.node_id
                for c in checked
                if not isinstance(c, DomainError) and c.node_id not in self._known
            }
        if len(missing) < WARM_KNOWN_MIN:
            return
        with self._known_warm_lock:
            if self._known_warmed:
                return
            keys = {n.node_id: n.public_key for n in self.repositories.nodes.list()}
            loaded: dict[str, KnownNode] = {}
            for envelope in self.repositories.manifests.matching(Tier.T1, 0, 0):
                node_id = envelope.signer_node_id
                if keys.get(node_id) is not None:
                    digest = CapabilityManifest.from_body(envelope.body).digest()
                    loaded[node_id] = KnownNode(keys[node_id], digest)
            with self._known_lock:
                for node_id, known in loaded.items():
                    self._known.setdefault(node_id, known)
            self._known_warmed = True

    def _known_node(self, node_id: str) -> KnownNode:
        known = self._lookup_known(node_id)
        if known is None:
            raise NotFound(f"node {node_id} is not registered")
        return known

    def _lookup_known(self, node_id: str) -> KnownNode | None:
        """A registered node's key and current manifest digest (cached), or None."""
        with self._known_lock:
            known = self._known.get(node_id)
        if known is not None:
            return known
        node = self.repositories.nodes.get(node_id)
        manifest = self.repositories.manifests.get(node_id)
        if node is None or manifest is None:
            return None
        known = KnownNode(node.public_key, CapabilityManifest.from_body(manifest.body).digest())
        with self._known_lock:
            self._known[node_id] = known
        return known

    def _replace_manifest(self, raw: bytes) -> None:
        envelope = open_envelope(raw, EnvelopeKind.CAPABILITY_MANIFEST, "manifest_envelope")
        manifest = open_body(envelope)
        assert isinstance(manifest, CapabilityManifest)
        node_id = envelope.signer_node_id
        self._known_node(node_id)
        with self._guard_lock:
            self._guard.accept(envelope, self.clock.now())
        self.repositories.manifests.put(envelope)
        with self._known_lock:
            self._known[node_id] = KnownNode(envelope.signer, manifest.digest())

    def _enqueue(self, seen: dict[str, int]) -> int:
        with self._hb_cond:
            pending = self._hb_pending
            was_empty = not pending
            for node_id, at in seen.items():
                if at > pending.get(node_id, -1):
                    pending[node_id] = at
            if was_empty or len(pending) >= self.config.heartbeat_batch_max:
                self._hb_cond.notify_all()
            return self._hb_open_gen

    def _wait_flushed(self, generation: int, timeout_s: float = 30.0) -> None:
        with self._hb_cond:
            ok = self._hb_cond.wait_for(
                lambda: self._hb_flushed_gen >= generation or not self._threads, timeout_s
            )
        if not ok or not self._threads:
            self._flush_once()

    def flush_heartbeats(self) -> None:
        """Persist every pending heartbeat now (tests, shutdown)."""
        self._flush_once()

    def _flush_once(self) -> None:
        with self._hb_write_lock:
            with self._hb_cond:
                batch, self._hb_pending = self._hb_pending, {}
                generation = self._hb_open_gen
                self._hb_open_gen += 1
            if batch:
                self.repositories.nodes.record_heartbeats(batch)
        with self._hb_cond:
            self._hb_flushed_gen = max(self._hb_flushed_gen, generation)
            self._hb_cond.notify_all()

    def _run_writer(self) -> None:
        flush_s = self.config.heartbeat_flush_s
        batch_max = self.config.heartbeat_batch_max
        while True:
            with self._hb_cond:
                self._hb_cond.wait_for(lambda: bool(self._hb_pending) or self.stopping)
                if self.stopping and not self._hb_pending:
                    return
                deadline = time.monotonic() + flush_s
                while len(self._hb_pending) < batch_max and not self.stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._hb_cond.wait(remaining)
            try:
                self._flush_once()
            except Exception:
                log.exception("heartbeat batch could not be written; retrying")
                time.sleep(flush_s)

    # -- task market -------------------------------------------------------------------------

    def submit_task(self, request: TaskRequest, input_data: bytes = b"") -> list[Task]:
        """Store a task's replicas and its input durably, then dispatch them at once.

        Replicas and input are one atomic write, committed before this returns, so a task
        re-pushed after a coordinator restart still carries its input (SRS-PERF-09).
        """
        with self.repositories.atomic():
            replicas = submit_task(self.repositories, request, self.config.verification)
            if input_data:
                self.repositories.task_inputs.put(request.task_id, input_data)
        now_ms = self.clock.monotonic_ms()
        with self._market_lock:
            self._inputs[request.task_id] = input_data
            for replica in replicas:
                self._ready_ms[replica.task_id] = now_ms
            self._dispatch_locked()
        return replicas

    def new_task_id(self) -> str:
        """A fresh random task id for submitters that bring none."""
        return "t" + self._entropy(16).hex()

    def task(self, task_id: str) -> tuple[list[Task], str]:
        """The replicas of a submitted task and its outcome (pending / verified / failed)."""
        replicas = siblings(self.repositories, task_id)
        if not replicas:
            raise NotFound(f"no task {task_id}")
        return replicas, task_outcome(replicas)

    def await_task(self, task_id: str, timeout_s: float) -> tuple[list[Task], str]:
        """:meth:`task`, once its outcome is no longer pending or after ``timeout_s`` seconds.

        Woken by every stored proof and every assignment timeout (and at least once a second),
        so a submitter (the query path) learns of a verdict as soon as the coordinator reaches
        it. The store is read outside the condition's lock: many waiters never queue behind
        each other's reads, nor delay the proof that wakes them.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with self._task_changed:
                seen = self._task_changes
            replicas, outcome = self.task(task_id)
            remaining = deadline - time.monotonic()
            if outcome != "pending" or remaining <= 0:
                return replicas, outcome
            with self._task_changed:
                if self._task_changes == seen:  # nothing changed since the read: sleep
                    self._task_changed.wait(min(remaining, 1.0))

    def task_output(self, task_id: str) -> bytes | None:
        """The verified output of a submitted task (canonical JSON bytes), or None while it is
        pending, when it failed, or when its nodes did not deliver outputs."""
        return verified_output(self.repositories, task_id)

    def _announce_task_change(self) -> None:
        with self._task_changed:
            self._task_changes += 1
            self._task_changed.notify_all()

    def open_task_stream(
        self,
        public_key: str,
        challenge_nonce: str,
        signature: str,
        capabilities: Sequence[str],
        ask_msat: int,
    ) -> TaskStreamHandle:
        """Open a node's task stream after an answered challenge; offer = manifest + ask.

        Only nodes with an active stake receive tasks (spec 4.12.2). Replicas already assigned
        to the node are queued again first.
        """
        details = {"ask_msat": ask_msat, "capabilities": sorted(capabilities)}
        with self._auth_lock:
            self._challenges.redeem(
                public_key,
                ChallengePurpose.TASK_STREAM,
                challenge_nonce,
                signature,
                details,
                self.clock.now(),
            )
        node, manifest = self._active_node(public_key)
        offer = offer_of(node, manifest, capabilities, ask_msat)
        handle = TaskStreamHandle(node.node_id, offer)
        with self._market_lock:
            previous = self._streams.pop(node.node_id, None)
            if previous is not None:
                previous.queue.put(_CLOSED)
            self._streams[node.node_id] = handle
            for task in self.repositories.tasks.assigned_to(node.node_id):
                handle.queue.put(self._pushed(task))
            self._dispatch_locked()
        return handle

    def streaming_offers(self) -> list[NodeOffer]:
        """The offers of the nodes whose task streams are open now (who can take work)."""
        with self._market_lock:
            return [handle.offer for handle in self._streams.values()]

    def close_task_stream(self, handle: TaskStreamHandle) -> None:
        """Forget a stream whose node went away; its assignments run to their deadline."""
        with self._market_lock:
            if self._streams.get(handle.node_id) is handle:
                del self._streams[handle.node_id]

    def _active_node(self, public_key: str) -> tuple[Node, CapabilityManifest]:
        stake = self.repositories.stakes.get(public_key)
        if stake is None:
            raise NotFound("no node is registered with this public key")
        if stake.status is StakeStatus.PENDING:  # has the funding confirmed since?
            stake = recheck_stake(
                self.repositories,
                self.lightning,
                stake,
                self.clock.now(),
                self.config.stake_requirements,
                self.config.stake_policy,
            )
        if stake.status is not StakeStatus.ACTIVE:
            raise InvalidTransition(f"stake is {stake.status.value}; tasks need an active stake")
        node_id = stake_node_id(stake)
        node = self.repositories.nodes.get(node_id)
        envelope = self.repositories.manifests.get(node_id)
        if node is None or envelope is None:
            raise NotFound("no node is registered with this public key")
        return node, CapabilityManifest.from_body(envelope.body)

    def submit_proof(self, raw: bytes, output: bytes = b"") -> ProofOutcome:
        """Verify and durably store a task proof (and the output the node delivered with it,
        which must hash to the proof's output hash), then verify/settle the task (SRS 4.1)."""
        with self._market_lock:
            outcome = accept_proof(
                self.repositories,
                raw,
                self.clock.now(),
                self.config.verification,
                self._seed,
                output,
            )
            if outcome.settlements:
                self._forget_input(outcome.task.task_id.rpartition(":")[0])
            self._dispatch_locked()
        self._announce_task_change()
        for settlement in outcome.settlements:
            for listener in self._settlement_listeners:
                try:
                    listener(settlement)
                except Exception:
                    log.exception("settlement listener failed")
        return outcome

    def reject_task(self, raw: bytes) -> RejectionOutcome:
        """The assigned node refuses a replica (SRS-NODE-07): record why, dispatch it again now.

        The envelope is verified and checked for replays first; only the node the replica is
        assigned to may reject it (InvalidTransition otherwise). The replica is offered to the
        other connected nodes before this returns, without waiting for the assignment timeout;
        the outcome carries the replica as it stands after that dispatch.
        """
        now = self.clock.now()
        with self._guard_lock:
            envelope, body = open_rejection(raw, self._guard, now)
        with self._market_lock:
            outcome = reject_task(self.repositories, envelope, body, now)
            rejection = outcome.rejection
            group = outcome.task.task_id.rpartition(":")[0]
            self._rejections.setdefault(group, []).append(rejection)
            self._rejections.move_to_end(group)
            while len(self._rejections) > MAX_REMEMBERED_REJECTIONS:
                self._rejections.popitem(last=False)
            self._ready_ms[outcome.task.task_id] = self.clock.monotonic_ms()
            self._dispatch_locked()
            current = self.repositories.tasks.get(outcome.task.task_id)
            if current is not None:  # already handed to another node, most likely
                outcome = attrs.evolve(outcome, task=current)
        log.info(
            "node %s rejected task %s: field %r: %r",
            rejection.node_id, rejection.replica_id, rejection.field, rejection.reason,
        )
        return outcome

    def rejections(self, task_id: str) -> dict[str, list[Rejection]]:
        """The rejections this process recorded for a submitted task, by replica id."""
        with self._market_lock:
            recorded = list(self._rejections.get(task_id, ()))
        by_replica: dict[str, list[Rejection]] = {}
        for rejection in recorded:
            by_replica.setdefault(rejection.replica_id, []).append(rejection)
        return by_replica

    def tick(self) -> list[Task]:
        """Time out overdue assignments and dispatch waiting replicas; return the timed-out."""
        with self._market_lock:
            late = time_out_overdue(self.repositories, self.clock.now())
            now_ms = self.clock.monotonic_ms()
            for task in late:
                self._ready_ms[task.task_id] = now_ms
            self._dispatch_locked()
        if late:
            self._announce_task_change()
        return late

    def reverify_stakes(self) -> list[Stake]:
        """Re-verify the stakes that are due (SRS-STAKE-02/03); return their new records."""
        return reverify_due_stakes(
            self.repositories,
            self.lightning,
            self.clock.now(),
            self.config.stake_requirements,
            self.config.stake_policy,
        )

    def _run_market(self) -> None:
        next_stake_check = 0.0
        while not self._stopping.wait(self.config.tick_s):
            try:
                self.tick()
            except Exception:
                log.exception("market tick failed")
            if time.monotonic() >= next_stake_check:
                next_stake_check = time.monotonic() + self.config.stake_check_s
                try:
                    self.reverify_stakes()
                except Exception:
                    log.exception("stake re-verification failed; retrying later")

    def _dispatch_locked(self) -> list[Assignment]:
        if not self._streams:
            return []
        waiting = [
            *self.repositories.tasks.with_state(TaskState.SUBMITTED, MAX_WAITING_SCAN),
            *self.repositories.tasks.with_state(TaskState.TIMED_OUT, MAX_WAITING_SCAN),
        ]
        if not waiting:
            return []
        now = self.clock.now()
        offers = []
        for node_id, handle in self._streams.items():
            node = self.repositories.nodes.get(node_id)
            if node is None:
                continue
            stake = self.repositories.stakes.get(node.public_key)
            if node_status(node, stake, now, self.config.liveness) is NodeStatus.ONLINE:
                offers.append(attrs.evolve(handle.offer, reliability_ppm=node.reliability_ppm))
        if not offers:
            return []
        assignments = plan_dispatch(
            self.repositories, waiting, offers, now, self.config.assignment_timeout_s
        )
        now_ms = self.clock.monotonic_ms()
        for assignment in assignments:
            self._streams[assignment.node_id].queue.put(self._pushed(assignment.task))
            ready = self._ready_ms.pop(assignment.task.task_id, None)
            if ready is not None:
                self.observer.task_dispatched(max(0, now_ms - ready) / 1000)
        return assignments

    def _pushed(self, task: Task) -> PushedTask:
        group = task.task_id.rpartition(":")[0]
        data = self._inputs.get(group)
        if data is None:  # submitted before a restart, or through another coordinator process
            data = self.repositories.task_inputs.get(group) or b""
        return PushedTask(task, int(time.time() * 1000), data)

    def _forget_input(self, group: str) -> None:
        """Drop a settled task's input; a failure only leaves a harmless row behind."""
        self._inputs.pop(group, None)
        try:
            self.repositories.task_inputs.delete(group)
        except Exception:
            log.exception("input of settled task %s could not be deleted", group)


def stake_node_id(stake: Stake) -> str:
    """The node id of a stake's public key."""
    return node_id_from_public_key(stake.public_key)
