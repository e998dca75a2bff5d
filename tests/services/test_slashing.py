"""The slashing service on a real coordinator, the embedded Lightning ledger and memory store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from unittest.mock import patch

import attrs
import pytest

from owm_adapters.bootstrap.coordinator import (
    LIGHTNING_FILE,
    lightning_from,
    service_config_of,
    slashing_service_from,
)
from owm_adapters.bootstrap.settings import (
    CoordinatorSection,
    CoordinatorSettings,
    load_coordinator_settings,
)
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services import slashing as slashing_module
from owm_adapters.services.coordinator.service import CoordinatorService, ServiceConfig
from owm_adapters.services.slashing import (
    FORFEIT_ERROR,
    SlashingService,
    is_forfeited,
)
from owm_adapters.storage.keystore import create_identity
from owm_adapters.storage.memory import memory_repositories
from owm_core.access.ratelimit import Transport
from owm_core.coordination.challenges import ChallengePurpose, challenge_message
from owm_core.coordination.registration import Registration
from owm_core.errors import ForceCloseNotPermitted, InvalidValue, SignatureInvalid
from owm_core.identity import envelopes
from owm_core.identity.envelopes import (
    AckVerdict,
    CapabilityManifest,
    EnvelopeKind,
    MaintainerAcknowledgement,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.registry import NodeStatus
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import PaymentState, RewardPayment
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import StakeCooldownActive, StakeStatus
from owm_core.stake.slashing import (
    SIGNAL_WINDOW_S,
    SlashingLogEntry,
    SlashingPolicy,
    SlashingReason,
    SlashingSignal,
    verify_log,
)
from tests.fakes.ln_key import LnKey
from tests.server.harness import StepClock, ln_pubkey

STAKE_SAT = {Tier.T1: 100_000, Tier.T2: 1_000_000, Tier.T3: 5_000_000}

SLASHING_COORDINATOR = Identity.from_seed(b"\x3c" * 32)
"""The coordinator the slashing service runs as: acknowledgements are signed for it."""


@attrs.define
class World:
    ledger: SimLedger
    treasury: str
    clock: StepClock
    service: CoordinatorService
    slashing: SlashingService
    coordinator: Identity
    maintainers: list[Identity]
    reporters: dict[str, str] = attrs.Factory(dict)


def by(world: World, name: str) -> str:
    """The node id of reporter ``name``: a registered node with its own stake channel
    (tier-1 signals count only from distinct stake-backed reporters, SRS-STAKE-04)."""
    if name not in world.reporters:
        world.reporters[name] = staked(world).node_id
    return world.reporters[name]


@attrs.define
class Operator:
    identity: Identity
    ln_key: LnKey
    tier: Tier

    @property
    def ln(self) -> str:
        return self.ln_key.pubkey

    @property
    def node_id(self) -> str:
        return self.identity.node_id


def build_world(
    tmp_path: Path,
    repositories: Repositories | None = None,
    maintainers: int = 3,
    configured: int = 2,
) -> World:
    """A coordinator over ``repositories`` (memory by default) with ``maintainers`` keys, the
    first ``configured`` of them in ``[stake] maintainer_keys``."""
    clock = StepClock()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury = ledger.add_node("treasury")
    repositories = repositories if repositories is not None else memory_repositories()
    payments_handle = ledger.lightning("treasury")  # the payment credential: no force close
    service = CoordinatorService(repositories, payments_handle, clock, ServiceConfig())
    keys = [Identity.from_seed(os.urandom(32)) for _ in range(maintainers)]
    coordinator = SLASHING_COORDINATOR
    slashing = SlashingService(
        repositories,
        ledger.lightning("treasury", force_close_allowed=True),
        coordinator,
        clock,
        SlashingPolicy(maintainer_keys=[m.public_key_hex for m in keys[:configured]],
                       coordinator_key=coordinator.public_key_hex),
    )
    return World(ledger, treasury, clock, service, slashing, coordinator, keys)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def register(world: World, op: Operator, uri: str | None = None) -> None:
    manifest = CapabilityManifest(
        tier=op.tier, vram_mb=0, ram_mb=16_000, bandwidth_mbps=100, gpu_vendor="none", gpu_count=0
    )
    now = world.clock.now()
    env = envelopes.to_bytes(
        envelopes.seal(op.identity, EnvelopeKind.CAPABILITY_MANIFEST, manifest, os.urandom(16), now,
                       audience=world.service.signer.public_key_hex)
    )
    uri = uri or f"{op.ln}@127.0.0.1:9735"
    challenge = world.service.challenge(op.identity.public_key_hex, ChallengePurpose.REGISTER.value)
    details = {"ln_node_uri": uri, "manifest_digest": manifest.digest(), "onion_address": None}
    world.service.register(
        Registration(
            op.identity.public_key_hex, env, uri,
            ln_signature=op.ln_key.sign_registration(op.identity.public_key_hex, challenge.nonce),
        ),
        challenge_nonce=challenge.nonce,
        signature=op.identity.sign(challenge_message(challenge, details)).hex(),
        transport=Transport.CLEARNET,
        client_ip="127.0.0.1",
    )


def staked(world: World, tier: Tier = Tier.T1) -> Operator:
    op = Operator(Identity.from_seed(os.urandom(32)), LnKey.fresh(), tier)
    world.ledger.open_channel(world.treasury, op.ln, 2 * STAKE_SAT[tier], push_sat=STAKE_SAT[tier])
    register(world, op)
    return op


SIGNALLED_AT = StepClock().now()
"""Signals are raised at the worlds' clock: older than ``[stake] signal_window_s`` they expire."""


def signal(op: Operator, reporter: str, n: int = 0) -> SlashingSignal:
    evidence = hashlib.sha256(f"{reporter}{n}".encode()).hexdigest()
    return SlashingSignal(
        op.node_id, reporter, SlashingReason.POISONED_UPDATE, evidence, SIGNALLED_AT
    )


def ack(maintainer: Identity, op: Operator, evidence: str) -> bytes:
    body = MaintainerAcknowledgement(op.node_id, evidence, "fake_proof", AckVerdict.SLASH)
    env = envelopes.seal(maintainer, EnvelopeKind.MAINTAINER_ACK, body, os.urandom(16), 1,
                         audience=SLASHING_COORDINATOR.public_key_hex)
    return envelopes.to_bytes(env)


def channel_point(world: World, op: Operator) -> str:
    stake = world.service.repositories.stakes.get(op.identity.public_key_hex)
    assert stake is not None and stake.channel is not None
    return stake.channel.channel_point


def test_three_distinct_reporters_slash_a_tier1_node_log_close_and_cooldown(world: World) -> None:
    """Three independent reporters slash a tier-1 node (SRS-STAKE-04): the channel recorded at its
    registration is force-closed on the treasury's Lightning node (SRS-LN-12, SRS-STAKE-05), the
    slashing is logged and signed, the node suspended and its key cooled down for 30 days."""
    op = staked(world)
    point = channel_point(world, op)
    a = by(world, "detector-a")
    assert world.slashing.report([signal(op, a), signal(op, a, 1)]) == []
    assert world.slashing.report([signal(op, by(world, "detector-b"))]) == []
    [outcome] = world.slashing.report([signal(op, by(world, "validator-c"))])

    entries = world.service.repositories.slashing_log.entries()
    assert [e.node_id for e in entries] == [op.node_id] and outcome.logged
    assert entries[0].channel_id == point
    assert verify_log(entries, world.coordinator.public_key_hex).ok
    assert world.ledger.closed_channel(point) == (outcome.closing_txid, True)
    stake = world.service.repositories.stakes.get(op.identity.public_key_hex)
    assert stake is not None and stake.status is StakeStatus.SLASHED
    node = world.service.repositories.nodes.get(op.node_id)
    assert node is not None and node.reliability_ppm == 0
    assert world.service.status_of(op.node_id) is NodeStatus.SUSPENDED

    world.ledger.open_channel(
        world.treasury, op.ln, 2 * STAKE_SAT[Tier.T1], push_sat=STAKE_SAT[Tier.T1]
    )
    world.clock.advance(29 * 24 * 3600)
    with pytest.raises(StakeCooldownActive):
        register(world, op)
    world.clock.advance(2 * 24 * 3600)
    register(world, op)  # the cooldown is over


def test_the_same_decision_twice_neither_logs_nor_closes_twice(world: World) -> None:
    op = staked(world)
    [outcome] = world.slashing.report([signal(op, by(world, r)) for r in ("a", "b", "c")])
    again = world.slashing.carry_out(outcome.decision)
    assert (again.logged, again.stake_slashed, again.closing_txid) == (False, False, None)
    assert again.entry == outcome.entry
    assert len(world.service.repositories.slashing_log.entries()) == 1
    assert world.slashing.report([signal(op, by(world, r), 9) for r in ("d", "e", "f")]) == []


def test_a_tier2_node_needs_two_maintainer_acknowledgements_not_signals(world: World) -> None:
    op = staked(world, Tier.T2)
    assert world.slashing.report([signal(op, by(world, r)) for r in ("a", "b", "c", "d")]) == []
    evidence = hashlib.sha256(b"fake proof of task 7").hexdigest()
    assert world.slashing.acknowledge(ack(world.maintainers[0], op, evidence)) is None
    assert world.slashing.acknowledge(ack(world.maintainers[0], op, evidence)) is None
    with pytest.raises(SignatureInvalid):
        world.slashing.acknowledge(ack(world.maintainers[2], op, evidence))  # not a maintainer
    outcome = world.slashing.acknowledge(ack(world.maintainers[1], op, evidence))
    assert outcome is not None and outcome.logged
    assert outcome.decision.reason is SlashingReason.FAKE_PROOF
    assert world.ledger.closed_channel(channel_point(world, op)) == (outcome.closing_txid, True)


def test_the_payment_credential_cannot_force_close(world: World) -> None:
    op = staked(world)
    with pytest.raises(ForceCloseNotPermitted):
        world.service.lightning.force_close(channel_point(world, op))
    assert world.ledger.closed_channel(channel_point(world, op)) is None


def test_unpaid_rewards_are_forfeited_and_paid_ones_kept(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = staked(world)
    payments = world.service.repositories.payments
    now = world.clock.now()

    def owed(i: int, amount: int) -> RewardPayment:
        return RewardPayment(
            payment_id=f"p{i}", task_id=f"t{i}", node_id=op.node_id, amount_msat=amount,
            payment_hash=hashlib.sha256(bytes([i])).hexdigest(), created_at=now, updated_at=now,
        )

    payments.upsert(owed(1, 5_000))
    payments.upsert(owed(2, 7_000))
    for i in (3, 4, 5):  # paid later: newer than the unpaid ones, past a scan of two
        paid = attrs.evolve(owed(i, 9_000), state=PaymentState.SUCCEEDED, attempts=1)
        payments.upsert(attrs.evolve(paid, created_at=now + i, updated_at=now + i))
    monkeypatch.setattr(slashing_module, "MAX_FORFEIT_SCAN", 2)
    [outcome] = world.slashing.report([signal(op, by(world, r)) for r in ("a", "b", "c")])
    assert outcome.forfeited_msat == 12_000
    states = {p.payment_id: p for p in payments.for_node(op.node_id)}
    assert is_forfeited(states["p1"]) and is_forfeited(states["p2"])
    assert states["p1"].last_error == FORFEIT_ERROR
    assert states["p3"].state is PaymentState.SUCCEEDED
    assert world.slashing.carry_out(outcome.decision).forfeited_msat == 0


def test_stake_metrics_count_channels_sats_slashings_and_degraded_nodes(world: World) -> None:
    from prometheus_client import generate_latest

    from owm_server.metrics import CoordinatorMetrics

    metrics = CoordinatorMetrics(state_max_age_s=0)
    metrics.bind(world.service)
    ops = [staked(world) for _ in range(3)]
    world.slashing.report([signal(ops[0], by(world, r)) for r in ("a", "b", "c")])
    world.ledger.close_channel(channel_point(world, ops[1]), by=world.treasury, force=False)
    world.clock.advance(6 * 3600)
    world.service.reverify_stakes()  # ops[1] lost its channel: degraded (SRS-STAKE-02)

    def value(name: str) -> float:
        for line in generate_latest(metrics.registry).decode().splitlines():
            if line.startswith(f"owm_stake_{name} "):
                return float(line.split()[1])
        raise AssertionError(name)

    reporting = len(world.reporters)  # the three stake-backed reporters' own channels
    assert value("active_channels") == 1 + reporting
    assert value("degraded_nodes") == 1
    # the degraded stake now locks nothing
    assert value("staked_sat") == (1 + reporting) * STAKE_SAT[Tier.T1]
    assert value("slashing_events_7d") == 1
    world.clock.advance(8 * 24 * 3600)
    assert value("slashing_events_7d") == 0


def test_registration_requires_a_valid_ln_node_uri(world: World) -> None:
    """Registration is refused without a Lightning URI the node can be paid at, pubkey@host:port
    (SRS-LN-02): one without an address or with a bad port never reaches the stake check."""
    op = Operator(Identity.from_seed(os.urandom(32)), LnKey.fresh(), Tier.T1)
    world.ledger.open_channel(
        world.treasury, op.ln, 2 * STAKE_SAT[Tier.T1], push_sat=STAKE_SAT[Tier.T1]
    )
    with pytest.raises(InvalidValue, match="ln_node_uri"):
        register(world, op, uri=f"{op.ln}-no-address")
    with pytest.raises(InvalidValue):
        register(world, op, uri=f"{op.ln}@127.0.0.1:port")


def test_the_configured_reverification_period_and_grace_are_used(
    world: World, tmp_path: Path
) -> None:
    toml = tmp_path / "coordinator.toml"
    toml.write_text("[stake]\nreverify_period_s = 3600\ngrace_period_s = 7200\n")
    config = service_config_of(load_coordinator_settings(toml))
    world.service = CoordinatorService(
        world.service.repositories, world.service.lightning, world.clock, config
    )
    op = staked(world)
    world.ledger.close_channel(channel_point(world, op), by=world.treasury, force=False)
    key = op.identity.public_key_hex

    def status() -> StakeStatus:
        stake = world.service.repositories.stakes.get(key)
        assert stake is not None
        return stake.status

    world.clock.advance(3599)
    world.service.reverify_stakes()
    assert status() is StakeStatus.ACTIVE
    world.clock.advance(1)
    world.service.reverify_stakes()
    assert status() is StakeStatus.DEGRADED  # SRS-STAKE-02
    world.clock.advance(3600)
    world.service.reverify_stakes()
    assert status() is StakeStatus.DEGRADED
    world.clock.advance(3600)
    world.service.reverify_stakes()
    assert status() is StakeStatus.SUSPENDED  # SRS-STAKE-03, no slashing
    assert world.service.repositories.slashing_log.entries() == []


def test_only_the_slashing_handle_built_from_settings_can_force_close(tmp_path: Path) -> None:
    settings = CoordinatorSettings(
        coordinator=CoordinatorSection(
            data_dir=str(tmp_path / "data"), signing_key_path=str(tmp_path / "coordinator.key")
        )
    )
    coordinator = create_identity(tmp_path / "coordinator.key")
    payments_handle = lightning_from(settings)
    ledger = SimLedger(tmp_path / "data" / LIGHTNING_FILE)
    channel = ledger.open_channel(payments_handle.node_pubkey(), ln_pubkey(), 100_000)
    point = channel.channel_point
    with pytest.raises(ForceCloseNotPermitted):
        payments_handle.force_close(point)
    service = slashing_service_from(settings, memory_repositories(), StepClock())
    assert service.coordinator_public_key == coordinator.public_key_hex
    assert service.policy.signal_window_s == SIGNAL_WINDOW_S == 7 * 24 * 3600
    shorter = load_coordinator_settings(None, {"OWM_STAKE__SIGNAL_WINDOW_S": "3600"})
    windowed = slashing_service_from(attrs.evolve(settings, stake=shorter.stake),
                                     memory_repositories(), StepClock())
    assert windowed.policy.signal_window_s == 3600
    txid = service.force_closer.force_close(point)
    assert ledger.closed_channel(point) == (txid, True)


def test_the_public_api_lists_the_appended_entry(world: World) -> None:
    from owm_adapters.services.api import ApiServices

    op = staked(world)
    [outcome] = world.slashing.report([signal(op, by(world, r)) for r in ("a", "b", "c")])
    api = ApiServices.over(world.service, os.urandom(32))
    listed = [e.to_dict() for e in api.views.slashing_log(0, 100)]
    assert listed == [outcome.entry.to_dict()]
    assert verify_log(
        [SlashingLogEntry.from_dict(d) for d in listed], world.slashing.coordinator_public_key
    ).ok


def accusations_a_window_apart_slash_nobody(world: World) -> None:
    """Three stake-backed reporters accusing one node more than ``signal_window_s`` apart (the
    rotating-Sybil frame of docs/simulation.md) slash nobody; within the window they do."""
    victim = staked(world)
    a, b, c = (by(world, name) for name in "abc")
    now = world.clock.now
    assert world.slashing.report([attrs.evolve(signal(victim, a), at=now())]) == []
    assert world.slashing.report([attrs.evolve(signal(victim, b), at=now())]) == []
    world.clock.advance(SIGNAL_WINDOW_S)
    assert world.slashing.report([attrs.evolve(signal(victim, c), at=now())]) == []
    assert world.slashing.resume() == []
    [case] = world.slashing.pending()
    assert [s.reporter for s in case.signals] == [c]  # the expired ones no longer show
    stake = world.service.repositories.stakes.get(victim.identity.public_key_hex)
    assert stake is not None and stake.status is not StakeStatus.SLASHED
    assert world.service.repositories.slashing_log.entries() == []
    [outcome] = world.slashing.report([attrs.evolve(signal(victim, r, 1), at=now())
                                       for r in (a, b)])
    assert outcome.decision.node_id == victim.node_id


def test_accusations_older_than_the_signal_window_do_not_add_up_to_a_slash(
    world: World,
) -> None:
    accusations_a_window_apart_slash_nobody(world)


def test_fl_anomaly_signals_from_three_reporters_slash_a_tier1_node(world: World) -> None:
    op = staked(world)
    evidence = hashlib.sha256(b"signed update statement").hexdigest()
    outcomes = []
    for peer in ("peer-1", "peer-2", "peer-3"):  # the round's participants that agreed
        flagged = SlashingSignal(op.node_id, by(world, peer), "poisoned_update", evidence,
                                 world.clock.now())
        outcomes += world.slashing.report([flagged])
    [outcome] = outcomes
    stakes = world.service.repositories.stakes
    nodes = world.service.repositories.nodes
    channels = []
    for node_id in world.reporters.values():
        node = nodes.get(node_id)
        stake = None if node is None else stakes.get(node.public_key)
        assert stake is not None and stake.channel is not None
        channels.append("channel:" + stake.channel.channel_point)
    assert outcome.decision.supporters == tuple(sorted(channels))


def test_a_signal_about_an_unstaked_node_does_not_stop_the_others(world: World) -> None:
    op = staked(world)
    stranger = Operator(Identity.from_seed(os.urandom(32)), LnKey.fresh(), Tier.T1)
    batch = [signal(stranger, by(world, "a")), *(signal(op, by(world, r)) for r in "abc")]
    [outcome] = world.slashing.report(batch)
    assert outcome.decision.node_id == op.node_id


def test_a_degraded_node_is_suspended_at_its_grace_deadline_whatever_the_period(
    world: World,
) -> None:
    from owm_core.stake.channel import StakePolicy

    policy = StakePolicy(reverify_period_s=6 * 3600, grace_period_s=10 * 3600)
    world.service = CoordinatorService(
        world.service.repositories, world.service.lightning, world.clock,
        ServiceConfig(stake_policy=policy),
    )
    op = staked(world)
    world.ledger.close_channel(channel_point(world, op), by=world.treasury, force=False)
    world.clock.advance(6 * 3600)
    [degraded] = world.service.reverify_stakes()
    assert degraded.status is StakeStatus.DEGRADED
    assert degraded.grace_until == world.clock.now() + 10 * 3600
    world.clock.advance(6 * 3600)
    [still] = world.service.reverify_stakes()
    assert still.status is StakeStatus.DEGRADED
    assert still.next_verification_at == still.grace_until  # not 6 h later, past the deadline
    world.clock.advance(4 * 3600)
    [suspended] = world.service.reverify_stakes()
    assert suspended.status is StakeStatus.SUSPENDED


def test_with_a_shared_store_only_the_coordinator_leading_slashing_decides(world: World) -> None:
    """Several coordinators on one database (SRS-COORD-05): a standby stores the signals it
    hears and decides nothing; the leader's resume decides once, however many heard them."""
    op = staked(world)
    leader = attrs.evolve(world.slashing, shared=True, resume_period_s=3600)
    standby = attrs.evolve(world.slashing, shared=True)
    leader.start()  # what the slashing lead does: its resume loop runs
    try:
        signals = [signal(op, by(world, r)) for r in ("a", "b", "c")]
        assert standby.report(signals) == [] and not standby.decides and leader.decides
        stored = world.service.repositories.slashing_evidence.open_signals(op.node_id)
        assert len(stored) == 3

        leader.resume()  # (or its loop's first pass, if that came after the report)

        entries = world.service.repositories.slashing_log.entries()
        assert [e.node_id for e in entries] == [op.node_id]
    finally:
        leader.stop()


def test_a_case_behind_a_full_page_of_undecided_older_ones_is_decided_by_the_leader(
    world: World,
) -> None:
    """Evidence that never adds up to a slash keeps its case open: however many such cases are
    older, evidence a standby stored (SRS-COORD-05) is decided by the leader's resumes."""
    standby = attrs.evolve(world.slashing, shared=True)
    earlier = SIGNALLED_AT - 10
    for _ in range(3):  # MAX_OPEN_CASES 3: the oldest cases fill a resume's page
        undecided = staked(world)
        assert standby.report([attrs.evolve(signal(undecided, by(world, "a")), at=earlier)]) == []
    op = staked(world)
    assert standby.report([signal(op, by(world, r)) for r in ("a", "b", "c")]) == []
    with patch.object(slashing_module, "MAX_OPEN_CASES", 3):
        for _ in range(3):  # ceil(4 open cases / 3) + 1
            world.slashing.resume()
    entries = world.service.repositories.slashing_log.entries()
    assert [e.node_id for e in entries] == [op.node_id]
