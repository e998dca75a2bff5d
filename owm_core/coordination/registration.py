"""Registering and deregistering nodes (SRS-COORD-01/02, spec 4.12.2, seed 003).

This module owns the coordinator's registry use cases, pure functions over the ports (the
narrow :class:`~owm_core.ports.stores.RegistryStore` and
:class:`~owm_core.ports.lightning.Lightning`), time (``now``, int POSIX seconds) passed in:

* **Registration** (:func:`register_node`): answered challenge (SRS-SEC-03) → proof of control
  of the Lightning node in ``ln_node_uri`` (its signature over :func:`ln_control_message`,
  checked by the coordinator's own Lightning node; SRS-STAKE-01, SRS-LN-11) → rate limit
  (10 new nodes per IP per hour on clearnet, per node key on the onion endpoint; SRS-SEC-04,
  SRS-NET-07) → signed manifest → cooldown (SRS-STAKE-07) → stake over Lightning (spec
  4.12.2: pending, and active at once when the qualifying channel is confirmed) → node,
  manifest and stake stored.
* **Deregistration** (:func:`deregister_node`; SRS-STAKE-08): leaving cooperatively, without
  cooldown.
* **Public status** (:func:`node_status`; spec §5.1): liveness combined with the stake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from owm_core import fields
from owm_core.access.ratelimit import SlidingWindowLimiter, Transport, registration_key
from owm_core.coordination.challenges import ChallengeBook, ChallengePurpose
from owm_core.coordination.stakes import bound_stake_check, stake_channel_of
from owm_core.coordination.wire import open_envelope
from owm_core.errors import InvalidTransition, InvalidValue, NotFound, SignatureInvalid
from owm_core.identity.envelopes import CapabilityManifest, Envelope, EnvelopeKind, open_body
from owm_core.identity.keys import node_id_from_public_key, parse_public_key
from owm_core.nodes.registry import Liveness, LnNodeUri, Node, NodeStatus, onion_address
from owm_core.nodes.tiers import StakeRequirements, Tier
from owm_core.ports.lightning import Lightning
from owm_core.ports.stores import RegistryStore
from owm_core.stake.census import presence_status
from owm_core.stake.channel import Stake, StakeCheck, StakePolicy, StakeStatus


@attrs.frozen
class Registration:
    """What a node sends to register (besides the answered challenge)."""

    public_key: str = attrs.field(validator=fields.hex_digest(32))
    manifest_envelope: bytes = attrs.field(validator=fields.instance_of(bytes))
    ln_node_uri: str = attrs.field(validator=fields.text(max_len=400))
    onion_address: str | None = attrs.field(default=None)
    ln_signature: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=200))
    """The Lightning node's signature over :func:`ln_control_message` (zbase32)."""


LN_CONTROL_PREFIX = "owm/ln-control/v1"
"""What every proof-of-control message starts with, so it can mean nothing else."""


def ln_control_message(public_key: str, challenge_nonce: str, ln_node_uri: str) -> str:
    """The text a node's Lightning node signs to register (SRS-STAKE-01, SRS-LN-11).

    It names the node's Ed25519 key, the one-use registration challenge and the Lightning
    pubkey, so a signature proves that whoever controls that Lightning node asked for *this*
    registration, and cannot be replayed for another key or another time. Signed with
    ``lncli signmessage`` / ``lightning-cli signmessage`` (the node daemon does it itself).
    """
    pubkey = ln_node_uri.strip().partition("@")[0].lower()
    return f"{LN_CONTROL_PREFIX} register {public_key} {challenge_nonce} {pubkey}"


def check_ln_control(
    lightning: Lightning, registration: Registration, challenge_nonce: str, uri: LnNodeUri
) -> None:
    """Raise unless the Lightning node of ``uri`` signed this registration's challenge.

    Verified by the coordinator's own Lightning node (LND ``VerifyMessage``, CLN
    ``checkmessage``, the embedded ledger): without it anyone could register a stranger's
    Lightning node and borrow its stake channel (SRS-STAKE-01, SRS-LN-11).
    """
    if not registration.ln_signature:
        raise InvalidValue(
            "ln_signature",
            "required: the Lightning node in ln_node_uri must sign the registration challenge "
            "(the node daemon does it with [lightning] backend)",
        )
    message = ln_control_message(registration.public_key, challenge_nonce, uri.pubkey)
    if not lightning.verify_message(message, registration.ln_signature, uri.pubkey):
        raise SignatureInvalid(
            f"ln_signature: not a signature of Lightning node {uri.pubkey} over this "
            "registration's challenge"
        )


def registration_details(
    manifest_digest: str, ln_node_uri: str, onion: str | None
) -> dict[str, Any]:
    """The details a registering node signs with its challenge (:func:`register_node` checks;
    the control-plane clients sign the same)."""
    return {
        "ln_node_uri": ln_node_uri,
        "manifest_digest": manifest_digest,
        "onion_address": onion,
    }


def task_stream_details(capabilities: Sequence[str], ask_msat: int) -> dict[str, Any]:
    """What a node signs with its challenge to open its task stream: its standing offer."""
    return {"ask_msat": ask_msat, "capabilities": sorted(capabilities)}


@attrs.frozen
class Registered:
    """The outcome of a registration: the node record and its stake."""

    node: Node
    stake: Stake


def register_node(
    repositories: RegistryStore,
    lightning: Lightning,
    limiter: SlidingWindowLimiter,
    challenges: ChallengeBook,
    registration: Registration,
    *,
    challenge_nonce: str,
    signature: str,
    transport: Transport,
    client_ip: str | None,
    now: int,
    audience: str,
    requirements: StakeRequirements | None = None,
    policy: StakePolicy | None = None,
) -> Registered:
    """Register (or re-register) a node, spec 4.12.2; raises the domain error that stops it.

    Order matters: the manifest and the challenge answer are checked first (nothing is counted
    for a forged request), then the rate limit (SRS-SEC-04 / SRS-NET-07), then the cooldown of a
    slashed key (SRS-STAKE-07), then the stake channel (InsufficientStake with the minimum).

    A key whose stake is still live (a node daemon restarted after a crash or an upgrade)
    reconnects: having answered the challenge, it keeps its stake record, which is checked
    against its channels again as the periodic re-verification would (a vanished channel
    degrades it with the usual grace, SRS-STAKE-03), and its node record keeps its reliability
    and earnings. Changing tier needs a deregistration first (the stake was sized for the tier).
    The manifest must be signed for this coordinator, whose public key is ``audience``
    (SRS-SEC-03).
    """
    public_key = parse_public_key(registration.public_key)
    manifest_env, manifest = _signed_manifest(registration, public_key, audience)
    uri = LnNodeUri.parse(registration.ln_node_uri)
    onion = None if not registration.onion_address else onion_address(registration.onion_address)
    challenges.redeem(
        public_key,
        ChallengePurpose.REGISTER,
        challenge_nonce,
        signature,
        registration_details(
            manifest.digest(), registration.ln_node_uri, registration.onion_address
        ),
        now,
    )
    check_ln_control(lightning, registration, challenge_nonce, uri)
    limiter.enforce(registration_key(transport, client_ip, public_key), now)
    stake_policy = policy if policy is not None else StakePolicy()
    previous = repositories.stakes.get(public_key)
    reconnect = _may_register(previous, manifest.tier, now)
    node_id = node_id_from_public_key(public_key)
    channels = [stake_channel_of(c) for c in lightning.channels_with(uri.pubkey)]
    check = bound_stake_check(repositories, node_id, manifest.tier, channels, requirements)
    stake = _stake_after(
        previous if reconnect else None, previous, public_key, check, now, stake_policy
    )
    existing = repositories.nodes.get(node_id)
    node = _node_record(node_id, public_key, uri, onion, manifest, existing, now)
    with repositories.atomic():
        if existing is None:
            repositories.nodes.add(node)
        else:
            repositories.nodes.save(node)
        repositories.manifests.put(manifest_env)
        repositories.stakes.save(stake)
        if check.channel is not None:
            repositories.channel_bindings.bind(check.channel.channel_point, node_id, now)
    return Registered(node, stake)


def _signed_manifest(
    registration: Registration, public_key: str, audience: str
) -> tuple[Envelope, CapabilityManifest]:
    """The registration's manifest envelope, verified and signed by the registering key for
    this coordinator (``audience``, its public key)."""
    manifest_env = open_envelope(
        registration.manifest_envelope,
        EnvelopeKind.CAPABILITY_MANIFEST,
        "manifest_envelope",
        audience,
    )
    if manifest_env.signer != public_key:
        raise SignatureInvalid("manifest is signed by another key")
    manifest = open_body(manifest_env)
    assert isinstance(manifest, CapabilityManifest)
    return manifest_env, manifest


def _may_register(previous: Stake | None, tier: Tier, now: int) -> bool:
    """Whether the key reconnects with its live stake; raises if it may not register at all.

    A key whose previous stake is no longer live must be past its cooldown (SRS-STAKE-07); a
    live stake reconnects only at its own tier (it was sized for that tier).
    """
    reconnect = previous is not None and previous.live
    if previous is not None and not reconnect:
        previous.ensure_may_register(now)
    if reconnect and previous is not None and previous.tier is not tier:
        raise InvalidTransition(
            f"public key is registered at tier {previous.tier.value}; deregister before "
            f"registering at tier {tier.value}"
        )
    return reconnect


def _stake_after(
    live: Stake | None,
    previous: Stake | None,
    public_key: str,
    check: StakeCheck,
    now: int,
    policy: StakePolicy,
) -> Stake:
    """The key's stake after this registration's channel ``check`` (spec 4.12.2, SRS-STAKE-03).

    A reconnecting ``live`` stake is checked again as the periodic re-verification would (a
    pending one as at registration); otherwise a new stake record opens after ``previous``.
    """
    if live is not None:
        if live.status is StakeStatus.PENDING:
            return live.verified(check, now, policy)
        return live.reverified(check, now, policy)
    stake = Stake.register(public_key, check, now, previous, policy)
    return stake.verified(check, now, policy)


def _node_record(
    node_id: str,
    public_key: str,
    uri: LnNodeUri,
    onion: str | None,
    manifest: CapabilityManifest,
    existing: Node | None,
    now: int,
) -> Node:
    """The node record a registration stores: a re-registering node keeps its history."""
    return Node(
        node_id=node_id,
        public_key=public_key,
        ln_node_uri=uri,
        tier=manifest.tier,
        vram_mb=manifest.vram_mb,
        ram_mb=manifest.ram_mb,
        bandwidth_mbps=manifest.bandwidth_mbps,
        registered_at=now if existing is None else existing.registered_at,
        last_heartbeat=now if existing is None else max(existing.last_heartbeat, now),
        onion_address=onion,
        reliability_ppm=500_000 if existing is None else existing.reliability_ppm,
        total_tasks_completed=0 if existing is None else existing.total_tasks_completed,
        total_sats_earned=0 if existing is None else existing.total_sats_earned,
        suspended=False,
    )


def deregister_node(repositories: RegistryStore, public_key: str, now: int) -> Stake:
    """Leave cooperatively (SRS-STAKE-08): stake deregistered (no cooldown), manifest dropped."""
    stake = repositories.stakes.get(parse_public_key(public_key))
    node = repositories.nodes.get(node_id_from_public_key(public_key))
    if stake is None or node is None:
        raise NotFound("no node is registered with this public key")
    left = stake.cooperatively_closed(now)
    with repositories.atomic():
        repositories.stakes.save(left)
        repositories.manifests.remove(node.node_id)
        if left.channel is not None and (
            repositories.channel_bindings.node_of(left.channel.channel_point) == node.node_id
        ):
            repositories.channel_bindings.release(left.channel.channel_point)
    return left


def node_status(node: Node, stake: Stake | None, now: int, liveness: Liveness) -> NodeStatus:
    """Public status (spec §5.1): suspended with the stake; a node that left is offline
    (:func:`~owm_core.stake.census.presence_status`)."""
    silent = now - node.last_heartbeat > liveness.offline_after_s
    return presence_status(None if stake is None else stake.status, node.suspended, silent)
