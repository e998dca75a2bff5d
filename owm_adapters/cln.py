"""Core Lightning over its JSON-RPC unix socket (pyln-client): a Lightning adapter (SRS-LN-01).

RPCs: ``getinfo``; ``invoice``/``listinvoices`` (CLN's invoice list has no creation time or
expiry, so both are read from the BOLT11 string itself); ``pay`` with ``maxfee`` and
``retry_for``; ``listpays`` to look payments up (``pay`` is made idempotent by checking it
first: a complete or pending payment of the hash is returned, never repeated);
``listpeerchannels`` for stake checks; ``close(id, unilateraltimeout=1)`` for a prompt force
close (SRS-STAKE-05). Waiting for an invoice polls ``listinvoices``: ``waitinvoice`` cannot time
out.

Credentials: CLN's ``lightning-rpc`` socket grants full access to whoever can open it, so the
force-close capability is a second, explicitly configured socket path (SRS-SEC-13); without it
``force_close`` raises ``ForceCloseNotPermitted``. Real separation needs filesystem permissions
or a rune-restricted proxy in front of the payment socket (docs/lightning-integration.md).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from typing import Any

import bolt11
from pyln.client import LightningRpc, RpcError

from owm_core.errors import (
    ChannelNotFound,
    ForceCloseNotPermitted,
    InvalidValue,
    InvoiceNotFound,
    LightningUnavailable,
)
from owm_core.ports.lightning import (
    CHANNEL_POINT,
    PUBKEY_HEX,
    Channel,
    Invoice,
    InvoiceState,
    PaymentResult,
    PaymentStatus,
)

log = logging.getLogger(__name__)

_INVOICE_STATES = {
    "unpaid": InvoiceState.OPEN,
    "paid": InvoiceState.SETTLED,
    "expired": InvoiceState.CANCELED,
}
_OPEN_CHANNEL_STATES = {"CHANNELD_NORMAL", "CHANNELD_AWAITING_SPLICE"}
_PAY_IN_PROGRESS = 200
_PAYMENT_FAILURE_CODES = range(201, 220)
_INVALID_PARAMS = -32602


def _msat(value: Any) -> int:
    """CLN amounts: ints, pyln ``Millisatoshi`` objects, or legacy ``"123msat"`` strings."""
    if isinstance(value, str):
        return int(value.removesuffix("msat"))
    return int(value)


class ClnLightning:
    """The Lightning port over one Core Lightning node's JSON-RPC socket."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        force_close_socket_path: str | os.PathLike[str] | None = None,
        poll_interval_s: float = 0.1,
    ) -> None:
        """Talk to ``socket_path`` (``<lightning-dir>/<network>/lightning-rpc``)."""
        self.socket_path = os.fspath(socket_path)
        self.poll_interval_s = poll_interval_s
        self._rpc = LightningRpc(self.socket_path, logger=log)
        self._close_rpc = (
            None if force_close_socket_path is None
            else LightningRpc(os.fspath(force_close_socket_path), logger=log)
        )

    def __repr__(self) -> str:
        return f"ClnLightning({self.socket_path!r}, force_close={self._close_rpc is not None})"

    def _call(self, method: str, *, close: bool = False, **params: Any) -> Any:
        """One JSON-RPC call; connection problems become ``LightningUnavailable``.

        ``RpcError`` is passed through for the caller to interpret; its ``str`` includes the
        payload, so messages are built from ``error.error`` only.
        """
        rpc = self._close_rpc if close else self._rpc
        assert rpc is not None
        try:
            return rpc.call(method, params)
        except RpcError:
            raise
        except (OSError, ValueError, TypeError) as error:
            reason = error.strerror if isinstance(error, OSError) else type(error).__name__
            message = f"CLN {method} failed at {self.socket_path}: {reason}"
            log.warning("%s", message)
            raise LightningUnavailable(message) from None

    def _failure(self, method: str, error: RpcError) -> LightningUnavailable:
        code, text = _rpc_error(error)
        message = f"CLN {method} failed at {self.socket_path}: {code}: {text}"
        log.warning("%s", message)
        return LightningUnavailable(message)

    def _info(self) -> dict[str, Any]:
        try:
            return dict(self._call("getinfo"))
        except RpcError as error:
            raise self._failure("getinfo", error) from None

    def node_pubkey(self) -> str:
        """This node's identity: a 33-byte compressed public key as lower-case hex."""
        return str(self._info()["id"])

    def node_uri(self) -> str | None:
        """``pubkey@host:port`` where peers reach this node, or None if it announces none."""
        info = self._info()
        for address in info.get("address", []):
            return f"{info['id']}@{address['address']}:{address['port']}"
        return None

    def create_invoice(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """Issue a BOLT11 invoice for ``amount_msat`` payable for ``expiry_s`` seconds."""
        for name, value in (("amount_msat", amount_msat), ("expiry_s", expiry_s)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValue(name, "must be a positive integer")
        label = f"owm-{os.urandom(12).hex()}"
        try:
            created = self._call(
                "invoice", amount_msat=amount_msat, label=label, description=memo,
                expiry=expiry_s,
            )
        except RpcError as error:
            code, text = _rpc_error(error)
            if code == _INVALID_PARAMS:
                raise InvalidValue("invoice", text) from None
            raise self._failure("invoice", error) from None
        return self.lookup_invoice(str(created["payment_hash"]))

    def lookup_invoice(self, payment_hash: str) -> Invoice:
        """The invoice with this hash in its current state; ``InvoiceNotFound`` if unknown."""
        _check_hash(payment_hash)
        try:
            found = self._call("listinvoices", payment_hash=payment_hash)["invoices"]
        except RpcError as error:
            raise self._failure("listinvoices", error) from None
        if not found:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}")
        return _invoice(found[0])

    def wait_invoice(self, payment_hash: str, timeout_s: float) -> Invoice:
        """Block until the invoice leaves OPEN or ``timeout_s`` passes; return its state then."""
        deadline = time.monotonic() + timeout_s
        while True:
            invoice = self.lookup_invoice(payment_hash)
            left = deadline - time.monotonic()
            if invoice.state is not InvoiceState.OPEN or left <= 0:
                return invoice
            time.sleep(min(self.poll_interval_s, left))

    def pay(self, bolt11: str, max_fee_msat: int, timeout_s: float) -> PaymentResult:
        """Pay an invoice at most once per payment hash, routing fees capped at max_fee_msat."""
        if isinstance(max_fee_msat, bool) or not isinstance(max_fee_msat, int) or max_fee_msat < 0:
            raise InvalidValue("max_fee_msat", "must be a non-negative integer")
        payment_hash = _invoice_hash(bolt11)
        earlier = self.lookup_payment(payment_hash)
        if earlier is not None and earlier.status is not PaymentStatus.FAILED:
            return earlier
        try:
            paid = self._call(
                "pay", bolt11=bolt11, maxfee=max_fee_msat,
                retry_for=max(1, math.ceil(timeout_s)),
            )
        except RpcError as error:
            code, text = _rpc_error(error)
            if code == _PAY_IN_PROGRESS:
                return self.lookup_payment(payment_hash) or PaymentResult(
                    payment_hash=payment_hash, status=PaymentStatus.IN_FLIGHT
                )
            if code in _PAYMENT_FAILURE_CODES:
                return PaymentResult(
                    payment_hash=payment_hash,
                    status=PaymentStatus.FAILED,
                    failure_reason=f"{code}: {text}",
                )
            if code == _INVALID_PARAMS:
                raise InvalidValue("bolt11", text) from None
            raise self._failure("pay", error) from None
        amount = _msat(paid["amount_msat"])
        return PaymentResult(
            payment_hash=payment_hash,
            status=PaymentStatus.SUCCEEDED,
            amount_msat=amount,
            fee_msat=_msat(paid["amount_sent_msat"]) - amount,
            preimage=str(paid["payment_preimage"]),
        )

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        """The latest outgoing payment for this hash, or None if none was ever attempted."""
        _check_hash(payment_hash)
        try:
            pays = self._call("listpays", payment_hash=payment_hash)["pays"]
        except RpcError as error:
            raise self._failure("listpays", error) from None
        if not pays:
            return None
        rank = {"complete": 2, "pending": 1, "failed": 0}
        best = max(pays, key=lambda p: rank.get(p.get("status", "failed"), 0))
        status = best.get("status")
        if status == "complete":
            amount = _msat(best.get("amount_msat", 0))
            return PaymentResult(
                payment_hash=payment_hash,
                status=PaymentStatus.SUCCEEDED,
                amount_msat=amount,
                fee_msat=max(0, _msat(best.get("amount_sent_msat", amount)) - amount),
                preimage=str(best["preimage"]),
            )
        if status == "pending":
            return PaymentResult(payment_hash=payment_hash, status=PaymentStatus.IN_FLIGHT)
        return PaymentResult(
            payment_hash=payment_hash, status=PaymentStatus.FAILED,
            failure_reason="payment failed",
        )

    def _open_channels(self, peer_pubkey: str | None) -> list[dict[str, Any]]:
        try:
            params: dict[str, Any] = {} if peer_pubkey is None else {"id": peer_pubkey}
            channels = self._call("listpeerchannels", **params)["channels"]
        except RpcError as error:
            raise self._failure("listpeerchannels", error) from None
        return [c for c in channels if c.get("state") in _OPEN_CHANNEL_STATES]

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        """This node's open channels with ``peer_pubkey`` (stake checks, SRS-STAKE-01/02)."""
        if not re.fullmatch(PUBKEY_HEX, peer_pubkey):
            raise InvalidValue("peer_pubkey", "must be a 33-byte compressed pubkey in hex")
        return [
            _channel(c) for c in self._open_channels(peer_pubkey)
            if c.get("peer_id") == peer_pubkey
        ]

    def force_close(self, channel_point: str) -> str:
        """Unilaterally close a channel with the force-close credential; return the txid."""
        if self._close_rpc is None:
            raise ForceCloseNotPermitted(
                "this CLN adapter has no force-close socket configured (SRS-SEC-13)"
            )
        if not re.fullmatch(CHANNEL_POINT, channel_point):
            raise InvalidValue("channel_point", "must be txid:output_index")
        matches = [
            c for c in self._open_channels(None)
            if f"{c.get('funding_txid')}:{c.get('funding_outnum')}" == channel_point
        ]
        if not matches:
            raise ChannelNotFound(f"no open channel {channel_point} on this node")
        channel = matches[0]
        target = channel.get("short_channel_id") or channel["channel_id"]
        try:
            closed = self._call("close", close=True, id=target, unilateraltimeout=1)
        except RpcError as error:
            raise self._failure("close", error) from None
        txid = closed.get("txid") or (closed.get("txids") or [None])[0]
        if not txid:
            raise LightningUnavailable(f"CLN close at {self.socket_path} returned no txid")
        return str(txid)


def _rpc_error(error: RpcError) -> tuple[int | None, str]:
    detail = error.error
    if isinstance(detail, dict):
        return detail.get("code"), str(detail.get("message", ""))[:300]
    return None, str(detail)[:300]


def _check_hash(payment_hash: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{64}", payment_hash):
        raise InvalidValue("payment_hash", "must be 64 lower-case hex characters")


def _invoice_hash(invoice: str) -> str:
    try:
        return str(bolt11.decode(invoice).payment_hash)
    except Exception:
        raise InvalidValue("bolt11", "not a valid BOLT11 invoice") from None


def _invoice(row: dict[str, Any]) -> Invoice:
    decoded = bolt11.decode(row["bolt11"])
    paid_at = row.get("paid_at")
    return Invoice(
        bolt11=row["bolt11"],
        payment_hash=row["payment_hash"],
        amount_msat=_msat(row["amount_msat"]),
        expiry_s=int(decoded.expiry),
        created_at=int(decoded.date),
        state=_INVOICE_STATES.get(row["status"], InvoiceState.OPEN),
        memo=row.get("description", ""),
        amount_paid_msat=_msat(row.get("amount_received_msat", 0)),
        settled_at=None if paid_at is None else int(paid_at),
    )


def _channel(row: dict[str, Any]) -> Channel:
    total = _msat(row["total_msat"])
    to_us = _msat(row["to_us_msat"])
    return Channel(
        channel_id=str(row.get("short_channel_id") or row["channel_id"]),
        channel_point=f"{row['funding_txid']}:{row['funding_outnum']}",
        peer_pubkey=row["peer_id"],
        capacity_sat=total // 1000,
        local_balance_sat=to_us // 1000,
        remote_balance_sat=(total - to_us) // 1000,
        active=row.get("state") == "CHANNELD_NORMAL" and bool(row.get("peer_connected", True)),
        confirmations=None,
    )
