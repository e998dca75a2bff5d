"""The coordinator application: the use cases of :mod:`owm_core.coordination` with their I/O.

:class:`CoordinatorService` is the façade the shells (gRPC, HTTP, CLI) call, and the owner of
one coordinator process's lifecycle. Behind it, each part owns one group of locks:

- :class:`~.registrar.Registrar`: challenges, registration, deregistration, stakes;
- :class:`~.heartbeats.HeartbeatIngest`: the known-node cache, the verifier threads and the
  batched heartbeat writer (SRS-PERF-04);
- :class:`~.market.Market`: task streams, submission, dispatch, proofs, rejections and the
  waiters for a verdict; the market thread here times out overdue assignments, dispatches
  waiting tasks (SRS-PERF-09) and re-verifies due stakes.

Durability rules: a submitted task (with its input bytes) is committed before
:meth:`CoordinatorService.submit_task` returns, a proof before
:meth:`CoordinatorService.submit_proof` returns, and a heartbeat before
:meth:`CoordinatorService.heartbeat` returns (it waits for the batch it joined).
:class:`CoordinatorObserver` is how metrics learn about events without this module importing
a metrics library.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence

from owm_adapters.services.coordinator.funding import NETWORK, Funder, TaskFunding
from owm_adapters.services.coordinator.heartbeats import (
    VERIFY_CHUNK,
    WARM_KNOWN_MIN,
    HeartbeatIngest,
    HeartbeatResult,
)
from owm_adapters.services.coordinator.market import (
    MAX_REMEMBERED_REJECTIONS,
    Market,
    PushedTask,
    TaskMarket,
    TaskStreamHandle,
)
from owm_adapters.services.coordinator.outputs import TaskOutputs
from owm_adapters.services.coordinator.registrar import Registrar
from owm_adapters.services.coordinator.sealing import TaskSealing
from owm_adapters.services.coordinator.shared import (
    ClientGuards,
    CoordinatorObserver,
    LockedGuard,
    Observed,
    ServiceConfig,
    stake_node_id,
)
from owm_adapters.services.singletons import Flag
from owm_core.access.ratelimit import Transport
from owm_core.coordination.challenges import Challenge, ChallengePurpose
from owm_core.coordination.registration import Registered, Registration, task_stream_details
from owm_core.coordination.rejections import Rejection, RejectionOutcome
from owm_core.coordination.reveals import CommitOutcome
from owm_core.coordination.stakes import StakeTerms
from owm_core.coordination.tasks import ProofOutcome
from owm_core.identity.keys import Identity
from owm_core.identity.payout_requests import sign_payout_request
from owm_core.market.tasks import NodeOffer, Settlement, Task, TaskRequest, TaskState
from owm_core.nodes.registry import NodeStatus
from owm_core.payments.invoices import PendingPayout
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import Stake

log = logging.getLogger(__name__)


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
        coordinator_key: Identity | None = None,
        registration_listeners: Sequence[Callable[[str], None]] = (),
    ) -> None:
        """``coordinator_key`` seals task inputs to nodes and opens their outputs (SRS-SEC-02);
        without one (tests) this process draws a key of its own, and inputs stored sealed
        under it do not open after a restart."""
        self.repositories = repositories
        self.lightning = lightning
        self.clock = clock
        self.config = config or ServiceConfig()
        self._registration_listeners = tuple(registration_listeners)
        self._observed = Observed() if observer is None else Observed(observer)
        shared = self.config.shared_state
        ledger = repositories.nonces if shared else None
        #: Nodes' envelopes only (registered keys, SRS-SEC-03); clients' go to their own.
        guard = LockedGuard.sized_by(self.config, ledger)
        #: Whether this coordinator runs the market's housekeeping and the stake checks
        #: (on unless a :class:`~owm_adapters.services.singletons.SingletonJobs` decides).
        self.housekeeping = Flag(on=True)
        self.stake_checks = Flag(on=True)
        key = coordinator_key or Identity.from_seed(entropy(32))
        self.funding = funding = TaskFunding(
            repositories, lightning, clock, self.config.funding, self.config.verification,
            ClientGuards.sized_by(self.config, ledger), coordinator_key=key.public_key_hex,
        )
        self.registrar = Registrar(
            repositories, lightning, clock, self.config, entropy, coordinator_key=key.public_key_hex
        )
        self.ingest = HeartbeatIngest(
            repositories, clock, self.config, guard, self._observed,
            coordinator_key=key.public_key_hex,
        )
        self.sealing = TaskSealing(key, entropy)
        self.market = Market(
            repositories, clock, self.config, guard, self._observed,
            sealing=self.sealing, entropy=entropy, settlement_listeners=settlement_listeners,
            funding=funding,
        )
        #: Verified outputs for the submitters that paid for them, sealed to their keys.
        self.outputs = TaskOutputs(repositories, self.market, self.sealing, funding, clock)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def signer(self) -> Identity:
        """The coordinator's key: signs task assignments (SRS-SEC-01/03) and seals (SRS-SEC-02);
        nodes know its public half from ``[coordinator] public_key``."""
        return self.sealing.identity

    def signed_payouts(
        self, payouts: Iterable[PendingPayout], recipient_public_key: str
    ) -> list[PendingPayout]:
        """``payouts`` signed by the coordinator key for the node that asked (SRS-SEC-01/03)."""
        return [sign_payout_request(self.signer, p, recipient_public_key) for p in payouts]

    @property
    def observer(self) -> CoordinatorObserver:
        """Who hears of heartbeats and dispatches (metrics bind after construction)."""
        return self._observed.current

    @observer.setter
    def observer(self, observer: CoordinatorObserver) -> None:
        self._observed.current = observer

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat writer, the market thread and the stake checks' (a no-op while
        they run)."""
        if self._threads:
            return
        self.ingest.start()
        self._threads = [
            threading.Thread(target=self._run_market, name="owm-market", daemon=True),
            threading.Thread(target=self._run_stake_checks, name="owm-stakes", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close task streams, flush pending heartbeats, stop the threads (graceful shutdown)."""
        self._stopping.set()
        self.market.end_streams()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads = []
        self.ingest.stop(timeout_s)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def _run_market(self) -> None:
        while not self._stopping.wait(self.config.tick_s):
            try:
                self.market.tick(housekeeping=self.housekeeping.on)
            except Exception:
                log.exception("market tick failed")

    def _run_stake_checks(self) -> None:
        """Re-verify the due stakes every ``stake_check_s`` while this coordinator leads them
        (SRS-STAKE-02/03), on a thread of their own: a pass asks the Lightning node once per
        node and writes each stake (``bench/stake_recheck.py``), which over thousands of nodes
        must not hold up the market's tick (dispatch sweeps, time-outs, reveal windows)."""
        wait = self.config.tick_s
        while not self._stopping.wait(wait):
            if not self.stake_checks.on:
                wait = self.config.tick_s  # ready within a tick of gaining the lead
                continue
            wait = self.config.stake_check_s
            try:
                self.registrar.reverify_stakes()
            except Exception:
                log.exception("stake re-verification failed; retrying later")

    # -- registration ------------------------------------------------------------------------

    def challenge(self, public_key: str, purpose: str) -> Challenge:
        """Issue a one-use challenge for ``public_key`` and ``purpose`` (SRS-SEC-03)."""
        return self.registrar.challenge(public_key, purpose)

    def register(
        self,
        registration: Registration,
        *,
        challenge_nonce: str,
        signature: str,
        transport: Transport,
        client_ip: str | None,
    ) -> Registered:
        """Register a node (spec 4.12.2); its heartbeats are admitted from now on."""
        registered = self.registrar.register(
            registration, challenge_nonce=challenge_nonce, signature=signature,
            transport=transport, client_ip=client_ip,
        )
        self.ingest.remember(registered.node.node_id, registered.node.public_key)
        log.info("node %s registered here (stake %s)", registered.node.node_id,
                 registered.stake.status.value,
                 extra={"node_id": registered.node.node_id,
                        "stake": registered.stake.status.value})
        self.market.admission.forget()
        for listener in self._registration_listeners:  # e.g. payout channels (SRS-LN-03)
            listener(registered.node.node_id)
        return registered

    def deregister(self, public_key: str, challenge_nonce: str, signature: str) -> Stake:
        """Leave cooperatively after an answered challenge (SRS-STAKE-08); ends its stream."""
        stake = self.registrar.deregister(public_key, challenge_nonce, signature)
        node_id = stake_node_id(stake)
        self.ingest.forget(node_id)
        self.market.end_stream_of(node_id)
        return stake

    def stake_terms(self, tier: str) -> StakeTerms:
        """What a node of ``tier`` must lock before registering (SRS-NODE-11); no auth needed."""
        return self.registrar.stake_terms(tier)

    def stake_status(self, node_id: str | None, public_key: str | None) -> Stake:
        """The stake record of a node (spec 4.12)."""
        return self.registrar.stake_status(node_id, public_key)

    def status_of(self, node_id: str) -> NodeStatus:
        """online / offline / suspended for ``node_id`` now (spec §5.1)."""
        return self.registrar.status_of(node_id)

    def registry_counts(self) -> dict[str, int]:
        """How many registered nodes are online, offline and suspended (metrics)."""
        return self.registrar.registry_counts()

    def reverify_stakes(self) -> list[Stake]:
        """Re-verify the stakes that are due (SRS-STAKE-02/03); return their new records."""
        return self.registrar.reverify_stakes()

    # -- heartbeats --------------------------------------------------------------------------

    def heartbeat(self, raw: bytes, manifest_raw: bytes = b"") -> tuple[str, NodeStatus]:
        """Verify one heartbeat (and an optional new manifest); return once it is persisted.

        Returns the node id and its status after the heartbeat.
        """
        node_id = self.ingest.heartbeat(raw, manifest_raw)
        return node_id, self.status_of(node_id)

    def heartbeats(self, raws: Iterable[bytes], wait: bool = True) -> HeartbeatResult:
        """Verify a batch of heartbeats; persist the accepted ones in the writer's next batch.

        With ``wait`` the call returns once that batch is committed.
        """
        return self.ingest.heartbeats(raws, wait)

    def flush_heartbeats(self) -> None:
        """Persist every pending heartbeat now (tests, shutdown)."""
        self.ingest.flush()

    # -- task market -------------------------------------------------------------------------

    def submit_task(
        self, request: TaskRequest, input_data: bytes = b"", funder: Funder = NETWORK
    ) -> list[Task]:
        """Fund a task (``funder`` pays), store it and its input durably, dispatch it."""
        return self.market.submit_task(request, input_data, funder)

    def submit_signed_task(
        self, request: TaskRequest, input_data: bytes, submitter_envelope: bytes
    ) -> list[Task]:
        """A task from the control plane: its signing submitter pays (funded work only)."""
        funder = self.funding.authenticate(submitter_envelope, request, input_data)
        return self.market.submit_task(request, input_data, funder)

    def new_task_id(self) -> str:
        """A fresh random task id for submitters that bring none."""
        return self.market.new_task_id()

    def task(self, task_id: str) -> tuple[list[Task], str]:
        """The replicas of a submitted task and its outcome (pending / verified / failed)."""
        return self.market.task(task_id)

    def await_task(self, task_id: str, timeout_s: float) -> tuple[list[Task], str]:
        """:meth:`task`, once its outcome is no longer pending or after ``timeout_s`` seconds."""
        return self.market.await_task(task_id, timeout_s)

    def task_output(self, task_id: str) -> bytes | None:
        """The verified output of a submitted task, or None (pending, failed, no output)."""
        return self.market.task_output(task_id)

    def task_counts(self) -> dict[str, int]:
        """How many replicas are in each task state (metrics: one count query)."""
        counts = self.repositories.tasks.counts()
        return {s.value: counts.get(s, 0) for s in TaskState}

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
        details = task_stream_details(capabilities, ask_msat)
        self.registrar.redeem(
            public_key, ChallengePurpose.TASK_STREAM, challenge_nonce, signature, details
        )
        node, manifest = self.registrar.active_node(public_key)
        return self.market.open_stream(node, manifest, capabilities, ask_msat)

    def streaming_offers(self) -> list[NodeOffer]:
        """The offers of the nodes whose task streams are open now (who can take work)."""
        return self.market.streaming_offers()

    def close_task_stream(self, handle: TaskStreamHandle) -> None:
        """Forget a stream whose node went away; its assignments run to their deadline."""
        self.market.close_task_stream(handle)

    def commit_result(self, raw: bytes) -> CommitOutcome:
        """Store a replica's signed commitment, the first phase of its result (SRS-SEC-11)."""
        return self.market.commit_result(raw)

    def submit_proof(self, raw: bytes, output: bytes = b"", salt: bytes = b"") -> ProofOutcome:
        """Reveal a committed replica's result (signed proof, salt, output bytes: required),
        then judge its round (SRS 4.1, SRS-SEC-11); settlement listeners hear of settlements."""
        return self.market.submit_proof(raw, output, salt)

    def reject_task(self, raw: bytes) -> RejectionOutcome:
        """The assigned node refuses a replica (SRS-NODE-07): record why, dispatch it again now."""
        return self.market.reject_task(raw)

    def rejections(self, task_id: str) -> dict[str, list[Rejection]]:
        """The rejections this process recorded for a submitted task, by replica id."""
        return self.market.rejections(task_id)

    def tick(self) -> list[Task]:
        """Time out overdue assignments, expire tasks nobody took, dispatch; the timed-out."""
        return self.market.tick()


__all__ = [
    "MAX_REMEMBERED_REJECTIONS",
    "VERIFY_CHUNK",
    "WARM_KNOWN_MIN",
    "CoordinatorObserver",
    "CoordinatorService",
    "HeartbeatResult",
    "PushedTask",
    "ServiceConfig",
    "TaskMarket",
    "TaskStreamHandle",
    "stake_node_id",
]
