"""The in-process twin of the control plane: a node daemon talking straight to a
:class:`~owm_adapters.services.coordinator.service.CoordinatorService` in the same process.

It implements :class:`owm_core.ports.control_plane.ControlPlane` exactly as the gRPC client
(``owm_adapters.control_plane.grpc_client.GrpcControlPlane``) does — the same challenge answers,
the same
envelopes, the same refusals (a coordinator's DomainError becomes
:class:`~owm_core.ports.control_plane.ControlPlaneRefused` carrying its code, and a rate limit's
``retry_after_s``) — so daemon tests
run without sockets, and one contract suite (tests/node/test_control_plane_contract.py) holds
both to the same behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import attrs

from owm_adapters.control_plane.auth import (
    authenticated_call,
    ln_signature,
    registration_details,
    task_stream_details,
)
from owm_adapters.lightning.node_invoices import NodeInvoiceSource
from owm_adapters.services.coordinator.service import CoordinatorService, TaskStreamHandle
from owm_core.access.ratelimit import Transport
from owm_core.coordination.challenges import Challenge, ChallengePurpose
from owm_core.coordination.registration import Registration
from owm_core.errors import DomainError, RateLimited
from owm_core.identity.envelopes import CapabilityManifest, EnvelopeKind, from_bytes, open_body
from owm_core.identity.keys import node_id_from_public_key
from owm_core.nodes.control_plane import (
    AssignedTask,
    CommitReply,
    ControlPlaneRefused,
    RegisterReply,
    ReplicaView,
    StakeTermsView,
    StakeView,
)
from owm_core.payments.invoices import PendingPayout
from owm_core.ports.control_plane import ChallengeSigner, MessageSigner

_T = TypeVar("_T")


def _refused(call: Callable[[], _T]) -> _T:
    try:
        return call()
    except DomainError as exc:
        retry = exc.retry_after_s if isinstance(exc, RateLimited) else None
        raise ControlPlaneRefused(exc.code, exc.message, retry) from None


@attrs.define(eq=False)
class InProcessFeed:
    """A task stream handle read as an iterator of :class:`AssignedTask`."""

    _service: CoordinatorService
    _handle: TaskStreamHandle
    _cancelled: threading.Event = attrs.field(init=False, factory=threading.Event)

    def __iter__(self) -> Iterator[AssignedTask]:
        try:
            while not self._cancelled.is_set() and not self._service.stopping:
                try:
                    pushed = self._handle.next(0.1)
                except StopIteration:
                    return
                if pushed is None:
                    continue
                yield pushed.assigned()
        finally:
            self._service.close_task_stream(self._handle)

    def cancel(self) -> None:
        """End the stream."""
        self._cancelled.set()


@attrs.define(eq=False)
class InProcessControlPlane:
    """:class:`~owm_core.ports.control_plane.ControlPlane` over a service in this process."""

    service: CoordinatorService
    client_ip: str = "127.0.0.1"
    invoices: NodeInvoiceSource | None = None

    def _challenge(self, signer: ChallengeSigner, purpose: ChallengePurpose) -> Challenge:
        return _refused(lambda: self.service.challenge(signer.public_key_hex, purpose.value))

    def _authenticated_call(
        self,
        signer: ChallengeSigner,
        purpose: ChallengePurpose,
        details: dict[str, object],
        send: Callable[[str, str], _T],
    ) -> _T:
        """Challenge → answer → ``send``; a coordinator's DomainError becomes a refusal."""
        return authenticated_call(
            self._challenge, signer, purpose, details,
            lambda nonce, signature: _refused(lambda: send(nonce, signature)),
        )

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
        the service's challenge, then its register, as a clearnet caller from ``client_ip``."""
        details = registration_details(manifest_digest, ln_node_uri, onion_address)

        def send(nonce: str, signature: str) -> RegisterReply:
            registered = self.service.register(
                Registration(
                    public_key=signer.public_key_hex,
                    manifest_envelope=manifest_envelope,
                    ln_node_uri=ln_node_uri,
                    onion_address=onion_address,
                    ln_signature=ln_signature(ln_signer, signer, nonce, ln_node_uri),
                ),
                challenge_nonce=nonce,
                signature=signature,
                transport=Transport.CLEARNET,
                client_ip=self.client_ip,
            )
            return RegisterReply(
                node_id=registered.node.node_id,
                tier=registered.stake.tier.value,
                stake_status=registered.stake.status.value,
                required_sats=registered.stake.required_sats,
                capacity_sat=registered.stake.capacity_sat,
            )

        return self._authenticated_call(signer, ChallengePurpose.REGISTER, details, send)

    def heartbeat(self, heartbeat_envelope: bytes, manifest_envelope: bytes = b"") -> str:
        """One signed heartbeat (SRS-NODE-04)."""
        _, status = _refused(lambda: self.service.heartbeat(heartbeat_envelope, manifest_envelope))
        return status.value

    def open_task_feed(
        self, signer: ChallengeSigner, capabilities: Sequence[str], ask_msat: int
    ) -> InProcessFeed:
        """Open the task stream with the node's standing offer."""
        handle = self._authenticated_call(
            signer,
            ChallengePurpose.TASK_STREAM,
            task_stream_details(capabilities, ask_msat),
            lambda nonce, signature: self.service.open_task_stream(
                signer.public_key_hex, nonce, signature, list(capabilities), ask_msat
            ),
        )
        return InProcessFeed(self.service, handle)

    def commit_result(self, commitment_envelope: bytes) -> CommitReply:
        """A signed commitment to a replica's result (phase one of commit–reveal)."""
        outcome = _refused(lambda: self.service.commit_result(commitment_envelope))
        return CommitReply(outcome.task.state.value, outcome.reveals_open, outcome.retry_after_ms)

    def submit_proof(self, proof_envelope: bytes, output: bytes, salt: bytes) -> str:
        """The reveal: a signed task proof, its sealed output and the salt; the replica's state."""
        outcome = _refused(lambda: self.service.submit_proof(proof_envelope, output, salt))
        return outcome.task.state.value

    def stake_status(self, public_key: str) -> StakeView:
        """The node's stake record."""
        stake = _refused(lambda: self.service.stake_status(None, public_key))
        return StakeView(
            status=stake.status.value,
            tier=stake.tier.value,
            required_sats=stake.required_sats,
            capacity_sat=stake.capacity_sat,
            channel_point=stake.channel.channel_point if stake.channel is not None else "",
            cooldown_until=stake.cooldown_until or 0,
        )

    def stake_terms(self, tier: str) -> StakeTermsView:
        """The treasury's Lightning URI and the stake ``tier`` needs."""
        terms = _refused(lambda: self.service.stake_terms(tier))
        return StakeTermsView(
            treasury_node_uri=terms.treasury_node_uri,
            required_sats=terms.required_sats,
            min_confirmations=terms.min_confirmations,
        )

    def reject_task(self, rejection_envelope: bytes) -> str:
        """A signed task rejection; the replica's state after it."""
        outcome = _refused(lambda: self.service.reject_task(rejection_envelope))
        return outcome.task.state.value

    def replicas(self, task_id: str) -> list[ReplicaView]:
        """The replicas of a submitted task."""
        replicas, _ = _refused(lambda: self.service.task(task_id))
        return [
            ReplicaView(
                replica_id=r.task_id,
                state=r.state.value,
                node_id=r.node_id or "",
                price_msat=r.price_msat or 0,
            )
            for r in replicas
        ]

    def deregister(self, signer: ChallengeSigner) -> str:
        """Leave cooperatively."""
        stake = self._authenticated_call(
            signer,
            ChallengePurpose.DEREGISTER,
            {},
            lambda nonce, signature: self.service.deregister(
                signer.public_key_hex, nonce, signature
            ),
        )
        return stake.status.value

    def pending_payouts(self, query_envelope: bytes) -> list[PendingPayout]:
        """The payouts awaiting this node's invoice (none without a node invoice source)."""
        invoices = self.invoices
        if invoices is None:
            return []
        pending = _refused(lambda: invoices.pending_for(query_envelope))
        return self.service.signed_payouts(pending, from_bytes(query_envelope).signer)

    def submit_invoice(self, invoice_envelope: bytes) -> str:
        """Hand in a signed invoice for a pending payout; its payment hash."""
        invoices = self.invoices
        if invoices is None:
            raise ControlPlaneRefused("not-found",
                                      "this coordinator does not take invoices from nodes")
        _, invoice = _refused(lambda: invoices.submit(invoice_envelope))
        return invoice.payment_hash

    def close(self) -> None:
        """Nothing to release."""


def manifest_digest_of(manifest_envelope: bytes) -> str:
    """The digest a heartbeat cites for a signed manifest envelope."""
    envelope = from_bytes(manifest_envelope)
    if envelope.kind is not EnvelopeKind.CAPABILITY_MANIFEST:
        raise ValueError("not a capability manifest envelope")
    body = open_body(envelope)
    assert isinstance(body, CapabilityManifest)
    return body.digest()


def node_id_of(signer: ChallengeSigner) -> str:
    """The node id a signer registers as."""
    return node_id_from_public_key(signer.public_key_hex)
