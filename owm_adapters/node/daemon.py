"""The node daemon's lifecycle: register, publish, take tasks, prove, drain (SRS 4.1).

:class:`NodeDaemon` is the application service behind ``owm-node start`` (SRS-NODE-01). It
holds the node's identity (the key never leaves this process: the coordinator only receives
signatures, SRS-SEC-03) and runs these threads:

* **heartbeat** — every ``heartbeat_interval_s`` (60 s) a signed heartbeat together with a
  freshly signed capability manifest (tier, VRAM, RAM, bandwidth; SRS-NODE-04);
* **feed** — the coordinator's task stream; each assignment is logged (SRS-NODE-06),
  validated against its task type's schema (SRS-NODE-07; an invalid one never runs: a signed
  :class:`~owm_core.identity.envelopes.TaskRejection` naming the field goes to the coordinator,
  which
  hands the task to another node at once) and queued for execution;
* **workers** — up to ``max_concurrent_tasks`` isolated task subprocesses (SRS-NODE-05); each
  output is hashed, a signed :class:`~owm_core.identity.envelopes.TaskProof` is stored in the log,
  then
  sent (retried while the coordinator is unreachable);
* **stake & payments** — the stake channel is re-checked and a warning raised when capacity
  falls below the tier minimum (SRS-NODE-12); pending proofs are looked up until verified and
  credited or forfeited;
* **weights** (with ``[coordinator] api_url``) — new model versions are downloaded over clearnet
  and installed only when their OpenTimestamps proof verifies (:mod:`.weights_watcher`);
* **invoices** (with ``[lightning] backend`` = lnd / cln / embedded) — payouts awaiting an
  invoice are answered with invoices from the node's own Lightning node (:mod:`.invoicing`).

An ``fl_training`` task's update is signed here, never in the worker, and uploaded to the
task's ``upload_url`` over clearnet (:mod:`.fl_upload`; SRS-NET-04); its proof commits to a
weight-free summary.

First registration prints the exact channel to open with the treasury (SRS-NODE-11): the
treasury's URI and the tier's minimum come from the coordinator's StakeTerms (the
``[lightning] treasury_uri`` setting, when set, overrides the URI).
:meth:`NodeDaemon.run` returns after a graceful drain (SRS-NODE-09): stop taking tasks, finish
the running ones, report their proofs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from owm_adapters.node import fl_upload
from owm_adapters.node.invoicing import PayoutInvoicer
from owm_adapters.node.task_log import FAILED, PROVED, REJECTED, TaskLog
from owm_adapters.node.task_runner import TaskRunner
from owm_adapters.node.weights_watcher import WeightsWatcher
from owm_core.coordination.tasks import task_id_of
from owm_core.errors import DomainError, InvalidValue
from owm_core.identity import envelopes
from owm_core.identity.envelopes import (
    MAX_REJECTION_FIELD_CHARS,
    MAX_REJECTION_REASON_CHARS,
    CapabilityManifest,
    EnvelopeKind,
    Heartbeat,
    TaskProof,
    TaskRejection,
)
from owm_core.identity.keys import Identity
from owm_core.market import task_types
from owm_core.nodes.control_plane import (
    AssignedTask,
    ControlPlaneRefused,
    ControlPlaneUnavailable,
    RegisterReply,
    StakeTermsView,
    StakeView,
)
from owm_core.nodes.tiers import StakeRequirements
from owm_core.ports.clock import Clock
from owm_core.ports.control_plane import ControlPlane, TaskFeed

log = logging.getLogger(__name__)

REGISTRATION_FILE = "registration.json"
_REQUIRED_SATS = re.compile(r"required_sats=(\d+)|at least (\d+) sat")
STAKE_NOT_ACTIVE = {"invalid-transition", "insufficient-stake", "failed-precondition"}
REJECTION_ATTEMPTS = 3


@attrs.frozen
class DaemonSettings:
    """How the daemon behaves (from owm.toml; defaults follow the spec)."""

    ln_node_uri: str
    onion_address: str | None = None
    treasury_uri: str = ""
    """Overrides the treasury URI the coordinator's StakeTerms report (SRS-NODE-11)."""
    heartbeat_interval_s: float = 60.0
    ask_msat: int = 1_000
    capabilities: tuple[str, ...] = task_types.capabilities()
    max_concurrent_tasks: int = 1
    stake_check_interval_s: float = 300.0
    payment_check_interval_s: float = 15.0
    retry_initial_s: float = 0.5
    retry_max_s: float = 15.0
    stake_retry_s: float = 15.0
    """How often a node without a stake channel asks to register again (SRS-NODE-11)."""
    drain_report_s: float = 30.0
    """How long a draining daemon keeps retrying unsent proofs before it gives up."""
    upload_proxy: str | None = None
    """A proxy configured for FL uploads / weight downloads: refused (SRS-NET-04), so FL tasks
    with an ``upload_url`` are rejected naming it; leave it unset."""
    weights_poll_s: float = 300.0
    """How often the weights watcher (when there is one) looks for new model versions."""
    invoice_poll_s: float = 30.0
    """How often the payout invoicer (when there is one) looks for payouts awaiting invoices."""


def stake_guidance(
    tier: str, required_sats: int, capacity_sat: int, treasury_uri: str, ln_node_uri: str
) -> list[str]:
    """The operator's instructions to open the stake channel (SRS-NODE-11)."""
    missing = max(0, required_sats - capacity_sat)
    lines = [
        f"stake: tier {tier} needs a Lightning channel of at least {required_sats} sat from your "
        f"node to the OWM treasury (now {capacity_sat} sat; {missing} sat missing).",
    ]
    if treasury_uri:
        pubkey, _, address = treasury_uri.partition("@")
        lines += [
            f"  treasury node  {treasury_uri}",
            "  open it from the Lightning node in [lightning] node_uri"
            + (f" ({ln_node_uri.partition('@')[0][:16]}…)" if ln_node_uri else "") + ":",
            f"    LND:  lncli openchannel --node_key {pubkey}"
            + (f" --connect {address}" if address else "") + f" --local_amt {required_sats}",
            f"    CLN:  lightning-cli fundchannel {treasury_uri} {required_sats}",
        ]
    else:
        lines.append(
            "  set [lightning] treasury_uri in owm.toml (published by your coordinator) to see "
            "the exact command"
        )
    lines.append("  the node takes tasks as soon as the channel is confirmed; no restart needed.")
    return lines


def _wire_text(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` and made encodable (lone surrogates become ``?``)."""
    return text[:max_chars].encode("utf-8", "replace").decode("utf-8") or "?"


def payment_status_of(state: str) -> str:
    """What a replica's coordinator state means for this node's pay."""
    if state == "settled":
        return "credited"
    if state == "forfeited":
        return "forfeited"
    return "pending"


class NodeDaemon:
    """One node daemon (module docstring); build it, then :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        identity: Identity,
        control: ControlPlane,
        manifest: CapabilityManifest,
        runner: TaskRunner,
        task_log: TaskLog,
        clock: Clock,
        settings: DaemonSettings,
        *,
        data_dir: Path,
        say: Callable[[str], None] = print,
        hardware: dict[str, Any] | None = None,
        coordinator_url: str = "",
        via_proxy: bool = False,
        entropy: Callable[[int], bytes] = os.urandom,
        weights: WeightsWatcher | None = None,
        invoicer: PayoutInvoicer | None = None,
    ) -> None:
        self.identity = identity
        self.weights = weights
        self.invoicer = invoicer
        self.control = control
        self.manifest = manifest
        self.runner = runner
        self.log = task_log
        self.clock = clock
        self.settings = settings
        self.data_dir = data_dir
        self.say = say
        self.hardware = hardware or {}
        self.coordinator_url = coordinator_url
        self.via_proxy = via_proxy
        self._entropy = entropy
        self._state = "starting"
        self._lock = threading.Lock()
        self._connected = False
        self._last_heartbeat_at: int | None = None
        self._last_error = ""
        self._node_status = ""
        self._stake: StakeView | None = None
        self._stake_warning = ""
        self._registered: RegisterReply | None = None
        self._current: dict[str, tuple[AssignedTask, int]] = {}
        self._feed: TaskFeed | None = None
        self._feed_open = False
        self._seq = clock.now() * 1000
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_tasks, thread_name_prefix="owm-task"
        )
        self._threads: list[threading.Thread] = []
        self._guided = False
        self._terms: StakeTermsView | None = None

    # -- observation ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """starting, registering, awaiting_stake, serving, disconnected, draining or stopped."""
        return self._state

    def health(self) -> dict[str, Any]:
        """The ``/health`` document (SRS-NODE-08)."""
        now_ms = self.clock.monotonic_ms()
        with self._lock:
            current = [
                {
                    "task_id": task.task_id,
                    "task_type": task.task_type,
                    "running_for_s": round((now_ms - started) / 1000, 1),
                }
                for task, started in self._current.values()
            ]
            stake = self._stake
            return {
                "state": self._state,
                "node_id": self.identity.node_id,
                "tier": self.manifest.tier.value,
                "coordinator": {
                    "url": self.coordinator_url,
                    "connected": self._connected,
                    "task_stream_open": self._feed_open,
                    "via_socks5_proxy": self.via_proxy,
                    "last_heartbeat_at": self._last_heartbeat_at,
                    "node_status": self._node_status,
                    "last_error": self._last_error,
                },
                "current_tasks": current,
                "stake": None if stake is None else {
                    "status": stake.status,
                    "required_sats": stake.required_sats,
                    "capacity_sat": stake.capacity_sat,
                    "warning": self._stake_warning,
                },
                "hardware": self.hardware,
            }

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        """Register, serve until ``stop`` is set, then drain (SRS-NODE-09); returns exit code 0.

        Raises ControlPlaneRefused when the coordinator refuses the registration itself
        (cooldown, rate limit, bad manifest): retrying would not help.
        """
        self._stop = stop
        self._state = "registering"
        if not self._register_until_done():
            self._state = "stopped"
            return 0
        self._state = "serving"
        for name, target in (
            ("owm-heartbeat", self._heartbeat_loop),
            ("owm-feed", self._feed_loop),
            ("owm-stake", self._stake_loop),
            ("owm-payments", self._payment_loop),
            *((("owm-weights", self._weights_loop),) if self.weights is not None else ()),
            *((("owm-invoices", self._invoice_loop),) if self.invoicer is not None else ()),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        stop.wait()
        self.drain()
        return 0

    def drain(self) -> None:
        """Stop taking tasks, finish the running ones and report them (SRS-NODE-09)."""
        self._state = "draining"
        self._draining.set()
        self.say("draining: no new tasks; finishing running ones and reporting their proofs")
        feed = self._feed
        if feed is not None:
            feed.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)
        for thread in self._threads:
            thread.join(timeout=5)
        self.runner.close()
        self._state = "stopped"
        earned = self.log.earnings()
        self.say(
            f"stopped: {earned.credited_tasks} tasks credited ({earned.credited_msat} msat), "
            f"{earned.pending_tasks} awaiting verification"
        )

    # -- registration and stake ----------------------------------------------------------------

    def _manifest_envelope(self) -> bytes:
        envelope = envelopes.seal(
            self.identity, EnvelopeKind.CAPABILITY_MANIFEST, self.manifest,
            self._entropy(16), self.clock.now(),
        )
        return envelopes.to_bytes(envelope)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.settings.retry_max_s, self.settings.retry_initial_s * 2**attempt))

    def _register_until_done(self) -> bool:
        attempt = 0
        while not self._stop.is_set():
            try:
                reply = self.control.register(
                    self.identity,
                    self._manifest_envelope(),
                    self.manifest.digest(),
                    self.settings.ln_node_uri,
                    self.settings.onion_address,
                )
            except ControlPlaneUnavailable as exc:
                self._disconnected(exc.message)
                if attempt == 0:
                    self.say(f"coordinator unreachable, retrying: {exc.message}")
                self._stop.wait(self._backoff(attempt))
                attempt += 1
                continue
            except ControlPlaneRefused as exc:
                if exc.status != "insufficient-stake":
                    raise
                self._await_stake(exc)
                continue
            self._registered = reply
            self._connected = True
            self._last_error = ""
            self._last_heartbeat_at = self.clock.now()
            self._on_registered(reply)
            return True
        return False

    def _await_stake(self, refusal: ControlPlaneRefused) -> None:
        """No qualifying stake channel yet: guide the operator once, then look again later."""
        self._connected = True
        self._last_error = refusal.message
        self._state = "awaiting_stake"
        tier = self.manifest.tier
        terms = self.stake_terms()
        found = _REQUIRED_SATS.search(refusal.reason)
        if terms is not None:
            required = terms.required_sats
        elif found:  # a coordinator without StakeTerms: read the minimum off the refusal
            required = int(found.group(1) or found.group(2))
        else:
            required = StakeRequirements().for_tier(tier).min_sats
        with self._lock:
            self._stake = StakeView("none", tier.value, required, 0, "", 0)
        if not self._guided:
            self._guide(tier.value, required, 0)
        self._stop.wait(self.settings.stake_retry_s)
        self._state = "registering"

    def _on_registered(self, reply: RegisterReply) -> None:
        marker = self.data_dir / REGISTRATION_FILE
        first = not marker.exists()
        self.say(
            f"registered  node {reply.node_id}  tier {reply.tier}  stake {reply.stake_status} "
            f"({reply.capacity_sat}/{reply.required_sats} sat)"
        )
        self._stake = StakeView(reply.stake_status, reply.tier, reply.required_sats,
                                reply.capacity_sat, "", 0)
        short = reply.stake_status != "active" or reply.capacity_sat < reply.required_sats
        if short and (first or not self._guided):
            self._guide(reply.tier, reply.required_sats, reply.capacity_sat)
        self._check_capacity(reply.capacity_sat, reply.required_sats)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({
            "node_id": reply.node_id, "tier": reply.tier,
            "first_registered_at": self.clock.now(),
        }))

    def stake_terms(self) -> StakeTermsView | None:
        """The coordinator's stake terms for this node's tier (SRS-NODE-11); None if unknown.

        Asked once and remembered; callable before registration.
        """
        if self._terms is None:
            try:
                self._terms = self.control.stake_terms(self.manifest.tier.value)
            except (ControlPlaneUnavailable, ControlPlaneRefused) as exc:
                log.info("stake terms unavailable: %s", exc.message)
        return self._terms

    def _guide(self, tier: str, required: int, capacity: int) -> None:
        self._guided = True
        terms = self.stake_terms() if tier == self.manifest.tier.value else None
        treasury_uri = self.settings.treasury_uri or (terms.treasury_node_uri if terms else "")
        for line in stake_guidance(tier, required, capacity, treasury_uri,
                                   self.settings.ln_node_uri):
            self.say(line)

    def _check_capacity(self, capacity_sat: int, required_sats: int) -> None:
        if capacity_sat < required_sats:
            warning = (
                f"stake channel capacity {capacity_sat} sat is below the tier minimum "
                f"{required_sats} sat; top it up or open a new channel (SRS-NODE-12)"
            )
            if warning != self._stake_warning:
                self.say("warning: " + warning)
            self._stake_warning = warning
        else:
            self._stake_warning = ""

    def check_stake(self) -> StakeView | None:
        """Look at the stake now; warn when capacity is below the tier minimum (SRS-NODE-12)."""
        try:
            view = self.control.stake_status(self.identity.public_key_hex)
        except (ControlPlaneUnavailable, ControlPlaneRefused) as exc:
            self._last_error = exc.message
            return None
        with self._lock:
            self._stake = view
        self._check_capacity(view.capacity_sat, view.required_sats)
        return view

    def _stake_loop(self) -> None:
        while not self._draining.wait(self.settings.stake_check_interval_s):
            self._guarded(self.check_stake)

    # -- heartbeats ----------------------------------------------------------------------------

    def heartbeat_once(self) -> str | None:
        """Send one signed heartbeat with a freshly signed manifest (SRS-NODE-04)."""
        self._seq += 1
        body = Heartbeat(
            node_id=self.identity.node_id, seq=self._seq, manifest_digest=self.manifest.digest()
        )
        now = self.clock.now()
        envelope = envelopes.seal(self.identity, EnvelopeKind.HEARTBEAT, body,
                                  self._entropy(16), now)
        try:
            status = self.control.heartbeat(envelopes.to_bytes(envelope), self._manifest_envelope())
        except ControlPlaneUnavailable as exc:
            self._disconnected(exc.message)
            return None
        except ControlPlaneRefused as exc:
            self._last_error = exc.message
            if exc.status == "not-found":  # the coordinator forgot us: register again
                self._register_until_done()
            return None
        self._connected = True
        self._last_heartbeat_at = now
        self._node_status = status
        return status

    def _heartbeat_loop(self) -> None:
        while not self._draining.wait(self.settings.heartbeat_interval_s):
            self._guarded(self.heartbeat_once)

    def _guarded(self, step: Callable[[], object]) -> None:
        """Run one periodic step; an unexpected error is logged, never fatal to the thread."""
        try:
            step()
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.exception("periodic step %s failed", getattr(step, "__name__", step))

    def _disconnected(self, message: str) -> None:
        self._connected = False
        self._last_error = message
        if self._state == "serving":
            self._state = "disconnected"

    # -- tasks ---------------------------------------------------------------------------------

    def _feed_loop(self) -> None:
        attempt = 0
        while not self._draining.is_set():
            try:
                feed = self.control.open_task_feed(
                    self.identity, self.settings.capabilities, self.settings.ask_msat
                )
                self._feed = feed
                if self._draining.is_set():
                    feed.cancel()
                    return
                self._connected = True
                self._feed_open = True
                if self._state == "disconnected":
                    self._state = "serving"
                for assignment in feed:
                    attempt = 0
                    self.accept(assignment)
            except ControlPlaneUnavailable as exc:
                self._disconnected(exc.message)
            except ControlPlaneRefused as exc:
                self._last_error = exc.message
                if exc.status in STAKE_NOT_ACTIVE and not self._guided:
                    stake = self._stake
                    if stake is not None:
                        self._guide(stake.tier, stake.required_sats, stake.capacity_sat)
                if exc.status in STAKE_NOT_ACTIVE:
                    self.check_stake()
            except Exception as exc:  # a bug or a full disk must not end the task feed for good
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.exception("task feed failed; reopening")
            finally:
                self._feed_open = False
            if self._draining.wait(self._backoff(attempt)):
                return
            attempt += 1

    def accept(self, task: AssignedTask) -> None:
        """Log, validate and queue one assignment (SRS-NODE-06/07)."""
        if self._draining.is_set():
            return  # not taken: the coordinator reassigns it when the assignment times out
        now_ms = self.clock.monotonic_ms()
        fresh = self.log.record_received(
            task.task_id, task.task_type, task.input_schema_id, task.input_schema_version,
            task_types.input_hash(task.input), len(task.input), task.price_msat,
            task.deadline_at, now_ms,
        )
        if not fresh:
            self._resume(task)
            return
        problem = self._input_problem(task)
        if problem is not None:
            self.log.mark_rejected(task.task_id, problem.message, now_ms)
            self.say(f"rejected task {task.task_id}: {problem.message}")
            self.send_rejection(task.task_id, problem)
            return
        self._queue(task)

    def _input_problem(self, task: AssignedTask) -> InvalidValue | None:
        try:
            _, data = task_types.validate_input(
                task.task_type, task.input_schema_id, task.input_schema_version, task.input
            )
        except InvalidValue as exc:
            return exc
        url = data.get("upload_url") if task.task_type == "fl_training" else None
        if url:
            try:  # an onion URL or an upload proxy: refused before anything runs (SRS-NET-04)
                fl_upload.check_upload_url(str(url), self.settings.upload_proxy)
            except DomainError as exc:
                return InvalidValue("input.upload_url", exc.message)
        return None

    def send_rejection(self, replica_id: str, problem: InvalidValue) -> bool:
        """Tell the coordinator why the task is refused (SRS-NODE-07); True once it has it.

        A signed :class:`TaskRejection` naming the field, so the coordinator reassigns the task
        at once; retried briefly while the coordinator is unreachable (otherwise the assignment
        simply times out and goes elsewhere).
        """
        body = TaskRejection(
            task_id=replica_id,
            field=_wire_text(problem.field, MAX_REJECTION_FIELD_CHARS),
            reason=_wire_text(problem.reason, MAX_REJECTION_REASON_CHARS),
        )
        for attempt in range(REJECTION_ATTEMPTS):
            envelope = envelopes.seal(self.identity, EnvelopeKind.TASK_REJECTION, body,
                                      self._entropy(16), self.clock.now())
            try:
                self.control.reject_task(envelopes.to_bytes(envelope))
            except ControlPlaneUnavailable as exc:
                self._disconnected(exc.message)
                if self._stop.wait(self._backoff(attempt)):
                    break
                continue
            except ControlPlaneRefused as exc:
                log.warning("rejection of %s refused: %s", replica_id, exc.message)
                return False
            return True
        return False

    def _resume(self, task: AssignedTask) -> None:
        """A re-pushed assignment (stream reopened, daemon restarted): finish what is missing."""
        with self._lock:
            if task.task_id in self._current:
                return
        logged = self.log.get(task.task_id)
        if logged is not None and logged.state == REJECTED:
            problem = self._input_problem(task)  # pushed again: our rejection never arrived
            if problem is not None:
                self.send_rejection(task.task_id, problem)
            return
        if logged is None or logged.state in {PROVED, FAILED}:
            return
        proof = self.log.proof_of(task.task_id)
        if proof is not None:
            output = self.log.output_of(task.task_id)
            delivered = b"" if output is None else task_types.canonical_output(output)
            self._executor.submit(self._report, task.task_id, proof, delivered)
        else:
            self._queue(task)

    def _queue(self, task: AssignedTask) -> None:
        with self._lock:
            self._current[task.task_id] = (task, self.clock.monotonic_ms())
        try:
            self._executor.submit(self._execute, task)
        except RuntimeError:  # executor shut down: draining
            with self._lock:
                self._current.pop(task.task_id, None)

    def _execute(self, task: AssignedTask) -> None:
        try:
            self._execute_inner(task)
        except Exception:
            log.exception("task %s could not be handled", task.task_id)
        finally:
            with self._lock:
                self._current.pop(task.task_id, None)

    def _execute_inner(self, task: AssignedTask) -> None:
        start_ms = self.clock.monotonic_ms()
        with self._lock:
            self._current[task.task_id] = (task, start_ms)
        self.log.mark_running(task.task_id, start_ms)
        result = self.runner.run(
            task.task_type, task.input_schema_id, task.input_schema_version, task.input
        )
        done_ms = self.clock.monotonic_ms()
        if not result.ok or result.output is None:
            self.log.mark_failed(task.task_id, result.error, result.execution_ms, done_ms)
            self.say(f"task {task.task_id} failed: {result.error}")
            return
        output = result.output
        try:
            if task.task_type == "fl_training":
                output = self._deliver_update(task, output)
            digest = task_types.output_hash(output)
        except (DomainError, ValueError, KeyError, TypeError) as exc:
            reason = exc.message if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
            self.log.mark_failed(task.task_id, reason, result.execution_ms, done_ms)
            self.say(f"task {task.task_id} failed: {reason}")
            return
        proof = TaskProof(
            task_id=task.task_id,
            output_hash=digest,
            execution_ms=result.execution_ms,
            attestation=self._attestation(),
        )
        envelope = envelopes.seal(self.identity, EnvelopeKind.TASK_PROOF, proof,
                                  self._entropy(16), self.clock.now())
        raw = envelopes.to_bytes(envelope)
        self.log.mark_executed(task.task_id, digest, output, raw, result.execution_ms, done_ms)
        self._report(task.task_id, raw, task_types.canonical_output(output))

    def _deliver_update(self, task: AssignedTask, trained: dict[str, Any]) -> dict[str, Any]:
        """Sign the trained FL update here (the key never enters the worker), upload it to the
        task's ``upload_url`` over clearnet, and return the weight-free output the proof commits
        to (:mod:`.fl_upload`; SRS-COORD-03, SRS-NET-04). A devnet's ``attack`` file makes the
        update poisoned first (read per task)."""
        data = task_types.parse_input(task.input)
        weights = [float(v) for v in trained["weights"]]
        if fl_upload.attack_mode(self.data_dir) == fl_upload.POISON:
            start = fl_upload.starting_weights(data, self.runner.model_dir or None)
            weights = fl_upload.poisoned(weights, start)
            self.say(f"task {task.task_id}: attack mode: sending a poisoned FL update")
        url = data.get("upload_url")
        if url:
            from owm_core.fl.updates import sign_update

            body = sign_update(
                self.identity, round_number=int(trained["round"]),
                sub_model=str(trained["sub_model"]), task_id=task.task_id,
                num_examples=int(trained["num_examples"]), loss=float(trained["loss"]),
                weights=weights,
            )
            sent = fl_upload.post_update(str(url), body, proxy=self.settings.upload_proxy)
            if sent.delivered:
                self.say(f"task {task.task_id}: FL update uploaded to {url} (HTTP {sent.status})")
            else:
                self.say(f"task {task.task_id}: FL update not accepted by {url} after "
                         f"{sent.attempts} attempt(s): {sent.status or 'no answer'} {sent.detail}")
        return fl_upload.proof_output(trained, weights)

    def _attestation(self) -> dict[str, Any]:
        return {
            "tier": self.manifest.tier.value,
            "gpu_vendor": self.manifest.gpu_vendor,
            "gpu_count": self.manifest.gpu_count,
            "vram_mb": self.manifest.vram_mb,
            "isolation": "subprocess",
            "cuda_mps": bool(self.runner.environment().get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT")),
        }

    def _report(self, replica_id: str, proof: bytes, output: bytes) -> None:
        """Send a stored proof, with the canonical output it commits to, until the coordinator
        has it (or refuses it for good)."""
        attempt = 0
        give_up_at: int | None = None
        while True:
            try:
                state = self.control.submit_proof(proof, output)
            except ControlPlaneUnavailable as exc:
                self._disconnected(exc.message)
                if self._draining.is_set():
                    now = self.clock.monotonic_ms()
                    give_up_at = give_up_at or now + int(self.settings.drain_report_s * 1000)
                    if now >= give_up_at:
                        self.say(f"proof of {replica_id} not delivered; it stays in the task log "
                                 "and is resent if the coordinator pushes the task again")
                        return
                time.sleep(self._backoff(attempt))
                attempt += 1
                continue
            except ControlPlaneRefused as exc:
                self.log.mark_proof_refused(replica_id, f"proof refused: {exc.message}")
                self.say(f"proof of {replica_id} refused: {exc.message}")
                return
            self.log.mark_proved(replica_id, state, payment_status_of(state))
            self.say(f"task {replica_id} proved ({state})")
            return

    # -- payments ------------------------------------------------------------------------------

    def refresh_payments(self) -> int:
        """Ask the coordinator about proofs still awaiting verification; how many changed."""
        changed = 0
        by_group: dict[str, list[str]] = {}
        for row in self.log.awaiting_payment():
            by_group.setdefault(task_id_of(row.replica_id), []).append(row.replica_id)
        for group, replica_ids in by_group.items():
            try:
                views = {v.replica_id: v for v in self.control.replicas(group)}
            except (ControlPlaneUnavailable, ControlPlaneRefused):
                continue
            for replica_id in replica_ids:
                view = views.get(replica_id)
                if view is None:
                    continue
                status = payment_status_of(view.state)
                if status != "pending":
                    self.log.set_payment(replica_id, view.state, status, view.price_msat or None)
                    changed += 1
        return changed

    def _payment_loop(self) -> None:
        while not self._draining.wait(self.settings.payment_check_interval_s):
            self._guarded(self.refresh_payments)

    def _weights_loop(self) -> None:
        """New model versions, installed only with a verified proof (SRS-NODE-10)."""
        if self.weights is not None:
            self.weights.run(self._draining, self.settings.weights_poll_s)

    def _invoice_loop(self) -> None:
        """Invoices from this node's own Lightning node for its payouts (SRS-LN-04)."""
        if self.invoicer is not None:
            self.invoicer.run(self._draining, self.settings.invoice_poll_s)

    def running(self) -> Sequence[str]:
        """Replica ids running now."""
        with self._lock:
            return sorted(self._current)


__all__ = ["DaemonSettings", "NodeDaemon", "payment_status_of", "stake_guidance"]
