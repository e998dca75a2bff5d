"""A local Core Lightning JSON-RPC server on a unix socket, backed by the embedded ledger.

Speaks CLN's wire format as ``lightningd`` does (and as pyln-client expects): one connection per
call; the request is compact JSON-RPC 2.0 with no delimiter, so the server reads until one whole
JSON object parses; the reply is JSON followed by ``"\\n\\n"`` and echoes the request's id; an
error reply ``{"error": {"code", "message"}}`` makes pyln raise ``RpcError``. Implements the
methods :class:`owm_adapters.lightning.cln.ClnLightning` uses, with CLN's field names and error
codes.
"""

from __future__ import annotations

import hashlib
import json
import os
import socketserver
import threading
from typing import Any

import bolt11

from owm_adapters.lightning import message_signing
from owm_adapters.lightning.embedded import SimLedger
from owm_core.errors import ChannelNotFound, InsufficientFunds, InvalidValue, InvoiceNotFound
from owm_core.payments.lightning import Invoice, InvoiceState, PaymentStatus

_STATUS = {
    InvoiceState.OPEN: "unpaid",
    InvoiceState.SETTLED: "paid",
    InvoiceState.CANCELED: "expired",
    InvoiceState.ACCEPTED: "unpaid",
}


class ClnError(Exception):
    """A JSON-RPC error reply."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeCln:
    """One simulated node served as CLN's ``lightning-rpc`` socket."""

    def __init__(self, ledger: SimLedger, alias: str, socket_path: str) -> None:
        self.ledger = ledger
        self.node = ledger.lightning(alias, force_close_allowed=True)
        self.socket_path = socket_path
        self.labels: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.peers: set[str] = set()
        #: (label, payment hash) of every payment this node made, in order.
        self.pays: list[tuple[str | None, str]] = []
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                fake._serve(self.request)

        self.server = socketserver.ThreadingUnixStreamServer(socket_path, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FakeCln:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, connection: Any) -> None:
        buffer = b""
        decoder = json.JSONDecoder()
        while True:
            chunk = connection.recv(4096)
            if not chunk:
                return
            buffer += chunk
            try:
                request, _ = decoder.raw_decode(buffer.decode())
                break
            except (ValueError, UnicodeDecodeError):
                continue
        self.requests.append(request)
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        try:
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise ClnError(-32602, "only named parameters are supported by this fake")
            handler = getattr(self, "rpc_" + str(request.get("method")), None)
            if handler is None:
                raise ClnError(-32601, f"Unknown command '{request.get('method')}'")
            reply["result"] = handler(**params)
        except ClnError as error:
            reply["error"] = {"code": error.code, "message": error.message}
        except TypeError as error:
            reply["error"] = {"code": -32602, "message": str(error)}
        connection.sendall(json.dumps(reply).encode() + b"\n\n")

    # -- CLN methods ------------------------------------------------------------------------

    def rpc_getinfo(self) -> dict[str, Any]:
        uri = self.node.node_uri()
        address = []
        if uri:
            host, port = uri.split("@", 1)[1].rsplit(":", 1)
            address.append({"type": "ipv4", "address": host, "port": int(port)})
        return {"id": self.node.node_pubkey(), "alias": "fake-cln", "address": address,
                "network": "regtest", "blockheight": 1000}

    def rpc_invoice(self, amount_msat: int, label: str, description: str,
                    expiry: int = 604_800) -> dict[str, Any]:
        if label in self.labels:
            raise ClnError(900, f"Duplicate label '{label}'")
        try:
            invoice = self.node.create_invoice(int(amount_msat), description, int(expiry))
        except InvalidValue as error:
            raise ClnError(-32602, error.message) from None
        self.labels[label] = invoice.payment_hash
        return {"payment_hash": invoice.payment_hash, "bolt11": invoice.bolt11,
                "expires_at": invoice.expires_at}

    def rpc_listinvoices(self, payment_hash: str | None = None) -> dict[str, Any]:
        if payment_hash is None:
            raise ClnError(-32602, "this fake lists invoices by payment_hash only")
        try:
            invoice = self.node.lookup_invoice(payment_hash)
        except InvoiceNotFound:
            return {"invoices": []}
        except InvalidValue as error:
            raise ClnError(-32602, error.message) from None
        return {"invoices": [self._invoice_row(invoice)]}

    def _invoice_row(self, invoice: Invoice) -> dict[str, Any]:
        label = next((k for k, v in self.labels.items() if v == invoice.payment_hash),
                     invoice.payment_hash)
        row: dict[str, Any] = {
            "label": label, "bolt11": invoice.bolt11, "payment_hash": invoice.payment_hash,
            "amount_msat": invoice.amount_msat, "status": _STATUS[invoice.state],
            "description": invoice.memo, "expires_at": invoice.expires_at,
        }
        if invoice.state is InvoiceState.SETTLED:
            row["amount_received_msat"] = invoice.amount_paid_msat
            row["paid_at"] = invoice.settled_at
        return row

    def rpc_pay(self, bolt11: str, maxfee: int | None = None, retry_for: int = 60,
                **_: Any) -> dict[str, Any]:
        try:
            payment_hash = _decode_hash(bolt11)
        except ValueError:
            raise ClnError(-32602, "Invalid bolt11: Bad bech32 string") from None
        result = self.node.pay(bolt11, 0 if maxfee is None else int(maxfee), retry_for)
        if (None, payment_hash) not in self.pays:
            self.pays.append((None, payment_hash))
        if result.status is PaymentStatus.FAILED:
            reason = result.failure_reason or ""
            code = 207 if "expired" in reason else 206 if "fee limit" in reason else 205
            raise ClnError(code, reason)
        return {
            "payment_hash": payment_hash, "payment_preimage": result.preimage,
            "amount_msat": result.amount_msat,
            "amount_sent_msat": result.amount_msat + result.fee_msat,
            "status": "complete", "parts": 1,
        }

    def rpc_keysend(self, destination: str, amount_msat: int, label: str | None = None,
                    maxfee: int | None = None, retry_for: int = 60,
                    **_: Any) -> dict[str, Any]:
        """As CLN's keysend plugin: a fresh random preimage for every call (so every call is a
        new payment hash), the label kept on the payment; failures as ``pay``'s codes, a
        payee refusing keysend as 203 with the remote's failure."""
        preimage = os.urandom(32).hex()
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        # keysend's default fee budget: 0.5 %, fees under 5000 msat exempt.
        budget = max(5_000, int(amount_msat) // 200) if maxfee is None else int(maxfee)
        try:
            result = self.node.keysend(destination, int(amount_msat), preimage, budget, retry_for)
        except InvalidValue as error:
            raise ClnError(-32602, f"{error.field}: {error.message}") from None
        self.pays.append((label, payment_hash))
        if result.status is PaymentStatus.FAILED:
            reason = result.failure_reason or ""
            if "incorrect payment details" in reason:
                raise ClnError(203, "failed: WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS (reply "
                                    "from remote)")
            raise ClnError(206 if "fee limit" in reason else 205, reason)
        return {
            "destination": destination, "payment_hash": payment_hash,
            "payment_preimage": result.preimage, "amount_msat": result.amount_msat,
            "amount_sent_msat": result.amount_msat + result.fee_msat,
            "status": "complete", "parts": 1,
        }

    def rpc_listpays(self, payment_hash: str | None = None, **_: Any) -> dict[str, Any]:
        """As lightningd: the pays of one hash, or every pay this node made."""
        if payment_hash is not None:
            labels = [label for label, h in self.pays if h == payment_hash] or [None]
            row = self._pay_row(payment_hash, labels[0])
            return {"pays": [] if row is None else [row]}
        rows = [self._pay_row(h, label) for label, h in self.pays]
        return {"pays": [row for row in rows if row is not None]}

    def _pay_row(self, payment_hash: str, label: str | None) -> dict[str, Any] | None:
        result = self.node.lookup_payment(payment_hash)
        if result is None:
            return None
        status = {PaymentStatus.SUCCEEDED: "complete", PaymentStatus.FAILED: "failed",
                  PaymentStatus.IN_FLIGHT: "pending"}[result.status]
        row: dict[str, Any] = {"payment_hash": payment_hash, "status": status}
        if label is not None:
            row["label"] = label
        if result.status is PaymentStatus.SUCCEEDED:
            row.update(preimage=result.preimage, amount_msat=result.amount_msat,
                       amount_sent_msat=result.amount_msat + result.fee_msat)
        return row

    def rpc_listpeerchannels(self, id: str | None = None) -> dict[str, Any]:
        channels = self.ledger.channels_of(self.node.node_pubkey(), id)
        rows = []
        for channel in channels:
            txid, outnum = channel.channel_point.split(":")
            rows.append({
                "peer_id": channel.peer_pubkey, "peer_connected": True,
                "state": "CHANNELD_NORMAL", "short_channel_id": channel.channel_id,
                "channel_id": hashlib.sha256(channel.channel_point.encode()).hexdigest(),
                "funding_txid": txid, "funding_outnum": int(outnum),
                "total_msat": channel.capacity_sat * 1000,
                "to_us_msat": channel.local_balance_sat * 1000,
            })
        return {"channels": rows}

    def rpc_signmessage(self, message: str) -> dict[str, Any]:
        zbase = self.node.sign_message(message)
        raw = message_signing.zbase32_decode(zbase) or b""
        return {"signature": raw[1:].hex(), "recid": f"{raw[0] - 31:02x}", "zbase": zbase}

    def rpc_checkmessage(self, message: str, zbase: str, pubkey: str | None = None
                         ) -> dict[str, Any]:
        """As lightningd since v23: ``verified`` is always true; anything else is an error."""
        signer = message_signing.recover_signer(message, zbase)
        if signer is None:
            raise ClnError(-32602, "zbase: bad signature")
        if pubkey is None:
            if not self.ledger.channels_of(signer, None):
                raise ClnError(-1, "pubkey not found in the graph")
        elif signer != pubkey:
            raise ClnError(-1, "signature does not match the given pubkey")
        return {"pubkey": signer, "verified": True}

    def rpc_listfunds(self) -> dict[str, Any]:
        balance = self.ledger.onchain_sat(self.node.node_pubkey())
        outputs = [{"txid": "ab" * 32, "output": 0, "amount_msat": balance * 1000,
                    "status": "confirmed", "reserved": False}] if balance else []
        return {"outputs": outputs, "channels": []}

    def rpc_connect(self, id: str, host: str | None = None, port: int | None = None
                    ) -> dict[str, Any]:
        pubkey = id.partition("@")[0]
        self.peers.add(pubkey)
        return {"id": pubkey, "features": "", "direction": "out",
                "address": {"type": "ipv4", "address": "127.0.0.1", "port": 9735}}

    def rpc_fundchannel(self, id: str, amount: int, **_: Any) -> dict[str, Any]:
        if id not in self.peers:  # lightningd/opening_control.c
            raise ClnError(-1, f"Unknown peer '{id}'")
        try:
            point = self.ledger.open_funded_channel(self.node.node_pubkey(), id, int(amount))
        except InsufficientFunds:
            raise ClnError(301, "Could not afford 500000sat using all 0 available UTXOs") from None
        txid, outnum = point.split(":")
        return {"tx": "00", "txid": txid, "outnum": int(outnum),
                "channel_id": hashlib.sha256(point.encode()).hexdigest()}

    def rpc_close(self, id: str, unilateraltimeout: int | None = None,
                  **_: Any) -> dict[str, Any]:
        for channel in self.ledger.channels_of(self.node.node_pubkey(), None):
            ids = {channel.channel_id,
                   hashlib.sha256(channel.channel_point.encode()).hexdigest()}
            if id in ids:
                try:
                    txid = self.ledger.close_channel(
                        channel.channel_point, by=self.node.node_pubkey(),
                        force=unilateraltimeout is not None,
                    )
                except ChannelNotFound:
                    break
                # lightningd's reply since v24.11 (closing_control.c): txs/txids arrays.
                return {"type": "unilateral" if unilateraltimeout else "mutual",
                        "txs": ["00"], "txids": [txid]}
        # command_find_channel → command_fail_badparam (lightningd/peer_control.c)
        raise ClnError(-32602, "id: Short channel id not found: invalid token (see logs for "
                               "details)")


def _decode_hash(text: str) -> str:
    try:
        return str(bolt11.decode(text).payment_hash)
    except Exception as error:
        raise ValueError("not a bolt11 invoice") from error
