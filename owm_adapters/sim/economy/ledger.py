"""The simulator's Lightning side: stake channels with the treasury and reward payments.

An in-memory channel book, not a Lightning implementation and not a second set of rules: it
holds the stake channels the treasury's node would list (what ``recheck_stake`` reads through
the :class:`~owm_core.ports.lightning.StakeChannels` port), force-closes them for the slashing
service (:class:`~owm_core.ports.lightning.ForceCloser`), and records reward payments sent over
them: a payment succeeds when its node is online, fails otherwise, and a payment hash is never
paid twice (the book refuses it and counts the attempt, which an invariant reports).

Why not the embedded ledger (``owm_adapters.lightning.embedded``): it signs real BOLT11
invoices and keeps everything in SQLite, a few milliseconds per payment, far from the
simulator's budget of 100 µs per node-day. Payouts use the node's stake channel directly, so
no routing fee is charged; the fee term of the conservation invariant stays 0 here.
"""

from __future__ import annotations

import attrs

from owm_adapters.sim.economy.config import digest
from owm_core.errors import ChannelNotFound
from owm_core.payments.lightning import Channel, PaymentResult, PaymentStatus


@attrs.define
class ChannelBook:
    """Stake channels between the treasury and node Lightning keys, and payments over them."""

    treasury_pubkey: str
    _channels: dict[str, list[Channel]] = attrs.field(factory=dict)
    _by_point: dict[str, str] = attrs.field(factory=dict)
    _paid: dict[str, int] = attrs.field(factory=dict)
    force_closed: int = 0
    paid_msat: int = 0
    fees_msat: int = 0
    duplicate_payments: int = 0
    _opened: int = 0

    # -- channels (the StakeChannels and ForceCloser ports) ----------------------------------

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        """The treasury's open channels with ``peer_pubkey``."""
        return list(self._channels.get(peer_pubkey, ()))

    def open_channel(self, peer_pubkey: str, own_sat: int) -> Channel:
        """The node funds a channel with ``own_sat`` of its own (the treasury's remote side);
        it counts as confirmed at once (the simulated day is longer than a confirmation)."""
        self._opened += 1
        point = f"{digest('channel', peer_pubkey, self._opened)}:0"
        channel = Channel(
            channel_id=f"sim{self._opened}", channel_point=point, peer_pubkey=peer_pubkey,
            capacity_sat=own_sat, local_balance_sat=0, remote_balance_sat=own_sat,
            active=True, confirmations=1,
        )
        self._channels.setdefault(peer_pubkey, []).append(channel)
        self._by_point[point] = peer_pubkey
        return channel

    def close_channel(self, channel_point: str) -> bool:
        """Close a channel (cooperatively or not); False if it is not open."""
        peer = self._by_point.pop(channel_point, None)
        if peer is None:
            return False
        kept = [c for c in self._channels[peer] if c.channel_point != channel_point]
        self._channels[peer] = kept
        return True

    def is_open(self, channel_point: str) -> bool:
        """Whether the channel is open."""
        return channel_point in self._by_point

    def force_close(self, channel_point: str) -> str:
        """Force-close a stake channel (a slash, SRS-STAKE-05); ChannelNotFound if not open."""
        if not self.close_channel(channel_point):
            raise ChannelNotFound(f"no open channel {channel_point}")
        self.force_closed += 1
        return digest("force-close", channel_point)

    # -- payments ----------------------------------------------------------------------------

    def pay(self, payment_hash: str, amount_msat: int, reachable: bool) -> PaymentResult:
        """Send ``amount_msat`` for ``payment_hash`` over the payee's channel: succeeds when the
        payee is ``reachable``. A hash already paid is not paid again (counted as a duplicate
        attempt, which the no-double-payment invariant reports)."""
        if payment_hash in self._paid:
            self.duplicate_payments += 1
            return PaymentResult(payment_hash, PaymentStatus.SUCCEEDED, self._paid[payment_hash],
                                 preimage=digest("preimage", payment_hash))
        if not reachable:
            return PaymentResult(payment_hash, PaymentStatus.FAILED,
                                 failure_reason="payee offline")
        self._paid[payment_hash] = amount_msat
        self.paid_msat += amount_msat
        return PaymentResult(payment_hash, PaymentStatus.SUCCEEDED, amount_msat,
                             preimage=digest("preimage", payment_hash))

    def paid_hashes(self) -> int:
        """How many distinct payment hashes were paid."""
        return len(self._paid)
