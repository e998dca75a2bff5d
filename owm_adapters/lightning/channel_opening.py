"""Opening payout channels from the treasury's Lightning node (SRS-LN-03), for LND and CLN.

The :class:`~owm_core.ports.lightning.ChannelOpener` port over the same connections the
payment adapters hold (kept apart from them, which are long enough already):

* LND: ``WalletBalance`` (confirmed on-chain funds), ``ConnectPeer`` (already connected is
  fine) and the ``OpenChannel`` stream, whose ``chan_pending`` update names the funding output;
* CLN: ``listfunds`` (confirmed outputs), ``connect`` and ``fundchannel`` (``txid`` and
  ``outnum`` of the funding output).

The embedded ledger's :class:`~owm_adapters.lightning.embedded.SimLightning` implements the
port itself. Unreachable nodes are ``LightningUnavailable``; a refused open is too, with the
node's reason (never a macaroon or a rune).
"""

from __future__ import annotations

from typing import Any

import grpc
from lndgrpc.compiled import lightning_pb2 as ln
from pyln.client import RpcError

from owm_adapters.lightning.cln import ClnLightning
from owm_adapters.lightning.embedded import SimLightning
from owm_adapters.lightning.lnd import LndLightning
from owm_core.errors import InvalidValue, LightningUnavailable
from owm_core.nodes.registry import LnNodeUri
from owm_core.ports.lightning import ChannelOpener


def _peer(peer_uri: str) -> LnNodeUri:
    return LnNodeUri.parse(peer_uri)


def _amount(amount_sat: int) -> int:
    if isinstance(amount_sat, bool) or not isinstance(amount_sat, int) or amount_sat <= 0:
        raise InvalidValue("amount_sat", "must be a positive integer")
    return amount_sat


class LndChannelOpener:
    """Payout channels from an LND node (module docstring)."""

    def __init__(self, lnd: LndLightning) -> None:
        self._lnd = lnd

    def spendable_onchain_sat(self) -> int:
        """``WalletBalance``'s confirmed balance."""
        return int(self._lnd._unary("WalletBalance", ln.WalletBalanceRequest()).confirmed_balance)

    def open_channel(self, peer_uri: str, amount_sat: int) -> str:
        """``ConnectPeer`` then ``OpenChannel``; the pending funding output ``txid:index``."""
        peer, amount = _peer(peer_uri), _amount(amount_sat)
        address = ln.LightningAddress(pubkey=peer.pubkey, host=f"{peer.host}:{peer.port}")
        self._lnd._unary("ConnectPeer", ln.ConnectPeerRequest(addr=address), refusal_is_none=True)
        request = ln.OpenChannelRequest(
            node_pubkey=bytes.fromhex(peer.pubkey), local_funding_amount=amount, private=False
        )
        stream = self._lnd._lightning.OpenChannel(
            request, metadata=self._lnd._metadata(), timeout=self._lnd.rpc_timeout_s
        )
        try:
            for update in stream:
                if update.HasField("chan_pending"):
                    pending = update.chan_pending
                    return f"{bytes(pending.txid)[::-1].hex()}:{int(pending.output_index)}"
        except grpc.RpcError as error:
            raise self._lnd._failure("OpenChannel", error) from None
        finally:
            stream.cancel()
        raise LightningUnavailable("LND OpenChannel ended without a pending channel")


class ClnChannelOpener:
    """Payout channels from a Core Lightning node (module docstring)."""

    def __init__(self, cln: ClnLightning) -> None:
        self._cln = cln

    def _rpc(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            return dict(self._cln._call(method, **params))
        except RpcError as error:
            raise self._cln._failure(method, error) from None

    def spendable_onchain_sat(self) -> int:
        """The confirmed outputs of ``listfunds``."""
        funds = self._rpc("listfunds")
        return sum(
            int(o.get("amount_msat", 0)) // 1000
            for o in funds.get("outputs", [])
            if o.get("status") == "confirmed" and not o.get("reserved", False)
        )

    def open_channel(self, peer_uri: str, amount_sat: int) -> str:
        """``connect`` then ``fundchannel``; the funding output ``txid:outnum``."""
        peer, amount = _peer(peer_uri), _amount(amount_sat)
        self._rpc("connect", id=str(peer))
        funded = self._rpc("fundchannel", id=peer.pubkey, amount=amount)
        return f"{funded['txid']}:{int(funded['outnum'])}"


def opener_for(lightning: object) -> ChannelOpener | None:
    """The channel opener over the treasury's Lightning handle, or None for a handle this
    module does not know (a test double)."""
    if isinstance(lightning, LndLightning):
        return LndChannelOpener(lightning)
    if isinstance(lightning, ClnLightning):
        return ClnChannelOpener(lightning)
    if isinstance(lightning, SimLightning):
        return lightning
    return None
