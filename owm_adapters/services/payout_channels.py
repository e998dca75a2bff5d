"""Payout channels to new nodes (SRS-LN-03): the treasury opens one when it can afford it.

A worker sweeps the registry every ``period_s`` seconds, and at once when a node registers
(:meth:`PayoutChannels.registered`, a registration listener of the coordinator). For each
registered node it asks the treasury's Lightning node for its channels with the node and its
spendable on-chain funds, lets :func:`owm_core.payments.payout_channels.decide` apply the policy
(reserve, per-node size, daily budget) and opens the channel through the
:class:`~owm_core.ports.lightning.ChannelOpener` port (LND, CLN or the embedded ledger).

Each opening is recorded in the store before the Lightning node is asked to open it, and the
daily budget and the "still confirming" rule read those records: LND and CLN list a channel
only once it confirms, and a restart or a crash in the middle of the call must not open a
second channel to the same node or start the day's budget afresh. An opening the Lightning
node refused or never answered keeps its record too (whether funds moved is unknown), so the
node is offered another channel only after the confirmation window.
"""

from __future__ import annotations

import logging
import threading

import attrs

from owm_adapters.services.workers import Loop
from owm_core.errors import DomainError
from owm_core.nodes.registry import Node
from owm_core.payments.payout_channels import (
    PayoutChannelOpening,
    PayoutChannelPolicy,
    day_start,
    decide,
    funds_refuse,
)
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import ChannelOpener, StakeChannels
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

DEFAULT_PERIOD_S = 300.0


@attrs.frozen
class Opened:
    """A payout channel the sweep opened."""

    node_id: str
    channel_point: str
    amount_sat: int


@attrs.define(eq=False)
class PayoutChannels:
    """The payout-channel worker (module docstring)."""

    _store: Repositories
    _opener: ChannelOpener
    _channels: StakeChannels
    _clock: Clock
    policy: PayoutChannelPolicy
    period_s: float = DEFAULT_PERIOD_S
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _loop: Loop = attrs.field(init=False)

    @_loop.default
    def _sweeps(self) -> Loop:
        return Loop("payout-channels", self.sweep, self.period_s)

    def start(self) -> None:
        """Start sweeping."""
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the current sweep."""
        self._loop.stop(timeout_s)

    def registered(self, _node_id: str) -> None:
        """A node registered: sweep now (a registration listener; never blocks it)."""
        self._loop.wake()

    def sweep(self) -> list[Opened]:
        """Open the payout channels the policy allows now; what was opened. The treasury's
        funds and today's openings are read once a sweep and again after each opening tried,
        and the sweep stops once they allow no channel: it asks the Lightning node about a
        node's channels only while one could still be opened (one question a node, not
        three, and none on the sweeps after the day's budget is spent)."""
        opened: list[Opened] = []
        if self.policy.per_node_sat == 0:
            return opened  # payout channels are off
        with self._lock:
            funds = self._funds()
            for node in self._store.nodes.list():
                if funds is None or funds_refuse(self.policy, *funds) is not None:
                    break
                done, tried = self._consider(node, funds)
                opened += [done] if done is not None else []
                funds = self._funds() if tried else funds
        return opened

    def _funds(self) -> tuple[int, int] | None:
        """The treasury's spendable on-chain sat and what it opened today; None (logged) if
        its Lightning node does not say."""
        try:
            spendable = self._opener.spendable_onchain_sat()
        except DomainError as exc:
            log.warning("no payout channels this sweep: %s", exc.message)
            return None
        return spendable, self._store.payout_channels.opened_since(day_start(self._clock.now()))

    def _consider(self, node: Node, funds: tuple[int, int]) -> tuple[Opened | None, bool]:
        """The channel opened to ``node``, if one was; and whether an opening was tried."""
        now, tried = self._clock.now(), False
        openings = self._store.payout_channels
        try:
            decision = decide(
                self.policy, spendable_sat=funds[0], opened_today_sat=funds[1],
                channels=self._channels.channels_with(node.ln_node_uri.pubkey),
                suspended=node.suspended, last_opening=openings.get(node.node_id), now=now,
            )  # fmt: skip
            if not decision.opens:
                log.debug("no payout channel to %s: %s", node.node_id, decision.reason)
                return None, False
            opening = PayoutChannelOpening(node.node_id, decision.amount_sat, now)
            openings.put(opening)
            tried = True
            point = self._opener.open_channel(str(node.ln_node_uri), decision.amount_sat)
        except DomainError as exc:
            log.warning("payout channel to %s not opened: %s", node.node_id, exc.message)
            return None, tried
        openings.put(attrs.evolve(opening, channel_point=point))
        log.info("opened payout channel %s of %d sat to %s", point, decision.amount_sat,
                 node.node_id)  # fmt: skip
        return Opened(node.node_id, point, decision.amount_sat), True
