"""The coordinator's use cases: registration, heartbeats, task dispatch, proofs, deregistration.

This module owns the rules the coordinator's control plane applies (SRS-COORD-01/02, spec
4.12.2, seed 003), as pure functions over the ports — the repositories
(:mod:`owm_core.ports.repositories`) and Lightning (:mod:`owm_core.ports.lightning`) — with
time (``now``, int POSIX seconds) and randomness (nonce and seed bytes) passed in:

* **Challenge–response** (SRS-SEC-03). :class:`ChallengeBook` issues a random challenge bound
  to one public key and one :class:`ChallengePurpose`, valid for ``ttl_s`` seconds and for one
  use. The node signs :func:`challenge_message` — the challenge plus the request's
  ``details`` (for registration: the manifest digest and Lightning URI), so a signature cannot
  be lifted onto other details. The key never leaves the node.
* **Registration** (:func:`register_node`): answered challenge → rate limit (10 new nodes per
  IP per hour on clearnet, per node key on the onion endpoint; SRS-SEC-04, SRS-NET-07) →
  signed manifest → cooldown (SRS-STAKE-07) → stake over Lightning (spec 4.12.2: pending, and
  active at once when the qualifying channel is confirmed) → node, manifest and stake stored.
* **Heartbeats** (:func:`open_heartbeat`): verify the envelope, refuse replays, check that it
  cites the node's current manifest (SRS-NODE-04). Writes are batched by the caller
  (``NodeRepository.record_heartbeats``).
* **Tasks** (:func:`submit_task`, :func:`plan_dispatch`, :func:`accept_proof`,
  :func:`time_out_overdue`): a submitted task becomes ``k`` replicas (redundant verification)
  or one replica (spot checks), ids ``<task_id>:<i>``; replicas are matched to offers of
  connected nodes (capability, tier, resources, price; never two replicas of one task on one
  node); a proof is stored together with the replica's completion in one atomic write before
  the caller acknowledges it; once every replica is complete the verdict is recorded and the
  replicas settled (:class:`~owm_core.market.tasks.Settlement` events for payments). Overdue
  replicas
  time out and become assignable to another node.
* **Rejections** (:func:`open_rejection`, :func:`reject_task`; SRS-NODE-07): the assigned node
  refuses a replica whose input fails validation with a signed
  :class:`~owm_core.identity.envelopes.TaskRejection` naming the field; the replica becomes
  assignable
  again at once, that node excluded, without waiting for the timeout.
* **Stake terms** (:func:`stake_terms`; SRS-NODE-11): what a node must lock before it
  registers — the treasury's Lightning URI, the tier's minimum and the confirmations needed.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from owm_core import fields
from owm_core.access.ratelimit import SlidingWindowLimiter, Transport, registration_key
from owm_core.errors import (
    Conflict,
    InvalidTransition,
    InvalidValue,
    NoMatch,
    NotFound,
    SignatureInvalid,
)
from owm_core.identity.envelopes import (
    ENVELOPE_DOMAIN,
    INT_MAX,
    CapabilityManifest,
    Envelope,
    EnvelopeKind,
    Heartbeat,
    ReplayGuard,
    TaskProof,
    TaskRejection,
    canonical_bytes,
    from_bytes,
    open_body,
    verify,
)
from owm_core.identity.keys import node_id_from_public_key, parse_public_key, verify_signature
from owm_core.market.tasks import (
    PPM,
    Match,
    NodeOffer,
    Settlement,
    SettlementKind,
    Task,
    TaskRequest,
    TaskState,
    Verdict,
    VerificationMode,
    VerificationPolicy,
    Verified,
    assign,
    complete,
    match,
    record_verdict,
    settle,
    spot_check_selected,
    submit,
    time_out,
    verify_outcome,
)
from owm_core.nodes.registry import Liveness, LnNodeUri, Node, NodeStatus, onion_address
from owm_core.nodes.tiers import StakeRequirements, Tier
from owm_core.payments.lightning import Channel
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import Stake, StakeChannel, StakePolicy, StakeStatus, check_stake

CHALLENGE_DOMAIN = b"owm/challenge/v1\x00"
CHALLENGE_NONCE_BYTES = 32
DEFAULT_CHALLENGE_TTL_S = 120
"""A challenge must be answered within two minutes."""

RELIABILITY_STEP_DIVISOR = 10
"""Each settlement moves reliability a tenth of the way to 1.0 (paid) or 0.0 (forfeited)."""

_TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_REPLICA_SEP = ":"
_CHECK_REPLICA = "check"

MIN_STAKE_CONFIRMATIONS = 1
"""A stake turns active once its channel's funding has one confirmation (spec 4.12.2)."""


# --------------------------------------------------------------------------- challenges


class ChallengePurpose(enum.Enum):
    """What an answered challenge authorises; part of the signed message."""

    REGISTER = "register"
    TASK_STREAM = "task_stream"
    DEREGISTER = "deregister"


def _purpose(value: object) -> object:
    if isinstance(value, str):
        try:
            return ChallengePurpose(value)
        except ValueError:
            raise InvalidValue("purpose", f"unknown purpose {value!r}") from None
    return value


@attrs.frozen
class Challenge:
    """A random challenge the coordinator issued to one key for one purpose (SRS-SEC-03)."""

    public_key: str = attrs.field(validator=fields.hex_digest(32))
    purpose: ChallengePurpose = attrs.field(
        converter=_purpose, validator=fields.instance_of(ChallengePurpose)
    )
    nonce: str = attrs.field(validator=fields.hex_digest(CHALLENGE_NONCE_BYTES))
    issued_at: int = attrs.field(validator=fields.timestamp())
    expires_at: int = attrs.field(validator=fields.timestamp())


def challenge_message(challenge: Challenge, details: Mapping[str, Any]) -> bytes:
    """The bytes a node signs to answer ``challenge`` for a request carrying ``details``.

    ``b"owm/challenge/v1\\x00" + canonical({"details", "expires_at", "issued_at", "nonce",
    "public_key", "purpose"})`` — domain-separated from envelopes, bound to the key, the
    purpose and the request's details.
    """
    return CHALLENGE_DOMAIN + canonical_bytes(
        {
            "details": dict(details),
            "expires_at": challenge.expires_at,
            "issued_at": challenge.issued_at,
            "nonce": challenge.nonce,
            "public_key": challenge.public_key,
            "purpose": challenge.purpose.value,
        },
        "details",
    )


@attrs.define
class ChallengeBook:
    """Outstanding challenges (in memory, one per coordinator process): issue, then redeem once.

    Memory is bounded by ``max_outstanding``; expired challenges are forgotten as time passes.
    A redeemed challenge is gone even when the answer was wrong, so answers cannot be guessed.
    """

    ttl_s: int = attrs.field(default=DEFAULT_CHALLENGE_TTL_S, validator=fields.integer(1, 3600))
    max_outstanding: int = attrs.field(default=100_000, validator=fields.integer(minimum=1))
    _open: OrderedDict[str, Challenge] = attrs.field(init=False, factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._open)

    def issue(
        self, public_key: str, purpose: ChallengePurpose, nonce: bytes, now: int
    ) -> Challenge:
        """A new challenge for ``public_key`` and ``purpose``; ``nonce`` is 32 random bytes."""
        parse_public_key(public_key)
        if not isinstance(nonce, bytes) or len(nonce) != CHALLENGE_NONCE_BYTES:
            raise InvalidValue("nonce", f"must be {CHALLENGE_NONCE_BYTES} random bytes")
        self._forget_expired(now)
        while len(self._open) >= self.max_outstanding:
            self._open.popitem(last=False)
        challenge = Challenge(public_key, purpose, nonce.hex(), now, now + self.ttl_s)
        self._open[challenge.nonce] = challenge
        return challenge

    def redeem(
        self,
        public_key: str,
        purpose: ChallengePurpose,
        nonce: str,
        signature: str,
        details: Mapping[str, Any],
        now: int,
    ) -> Challenge:
        """Check the answer to a challenge and use it up; SignatureInvalid if anything is off."""
        parse_public_key(public_key)
        self._forget_expired(now)
        challenge = self._open.pop(nonce, None) if isinstance(nonce, str) else None
        if challenge is None:
            raise SignatureInvalid("unknown or expired challenge; ask for a new one")
        if challenge.public_key != public_key or challenge.purpose is not purpose:
            raise SignatureInvalid("challenge was issued for another key or purpose")
        if now > challenge.expires_at:
            raise SignatureInvalid("challenge expired; ask for a new one")
        try:
            raw = bytes.fromhex(signature)
        except (TypeError, ValueError):
            raise SignatureInvalid("signature must be 128 hex characters") from None
        verify_signature(public_key, challenge_message(challenge, details), raw)
        return challenge

    def _forget_expired(self, now: int) -> None:
        while self._open:
            first = next(iter(self._open.values()))
            if first.expires_at >= now:
                break
            self._open.popitem(last=False)


# --------------------------------------------------------------------------- registration


@attrs.frozen
class Registration:
    """What a node sends to register (besides the answered challenge)."""

    public_key: str = attrs.field(validator=fields.hex_digest(32))
    manifest_envelope: bytes = attrs.field(validator=fields.instance_of(bytes))
    ln_node_uri: str = attrs.field(validator=fields.text(max_len=400))
    onion_address: str | None = attrs.field(default=None)


def registration_details(
    manifest: CapabilityManifest, ln_node_uri: str, onion: str | None
) -> dict[str, Any]:
    """The details a registering node signs with its challenge (:func:`register_node` checks)."""
    return {
        "ln_node_uri": ln_node_uri,
        "manifest_digest": manifest.digest(),
        "onion_address": onion,
    }


@attrs.frozen
class Registered:
    """The outcome of a registration: the node record and its stake."""

    node: Node
    stake: Stake


def stake_channel_of(channel: Channel) -> StakeChannel:
    """The stake view of a channel the Lightning port lists (SRS-STAKE-01).

    LND's ListChannels lists only channels whose funding is confirmed and reports no
    confirmation count (``None``): such a channel counts as confirmed once.
    """
    confirmations = 1 if channel.confirmations is None else channel.confirmations
    return StakeChannel(
        channel_id=channel.channel_id,
        channel_point=channel.channel_point,
        peer_pubkey=channel.peer_pubkey,
        capacity_sat=channel.capacity_sat,
        local_balance_sat=channel.local_balance_sat,
        remote_balance_sat=channel.remote_balance_sat,
        confirmations=confirmations,
        active=channel.active,
    )


def verify_wire(raw: bytes, envelope: Envelope) -> None:
    """Verify ``envelope``, parsed from ``raw``, without re-encoding it when ``raw`` is canonical.

    Why: re-encoding costs as much as a third of an Ed25519 verification, and the coordinator
    checks every heartbeat (SRS-PERF-04). With keys sorted, a canonical envelope ends in
    ``,"signature":"<sig>","signer":"<key>"}``; cutting the signature member out leaves exactly
    the canonical unsigned fields that :func:`owm_core.identity.envelopes.verify` signs over. If
    ``raw``
    has another shape, or that check fails, the full :func:`~owm_core.identity.envelopes.verify`
    decides,
    so the answer is always the same as ``verify(envelope)``'s.
    """
    tail = b'","signer":"' + envelope.signer.encode("ascii") + b'"}'
    suffix = b',"signature":"' + envelope.signature.encode("ascii") + tail
    if raw.endswith(suffix):
        message = (
            ENVELOPE_DOMAIN
            + envelope.kind.value.encode("ascii")
            + b"\x00"
            + raw[: -len(suffix)]
            + b',"signer":"'
            + envelope.signer.encode("ascii")
            + b'"}'
        )
        try:
            verify_signature(envelope.signer, message, bytes.fromhex(envelope.signature))
        except SignatureInvalid:
            pass
        else:
            return
    verify(envelope)


def open_envelope(raw: bytes, kind: EnvelopeKind, field: str) -> Envelope:
    """Parse and verify a signed envelope of ``kind`` (InvalidValue naming ``field``, or
    SignatureInvalid)."""
    if not isinstance(raw, bytes) or not raw:
        raise InvalidValue(field, "is missing")
    envelope = from_bytes(raw)
    if envelope.kind is not kind:
        raise InvalidValue(field, f"must be a {kind.value} envelope, got {envelope.kind.value}")
    verify_wire(raw, envelope)
    return envelope


class HeartbeatFields(NamedTuple):
    """What the coordinator needs of one verified heartbeat envelope (SRS-PERF-04)."""

    node_id: str
    signer: str
    nonce: str
    issued_at: int
    seq: int
    manifest_digest: str


_CANONICAL_HEARTBEAT_RE = re.compile(
    rb'\{"body":\{"manifest_digest":"([0-9a-f]{64})","node_id":"(n[0-9a-f]{40})",'
    rb'"seq":(0|[1-9][0-9]{0,18})\},"issued_at":(0|[1-9][0-9]{0,18}),"kind":"heartbeat",'
    rb'"nonce":"([0-9a-f]{32})"(,"signature":"([0-9a-f]{128})","signer":"([0-9a-f]{64})"\})'
)
_HEARTBEAT_PREFIX = ENVELOPE_DOMAIN + EnvelopeKind.HEARTBEAT.value.encode("ascii") + b"\x00"


@functools.lru_cache(maxsize=65_536)
def _signer_node_id(public_key_hex: str) -> str:
    # Heartbeats come from the same few thousand keys again and again (SRS-PERF-04).
    return node_id_from_public_key(public_key_hex)


def _canonical_heartbeat(raw: bytes) -> HeartbeatFields | None:
    """The fields of ``raw`` if it is a canonical, validly signed heartbeat; else ``None``.

    Why: the full path (JSON, attrs validators, re-encoding) costs about as much Python time as
    the Ed25519 verification itself. One anchored regular expression admits only the exact
    canonical bytes of a heartbeat whose every field already has the shape the validators
    demand (lower-case hex, ``n`` + 40 hex, canonical integers), so whenever this returns fields
    the full path accepts the same envelope with the same fields; anything else returns
    ``None`` and the full path decides (and names the error).
    """
    if type(raw) is not bytes:
        return None
    found = _CANONICAL_HEARTBEAT_RE.fullmatch(raw)
    if found is None:
        return None
    digest, node_id, seq, issued_at, nonce, _, signature, signer = found.groups()
    seq_value, issued_value = int(seq), int(issued_at)
    if seq_value > INT_MAX or issued_value > INT_MAX:
        return None
    signer_hex = signer.decode("ascii")
    node = node_id.decode("ascii")
    if _signer_node_id(signer_hex) != node:
        return None
    message = _HEARTBEAT_PREFIX + raw[: found.start(6)] + b',"signer":"' + signer + b'"}'
    try:
        verify_signature(signer_hex, message, bytes.fromhex(signature.decode("ascii")))
    except SignatureInvalid:
        return None
    return HeartbeatFields(
        node, signer_hex, nonce.decode("ascii"), issued_value, seq_value, digest.decode("ascii")
    )


def verify_heartbeat(raw: bytes) -> HeartbeatFields:
    """Parse and verify one heartbeat envelope, signature and body (SRS-NODE-04, SRS-PERF-04).

    The same verdict, fields and errors as :func:`open_envelope` + :func:`open_body` (and the
    body naming its signer's node id), at a fraction of the cost for canonical envelopes. It
    does not consult a replay guard: call :meth:`ReplayGuard.accept_parts` with the result
    (signature first, so that forged envelopes cannot burn nonces).
    """
    fast = _canonical_heartbeat(raw)
    if fast is not None:
        return fast
    envelope = open_envelope(raw, EnvelopeKind.HEARTBEAT, "heartbeat_envelope")
    body = open_body(envelope)
    assert isinstance(body, Heartbeat)
    return HeartbeatFields(
        body.node_id,
        envelope.signer,
        envelope.nonce,
        envelope.issued_at,
        body.seq,
        body.manifest_digest,
    )


def register_node(
    repositories: Repositories,
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
    """
    public_key = parse_public_key(registration.public_key)
    manifest_env = open_envelope(
        registration.manifest_envelope, EnvelopeKind.CAPABILITY_MANIFEST, "manifest_envelope"
    )
    if manifest_env.signer != public_key:
        raise SignatureInvalid("manifest is signed by another key")
    manifest = open_body(manifest_env)
    assert isinstance(manifest, CapabilityManifest)
    uri = LnNodeUri.parse(registration.ln_node_uri)
    onion = None if not registration.onion_address else onion_address(registration.onion_address)
    challenges.redeem(
        public_key,
        ChallengePurpose.REGISTER,
        challenge_nonce,
        signature,
        registration_details(manifest, registration.ln_node_uri, registration.onion_address),
        now,
    )
    limiter.enforce(registration_key(transport, client_ip, public_key), now)
    stake_policy = policy if policy is not None else StakePolicy()
    previous = repositories.stakes.get(public_key)
    reconnect = previous is not None and previous.live
    if previous is not None and not reconnect:
        previous.ensure_may_register(now)
    if reconnect and previous is not None and previous.tier is not manifest.tier:
        raise InvalidTransition(
            f"public key is registered at tier {previous.tier.value}; deregister before "
            f"registering at tier {manifest.tier.value}"
        )
    channels = [stake_channel_of(c) for c in lightning.channels_with(uri.pubkey)]
    check = check_stake(manifest.tier, channels, requirements)
    if previous is not None and reconnect:
        if previous.status is StakeStatus.PENDING:
            stake = previous.verified(check, now, stake_policy)
        else:
            stake = previous.reverified(check, now, stake_policy)
    else:
        stake = Stake.register(public_key, check, now, previous, stake_policy)
        stake = stake.verified(check, now, stake_policy)
    node_id = node_id_from_public_key(public_key)
    existing = repositories.nodes.get(node_id)
    node = Node(
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
    with repositories.atomic():
        if existing is None:
            repositories.nodes.add(node)
        else:
            repositories.nodes.save(node)
        repositories.manifests.put(manifest_env)
        repositories.stakes.save(stake)
    return Registered(node, stake)


def recheck_stake(
    repositories: Repositories,
    lightning: Lightning,
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
    stake_policy = policy if policy is not None else StakePolicy()
    if stake.status not in {StakeStatus.PENDING, StakeStatus.ACTIVE, StakeStatus.DEGRADED}:
        return stake
    node = repositories.nodes.get(node_id_from_public_key(stake.public_key))
    if node is None:
        raise NotFound("no node is registered with this stake's public key")
    channels = [stake_channel_of(c) for c in lightning.channels_with(node.ln_node_uri.pubkey)]
    check = check_stake(stake.tier, channels, requirements)
    if stake.status is StakeStatus.PENDING:
        updated = stake.verified(check, now, stake_policy)
    else:
        updated = stake.reverified(check, now, stake_policy)
    if updated != stake:
        repositories.stakes.save(updated)
    return updated


def reverify_due_stakes(
    repositories: Repositories,
    lightning: Lightning,
    now: int,
    requirements: StakeRequirements | None = None,
    policy: StakePolicy | None = None,
) -> list[Stake]:
    """Re-verify every stake whose verification is due (SRS-STAKE-02); return the new records.

    ``policy`` sets the period (6 h by default) and the degraded grace (24 h, SRS-STAKE-03).
    """
    return [
        recheck_stake(repositories, lightning, stake, now, requirements, policy)
        for stake in repositories.stakes.due_for_verification(now)
    ]


def deregister_node(repositories: Repositories, public_key: str, now: int) -> Stake:
    """Leave cooperatively (SRS-STAKE-08): stake deregistered (no cooldown), manifest dropped."""
    stake = repositories.stakes.get(parse_public_key(public_key))
    node = repositories.nodes.get(node_id_from_public_key(public_key))
    if stake is None or node is None:
        raise NotFound("no node is registered with this public key")
    left = stake.cooperatively_closed(now)
    with repositories.atomic():
        repositories.stakes.save(left)
        repositories.manifests.remove(node.node_id)
    return left


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


def stake_of(repositories: Repositories, node_id: str | None, public_key: str | None) -> Stake:
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


def node_status(node: Node, stake: Stake | None, now: int, liveness: Liveness) -> NodeStatus:
    """Public status (spec §5.1): suspended with the stake; a node that left is offline."""
    if stake is not None and stake.status in {StakeStatus.SUSPENDED, StakeStatus.SLASHED}:
        return NodeStatus.SUSPENDED
    if stake is not None and stake.status is StakeStatus.DEREGISTERED:
        return NodeStatus.OFFLINE
    return node.status(now, liveness)


# --------------------------------------------------------------------------- heartbeats


def open_heartbeat(raw: bytes, guard: ReplayGuard, now: int) -> tuple[Envelope, Heartbeat]:
    """Verify one heartbeat envelope and refuse replays (SRS-NODE-04, SRS-PERF-04).

    Signature first, so that forged envelopes cannot burn nonces in the replay guard.
    """
    envelope = open_envelope(raw, EnvelopeKind.HEARTBEAT, "heartbeat_envelope")
    body = open_body(envelope)
    assert isinstance(body, Heartbeat)
    guard.accept(envelope, now)
    return envelope, body


# --------------------------------------------------------------------------- tasks


def parse_task_id(value: object) -> str:
    """A submitted task id: 1–120 of ``[A-Za-z0-9._-]``, first alphanumeric (no ``:``)."""
    if not isinstance(value, str) or not _TASK_ID_RE.fullmatch(value):
        raise InvalidValue("task_id", "must be 1-120 characters of [A-Za-z0-9._-], no ':'")
    return value


def replica_id(task_id: str, index: int | str) -> str:
    """The id of one replica of a task: ``<task_id>:<index>`` (or ``:check`` for a spot check)."""
    return f"{task_id}{_REPLICA_SEP}{index}"


def task_id_of(replica: str) -> str:
    """The submitted task a replica id belongs to."""
    task_id, sep, _ = replica.rpartition(_REPLICA_SEP)
    if not sep:
        raise InvalidValue("task_id", "is not a replica id (<task_id>:<index>)")
    return task_id


def replica_ids(task_id: str, policy: VerificationPolicy) -> list[str]:
    """The replicas a submitted task starts with: ``redundancy`` of them, or one (spot checks)."""
    count = policy.redundancy if policy.mode is VerificationMode.REDUNDANT else 1
    return [replica_id(task_id, i) for i in range(count)]


def submit_task(
    repositories: Repositories, request: TaskRequest, policy: VerificationPolicy
) -> list[Task]:
    """Store the replicas of a submitted task durably (all or none) before it is acknowledged."""
    parse_task_id(request.task_id)
    replicas = [
        submit(attrs.evolve(request, task_id=rid)) for rid in replica_ids(request.task_id, policy)
    ]
    with repositories.atomic():
        for replica in replicas:
            if repositories.tasks.get(replica.task_id) is not None:
                raise Conflict(f"task {request.task_id} was already submitted")
            repositories.tasks.add(replica)
    return replicas


def siblings(repositories: Repositories, task_id: str) -> list[Task]:
    """Every stored replica of a submitted task (including a spot-check replica), by id."""
    found: list[Task] = []
    index = 0
    while (task := repositories.tasks.get(replica_id(task_id, index))) is not None:
        found.append(task)
        index += 1
    check = repositories.tasks.get(replica_id(task_id, _CHECK_REPLICA))
    if check is not None:
        found.append(check)
    return found


def offer_of(
    node: Node, manifest: CapabilityManifest, capabilities: Iterable[str], ask_msat: int
) -> NodeOffer:
    """A connected node's standing offer: its manifest, its served task types and its ask."""
    return NodeOffer(
        node_id=node.node_id,
        capabilities=frozenset(capabilities),
        tier=manifest.tier,
        has_gpu=manifest.gpu_count > 0,
        vram_mb=manifest.vram_mb if manifest.gpu_count > 0 else 0,
        ram_mb=manifest.ram_mb,
        ask_msat=ask_msat,
        reliability_ppm=node.reliability_ppm,
    )


@attrs.frozen
class Assignment:
    """A replica handed to a node: what to push down the node's task stream."""

    task: Task
    node_id: str


def plan_dispatch(
    repositories: Repositories,
    waiting: Sequence[Task],
    offers: Sequence[NodeOffer],
    now: int,
    timeout_s: int,
) -> list[Assignment]:
    """Assign waiting replicas (submitted or timed out) to the best offers and store them.

    A node never holds two replicas of one task, nor one it timed out on; a replica nobody can
    take stays waiting. Every assignment is stored (expected state checked) before it is returned.
    """
    assignments: list[Assignment] = []
    busy: dict[str, set[str]] = {}
    for task in waiting:
        if task.state not in {TaskState.SUBMITTED, TaskState.TIMED_OUT}:
            continue
        try:
            ranked = match(task.request, offers, exclude=task.tried_node_ids)
        except NoMatch:
            continue  # cheap to find out before looking up the task's other replicas
        group = task_id_of(task.task_id)
        if group not in busy:
            busy[group] = {t.node_id for t in siblings(repositories, group) if t.node_id}
        free = [m for m in ranked if m.node_id not in busy[group]]
        if not free:
            continue
        chosen: Match = free[0]
        assigned = assign(task, chosen, now, timeout_s)
        repositories.tasks.save(assigned, expected_state=task.state)
        busy[group].add(chosen.node_id)
        assignments.append(Assignment(assigned, chosen.node_id))
    return assignments


def time_out_overdue(repositories: Repositories, now: int, limit: int = 100) -> list[Task]:
    """Move every overdue assignment to timed-out, so it can go to another node (data flow 3)."""
    timed_out = []
    for task in repositories.tasks.overdue(now, limit):
        late = time_out(task, now)
        repositories.tasks.save(late, expected_state=TaskState.ASSIGNED)
        timed_out.append(late)
    return timed_out


@attrs.frozen
class Rejection:
    """A node's recorded refusal of a replica (SRS-NODE-07): who, which field, why, when."""

    replica_id: str
    node_id: str
    field: str
    reason: str
    rejected_at: int


@attrs.frozen
class RejectionOutcome:
    """A stored rejection: the replica, assignable again without the node, and the record."""

    task: Task
    rejection: Rejection


def open_rejection(
    raw: bytes, guard: ReplayGuard, now: int
) -> tuple[Envelope, TaskRejection]:
    """Verify one task-rejection envelope and refuse replays (signature first, then nonce)."""
    envelope = open_envelope(raw, EnvelopeKind.TASK_REJECTION, "rejection_envelope")
    body = open_body(envelope)
    assert isinstance(body, TaskRejection)
    guard.accept(envelope, now)
    return envelope, body


def reject_task(
    repositories: Repositories, envelope: Envelope, rejection: TaskRejection, now: int
) -> RejectionOutcome:
    """Release a replica its assigned node refused (SRS-NODE-07); InvalidTransition otherwise.

    Only the node the replica is assigned to may reject it. The replica goes back to the
    assignable timed-out state at once (the market has no separate "rejected" state), the
    rejecting node added to ``tried_node_ids`` exactly as a node that timed out, so the next
    dispatch hands it to another node without waiting for the assignment timeout.
    """
    node_id = envelope.signer_node_id
    task = repositories.tasks.get(rejection.task_id)
    if task is None:
        raise NotFound(f"no task {rejection.task_id}")
    if task.state is not TaskState.ASSIGNED or task.node_id != node_id:
        raise InvalidTransition(
            f"task {rejection.task_id} is not assigned to node {node_id}; only the node it is "
            "assigned to may reject it"
        )
    released = attrs.evolve(
        task,
        state=TaskState.TIMED_OUT,
        tried_node_ids=(*task.tried_node_ids, node_id),
        node_id=None,
        price_msat=None,
    )
    repositories.tasks.save(released, expected_state=TaskState.ASSIGNED)
    record = Rejection(task.task_id, node_id, rejection.field, rejection.reason, now)
    return RejectionOutcome(released, record)


@attrs.frozen
class ProofOutcome:
    """What a stored proof led to: the replica's new state, and settlements if verification ran."""

    task: Task
    settlements: tuple[Settlement, ...] = ()
    verdict: Verdict | None = None


def accept_proof(
    repositories: Repositories,
    raw: bytes,
    now: int,
    policy: VerificationPolicy,
    seed: bytes,
    output: bytes = b"",
) -> ProofOutcome:
    """Verify a signed task proof, store it with the replica's completion, then verify/settle.

    The proof and the completion are one atomic write, committed before this returns (so before
    the node is acknowledged). The same proof sent again (a retry) returns the current state.
    ``output``, when the node delivers it, is the task's canonical output: it must hash to the
    proof's ``output_hash`` (else InvalidValue(``output``) and nothing is stored) and is kept
    with the proof for the task's submitter (the query path reads verified outputs).
    Once every replica is complete: redundant → majority of ``k`` hashes; spot check → the
    replica is verified at once unless :func:`spot_check_selected` draws it, in which case a
    ``:check`` replica is created for another node and the verdict waits for it.
    """
    envelope = open_envelope(raw, EnvelopeKind.TASK_PROOF, "proof_envelope")
    proof = open_body(envelope)
    assert isinstance(proof, TaskProof)
    node_id = envelope.signer_node_id
    if output and hashlib.sha256(output).hexdigest() != proof.output_hash:
        raise InvalidValue("output", "does not hash to the proof's output_hash")
    task = repositories.tasks.get(proof.task_id)
    if task is None:
        raise NotFound(f"no task {proof.task_id}")
    stored = repositories.proofs.get(proof.task_id, node_id)
    if stored is not None:
        if stored.signature == envelope.signature:
            return ProofOutcome(task)
        raise Conflict(f"node already sent a different proof for {proof.task_id}")
    if task.state is not TaskState.ASSIGNED or task.node_id != node_id:
        raise InvalidTransition(f"task {proof.task_id} is not assigned to this node")
    done = complete(task, proof.output_hash, now)
    with repositories.atomic():
        repositories.proofs.add(envelope)
        if output:
            repositories.task_outputs.put(proof.task_id, output)
        repositories.tasks.save(done, expected_state=TaskState.ASSIGNED)
        return _verify_if_complete(repositories, done, now, policy, seed)


def _verify_if_complete(
    repositories: Repositories, done: Task, now: int, policy: VerificationPolicy, seed: bytes
) -> ProofOutcome:
    group = task_id_of(done.task_id)
    replicas = siblings(repositories, group)
    if any(r.state is not TaskState.COMPLETED for r in replicas):
        return ProofOutcome(done)
    if policy.mode is VerificationMode.REDUNDANT:
        results = {r.node_id: r.output_hash for r in replicas if r.node_id and r.output_hash}
        verdict = verify_outcome(policy, group, results, seed=seed)
        judged = [(r, record_verdict(r, verdict)) for r in replicas]
    else:
        main = next(r for r in replicas if not r.task_id.endswith(_REPLICA_SEP + _CHECK_REPLICA))
        check = next((r for r in replicas if r is not main), None)
        assert main.node_id and main.output_hash
        if check is None and spot_check_selected(policy, group, seed):
            checker = attrs.evolve(
                submit(attrs.evolve(main.request, task_id=replica_id(group, _CHECK_REPLICA))),
                tried_node_ids=(main.node_id,),
            )
            repositories.tasks.add(checker)
            return ProofOutcome(done)
        reference = check.output_hash if check is not None else None
        verdict = verify_outcome(
            policy,
            group,
            {main.node_id: main.output_hash},
            seed=seed,
            reference_output_hash=reference,
        )
        judged = [(main, record_verdict(main, verdict))]
        if check is not None:
            # The checker is the trusted re-execution: it is paid for the work it did.
            trusted = Verified(check.output_hash or "", [check.node_id or ""])
            judged.append((check, record_verdict(check, trusted)))
    settlements: list[Settlement] = []
    current = done
    for before, after in judged:
        final, settlement = settle(after)
        repositories.tasks.save(final, expected_state=before.state)
        settlements.append(settlement)
        _credit(repositories, settlement)
        if final.task_id == done.task_id:
            current = final
    return ProofOutcome(current, tuple(settlements), verdict)


def reliability_after(reliability_ppm: int, settlement: Settlement) -> int:
    """Move reliability a tenth of the way to 1.0 (paid) or 0.0 (forfeited), in ppm.

    Bounded in [0, 1 000 000]; a node that keeps delivering approaches 1.0, one that keeps
    failing approaches 0 (SRS-SEC-11 sets it to 0 outright on a slash).
    """
    target = 0 if settlement.kind is SettlementKind.FORFEIT else PPM
    return reliability_ppm + (target - reliability_ppm) // RELIABILITY_STEP_DIVISOR


def _credit(repositories: Repositories, settlement: Settlement) -> None:
    node = repositories.nodes.get(settlement.node_id)
    if node is None:
        return
    paid = settlement.kind is SettlementKind.SETTLE
    repositories.nodes.save(
        attrs.evolve(
            node,
            reliability_ppm=reliability_after(node.reliability_ppm, settlement),
            total_tasks_completed=node.total_tasks_completed + (1 if paid else 0),
            total_sats_earned=node.total_sats_earned + settlement.amount_msat // 1000,
        )
    )


def task_outcome(replicas: Sequence[Task]) -> str:
    """``verified`` / ``failed`` once settled, else ``pending`` (for submitters)."""
    if replicas and all(r.state in {TaskState.SETTLED, TaskState.FORFEITED} for r in replicas):
        return "verified" if any(r.state is TaskState.SETTLED for r in replicas) else "failed"
    return "pending"


def verified_output(repositories: Repositories, task_id: str) -> bytes | None:
    """The output a settled replica of ``task_id`` delivered with its proof, or None.

    Only settled replicas count: their output hash won verification, so any of them is the
    task's verified output (they are byte-identical, being canonical and equally hashed).
    """
    for replica in siblings(repositories, task_id):
        if replica.state is TaskState.SETTLED:
            data = repositories.task_outputs.get(replica.task_id)
            if data is not None:
                return data
    return None


__all__ = [
    "Assignment",
    "Challenge",
    "ChallengeBook",
    "ChallengePurpose",
    "HeartbeatFields",
    "ProofOutcome",
    "Registered",
    "Registration",
    "Rejection",
    "RejectionOutcome",
    "StakeTerms",
    "accept_proof",
    "challenge_message",
    "deregister_node",
    "node_status",
    "offer_of",
    "open_envelope",
    "open_heartbeat",
    "open_rejection",
    "plan_dispatch",
    "recheck_stake",
    "register_node",
    "registration_details",
    "reject_task",
    "replica_id",
    "replica_ids",
    "reverify_due_stakes",
    "siblings",
    "stake_channel_of",
    "stake_of",
    "stake_terms",
    "submit_task",
    "task_id_of",
    "task_outcome",
    "time_out_overdue",
    "verified_output",
    "verify_heartbeat",
]
