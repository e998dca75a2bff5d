"""Stake checks over Lightning: terms, verification at registration and re-verification.

This module owns how the coordinator looks at a node's stake channel (spec 4.12, 4.12.2):

* **Stake terms** (:func:`stake_terms`; SRS-NODE-11): what a node must lock before it
  registers — the treasury's Lightning URI, the tier's minimum and the confirmations needed.
* **Channels** (:func:`stake_channel_of`; SRS-STAKE-01): the stake view of a channel the
  Lightning port lists.
* **Re-verification** (:func:`recheck_stake`, :func:`reverify_due_stakes`; SRS-STAKE-02/03):
  a pending stake turns active once its channel is confirmed; an active one is checked every
  period and degraded, with a grace, when its channel is gone.
* **Lookup** (:func:`stake_of`): a node's stake record, by node id or public key.

Pure functions over the ports (narrow stores from :mod:`owm_core.ports.stores`, and
:mod:`owm_core.ports.lightning`), time (``now``, int POSIX seconds) passed in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

import attrs

from owm_core import fields
from owm_core.errors import DomainError, InvalidValue, LightningUnavailable, NotFound
from owm_core.identity.keys import node_id_from_public_key, parse_public_key
from owm_core.nodes.tiers import StakeRequirements, Tier
from owm_core.payments.lightning import Channel
from owm_core.ports.lightning import Lightning, StakeChannels
from owm_core.ports.stores import StakeStore
from owm_core.stake.channel import (
    DEFAULT_POLICY,
    Stake,
    StakeChannel,
    StakeCheck,
    StakePolicy,
    StakeStatus,
    check_stake,
)
from owm_core.stake.reporters import ReporterStake, channel_taken

_RECHECKED = frozenset({StakeStatus.PENDING, StakeStatus.ACTIVE, StakeStatus.DEGRADED})

MIN_STAKE_CONFIRMATIONS = 1
"""A stake turns active once its channel's funding has one confirmation (spec 4.12.2)."""


@functools.lru_cache(maxsize=1 << 14)
def stake_channel_of(channel: Channel) -> StakeChannel:
    """The stake view of a channel the Lightning port lists (SRS-STAKE-01).

    LND's ListChannels lists only channels whose funding is confirmed and reports no
    confirmation count (``None``): such a channel counts as confirmed once. Both values are
    frozen and this is a pure function of every field of ``channel``, so the views of the
    channels seen last are remembered: re-verification looks at each stake every period.
    """
    confirmations = 1 if channel.confirmations is None else channel.confirmations
    return fields.copied(StakeChannel, channel, confirmations=confirmations)


def bound_stake_check(
    repositories: StakeStore,
    node_id: str,
    tier: Tier,
    channels: Sequence[StakeChannel],
    requirements: StakeRequirements | None = None,
    *,
    refuse_taken: bool = True,
) -> StakeCheck:
    """The stake check over the channels no other node holds (SRS-STAKE-01, SRS-LN-11).

    A channel bound to another node id backs that node, not this one: one channel, one node.
    When only such a channel would qualify, ``refuse_taken`` raises Conflict naming it (a
    registration); otherwise (a re-verification) the check simply fails.
    """
    bindings = repositories.channel_bindings
    free = [c for c in channels if bindings.node_of(c.channel_point) in (None, node_id)]
    check = check_stake(tier, free, requirements)
    if refuse_taken and not check.passed:
        taken = check_stake(tier, channels, requirements).channel
        if taken is not None:
            raise channel_taken(taken.channel_point)
    return check


def reporter_stakes(repositories: StakeStore, node_ids: Iterable[str]) -> dict[str, ReporterStake]:
    """The stake behind each of ``node_ids`` that is a node with a live stake and a channel
    (SRS-STAKE-04): what :func:`owm_core.stake.reporters.counted_signals` counts."""
    found: dict[str, ReporterStake] = {}
    for node_id in set(node_ids):
        node = repositories.nodes.get(node_id)
        stake = None if node is None else repositories.stakes.get(node.public_key)
        if stake is None or stake.channel is None or not stake.live:
            continue
        found[node_id] = ReporterStake(
            node_id, stake.channel.channel_point, stake.channel.own_balance_sat
        )
    return found


def recheck_stake(
    repositories: StakeStore,
    lightning: StakeChannels,
    stake: Stake,
    now: int,
    requirements: StakeRequirements | None = None,
    policy: StakePolicy | None = None,
) -> Stake:
    """Look at a node's stake channels again and store the outcome (spec 4.12.2, SRS-STAKE-02/03).

    pending → active once the qualifying channel is confirmed; active/degraded → the periodic
    re-verification (degraded with a 24 h grace when the channel is gone, suspended after it).
    Other states are returned unchanged.
    """
    stake_policy = policy if policy is not None else DEFAULT_POLICY
    if stake.status not in _RECHECKED:
        return stake
    node = repositories.nodes.get(node_id_from_public_key(stake.public_key))
    if node is None:
        raise NotFound("no node is registered with this stake's public key")
    channels = [stake_channel_of(c) for c in lightning.channels_with(node.ln_node_uri.pubkey)]
    check = bound_stake_check(
        repositories, node.node_id, stake.tier, channels, requirements, refuse_taken=False
    )
    if stake.status is StakeStatus.PENDING:
        updated = stake.verified(check, now, stake_policy)
    else:
        updated = stake.reverified(check, now, stake_policy)
    if updated != stake:
        repositories.stakes.save(updated)
    if check.channel is not None:
        repositories.channel_bindings.bind(check.channel.channel_point, node.node_id, now)
    return updated


def reverify_due_stakes(
    repositories: StakeStore,
    lightning: StakeChannels,
    now: int,
    requirements: StakeRequirements | None = None,
    policy: StakePolicy | None = None,
    *,
    skipped: Callable[[Stake, DomainError], None] | None = None,
) -> list[Stake]:
    """Re-verify every stake whose verification is due (SRS-STAKE-02); return the new records.

    ``policy`` sets the period (6 h by default) and the degraded grace (24 h, SRS-STAKE-03).
    With ``skipped``, a stake whose re-check fails on its own (its node record gone, its
    channel bound to another node by a coordinator beside this one meanwhile, an answer about
    its peer that the Lightning adapter refuses) is handed to it and the pass goes on: it stays
    due, first in line, and would otherwise hold back every stake due after it on every pass.
    ``LightningUnavailable`` always ends the pass (the treasury's node is down: no stake can be
    checked), as does any failure when ``skipped`` is None.
    """
    rechecked = []
    for stake in repositories.stakes.due_for_verification(now):
        try:
            rechecked.append(recheck_stake(repositories, lightning, stake, now, requirements,
                                           policy))  # fmt: skip
        except LightningUnavailable:
            raise
        except DomainError as error:
            if skipped is None:
                raise
            skipped(stake, error)
    return rechecked


@attrs.frozen
class StakeTerms:
    """What a node of ``tier`` must lock before it registers (spec 4.12.2, SRS-NODE-11).

    ``treasury_node_uri`` is ``pubkey@host:port`` of the treasury's Lightning node, or just its
    pubkey when it announces no address.
    """

    tier: Tier = attrs.field(validator=fields.instance_of(Tier))
    treasury_node_uri: str = attrs.field(validator=fields.text(min_len=0, max_len=400))
    required_sats: int = attrs.field(validator=fields.money(minimum=1))
    min_confirmations: int = attrs.field(validator=fields.integer(minimum=0))


def stake_terms(
    lightning: Lightning, tier: object, requirements: StakeRequirements | None = None
) -> StakeTerms:
    """The stake terms of ``tier`` (``t1``/``t2``/``t3``) from the treasury's Lightning node.

    Callable before registration, so a new node can print the exact channel to open
    (SRS-NODE-11) instead of learning the minimum from a refusal.
    """
    if isinstance(tier, str):
        try:
            tier = Tier(tier)
        except ValueError:
            raise InvalidValue("tier", "must be t1, t2 or t3") from None
    if not isinstance(tier, Tier):
        raise InvalidValue("tier", "must be t1, t2 or t3")
    table = requirements if requirements is not None else StakeRequirements()
    return StakeTerms(
        tier=tier,
        treasury_node_uri=lightning.node_uri() or lightning.node_pubkey(),
        required_sats=table.for_tier(tier).min_sats,
        min_confirmations=MIN_STAKE_CONFIRMATIONS,
    )


def stake_of(repositories: StakeStore, node_id: str | None, public_key: str | None) -> Stake:
    """The stake record of a node named by id or public key (spec 4.12); NotFound if none."""
    if public_key:
        key = parse_public_key(public_key)
    elif node_id:
        node = repositories.nodes.get(node_id)
        if node is None:
            raise NotFound(f"no node {node_id}")
        key = node.public_key
    else:
        raise InvalidValue("node_id", "give a node_id or a public_key")
    stake = repositories.stakes.get(key)
    if stake is None:
        raise NotFound("no stake is recorded for this node")
    return stake
