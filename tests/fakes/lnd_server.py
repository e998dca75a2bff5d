"""A local LND gRPC server over TLS, built on LND's own compiled service definitions.

Implements what :class:`owm_adapters.lightning.lnd.LndLightning` uses — ``lnrpc.Lightning``
(GetInfo, AddInvoice, LookupInvoice, ListChannels, CloseChannel), ``routerrpc.Router``
(SendPaymentV2 with an invoice or by keysend, TrackPaymentV2) and ``invoicesrpc.Invoices``
(SubscribeSingleInvoice) — with LND's status codes and messages, backed by one node of a
:class:`owm_adapters.lightning.embedded.SimLedger` so its behaviour matches the embedded
ledger's. Checks the ``macaroon`` metadata like LND: missing or unknown → UNAUTHENTICATED; the
payment macaroon may not call CloseChannel → PERMISSION_DENIED.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import bolt11
import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lndgrpc.compiled import invoices_pb2_grpc as invoicesrpc_grpc
from lndgrpc.compiled import lightning_pb2 as ln
from lndgrpc.compiled import lightning_pb2_grpc as lnrpc
from lndgrpc.compiled import router_pb2_grpc as routerrpc_grpc

from owm_adapters.lightning import message_signing
from owm_adapters.lightning.embedded import SimLedger
from owm_core.errors import ChannelNotFound, InsufficientFunds, InvalidValue, InvoiceNotFound
from owm_core.payments.keysend import KEYSEND_RECORD
from owm_core.payments.lightning import InvoiceState, PaymentResult, PaymentStatus

BLOCK_HEIGHT = 1_000

_STATES = {
    InvoiceState.OPEN: ln.Invoice.OPEN,
    InvoiceState.SETTLED: ln.Invoice.SETTLED,
    InvoiceState.CANCELED: ln.Invoice.CANCELED,
    InvoiceState.ACCEPTED: ln.Invoice.ACCEPTED,
}
_STATUSES = {
    PaymentStatus.IN_FLIGHT: ln.Payment.IN_FLIGHT,
    PaymentStatus.SUCCEEDED: ln.Payment.SUCCEEDED,
    PaymentStatus.FAILED: ln.Payment.FAILED,
}


def self_signed_certificate(host: str = "127.0.0.1") -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) valid for ``host`` and localhost, like LND's tls.cert."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake lnd")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


class _Auth:
    """LND-like macaroon checks on call metadata."""

    def __init__(self, payment: bytes, force_close: bytes) -> None:
        self.payment = payment.hex()
        self.force_close = force_close.hex()

    def check(self, context: grpc.ServicerContext, *, close: bool = False) -> None:
        presented = [v for k, v in context.invocation_metadata() if k == "macaroon"]
        if len(presented) != 1:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          f"expected 1 macaroon, got {len(presented)}")
        macaroon = str(presented[0])
        if macaroon not in (self.payment, self.force_close):
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "verification failed: signature mismatch after caveat verification")
        if close and macaroon != self.force_close:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          "permission denied: uri /lnrpc.Lightning/CloseChannel not allowed")
        if not close and macaroon == self.force_close:
            # Baked with uri:/lnrpc.Lightning/CloseChannel only (docs/lightning-integration.md).
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "permission denied")


def _payment_message(result: PaymentResult, bolt11_text: str) -> Any:
    reasons = {
        "no route": ln.FAILURE_REASON_NO_ROUTE,
        "incorrect payment details": ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS,
        "invoice is already paid": ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS,
        "invoice expired": ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS,
    }
    reason = ln.FAILURE_REASON_NONE
    if result.status is PaymentStatus.FAILED:
        reason = next(
            (code for text, code in reasons.items() if text in (result.failure_reason or "")),
            ln.FAILURE_REASON_ERROR,
        )
    return ln.Payment(
        payment_hash=result.payment_hash,
        payment_preimage=result.preimage or "0" * 64,
        value_msat=result.amount_msat,
        value_sat=result.amount_msat // 1000,
        fee_msat=result.fee_msat,
        fee_sat=result.fee_msat // 1000,
        payment_request=bolt11_text,
        status=_STATUSES[result.status],
        failure_reason=reason,
    )


def _refuse_a_second_payment(earlier: PaymentResult | None,
                             context: grpc.ServicerContext) -> None:
    """As LND's control tower: a hash that succeeded or is in flight is not paid again."""
    if earlier is not None and earlier.status is PaymentStatus.SUCCEEDED:
        context.abort(grpc.StatusCode.ALREADY_EXISTS, "invoice is already paid")
    if earlier is not None and earlier.status is PaymentStatus.IN_FLIGHT:
        context.abort(grpc.StatusCode.ALREADY_EXISTS, "payment is in transition")


class _Lightning(lnrpc.LightningServicer):
    def __init__(self, fake: FakeLnd) -> None:
        self.fake = fake

    def GetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.auth.check(context)
        node = self.fake.node
        uri = node.node_uri()
        return ln.GetInfoResponse(
            identity_pubkey=node.node_pubkey(),
            alias=self.fake.alias,
            block_height=BLOCK_HEIGHT,
            synced_to_chain=True,
            uris=[uri] if uri else [],
            version="0.16.0-beta fake",
        )

    def AddInvoice(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.auth.check(context)
        amount_msat = request.value_msat or request.value * 1000
        try:
            invoice = self.fake.node.create_invoice(
                amount_msat, request.memo, request.expiry or 86_400
            )
        except InvalidValue as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
        return ln.AddInvoiceResponse(
            r_hash=bytes.fromhex(invoice.payment_hash), payment_request=invoice.bolt11,
            add_index=1,
        )

    def LookupInvoice(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.auth.check(context)
        return self.fake.invoice_message(bytes(request.r_hash).hex(), context)

    def ListChannels(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.auth.check(context)
        peer = bytes(request.peer).hex() if request.peer else None
        channels = self.fake.ledger.channels_of(self.fake.node.node_pubkey(), peer)
        messages = []
        for channel in channels:
            height = BLOCK_HEIGHT - (channel.confirmations or 1) + 1
            index = int(channel.channel_id.split("x")[0])
            messages.append(
                ln.Channel(
                    active=channel.active,
                    remote_pubkey=channel.peer_pubkey,
                    channel_point=channel.channel_point,
                    chan_id=(height << 40) | (index << 16),
                    capacity=channel.capacity_sat,
                    local_balance=channel.local_balance_sat,
                    remote_balance=channel.remote_balance_sat,
                )
            )
        return ln.ListChannelsResponse(channels=messages)

    def SignMessage(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.auth.check(context)
        return ln.SignMessageResponse(
            signature=self.fake.node.sign_message(bytes(request.msg).decode())
        )

    def VerifyMessage(self, request: Any, context: grpc.ServicerContext) -> Any:
        """As LND: the recovered pubkey, ``valid`` only when that node is in the graph."""
        self.fake.auth.check(context)
        signer = message_signing.recover_signer(bytes(request.msg).decode(), request.signature)
        if signer is None:
            context.abort(grpc.StatusCode.UNKNOWN, "failed to decode signature")
        assert signer is not None
        known = bool(self.fake.ledger.channels_of(signer, None))
        return ln.VerifyMessageResponse(valid=known, pubkey=signer)

    def CloseChannel(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.fake.auth.check(context, close=True)
        if not request.force:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake only force-closes")
        point = request.channel_point
        txid = point.funding_txid_str or bytes(point.funding_txid_bytes)[::-1].hex()
        try:
            closing = self.fake.ledger.close_channel(
                f"{txid}:{point.output_index}", by=self.fake.node.node_pubkey(), force=True
            )
        except ChannelNotFound:
            context.abort(grpc.StatusCode.UNKNOWN, "channel not found")
        yield ln.CloseStatusUpdate(
            close_pending=ln.PendingUpdate(txid=bytes.fromhex(closing)[::-1], output_index=0)
        )


    def WalletBalance(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.auth.check(context)
        confirmed = self.fake.ledger.onchain_sat(self.fake.node.node_pubkey())
        return ln.WalletBalanceResponse(confirmed_balance=confirmed, total_balance=confirmed)

    def ConnectPeer(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake.auth.check(context)
        pubkey = request.addr.pubkey
        if pubkey in self.fake.peers:  # lnd/rpcserver.go: "already connected to peer: …"
            context.abort(grpc.StatusCode.UNKNOWN, f"already connected to peer: {pubkey}")
        self.fake.peers.add(pubkey)
        return ln.ConnectPeerResponse()

    def OpenChannel(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.fake.auth.check(context)
        pubkey = bytes(request.node_pubkey).hex()
        if pubkey not in self.fake.peers:
            context.abort(grpc.StatusCode.UNKNOWN, f"peer {pubkey} is not online")
        try:
            point = self.fake.ledger.open_funded_channel(
                self.fake.node.node_pubkey(), pubkey, int(request.local_funding_amount)
            )
        except InsufficientFunds:
            context.abort(grpc.StatusCode.UNKNOWN, "not enough witness outputs to create "
                          "funding transaction")  # fmt: skip
        txid, index = point.split(":")
        yield ln.OpenStatusUpdate(
            chan_pending=ln.PendingUpdate(txid=bytes.fromhex(txid)[::-1], output_index=int(index))
        )


class _Router(routerrpc_grpc.RouterServicer):
    def __init__(self, fake: FakeLnd) -> None:
        self.fake = fake

    def SendPaymentV2(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.fake.auth.check(context)
        if request.dest:
            yield from self._keysend(request, context)
            return
        try:
            payment_hash = bolt11.decode(request.payment_request).payment_hash
        except Exception:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid payment request")
        node = self.fake.node
        _refuse_a_second_payment(node.lookup_payment(payment_hash), context)
        fee_limit = request.fee_limit_msat or request.fee_limit_sat * 1000
        result = node.pay(request.payment_request, fee_limit, request.timeout_seconds)
        if not request.no_inflight_updates:
            in_flight = PaymentResult(payment_hash=payment_hash, status=PaymentStatus.IN_FLIGHT,
                                      amount_msat=result.amount_msat)
            yield _payment_message(in_flight, request.payment_request)
        yield _payment_message(result, request.payment_request)

    def _keysend(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """As LND's router: ``dest`` + ``amt_msat`` + ``payment_hash``, the preimage in custom
        record 5482373484; a succeeded or in-flight hash is refused with ALREADY_EXISTS."""
        payment_hash = bytes(request.payment_hash).hex()
        preimage = bytes(request.dest_custom_records.get(KEYSEND_RECORD, b""))
        if len(request.dest) != 33:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid vertex length of 0, want 33")
        if len(request.payment_hash) != 32:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid hash length of 0, want 32")
        amount_msat = request.amt_msat or request.amt * 1000
        if amount_msat <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "amount must be greater than 0")
        self.fake.sends.append(payment_hash)
        node = self.fake.node
        _refuse_a_second_payment(node.lookup_payment(payment_hash), context)
        if len(preimage) != 32 or hashlib.sha256(preimage).hexdigest() != payment_hash:
            # The payee cannot settle: it answers incorrect_or_unknown_payment_details.
            failed = PaymentResult(payment_hash=payment_hash, status=PaymentStatus.FAILED,
                                   amount_msat=amount_msat,
                                   failure_reason="incorrect payment details")
            yield _payment_message(failed, "")
            return
        fee_limit = request.fee_limit_msat or request.fee_limit_sat * 1000
        result = node.keysend(bytes(request.dest).hex(), amount_msat, preimage.hex(), fee_limit,
                              request.timeout_seconds)
        yield _payment_message(result, "")

    def TrackPaymentV2(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.fake.auth.check(context)
        result = self.fake.node.lookup_payment(bytes(request.payment_hash).hex())
        if result is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "payment isn't initiated")
        assert result is not None
        yield _payment_message(result, "")


class _Invoices(invoicesrpc_grpc.InvoicesServicer):
    def __init__(self, fake: FakeLnd) -> None:
        self.fake = fake

    def SubscribeSingleInvoice(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.fake.auth.check(context)
        payment_hash = bytes(request.r_hash).hex()
        last_state = None
        while context.is_active():
            message = self.fake.invoice_message(payment_hash, context)
            if message.state != last_state:
                last_state = message.state
                yield message
            time.sleep(0.02)


class FakeLnd:
    """One simulated node served as LND's gRPC interface on 127.0.0.1 over TLS."""

    def __init__(
        self,
        ledger: SimLedger,
        alias: str,
        *,
        payment_macaroon: bytes,
        force_close_macaroon: bytes,
    ) -> None:
        self.ledger = ledger
        self.alias = alias
        self.node = ledger.lightning(alias, force_close_allowed=True)
        self.auth = _Auth(payment_macaroon, force_close_macaroon)
        self.peers: set[str] = set()
        #: The payment hash of every keysend ``SendPaymentV2`` asked for, refused or not.
        self.sends: list[str] = []
        key_pem, self.cert_pem = self_signed_certificate()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        lnrpc.add_LightningServicer_to_server(_Lightning(self), self.server)
        routerrpc_grpc.add_RouterServicer_to_server(_Router(self), self.server)
        invoicesrpc_grpc.add_InvoicesServicer_to_server(_Invoices(self), self.server)
        credentials = grpc.ssl_server_credentials([(key_pem, self.cert_pem)])
        self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.target = f"127.0.0.1:{self.port}"

    def start(self) -> FakeLnd:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)

    def invoice_message(self, payment_hash: str, context: grpc.ServicerContext) -> Any:
        try:
            invoice = self.node.lookup_invoice(payment_hash)
        except InvoiceNotFound:
            context.abort(grpc.StatusCode.NOT_FOUND, "unable to locate invoice")
        except InvalidValue as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
        return ln.Invoice(
            memo=invoice.memo,
            r_hash=bytes.fromhex(invoice.payment_hash),
            value=invoice.amount_msat // 1000,
            value_msat=invoice.amount_msat,
            creation_date=invoice.created_at,
            settle_date=invoice.settled_at or 0,
            payment_request=invoice.bolt11,
            expiry=invoice.expiry_s,
            state=_STATES[invoice.state],
            amt_paid_msat=invoice.amount_paid_msat,
            amt_paid_sat=invoice.amount_paid_msat // 1000,
        )
