"""The Lightning port: invoices, payments, stake channels and force close (SRS-LN-*, SRS-STAKE-*).

What the economy needs from a Lightning node, whichever node it is: LND over gRPC, Core
Lightning over its JSON-RPC socket, or the embedded simulated ledger used by local networks and
tests. Values are frozen and hold money as integers (msat for payments and invoices, sat for
channel capacities and balances, as Lightning nodes report them).

Semantics every adapter keeps (the contract suite in ``tests/adapters`` checks them):

- ``pay`` is idempotent by payment hash: paying a hash that already succeeded, or is in flight,
  never sends a second payment; it returns the earlier result. A failed attempt may be retried.
- Routing failures are *results* (``PaymentStatus.FAILED`` with a reason), not exceptions; an
  exception means the node itself could not be asked (``LightningUnavailable``) or the request
  was malformed (``InvalidValue``).
- ``keysend`` pays a node with no invoice (owm_core.payments.keysend): the caller gives the
  preimage, so the payment hash is ``sha256(preimage)`` and known before anything is sent; it
  is idempotent by that hash like ``pay``, and ``lookup_keysend(hash)`` finds the attempt. A
  payee that refuses keysend is a FAILED result with the backend's reason. Core Lightning's
  ``keysend`` draws its own preimage, so its adapter keys the attempt by a label naming the
  caller's hash and reports it under that hash.
- ``lookup_payment`` looks a payment up by its hash only, which every backend answers from an
  index; ``lookup_keysend`` looks up a keysend attempt by its key (``sha256(preimage)``). On LND
  and the embedded ledger both are the same lookup; on Core Lightning ``lookup_keysend`` reads
  every payment of the node (``listpays`` has no label filter), so callers ask it only for
  payouts they sent (or may have sent) by keysend.
- ``sign_message`` / ``verify_message`` use the Lightning message-signing scheme LND and CLN
  share (zbase32 recoverable signature over ``sha256d("Lightning Signed Message:" ‖ message)``):
  a node proves it controls the Lightning node it registers with (SRS-STAKE-01, SRS-LN-11).
  ``verify_message`` checks against a *given* public key, so it works for nodes outside the
  verifier's gossip graph (private stake channels).
- ``force_close`` needs a credential distinct from the payment credential (SRS-SEC-13); an
  adapter built without one raises ``ForceCloseNotPermitted``.
- No adapter error or log line contains a macaroon, rune or key (SRS-SEC-07).
"""

from __future__ import annotations

from typing import Protocol

from owm_core.payments.lightning import (
    Channel,
    Invoice,
    PaymentResult,
)


class Lightning(Protocol):
    """What the economy needs from a Lightning node (LND, CLN or the embedded ledger)."""

    def node_pubkey(self) -> str:
        """This node's identity: a 33-byte compressed public key as lower-case hex."""
        ...

    def node_uri(self) -> str | None:
        """``pubkey@host:port`` where peers reach this node, or None if it announces none."""
        ...

    def create_invoice(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """Issue a BOLT11 invoice for ``amount_msat`` payable for ``expiry_s`` seconds."""
        ...

    def lookup_invoice(self, payment_hash: str) -> Invoice:
        """The invoice with this hash in its current state; ``InvoiceNotFound`` if unknown."""
        ...

    def wait_invoice(self, payment_hash: str, timeout_s: float) -> Invoice:
        """Block until the invoice leaves OPEN or ``timeout_s`` passes; return its state then."""
        ...

    def pay(self, bolt11: str, max_fee_msat: int, timeout_s: float) -> PaymentResult:
        """Pay an invoice at most once per payment hash, routing fees capped at max_fee_msat."""
        ...

    def keysend(
        self, dest_pubkey: str, amount_msat: int, preimage: str, max_fee_msat: int,
        timeout_s: float,
    ) -> PaymentResult:
        """Pay ``amount_msat`` to the node ``dest_pubkey`` without an invoice, carrying
        ``preimage`` (64 hex) in the keysend record; at most once per ``sha256(preimage)``."""
        ...

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        """The latest outgoing payment for this hash, or None if none was ever attempted."""
        ...

    def lookup_keysend(self, key: str) -> PaymentResult | None:
        """The latest keysend attempt made with a preimage hashing to ``key`` (reported under
        ``key``), or None if none was ever made; ask it only of keysend payouts."""
        ...

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        """This node's open channels with ``peer_pubkey`` (stake checks, SRS-STAKE-01/02)."""
        ...

    def sign_message(self, message: str) -> str:
        """Sign ``message`` with this node's identity key; the zbase32 signature."""
        ...

    def verify_message(self, message: str, signature: str, pubkey: str) -> bool:
        """True when ``signature`` over ``message`` was made by the node ``pubkey``."""
        ...

    def force_close(self, channel_point: str) -> str:
        """Unilaterally close a channel with the force-close credential; return the txid."""
        ...


class StakeChannels(Protocol):
    """The part of a Lightning node that stake re-verification reads (SRS-STAKE-01/02): its
    channels with one peer. Every :class:`Lightning` is one; the economy simulator's channel
    book is one without invoices or payments."""

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        """This node's open channels with ``peer_pubkey``."""
        ...


class ForceCloser(Protocol):
    """The part of a Lightning node that carries out a slash (SRS-STAKE-05, SRS-LN-12): force
    closing a stake channel. Every :class:`Lightning` is one."""

    def force_close(self, channel_point: str) -> str:
        """Unilaterally close a channel with the force-close credential; return the txid."""
        ...


class ChannelOpener(Protocol):
    """What the treasury needs to open payout channels to new nodes (SRS-LN-03): LND
    ``ConnectPeer`` + ``OpenChannel``, CLN ``connect`` + ``fundchannel``, the embedded ledger."""

    def spendable_onchain_sat(self) -> int:
        """Confirmed on-chain funds the node could put into a channel."""
        ...

    def open_channel(self, peer_uri: str, amount_sat: int) -> str:
        """Connect to ``pubkey@host:port`` and open a channel of ``amount_sat`` funded by this
        node; the funding channel point (``txid:index``) once it is pending."""
        ...
