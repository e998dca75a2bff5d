"""What the node daemon's parts share: identity, control plane, settings and observed state.

The daemon's threads (registration, heartbeat, feed, prover, watchers) each own one concern;
what ``/health`` reports (SRS-NODE-08) — the :class:`NodeState`, the connection, the stake,
the running tasks — lives here so that every part updates the same picture.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from owm_core.access.destinations import DestinationPolicy
from owm_core.errors import DomainError
from owm_core.identity import envelopes, sealing
from owm_core.identity.envelopes import CapabilityManifest, EnvelopeKind
from owm_core.identity.keys import Identity, parse_public_key
from owm_core.market import task_types
from owm_core.nodes.control_plane import AssignedTask, StakeView
from owm_core.ports.clock import Clock
from owm_core.ports.control_plane import ControlPlane

log = logging.getLogger(__name__)

EVENTS_LOGGER = "owm_adapters.node.events"
"""The logger of the operator's lines (:func:`note`): ``owm-node start`` prints them on stdout
with ``--log-format text`` (and keeps this logger quiet) and writes them only as JSON log records
with ``--log-format json``."""
events = logging.getLogger(EVENTS_LOGGER)


def note(say: Callable[[str], None], line: str, *, level: int = logging.INFO,
         **fields: object) -> None:
    """Tell the operator ``line`` through ``say`` and log it on :data:`EVENTS_LOGGER` with its
    facts as structured fields (``task_id``, ``node_id``, ``amount_msat``, ``round``...), so
    ``--log-format json`` lines can be filtered on them. Never pass a secret as a field: the
    redacting filter masks fields named like one (SRS-SEC-07), not secrets under other names."""
    say(line)
    events.log(level, line, extra=fields)


@contextlib.contextmanager
def poll_errors_logged(logger: logging.Logger, what: str, node_id: str) -> Iterator[None]:
    """Log a poll's failure on ``logger`` instead of ending its thread: a domain error as a
    warning ``what: message``, anything else (a bug, a full disk) with its traceback. The
    watchers that poll on their own schedule (weights, payout invoices) share this rule."""
    try:
        yield
    except DomainError as exc:
        logger.warning("%s: %s", what, exc.message,
                       extra={"node_id": node_id, "error": exc.message})
    except Exception:
        logger.exception("%s poll failed", what, extra={"node_id": node_id})


class NodeState(enum.StrEnum):
    """Where the daemon is in its lifecycle; the values are what ``/health`` reports."""

    STARTING = "starting"
    REGISTERING = "registering"
    AWAITING_STAKE = "awaiting_stake"
    SERVING = "serving"
    DISCONNECTED = "disconnected"
    DRAINING = "draining"
    STOPPED = "stopped"


@attrs.frozen
class DaemonSettings:
    """How the daemon behaves (from owm.toml; defaults follow the spec)."""

    ln_node_uri: str
    coordinator_public_key: str = attrs.field(
        kw_only=True, validator=lambda _i, a, v: parse_public_key(v, "coordinator.public_key")
    )
    """The coordinator's Ed25519 identity key (``[coordinator] public_key``): task inputs are
    sealed by it, outputs to it (SRS-SEC-02); assignments it did not sign are dropped
    (SRS-SEC-01/03)."""
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
    destinations: DestinationPolicy = attrs.field(factory=DestinationPolicy)
    """Which non-public targets FL uploads and weight downloads may reach: none (no SSRF
    through task URLs, SRS-SEC-06), or loopback and private networks on a devnet."""
    weights_poll_s: float = 300.0
    """How often the weights watcher (when there is one) looks for new model versions."""
    invoice_poll_s: float = 30.0
    """How often the payout invoicer (when there is one) looks for payouts awaiting invoices."""


@attrs.define(eq=False)
class NodeContext:
    """The node's identity and collaborators, plus the state its threads share.

    ``lock`` guards ``current``, ``stake`` and ``counts`` (event counters for ``/metrics``:
    ``heartbeats_accepted``, ``heartbeats_failed``, ``fl_uploads_delivered``,
    ``fl_uploads_failed``); the other fields are single writes read by ``/health``. ``stop``
    ends the daemon; ``draining`` ends the periodic threads.
    """

    identity: Identity
    control: ControlPlane
    manifest: CapabilityManifest
    clock: Clock
    settings: DaemonSettings
    say: Callable[[str], None]
    entropy: Callable[[int], bytes]
    state: NodeState = NodeState.STARTING
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    connected: bool = False
    last_heartbeat_at: int | None = None
    last_error: str = ""
    node_status: str = ""
    stake: StakeView | None = None
    stake_warning: str = ""
    current: dict[str, tuple[AssignedTask, int]] = attrs.field(factory=dict)
    feed_open: bool = False
    outage: bool = False
    """Set when a connected node loses the coordinator; cleared (and logged) on reconnecting."""
    counts: dict[str, int] = attrs.field(factory=dict)
    stop: threading.Event = attrs.field(factory=threading.Event)
    draining: threading.Event = attrs.field(factory=threading.Event)

    def count(self, event: str) -> None:
        """Add one to the ``event`` counter that ``/metrics`` exports."""
        with self.lock:
            self.counts[event] = self.counts.get(event, 0) + 1

    def note(self, line: str, *, level: int = logging.INFO, **fields: object) -> None:
        """:func:`note` through this daemon's ``say``, with this node's id as ``node_id``."""
        note(self.say, line, level=level, **{"node_id": self.identity.node_id, **fields})

    def task_fields(self, task: AssignedTask) -> dict[str, Any]:
        """An assignment's facts as structured log fields (``--log-format json``)."""
        return {"node_id": self.identity.node_id, "task_id": task.task_id,
                "task_type": task.task_type, "amount_msat": task.price_msat,
                "model_version": task.model_version}

    def seal(self, kind: EnvelopeKind, body: Any, now: int | None = None) -> bytes:
        """``body`` signed with the node's key for its coordinator (``[coordinator]
        public_key``, SRS-SEC-03), as wire bytes."""
        at = self.clock.now() if now is None else now
        envelope = envelopes.seal(
            self.identity, kind, body, self.entropy(16), at,
            audience=self.settings.coordinator_public_key,
        )
        return envelopes.to_bytes(envelope)

    def open_input(self, task: AssignedTask) -> AssignedTask:
        """``task`` with its input opened: sealed to this node by the coordinator's key for this
        replica (SRS-SEC-02); InvalidValue(``input``) for anything else."""
        opened = sealing.open_sealed(
            task.input,
            recipient=self.identity,
            sender_public_key=self.settings.coordinator_public_key,
            context=sealing.input_context(task.task_id),
            field="input",
        )
        return attrs.evolve(task, input=opened)

    def seal_output(self, replica_id: str, output: bytes) -> bytes:
        """``output`` sealed to the coordinator's key for ``replica_id`` (b"" stays b"")."""
        if not output:
            return b""
        return sealing.seal(
            output,
            sender=self.identity,
            recipient_public_key=self.settings.coordinator_public_key,
            context=sealing.output_context(replica_id),
            nonce=self.entropy(sealing.NONCE_BYTES),
        )

    def manifest_envelope(self) -> bytes:
        """The capability manifest, freshly signed (SRS-NODE-04)."""
        return self.seal(EnvelopeKind.CAPABILITY_MANIFEST, self.manifest)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt``: doubling, capped."""
        settings = self.settings
        return float(min(settings.retry_max_s, settings.retry_initial_s * 2**attempt))

    def disconnected(self, message: str) -> None:
        """The coordinator is unreachable: a serving node reports itself disconnected (logged
        once per outage, when the node was connected)."""
        if self.connected:
            log.warning("lost the coordinator: %s", message,
                        extra={"node_id": self.identity.node_id, "error": message})
            self.outage = True
        self.connected = False
        self.last_error = message
        if self.state == NodeState.SERVING:
            self.state = NodeState.DISCONNECTED

    def reconnected(self, via: str) -> None:
        """The coordinator answered ``via`` (``register``, ``heartbeat``, ``feed``): connected,
        and after an outage a record saying so."""
        if self.outage:
            self.outage = False
            log.info("coordinator reachable again (%s)", via,
                     extra={"node_id": self.identity.node_id, "via": via})
        self.connected = True

    def guarded(self, step: Callable[[], object]) -> None:
        """Run one periodic step; an unexpected error is logged, never fatal to the thread."""
        try:
            step()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            name = getattr(step, "__name__", str(step))
            log.exception("periodic step %s failed", name,
                          extra={"node_id": self.identity.node_id, "step": name})

    def every(self, interval_s: float, step: Callable[[], object]) -> None:
        """Run ``step`` every ``interval_s`` until the daemon drains."""
        while not self.draining.wait(interval_s):
            self.guarded(step)


__all__ = [
    "EVENTS_LOGGER", "DaemonSettings", "NodeContext", "NodeState", "note", "poll_errors_logged",
]
