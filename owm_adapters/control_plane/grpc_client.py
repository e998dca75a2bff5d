"""The node daemon's gRPC client for the coordinator's control plane (SRS-NODE-01/04, SRS-NET-02).

:class:`GrpcControlPlane` implements :class:`owm_core.ports.control_plane.ControlPlane` with the
generated ``Coordinator`` stubs (GetChallenge, Register, Heartbeat, TaskStream, CommitResult,
SubmitProof,
RejectTask, StakeStatus, StakeTerms, GetTask, Deregister, PendingPayouts, SubmitInvoice). The
challenge → answer → call skeleton is shared with the in-process twin (:mod:`.auth`). With
``socks5_proxy`` set, the channel dials a local
:class:`~owm_adapters.control_plane.socks.Socks5Forwarder` that carries every connection
through the proxy (Tor) — the control plane only (SRS-NET-04).

The channel is mTLS (SRS-SEC-01): the node presents its certificate bound to its identity and
trusts only the coordinator certificate whose fingerprint it was configured with
(:class:`~owm_adapters.control_plane.tls.ClientTls`). The channel is opened on the first call,
so a coordinator that is not up yet is :class:`ControlPlaneUnavailable` (retried), while a
certificate other than the pinned one is :class:`ControlPlaneRefused` with the status
``tls-pin-mismatch``, naming the expected and the presented fingerprint. Beyond the channel,
every unary reply must carry the signature of the pinned ``[coordinator] public_key`` over
(method, request, reply) (:mod:`.replies`); an unsigned, altered or replayed reply is
:class:`ControlPlaneRefused` ``reply-not-signed`` and never used.

gRPC failures become port errors: UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED →
:class:`ControlPlaneUnavailable` (retry); any other status → :class:`ControlPlaneRefused`
with the coordinator's error code (its messages start with ``<code>: ``) and, for a rate
limit, the ``retry-after-s`` the coordinator sent in the trailing metadata.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc

from owm_adapters.control_plane import replies
from owm_adapters.control_plane.auth import (
    authenticated_call,
    ln_signature,
    registration_details,
    task_stream_details,
)
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.messages import COORDINATOR_SIGNED, from_message
from owm_adapters.control_plane.socks import Socks5Forwarder
from owm_adapters.control_plane.tls import ClientTls, PinMismatch, pinned_channel
from owm_core.coordination.challenges import Challenge, ChallengePurpose
from owm_core.errors import SignatureInvalid
from owm_core.market.tasks import MAX_TASK_INPUT_BYTES
from owm_core.nodes.control_plane import (
    AssignedTask,
    CommitReply,
    ControlPlaneRefused,
    ControlPlaneUnavailable,
    RegisterReply,
    ReplicaView,
    StakeTermsView,
    StakeView,
)
from owm_core.payments.invoices import PendingPayout
from owm_core.ports.control_plane import ChallengeSigner, MessageSigner

DEFAULT_TIMEOUT_S = 15.0
MAX_MESSAGE_BYTES = MAX_TASK_INPUT_BYTES + (1 << 20)
"""The largest control-plane message, both ways: a task's largest input and its envelope (gRPC's
own default, 4 MiB, would refuse larger task inputs on their way to the node)."""
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}
_CODE_PREFIX = re.compile(r"([a-z][a-z0-9-]*): (.*)", re.DOTALL)
_T = TypeVar("_T")


def port_error(exc: grpc.RpcError) -> Exception:
    """The port error for a failed RPC (module docstring)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code in _RETRYABLE:
        return ControlPlaneUnavailable(f"coordinator unreachable ({code.name}): {details}")
    retry = _retry_after_s(exc)
    found = _CODE_PREFIX.fullmatch(details)
    if found:
        return ControlPlaneRefused(found.group(1), found.group(2), retry)
    return ControlPlaneRefused(code.name.lower().replace("_", "-"), details, retry)


def _retry_after_s(exc: grpc.RpcError) -> int | None:
    """The ``retry-after-s`` trailing metadata of a refusal (a rate limit), if it sent one."""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == "retry-after-s" and isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _call(fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except grpc.RpcError as exc:
        raise port_error(exc) from None


class GrpcFeed:
    """A TaskStream call read as an iterator of :class:`AssignedTask`."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._cancelled = threading.Event()

    def __iter__(self) -> Iterator[AssignedTask]:
        try:
            for a in self._call:
                yield from_message(AssignedTask, a, COORDINATOR_SIGNED)
        except grpc.RpcError as exc:
            if self._cancelled.is_set():
                return
            raise port_error(exc) from None

    def cancel(self) -> None:
        """End the stream."""
        self._cancelled.set()
        self._call.cancel()


class GrpcControlPlane:
    """:class:`~owm_core.ports.control_plane.ControlPlane` over gRPC (module docstring)."""

    def __init__(
        self,
        url: str,
        socks5_proxy: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        tls: ClientTls,
        coordinator_public_key: str,
    ) -> None:
        self.url = url
        #: ``[coordinator] public_key``: every reply must be signed by it (SRS-SEC-01/03).
        self.coordinator_public_key = coordinator_public_key
        self.timeout_s = timeout_s
        self._tls = tls
        self._forwarder = Socks5Forwarder(socks5_proxy, url) if socks5_proxy else None
        self._channel: grpc.Channel | None = None
        self._stub_value: Any = None
        self._lock = threading.Lock()

    @property
    def _stub(self) -> Any:
        """The stub over the pinned mTLS channel, opened on first use (module docstring)."""
        with self._lock:
            if self._stub_value is None:
                target = self._forwarder.address if self._forwarder is not None else self.url
                try:
                    self._channel = pinned_channel(
                        target,
                        self._tls,
                        options=[
                            ("grpc.enable_http_proxy", 0),
                            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                        ],
                    )
                except PinMismatch as exc:
                    raise ControlPlaneRefused(exc.code, exc.message) from None
                except (OSError, ValueError) as exc:
                    raise ControlPlaneUnavailable(
                        f"coordinator unreachable at {self.url} (TLS: {type(exc).__name__})"
                    ) from None
                self._stub_value = pb_grpc.CoordinatorStub(self._channel)  # type: ignore[no-untyped-call]
            return self._stub_value

    @property
    def via_proxy(self) -> bool:
        """Whether control-plane traffic goes through the SOCKS5 proxy."""
        return self._forwarder is not None

    def _unary(self, method: str, request: Any) -> Any:
        """One unary RPC under this client's timeout; a failure as the port's error. The reply
        is used only when the pinned coordinator key signed it for this very request
        (SRS-SEC-01/03), else :class:`ControlPlaneRefused` ``reply-not-signed``."""
        stub = getattr(self._stub, method)
        reply = _call(lambda: stub(request, timeout=self.timeout_s))
        try:
            replies.check(self.coordinator_public_key, method, request, reply)
        except SignatureInvalid as exc:
            raise ControlPlaneRefused("reply-not-signed", exc.message) from None
        return reply

    def _challenge(self, signer: ChallengeSigner, purpose: ChallengePurpose) -> Challenge:
        reply = self._unary("GetChallenge",
            pb.GetChallengeRequest(public_key=signer.public_key_hex, purpose=purpose.value),
        )
        return from_message(Challenge, reply)

    def register(
        self,
        signer: ChallengeSigner,
        manifest_envelope: bytes,
        manifest_digest: str,
        ln_node_uri: str,
        onion_address: str | None,
        ln_signer: MessageSigner | None = None,
    ) -> RegisterReply:
        """The port's :meth:`~owm_core.ports.control_plane.ControlPlane.register` (SRS-STAKE-01):
        GetChallenge, then Register with the answer."""
        details = registration_details(manifest_digest, ln_node_uri, onion_address)
        reply = authenticated_call(
            self._challenge, signer, ChallengePurpose.REGISTER, details,
            lambda nonce, signature: self._unary("Register",
                pb.RegisterRequest(
                    public_key=signer.public_key_hex,
                    challenge_nonce=nonce,
                    signature=signature,
                    manifest_envelope=manifest_envelope,
                    ln_node_uri=ln_node_uri,
                    onion_address=onion_address or "",
                    ln_signature=ln_signature(ln_signer, signer, nonce, ln_node_uri),
                ),
            ),
        )
        return from_message(RegisterReply, reply)

    def heartbeat(self, heartbeat_envelope: bytes, manifest_envelope: bytes = b"") -> str:
        """One signed heartbeat (SRS-NODE-04)."""
        reply = self._unary("Heartbeat",
            pb.HeartbeatRequest(
                heartbeat_envelope=heartbeat_envelope, manifest_envelope=manifest_envelope
            ),
        )
        return str(reply.status)

    def open_task_feed(
        self, signer: ChallengeSigner, capabilities: Sequence[str], ask_msat: int
    ) -> GrpcFeed:
        """Open the task stream with the node's standing offer."""
        call = authenticated_call(
            self._challenge, signer, ChallengePurpose.TASK_STREAM,
            task_stream_details(capabilities, ask_msat),
            lambda nonce, signature: self._stub.TaskStream(
                pb.TaskStreamRequest(
                    public_key=signer.public_key_hex,
                    challenge_nonce=nonce,
                    signature=signature,
                    capabilities=list(capabilities),
                    ask_msat=ask_msat,
                )
            ),
        )
        return GrpcFeed(call)

    def commit_result(self, commitment_envelope: bytes) -> CommitReply:
        """A signed commitment to a replica's result (phase one of commit–reveal)."""
        committed = self._unary("CommitResult",
            pb.CommitResultRequest(commitment_envelope=commitment_envelope),
        )
        return CommitReply(committed.state, committed.reveals_open, committed.retry_after_ms)

    def submit_proof(self, proof_envelope: bytes, output: bytes, salt: bytes) -> str:
        """The reveal: a signed task proof, its sealed output and the salt; the replica's state."""
        reply = self._unary("SubmitProof",
            pb.SubmitProofRequest(proof_envelope=proof_envelope, output=output, salt=salt),
        )
        return str(reply.state)

    def stake_status(self, public_key: str) -> StakeView:
        """The node's stake record."""
        reply = self._unary("StakeStatus", pb.StakeStatusRequest(public_key=public_key))
        return from_message(StakeView, reply)

    def stake_terms(self, tier: str) -> StakeTermsView:
        """The treasury's Lightning URI and the stake ``tier`` needs (before registration)."""
        reply = self._unary("StakeTerms", pb.StakeTermsRequest(tier=tier))
        return from_message(StakeTermsView, reply)

    def reject_task(self, rejection_envelope: bytes) -> str:
        """A signed task rejection (SRS-NODE-07); the replica's state after it."""
        reply = self._unary(
            "RejectTask", pb.RejectTaskRequest(rejection_envelope=rejection_envelope)
        )
        return str(reply.state)

    def replicas(self, task_id: str) -> list[ReplicaView]:
        """The replicas of a submitted task."""
        reply = self._unary("GetTask", pb.GetTaskRequest(task_id=task_id))
        return [from_message(ReplicaView, r) for r in reply.replicas]

    def deregister(self, signer: ChallengeSigner) -> str:
        """Leave cooperatively."""
        reply = authenticated_call(
            self._challenge, signer, ChallengePurpose.DEREGISTER, {},
            lambda nonce, signature: self._unary("Deregister",
                pb.DeregisterRequest(
                    public_key=signer.public_key_hex, challenge_nonce=nonce, signature=signature
                ),
            ),
        )
        return str(reply.stake_status)

    def pending_payouts(self, query_envelope: bytes) -> list[PendingPayout]:
        """The payouts awaiting this node's invoice (PendingPayouts; SRS-LN-04)."""
        reply = self._unary(
            "PendingPayouts", pb.PendingPayoutsRequest(query_envelope=query_envelope)
        )
        return [from_message(PendingPayout, p, COORDINATOR_SIGNED) for p in reply.payouts]

    def submit_invoice(self, invoice_envelope: bytes) -> str:
        """Hand in a signed invoice for a pending payout (SubmitInvoice); its payment hash."""
        reply = self._unary(
            "SubmitInvoice", pb.SubmitInvoiceRequest(invoice_envelope=invoice_envelope)
        )
        return str(reply.payment_hash)

    def close(self) -> None:
        """Close the channel and the SOCKS5 forwarder."""
        if self._channel is not None:
            self._channel.close()
        if self._forwarder is not None:
            self._forwarder.close()
