"""The Coordinator gRPC servicer: parse a request, call the application service, render a reply.

No rule lives here: each method maps protobuf fields onto a call of
:class:`owm_adapters.services.coordinator.service.CoordinatorService` and back. Failures become gRPC
statuses in :mod:`owm_server.grpc.status`.

Every call arrives over mTLS (:mod:`owm_server.grpc.server`). Each node-authenticated call first
runs :meth:`CoordinatorServicer._speaks_for`: the connection's client certificate must carry an
identity binding made by the key the request speaks for — the key being registered, the key of a
task stream or deregistration, the signer of a heartbeat, proof, rejection or invoice envelope —
else UNAUTHENTICATED (SRS-SEC-01/03). The other calls need a certificate with a valid binding.
``HeartbeatStream`` carries many nodes' heartbeats (relays, load tests): each one is signed by
its node, so it needs only a bound certificate. Each unary reply to a node is signed by the
coordinator key over (method, request, reply) by :func:`~owm_server.grpc.signing.signed`, which
also guards the method (SRS-SEC-01/03).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence

import grpc

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.messages import COORDINATOR_SIGNED, from_message, to_message
from owm_adapters.control_plane.tls import PeerIdentities
from owm_adapters.services.coordinator.service import CoordinatorService, PushedTask
from owm_adapters.services.payouts import NodeInvoiceDesk
from owm_core.access.ratelimit import Transport
from owm_core.coordination.registration import Registration
from owm_core.coordination.rejections import Rejection
from owm_core.errors import InvalidValue, NotFound, ReplayGuardFull, SignatureInvalid
from owm_core.identity import envelopes
from owm_core.identity.keys import node_id_from_public_key
from owm_core.market.tasks import Task, TaskRequest
from owm_core.nodes.registry import NodeStatus
from owm_core.nodes.tiers import Tier
from owm_core.stake.channel import Stake
from owm_server.grpc.limits import client_ip, via_onion
from owm_server.grpc.signing import signed
from owm_server.grpc.status import guarded, guarded_stream

log = logging.getLogger(__name__)

STREAM_POLL_S = 0.25
LIVENESS_CHECK_S = 30.0


def transport_of(context: grpc.ServicerContext, onion: bool) -> Transport:
    """How a call arrived: over the onion service when one is configured and the peer is on
    loopback (Tor delivers every onion connection from there), else clearnet (see
    ``owm_server.grpc.server``)."""
    return Transport.ONION if via_onion(context, onion) else Transport.CLEARNET


def peer_certificate(context: grpc.ServicerContext) -> bytes | None:
    """The PEM client certificate of the call's connection (None without TLS)."""
    values = (context.auth_context() or {}).get("x509_pem_cert") or []
    return bytes(values[0]) if values else None


def signer_of(envelope: bytes) -> str:
    """The public key a signed envelope names as its signer (checked later by the service)."""
    return envelopes.from_bytes(envelope).signer


def _tier(value: str) -> Tier:
    try:
        return Tier(value or "t1")
    except ValueError:
        raise InvalidValue("min_tier", "must be t1, t2 or t3") from None


def stake_reply(stake: Stake) -> pb.StakeStatusResponse:
    """The StakeStatus reply for a stake record."""
    return pb.StakeStatusResponse(
        node_id=node_id_from_public_key(stake.public_key),
        status=stake.status.value,
        tier=stake.tier.value,
        required_sats=stake.required_sats,
        capacity_sat=stake.capacity_sat,
        bonus_bps=stake.bonus_bps,
        cooldown_until=stake.cooldown_until or 0,
        channel_point=stake.channel.channel_point if stake.channel is not None else "",
    )


def assignment_of(pushed: PushedTask) -> pb.TaskAssignment:
    """The TaskAssignment message for an assignment pushed to a node, with its signature."""
    task = pushed.assigned()
    return to_message(pb.TaskAssignment, task, COORDINATOR_SIGNED)


def task_view(
    task_id: str,
    outcome: str,
    replicas: Sequence[Task],
    rejections: Mapping[str, Sequence[Rejection]],
) -> pb.TaskView:
    """The GetTask reply: each replica's state, node, price and rejections; never an output
    hash nor output bytes, to anyone (commit–reveal, SRS-SEC-11)."""
    return pb.TaskView(
        task_id=task_id,
        outcome=outcome,
        replicas=[
            pb.ReplicaView(
                replica_id=r.task_id,
                state=r.state.value,
                node_id=r.node_id or "",
                price_msat=r.price_msat or 0,
                rejections=[
                    pb.Rejection(
                        node_id=x.node_id, field=x.field, reason=x.reason,
                        rejected_at=x.rejected_at,
                    )
                    for x in rejections.get(r.task_id, ())
                ],
            )
            for r in replicas
        ],
    )


class CoordinatorServicer(pb_grpc.CoordinatorServicer):
    """Serves one :class:`CoordinatorService` on the clearnet port and, with ``onion``, the
    onion service's local port: each call's transport is :func:`transport_of` it."""

    def __init__(
        self,
        service: CoordinatorService,
        invoices: NodeInvoiceDesk | None = None,
        peers: PeerIdentities | None = None,
        liveness_check_s: float = LIVENESS_CHECK_S,
        *,
        onion: bool = False,
    ):
        self.service = service
        self.onion = onion
        #: How often an open TaskStream checks that its node is online; a node gone silent
        #: (no heartbeat within the liveness window) or suspended has its stream ended.
        self.liveness_check_s = liveness_check_s
        #: Where nodes hand in their invoices (SRS-LN-04); None when payees' invoices come
        #: from elsewhere (the embedded ledger, a test's source).
        self.invoices = invoices
        self.peers = peers if peers is not None else PeerIdentities()

    def _speaks_for(self, context: grpc.ServicerContext, public_key_hex: str) -> None:
        """Refuse the call unless its TLS client certificate is bound to ``public_key_hex``."""
        self.peers.require(peer_certificate(context), public_key_hex)

    def _bound_peer(self, context: grpc.ServicerContext) -> str:
        """The identity bound to the call's client certificate (calls for no node key)."""
        certificate = peer_certificate(context)
        if certificate is None:
            raise SignatureInvalid("the connection has no TLS client certificate")
        return self.peers.public_key_of(certificate)

    @signed
    def GetChallenge(
        self, request: pb.GetChallengeRequest, context: grpc.ServicerContext
    ) -> pb.Challenge:
        self._bound_peer(context)
        challenge = self.service.challenge(request.public_key, request.purpose)
        return to_message(pb.Challenge, challenge)

    @signed
    def Register(
        self, request: pb.RegisterRequest, context: grpc.ServicerContext
    ) -> pb.RegisterResponse:
        self._speaks_for(context, request.public_key)
        registration = Registration(
            public_key=request.public_key,
            manifest_envelope=request.manifest_envelope,
            ln_node_uri=request.ln_node_uri,
            onion_address=request.onion_address or None,
            ln_signature=request.ln_signature,
        )
        registered = self.service.register(
            registration,
            challenge_nonce=request.challenge_nonce,
            signature=request.signature,
            transport=transport_of(context, self.onion),
            client_ip=client_ip(context),
        )
        return pb.RegisterResponse(
            node_id=registered.node.node_id,
            tier=registered.stake.tier.value,
            stake_status=registered.stake.status.value,
            required_sats=registered.stake.required_sats,
            capacity_sat=registered.stake.capacity_sat,
        )

    @signed
    def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.ServicerContext
    ) -> pb.HeartbeatResponse:
        self._speaks_for(context, signer_of(request.heartbeat_envelope))
        node_id, status = self.service.heartbeat(
            request.heartbeat_envelope, request.manifest_envelope
        )
        return pb.HeartbeatResponse(node_id=node_id, status=status.value)

    @guarded
    def HeartbeatStream(
        self, request_iterator: Iterator[pb.HeartbeatBatch], context: grpc.ServicerContext
    ) -> pb.HeartbeatStreamSummary:
        """Admit batches of heartbeats until the client closes the stream.

        Each batch must carry at least one admissible heartbeat: a batch without one (empty,
        forged, strangers', replayed) ends the stream at once with UNAUTHENTICATED, so nobody
        without a registered key holds a thread past their first message (SRS-SEC-03). A batch
        admitting none only because the replay guard had no room for its (registered, fresh)
        heartbeats ends it with RESOURCE_EXHAUSTED ``replay-guard-full`` and ``retry-after-s``
        instead: the sender is no stranger and should send them again then. The summary's
        ``errors`` are ``<code>: <message>``, one per refused heartbeat (the first five).
        """
        self._bound_peer(context)
        accepted = rejected = 0
        errors: list[str] = []
        for batch in request_iterator:
            result = self.service.heartbeats(batch.heartbeat_envelopes, wait=False)
            if not result.accepted and result.retry_after_s is not None:
                raise ReplayGuardFull(
                    "a batch admitted no heartbeat: the replay guard has no room for them now; "
                    "stream ended",
                    result.retry_after_s,
                )
            if not result.accepted:
                why = result.errors[0] if result.errors else "the batch is empty"
                raise SignatureInvalid(f"a batch admitted no heartbeat ({why}); stream ended")
            accepted += result.accepted
            rejected += result.rejected
            errors.extend(result.errors[: max(0, 5 - len(errors))])
        self.service.flush_heartbeats()
        return pb.HeartbeatStreamSummary(accepted=accepted, rejected=rejected, errors=errors)

    @guarded_stream
    def TaskStream(
        self, request: pb.TaskStreamRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.TaskAssignment]:
        self._speaks_for(context, request.public_key)
        handle = self.service.open_task_stream(
            request.public_key,
            request.challenge_nonce,
            request.signature,
            list(request.capabilities),
            request.ask_msat,
        )
        context.add_callback(lambda: self.service.close_task_stream(handle))
        next_check = time.monotonic() + self.liveness_check_s
        try:
            while context.is_active() and not self.service.stopping:
                try:
                    pushed = handle.next(STREAM_POLL_S)
                except StopIteration:
                    return
                if pushed is not None:
                    yield assignment_of(pushed)
                elif time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.liveness_check_s
                    status = self.service.status_of(handle.node_id)
                    if status is not NodeStatus.ONLINE:  # silent or suspended: free the thread
                        context.set_code(grpc.StatusCode.UNAVAILABLE)
                        context.set_details(
                            f"stream-idle: the node is {status.value}; heartbeat, then reopen"
                        )
                        return
        finally:
            self.service.close_task_stream(handle)

    @guarded
    def SubmitTask(
        self, request: pb.SubmitTaskRequest, context: grpc.ServicerContext
    ) -> pb.SubmitTaskResponse:
        self._bound_peer(context)
        task_id = request.task_id
        task_request = from_message(TaskRequest, request, min_tier=_tier(request.min_tier))
        replicas = self.service.submit_signed_task(
            task_request, request.input, request.submitter_envelope
        )
        return pb.SubmitTaskResponse(task_id=task_id, replica_ids=[r.task_id for r in replicas])

    @guarded
    def FundBalance(
        self, request: pb.FundBalanceRequest, context: grpc.ServicerContext
    ) -> pb.FundBalanceResponse:
        self._bound_peer(context)
        view = self.service.funding.balance_request(request.request_envelope)
        balance, top_up = view.balance, view.top_up
        return to_message(
            pb.FundBalanceResponse,
            balance,
            bolt11=top_up.bolt11 if top_up else "",
            payment_hash=top_up.payment_hash if top_up else "",
            expires_at=top_up.expires_at if top_up else 0,
        )

    @guarded
    def GetTaskOutput(
        self, request: pb.GetTaskOutputRequest, context: grpc.ServicerContext
    ) -> pb.TaskOutput:
        self._bound_peer(context)
        result = self.service.outputs.read(request.request_envelope)
        return pb.TaskOutput(
            task_id=result.task_id, state=result.state, sealed_output=result.sealed_output
        )

    @signed
    def SubmitProof(
        self, request: pb.SubmitProofRequest, context: grpc.ServicerContext
    ) -> pb.SubmitProofResponse:
        self._speaks_for(context, signer_of(request.proof_envelope))
        outcome = self.service.submit_proof(request.proof_envelope, request.output, request.salt)
        return pb.SubmitProofResponse(task_id=outcome.task.task_id, state=outcome.task.state.value)

    @signed
    def CommitResult(
        self, request: pb.CommitResultRequest, context: grpc.ServicerContext
    ) -> pb.CommitResultResponse:
        self._speaks_for(context, signer_of(request.commitment_envelope))
        outcome = self.service.commit_result(request.commitment_envelope)
        return pb.CommitResultResponse(
            task_id=outcome.task.task_id, state=outcome.task.state.value,
            reveals_open=outcome.reveals_open, retry_after_ms=outcome.retry_after_ms,
        )

    @signed
    def Deregister(
        self, request: pb.DeregisterRequest, context: grpc.ServicerContext
    ) -> pb.DeregisterResponse:
        self._speaks_for(context, request.public_key)
        stake = self.service.deregister(
            request.public_key, request.challenge_nonce, request.signature
        )
        reply = stake_reply(stake)
        return pb.DeregisterResponse(node_id=reply.node_id, stake_status=reply.status)

    @signed
    def StakeStatus(
        self, request: pb.StakeStatusRequest, context: grpc.ServicerContext
    ) -> pb.StakeStatusResponse:
        self._bound_peer(context)
        stake = self.service.stake_status(request.node_id or None, request.public_key or None)
        return stake_reply(stake)

    @signed
    def RejectTask(
        self, request: pb.RejectTaskRequest, context: grpc.ServicerContext
    ) -> pb.RejectTaskResponse:
        self._speaks_for(context, signer_of(request.rejection_envelope))
        outcome = self.service.reject_task(request.rejection_envelope)
        return pb.RejectTaskResponse(task_id=outcome.task.task_id, state=outcome.task.state.value)

    @signed
    def StakeTerms(
        self, request: pb.StakeTermsRequest, context: grpc.ServicerContext
    ) -> pb.StakeTermsResponse:
        self._bound_peer(context)
        terms = self.service.stake_terms(request.tier)
        return to_message(pb.StakeTermsResponse, terms)

    @signed
    def GetTask(self, request: pb.GetTaskRequest, context: grpc.ServicerContext) -> pb.TaskView:
        self._bound_peer(context)
        replicas, outcome = self.service.task(request.task_id)
        rejections = self.service.rejections(request.task_id)
        return task_view(request.task_id, outcome, replicas, rejections)

    @signed
    def PendingPayouts(
        self, request: pb.PendingPayoutsRequest, context: grpc.ServicerContext
    ) -> pb.PendingPayoutsResponse:
        self._speaks_for(context, signer_of(request.query_envelope))
        invoices = self.invoices
        if invoices is None:  # this coordinator gets invoices elsewhere (embedded ledger)
            return pb.PendingPayoutsResponse()
        node_key = signer_of(request.query_envelope)
        return pb.PendingPayoutsResponse(
            payouts=[
                to_message(pb.PendingPayout, p, COORDINATOR_SIGNED)
                for p in self.service.signed_payouts(
                    invoices.pending_for(request.query_envelope), node_key
                )
            ]
        )

    @signed
    def SubmitInvoice(
        self, request: pb.SubmitInvoiceRequest, context: grpc.ServicerContext
    ) -> pb.SubmitInvoiceResponse:
        self._speaks_for(context, signer_of(request.invoice_envelope))
        invoices = self.invoices
        if invoices is None:
            raise NotFound("this coordinator does not take invoices from nodes")
        payment_id, invoice = invoices.submit(request.invoice_envelope)
        return pb.SubmitInvoiceResponse(
            payment_id=payment_id,
            payment_hash=invoice.payment_hash,
            amount_msat=invoice.amount_msat,
        )
