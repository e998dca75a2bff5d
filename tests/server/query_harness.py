"""An in-process conglomerate for query tests: a coordinator service with its market running,
nodes that take tasks from their streams like node daemons do (but execute them in a thread
with :func:`owm_adapters.node.task_exec.execute` instead of a subprocess), and the demo
knowledge base over the same repositories."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from owm_adapters.bootstrap import coordinator as bootstrap
from owm_adapters.bootstrap.coordinator import build_coordinator, demo_knowledge_base
from owm_adapters.bootstrap.settings import CoordinatorSettings
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.node.task_exec import execute
from owm_adapters.services.coordinator.service import (
    CoordinatorService,
    ServiceConfig,
    TaskStreamHandle,
)
from owm_adapters.services.knowledge import KnowledgeBase
from owm_adapters.services.queries import QueryService
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.access.ratelimit import Transport
from owm_core.coordination.challenges import ChallengePurpose
from owm_core.coordination.registration import Registration
from owm_core.errors import RevealsNotOpen
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, TaskProof
from owm_core.identity.sealing import (
    NONCE_BYTES,
    input_context,
    open_sealed,
    output_context,
    seal,
)
from owm_core.knowledge.retrieval import Retrieval
from owm_core.market.task_types import canonical_output, output_hash, validate_input
from owm_core.market.tasks import VerificationMode, VerificationPolicy
from tests.reveals import commitment_envelope, salt_of
from tests.server.harness import T1_STAKE_SAT, SimNode

SPOT_NEVER = VerificationPolicy(VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0)


class WallClock:
    """Real time (nodes stay online while a test runs)."""

    def now(self) -> int:
        return int(time.time())

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


@attrs.define
class InProcessNode:
    """A registered node answering its task stream from a thread.

    ``delay_s`` delays every proof (a slow node); ``silent`` nodes take tasks and never answer.
    """

    sim: SimNode
    coordinator: CoordinatorService
    ask_msat: int = 1_000
    delay_s: float = 0.0
    silent: bool = False
    executed: list[str] = attrs.Factory(list)
    _handle: TaskStreamHandle | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = attrs.Factory(threading.Event)

    def start(self) -> None:
        public_key = self.sim.public_key
        challenge = self.coordinator.challenge(public_key, ChallengePurpose.TASK_STREAM.value)
        details = {"ask_msat": self.ask_msat, "capabilities": ["inference"]}
        self._handle = self.coordinator.open_task_stream(
            public_key, challenge.nonce, self.sim.answer(challenge, details), ["inference"],
            self.ask_msat,
        )
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._handle is not None
        while not self._stop.is_set():
            try:
                pushed = self._handle.next(0.05)
            except StopIteration:
                return
            if pushed is None or self.silent:
                continue
            task = pushed.task
            request = task.request
            coordinator = self.coordinator.sealing.public_key_hex
            opened = open_sealed(pushed.input, recipient=self.sim.identity,
                                 sender_public_key=coordinator,
                                 context=input_context(task.task_id))
            _, data = validate_input(request.task_type, request.input_schema_id,
                                     request.input_schema_version, opened)
            output = execute(request.task_type, data, None)
            if self.delay_s:
                time.sleep(self.delay_s)
            proof = TaskProof(task.task_id, output_hash(output), 5, {"gpu": "none"})
            now = self.coordinator.clock.now()
            envelope = envelopes.seal(self.sim.identity, EnvelopeKind.TASK_PROOF, proof,
                                      os.urandom(16), now, audience=coordinator)
            delivered = canonical_output(output)
            identity = self.sim.identity
            sealed = seal(delivered, sender=identity, recipient_public_key=coordinator,
                          context=output_context(task.task_id), nonce=os.urandom(NONCE_BYTES))
            self.coordinator.commit_result(
                commitment_envelope(identity, task.task_id, delivered, now, audience=coordinator)
            )
            while True:  # a redundant round's reveals open once every replica committed
                try:
                    self.coordinator.submit_proof(
                        envelopes.to_bytes(envelope), sealed,
                        salt_of(identity.node_id, task.task_id),
                    )
                    break
                except RevealsNotOpen as wait:
                    if self._stop.wait(wait.retry_after_ms / 1000):
                        return
            self.executed.append(task.task_id)

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self.coordinator.close_task_stream(self._handle)
        if self._thread is not None:
            self._thread.join(5)


@attrs.define
class Conglomerate:
    """A running coordinator, its nodes and the demo knowledge base (shared repositories)."""

    coordinator: CoordinatorService
    repos: MemoryRepositories
    knowledge: KnowledgeBase
    nodes: list[InProcessNode]
    app: bootstrap.Coordinator


def register_node(coordinator: CoordinatorService, ledger: SimLedger, treasury: str,
                  **options: object) -> InProcessNode:
    sim = SimNode.create()
    sim.coordinator = coordinator.sealing.public_key_hex
    ledger.open_channel(treasury, sim.ln_pubkey, 2 * T1_STAKE_SAT, push_sat=T1_STAKE_SAT)
    challenge = coordinator.challenge(sim.public_key, ChallengePurpose.REGISTER.value)
    details = {"ln_node_uri": sim.ln_node_uri, "manifest_digest": sim.manifest.digest(),
               "onion_address": None}
    registration = Registration(
        public_key=sim.public_key,
        manifest_envelope=sim.manifest_envelope(coordinator.clock.now()),
        ln_node_uri=sim.ln_node_uri,
        onion_address=None,
        ln_signature=sim.ln_key.sign_registration(sim.public_key, challenge.nonce),
    )
    coordinator.register(registration, challenge_nonce=challenge.nonce,
                         signature=sim.answer(challenge, details), transport=Transport.CLEARNET,
                         client_ip="127.0.0.1")
    node = InProcessNode(sim, coordinator, **options)  # type: ignore[arg-type]
    node.start()
    return node


@contextmanager
def conglomerate(
    tmp_path: Path,
    node_options: tuple[dict[str, object], ...] = ({},),
    knowledge: KnowledgeBase | None = None,
    embedder: object | None = None,
    verification: VerificationPolicy = SPOT_NEVER,
) -> Iterator[Conglomerate]:
    """A coordinator (by default spot checks never drawn: one node per task) with
    ``node_options`` nodes."""
    clock = WallClock()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury = ledger.add_node("treasury")
    repos = memory_repositories()
    app = build_coordinator(
        CoordinatorSettings(), store=repos, treasury=ledger.lightning("treasury"),
        clock=clock, config=ServiceConfig(verification=verification, tick_s=0.05), slashing=False,
    )
    coordinator = app.service
    app.workers.start()
    kb = knowledge or demo_knowledge_base(embedder=embedder, repositories=repos)  # type: ignore[arg-type]
    nodes = [register_node(coordinator, ledger, treasury, **o) for o in node_options]
    try:
        yield Conglomerate(coordinator, repos, kb, nodes, app)
    finally:
        for node in nodes:
            node.stop()
        app.workers.stop(2)


class EmptyKnowledge:
    """A knowledge base with no sub-models and no data: every question is "not covered"."""

    def search(self, query: str, limit: int = 5, sub_models: object = None) -> Retrieval:
        return Retrieval(query=query, scores=(), passages=())

    def sub_model(self, name: str) -> None:
        return None

    def credit(self, query_id: str, used: object, cost_msat: int, now: int) -> tuple[()]:
        return ()


def query_service_without_data(coordinator: CoordinatorService) -> QueryService:
    """A query path over ``coordinator`` whose answers all say that nothing covers the question."""
    return QueryService(EmptyKnowledge(), coordinator, coordinator.repositories,
                        coordinator.clock)
