"""Executing tasks and proving them (SRS-NODE-05/06).

Up to ``max_concurrent_tasks`` isolated task subprocesses run at once; each output is hashed, a
signed :class:`~owm_core.identity.envelopes.TaskProof` is stored in the task log, then reported
in the two phases of commit–reveal (SRS-SEC-11): a signed
:class:`~owm_core.identity.envelopes.TaskCommitment` first, then, once the coordinator opens
the reveals, the proof with the salt and the output bytes (each retried while the coordinator
is unreachable; the reveal also while the other replicas have not committed). The salt is
derived from the node's own signature over the replica and output hash (Ed25519 signatures are
deterministic), so a resend after a restart opens the same commitment without storing it, and
nobody without the node's key can guess it. An ``fl_training`` task's update is signed
here, never in the worker, and uploaded to the task's ``upload_url`` over clearnet
(:mod:`.fl_upload`; SRS-NET-04); its proof commits to a weight-free summary.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from owm_adapters.node import fl_upload
from owm_adapters.node.context import NodeContext
from owm_adapters.node.task_log import TaskLog
from owm_adapters.node.task_runner import TaskRunner
from owm_adapters.node.watchers import payment_status_of
from owm_core.errors import DomainError
from owm_core.identity.envelopes import EnvelopeKind, TaskCommitment, TaskProof, from_bytes
from owm_core.market import task_types
from owm_core.market.commit_reveal import commitment_digest
from owm_core.nodes.control_plane import (
    AssignedTask,
    ControlPlaneRefused,
    ControlPlaneUnavailable,
)

log = logging.getLogger(__name__)

REVEALS_NOT_OPEN = "reveals-not-open"
REVEAL_PATIENCE_S = 1_800.0
"""How long a node keeps retrying a reveal the coordinator holds back (the other replicas have
not committed); after that the proof stays in the task log and is resent if pushed again."""
SALT_DOMAIN = b"owm/commit-salt/v1\x00"
_T = TypeVar("_T")


class Prover:
    """Runs queued tasks on the executor, seals their proofs and reports them."""

    def __init__(
        self, ctx: NodeContext, runner: TaskRunner, task_log: TaskLog, data_dir: Path
    ) -> None:
        self.ctx = ctx
        self.runner = runner
        self.log = task_log
        self.data_dir = data_dir
        self._executor = ThreadPoolExecutor(
            max_workers=ctx.settings.max_concurrent_tasks, thread_name_prefix="owm-task"
        )

    def queue(self, task: AssignedTask) -> None:
        """Run ``task`` when a worker is free (dropped when the daemon is draining)."""
        ctx = self.ctx
        with ctx.lock:
            ctx.current[task.task_id] = (task, ctx.clock.monotonic_ms())
        try:
            self._executor.submit(self._execute, task)
        except RuntimeError:  # executor shut down: draining
            with ctx.lock:
                ctx.current.pop(task.task_id, None)

    def resend(self, replica_id: str, proof: bytes, output: bytes) -> None:
        """Report a proof already in the task log (the task was pushed again)."""
        self._executor.submit(self.report, replica_id, proof, output)

    def shutdown(self) -> None:
        """Finish the running tasks; queued ones are dropped (SRS-NODE-09)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _execute(self, task: AssignedTask) -> None:
        try:
            self._execute_inner(task)
        except Exception:
            log.exception("task %s could not be handled", task.task_id,
                          extra={"node_id": self.ctx.identity.node_id, "task_id": task.task_id})
        finally:
            with self.ctx.lock:
                self.ctx.current.pop(task.task_id, None)

    def _execute_inner(self, task: AssignedTask) -> None:
        ctx = self.ctx
        start_ms = ctx.clock.monotonic_ms()
        with ctx.lock:
            ctx.current[task.task_id] = (task, start_ms)
        self.log.mark_running(task.task_id, start_ms)
        log.info("task %s running (%s)", task.task_id, task.task_type,
                 extra=ctx.task_fields(task))
        result = self.runner.run(
            task.task_type, task.input_schema_id, task.input_schema_version, task.input,
            task.model_version,
        )
        done_ms = ctx.clock.monotonic_ms()
        if not result.ok or result.output is None:
            self.log.mark_failed(task.task_id, result.error, result.execution_ms, done_ms)
            ctx.note(f"task {task.task_id} failed: {result.error}", level=logging.WARNING,
                     **ctx.task_fields(task), error=result.error,
                     execution_ms=result.execution_ms)
            return
        output = result.output
        try:
            if task.task_type == "fl_training":
                output = self._deliver_update(task, output)
            digest = task_types.output_hash(output)
        except (DomainError, ValueError, KeyError, TypeError) as exc:
            reason = exc.message if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
            self.log.mark_failed(task.task_id, reason, result.execution_ms, done_ms)
            ctx.note(f"task {task.task_id} failed: {reason}", level=logging.WARNING,
                     **ctx.task_fields(task), error=reason, execution_ms=result.execution_ms)
            return
        proof = TaskProof(
            task_id=task.task_id,
            output_hash=digest,
            execution_ms=result.execution_ms,
            attestation=self._attestation(),
        )
        raw = ctx.seal(EnvelopeKind.TASK_PROOF, proof)
        self.log.mark_executed(task.task_id, digest, output, raw, result.execution_ms, done_ms)
        log.info("task %s ran in %d ms", task.task_id, result.execution_ms,
                 extra={**ctx.task_fields(task), "output_hash": digest,
                        "execution_ms": result.execution_ms})
        self.report(task.task_id, raw, task_types.canonical_output(output))

    def _deliver_update(self, task: AssignedTask, trained: dict[str, Any]) -> dict[str, Any]:
        """Sign the trained FL update here (the key never enters the worker), upload it to the
        task's ``upload_url`` over clearnet, and return the weight-free output the proof commits
        to (:mod:`.fl_upload`; SRS-COORD-03, SRS-NET-04). A devnet's ``attack`` file makes the
        update poisoned first (read per task)."""
        ctx = self.ctx
        data = task_types.parse_input(task.input)
        weights = [float(v) for v in trained["weights"]]
        if fl_upload.attack_mode(self.data_dir) == fl_upload.POISON:
            start = fl_upload.starting_weights(data, self.runner.model_dir or None)
            weights = fl_upload.poisoned(weights, start)
            ctx.note(f"task {task.task_id}: attack mode: sending a poisoned FL update",
                     level=logging.WARNING, task_id=task.task_id, round=data.get("round"))
        url = data.get("upload_url")
        if url:
            from owm_core.fl.updates import sign_update

            body = sign_update(
                ctx.identity, round_number=int(trained["round"]),
                sub_model=str(trained["sub_model"]), task_id=task.task_id,
                num_examples=int(trained["num_examples"]), loss=float(trained["loss"]),
                weights=weights,
            )
            sent = fl_upload.post_update(
                str(url), body, proxy=ctx.settings.upload_proxy, policy=ctx.settings.destinations
            )
            ctx.count("fl_uploads_delivered" if sent.delivered else "fl_uploads_failed")
            fields: dict[str, Any] = {"task_id": task.task_id, "round": int(trained["round"]),
                      "sub_model": str(trained["sub_model"]), "url": str(url),
                      "status": sent.status, "attempts": sent.attempts}
            if sent.delivered:
                ctx.note(f"task {task.task_id}: FL update uploaded to {url} (HTTP {sent.status})",
                         **fields)
            else:
                ctx.note(f"task {task.task_id}: FL update not accepted by {url} after "
                         f"{sent.attempts} attempt(s): {sent.status or 'no answer'} {sent.detail}",
                         level=logging.WARNING, **fields)
        return fl_upload.proof_output(trained, weights)

    def _attestation(self) -> dict[str, Any]:
        manifest = self.ctx.manifest
        return {
            "tier": manifest.tier.value,
            "gpu_vendor": manifest.gpu_vendor,
            "gpu_count": manifest.gpu_count,
            "vram_mb": manifest.vram_mb,
            "isolation": "subprocess",
            "cuda_mps": bool(self.runner.environment().get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT")),
        }

    def salt(self, replica_id: str, output_hash: str) -> bytes:
        """The commitment salt of a replica: SHA-256 of the node's deterministic signature over
        the replica id and output hash (recomputable on resend, unguessable without the key)."""
        message = SALT_DOMAIN + replica_id.encode("utf-8") + b"\x00" + output_hash.encode()
        return hashlib.sha256(self.ctx.identity.sign(message)).digest()

    def report(self, replica_id: str, proof: bytes, output: bytes) -> None:
        """Commit to a stored proof, then reveal it with its salt and the canonical output,
        until the coordinator has it (or refuses it for good)."""
        ctx = self.ctx
        output_hash = from_bytes(proof).body["output_hash"]
        salt = self.salt(replica_id, output_hash)
        digest = commitment_digest(replica_id, ctx.identity.node_id, output_hash, salt)
        commitment = ctx.seal(EnvelopeKind.TASK_COMMITMENT, TaskCommitment(replica_id, digest))
        try:
            reply = self._deliver(replica_id, lambda: ctx.control.commit_result(commitment))
            if reply is None:
                return
            if not reply.reveals_open:
                time.sleep(reply.retry_after_ms / 1000)
            sealed = ctx.seal_output(replica_id, output)  # only the coordinator reads it
            state = self._reveal(replica_id, proof, sealed, salt)
        except ControlPlaneRefused as exc:
            self.log.mark_proof_refused(replica_id, f"proof refused: {exc.message}")
            ctx.note(f"proof of {replica_id} refused: {exc.message}", level=logging.WARNING,
                     task_id=replica_id, error=exc.message)
            return
        if state is None:
            return
        payment_status = payment_status_of(state)
        self.log.mark_proved(replica_id, state, payment_status)
        logged = self.log.get(replica_id)
        ctx.note(f"task {replica_id} proved ({state})", task_id=replica_id, state=state,
                 payment_status=payment_status,
                 amount_msat=logged.price_msat if logged is not None else None)

    def _reveal(self, replica_id: str, proof: bytes, output: bytes, salt: bytes) -> str | None:
        """Send the reveal, again while the coordinator says the reveals are not open yet."""
        ctx = self.ctx
        give_up_at = time.monotonic() + REVEAL_PATIENCE_S
        attempt = 0
        while True:
            try:
                return self._deliver(
                    replica_id, lambda: ctx.control.submit_proof(proof, output, salt)
                )
            except ControlPlaneRefused as exc:
                if exc.status != REVEALS_NOT_OPEN or ctx.draining.is_set():
                    raise
                if time.monotonic() >= give_up_at:
                    ctx.note(f"reveal of {replica_id} still held back; it stays in the task log",
                             level=logging.WARNING, task_id=replica_id)
                    return None
            time.sleep(min(2.0, 0.25 * 1.5**attempt))
            attempt += 1

    def _deliver(self, replica_id: str, send: Callable[[], _T]) -> _T | None:
        """``send()`` until the coordinator answers; None when draining gives up on it."""
        ctx = self.ctx
        attempt = 0
        give_up_at: int | None = None
        while True:
            try:
                return send()
            except ControlPlaneUnavailable as exc:
                ctx.disconnected(exc.message)
                if ctx.draining.is_set():
                    now = ctx.clock.monotonic_ms()
                    give_up_at = give_up_at or now + int(ctx.settings.drain_report_s * 1000)
                    if now >= give_up_at:
                        ctx.note(f"proof of {replica_id} not delivered; it stays in the task "
                                 "log and is resent if the coordinator pushes the task again",
                                 level=logging.WARNING, task_id=replica_id)
                        return None
                time.sleep(ctx.backoff(attempt))
                attempt += 1


__all__ = ["Prover"]
