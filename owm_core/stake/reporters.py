"""Slashing reporters are distinct, stake-backed identities, never tasks or strangers.

Tier-1 slashing needs signals from 3 *independent* reporters (SRS-STAKE-04). Counting reporter
names lets anyone mint independence: a task id, an anonymous key or a fresh node id is free.
This module owns the rule that makes independence cost stake:

* **One channel, one node.** A stake channel (its channel point, ``txid:index``) backs at most
  one node id (:class:`ChannelBindings`); a second node id claiming the same channel point is
  refused with :class:`~owm_core.errors.Conflict` (SRS-STAKE-01, SRS-LN-11).
* **Own balance only.** What a channel stakes for its node is the node's *own* balance in it,
  i.e. the treasury's ``remote_balance_sat`` (:func:`own_balance_sat`), not the capacity a
  treasury-funded channel would also show.
* **Counting.** :func:`counted_signals` keeps, per target node, the signals of reporters that
  are registered, backed by a channel whose own balance is at least ``min_own_balance_sat``,
  and not the target (or its own channel), and renames each after its backing channel point,
  ready for :meth:`owm_core.stake.slashing.SlashingPolicy.decide`. Task-derived reporters
  (``verify:<task id>``) and unknown reporters count for nothing. Any number of identities
  backed by one channel count as one reporter, so a Sybil with one stake cannot reach a
  threshold of ``k ≥ 2`` distinct reporters.

Who reports: the nodes whose agreeing work exposed the misbehaviour (:func:`named_by_peers`):
the sibling replicas that won a redundant verification against a fake proof, the participants
of an FL round that was not flagged. A verification task or an FL round is never a reporter
itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import Conflict
from owm_core.identity.keys import parse_node_id
from owm_core.stake.channel import StakeChannel
from owm_core.stake.slashing import VERIFICATION_REPORTER_PREFIX, SlashingSignal

CHANNEL_REPORTER_PREFIX = "channel:"
"""Reporter name given to a counted signal: the backing channel point after this prefix."""

_CHANNEL_POINT = fields.text(max_len=75, pattern=r"[0-9a-f]{64}:[0-9]{1,10}")


def _node_id(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    parse_node_id(value, attribute.name)


def own_balance_sat(channel: StakeChannel) -> int:
    """The node's own balance in its stake channel: the treasury's *remote* balance.

    ``StakeChannel`` is seen from the treasury's node, so the node's side is ``remote``.
    """
    return channel.own_balance_sat


@attrs.frozen
class ReporterStake:
    """The stake behind one reporter: its node id, channel point and own balance in sat."""

    node_id: str = attrs.field(validator=_node_id)
    channel_point: str = attrs.field(validator=_CHANNEL_POINT)
    own_balance_sat: int = attrs.field(validator=fields.money())


def channel_taken(channel_point: str) -> Conflict:
    """The refusal of a second node id claiming ``channel_point`` (SRS-STAKE-01, SRS-LN-11)."""
    return Conflict(f"channel {channel_point} already backs another node")


def _frozen(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen
class ChannelBindings:
    """Which node id each stake channel backs: one channel point, at most one node."""

    by_channel: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen)

    def bind(self, channel_point: str, node_id: str) -> ChannelBindings:
        """Bind ``channel_point`` to ``node_id``; refused if another node already holds it.

        Binding the same pair again is a no-op, so a node may re-register with its channel.
        """
        stake = ReporterStake(node_id, channel_point, 0)
        holder = self.by_channel.get(stake.channel_point)
        if holder is not None and holder != node_id:
            raise channel_taken(channel_point)
        return ChannelBindings({**self.by_channel, channel_point: node_id})

    def release(self, channel_point: str) -> ChannelBindings:
        """Free the channel (cooperative close or slashing), so a new stake may use it."""
        return ChannelBindings({c: n for c, n in self.by_channel.items() if c != channel_point})

    def node_of(self, channel_point: str) -> str | None:
        """The node id ``channel_point`` backs, if any."""
        return self.by_channel.get(channel_point)


def _target_channels(target_node_id: str, stakes: Mapping[str, ReporterStake]) -> set[str]:
    return {s.channel_point for s in stakes.values() if s.node_id == target_node_id}


def _backing_channel(
    target_node_id: str,
    signal: SlashingSignal,
    stakes: Mapping[str, ReporterStake],
    min_own_balance_sat: int,
    target_channels: set[str],
) -> str | None:
    if signal.node_id != target_node_id or signal.reporter == target_node_id:
        return None
    if signal.reporter.startswith(VERIFICATION_REPORTER_PREFIX):
        return None
    stake = stakes.get(signal.reporter)
    if stake is None or stake.node_id != signal.reporter:
        return None
    if stake.own_balance_sat < min_own_balance_sat or stake.channel_point in target_channels:
        return None
    return stake.channel_point


def named_by_peers(
    signals: Iterable[SlashingSignal], peers: Iterable[str]
) -> list[SlashingSignal]:
    """Each signal once per peer that is not itself accused: its reporters (SRS-STAKE-04).

    A lost verification or a flagged FL update is exposed by the other nodes' agreeing work;
    naming them as reporters lets :func:`counted_signals` count their stake channels, while
    the coordinator's own check (a task, a round) counts for nothing.
    """
    kept = list(signals)
    accused = {s.node_id for s in kept}
    honest = sorted({p for p in peers if p} - accused)
    return [attrs.evolve(s, reporter=peer) for s in kept for peer in honest]


def counted_signals(
    target_node_id: str,
    signals: Iterable[SlashingSignal],
    stakes: Mapping[str, ReporterStake],
    min_own_balance_sat: int,
) -> list[SlashingSignal]:
    """The signals that count, each renamed after its backing channel (SRS-STAKE-04).

    ``stakes`` maps a reporter's node id to its stake. A signal counts only if it is about the
    target, its reporter is a registered node other than the target, is not a task-derived
    reporter, and its stake channel holds at least ``min_own_balance_sat`` of the reporter's
    own funds and is not the target's own channel. Feed the result to
    ``SlashingPolicy.decide``: its distinct-reporter count then counts distinct stake channels.
    """
    own = _target_channels(target_node_id, stakes)
    kept = []
    for signal in signals:
        channel = _backing_channel(target_node_id, signal, stakes, min_own_balance_sat, own)
        if channel is not None:
            kept.append(attrs.evolve(signal, reporter=CHANNEL_REPORTER_PREFIX + channel))
    return kept
