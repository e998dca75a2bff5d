"""The coordinator's task stream: accept, validate, reject or resume (SRS-NODE-06/07).

Each assignment's coordinator signature is checked first: one that does not verify under
``[coordinator] public_key`` is dropped unlogged and never runs (SRS-SEC-01/03). Then its input
is opened: sealed by the coordinator's identity key to this node's for this replica
(SRS-SEC-02); one that does not open is rejected like an invalid one. Each assignment is logged
(SRS-NODE-06), validated against its task type's schema
(SRS-NODE-07; an invalid one never runs: a signed
:class:`~owm_core.identity.envelopes.TaskRejection` naming the field goes to the coordinator,
which hands the task to another node at once) and queued for the :class:`~.prover.Prover`.
An assignment pinned to a sub-model version the node does not hold gets it installed first
(verified, :mod:`.pins`), or is rejected naming ``model_version`` when that fails: a node runs
exactly the version the coordinator chose for every replica of the task (SRS-SEC-11).
"""

from __future__ import annotations

import contextlib
import logging

import attrs

from owm_adapters.node import fl_upload
from owm_adapters.node.context import NodeContext, NodeState
from owm_adapters.node.pins import pinned_version_problem
from owm_adapters.node.prover import Prover
from owm_adapters.node.registration import Registration
from owm_adapters.node.task_log import FAILED, PROVED, REJECTED, TaskLog
from owm_adapters.node.watchers import StakeWatcher
from owm_adapters.node.weights_watcher import WeightsWatcher
from owm_core.errors import DomainError, InvalidValue, SignatureInvalid
from owm_core.identity.assignments import verify_assignment
from owm_core.identity.envelopes import (
    MAX_REJECTION_FIELD_CHARS,
    MAX_REJECTION_REASON_CHARS,
    EnvelopeKind,
    TaskRejection,
)
from owm_core.market import task_types
from owm_core.nodes.control_plane import (
    AssignedTask,
    ControlPlaneRefused,
    ControlPlaneUnavailable,
)
from owm_core.ports.control_plane import TaskFeed

log = logging.getLogger(__name__)

STAKE_NOT_ACTIVE = {"invalid-transition", "insufficient-stake", "failed-precondition"}
REJECTION_ATTEMPTS = 3


def _wire_text(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` and made encodable (lone surrogates become ``?``)."""
    return text[:max_chars].encode("utf-8", "replace").decode("utf-8") or "?"


@attrs.define
class FeedReader:
    """Keeps the task stream open and hands each assignment to the prover."""

    ctx: NodeContext
    log: TaskLog
    prover: Prover
    registration: Registration
    stake: StakeWatcher
    #: Installs a pinned sub-model version the node lacks (None: no ``[coordinator] api_url``).
    weights: WeightsWatcher | None = None
    feed: TaskFeed | None = attrs.field(default=None, init=False)

    def cancel(self) -> None:
        """Close the open stream, if any (draining)."""
        feed = self.feed
        if feed is not None:
            feed.cancel()

    def loop(self) -> None:
        """The ``owm-feed`` thread: (re)open the stream with back-off until draining."""
        ctx = self.ctx
        attempt = 0
        while not ctx.draining.is_set():
            try:
                feed = ctx.control.open_task_feed(
                    ctx.identity, ctx.settings.capabilities, ctx.settings.ask_msat
                )
                self.feed = feed
                if ctx.draining.is_set():
                    feed.cancel()
                    return
                ctx.reconnected("task feed")
                ctx.feed_open = True
                if ctx.state == NodeState.DISCONNECTED:
                    ctx.state = NodeState.SERVING
                for assignment in feed:
                    attempt = 0
                    self.accept(assignment)
            except ControlPlaneUnavailable as exc:
                ctx.disconnected(exc.message)
            except ControlPlaneRefused as exc:
                self._refused(exc)
            except Exception as exc:  # a bug or a full disk must not end the task feed for good
                ctx.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("task feed failed; reopening",
                              extra={"node_id": ctx.identity.node_id, "attempt": attempt})
            finally:
                ctx.feed_open = False
            if ctx.draining.wait(ctx.backoff(attempt)):
                return
            attempt += 1

    def _refused(self, exc: ControlPlaneRefused) -> None:
        """The stream was refused: with no active stake, guide the operator and look again."""
        self.ctx.last_error = exc.message
        if exc.status in STAKE_NOT_ACTIVE and not self.registration.guided:
            stake = self.ctx.stake
            if stake is not None:
                self.registration.guide(stake.tier, stake.required_sats, stake.capacity_sat)
        if exc.status in STAKE_NOT_ACTIVE:
            self.stake.check_stake()

    def accept(self, task: AssignedTask) -> None:
        """Log, validate and queue one assignment (SRS-NODE-06/07)."""
        ctx = self.ctx
        if ctx.draining.is_set():
            return  # not taken: the coordinator reassigns it when the assignment times out
        try:
            verify_assignment(
                ctx.settings.coordinator_public_key, task, ctx.identity.public_key_hex
            )
        except SignatureInvalid:
            ctx.last_error = "dropped an assignment not signed by the coordinator"
            log.warning("dropped assignment %.80r: not signed by the coordinator", task.task_id,
                        extra={"node_id": ctx.identity.node_id, "task_id": task.task_id[:80]})
            return
        unopened: InvalidValue | None = None
        try:
            task = ctx.open_input(task)  # sealed to this node by the coordinator (SRS-SEC-02)
        except InvalidValue as exc:
            unopened = exc
        now_ms = ctx.clock.monotonic_ms()
        fresh = self.log.record_received(
            task.task_id, task.task_type, task.input_schema_id, task.input_schema_version,
            task_types.input_hash(task.input), len(task.input), task.price_msat,
            task.deadline_at, now_ms,
        )
        if not fresh:
            self._resume(task, unopened)
            return
        # the pinned version is checked (or installed) and the task queued under the weights
        # watcher's lock, so its pruning never deletes a version between the two (SRS-SEC-11)
        with self.weights.lock if self.weights is not None else contextlib.nullcontext():
            problem = unopened or self._input_problem(task)
            if problem is None:
                log.info("accepted task %s (%s, %d msat)", task.task_id, task.task_type,
                         task.price_msat, extra=ctx.task_fields(task))
                self.prover.queue(task)
                return
        self.log.mark_rejected(task.task_id, problem.message, now_ms)
        ctx.note(f"rejected task {task.task_id}: {problem.message}", level=logging.WARNING,
                 **ctx.task_fields(task), field=problem.field, reason=problem.reason)
        self.send_rejection(task.task_id, problem)

    def _input_problem(self, task: AssignedTask) -> InvalidValue | None:
        try:
            _, data = task_types.validate_input(
                task.task_type, task.input_schema_id, task.input_schema_version, task.input
            )
        except InvalidValue as exc:
            return exc
        url = data.get("upload_url") if task.task_type == "fl_training" else None
        if url:
            # an onion URL, an upload proxy (SRS-NET-04) or an internal target (SRS-SEC-06):
            # refused before anything runs
            try:
                settings = self.ctx.settings
                fl_upload.check_upload_url(str(url), settings.upload_proxy, settings.destinations)
            except DomainError as exc:
                return InvalidValue("input.upload_url", exc.message)
        return pinned_version_problem(task, data, self.prover.runner.model_dir, self.weights)

    def send_rejection(self, replica_id: str, problem: InvalidValue) -> bool:
        """Tell the coordinator why the task is refused (SRS-NODE-07); True once it has it.

        A signed :class:`TaskRejection` naming the field, so the coordinator reassigns the task
        at once; retried briefly while the coordinator is unreachable or busy (a refusal with
        ``retry_after_s``; otherwise the assignment simply times out and goes elsewhere).
        """
        ctx = self.ctx
        body = TaskRejection(
            task_id=replica_id,
            field=_wire_text(problem.field, MAX_REJECTION_FIELD_CHARS),
            reason=_wire_text(problem.reason, MAX_REJECTION_REASON_CHARS),
        )
        for attempt in range(REJECTION_ATTEMPTS):
            signed = ctx.seal(EnvelopeKind.TASK_REJECTION, body)
            try:
                ctx.control.reject_task(signed)
            except ControlPlaneUnavailable as exc:
                ctx.disconnected(exc.message)
                if ctx.stop.wait(ctx.backoff(attempt)):
                    break
                continue
            except ControlPlaneRefused as exc:
                if exc.retry_after_s is not None and attempt + 1 < REJECTION_ATTEMPTS:
                    # a busy coordinator (its replay guard full), not a refused rejection
                    if ctx.stop.wait(min(exc.retry_after_s, ctx.settings.retry_max_s)):
                        break
                    continue
                log.warning("rejection of %s refused: %s", replica_id, exc.message,
                            extra={"node_id": ctx.identity.node_id, "task_id": replica_id,
                                   "error": exc.message})
                return False
            return True
        return False

    def _resume(self, task: AssignedTask, unopened: InvalidValue | None = None) -> None:
        """A re-pushed assignment (stream reopened, daemon restarted): finish what is missing.

        ``unopened`` says why its input did not open (then it is rejected, not run)."""
        with self.ctx.lock:
            if task.task_id in self.ctx.current:
                return
        logged = self.log.get(task.task_id)
        if logged is not None and logged.state == REJECTED:
            problem = unopened or self._input_problem(task)  # our rejection never arrived
            if problem is not None:
                self.send_rejection(task.task_id, problem)
            return
        if logged is None or logged.state in {PROVED, FAILED}:
            return
        proof = self.log.proof_of(task.task_id)
        if proof is not None:
            output = self.log.output_of(task.task_id)
            delivered = b"" if output is None else task_types.canonical_output(output)
            self.prover.resend(task.task_id, proof, delivered)
        elif (problem := unopened or self._input_problem(task)) is not None:
            self.log.mark_rejected(task.task_id, problem.message, self.ctx.clock.monotonic_ms())
            self.send_rejection(task.task_id, problem)
        else:
            self.prover.queue(task)


__all__ = ["STAKE_NOT_ACTIVE", "FeedReader"]
