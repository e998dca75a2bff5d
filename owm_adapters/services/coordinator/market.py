"""The task market of one coordinator process: streams, submission, dispatch, proofs.

:class:`Market` owns the open task streams, the rejections this process recorded and the
waiters for a verdict, under one lock; task inputs live in the store only (read when a
replica is pushed, deleted once the task is final); the rules are
:mod:`owm_core.coordination.tasks` and :mod:`~owm_core.coordination.rejections`.
:class:`TaskMarket` is the narrow view other services (the query path, FL rounds) take.

Admission and dispatch: a task no registered node could run is refused at submission, the
others run on as many replicas as the nodes that fit allow (:mod:`.admission`); dispatch plans
over the replicas an event made assignable plus a sweep that walks every waiting replica in
turn, so work nobody can take never stops it, drops the replicas of running tasks that no
connected node can take any more (down to the redundancy floor), and every task ends: a
replica no node takes within ``queue_timeout_s`` expires with its task, or is dropped while a
sibling runs and the rest are judged (:mod:`owm_core.coordination.endings`, run on the tick),
so no escrow is held forever. A task that runs a sub-model's weights
is pinned to one version at submission, which every replica and assignment carries
(:mod:`.pins`; SRS-SEC-11). With several coordinators on one database each one dispatches to
the streams it holds (a task submitted at another is found by the sweep) and records their
offers in the shared store, so :meth:`Market.streaming_offers` counts every coordinator's
streams (:mod:`.stream_records`; SRS-COORD-05).

Durability rules: a submitted task (with its input bytes) is committed before
:meth:`Market.submit_task` returns, a proof before :meth:`Market.submit_proof` returns. Tasks
already assigned to a node are pushed again when the node reopens its stream (after a
disconnect or a coordinator restart). A replica its node rejects (:meth:`Market.reject_task`,
SRS-NODE-07) is dispatched again before the call returns; rejection reasons are logged and kept
in this process's memory (the latest :data:`MAX_REMEMBERED_REJECTIONS` tasks).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import attrs

from owm_adapters.net.destinations import check_task_url
from owm_adapters.services.coordinator.admission import Admission
from owm_adapters.services.coordinator.dispatch import Dispatcher
from owm_adapters.services.coordinator.funding import NETWORK, Funder, TaskFunding
from owm_adapters.services.coordinator.pins import VersionPins
from owm_adapters.services.coordinator.reveals import ResultRounds, tell_listeners
from owm_adapters.services.coordinator.sealing import SealedBlobs, SealedMarketStore, TaskSealing
from owm_adapters.services.coordinator.shared import LockedGuard, Observed, ServiceConfig
from owm_adapters.services.coordinator.stream_records import StreamRecords
from owm_core.coordination.rejections import (
    Rejection,
    RejectionOutcome,
    admit_rejection,
    open_rejection,
    reject_task,
)
from owm_core.coordination.reveals import CommitOutcome
from owm_core.coordination.tasks import (
    Assignment,
    ProofOutcome,
    offer_of,
    siblings,
    submit_task,
    task_id_of,
    task_outcome,
    time_out_overdue,
    verified_output,
)
from owm_core.errors import InvalidValue, NotFound
from owm_core.identity.assignments import sign_assignment
from owm_core.identity.envelopes import CapabilityManifest
from owm_core.identity.keys import Identity
from owm_core.market import task_types
from owm_core.market.streams import OpenStream
from owm_core.market.tasks import (
    ASSIGNABLE_STATES,
    NodeOffer,
    Settlement,
    Task,
    TaskRequest,
)
from owm_core.nodes.control_plane import AssignedTask
from owm_core.nodes.registry import Node
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

MAX_REMEMBERED_REJECTIONS = 10_000
_CLOSED = object()


class TaskMarket(Protocol):
    """What a service that buys work from the nodes needs of the market."""

    def new_task_id(self) -> str:
        """A fresh random task id."""
        ...

    def submit_task(
        self, request: TaskRequest, input_data: bytes = b"", funder: Funder = NETWORK
    ) -> list[Task]:
        """Fund a task (``funder`` pays), store it and its input durably, dispatch it; its
        replicas."""
        ...

    def task(self, task_id: str) -> tuple[list[Task], str]:
        """The replicas of a submitted task and its outcome (pending / verified / failed)."""
        ...

    def await_task(self, task_id: str, timeout_s: float) -> tuple[list[Task], str]:
        """:meth:`task`, once its outcome is no longer pending or after ``timeout_s``."""
        ...

    def task_output(self, task_id: str) -> bytes | None:
        """The verified output of a task, or None."""
        ...

    def streaming_offers(self) -> list[NodeOffer]:
        """The offers of the nodes whose task streams are open now (with several coordinators
        on one store, at any of them)."""
        ...


@attrs.frozen
class PushedTask:
    """One assignment as it goes down a node's task stream, signed for its recipient."""

    task: Task
    #: When it was assigned, by the market's clock (whole seconds, as milliseconds on the wire).
    assigned_at_ms: int
    input: bytes
    signature: bytes = b""

    def assigned(self) -> AssignedTask:
        """The assignment as the node reads it (what the coordinator's signature covers)."""
        task = self.task
        return AssignedTask(
            task_id=task.task_id,
            task_type=task.request.task_type,
            input_schema_id=task.request.input_schema_id,
            input_schema_version=task.request.input_schema_version,
            price_msat=task.price_msat or 0,
            deadline_at=task.deadline_at or 0,
            input=self.input,
            assigned_at_ms=self.assigned_at_ms,
            signature=self.signature,
            model_version=task.request.model_version,
        )


@attrs.define
class TaskStreamHandle:
    """A node's open task stream: its offer and the queue of assignments pushed to it.

    Each assignment leaves :meth:`next` signed by ``signer`` (the coordinator's key) for
    ``public_key`` (the node's), so the node can tell it came from its coordinator.
    """

    node_id: str
    offer: NodeOffer
    public_key: str
    signer: Identity
    #: The stream's record in the shared store (:mod:`.stream_records`).
    record: OpenStream
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
        signature = sign_assignment(self.signer, item.assigned(), self.public_key)
        return attrs.evolve(item, signature=signature)


TASK_URL_FIELDS: dict[str, tuple[str, ...]] = {"fl_training": ("upload_url",)}
"""The input fields, by task type, that name a URL nodes will contact."""


def check_input_urls(task_type: str, input_data: bytes, advertised_api_url: str) -> None:
    """Refuse (``InvalidValue`` on ``input.<field>``) a task URL off the advertised API origin.

    Without the rule a submitter could aim every node at a cloud metadata service, a loopback
    port or a private network (server-side request forgery; SRS-SEC-06). With no advertised
    API the coordinator takes no task URL at all.
    """
    url_fields = TASK_URL_FIELDS.get(task_type, ())
    if not url_fields:
        return
    data = task_types.parse_input(input_data)
    for name in url_fields:
        url = data.get(name)
        if url is None:
            continue
        field = f"input.{name}"
        if not isinstance(url, str):
            raise InvalidValue(field, "must be a URL")
        if not advertised_api_url:
            raise InvalidValue(field, "this coordinator advertises no API origin for task URLs")
        check_task_url(url, advertised_api_url, field)


def forget_input(inputs: SealedBlobs, group: str) -> None:
    """Drop a final task's input; a failure only leaves a harmless row behind."""
    try:
        inputs.delete(group)
    except Exception:
        log.exception("input of settled task %s could not be deleted", group)


def by_replica(recorded: Sequence[Rejection]) -> dict[str, list[Rejection]]:
    """Rejections grouped by the replica they refused, in the order they were recorded."""
    grouped: dict[str, list[Rejection]] = {}
    for rejection in recorded:
        grouped.setdefault(rejection.replica_id, []).append(rejection)
    return grouped


class RememberedRejections(OrderedDict[str, list[Rejection]]):
    """The rejections this process recorded, by task, the latest
    :data:`MAX_REMEMBERED_REJECTIONS` tasks' only."""

    def add(self, group: str, rejection: Rejection) -> None:
        """Remember ``rejection`` of a replica of ``group``; forget the oldest task's beyond."""
        self.setdefault(group, []).append(rejection)
        self.move_to_end(group)
        while len(self) > MAX_REMEMBERED_REJECTIONS:
            self.popitem(last=False)


class Market:
    """Streams, submission, dispatch, proofs and rejections (see the module docstring)."""

    def __init__(
        self,
        repositories: Repositories,
        clock: Clock,
        config: ServiceConfig,
        guard: LockedGuard,
        observed: Observed,
        *,
        sealing: TaskSealing,
        funding: TaskFunding,
        entropy: Callable[[int], bytes] = os.urandom,
        settlement_listeners: Sequence[Callable[[Settlement], None]] = (),
    ) -> None:
        self.repositories = repositories
        #: Inputs and outputs travel and rest sealed (SRS-SEC-02; :mod:`.sealing`).
        self._sealing = sealing
        self._stored_inputs = SealedBlobs(repositories.task_inputs, sealing, "task-input")
        self._store = SealedMarketStore.over(repositories, sealing)
        #: Who pays for each task: escrows, balances, budgets (funded work only).
        self.funding = funding
        self.clock = clock
        self.config = config
        self._guard = guard
        self._observed = observed
        self._entropy = entropy
        self._seed = entropy(32)
        self._rounds = ResultRounds(self._store, sealing, clock, config, self._seed)
        #: Told of every settlement after its proof is stored (the payout dispatcher, the
        #: fake-proof detector); a failing listener is logged and the others still run.
        self._settlement_listeners = tuple(settlement_listeners)
        self._market_lock = threading.RLock()
        self._streams: dict[str, TaskStreamHandle] = {}
        self._records = StreamRecords(repositories.task_streams, clock, config, entropy)
        self.admission = Admission(repositories.nodes, clock, config)
        self._dispatcher = Dispatcher(repositories, clock, config, self.admission.fleet)
        self._rejections = RememberedRejections()
        self._task_changed = threading.Condition()
        self._task_changes = 0
        #: The coordinator's advertised API URL, read at each submission (a test API on port 0
        #: is known only once bound): URLs in task inputs must lie on its origin (SRS-SEC-06).
        self.advertised_api_url: Callable[[], str] = lambda: ""
        self.pins = VersionPins(repositories.releases)  # each task's sub-model version

    # -- submitting and waiting --------------------------------------------------------------

    def submit_task(
        self, request: TaskRequest, input_data: bytes = b"", funder: Funder = NETWORK
    ) -> list[Task]:
        """Fund a task, store its replicas and its input durably, then dispatch them at once.

        Escrow, replicas and input are one atomic write, committed before this returns, so a
        task re-pushed after a coordinator restart still carries its input (SRS-PERF-09) and
        no task is stored unfunded (:meth:`TaskFunding.open_escrow`: ``funder`` pays). Refused
        before anything is stored: a task whose input names a URL for nodes to contact off the
        coordinator's own API origin (:func:`check_input_urls`), and one no online node could
        run (``NoMatch``; :class:`~.admission.Admission` also plans its replicas). A stored task
        expires ``queue_timeout_s`` after submission unless a node took a replica by then.
        """
        check_input_urls(request.task_type, input_data, self.advertised_api_url())
        request = attrs.evolve(request, model_version=self.pins.pin_for(request, input_data))
        plan = self.admission.check(request)
        expires_at = self.clock.now() + self.config.queue_timeout_s
        with self.repositories.atomic():
            replicas = submit_task(
                self.repositories, request, self.config.verification, expires_at, plan.count
            )
            self.funding.open_escrow(funder, request)
            if input_data:
                self._stored_inputs.put(request.task_id, input_data)
        with self._market_lock:
            self._dispatcher.became_ready(replicas)
            self._dispatch_locked(replicas)
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
        return verified_output(self._store, task_id)

    def _announce_task_change(self) -> None:
        with self._task_changed:
            self._task_changes += 1
            self._task_changed.notify_all()

    # -- streams -----------------------------------------------------------------------------

    def open_stream(
        self, node: Node, manifest: CapabilityManifest, capabilities: Sequence[str], ask_msat: int
    ) -> TaskStreamHandle:
        """Open an authenticated, staked node's task stream; offer = manifest + ask.

        Replicas already assigned to the node are queued again first.
        """
        offer = offer_of(node, manifest, capabilities, ask_msat)
        record = self._records.record(offer, self._records.new_id())
        # Each assignment is signed by the coordinator's key (SRS-SEC-01/03).
        handle = TaskStreamHandle(node.node_id, offer, node.public_key, self._sealing.identity,
                                  record)
        with self._market_lock:
            previous = self._streams.pop(node.node_id, None)
            if previous is not None:
                previous.queue.put(_CLOSED)
            self._streams[node.node_id] = handle
            for task in self.repositories.tasks.assigned_to(node.node_id):
                handle.queue.put(self._pushed(task))
            self._dispatch_locked(None)
        self._records.opened(record)  # the other coordinators see it (SRS-COORD-05)
        return handle

    def streaming_offers(self) -> list[NodeOffer]:
        """The offers of the open task streams whose nodes may take work (online,
        unsuspended): with a shared store, of the streams open at every coordinator."""
        with self._market_lock:
            local = [h.offer for h in self._streams.values()]
        return self._dispatcher.online(self._records.offers(local))

    def close_task_stream(self, handle: TaskStreamHandle) -> None:
        """Forget a stream whose node went away; its assignments run to their deadline."""
        with self._market_lock:
            held = self._streams.get(handle.node_id) is handle
            if held:  # not replaced by a newer stream, nor ended by a shutdown
                del self._streams[handle.node_id]
        if held:
            self._records.closed(handle.record)

    def end_stream_of(self, node_id: str) -> None:
        """End the stream of a node that left."""
        with self._market_lock:
            handle = self._streams.pop(node_id, None)
        if handle is not None:
            handle.queue.put(_CLOSED)
            self._records.closed(handle.record)

    def end_streams(self) -> None:
        """End every open stream (shutdown; their shared records age out, which a store
        that is down cannot delay)."""
        with self._market_lock:
            for handle in list(self._streams.values()):
                handle.queue.put(_CLOSED)
            self._streams.clear()

    # -- proofs, rejections, timeouts --------------------------------------------------------

    def commit_result(self, raw: bytes) -> CommitOutcome:
        """Store a replica's signed commitment, the first phase of its result (SRS-SEC-11)."""
        with self._market_lock:
            outcome = self._rounds.commit(raw)
        self._announce_task_change()
        return outcome

    def submit_proof(self, raw: bytes, output: bytes = b"", salt: bytes = b"") -> ProofOutcome:
        """Reveal a committed replica's result: its signed proof, the salt that opens its
        commitment and the output bytes (required, sealed to the coordinator, SRS-SEC-02);
        stored durably (sealed), then the round is judged once nothing else is awaited
        (SRS 4.1, SRS-SEC-11; :mod:`.reveals`)."""
        with self._market_lock:
            outcome = self._rounds.reveal(raw, salt, output)
            self._verdicts_locked([outcome])
        self._announce_task_change()
        tell_listeners(self._settlement_listeners, [outcome])
        return outcome

    def _verdicts_locked(self, outcomes: Sequence[ProofOutcome]) -> None:
        """After verdicts: settled tasks drop their input and close their escrow; a spot check
        may have added a ``:check`` replica for another node, which is dispatched."""
        for outcome in outcomes:
            group = task_id_of(outcome.task.task_id)
            if outcome.settlements:
                forget_input(self._stored_inputs, group)
                self.funding.reconcile(group)
            else:
                waiting = [r for r in siblings(self.repositories, group)
                           if r.state in ASSIGNABLE_STATES]
                self._dispatcher.became_ready(waiting)
                self._dispatch_locked(waiting)

    def reject_task(self, raw: bytes) -> RejectionOutcome:
        """The assigned node refuses a replica (SRS-NODE-07): record why, dispatch it again now.

        The envelope is verified first, then its key must be a registered node's, and only then
        is its nonce taken (SRS-SEC-03); only the node the replica is assigned to may reject it
        (InvalidTransition otherwise). The replica is offered to the
        other connected nodes before this returns, without waiting for the assignment timeout;
        the outcome carries the replica as it stands after that dispatch.
        """
        now = self.clock.now()
        envelope, body = open_rejection(raw, self._sealing.public_key_hex)
        node = self.repositories.nodes.get(envelope.signer_node_id)
        with self._guard.lock:
            admit_rejection(envelope, None if node is None else node.public_key,
                            self._guard.guard, now)
        with self._market_lock:
            outcome = reject_task(self.repositories, envelope, body, now)
            rejection = outcome.rejection
            group = outcome.task.task_id.rpartition(":")[0]
            self._rejections.add(group, rejection)
            self._dispatcher.became_ready([outcome.task])
            self._dispatch_locked([outcome.task])
            current = self.repositories.tasks.get(outcome.task.task_id)
            if current is not None:  # already handed to another node, most likely
                outcome = attrs.evolve(outcome, task=current)
        log.info("node %s rejected task %s: field %r: %r", rejection.node_id,
                 rejection.replica_id, rejection.field, rejection.reason,
                 extra={"node_id": rejection.node_id, "task_id": rejection.replica_id})
        return outcome

    def rejections(self, task_id: str) -> dict[str, list[Rejection]]:
        """The rejections this process recorded for a submitted task, by replica id."""
        with self._market_lock:
            return by_replica(self._rejections.get(task_id, []))

    def tick(self, *, housekeeping: bool = True) -> list[Task]:
        """Dispatch the sweep's next page; with ``housekeeping`` (one coordinator leads it,
        SRS-COORD-05) first time out overdue assignments, close passed windows, end tasks
        whose replicas no node took in time (:mod:`owm_core.coordination.endings`), close due
        escrows; the timed-out. With a shared store, its stream records are confirmed."""
        self._records.refresh(self._streams, self._market_lock)
        with self._market_lock:
            if not housekeeping:
                self._dispatch_locked(None)
                return []
            now = self.clock.now()
            late = time_out_overdue(self.repositories, now, wait_s=self.config.queue_timeout_s)
            judged = self._rounds.close_due()
            ended = self._rounds.end_stalled()
            if late:
                self._dispatcher.became_ready(late)
                self._dispatch_locked(late)
            self._dispatch_locked(None)
            self.funding.sweep(time.monotonic(), partial(self._rounds.end_overdue, into=ended))
            judged += [e.outcome for e in ended if e.outcome is not None]
            self._verdicts_locked(judged)
            self._dispatcher.forget(ended)
            for done in (e for e in ended if e.expired):  # nothing ran: all refunded
                forget_input(self._stored_inputs, done.task_id)
                self.funding.reconcile(done.task_id)
        if late or ended or judged:
            self._announce_task_change()
        tell_listeners(self._settlement_listeners, judged)
        return late

    # -- dispatch ----------------------------------------------------------------------------

    def _dispatch_locked(self, candidates: Sequence[Task] | None) -> list[Assignment]:
        """Assign ``candidates`` (None: the sweep's next page) and push them to their nodes."""
        if not self._streams:
            return []
        offers = [handle.offer for handle in self._streams.values()]
        assignments = self._dispatcher.plan(offers, candidates)
        for assignment in assignments:
            waited_s = self._dispatcher.waited_s(assignment.task)
            if waited_s is not None:  # counted before the node can have it, not after
                self._observed.current.task_dispatched(waited_s)
            self._streams[assignment.node_id].queue.put(self._pushed(assignment.task))
        return assignments

    def _pushed(self, task: Task) -> PushedTask:
        """The assignment of ``task`` as it goes down its node's stream, with the task's input.

        The one place an input is read for a node: from the store, never from this process's
        memory, so a coordinator holds no input bytes between submission and push and a task
        re-pushed after a restart (or submitted through another process) carries its input.
        """
        data = self._stored_inputs.get(task_id_of(task.task_id)) or b""
        sealed = self._sealing.input_for_node(task, self.repositories.nodes, data)
        return PushedTask(task, self.clock.now() * 1000, sealed)

