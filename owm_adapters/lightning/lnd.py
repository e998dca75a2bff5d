"""LND over gRPC: the production Lightning adapter (SRS-LN-01, SRS-STAKE-01/05, SRS-SEC-07/13).

Uses LND's own compiled protobuf stubs (``lndgrpc.compiled``, from the ``lnd-grpc-client``
distribution) directly with ``grpc``: TLS with the node's certificate as the trust root, the
macaroon as hex in the ``macaroon`` call metadata. ``LNDClient`` from the same distribution is
not used: it prints and swallows errors.

RPCs: ``GetInfo``; ``AddInvoice``/``LookupInvoice``; ``invoicesrpc.SubscribeSingleInvoice`` to
wait for an invoice; ``routerrpc.SendPaymentV2``/``TrackPaymentV2`` to pay (an invoice, or by
keysend: ``dest``, ``amt_msat``, ``payment_hash`` and the preimage in custom record 5482373484)
and to look payments up (LND refuses a second payment of a succeeded or in-flight hash with
ALREADY_EXISTS, which makes ``pay`` and ``keysend`` idempotent); ``ListChannels(peer=…)`` for
stake checks; ``CloseChannel(force=true)`` for slashing; ``SignMessage``/``VerifyMessage`` for
proofs of node control (``VerifyMessage``'s ``valid`` only says the signer is in LND's graph, so
the recovered ``pubkey`` is compared instead: a stake channel may be private). Two credentials:
the payment macaroon for everything else and a distinct, optional force-close macaroon used for
``CloseChannel`` only (SRS-SEC-13).

Secrets: macaroons live only in private attributes and call metadata. Errors carry the RPC name,
the gRPC status name and LND's message with any macaroon hex scrubbed; they are raised ``from
None`` so no gRPC object (or its metadata) is chained into tracebacks (SRS-SEC-07).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from typing import Any, Self

import grpc
from lndgrpc.compiled import invoices_pb2 as invoicesrpc
from lndgrpc.compiled import invoices_pb2_grpc as invoicesrpc_grpc
from lndgrpc.compiled import lightning_pb2 as ln
from lndgrpc.compiled import lightning_pb2_grpc as lnrpc
from lndgrpc.compiled import router_pb2 as routerrpc
from lndgrpc.compiled import router_pb2_grpc as routerrpc_grpc

from owm_adapters.lightning.node_invoices import decode_bolt11
from owm_core.errors import (
    ChannelNotFound,
    ForceCloseNotPermitted,
    InvalidValue,
    InvoiceNotFound,
    LightningUnavailable,
)
from owm_core.payments.keysend import KEYSEND_RECORD, payment_hash_of
from owm_core.payments.lightning import (
    Channel,
    Invoice,
    InvoiceState,
    PaymentResult,
    PaymentStatus,
    require_channel_point,
    require_int,
    require_payment_hash,
    require_peer_pubkey,
)

log = logging.getLogger(__name__)

#: Stake verification answers within 5 s or fails (SRS-PERF-13).
STAKE_CHECK_TIMEOUT_S = 5.0

_INVOICE_STATES = {
    ln.Invoice.OPEN: InvoiceState.OPEN,
    ln.Invoice.SETTLED: InvoiceState.SETTLED,
    ln.Invoice.CANCELED: InvoiceState.CANCELED,
    ln.Invoice.ACCEPTED: InvoiceState.ACCEPTED,
}
_PAYMENT_STATUSES = {
    ln.Payment.SUCCEEDED: PaymentStatus.SUCCEEDED,
    ln.Payment.FAILED: PaymentStatus.FAILED,
    ln.Payment.IN_FLIGHT: PaymentStatus.IN_FLIGHT,
}
_DEFAULT_INVOICE_EXPIRY_S = 86_400
_UNREACHABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    None,
}


class _LndConnection:
    """One LND node's gRPC channel, its two macaroons, and the plumbing every RPC shares."""

    def __init__(
        self,
        target: str,
        *,
        tls_cert_pem: bytes,
        payment_macaroon: bytes,
        force_close_macaroon: bytes | None = None,
        tls_server_name: str | None = None,
        rpc_timeout_s: float = 30.0,
    ) -> None:
        """Connect lazily to ``target`` (``host:port`` of LND's RPC listener).

        ``payment_macaroon``/``force_close_macaroon`` are the raw macaroon file contents.
        ``tls_server_name`` overrides the name checked against the certificate (useful when
        connecting by an address the certificate does not list).
        """
        if not payment_macaroon:
            raise InvalidValue("payment_macaroon", "an LND payment macaroon is required")
        if force_close_macaroon is not None and force_close_macaroon == payment_macaroon:
            raise InvalidValue(
                "force_close_macaroon", "must be a credential distinct from the payment macaroon"
            )
        self.target = target
        self.rpc_timeout_s = rpc_timeout_s
        self._payment_macaroon = payment_macaroon.hex()
        self._close_macaroon = force_close_macaroon.hex() if force_close_macaroon else None
        # Large nodes return big ListChannels answers; 50 MiB is what LND's own clients allow.
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 50 * 1024 * 1024)]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        credentials = grpc.ssl_channel_credentials(root_certificates=tls_cert_pem)
        self._channel = grpc.secure_channel(target, credentials, options=options)
        self._lightning = lnrpc.LightningStub(self._channel)
        self._router = routerrpc_grpc.RouterStub(self._channel)
        self._invoices = invoicesrpc_grpc.InvoicesStub(self._channel)
        self._pubkey: str | None = None

    @classmethod
    def from_files(
        cls,
        target: str,
        *,
        tls_cert_path: str | os.PathLike[str],
        payment_macaroon_path: str | os.PathLike[str],
        force_close_macaroon_path: str | os.PathLike[str] | None = None,
        tls_server_name: str | None = None,
        rpc_timeout_s: float = 30.0,
    ) -> Self:
        """Build from LND's ``tls.cert`` and baked ``*.macaroon`` files."""

        def read(path: str | os.PathLike[str], what: str) -> bytes:
            try:
                with open(path, "rb") as handle:
                    return handle.read()
            except OSError as error:
                raise LightningUnavailable(
                    f"cannot read the LND {what} file {os.fspath(path)!r}: {error.strerror}"
                ) from None

        return cls(
            target,
            tls_cert_pem=read(tls_cert_path, "TLS certificate"),
            payment_macaroon=read(payment_macaroon_path, "payment macaroon"),
            force_close_macaroon=None if force_close_macaroon_path is None
            else read(force_close_macaroon_path, "force-close macaroon"),
            tls_server_name=tls_server_name,
            rpc_timeout_s=rpc_timeout_s,
        )

    def __repr__(self) -> str:
        held = self._close_macaroon is not None
        return f"{type(self).__name__}({self.target!r}, force_close={held})"

    def close(self) -> None:
        """Close the gRPC channel."""
        self._channel.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _metadata(self, *, force_close: bool = False) -> list[tuple[str, str]]:
        macaroon = self._close_macaroon if force_close else self._payment_macaroon
        assert macaroon is not None
        return [("macaroon", macaroon)]

    def _scrub(self, text: str) -> str:
        for secret in (self._payment_macaroon, self._close_macaroon):
            if secret:
                text = re.sub(re.escape(secret), "<redacted>", text, flags=re.IGNORECASE)
        return text[:300]

    def _failure(self, rpc: str, error: grpc.RpcError) -> LightningUnavailable:
        """A domain error for a failed RPC: status name and LND's words, secrets scrubbed."""
        code = error.code() if isinstance(error, grpc.Call) else None
        details = error.details() if isinstance(error, grpc.Call) else None
        name = code.name if code is not None else "UNKNOWN"
        message = f"LND {rpc} failed at {self.target}: {name}: {self._scrub(details or '')}"
        log.warning("%s", message)
        return LightningUnavailable(message)

    @staticmethod
    def _status(error: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
        if isinstance(error, grpc.Call):
            return error.code(), error.details() or ""
        return None, ""

    def _unary(
        self, rpc: str, request: Any, *, refusal_is_none: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        """Call ``rpc``; a refusal (not unreachability) returns None if ``refusal_is_none``."""
        try:
            return getattr(self._lightning, rpc)(
                request, metadata=self._metadata(),
                timeout=self.rpc_timeout_s if timeout_s is None else timeout_s,
            )
        except grpc.RpcError as error:
            if refusal_is_none and self._status(error)[0] not in _UNREACHABLE:
                return None
            raise self._failure(rpc, error) from None

    def _info(self, timeout_s: float | None = None) -> Any:
        return self._unary("GetInfo", ln.GetInfoRequest(), timeout_s=timeout_s)


class LndLightning(_LndConnection):
    """The Lightning port over one LND node's gRPC interface."""

    def node_pubkey(self) -> str:
        """This node's identity: a 33-byte compressed public key as lower-case hex."""
        if self._pubkey is None:
            self._pubkey = str(self._info().identity_pubkey)
        return self._pubkey

    def node_uri(self) -> str | None:
        """``pubkey@host:port`` where peers reach this node, or None if it announces none."""
        uris = list(self._info().uris)
        return str(uris[0]) if uris else None

    def create_invoice(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """Issue a BOLT11 invoice for ``amount_msat`` payable for ``expiry_s`` seconds."""
        require_int("amount_msat", amount_msat, minimum=1)
        require_int("expiry_s", expiry_s, minimum=1)
        request = ln.Invoice(memo=memo, value_msat=amount_msat, expiry=expiry_s)
        try:
            added = self._lightning.AddInvoice(
                request, metadata=self._metadata(), timeout=self.rpc_timeout_s
            )
        except grpc.RpcError as error:
            code, details = self._status(error)
            if code is grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidValue("invoice", self._scrub(details)) from None
            raise self._failure("AddInvoice", error) from None
        return self.lookup_invoice(bytes(added.r_hash).hex())

    def lookup_invoice(self, payment_hash: str) -> Invoice:
        """The invoice with this hash in its current state; ``InvoiceNotFound`` if unknown."""
        request = ln.PaymentHash(r_hash=require_payment_hash(payment_hash))
        try:
            invoice = self._lightning.LookupInvoice(
                request, metadata=self._metadata(), timeout=self.rpc_timeout_s
            )
        except grpc.RpcError as error:
            code, details = self._status(error)
            if code is grpc.StatusCode.NOT_FOUND or "unable to locate invoice" in details:
                raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}") from None
            raise self._failure("LookupInvoice", error) from None
        return _invoice(invoice)

    def wait_invoice(self, payment_hash: str, timeout_s: float) -> Invoice:
        """Block until the invoice leaves OPEN or ``timeout_s`` passes; return its state then."""
        current = self.lookup_invoice(payment_hash)
        if current.state is not InvoiceState.OPEN or timeout_s <= 0:
            return current
        r_hash = require_payment_hash(payment_hash)
        request = invoicesrpc.SubscribeSingleInvoiceRequest(r_hash=r_hash)
        stream = self._invoices.SubscribeSingleInvoice(
            request, metadata=self._metadata(), timeout=timeout_s
        )
        try:
            for update in stream:
                invoice = _invoice(update)
                if invoice.state is not InvoiceState.OPEN:
                    return invoice
        except grpc.RpcError as error:
            code, _ = self._status(error)
            if code is not grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self._failure("SubscribeSingleInvoice", error) from None
        finally:
            stream.cancel()
        return self.lookup_invoice(payment_hash)

    def pay(self, bolt11: str, max_fee_msat: int, timeout_s: float) -> PaymentResult:
        """Pay an invoice at most once per payment hash, routing fees capped at max_fee_msat."""
        require_int("max_fee_msat", max_fee_msat, minimum=0)
        payment_hash = decode_bolt11(bolt11).payment_hash
        request = routerrpc.SendPaymentRequest(
            payment_request=bolt11,
            fee_limit_msat=max_fee_msat,
            timeout_seconds=max(1, math.ceil(timeout_s)),
            no_inflight_updates=True,
        )
        return self._send(request, payment_hash, "bolt11", timeout_s)

    def keysend(
        self, dest_pubkey: str, amount_msat: int, preimage: str, max_fee_msat: int,
        timeout_s: float,
    ) -> PaymentResult:
        """Pay ``dest_pubkey`` without an invoice: ``SendPaymentV2`` with ``dest``,
        ``amt_msat``, ``payment_hash = sha256(preimage)`` and the preimage in the keysend custom
        record, as ``lncli sendpayment --keysend`` does. LND refuses a second payment of a
        hash that succeeded or is in flight (ALREADY_EXISTS): the earlier one is returned."""
        require_peer_pubkey(dest_pubkey)
        require_int("amount_msat", amount_msat, minimum=1)
        require_int("max_fee_msat", max_fee_msat, minimum=0)
        payment_hash = payment_hash_of(preimage)
        request = routerrpc.SendPaymentRequest(
            dest=bytes.fromhex(dest_pubkey),
            amt_msat=amount_msat,
            payment_hash=bytes.fromhex(payment_hash),
            dest_custom_records={KEYSEND_RECORD: bytes.fromhex(preimage)},
            fee_limit_msat=max_fee_msat,
            timeout_seconds=max(1, math.ceil(timeout_s)),
            no_inflight_updates=True,
        )
        return self._send(request, payment_hash, "keysend", timeout_s)

    def _send(
        self, request: Any, payment_hash: str, what: str, timeout_s: float
    ) -> PaymentResult:
        """``SendPaymentV2`` until a final status; an ALREADY_EXISTS refusal (the hash paid or
        in flight) is answered by the earlier payment."""
        last: Any = None
        stream = self._router.SendPaymentV2(
            request, metadata=self._metadata(), timeout=timeout_s + self.rpc_timeout_s
        )
        try:
            for payment in stream:
                last = payment
                if payment.status in (ln.Payment.SUCCEEDED, ln.Payment.FAILED):
                    break
        except grpc.RpcError as error:
            code, details = self._status(error)
            if code is grpc.StatusCode.ALREADY_EXISTS:
                earlier = self.lookup_payment(payment_hash)
                if earlier is not None:
                    return earlier
            elif code is grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidValue(what, self._scrub(details)) from None
            elif code is grpc.StatusCode.DEADLINE_EXCEEDED and last is not None:
                return _payment(last, payment_hash)
            raise self._failure("SendPaymentV2", error) from None
        finally:
            stream.cancel()
        if last is None:
            found = self.lookup_payment(payment_hash)
            if found is None:
                raise LightningUnavailable(f"LND SendPaymentV2 at {self.target} sent no update")
            return found
        return _payment(last, payment_hash)

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        """The latest outgoing payment for this hash, or None if none was ever attempted."""
        request = routerrpc.TrackPaymentRequest(payment_hash=require_payment_hash(payment_hash))
        stream = self._router.TrackPaymentV2(
            request, metadata=self._metadata(), timeout=self.rpc_timeout_s
        )
        try:
            for payment in stream:
                return _payment(payment, payment_hash)
        except grpc.RpcError as error:
            code, details = self._status(error)
            if code is grpc.StatusCode.NOT_FOUND or "not initiated" in details:
                return None
            raise self._failure("TrackPaymentV2", error) from None
        finally:
            stream.cancel()
        return None

    def lookup_keysend(self, key: str) -> PaymentResult | None:
        """The keysend attempt keyed ``key``: LND sends it under that very payment hash."""
        return self.lookup_payment(key)

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        """This node's open channels with ``peer_pubkey`` (stake checks, SRS-STAKE-01/02)."""
        require_peer_pubkey(peer_pubkey)
        request = ln.ListChannelsRequest(peer=bytes.fromhex(peer_pubkey))
        # A registration waits on this answer: both calls share the stake-check budget.
        deadline = time.monotonic() + min(self.rpc_timeout_s, STAKE_CHECK_TIMEOUT_S)
        response = self._unary("ListChannels", request, timeout_s=deadline - time.monotonic())
        remaining = max(0.1, deadline - time.monotonic())
        height = int(self._info(remaining).block_height) if response.channels else 0
        return [_channel(c, height) for c in response.channels if c.remote_pubkey == peer_pubkey]

    def sign_message(self, message: str) -> str:
        """Sign ``message`` with this node's identity key (``SignMessage``); zbase32."""
        signed = self._unary("SignMessage", ln.SignMessageRequest(msg=message.encode()))
        return str(signed.signature)

    def verify_message(self, message: str, signature: str, pubkey: str) -> bool:
        """True when ``signature`` over ``message`` recovers to ``pubkey`` (``VerifyMessage``);
        a signature LND cannot parse is False, an unreachable node LightningUnavailable."""
        request = ln.VerifyMessageRequest(msg=message.encode(), signature=signature)
        verified = self._unary("VerifyMessage", request, refusal_is_none=True)
        return verified is not None and str(verified.pubkey) == pubkey.lower()

    def force_close(self, channel_point: str) -> str:
        """Unilaterally close a channel with the force-close credential; return the txid."""
        if self._close_macaroon is None:
            raise ForceCloseNotPermitted(
                "this LND adapter holds no force-close macaroon (SRS-SEC-13)"
            )
        require_channel_point(channel_point)
        txid, index = channel_point.split(":")
        request = ln.CloseChannelRequest(
            channel_point=ln.ChannelPoint(funding_txid_str=txid, output_index=int(index)),
            force=True,
        )
        stream = self._lightning.CloseChannel(
            request, metadata=self._metadata(force_close=True), timeout=self.rpc_timeout_s
        )
        try:
            for update in stream:
                if update.HasField("close_pending"):
                    return bytes(update.close_pending.txid)[::-1].hex()
                if update.HasField("chan_close"):
                    return bytes(update.chan_close.closing_txid)[::-1].hex()
        except grpc.RpcError as error:
            _, details = self._status(error)
            if "channel not found" in details or "unable to find" in details:
                raise ChannelNotFound(f"no open channel {channel_point} on this node") from None
            raise self._failure("CloseChannel", error) from None
        finally:
            stream.cancel()
        raise LightningUnavailable(f"LND CloseChannel at {self.target} ended without a txid")


def _invoice(message: Any) -> Invoice:
    return Invoice(
        bolt11=message.payment_request,
        payment_hash=bytes(message.r_hash).hex(),
        amount_msat=int(message.value_msat),
        expiry_s=int(message.expiry) or _DEFAULT_INVOICE_EXPIRY_S,
        created_at=int(message.creation_date),
        state=_INVOICE_STATES[message.state],
        memo=message.memo,
        amount_paid_msat=int(message.amt_paid_msat),
        settled_at=int(message.settle_date) or None,
    )


def _payment(message: Any, payment_hash: str) -> PaymentResult:
    status = _PAYMENT_STATUSES.get(message.status, PaymentStatus.IN_FLIGHT)
    preimage = message.payment_preimage or None
    if preimage is not None and set(preimage) == {"0"}:
        preimage = None
    reason = None
    if status is PaymentStatus.FAILED:
        reason = _failure_reason(message.failure_reason)
    return PaymentResult(
        payment_hash=message.payment_hash or payment_hash,
        status=status,
        amount_msat=int(message.value_msat),
        fee_msat=int(message.fee_msat),
        preimage=preimage if status is PaymentStatus.SUCCEEDED else None,
        failure_reason=reason,
    )


def _failure_reason(value: int) -> str:
    """LND's name for why a payment failed. LND adds reasons its older protos, which this
    client bundles, do not name (``FAILURE_REASON_CANCELED`` = 6, for one): those keep
    their number, as ``FAILURE_REASON_<n>``, instead of raising out of every look at the
    payment and so out of every payout sweep that meets it."""
    try:
        return str(ln.PaymentFailureReason.Name(value))
    except ValueError:
        return f"FAILURE_REASON_{value}"


def _channel(message: Any, block_height: int) -> Channel:
    funding_height = int(message.chan_id) >> 40
    confirmations = None
    if funding_height and block_height >= funding_height:
        confirmations = block_height - funding_height + 1
    return Channel(
        channel_id=str(message.chan_id),
        channel_point=message.channel_point,
        peer_pubkey=message.remote_pubkey,
        capacity_sat=int(message.capacity),
        local_balance_sat=int(message.local_balance),
        remote_balance_sat=int(message.remote_balance),
        active=bool(message.active),
        confirmations=confirmations,
    )
