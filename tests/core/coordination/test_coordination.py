"""The coordinator's use cases (owm_core.coordination) against in-memory repositories."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.storage.memory import memory_repositories
from owm_core.access.ratelimit import SlidingWindowLimiter, Transport, registration_limit
from owm_core.coordination.challenges import ChallengeBook, ChallengePurpose, challenge_message
from owm_core.coordination.endings import end_stalled
from owm_core.coordination.registration import (
    Registered,
    Registration,
    deregister_node,
    ln_control_message,
    register_node,
    registration_details,
)
from owm_core.coordination.rejections import admit_rejection, open_rejection, reject_task
from owm_core.coordination.reveals import RevealWindows, commit_result, reveal_result
from owm_core.coordination.stakes import (
    recheck_stake,
    reverify_due_stakes,
    stake_channel_of,
    stake_terms,
)
from owm_core.coordination.tasks import (
    ProofOutcome,
    offer_of,
    plan_dispatch,
    reliability_after,
    submit_task,
    task_id_of,
    task_outcome,
    verified_output,
)
from owm_core.coordination.wire import verify_wire
from owm_core.errors import (
    Conflict,
    InvalidTransition,
    InvalidValue,
    LightningUnavailable,
    RateLimited,
    ReplayRejected,
    SignatureInvalid,
)
from owm_core.identity import envelopes
from owm_core.identity.envelopes import (
    CapabilityManifest,
    EnvelopeKind,
    ReplayGuard,
    TaskProof,
    TaskRejection,
)
from owm_core.identity.keys import Identity
from owm_core.market.tasks import (
    Settlement,
    SettlementKind,
    Task,
    TaskRequest,
    TaskState,
    VerificationMode,
    VerificationPolicy,
)
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import StakeRequirements, Tier
from owm_core.payments.lightning import Channel
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import StakeStatus
from tests.reveals import COORDINATOR_KEY_HEX, commitment_envelope, proof_envelope, salt_of

NOW = 1_800_000_000
LN_PUBKEY = "02" + "11" * 32


def identity() -> Identity:
    return Identity.from_seed(os.urandom(32))


MANIFEST = CapabilityManifest(
    tier=Tier.T1, vram_mb=0, ram_mb=16_000, bandwidth_mbps=100, gpu_vendor="none", gpu_count=0
)


def ln_pubkey_of(who: Identity) -> str:
    """Each test operator's own Lightning node (one stake channel backs one node)."""
    return "02" + hashlib.sha256(who.public_key_hex.encode()).hexdigest()


def ln_sign(ln_pubkey: str, message: str) -> str:
    """What the fake Lightning nodes accept as ``ln_pubkey``'s signature of ``message``."""
    return hashlib.sha256(f"{ln_pubkey} {message}".encode()).hexdigest()


class FakeLightning:
    """The treasury's Lightning node as the stake check sees it: channels by peer."""

    def __init__(self, capacity_sat: int = 100_000, confirmations: int | None = 3) -> None:
        self.capacity_sat = capacity_sat
        self.confirmations = confirmations

    def verify_message(self, message: str, signature: str, pubkey: str) -> bool:
        return signature == ln_sign(pubkey, message)

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        return [
            Channel(
                channel_id="100x1x0",
                channel_point=hashlib.sha256(peer_pubkey.encode()).hexdigest() + ":0",
                peer_pubkey=peer_pubkey,
                capacity_sat=self.capacity_sat,
                local_balance_sat=0,
                remote_balance_sat=self.capacity_sat,  # the node funded it: its own balance
                active=True,
                confirmations=self.confirmations,
            )
        ]


def sign_registration(
    book: ChallengeBook,
    who: Identity,
    now: int = NOW,
    claimed: CapabilityManifest = MANIFEST,
    ln_pubkey: str | None = None,
    ln_host: str = "127.0.0.1",
    onion: str | None = None,
) -> tuple[Registration, str, str]:
    challenge = book.issue(who.public_key_hex, ChallengePurpose.REGISTER, os.urandom(32), now)
    ln_pubkey = ln_pubkey or ln_pubkey_of(who)
    uri = f"{ln_pubkey}@{ln_host}:9735"
    details = registration_details(claimed.digest(), uri, onion)
    signature = who.sign(challenge_message(challenge, details))
    manifest = envelopes.seal(who, EnvelopeKind.CAPABILITY_MANIFEST, claimed, os.urandom(16), now,
                              audience=COORDINATOR_KEY_HEX)
    ln_signature = ln_sign(
        ln_pubkey, ln_control_message(who.public_key_hex, challenge.nonce, uri)
    )
    registration = Registration(
        who.public_key_hex, envelopes.to_bytes(manifest), uri, onion, ln_signature=ln_signature
    )
    return registration, challenge.nonce, signature.hex()


def register_signed(
    repos: Repositories,
    lightning: FakeLightning,
    book: ChallengeBook,
    registration: Registration,
    nonce: str,
    signature: str,
    transport: Transport = Transport.CLEARNET,
    client_ip: str = "203.0.113.7",
) -> Registered:
    """Register what :func:`sign_registration` signed, under a fresh rate limiter."""
    return register_node(
        repos,
        lightning,
        SlidingWindowLimiter(registration_limit(transport)),
        book,
        registration,
        challenge_nonce=nonce,
        signature=signature,
        transport=transport,
        client_ip=client_ip,
        now=NOW, audience=COORDINATOR_KEY_HEX,
    )


# --------------------------------------------------------------------------- challenges


def test_an_answered_challenge_is_accepted_exactly_once() -> None:
    book, who = ChallengeBook(), identity()
    challenge = book.issue(who.public_key_hex, ChallengePurpose.DEREGISTER, os.urandom(32), NOW)
    answer = who.sign(challenge_message(challenge, {})).hex()

    book.redeem(who.public_key_hex, ChallengePurpose.DEREGISTER, challenge.nonce, answer, {}, NOW)

    with pytest.raises(SignatureInvalid):
        book.redeem(
            who.public_key_hex, ChallengePurpose.DEREGISTER, challenge.nonce, answer, {}, NOW
        )


def test_an_expired_challenge_is_refused() -> None:
    book, who = ChallengeBook(ttl_s=60), identity()
    challenge = book.issue(who.public_key_hex, ChallengePurpose.REGISTER, os.urandom(32), NOW)
    answer = who.sign(challenge_message(challenge, {})).hex()

    with pytest.raises(SignatureInvalid, match="expired"):
        book.redeem(
            who.public_key_hex, ChallengePurpose.REGISTER, challenge.nonce, answer, {}, NOW + 61
        )


def test_an_answer_for_one_purpose_cannot_be_used_for_another() -> None:
    book, who = ChallengeBook(), identity()
    challenge = book.issue(who.public_key_hex, ChallengePurpose.REGISTER, os.urandom(32), NOW)
    answer = who.sign(challenge_message(challenge, {})).hex()

    with pytest.raises(SignatureInvalid):
        book.redeem(
            who.public_key_hex, ChallengePurpose.DEREGISTER, challenge.nonce, answer, {}, NOW
        )


@settings(max_examples=30, deadline=None)
@given(signed=st.integers(0, 10**9), sent=st.integers(0, 10**9))
def test_a_signature_only_covers_the_details_it_was_made_for(signed: int, sent: int) -> None:
    book, who = ChallengeBook(), identity()
    challenge = book.issue(who.public_key_hex, ChallengePurpose.TASK_STREAM, os.urandom(32), NOW)
    answer = who.sign(challenge_message(challenge, {"ask_msat": signed})).hex()

    def redeem() -> None:
        book.redeem(
            who.public_key_hex,
            ChallengePurpose.TASK_STREAM,
            challenge.nonce,
            answer,
            {"ask_msat": sent},
            NOW,
        )

    if signed == sent:
        redeem()
    else:
        with pytest.raises(SignatureInvalid):
            redeem()


def test_outstanding_challenges_are_bounded() -> None:
    book = ChallengeBook(max_outstanding=5)
    who = identity()
    for _ in range(20):
        book.issue(who.public_key_hex, ChallengePurpose.REGISTER, os.urandom(32), NOW)
    assert len(book) == 5


# --------------------------------------------------------------------------- registration


def test_a_node_with_a_confirmed_channel_is_registered_active() -> None:
    """Registration puts the node in the coordinator's registry (SRS-COORD-01) with the tier of
    its signed manifest, and keeps that manifest, which heartbeats then cite by digest."""
    repos, book, who = memory_repositories(), ChallengeBook(), identity()
    registration, nonce, signature = sign_registration(book, who)

    registered = register_signed(repos, FakeLightning(), book, registration, nonce, signature)

    assert registered.stake.status.value == "active"
    assert repos.nodes.get(who.node_id) == registered.node
    assert registered.node.tier is Tier.T1
    assert repos.manifests.get_by_digest(who.node_id, MANIFEST.digest()) is not None


def test_an_unconfirmed_channel_leaves_the_node_pending() -> None:
    repos, book, who = memory_repositories(), ChallengeBook(), identity()
    registration, nonce, signature = sign_registration(book, who)

    registered = register_signed(
        repos, FakeLightning(confirmations=0), book, registration, nonce, signature
    )

    assert registered.stake.status.value == "pending"


def test_an_onion_address_and_an_onion_lightning_uri_are_registered_and_stored_as_given() -> None:
    """A node may register a v3 .onion control-plane address beside its Lightning URI, and the
    coordinator stores it (SRS-NET-03); the Lightning URI may itself be a .onion, which the
    coordinator keeps as it is for the Lightning node to dial (SRS-NET-06)."""
    repos, book, who = memory_repositories(), ChallengeBook(), identity()
    ln_onion, control_onion = "b" * 56 + ".onion", "c" * 56 + ".onion"
    registration, nonce, signature = sign_registration(
        book, who, ln_host=ln_onion, onion=control_onion
    )

    register_signed(
        repos, FakeLightning(), book, registration, nonce, signature, Transport.ONION, "127.0.0.1"
    )

    stored = repos.nodes.get(who.node_id)
    assert stored is not None and stored.onion_address == control_onion
    assert stored.ln_node_uri.is_onion and str(stored.ln_node_uri) == registration.ln_node_uri


def test_on_the_onion_endpoint_registrations_are_limited_per_node_key_not_per_ip() -> None:
    repos, book = memory_repositories(), ChallengeBook()
    limiter = SlidingWindowLimiter(registration_limit(Transport.ONION))
    for _ in range(11):  # all arrive from the local Tor daemon, 127.0.0.1 (SRS-NET-07)
        registration, nonce, signature = sign_registration(book, identity())
        register_node(
            repos,
            FakeLightning(),
            limiter,
            book,
            registration,
            challenge_nonce=nonce,
            signature=signature,
            transport=Transport.ONION,
            client_ip="127.0.0.1",
            now=NOW, audience=COORDINATOR_KEY_HEX,
        )
    assert len(repos.nodes.list()) == 11


def test_the_clearnet_limit_counts_ten_registrations_per_ip_per_hour() -> None:
    repos, book = memory_repositories(), ChallengeBook()
    limiter = SlidingWindowLimiter(registration_limit(Transport.CLEARNET))

    def register(now: int) -> None:
        registration, nonce, signature = sign_registration(book, identity(), now)
        register_node(
            repos,
            FakeLightning(),
            limiter,
            book,
            registration,
            challenge_nonce=nonce,
            signature=signature,
            transport=Transport.CLEARNET,
            client_ip="198.51.100.1",
            now=now, audience=COORDINATOR_KEY_HEX,
        )

    for i in range(10):
        register(NOW + i)
    with pytest.raises(RateLimited):
        register(NOW + 10)
    register(NOW + 3600)


def test_lnd_channels_without_a_confirmation_count_are_confirmed() -> None:
    channel = FakeLightning(confirmations=None).channels_with(LN_PUBKEY)[0]
    assert stake_channel_of(channel).confirmed


# Heartbeats: tests/core/coordination/test_heartbeats.py


# --------------------------------------------------------------------------- tasks


def request(task_id: str = "job", max_price_msat: int = 10_000) -> TaskRequest:
    return TaskRequest(
        task_id=task_id,
        task_type="inference",
        input_schema_id="owm.inference.text",
        input_schema_version=1,
        min_tier=Tier.T1,
        min_vram_mb=0,
        min_ram_mb=0,
        gpu_required=False,
        max_price_msat=max_price_msat,
    )


def node_record(who: Identity) -> Node:
    return Node(
        node_id=who.node_id,
        public_key=who.public_key_hex,
        ln_node_uri=LnNodeUri.parse(f"{LN_PUBKEY}@127.0.0.1:9735"),
        tier=Tier.T1,
        vram_mb=0,
        ram_mb=16_000,
        bandwidth_mbps=100,
        registered_at=NOW,
        last_heartbeat=NOW,
    )


@settings(max_examples=25, deadline=None)
@given(nodes=st.integers(1, 6), redundancy=st.integers(1, 5))
def test_no_node_ever_holds_two_replicas_of_one_task(nodes: int, redundancy: int) -> None:
    repos = memory_repositories()
    policy = VerificationPolicy(redundancy=redundancy)
    replicas = submit_task(repos, request(), policy)
    ids = [identity() for _ in range(nodes)]
    offers = [
        offer_of(node_record(i), MANIFEST, ["inference"], 1_000 + n) for n, i in enumerate(ids)
    ]

    assignments = plan_dispatch(repos, replicas, offers, NOW, 60)

    holders = [a.node_id for a in assignments]
    assert len(holders) == len(set(holders)) == min(nodes, redundancy)
    waiting = repos.tasks.with_state(TaskState.SUBMITTED, 100)
    assert len(waiting) == redundancy - len(holders)


def stalled(repos: Repositories, now: int) -> list[Task]:
    """The replicas the market's tick hands :func:`end_stalled` (one page holds them all)."""
    return [task for _, task in repos.tasks.expired_after(now)]


def test_a_task_nobody_took_by_its_expiry_expires_and_one_a_node_started_drops_what_waits(
) -> None:
    repos = memory_repositories()
    policy = VerificationPolicy(redundancy=2)
    submit_task(repos, request("idle"), policy, expires_at=NOW + 60)
    started = submit_task(repos, request("started"), policy, expires_at=NOW + 60)
    offer = offer_of(node_record(identity()), MANIFEST, ["inference"], 1_000)
    plan_dispatch(repos, started[:1], [offer], NOW, 600)

    assert stalled(repos, NOW + 60) == []  # expiry is strictly after
    late = NOW + 61
    ended = {e.task_id: e for e in end_stalled(repos, stalled(repos, late), late, policy, b"seed")}

    assert [t.task_id for t in ended["idle"].expired] == ["idle:0", "idle:1"]
    idle = [repos.tasks.get(f"idle:{i}") for i in range(2)]
    assert all(t is not None and t.state is TaskState.EXPIRED for t in idle)
    assert task_outcome([t for t in idle if t is not None]) == "expired"
    # The node holding started:0 still runs it; the replica no node took in time is dropped
    # (never held: nobody is paid or penalised for it), so the task is judged without it.
    assert [t.task_id for t in ended["started"].dropped] == ["started:1"]
    waiting = repos.tasks.get("started:1")
    assert waiting is not None and waiting.state is TaskState.FORFEITED
    running = repos.tasks.get("started:0")
    assert running is not None and running.state is TaskState.ASSIGNED


def prove(
    repos: Any, deliveries: list[tuple[Identity, str, bytes]], policy: VerificationPolicy
) -> list[ProofOutcome]:
    """Every node commits to its output, then every node reveals it (commit–reveal)."""
    windows = RevealWindows()
    for who, task_id, output in deliveries:
        commit_result(repos, commitment_envelope(who, task_id, output, NOW), NOW, policy, windows,
                      audience=COORDINATOR_KEY_HEX)
    return [
        reveal_result(
            repos, proof_envelope(who, task_id, output, NOW), salt_of(who.node_id, task_id),
            output, NOW, policy, b"s", windows, audience=COORDINATOR_KEY_HEX,
        )
        for who, task_id, output in deliveries
    ]


def test_a_spot_checked_task_waits_for_the_check_and_a_differing_result_forfeits() -> None:
    repos = memory_repositories()
    policy = VerificationPolicy(mode=VerificationMode.SPOT_CHECK, spot_check_rate_ppm=1_000_000)
    worker, checker = identity(), identity()
    for who in (worker, checker):
        repos.nodes.add(node_record(who))
    (replica,) = submit_task(repos, request(), policy)
    offers = [offer_of(node_record(worker), MANIFEST, ["inference"], 1_000)]
    plan_dispatch(repos, [replica], offers, NOW, 60)

    (first,) = prove(repos, [(worker, replica.task_id, b"lie")], policy)

    assert first.settlements == () and first.task.state is TaskState.COMPLETED
    (check,) = repos.tasks.with_state(TaskState.SUBMITTED, 10)
    assert task_id_of(check.task_id) == "job" and check.tried_node_ids == (worker.node_id,)
    offers.append(offer_of(node_record(checker), MANIFEST, ["inference"], 1_000))
    (assignment,) = plan_dispatch(repos, [check], offers, NOW, 60)
    assert assignment.node_id == checker.node_id

    (final,) = prove(repos, [(checker, check.task_id, b"truth")], policy)

    kinds = {s.node_id: s.kind for s in final.settlements}
    assert kinds == {worker.node_id: SettlementKind.FORFEIT, checker.node_id: SettlementKind.SETTLE}
    worker_after = repos.nodes.get(worker.node_id)
    assert worker_after is not None and worker_after.reliability_ppm < 500_000


@given(start=st.integers(0, 1_000_000), paid=st.booleans())
def test_reliability_moves_toward_the_outcome_and_stays_in_range(start: int, paid: bool) -> None:
    kind = SettlementKind.SETTLE if paid else SettlementKind.FORFEIT
    settlement = Settlement("job:0", "n1", kind, 1_000 if paid else 0)

    after = reliability_after(start, settlement)

    assert 0 <= after <= 1_000_000
    assert after >= start if paid else after <= start


# --------------------------------------------------------------------------- wire verification


@settings(max_examples=40, deadline=None)
@given(
    attestation=st.dictionaries(
        st.text(max_size=8), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20))
    ),
    tamper=st.booleans(),
    spaced=st.booleans(),
)
def test_fast_wire_verification_agrees_with_full_verification(
    attestation: dict[str, object], tamper: bool, spaced: bool
) -> None:
    who = identity()
    proof = TaskProof(
        task_id="job:0", output_hash="ab" * 32, execution_ms=1, attestation=attestation
    )
    sealed = envelopes.seal(who, EnvelopeKind.TASK_PROOF, proof, os.urandom(16), NOW,
                            audience=COORDINATOR_KEY_HEX)
    if tamper:
        sealed = attrs.evolve(sealed, body={**sealed.body, "execution_ms": 2})
    raw = envelopes.to_bytes(sealed)
    if spaced:  # valid JSON, not canonical: the fast path must not decide alone
        raw = raw.replace(b'","signer":"', b'", "signer":"')
    parsed = envelopes.from_bytes(raw)

    try:
        envelopes.verify(parsed, audience=COORDINATOR_KEY_HEX)
        expected = True
    except SignatureInvalid:
        expected = False
    try:
        verify_wire(raw, parsed, audience=COORDINATOR_KEY_HEX)
        fast = True
    except SignatureInvalid:
        fast = False

    assert fast == expected == (not tamper)


# --------------------------------------------------------------------------- stake re-checks


def register_with(
    lightning: FakeLightning,
    repos: Any = None,
    who: Identity | None = None,
    now: int = NOW,
    claimed: CapabilityManifest = MANIFEST,
) -> tuple[Any, Identity]:
    repos = memory_repositories() if repos is None else repos
    who = identity() if who is None else who
    book = ChallengeBook()
    registration, nonce, signature = sign_registration(book, who, now, claimed)
    register_node(
        repos,
        lightning,
        SlidingWindowLimiter(registration_limit(Transport.CLEARNET)),
        book,
        registration,
        challenge_nonce=nonce,
        signature=signature,
        transport=Transport.CLEARNET,
        client_ip="203.0.113.9",
        now=now, audience=COORDINATOR_KEY_HEX,
    )
    return repos, who


def test_a_restarted_node_reconnects_keeping_its_stake_reliability_and_earnings() -> None:
    lightning = FakeLightning()
    repos, who = register_with(lightning)
    before = repos.stakes.get(who.public_key_hex)
    node = repos.nodes.get(who.node_id)
    repos.nodes.save(attrs.evolve(node, reliability_ppm=900_000, total_sats_earned=1_234))

    register_with(lightning, repos, who, now=NOW + 3_600)

    after = repos.stakes.get(who.public_key_hex)
    assert before.status is after.status is StakeStatus.ACTIVE
    assert after.channel == before.channel and after.next_verification_at > NOW + 3_600
    again = repos.nodes.get(who.node_id)
    assert (again.reliability_ppm, again.total_sats_earned) == (900_000, 1_234)
    assert again.registered_at == NOW and again.last_heartbeat == NOW + 3_600


def test_a_reconnect_without_its_stake_channel_is_degraded_with_the_usual_grace() -> None:
    lightning = FakeLightning()
    repos, who = register_with(lightning)
    lightning.capacity_sat = 10_000  # below the t1 minimum

    register_with(lightning, repos, who, now=NOW + 60)

    degraded = repos.stakes.get(who.public_key_hex)
    assert degraded.status is StakeStatus.DEGRADED
    assert degraded.grace_until == NOW + 60 + 24 * 3600


def test_a_live_key_cannot_change_tier_without_deregistering() -> None:
    lightning = FakeLightning(capacity_sat=10_000_000)
    repos, who = register_with(lightning)
    t2 = attrs.evolve(MANIFEST, tier=Tier.T2, vram_mb=24_000)

    with pytest.raises(InvalidTransition) as refused:
        register_with(lightning, repos, who, now=NOW + 60, claimed=t2)

    assert "deregister" in refused.value.message
    assert repos.stakes.get(who.public_key_hex).tier is Tier.T1


def test_a_pending_stake_turns_active_once_its_channel_confirms() -> None:
    lightning = FakeLightning(confirmations=0)
    repos, who = register_with(lightning)
    pending = repos.stakes.get(who.public_key_hex)
    assert pending is not None and pending.status is StakeStatus.PENDING

    lightning.confirmations = 1
    active = recheck_stake(repos, lightning, pending, NOW + 600)

    assert active.status is StakeStatus.ACTIVE
    assert repos.stakes.get(who.public_key_hex) == active


def test_a_due_stake_whose_channel_shrank_is_degraded_then_suspended() -> None:
    lightning = FakeLightning()
    repos, _ = register_with(lightning)
    lightning.capacity_sat = 10_000  # below the t1 minimum

    (degraded,) = reverify_due_stakes(repos, lightning, NOW + 6 * 3600)
    assert degraded.status is StakeStatus.DEGRADED

    (suspended,) = reverify_due_stakes(repos, lightning, NOW + 6 * 3600 + 24 * 3600)
    assert suspended.status is StakeStatus.SUSPENDED


class PartlyFailingLightning(FakeLightning):
    """Answers for every peer but those in ``refused`` (an answer the adapter refuses), or
    for none while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: set[str] = set()
        self.down = False

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        if self.down:
            raise LightningUnavailable("lnd: unavailable")
        if peer_pubkey in self.refused:
            raise InvalidValue("channels", f"a channel with {peer_pubkey} that does not parse")
        return super().channels_with(peer_pubkey)


@given(failing=st.lists(st.booleans(), min_size=1, max_size=5))
@settings(max_examples=25, deadline=None)
def test_a_stake_that_cannot_be_rechecked_holds_back_no_other_in_its_pass(
    failing: list[bool],
) -> None:
    lightning = PartlyFailingLightning()
    repos, operators = memory_repositories(), [identity() for _ in failing]
    for who in operators:
        register_with(lightning, repos, who)
    lightning.capacity_sat = 10_000  # below the t1 minimum: a stake rechecked is degraded
    failed = [w.public_key_hex for w, fails in zip(operators, failing, strict=True) if fails]
    lightning.refused = {ln_pubkey_of(w) for w in operators if w.public_key_hex in failed}
    skipped: list[str] = []

    rechecked = reverify_due_stakes(repos, lightning, NOW + 6 * 3600,
                                    skipped=lambda stake, _: skipped.append(stake.public_key))
    assert sorted(s.public_key for s in rechecked) == sorted(
        w.public_key_hex for w in operators if w.public_key_hex not in failed
    )
    assert all(s.status is StakeStatus.DEGRADED for s in rechecked)
    assert sorted(skipped) == sorted(failed)
    for key in skipped:  # unchanged, and due again next pass
        stake = repos.stakes.get(key)
        assert stake.status is StakeStatus.ACTIVE and stake.next_verification_at <= NOW + 6 * 3600
    lightning.down = True  # the treasury's node down: the pass ends, nothing is skipped
    with pytest.raises(LightningUnavailable):
        reverify_due_stakes(repos, lightning, NOW + 30 * 3600, skipped=lambda *_: pytest.fail())


# --------------------------------------------------------------------------- rejections


def rejection_bytes(who: Identity, task_id: str, field: str = "input.prompt") -> bytes:
    body = TaskRejection(task_id=task_id, field=field, reason="must be a string")
    return envelopes.to_bytes(
        envelopes.seal(who, EnvelopeKind.TASK_REJECTION, body, os.urandom(16), NOW,
                       audience=COORDINATOR_KEY_HEX)
    )


def test_a_rejected_replica_is_assignable_at_once_to_another_node_only() -> None:
    repos = memory_repositories()
    policy = VerificationPolicy(mode=VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0)
    refuser, other = identity(), identity()
    (replica,) = submit_task(repos, request(), policy)
    offers = [offer_of(node_record(refuser), MANIFEST, ["inference"], 1_000)]
    (assignment,) = plan_dispatch(repos, [replica], offers, NOW, 600)
    assert assignment.node_id == refuser.node_id

    envelope, body = open_rejection(rejection_bytes(refuser, replica.task_id),
                                    audience=COORDINATOR_KEY_HEX)
    admit_rejection(envelope, refuser.public_key_hex, ReplayGuard(), NOW)
    outcome = reject_task(repos, envelope, body, NOW + 1)

    assert outcome.task.state is TaskState.TIMED_OUT and outcome.task.node_id is None
    assert outcome.task.tried_node_ids == (refuser.node_id,)
    assert (outcome.rejection.node_id, outcome.rejection.field) == (refuser.node_id, "input.prompt")
    assert outcome.rejection.rejected_at == NOW + 1
    waiting = repos.tasks.with_state(TaskState.TIMED_OUT, 10)
    assert plan_dispatch(repos, waiting, offers, NOW + 1, 600) == []
    offers.append(offer_of(node_record(other), MANIFEST, ["inference"], 2_000))
    (again,) = plan_dispatch(repos, waiting, offers, NOW + 1, 600)
    assert again.node_id == other.node_id


def test_only_the_node_a_replica_is_assigned_to_may_reject_it() -> None:
    repos = memory_repositories()
    policy = VerificationPolicy(mode=VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0)
    holder, stranger = identity(), identity()
    (replica,) = submit_task(repos, request(), policy)
    offers = [offer_of(node_record(holder), MANIFEST, ["inference"], 1_000)]
    plan_dispatch(repos, [replica], offers, NOW, 600)
    guard = ReplayGuard()

    envelope, body = open_rejection(rejection_bytes(stranger, replica.task_id),
                                    audience=COORDINATOR_KEY_HEX)
    admit_rejection(envelope, stranger.public_key_hex, guard, NOW)  # registered, not assigned
    with pytest.raises(InvalidTransition) as caught:
        reject_task(repos, envelope, body, NOW)

    assert "not assigned to node" in caught.value.message
    stored = repos.tasks.get(replica.task_id)
    assert stored is not None and stored.node_id == holder.node_id
    envelope, _ = open_rejection(rejection_bytes(holder, replica.task_id),
                                 audience=COORDINATOR_KEY_HEX)
    admit_rejection(envelope, holder.public_key_hex, guard, NOW)
    with pytest.raises(ReplayRejected):
        admit_rejection(envelope, holder.public_key_hex, guard, NOW)


def test_a_rejection_from_an_unregistered_key_is_refused_before_its_nonce_is_taken() -> None:
    stranger, registered = identity(), identity()
    guard = ReplayGuard()
    envelope, _ = open_rejection(rejection_bytes(stranger, "job:0"), audience=COORDINATOR_KEY_HEX)

    for key in (None, registered.public_key_hex):
        with pytest.raises(SignatureInvalid) as caught:
            admit_rejection(envelope, key, guard, NOW)
        assert "no registered node" in caught.value.message
    assert len(guard) == 0


def test_a_rejection_must_be_a_signed_task_rejection_envelope() -> None:
    who = identity()
    raw = proof_envelope(who, "job:0", b"x", NOW)
    with pytest.raises(InvalidValue) as caught:
        open_rejection(raw, audience=COORDINATOR_KEY_HEX)
    assert caught.value.field == "rejection_envelope"
    tampered = rejection_bytes(who, "job:0").replace(b"input.prompt", b"input.promPt")
    with pytest.raises(SignatureInvalid):
        open_rejection(tampered, audience=COORDINATOR_KEY_HEX)


class TreasuryLightning:
    def __init__(self, uri: str | None) -> None:
        self.uri = uri

    def node_uri(self) -> str | None:
        return self.uri

    def node_pubkey(self) -> str:
        return LN_PUBKEY


@pytest.mark.parametrize(("tier", "sats"), [("t1", 100), ("t2", 200), ("t3", 300)])
def test_stake_terms_name_the_treasury_and_the_tier_minimum(tier: str, sats: int) -> None:
    table = StakeRequirements(t1_sats=100, t2_sats=200, t3_sats=300)
    terms = stake_terms(TreasuryLightning(f"{LN_PUBKEY}@10.0.0.1:9735"), tier, table)  # type: ignore[arg-type]
    assert (terms.treasury_node_uri, terms.required_sats) == (f"{LN_PUBKEY}@10.0.0.1:9735", sats)
    assert terms.min_confirmations == 1


def test_stake_terms_fall_back_to_the_pubkey_and_refuse_unknown_tiers() -> None:
    lightning = TreasuryLightning(None)
    assert stake_terms(lightning, "t1").treasury_node_uri == LN_PUBKEY  # type: ignore[arg-type]
    with pytest.raises(InvalidValue) as caught:
        stake_terms(lightning, "t9")  # type: ignore[arg-type]
    assert caught.value.field == "tier"


def test_a_delivered_output_must_hash_to_the_proof_and_is_kept_for_the_submitter() -> None:
    repos = memory_repositories()
    policy = VerificationPolicy(mode=VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0)
    worker = identity()
    repos.nodes.add(node_record(worker))
    (replica,) = submit_task(repos, request(), policy)
    plan_dispatch(
        repos, [replica], [offer_of(node_record(worker), MANIFEST, ["inference"], 1)], NOW, 60
    )
    output = b'{"answer":42}'
    windows = RevealWindows()
    commitment = commitment_envelope(worker, replica.task_id, output, NOW)
    commit_result(repos, commitment, NOW, policy, windows, audience=COORDINATOR_KEY_HEX)
    raw = proof_envelope(worker, replica.task_id, output, NOW)
    salt = salt_of(worker.node_id, replica.task_id)

    for wrong in (b'{"answer":41}', b""):
        with pytest.raises(InvalidValue) as refused:
            reveal_result(repos, raw, salt, wrong, NOW, policy, b"s", windows,
                          audience=COORDINATOR_KEY_HEX)
        assert refused.value.field == "output"
    assert repos.proofs.get(replica.task_id, worker.node_id) is None
    assert verified_output(repos, "job") is None

    outcome = reveal_result(repos, raw, salt, output, NOW, policy, b"s", windows,
                            audience=COORDINATOR_KEY_HEX)

    assert outcome.task.state is TaskState.SETTLED
    assert verified_output(repos, "job") == b'{"answer":42}'


def test_an_output_of_a_replica_that_lost_verification_is_never_the_verified_output() -> None:
    repos = memory_repositories()
    policy = VerificationPolicy(mode=VerificationMode.REDUNDANT, redundancy=3)
    nodes = [identity() for _ in range(3)]
    for who in nodes:
        repos.nodes.add(node_record(who))
    replicas = submit_task(repos, request(), policy)
    offers = [offer_of(node_record(who), MANIFEST, ["inference"], 1) for who in nodes]
    plan_dispatch(repos, replicas, offers, NOW, 60)
    by_node = {r.node_id: r for r in repos.tasks.with_state(TaskState.ASSIGNED, 10)}
    outputs = [b'"truth"', b'"lie"', b'"truth"']
    prove(
        repos,
        [(who, by_node[who.node_id].task_id, out) for who, out in zip(nodes, outputs, strict=True)],
        policy,
    )

    assert verified_output(repos, "job") == b'"truth"'
    liar = by_node[nodes[1].node_id].task_id
    assert repos.tasks.get(liar).state is TaskState.FORFEITED


def test_a_channel_freed_by_a_cooperative_exit_can_back_another_node() -> None:
    """One channel, one node (SRS-STAKE-01): refused while bound, free again after leaving."""
    repos, book = memory_repositories(), ChallengeBook()
    limiter = SlidingWindowLimiter(registration_limit(Transport.ONION))
    shared_ln = "03" + "42" * 32  # one operator's Lightning node with one channel

    def register(who: Identity) -> None:
        registration, nonce, signature = sign_registration(book, who, ln_pubkey=shared_ln)
        register_node(
            repos, FakeLightning(), limiter, book, registration, challenge_nonce=nonce,
            signature=signature, transport=Transport.ONION, client_ip=None, now=NOW,
            audience=COORDINATOR_KEY_HEX,
        )  # fmt: skip

    first, second = identity(), identity()
    register(first)
    with pytest.raises(Conflict, match="already backs another node"):
        register(second)
    assert repos.stakes.get(second.public_key_hex) is None

    deregister_node(repos, first.public_key_hex, NOW + 60)
    register(second)
    stake = repos.stakes.get(second.public_key_hex)
    assert stake is not None and stake.status is StakeStatus.ACTIVE
