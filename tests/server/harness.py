"""A coordinator on a real gRPC port and simulated nodes that talk to it like node daemons do.

The port is mTLS (SRS-SEC-01) and the coordinator checks on every call that the connection's
certificate is bound to the key the request speaks for. Each simulated node therefore talks
over its own channel with its own bound certificate, as each node daemon does:
:class:`NodeRoutingStub` sends a request over the channel of the node it speaks for (its
``public_key`` field or the signer of its envelope), for every identity made known with
:func:`known` (``SimNode.create`` does that); other requests go over an operator's channel.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import attrs
import grpc
from coincurve import PrivateKey

from owm_adapters.bootstrap import coordinator as bootstrap
from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.settings import CoordinatorSettings
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.submitter import signed_submit_request
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import CoordinatorService, ServiceConfig
from owm_core.coordination.challenges import Challenge, ChallengePurpose, challenge_message
from owm_core.identity import envelopes
from owm_core.identity.envelopes import CapabilityManifest, EnvelopeKind, Heartbeat, TaskProof
from owm_core.identity.keys import Identity
from owm_core.identity.sealing import (
    NONCE_BYTES,
    input_context,
    open_sealed,
    output_context,
    seal,
)
from owm_core.market.tasks import TaskRequest
from owm_core.nodes.tiers import Tier
from owm_core.ports.invoices import InvoiceSource
from owm_core.ports.repositories import Repositories
from owm_server.grpc.limits import GrpcLimits
from owm_server.grpc.server import CoordinatorServer
from tests.fakes.ln_key import LnKey
from tests.reveals import commitment_envelope, salt_of
from tests.tls_support import COORDINATOR_TLS, identity_for, known, secure_channel

T1_STAKE_SAT = 100_000
COORDINATOR_KEY = Identity.from_seed(b"\x0c" * 32)
"""The coordinator's identity in these tests: kept across restarts, as its key file is."""
_ENVELOPE_FIELDS = (
    "heartbeat_envelope", "proof_envelope", "rejection_envelope", "query_envelope",
    "invoice_envelope", "commitment_envelope",
)


def speaker_of(request: object) -> str | None:
    """The public key a request speaks for, if it names one."""
    public_key = getattr(request, "public_key", "")
    if isinstance(public_key, str) and public_key:
        return public_key
    for field in _ENVELOPE_FIELDS:
        raw = getattr(request, field, b"")
        if raw:
            try:
                return envelopes.from_bytes(raw).signer
            except Exception:
                return None
    return None


@attrs.frozen
class _RoutedMethod:
    """One RPC of a :class:`NodeRoutingStub`: called directly, or with ``future``/``with_call``."""

    router: NodeRoutingStub
    method: str

    def _target(self, request: object) -> Any:
        return getattr(self.router.stub_for(speaker_of(request)), self.method)

    def __call__(self, request: object, *args: Any, **kwargs: Any) -> Any:
        return self._target(request)(request, *args, **kwargs)

    def future(self, request: object, *args: Any, **kwargs: Any) -> Any:
        return self._target(request).future(request, *args, **kwargs)

    def with_call(self, request: object, *args: Any, **kwargs: Any) -> Any:
        return self._target(request).with_call(request, *args, **kwargs)


class NodeRoutingStub:
    """A ``CoordinatorStub`` that sends each request over the channel of the node it speaks
    for (module docstring)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._stubs: dict[str, pb_grpc.CoordinatorStub] = {}
        self._channels: list[grpc.Channel] = []
        self._lock = threading.Lock()

    def stub_for(self, public_key: str | None) -> pb_grpc.CoordinatorStub:
        """The stub over the channel bound to ``public_key`` (an operator's when unknown)."""
        identity = identity_for(public_key)
        slot = identity.public_key_hex if identity is not None else ""
        with self._lock:
            stub = self._stubs.get(slot)
            if stub is None:
                channel = secure_channel(self.address, identity)
                self._channels.append(channel)
                stub = pb_grpc.CoordinatorStub(channel)  # type: ignore[no-untyped-call]
                self._stubs[slot] = stub
        return stub

    def __getattr__(self, method: str) -> _RoutedMethod:
        return _RoutedMethod(self, method)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels:
                channel.close()
            self._channels.clear()
            self._stubs.clear()
OPERATOR = Identity.from_seed(b"\x5a" * 32)
"""The harness's operator key: listed in ``network_submitters``, so its tasks draw on the
network budget (funded work only) and tests that are not about money need no balance."""
_clock_of_last_start: list[StepClock] = []


class StepClock:
    """A wall clock tests move by hand; monotonic time is real (latencies)."""

    def __init__(self, now: int = 1_800_000_000) -> None:
        self._now = now

    def now(self) -> int:
        return self._now

    def advance(self, seconds: int) -> None:
        self._now += seconds

    def monotonic_ms(self) -> int:
        import time

        return time.monotonic_ns() // 1_000_000


@attrs.define
class Coordinator:
    """A running coordinator: service, gRPC server and a client stub."""

    service: CoordinatorService
    server: CoordinatorServer
    router: NodeRoutingStub
    ledger: SimLedger
    treasury: str
    app: bootstrap.Coordinator

    @property
    def stub(self) -> pb_grpc.CoordinatorStub:
        """The stub tests call: routes each request over its node's own channel."""
        return cast(pb_grpc.CoordinatorStub, self.router)

    def stop(self) -> None:
        self.router.close()
        self.server.stop(2)
        self.app.workers.stop(2)


def start_coordinator(
    repositories: Repositories,
    ledger: SimLedger,
    clock: StepClock,
    config: ServiceConfig | None = None,
    onion_listen: str = "",
    invoices: InvoiceSource | None = None,
    payout_sweep_s: float | None = None,
    max_workers: int = 16,
    limits: GrpcLimits | None = None,
    coordinator_key: Identity = COORDINATOR_KEY,
) -> Coordinator:
    """Build a coordinator over ``repositories`` and the ledger's treasury, on a free port.

    :data:`OPERATOR` is added to the network submitters of ``config``.
    """
    treasury = ledger.add_node("treasury")
    config = config or ServiceConfig(tick_s=0.05)
    config = attrs.evolve(config, funding=attrs.evolve(
        config.funding,
        network_submitters=config.funding.network_submitters | {OPERATOR.public_key_hex},
    ))
    _clock_of_last_start[:] = [clock]
    app = build_coordinator(
        CoordinatorSettings(),
        store=repositories,
        treasury=ledger.lightning("treasury"),
        clock=clock,
        config=config,
        slashing=False,
        invoices=invoices,
        payout_sweep_s=payout_sweep_s,
        coordinator_key=coordinator_key,
    )
    server = CoordinatorServer(
        app.service, "127.0.0.1:0", tls=COORDINATOR_TLS, onion_listen=onion_listen,
        max_workers=max_workers, limits=limits,
    )
    app.workers.start()
    server.start()
    stub = NodeRoutingStub(f"127.0.0.1:{server.port}")
    return Coordinator(app.service, server, stub, ledger, treasury, app)


def ln_pubkey() -> str:
    """A fresh compressed secp256k1 public key: a node's Lightning identity."""
    return PrivateKey().public_key.format(compressed=True).hex()


@attrs.define
class SimNode:
    """A node daemon's control-plane client: its key never leaves it, it only signs."""

    identity: Identity
    ln_key: LnKey
    manifest: CapabilityManifest
    seq: int = 0
    #: The public key of the coordinator its envelopes are signed for (SRS-SEC-03).
    coordinator: str = COORDINATOR_KEY.public_key_hex

    @classmethod
    def create(cls, tier: Tier = Tier.T1, vram_mb: int = 0, gpu_count: int = 0) -> SimNode:
        manifest = CapabilityManifest(
            tier=tier,
            vram_mb=vram_mb,
            ram_mb=16_000,
            bandwidth_mbps=100,
            gpu_vendor="none" if gpu_count == 0 else "nvidia",
            gpu_count=gpu_count,
        )
        return cls(known(Identity.from_seed(os.urandom(32))), LnKey.fresh(), manifest)

    @property
    def ln_pubkey(self) -> str:
        return self.ln_key.pubkey

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    @property
    def public_key(self) -> str:
        return self.identity.public_key_hex

    @property
    def ln_node_uri(self) -> str:
        return f"{self.ln_pubkey}@127.0.0.1:9735"

    def stake(self, coordinator: Coordinator, capacity_sat: int = T1_STAKE_SAT) -> None:
        """Open the stake channel with the treasury (what SRS-NODE-11 guides operators through):
        ``capacity_sat`` of the node's own balance, as much again on the treasury's side."""
        coordinator.ledger.open_channel(
            coordinator.treasury, self.ln_pubkey, 2 * capacity_sat, push_sat=capacity_sat
        )

    def manifest_envelope(self, now: int) -> bytes:
        env = envelopes.seal(
            self.identity, EnvelopeKind.CAPABILITY_MANIFEST, self.manifest, os.urandom(16), now,
            audience=self.coordinator,
        )
        return envelopes.to_bytes(env)

    def challenge(self, stub: pb_grpc.CoordinatorStub, purpose: ChallengePurpose) -> Challenge:
        reply = stub.GetChallenge(
            pb.GetChallengeRequest(public_key=self.public_key, purpose=purpose.value)
        )
        return Challenge(
            reply.public_key, reply.purpose, reply.nonce, reply.issued_at, reply.expires_at
        )

    def answer(self, challenge: Challenge, details: Mapping[str, object]) -> str:
        return self.identity.sign(challenge_message(challenge, details)).hex()

    def register_request(self, stub: pb_grpc.CoordinatorStub, now: int) -> pb.RegisterRequest:
        challenge = self.challenge(stub, ChallengePurpose.REGISTER)
        details = {
            "ln_node_uri": self.ln_node_uri,
            "manifest_digest": self.manifest.digest(),
            "onion_address": None,
        }
        return pb.RegisterRequest(
            public_key=self.public_key,
            challenge_nonce=challenge.nonce,
            signature=self.answer(challenge, details),
            manifest_envelope=self.manifest_envelope(now),
            ln_node_uri=self.ln_node_uri,
            ln_signature=self.ln_key.sign_registration(self.public_key, challenge.nonce),
        )

    def register(self, stub: pb_grpc.CoordinatorStub, now: int) -> pb.RegisterResponse:
        reply: pb.RegisterResponse = stub.Register(self.register_request(stub, now))
        return reply

    def heartbeat_envelope(self, now: int) -> bytes:
        self.seq += 1
        body = Heartbeat(node_id=self.node_id, seq=self.seq, manifest_digest=self.manifest.digest())
        env = envelopes.seal(self.identity, EnvelopeKind.HEARTBEAT, body, os.urandom(16), now,
                             audience=self.coordinator)  # fmt: skip
        return envelopes.to_bytes(env)

    def open_stream(
        self,
        stub: pb_grpc.CoordinatorStub,
        capabilities: tuple[str, ...] = ("inference",),
        ask_msat: int = 1_000,
    ) -> TaskFeed:
        challenge = self.challenge(stub, ChallengePurpose.TASK_STREAM)
        details = {"ask_msat": ask_msat, "capabilities": sorted(capabilities)}
        call = stub.TaskStream(
            pb.TaskStreamRequest(
                public_key=self.public_key,
                challenge_nonce=challenge.nonce,
                signature=self.answer(challenge, details),
                capabilities=list(capabilities),
                ask_msat=ask_msat,
            )
        )
        return TaskFeed(call)

    def opened(self, assignment: pb.TaskAssignment, coordinator: str = "") -> bytes:
        """The input of ``assignment``, sealed to this node by the coordinator (SRS-SEC-02)."""
        return open_sealed(
            assignment.input,
            recipient=self.identity,
            sender_public_key=coordinator or self.coordinator,
            context=input_context(assignment.task_id),
        )

    def sealed(self, task_id: str, output: bytes, coordinator: str = "") -> bytes:
        """``output`` sealed to the coordinator, as a node daemon delivers it (SRS-SEC-02)."""
        return seal(
            output,
            sender=self.identity,
            recipient_public_key=coordinator or self.coordinator,
            context=output_context(task_id),
            nonce=os.urandom(NONCE_BYTES),
        )

    def proof(self, task_id: str, output: bytes, now: int) -> bytes:
        body = TaskProof(
            task_id=task_id,
            output_hash=hashlib.sha256(output).hexdigest(),
            execution_ms=12,
            attestation={"gpu": "none"},
        )
        env = envelopes.seal(self.identity, EnvelopeKind.TASK_PROOF, body, os.urandom(16), now,
                             audience=self.coordinator)  # fmt: skip
        return envelopes.to_bytes(env)

    def commit(
        self, stub: pb_grpc.CoordinatorStub, task_id: str, output: bytes, now: int
    ) -> pb.CommitResultResponse:
        """Phase one of commit–reveal: the signed commitment to ``output``."""
        raw = commitment_envelope(self.identity, task_id, output, now, audience=self.coordinator)
        reply: pb.CommitResultResponse = stub.CommitResult(
            pb.CommitResultRequest(commitment_envelope=raw)
        )
        return reply

    def reveal(
        self, stub: pb_grpc.CoordinatorStub, task_id: str, output: bytes, now: int,
        coordinator: str = "",
    ) -> pb.SubmitProofResponse:
        """Phase two: the signed proof with the salt and the output bytes (sealed to the
        coordinator's key, ``coordinator`` or the harness's)."""
        reply: pb.SubmitProofResponse = stub.SubmitProof(pb.SubmitProofRequest(
            proof_envelope=self.proof(task_id, output, now),
            output=self.sealed(task_id, output, coordinator) if output else b"",
            salt=salt_of(self.node_id, task_id),
        ))
        return reply

    def deliver(
        self, stub: pb_grpc.CoordinatorStub, task_id: str, output: bytes, now: int,
        coordinator: str = "",
    ) -> pb.SubmitProofResponse:
        """Commit, then reveal (a task whose other replicas have committed already)."""
        self.commit(stub, task_id, output, now)
        return self.reveal(stub, task_id, output, now, coordinator)


class TaskFeed:
    """A node's open task stream, read on a background thread into a list."""

    def __init__(self, call: Iterator[pb.TaskAssignment]) -> None:
        self.call = call
        self.received: list[pb.TaskAssignment] = []
        self.error: grpc.RpcError | None = None
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for assignment in self.call:
                with self._arrived:
                    self.received.append(assignment)
                    self._arrived.notify_all()
        except grpc.RpcError as exc:
            self.error = exc
        with self._arrived:
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[pb.TaskAssignment]:
        with self._arrived:
            self._arrived.wait_for(
                lambda: len(self.received) >= count or self.error is not None, timeout_s
            )
            return list(self.received)

    def close(self) -> None:
        self.call.cancel()  # type: ignore[attr-defined]
        self._thread.join(5)


def task_request(
    task_id: str,
    max_price_msat: int = 10_000,
    *,
    submitter: Identity = OPERATOR,
    now: int | None = None,
    input_data: bytes = b'{"prompt": "hello"}',
    coordinator_key: str = COORDINATOR_KEY.public_key_hex,
) -> pb.SubmitTaskRequest:
    """A signed ``SubmitTask`` request (by :data:`OPERATOR` unless ``submitter`` is given) for
    the coordinator whose key is ``coordinator_key``, issued at ``now`` or the clock of the
    coordinator started last."""
    request = TaskRequest(
        task_id=task_id,
        task_type="inference",
        input_schema_id="owm.inference.text",
        input_schema_version=1,
        min_tier=Tier.T1,
        min_vram_mb=0,
        min_ram_mb=0,
        gpu_required=False,
        max_price_msat=max_price_msat,
    )
    issued_at = now if now is not None else _clock_of_last_start[0].now()
    return signed_submit_request(submitter, request, input_data, issued_at,
                                 coordinator_key=coordinator_key)


def sqlite_url_in(path: Path) -> str:
    return f"sqlite:///{path / 'coordinator.sqlite3'}"
