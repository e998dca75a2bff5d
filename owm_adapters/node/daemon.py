"""The node daemon's lifecycle: register, publish, take tasks, prove, drain (SRS 4.1).

:class:`NodeDaemon` is the application service behind ``owm-node start`` (SRS-NODE-01). It
holds the node's identity (the key never leaves this process: the coordinator only receives
signatures, SRS-SEC-03), registers (:mod:`.registration`; SRS-NODE-11) and runs these threads:

* **heartbeat** (:mod:`.heartbeat`) — every ``heartbeat_interval_s`` (60 s) a signed heartbeat
  together with a freshly signed capability manifest (tier, VRAM, RAM, bandwidth; SRS-NODE-04);
* **feed** (:mod:`.feed`) — the coordinator's task stream; each assignment is logged
  (SRS-NODE-06), validated (SRS-NODE-07; an invalid one is rejected naming the field) and
  queued for execution;
* **workers** (:mod:`.prover`) — up to ``max_concurrent_tasks`` isolated task subprocesses
  (SRS-NODE-05); each output is hashed, a signed proof stored in the log, then sent;
* **stake & payments** (:mod:`.watchers`) — the stake channel is re-checked and a warning
  raised when capacity falls below the tier minimum (SRS-NODE-12); pending proofs are looked
  up until verified and credited or forfeited;
* **weights** (with ``[coordinator] api_url``) — new model versions are downloaded over clearnet
  and installed only when their OpenTimestamps proof verifies (:mod:`.weights_watcher`);
* **invoices** (with ``[lightning] backend`` = lnd / cln / embedded) — payouts awaiting an
  invoice are answered with invoices from the node's own Lightning node (:mod:`.invoicing`).

:meth:`NodeDaemon.run` returns after a graceful drain (SRS-NODE-09): stop taking tasks, finish
the running ones, report their proofs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from owm_adapters.node.context import DaemonSettings, NodeContext, NodeState
from owm_adapters.node.feed import FeedReader
from owm_adapters.node.heartbeat import Heartbeats
from owm_adapters.node.invoicing import PayoutInvoicer
from owm_adapters.node.prover import Prover
from owm_adapters.node.registration import Registration, stake_guidance
from owm_adapters.node.task_log import TaskLog
from owm_adapters.node.task_runner import TaskRunner
from owm_adapters.node.watchers import PaymentWatcher, StakeWatcher, payment_status_of
from owm_adapters.node.weights_watcher import WeightsWatcher
from owm_adapters.probes import NotReady, Probe
from owm_core.errors import InvalidValue
from owm_core.identity.envelopes import CapabilityManifest
from owm_core.identity.keys import Identity
from owm_core.nodes.control_plane import AssignedTask, StakeTermsView, StakeView
from owm_core.ports.clock import Clock
from owm_core.ports.control_plane import ControlPlane, MessageSigner

READINESS_MESSAGE = "owm node readiness probe"
"""What the readiness probe asks the node's Lightning node to sign (nothing else uses it)."""


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
        ln_signer: MessageSigner | None = None,
    ) -> None:
        self.identity = identity
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
        self.weights = weights
        self.invoicer = invoicer
        self.ctx = NodeContext(identity, control, manifest, clock, settings, say, entropy)
        self.stake = StakeWatcher(self.ctx)
        self.payments = PaymentWatcher(self.ctx, task_log)
        self.registration = Registration(self.ctx, self.stake, data_dir, ln_signer)
        self.heartbeats = Heartbeats(self.ctx, self.registration)
        self.prover = Prover(self.ctx, runner, task_log, data_dir)
        self.feed = FeedReader(self.ctx, task_log, self.prover, self.registration, self.stake,
                               weights)
        self._threads: list[threading.Thread] = []
        if weights is not None:
            weights.in_use = self.pinned_versions

    def pinned_versions(self) -> set[str]:
        """The model versions queued and running tasks are pinned to: never pruned."""
        with self.ctx.lock:
            return {task.model_version for task, _ in self.ctx.current.values()
                    if task.model_version}

    @property
    def control(self) -> ControlPlane:
        """The control plane every part talks through; replaceable while running."""
        return self.ctx.control

    @control.setter
    def control(self, control: ControlPlane) -> None:
        self.ctx.control = control

    # -- observation ---------------------------------------------------------------------------

    @property
    def state(self) -> NodeState:
        """starting, registering, awaiting_stake, serving, disconnected, draining or stopped."""
        return self.ctx.state

    def health(self) -> dict[str, Any]:
        """The ``/health`` document (SRS-NODE-08)."""
        ctx = self.ctx
        now_ms = self.clock.monotonic_ms()
        with ctx.lock:
            current = [
                {
                    "task_id": task.task_id,
                    "task_type": task.task_type,
                    "running_for_s": round((now_ms - started) / 1000, 1),
                }
                for task, started in ctx.current.values()
            ]
            stake = ctx.stake
            return {
                "state": ctx.state.value,
                "node_id": self.identity.node_id,
                "tier": self.manifest.tier.value,
                "coordinator": {
                    "url": self.coordinator_url,
                    "connected": ctx.connected,
                    "task_stream_open": ctx.feed_open,
                    "via_socks5_proxy": self.via_proxy,
                    "last_heartbeat_at": ctx.last_heartbeat_at,
                    "node_status": ctx.node_status,
                    "last_error": ctx.last_error,
                },
                "current_tasks": current,
                "stake": None if stake is None else {
                    "status": stake.status,
                    "required_sats": stake.required_sats,
                    "capacity_sat": stake.capacity_sat,
                    "warning": ctx.stake_warning,
                },
                "hardware": self.hardware,
            }

    def readiness_probes(self) -> dict[str, Probe]:
        """The probes of ``/ready`` on the health port (:mod:`owm_adapters.probes`): the
        identity key is loaded, the node is registered with its coordinator and connected, and
        (with a Lightning signer) its Lightning node signs a message — the call registration
        needs, so a locked or unreachable LND/CLN shows here."""
        identity, ctx, registration = self.identity, self.ctx, self.registration

        def identity_loaded() -> None:
            if not identity.public_key_hex:
                raise NotReady("missing")

        def control_plane() -> None:
            if registration.reply is None:
                raise NotReady("unregistered")
            if not ctx.connected:
                raise NotReady("disconnected")

        probes: dict[str, Probe] = {"identity": identity_loaded, "control_plane": control_plane}
        signer = registration.ln_signer
        if signer is not None:
            def lightning() -> None:
                signer.sign_message(READINESS_MESSAGE)

            probes["lightning"] = lightning
        return probes

    def running(self) -> Sequence[str]:
        """Replica ids running now."""
        with self.ctx.lock:
            return sorted(self.ctx.current)

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        """Register, serve until ``stop`` is set, then drain (SRS-NODE-09); returns exit code 0.

        Raises ControlPlaneRefused when the coordinator refuses the registration itself
        (cooldown, rate limit, bad manifest): retrying would not help.
        """
        ctx = self.ctx
        ctx.stop = stop
        ctx.state = NodeState.REGISTERING
        if not self.registration.register_until_done():
            ctx.state = NodeState.STOPPED
            return 0
        ctx.state = NodeState.SERVING
        for name, target in (
            ("owm-heartbeat", self.heartbeats.loop),
            ("owm-feed", self.feed.loop),
            ("owm-stake", self.stake.loop),
            ("owm-payments", self.payments.loop),
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
        ctx = self.ctx
        ctx.state = NodeState.DRAINING
        ctx.draining.set()
        ctx.note("draining: no new tasks; finishing running ones and reporting their proofs")
        self.feed.cancel()
        self.prover.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        self.runner.close()
        ctx.state = NodeState.STOPPED
        earned = self.log.earnings()
        ctx.note(
            f"stopped: {earned.credited_tasks} tasks credited ({earned.credited_msat} msat), "
            f"{earned.pending_tasks} awaiting verification",
            credited_tasks=earned.credited_tasks, amount_msat=earned.credited_msat,
            pending_tasks=earned.pending_tasks,
        )

    def _weights_loop(self) -> None:
        """New model versions, installed only with a verified proof (SRS-NODE-10)."""
        if self.weights is not None:
            self.weights.run(self.ctx.draining, self.settings.weights_poll_s)

    def _invoice_loop(self) -> None:
        """Invoices from this node's own Lightning node for its payouts (SRS-LN-04)."""
        if self.invoicer is not None:
            self.invoicer.run(self.ctx.draining, self.settings.invoice_poll_s)

    # -- one step at a time (the threads' steps, for callers that drive the daemon) -----------

    def accept(self, task: AssignedTask) -> None:
        """Log, validate and queue one assignment (SRS-NODE-06/07)."""
        self.feed.accept(task)

    def send_rejection(self, replica_id: str, problem: InvalidValue) -> bool:
        """Tell the coordinator why the task is refused (SRS-NODE-07); True once it has it."""
        return self.feed.send_rejection(replica_id, problem)

    def heartbeat_once(self) -> str | None:
        """Send one signed heartbeat with a freshly signed manifest (SRS-NODE-04)."""
        return self.heartbeats.heartbeat_once()

    def check_stake(self) -> StakeView | None:
        """Look at the stake now; warn when capacity is below the tier minimum (SRS-NODE-12)."""
        return self.stake.check_stake()

    def stake_terms(self) -> StakeTermsView | None:
        """The coordinator's stake terms for this node's tier (SRS-NODE-11); None if unknown."""
        return self.registration.stake_terms()

    def refresh_payments(self) -> int:
        """Ask the coordinator about proofs still awaiting verification; how many changed."""
        return self.payments.refresh_payments()


__all__ = [
    "DaemonSettings",
    "NodeDaemon",
    "NodeState",
    "payment_status_of",
    "stake_guidance",
]
