"""Payout channels to new nodes: when the treasury opens one, and how big (SRS-LN-03).

When the treasury can afford it, it opens a channel to each newly registered node, so rewards
reach the node directly instead of being routed (SRS-LN-03, SRS-LN-06). The policy has three
numbers, all in sat:

* ``reserve_sat`` — on-chain funds the treasury always keeps (fees, closes, treasury spends);
* ``per_node_sat`` — the capacity of each payout channel;
* ``daily_budget_sat`` — at most this much capacity is opened per UTC day.

A node needs a payout channel unless the treasury already has an active channel with it whose
local (treasury) balance is positive — a channel the treasury can pay over; a stake channel
the node funded holds the node's balance, not the treasury's, and does not count. A suspended
node gets none. Time is passed in; the day is ``now // 86,400``.

Each opening is recorded (:class:`PayoutChannelOpening`) before the treasury's Lightning node is
asked to open it, and the records are what the daily budget counts. Lightning nodes list a
channel only once it confirms, so a node whose last opening is younger than
:data:`CONFIRM_WINDOW_S` gets no other, even across a coordinator restart or a crash in the
middle of the call: treasury funds are never committed twice to one node (SRS-LN-03).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from owm_core import fields
from owm_core.payments.lightning import Channel

DAY_S = 86_400
CONFIRM_WINDOW_S = DAY_S
"""How long an opened channel may take to confirm before the node may be offered another."""


@attrs.frozen
class PayoutChannelOpening:
    """The treasury decided at ``started_at`` to open ``amount_sat`` to node ``node_id``;
    ``channel_point`` once its Lightning node accepted (empty if it never answered)."""

    node_id: str
    amount_sat: int = attrs.field(validator=fields.money())
    started_at: int = attrs.field(validator=fields.timestamp())
    channel_point: str = ""


@attrs.frozen
class PayoutChannelPolicy:
    """Reserve, channel size and daily budget (module docstring); ``per_node_sat`` 0 turns
    channel opening off."""

    reserve_sat: int = attrs.field(default=1_000_000, validator=fields.money())
    per_node_sat: int = attrs.field(default=500_000, validator=fields.money())
    daily_budget_sat: int = attrs.field(default=5_000_000, validator=fields.money())


@attrs.frozen
class ChannelDecision:
    """Open ``amount_sat`` now, or not (``amount_sat`` 0) and why."""

    amount_sat: int
    reason: str

    @property
    def opens(self) -> bool:
        """Whether a channel is to be opened."""
        return self.amount_sat > 0


def has_payout_route(channels: Iterable[Channel]) -> bool:
    """Whether one of these channels lets the treasury pay the node directly."""
    return any(c.active and c.local_balance_sat > 0 for c in channels)


def decide(
    policy: PayoutChannelPolicy,
    *,
    spendable_sat: int,
    opened_today_sat: int,
    channels: Iterable[Channel],
    suspended: bool = False,
    last_opening: PayoutChannelOpening | None = None,
    now: int = 0,
) -> ChannelDecision:
    """Whether to open a payout channel to a node now (SRS-LN-03), given the treasury's
    spendable on-chain funds, what it opened today, its channels with the node and the last
    opening recorded for the node."""
    if policy.per_node_sat == 0:
        return ChannelDecision(0, "payout channels are off (per_node_sat = 0)")
    if suspended:
        return ChannelDecision(0, "the node is suspended")
    if has_payout_route(channels):
        return ChannelDecision(0, "the treasury can already pay the node over a channel")
    if last_opening is not None and now - last_opening.started_at < CONFIRM_WINDOW_S:
        return ChannelDecision(
            0, f"a payout channel opened at {last_opening.started_at} may still be confirming"
        )
    refused = funds_refuse(policy, spendable_sat, opened_today_sat)
    if refused is not None:
        return ChannelDecision(0, refused)
    return ChannelDecision(policy.per_node_sat, "a new node without a payout channel")


def funds_refuse(
    policy: PayoutChannelPolicy, spendable_sat: int, opened_today_sat: int
) -> str | None:
    """Why the treasury's funds allow no payout channel now, whatever the node (today's budget
    spent, or the on-chain reserve reached); None while one may be opened. A sweep stops
    asking about nodes' channels once this says no."""
    if opened_today_sat + policy.per_node_sat > policy.daily_budget_sat:
        return f"today's budget of {policy.daily_budget_sat} sat is spent"
    if spendable_sat - policy.per_node_sat < policy.reserve_sat:
        return f"opening would leave less than the {policy.reserve_sat} sat reserve on chain"
    return None


def day_start(now: int) -> int:
    """The start of the UTC day of ``now`` (the daily budget's period)."""
    return now - now % DAY_S
