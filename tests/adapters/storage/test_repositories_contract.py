"""The repositories contract: the in-memory twin, SQLite and PostgreSQL behave the same way.

Every test runs three times: against ``owm_adapters.storage.memory`` directly, against the SQL
adapter
on a WAL-mode SQLite file, and against the SQL adapter on a real PostgreSQL server started by
this test run (``tests/conftest.py``). Values go in and must come back equal; the
orderings, conflicts and transaction boundaries of the port (``owm_core.ports.repositories``)
hold everywhere. SQL-only tests at the end check what only a database can do (its own refusal
to edit the slashing log; values never being spliced into SQL text, SRS-SEC-06).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from owm_adapters.storage.memory import memory_repositories
from owm_adapters.storage.sql import open_repositories, upgrade
from owm_adapters.storage.sql.store import SqlRepositories
from owm_core.access.api_keys import ApiKey, Plan, secret_sha256
from owm_core.coordination.registration import node_status
from owm_core.errors import Conflict, InvalidValue
from owm_core.fields import MAX_MONEY
from owm_core.governance.contributions import (
    AnalysisState,
    Bounty,
    BountyStatus,
    advance_analysis,
    open_bounty,
    request_analysis,
)
from owm_core.governance.proposals import (
    Comment,
    Proposal,
    ProposalStatus,
    ProposalType,
    TreasuryConfig,
    acknowledge,
    add_comment,
    close_comments,
    decide,
    execute,
    submit_proposal,
)
from owm_core.identity.envelopes import (
    CapabilityManifest,
    Envelope,
    EnvelopeKind,
    Heartbeat,
    TaskProof,
    seal,
    verify,
)
from owm_core.identity.keys import Identity
from owm_core.market import tasks as market
from owm_core.market.commit_reveal import Commitment, RecordedCommitment
from owm_core.market.tasks import (
    MAX_STORED_TASK_DATA_BYTES,
    Match,
    NodeOffer,
    Task,
    TaskRequest,
    TaskState,
    Verified,
)
from owm_core.nodes.registry import Liveness, LnNodeUri, Node, NodeStatus
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import (
    AttemptOutcome,
    PaymentState,
    PayoutMethod,
    RewardPayment,
    attempt_record,
    fail,
    start_attempt,
    succeed,
)
from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.stats import MiningPayout
from owm_core.ports.repositories import Repositories
from owm_core.provenance.releases import ModelRelease, current_release, current_version
from owm_core.provenance.versions import ModelVersion, ProofStatus
from owm_core.stake.census import census
from owm_core.stake.channel import Stake, StakeChannel, StakeStatus
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogEntry,
    SlashingReason,
    append_to_log,
    verify_log,
)
from owm_core.stake.tally import StakeTally, tally_stakes
from tests.reveals import COORDINATOR_KEY_HEX

pytestmark = pytest.mark.timeout(120)

BACKENDS = ["memory", "sqlite", "postgresql"]
T0 = 1_700_000_000
DAY = 86_400
COORDINATOR = Identity.from_seed(b"\x07" * 32)
HOSTILE = "Robert'); DROP TABLE proposals; -- \" ; DELETE FROM nodes WHERE '1'='1"


@attrs.define
class Backend:
    """One store under test, and a way to open a second, independent handle on it."""

    name: str
    repos: Repositories
    reopen: Callable[[], Repositories]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "coordinator.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@contextmanager
def open_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The store ``name`` for one test: fresh, migrated, closed afterwards."""
    if name == "memory":
        memory = memory_repositories()
        yield Backend("memory", memory, lambda: memory)
        return
    if name == "sqlite":
        path = tmp_path / "coordinator.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("migrated_postgresql_url")
    opened: list[SqlRepositories] = []

    def reopen() -> Repositories:
        repos = open_repositories(url, migrate=False)
        opened.append(repos)
        return repos

    try:
        yield Backend(name, reopen(), reopen)
    finally:
        for repos in opened:
            repos.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with open_backend(request.param, request, tmp_path) as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_repos(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlRepositories]:
    """The SQL adapter only, for what only a database can guarantee."""
    with open_backend(request.param, request, tmp_path) as opened:
        assert isinstance(opened.repos, SqlRepositories)
        yield opened.repos


@pytest.fixture
def repos(backend: Backend) -> Repositories:
    return backend.repos


# --------------------------------------------------------------------------- builders


def identity(i: int) -> Identity:
    return Identity.from_seed(bytes([i % 256]) * 31 + b"\x01")


def a_node(i: int, **changes: Any) -> Node:
    me = identity(i)
    node = Node(
        node_id=me.node_id,
        public_key=me.public_key_hex,
        ln_node_uri=LnNodeUri("02" + f"{i:02x}" * 32, "ln.example.org", 9735),
        tier=Tier.T2,
        vram_mb=24_576,
        ram_mb=65_536,
        bandwidth_mbps=1_000,
        registered_at=T0,
        last_heartbeat=T0 + 60,
    )
    return attrs.evolve(node, **changes)


def a_manifest(
    i: int, issued_at: int = T0, tier: Tier = Tier.T2, vram_mb: int = 24_576
) -> Envelope:
    body = CapabilityManifest(
        tier=tier, vram_mb=vram_mb, ram_mb=65_536, bandwidth_mbps=1_000,
        gpu_vendor="nvidia", gpu_count=1,
    )  # fmt: skip
    nonce = bytes([i % 256, issued_at % 256]) * 8
    return seal(identity(i), EnvelopeKind.CAPABILITY_MANIFEST, body, nonce, issued_at,
                audience=COORDINATOR_KEY_HEX)


def a_request(task_id: str, max_price_msat: int = 50_000) -> TaskRequest:
    return TaskRequest(
        task_id=task_id, task_type="inference", input_schema_id="text/v1",
        input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=1_024,
        gpu_required=False, max_price_msat=max_price_msat,
    )  # fmt: skip


def an_offer(node_id: str, ask_msat: int = 10_000) -> NodeOffer:
    return NodeOffer(
        node_id=node_id, capabilities={"inference"}, tier=Tier.T2, has_gpu=True,
        vram_mb=8_192, ram_mb=16_384, ask_msat=ask_msat, reliability_ppm=900_000,
    )  # fmt: skip


def assigned(task_id: str, node_id: str, now: int = T0, timeout_s: int = 600) -> Task:
    task = market.submit(a_request(task_id))
    return market.assign(task, Match(an_offer(node_id), 30_000), now, timeout_s)


def a_payment(i: int, **changes: Any) -> RewardPayment:
    payment = RewardPayment(
        payment_id=f"pay-{i}", task_id=f"task-{i}", node_id=identity(i).node_id,
        amount_msat=30_000 + i, payment_hash=f"{i:064x}", created_at=T0 + i,
        updated_at=T0 + i,
    )  # fmt: skip
    return attrs.evolve(payment, **changes)


def a_decision(i: int, at: int) -> SlashingDecision:
    return SlashingDecision(
        node_id=identity(i).node_id, channel_id=f"{800_000 + i}x1x0", tier=Tier.T1,
        reason=SlashingReason.FAKE_PROOF, evidence_hash=f"{i + 1:064x}", decided_at=at,
        supporters=("a", "b", "c"),
    )  # fmt: skip


def a_share(i: int, miner: str = "miner-a", credited: Fraction = Fraction(7, 3)) -> AcceptedShare:
    return AcceptedShare(
        miner_id=miner, share_difficulty=1_000 + i, credited_difficulty=credited,
        hash_hex=f"{i:064x}", is_block=i == 3,
    )  # fmt: skip


TREASURY = TreasuryConfig(["02" + f"{i:02x}" * 32 for i in range(5)])


# --------------------------------------------------------------------------- nodes


def test_a_registered_node_reads_back_equal_to_what_was_stored(repos: Repositories) -> None:
    onion = "a" * 56 + ".onion"
    node = a_node(1, onion_address=onion, reliability_ppm=912_345, suspended=True,
                  total_sats_earned=MAX_MONEY, total_tasks_completed=17)  # fmt: skip
    repos.nodes.add(node)
    assert repos.nodes.get(node.node_id) == node
    assert repos.nodes.get("n" + "0" * 40) is None


def test_registering_a_node_id_or_a_public_key_twice_is_a_conflict(repos: Repositories) -> None:
    node = a_node(1)
    repos.nodes.add(node)
    with pytest.raises(Conflict):
        repos.nodes.add(attrs.evolve(node, tier=Tier.T3))
    with pytest.raises(Conflict):
        repos.nodes.add(attrs.evolve(a_node(2), public_key=node.public_key))
    assert repos.nodes.list() == [node]


def test_saving_replaces_a_known_node_and_refuses_an_unknown_one(repos: Repositories) -> None:
    node = a_node(1)
    repos.nodes.add(node)
    repos.nodes.save(attrs.evolve(node, suspended=True, reliability_ppm=0))
    assert repos.nodes.get(node.node_id) == attrs.evolve(node, suspended=True, reliability_ppm=0)
    with pytest.raises(Conflict):
        repos.nodes.save(a_node(2))
    assert repos.nodes.get(a_node(2).node_id) is None


def test_nodes_are_listed_by_id_and_found_by_public_key(repos: Repositories) -> None:
    nodes = [a_node(i) for i in (5, 1, 3)]
    for node in nodes:
        repos.nodes.add(node)
    assert repos.nodes.list() == sorted(nodes, key=lambda n: n.node_id)
    assert repos.nodes.get_by_public_key(nodes[1].public_key) == nodes[1]
    assert repos.nodes.get_by_public_key("f" * 64) is None
    assert repos.nodes.has_ln_pubkey(nodes[1].ln_node_uri.pubkey)
    assert not repos.nodes.has_ln_pubkey("02" + "ee" * 32)


def test_batched_heartbeats_only_move_last_heartbeat_forward(repos: Repositories) -> None:
    one, two = a_node(1), a_node(2)
    repos.nodes.add(one)
    repos.nodes.add(two)
    moved = repos.nodes.record_heartbeats(
        {one.node_id: T0 + 500, two.node_id: T0 + 10, "n" + "9" * 40: T0 + 900}
    )
    assert moved == 1
    assert repos.nodes.get(one.node_id).last_heartbeat == T0 + 500  # type: ignore[union-attr]
    assert repos.nodes.get(two.node_id) == two
    assert repos.nodes.record_heartbeats({}) == 0


# --------------------------------------------------------------------------- manifests


def test_a_manifest_comes_back_as_the_same_signed_envelope(repos: Repositories) -> None:
    envelope = a_manifest(1)
    assert repos.manifests.put(envelope) is True
    stored = repos.manifests.get(identity(1).node_id)
    assert stored == envelope
    assert stored is not None
    verify(stored, audience=COORDINATOR_KEY_HEX)
    digest = CapabilityManifest.from_body(envelope.body).digest()
    assert repos.manifests.get_by_digest(identity(1).node_id, digest) == envelope
    assert repos.manifests.get_by_digest(identity(1).node_id, "0" * 64) is None
    assert repos.manifests.get(identity(2).node_id) is None


def test_an_older_manifest_never_replaces_a_newer_one(repos: Repositories) -> None:
    newer, older = a_manifest(1, issued_at=T0 + 120), a_manifest(1, issued_at=T0 + 60)
    assert repos.manifests.put(newer) is True
    assert repos.manifests.put(older) is False
    assert repos.manifests.get(identity(1).node_id) == newer
    latest = a_manifest(1, issued_at=T0 + 180, tier=Tier.T3)
    assert repos.manifests.put(latest) is True
    assert repos.manifests.get(identity(1).node_id) == latest


def test_manifests_are_found_by_tier_and_memory(repos: Repositories) -> None:
    small = a_manifest(1, tier=Tier.T1, vram_mb=8_192)
    big = a_manifest(2, tier=Tier.T3, vram_mb=81_920)
    mid = a_manifest(3, tier=Tier.T2, vram_mb=24_576)
    for envelope in (small, big, mid):
        repos.manifests.put(envelope)
    by_id = sorted([small, big, mid], key=lambda e: e.signer_node_id)
    assert repos.manifests.matching(Tier.T1, 0, 0) == by_id
    assert repos.manifests.matching(Tier.T2, 0, 0) == [e for e in by_id if e is not small]
    assert repos.manifests.matching(Tier.T1, 30_000, 0) == [big]
    assert repos.manifests.matching(Tier.T1, 0, 70_000) == []


def test_only_manifest_envelopes_are_stored_as_manifests(repos: Repositories) -> None:
    me = identity(1)
    beat = seal(me, EnvelopeKind.HEARTBEAT, Heartbeat(me.node_id, 1, "0" * 64), b"\x01" * 16, T0,
                audience=COORDINATOR_KEY_HEX)
    with pytest.raises(InvalidValue):
        repos.manifests.put(beat)
    assert repos.manifests.get(me.node_id) is None


def test_removing_a_manifest_forgets_it(repos: Repositories) -> None:
    repos.manifests.put(a_manifest(1))
    assert repos.manifests.remove(identity(1).node_id) is True
    assert repos.manifests.remove(identity(1).node_id) is False
    assert repos.manifests.get(identity(1).node_id) is None


# --------------------------------------------------------------------------- stakes


def test_stakes_round_trip_with_their_channel_and_come_due_in_order(repos: Repositories) -> None:
    channel = StakeChannel(
        channel_id="850000x12x1", channel_point="ab" * 32 + ":1", peer_pubkey="03" + "cd" * 32,
        capacity_sat=2_000_000, local_balance_sat=900_000, remote_balance_sat=1_000_000,
        confirmations=6, active=True,
    )  # fmt: skip
    active = Stake(
        public_key=identity(1).public_key_hex, tier=Tier.T2, status=StakeStatus.ACTIVE,
        required_sats=1_000_000, capacity_sat=2_000_000, bonus_bps=10_500, changed_at=T0,
        channel=channel, next_verification_at=T0 + 3_600,
    )  # fmt: skip
    slashed = Stake(
        public_key=identity(2).public_key_hex, tier=Tier.T1, status=StakeStatus.SLASHED,
        required_sats=100_000, capacity_sat=0, bonus_bps=10_000, changed_at=T0,
        cooldown_until=T0 + 30 * DAY, next_verification_at=T0 + 60,
    )  # fmt: skip
    repos.stakes.save(active)
    repos.stakes.save(slashed)
    assert repos.stakes.get(active.public_key) == active
    assert repos.stakes.get(slashed.public_key) == slashed
    assert repos.stakes.due_for_verification(T0 + 3_600) == [slashed, active]
    assert repos.stakes.due_for_verification(T0 + 59) == []
    degraded = attrs.evolve(active, status=StakeStatus.DEGRADED, grace_until=T0 + DAY)
    repos.stakes.save(degraded)
    assert repos.stakes.get(active.public_key) == degraded
    assert repos.stakes.get("e" * 64) is None


def test_nodes_and_stakes_are_read_many_at_once_by_key(
    repos: Repositories, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dispatch reads the nodes and stakes of every open stream together; the keys go to the
    store a few hundred a statement (two here, to cross a chunk), unknown ones are absent."""
    monkeypatch.setattr("owm_adapters.storage.sql.rows.KEYS_AT_ONCE", 2)
    nodes = [a_node(i) for i in range(1, 6)]
    for node in nodes:
        repos.nodes.add(node)
    stake = Stake(
        public_key=identity(2).public_key_hex, tier=Tier.T1, status=StakeStatus.PENDING,
        required_sats=100_000, capacity_sat=0, bonus_bps=10_000, changed_at=T0,
    )  # fmt: skip
    repos.stakes.save(stake)
    wanted = [n.node_id for n in nodes] + ["n-unknown"]
    assert repos.nodes.get_many(wanted) == {n.node_id: n for n in nodes}
    assert repos.nodes.get_many([]) == {}
    keys = [identity(i).public_key_hex for i in (1, 2, 3)]
    assert repos.stakes.get_many(keys) == {stake.public_key: stake}


def test_the_stake_tally_counts_the_registered_nodes_stakes_by_the_core_rule(
    repos: Repositories,
) -> None:
    """SRS-STAKE-09's figures, which the SQL store answers in one query: the active stakes,
    the capacity of active and degraded ones, the degraded ones; stakes of keys with no node
    record (gone, or never registered) and the other states count nothing."""
    channel = StakeChannel(
        channel_id="850000x12x1", channel_point="ab" * 32 + ":1", peer_pubkey="03" + "cd" * 32,
        capacity_sat=2_000_000, local_balance_sat=0, remote_balance_sat=2_000_000,
        confirmations=6, active=True,
    )  # fmt: skip
    kinds = [(StakeStatus.ACTIVE, channel), (StakeStatus.DEGRADED, channel),
             (StakeStatus.DEGRADED, None), (StakeStatus.PENDING, channel),
             (StakeStatus.SUSPENDED, None), (StakeStatus.ACTIVE, channel)]  # fmt: skip
    assert repos.stakes.tally() == StakeTally()
    stakes = []
    for i, (status, held) in enumerate(kinds, start=1):
        stake = Stake(
            public_key=identity(i).public_key_hex, tier=Tier.T2, status=status,
            required_sats=1_000_000, capacity_sat=1_000_000 * i, bonus_bps=10_000,
            changed_at=T0, channel=held,
            grace_until=T0 + DAY if status is StakeStatus.DEGRADED else None,
        )  # fmt: skip
        repos.stakes.save(stake)
        stakes.append(stake)
    for i in range(1, len(kinds)):  # the last key has no node record
        repos.nodes.add(a_node(i))
    tally = repos.stakes.tally()
    assert tally == tally_stakes(stakes[:-1])
    assert tally == StakeTally(active_channels=1, staked_sat=(1 + 2 + 3) * 1_000_000,
                               degraded_nodes=2)  # fmt: skip


def test_the_registry_census_gives_each_node_the_status_the_core_rule_gives_it(
    repos: Repositories,
) -> None:
    """SRS-COORD-01's gauge, counted by the store in one query: for every mix of stake status
    (none included), suspended mark and silence, the same statuses as ``node_status`` node by
    node."""
    channel = StakeChannel(
        channel_id="850000x12x1", channel_point="ab" * 32 + ":1", peer_pubkey="03" + "cd" * 32,
        capacity_sat=2_000_000, local_balance_sat=0, remote_balance_sat=2_000_000,
        confirmations=6, active=True,
    )  # fmt: skip
    extra = {StakeStatus.ACTIVE: {"channel": channel}, StakeStatus.DEGRADED: {"grace_until": T0},
             StakeStatus.SLASHED: {"cooldown_until": T0 + DAY}}  # fmt: skip
    liveness, now = Liveness(), T0 + 1_000
    mixes = itertools.product([None, *StakeStatus], [False, True], [now, T0 + 60])
    for i, (status, suspended, heard_at) in enumerate(mixes, start=1):
        repos.nodes.add(a_node(i, suspended=suspended, last_heartbeat=heard_at))
        if status is not None:
            repos.stakes.save(Stake(
                public_key=identity(i).public_key_hex, tier=Tier.T2, status=status,
                required_sats=1_000_000, capacity_sat=2_000_000, bonus_bps=10_000,
                changed_at=T0, **extra.get(status, {}),
            ))  # fmt: skip
    expected = Counter(
        node_status(n, repos.stakes.get(n.public_key), now, liveness) for n in repos.nodes.list()
    )
    counted = census(repos.nodes.presence(now - liveness.offline_after_s))
    assert counted == {status: expected[status] for status in NodeStatus}
    assert sum(counted.values()) == 2 * 2 * (1 + len(StakeStatus))


# --------------------------------------------------------------------------- tasks


def test_an_added_task_is_durable_as_soon_as_add_returns(backend: Backend) -> None:
    task = market.submit(a_request("task-1"))
    backend.repos.tasks.add(task)
    assert backend.reopen().tasks.get("task-1") == task


def test_adding_a_task_id_twice_is_a_conflict(repos: Repositories) -> None:
    repos.tasks.add(market.submit(a_request("task-1")))
    with pytest.raises(Conflict):
        repos.tasks.add(market.submit(a_request("task-1", max_price_msat=1)))
    assert repos.tasks.get("task-1") == market.submit(a_request("task-1"))


def test_a_task_round_trips_through_its_whole_lifecycle(repos: Repositories) -> None:
    node_a, node_b = identity(1).node_id, identity(2).node_id
    task = market.submit(a_request("task-1"))
    repos.tasks.add(task)
    steps = [market.assign(task, Match(an_offer(node_a), 30_000), T0, 600)]
    steps.append(market.time_out(steps[-1], T0 + 601))
    steps.append(market.assign(steps[-1], Match(an_offer(node_b), 40_000), T0 + 700, 600))
    steps.append(market.complete(steps[-1], "ab" * 32, T0 + 800))
    steps.append(market.record_verdict(steps[-1], Verified("ab" * 32, [node_b])))
    steps.append(market.settle(steps[-1])[0])
    for before, after in itertools.pairwise([task, *steps]):
        repos.tasks.save(after, expected_state=before.state)
        assert repos.tasks.get("task-1") == after
    assert repos.tasks.get("task-1").tried_node_ids == (node_a,)  # type: ignore[union-attr]


def test_a_save_expecting_a_stale_state_is_a_conflict_and_changes_nothing(
    repos: Repositories,
) -> None:
    task = market.submit(a_request("task-1"))
    repos.tasks.add(task)
    first = assigned("task-1", identity(1).node_id)
    repos.tasks.save(first, expected_state=TaskState.SUBMITTED)
    second = assigned("task-1", identity(2).node_id)
    with pytest.raises(Conflict):
        repos.tasks.save(second, expected_state=TaskState.SUBMITTED)
    assert repos.tasks.get("task-1") == first
    with pytest.raises(Conflict):
        repos.tasks.save(market.submit(a_request("task-unknown")))


def test_tasks_are_listed_by_state_in_submission_order_and_overdue_by_deadline(
    repos: Repositories,
) -> None:
    node = identity(1).node_id
    for i in (3, 1, 2):
        repos.tasks.add(market.submit(a_request(f"task-{i}")))
    late = assigned("task-1", node, now=T0, timeout_s=300)
    later = assigned("task-3", node, now=T0, timeout_s=100)
    repos.tasks.save(late)
    repos.tasks.save(later)
    assert [t.task_id for t in repos.tasks.with_state(TaskState.SUBMITTED)] == ["task-2"]
    assert [t.task_id for t in repos.tasks.with_state(TaskState.ASSIGNED)] == ["task-3", "task-1"]
    assert repos.tasks.with_state(TaskState.ASSIGNED, limit=1) == [later]
    assert repos.tasks.assigned_to(node) == [later, late]
    assert repos.tasks.assigned_to(identity(2).node_id) == []
    committed = market.commit(later, T0)
    repos.tasks.save(committed)
    assert repos.tasks.assigned_to(node) == [committed, late]  # held until it reveals
    repos.tasks.save(later)
    assert repos.tasks.overdue(T0 + 100) == []
    assert repos.tasks.overdue(T0 + 301) == [later, late]
    assert repos.tasks.overdue(T0 + 301, limit=1) == [later]
    assert repos.tasks.counts() == {TaskState.SUBMITTED: 1, TaskState.ASSIGNED: 2}


def test_waiting_tasks_are_paged_by_position_past_any_number_of_others(
    repos: Repositories,
) -> None:
    node = identity(1).node_id
    for i in range(5):
        repos.tasks.add(market.submit(a_request(f"task-{i}")))
    repos.tasks.save(assigned("task-1", node))
    late = market.time_out(assigned("task-3", node, now=T0, timeout_s=1), T0 + 2)
    repos.tasks.save(late)
    first = repos.tasks.waiting(limit=2)
    assert [t.task_id for _, t in first] == ["task-0", "task-2"]
    rest = repos.tasks.waiting(after=first[-1][0], limit=2)
    assert [t.task_id for _, t in rest] == ["task-3", "task-4"]
    assert rest[0][1] == late
    assert repos.tasks.waiting(after=rest[-1][0]) == []


def test_tasks_of_a_state_are_paged_by_position_past_any_number_of_others(
    repos: Repositories,
) -> None:
    node = identity(1).node_id
    for i in range(5):
        repos.tasks.add(market.submit(a_request(f"task-{i}")))
    for i in (0, 2, 4):
        repos.tasks.save(assigned(f"task-{i}", node))
    first = repos.tasks.in_state_after(TaskState.ASSIGNED, limit=2)
    assert [t.task_id for _, t in first] == ["task-0", "task-2"]
    rest = repos.tasks.in_state_after(TaskState.ASSIGNED, after=first[-1][0], limit=2)
    assert [t.task_id for _, t in rest] == ["task-4"]
    assert rest[0][1] == assigned("task-4", node)
    assert repos.tasks.in_state_after(TaskState.ASSIGNED, after=rest[-1][0]) == []
    assert [t.task_id for _, t in repos.tasks.in_state_after(TaskState.SUBMITTED)] == [
        "task-1", "task-3",
    ]


def test_waiting_tasks_past_their_expiry_are_paged_earliest_first(repos: Repositories) -> None:
    for i, expires_at in ((0, T0 + 50), (1, T0 + 10), (2, None), (3, T0 + 30), (4, T0 + 50)):
        repos.tasks.add(market.submit(a_request(f"task-{i}"), expires_at))
    repos.tasks.save(assigned("task-3", identity(1).node_id))

    def expired(now: int, after: tuple[int, int] = (0, 0), limit: int = 100) -> list[str]:
        return [t.task_id for _, t in repos.tasks.expired_after(now, after, limit)]

    assert expired(T0 + 10) == []
    assert expired(T0 + 60) == ["task-1", "task-0", "task-4"]
    first = repos.tasks.expired_after(T0 + 60, limit=2)
    assert [t.task_id for _, t in first] == ["task-1", "task-0"]
    (seq, task) = first[-1]
    assert task == repos.tasks.get("task-0")
    assert expired(T0 + 60, (T0 + 50, seq)) == ["task-4"]  # the same expiry, stored later
    assert expired(T0 + 60, (T0 + 10, 0), limit=1) == ["task-1"]
    assert expired(T0 + 60, (T0 + 51, 0)) == []
    gone = market.expire(market.submit(a_request("task-1"), T0 + 10))
    repos.tasks.save(gone, expected_state=TaskState.SUBMITTED)
    assert repos.tasks.get("task-1") == gone
    assert expired(T0 + 60) == ["task-0", "task-4"]


# --------------------------------------------------------------------------- proofs


def a_proof(i: int, task_id: str, output: str = "ab" * 32) -> Envelope:
    body = TaskProof(task_id, output, 1_234, {"runtime": "cpu", "digest": "x"})
    return seal(identity(i), EnvelopeKind.TASK_PROOF, body, bytes([i]) * 16, T0 + i,
                audience=COORDINATOR_KEY_HEX)


def test_task_proofs_are_kept_once_per_node_and_listed_by_node(repos: Repositories) -> None:
    proofs = [a_proof(i, "task-1") for i in (4, 2, 3)]
    for envelope in proofs:
        repos.proofs.add(envelope)
    repos.proofs.add(a_proof(2, "task-2"))
    with pytest.raises(Conflict):
        repos.proofs.add(a_proof(2, "task-1", output="cd" * 32))
    listed = repos.proofs.for_task("task-1")
    assert listed == sorted(proofs, key=lambda e: e.signer_node_id)
    for envelope in listed:
        verify(envelope, audience=COORDINATOR_KEY_HEX)
    assert repos.proofs.get("task-1", identity(2).node_id) == proofs[1]
    assert repos.proofs.get("task-9", identity(2).node_id) is None
    with pytest.raises(InvalidValue):
        repos.proofs.add(a_manifest(1))


# --------------------------------------------------------------------------- payments


def test_upserting_the_same_payment_twice_keeps_one_record(repos: Repositories) -> None:
    payment = a_payment(1, bolt11="lnbcrt300n1...")
    assert repos.payments.upsert(payment) == payment
    assert repos.payments.upsert(payment) == payment
    assert repos.payments.for_task("task-1") == [payment]
    assert repos.payments.get(payment.payment_hash) == payment


def test_an_upsert_moves_a_payment_forward_but_never_back(repos: Repositories) -> None:
    pending = a_payment(1)
    repos.payments.upsert(pending)
    flying = start_attempt(pending, T0 + 10)
    failed = fail(flying, T0 + 20, 'no route: it\'s "temporary"')
    assert repos.payments.upsert(failed) == failed
    assert repos.payments.upsert(pending) == failed  # a retried enqueue is stale
    done = succeed(start_attempt(failed, T0 + 30), T0 + 40)
    assert repos.payments.upsert(done) == done
    assert repos.payments.upsert(failed) == done
    assert repos.payments.upsert(attrs.evolve(done, state=PaymentState.FAILED)) == done
    assert repos.payments.get(pending.payment_hash) == done


def test_another_payment_under_a_known_hash_or_id_is_a_conflict(repos: Repositories) -> None:
    payment = a_payment(1)
    repos.payments.upsert(payment)
    with pytest.raises(Conflict):
        repos.payments.upsert(attrs.evolve(payment, amount_msat=1))
    with pytest.raises(Conflict):
        repos.payments.upsert(attrs.evolve(payment, node_id="n" + "1" * 40))
    with pytest.raises(Conflict):
        repos.payments.upsert(attrs.evolve(a_payment(2), payment_id=payment.payment_id))
    assert repos.payments.get(payment.payment_hash) == payment
    assert repos.payments.get(a_payment(2).payment_hash) is None


def test_a_keysend_payout_is_stored_and_read_back_as_keysend(repos: Repositories) -> None:
    pubkey = "02" + "ab" * 32
    payment = attrs.evolve(a_payment(7), bolt11=None, payee_pubkey=pubkey, memo="OWM bounty",
                           method=PayoutMethod.KEYSEND)
    assert repos.payments.upsert(payment) == payment
    flying = start_attempt(payment, T0 + 10)
    assert repos.payments.upsert(flying) == flying
    assert repos.payments.get(payment.payment_hash) == flying
    assert repos.payments.get(a_payment(1).payment_hash) is None
    repos.payments.upsert(a_payment(1))
    invoice = repos.payments.get(a_payment(1).payment_hash)
    assert invoice is not None and invoice.method is PayoutMethod.INVOICE
    with pytest.raises(Conflict):  # the same payment sent another way is another payment
        repos.payments.upsert(attrs.evolve(flying, method=PayoutMethod.INVOICE))


def test_payments_are_looked_up_by_their_ids_oldest_first_and_an_unknown_id_finds_none(
    repos: Repositories,
) -> None:
    third, first, second = a_payment(3), a_payment(1), a_payment(2)
    for p in (third, first, second, a_payment(4)):
        repos.payments.upsert(p)
    wanted = ["pay-2", "pay-9", "pay-3", "pay-1", "pay-2"]
    assert repos.payments.with_payment_ids(wanted) == [first, second, third]
    assert repos.payments.with_payment_ids(["pay-9"]) == []
    assert repos.payments.with_payment_ids([]) == []
    renewed = attrs.evolve(third, payment_hash="e" * 64, replaced_hashes=(third.payment_hash,))
    repos.payments.replace_invoice(third.payment_hash, renewed)
    assert repos.payments.with_payment_ids(["pay-3"]) == [renewed]
    many = [f"pay-{i}" for i in range(5, 1_005)]  # a page of lookups in one call
    assert repos.payments.with_payment_ids([*many, "pay-4"]) == [a_payment(4)]


def test_payments_in_one_state_are_listed_oldest_first(repos: Repositories) -> None:
    third, first, second = a_payment(3), a_payment(1), a_payment(2)
    for p in (third, first, second):
        repos.payments.upsert(p)
    flying = repos.payments.upsert(start_attempt(second, T0 + 50))
    failed = repos.payments.upsert(fail(start_attempt(third, T0 + 50), T0 + 60, "timeout"))
    assert repos.payments.with_state(PaymentState.PENDING) == [first]
    assert repos.payments.with_state(PaymentState.FAILED) == [failed]
    assert repos.payments.with_state(PaymentState.IN_FLIGHT) == [flying]
    assert repos.payments.with_state(PaymentState.SUCCEEDED) == []


def test_payments_of_some_states_are_paged_by_position_which_a_renewal_keeps(
    repos: Repositories,
) -> None:
    third, first, second, fourth = a_payment(3), a_payment(1), a_payment(2), a_payment(4)
    for p in (third, first, second, fourth):
        repos.payments.upsert(p)
    flying = repos.payments.upsert(start_attempt(first, T0 + 50))
    failed = repos.payments.upsert(fail(start_attempt(second, T0 + 50), T0 + 60, "timeout"))
    owed = (PaymentState.PENDING, PaymentState.FAILED)
    page = repos.payments.in_states_after(owed, limit=2)
    assert [p for _, p in page] == [third, failed]  # in storage order, not by age
    assert [p for _, p in repos.payments.in_states_after(owed, after=page[-1][0])] == [fourth]
    assert repos.payments.in_states_after(owed, after=page[-1][0], limit=0) == []
    assert [p for _, p in repos.payments.in_states_after((PaymentState.IN_FLIGHT,))] == [flying]
    renewed = attrs.evolve(third, payment_hash="e" * 64, replaced_hashes=(third.payment_hash,))
    repos.payments.replace_invoice(third.payment_hash, renewed)
    assert repos.payments.in_states_after(owed, limit=1) == [(page[0][0], renewed)]
    counts = repos.payments.counts()
    assert counts == {PaymentState.PENDING: 2, PaymentState.FAILED: 1,
                      PaymentState.IN_FLIGHT: 1}  # fmt: skip


def test_every_payment_attempt_is_logged_in_order(repos: Repositories) -> None:
    payment = a_payment(1)
    flying = start_attempt(payment, T0 + 1)
    failed = fail(flying, T0 + 2, "no route")
    lines = [
        attempt_record(flying, AttemptOutcome.STARTED, T0 + 1),
        attempt_record(failed, AttemptOutcome.FAILED, T0 + 2),
        attempt_record(succeed(start_attempt(failed, T0 + 3), T0 + 4), AttemptOutcome.SUCCEEDED,
                       T0 + 4),
    ]  # fmt: skip
    for line in lines:
        repos.payments.log_attempt(line)
    repos.payments.log_attempt(attempt_record(a_payment(2), AttemptOutcome.STARTED, T0))
    assert repos.payments.attempts(payment.payment_hash) == lines
    assert lines[1].error == "no route"
    assert repos.payments.attempts("f" * 64) == []


def test_a_renewed_invoice_replaces_the_old_one_in_the_same_record(repos: Repositories) -> None:
    """SRS-LN-04: a payout's invoice that expired unpaid is replaced in one write; the record
    keeps its place and the old hash, and is found under the new hash only."""
    first, second = a_payment(1), a_payment(2)
    asked = dict(payee_pubkey="02" + "ab" * 32, memo="OWM reward task-2", invoice_expires_at=T0)
    old = repos.payments.upsert(fail(start_attempt(attrs.evolve(second, **asked), T0 + 5),
                                     T0 + 6, "invoice expired"))
    repos.payments.upsert(first)
    new = attrs.evolve(old, payment_hash="e" * 64, bolt11="lnbcrt1new", state=PaymentState.PENDING,
                       last_error=None, invoice_expires_at=T0 + 10_000, updated_at=T0 + 9,
                       replaced_hashes=(old.payment_hash,))
    assert repos.payments.replace_invoice(old.payment_hash, new) == new
    assert repos.payments.get("e" * 64) == new
    assert repos.payments.get(old.payment_hash) is None
    assert repos.payments.for_task("task-2") == [new]
    assert repos.payments.with_state(PaymentState.PENDING) == [first, new]  # created_at order
    assert repos.payments.for_node(new.node_id) == [new]
    paid = repos.payments.upsert(succeed(start_attempt(new, T0 + 20), T0 + 21))
    assert paid.replaced_hashes == (old.payment_hash,) and paid.memo == "OWM reward task-2"


def test_a_payout_switched_to_keysend_and_back_to_an_invoice_keeps_every_hash(
    repos: Repositories,
) -> None:
    """SRS-LN-08: a contributor's own expired invoice goes by keysend, and a refused keysend
    back to an invoice, each in one write that changes the method and keeps the old hashes."""
    own = repos.payments.upsert(fail(start_attempt(attrs.evolve(a_payment(1), bolt11="lnbcrt1own",
                                                                invoice_expires_at=T0), T0 + 1),
                                     T0 + 2, "no route"))
    node = "02" + "cd" * 32
    by_keysend = attrs.evolve(own, payment_hash="e" * 64, bolt11=None, invoice_expires_at=None,
                              payee_pubkey=node, method=PayoutMethod.KEYSEND,
                              state=PaymentState.PENDING, last_error=None, updated_at=T0 + 3,
                              replaced_hashes=(own.payment_hash,))
    assert repos.payments.replace_invoice(own.payment_hash, by_keysend) == by_keysend
    assert repos.payments.get("e" * 64) == by_keysend
    refused = repos.payments.upsert(attrs.evolve(
        fail(start_attempt(by_keysend, T0 + 4), T0 + 5, "keysend refused by the payee: no"),
        keysend_refused=True))
    assert repos.payments.get("e" * 64) == refused and refused.keysend_refused
    by_invoice = attrs.evolve(refused, payment_hash="f" * 64, bolt11="lnbcrt1new",
                              invoice_expires_at=T0 + 10_000, method=PayoutMethod.INVOICE,
                              state=PaymentState.PENDING, last_error=None, updated_at=T0 + 6,
                              replaced_hashes=(own.payment_hash, "e" * 64),
                              replaced_keysend=("e" * 64,), keysend_refused=False)
    with pytest.raises(Conflict, match="keysend hash"):  # the keysend hash must stay named
        repos.payments.replace_invoice("e" * 64, attrs.evolve(by_invoice, replaced_keysend=()))
    assert repos.payments.replace_invoice("e" * 64, by_invoice) == by_invoice
    assert repos.payments.get("f" * 64) == by_invoice
    assert repos.payments.get("f" * 64).replaced_keysend == ("e" * 64,)  # type: ignore[union-attr]
    assert repos.payments.get("e" * 64) is None
    assert repos.payments.for_task(own.task_id) == [by_invoice]


def test_a_renewal_that_raced_or_is_not_a_renewal_is_a_conflict_and_changes_nothing(
    repos: Repositories,
) -> None:
    """Two dispatchers renewing one invoice: the second finds no record under the old hash.
    A paid record is never renewed; a renewal must name the replaced hash and may not take
    another record's hash."""
    payment = repos.payments.upsert(a_payment(1))
    other = repos.payments.upsert(a_payment(2))
    new = attrs.evolve(payment, payment_hash="e" * 64, replaced_hashes=(payment.payment_hash,))
    with pytest.raises(Conflict):
        repos.payments.replace_invoice(payment.payment_hash, attrs.evolve(new, replaced_hashes=()))
    with pytest.raises(Conflict):
        repos.payments.replace_invoice(payment.payment_hash, attrs.evolve(new, amount_msat=1))
    taken = attrs.evolve(new, payment_hash=other.payment_hash)
    with pytest.raises(Conflict):
        repos.payments.replace_invoice(payment.payment_hash, taken)
    assert repos.payments.get(payment.payment_hash) == payment
    assert repos.payments.get(other.payment_hash) == other
    repos.payments.replace_invoice(payment.payment_hash, new)
    again = attrs.evolve(new, payment_hash="f" * 64)
    with pytest.raises(Conflict):
        repos.payments.replace_invoice(payment.payment_hash, again)
    paid = repos.payments.upsert(succeed(start_attempt(new, T0 + 5), T0 + 6))
    replaced = (payment.payment_hash, new.payment_hash)
    with pytest.raises(Conflict):
        repos.payments.replace_invoice(
            new.payment_hash, attrs.evolve(paid, payment_hash="f" * 64, replaced_hashes=replaced))
    assert repos.payments.get(new.payment_hash) == paid
    assert repos.payments.get("f" * 64) is None
    with pytest.raises(Conflict):  # the old hash may not come back as a record of its own
        repos.payments.upsert(payment)


# --------------------------------------------------------------------------- slashing log


def _chain(n: int) -> list[SlashingLogEntry]:
    entries: list[SlashingLogEntry] = []
    for i in range(n):
        previous = entries[-1] if entries else None
        entries.append(append_to_log(COORDINATOR, previous, a_decision(i, T0 + i)))
    return entries


def test_the_slashing_log_keeps_its_entries_in_order_and_still_verifies(
    repos: Repositories,
) -> None:
    assert repos.slashing_log.latest() is None
    assert repos.slashing_log.entries() == []
    entries = _chain(4)
    for entry in entries:
        repos.slashing_log.append(entry)
    stored = repos.slashing_log.entries()
    assert stored == entries
    assert repos.slashing_log.latest() == entries[-1]
    head = entries[-1].entry_hash()
    assert verify_log(stored, COORDINATOR.public_key_hex, expected_head=head).ok
    assert repos.slashing_log.entries(start=1, limit=2) == entries[1:3]


def test_an_entry_that_does_not_continue_the_chain_is_refused(repos: Repositories) -> None:
    first, second, third = _chain(3)
    with pytest.raises(Conflict):
        repos.slashing_log.append(second)  # index 1 on an empty log
    repos.slashing_log.append(first)
    with pytest.raises(Conflict):
        repos.slashing_log.append(first)  # a replay
    with pytest.raises(Conflict):
        repos.slashing_log.append(third)  # a gap
    forged = attrs.evolve(second, prev_hash="f" * 64)
    with pytest.raises(Conflict):
        repos.slashing_log.append(forged)
    backdated = append_to_log(COORDINATOR, first, a_decision(1, T0 - 1))
    with pytest.raises(Conflict):
        repos.slashing_log.append(backdated)
    assert repos.slashing_log.entries() == [first]


def test_the_slashing_log_port_has_no_way_to_edit_or_remove_entries(
    repos: Repositories,
) -> None:
    public = {name for name in dir(repos.slashing_log) if not name.startswith("_")}
    assert public == {"append", "entries", "latest", "slashings_since"}


def test_concurrent_appends_of_the_same_index_keep_a_single_chain(repos: Repositories) -> None:
    first = _chain(1)[0]
    repos.slashing_log.append(first)
    rivals = [append_to_log(COORDINATOR, first, a_decision(10 + i, T0 + 5)) for i in range(4)]
    outcomes: list[str] = []

    def append(entry: object) -> None:
        try:
            repos.slashing_log.append(entry)  # type: ignore[arg-type]
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=append, args=(e,)) for e in rivals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"]
    stored = repos.slashing_log.entries()
    assert len(stored) == 2 and stored[1] in rivals
    assert verify_log(stored, COORDINATOR.public_key_hex).ok


def _race(jobs: list[Callable[[], object]]) -> list[object]:
    """Run ``jobs`` on as many threads at once; their results, or the exceptions they raised."""
    results: list[object] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = jobs[i]()
        except Exception as exc:  # collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_writers_of_the_same_new_records_never_clash(repos: Repositories) -> None:
    """Several coordinators behind a load balancer (SRS-COORD-05) enqueue and register at once."""
    payment = a_payment(1)
    assert _race([lambda: repos.payments.upsert(payment)] * 6) == [payment] * 6
    assert repos.payments.for_task(payment.task_id) == [payment]
    manifests = [a_manifest(1, issued_at=T0 + i) for i in range(6)]
    kept = _race([functools.partial(repos.manifests.put, m) for m in manifests])
    assert all(isinstance(k, bool) for k in kept)
    assert repos.manifests.get(identity(1).node_id) == manifests[-1]


# --------------------------------------------------------------------------- proposals


def a_treasury_proposal(
    pid: str = "prop-1", now: int = T0, title: str = "Fund the relay"
) -> Proposal:
    return submit_proposal(
        proposal_id=pid, author="alice", title=title, description="Pay for a year of relays.",
        proposal_type=ProposalType.TREASURY, implementation_plan="1. pay\n2. report",
        now=now, requested_sat=20_000_000,
    )  # fmt: skip


def test_a_proposal_round_trips_with_comments_acknowledgements_and_txid(
    repos: Repositories,
) -> None:
    proposal = a_treasury_proposal()
    repos.proposals.add(proposal)
    assert repos.proposals.get("prop-1") == proposal
    for comment in (Comment("bob", "Why a year?", T0 + 10), Comment("carol", "Fine.", T0 + 20)):
        proposal = add_comment(proposal, comment)
        repos.proposals.append_comment("prop-1", comment)
    assert repos.proposals.get("prop-1") == proposal
    for holder in sorted(TREASURY.holders):
        proposal = acknowledge(proposal, holder, TREASURY)
    proposal = decide(close_comments(proposal, T0 + 14 * DAY), accept=True)
    proposal = execute(proposal, treasury=TREASURY, signers=sorted(TREASURY.holders)[:3],
                       txid="ab" * 32)  # fmt: skip
    repos.proposals.save(proposal)
    assert repos.proposals.get("prop-1") == proposal
    assert repos.proposals.get("prop-2") is None


def test_saving_a_proposal_neither_drops_nor_rewrites_its_comments(repos: Repositories) -> None:
    proposal = a_treasury_proposal()
    repos.proposals.add(proposal)
    first = Comment("bob", "Why a year?", T0 + 10)
    repos.proposals.append_comment("prop-1", first)

    edited = attrs.evolve(proposal, comments=(Comment("bob", "I never asked", T0 + 10),))
    repos.proposals.save(attrs.evolve(edited, title="Fund two relays"))
    repos.proposals.save(attrs.evolve(proposal, comments=()))

    stored = repos.proposals.get("prop-1")
    assert stored is not None and stored.comments == (first,)
    with pytest.raises(Conflict):
        repos.proposals.append_comment("prop-2", first)


def test_proposal_ids_are_unique_and_only_known_proposals_are_saved(repos: Repositories) -> None:
    repos.proposals.add(a_treasury_proposal())
    with pytest.raises(Conflict):
        repos.proposals.add(a_treasury_proposal(title="Another"))
    with pytest.raises(Conflict):
        repos.proposals.save(a_treasury_proposal("prop-2"))
    assert [p.title for p in repos.proposals.list()] == ["Fund the relay"]


def test_proposals_are_listed_newest_first_and_filtered_by_status(repos: Repositories) -> None:
    old = a_treasury_proposal("prop-a", now=T0)
    new = a_treasury_proposal("prop-b", now=T0 + 100)
    same_time = a_treasury_proposal("prop-c", now=T0 + 100)
    for p in (old, same_time, new):
        repos.proposals.add(p)
    closed = close_comments(old, T0 + 15 * DAY)
    repos.proposals.save(closed)
    assert repos.proposals.list() == [new, same_time, closed]
    assert repos.proposals.list(ProposalStatus.OPEN) == [new, same_time]
    assert repos.proposals.list(ProposalStatus.CLOSED) == [closed]
    assert repos.proposals.list(ProposalStatus.EXECUTED) == []


# --------------------------------------------------------------------------- shares


def test_shares_are_kept_in_accepted_order_with_exact_credited_difficulty(
    repos: Repositories,
) -> None:
    huge = Fraction(2**200 + 1, 3**50)
    rows = [(T0 + 5, a_share(1)), (T0 + 1, a_share(2, "miner-b", huge)), (T0 + 5, a_share(3))]
    for at, share in rows:
        repos.shares.add(share, at)
    assert repos.shares.since(T0) == [rows[1], rows[0], rows[2]]
    assert repos.shares.since(T0 + 2) == [rows[0], rows[2]]
    assert repos.shares.since(T0, miner_id="miner-b") == [rows[1]]
    assert repos.shares.since(T0)[0][1].credited_difficulty == huge
    assert repos.shares.contains(a_share(3).hash_hex)
    assert not repos.shares.contains(a_share(4).hash_hex)


def test_a_share_hash_is_recorded_only_once(repos: Repositories) -> None:
    repos.shares.add(a_share(1), T0)
    with pytest.raises(Conflict):
        repos.shares.add(a_share(1, "miner-b"), T0 + 1)
    assert repos.shares.since(0) == [(T0, a_share(1))]


def test_shares_added_together_are_kept_in_their_order_all_or_none(repos: Repositories) -> None:
    repos.shares.add(a_share(1), T0)
    batch = [a_share(3, "miner-b"), a_share(2), a_share(4)]
    repos.shares.add_many(batch, T0 + 1)
    assert repos.shares.since(0) == [(T0, a_share(1))] + [(T0 + 1, s) for s in batch]
    for clashing in ([a_share(5), a_share(1)], [a_share(6), a_share(6)]):
        with pytest.raises(Conflict):
            repos.shares.add_many(clashing, T0 + 2)
    assert not repos.shares.contains(a_share(5).hash_hex)
    assert not repos.shares.contains(a_share(6).hash_hex)
    repos.shares.add_many([], T0 + 3)
    assert len(repos.shares.since(0)) == 4


def test_retention_deletes_only_shares_older_than_the_cutoff_and_keeps_blocks(
    repos: Repositories,
) -> None:
    now = T0 + 40 * DAY
    cutoff = now - 30 * DAY
    for i, at in enumerate([cutoff - 1, cutoff, cutoff + 1, T0, T0 + 1]):
        repos.shares.add(a_share(i), at)  # a_share(3), at T0, is a block
    assert repos.shares.delete_older_than(cutoff) == 2
    assert [at for at, _ in repos.shares.since(0)] == [T0, cutoff, cutoff + 1]
    assert repos.shares.blocks_since(0) == 1  # the FPPS funds still count it (SRS-POOL-07)
    assert repos.shares.delete_older_than(cutoff) == 0


# --------------------------------------------------------------------------- API keys


def an_api_key(key_id: str, secret: str, owner: str = "acme", at: int = T0) -> ApiKey:
    return ApiKey(key_id, secret_sha256(secret), owner, Plan.COMMERCIAL, at)


def test_an_api_key_is_found_by_id_and_by_its_secret_digest(repos: Repositories) -> None:
    key = an_api_key("key-1", "s3cret")
    repos.api_keys.add(key)
    assert repos.api_keys.get("key-1") == key
    found = repos.api_keys.get_by_secret_sha256(secret_sha256("s3cret"))
    assert found == key and found.accepts("s3cret")
    assert repos.api_keys.get_by_secret_sha256(secret_sha256("guess")) is None
    with pytest.raises(Conflict):
        repos.api_keys.add(an_api_key("key-1", "other"))
    with pytest.raises(Conflict):
        repos.api_keys.add(an_api_key("key-2", "s3cret"))


def test_a_revoked_key_stays_revoked_and_keys_list_oldest_first(repos: Repositories) -> None:
    later, earlier = an_api_key("key-b", "b", at=T0 + 10), an_api_key("key-a", "a", at=T0)
    repos.api_keys.add(later)
    repos.api_keys.add(earlier)
    repos.api_keys.add(an_api_key("key-c", "c", owner="other"))
    assert repos.api_keys.revoke("key-b") is True
    assert repos.api_keys.revoke("key-z") is False
    assert repos.api_keys.for_owner("acme") == [earlier, later.revoke()]
    assert not repos.api_keys.get("key-b").accepts("b")  # type: ignore[union-attr]


# --------------------------------------------------------------------------- earnings history


def test_a_nodes_payments_are_listed_newest_first_and_only_its_own(repos: Repositories) -> None:
    first = a_payment(1, node_id="node-x", created_at=T0, updated_at=T0)
    second = a_payment(2, node_id="node-x", created_at=T0 + 5, updated_at=T0 + 5)
    repos.payments.upsert(first)
    repos.payments.upsert(a_payment(3, node_id="node-y"))
    repos.payments.upsert(second)
    assert repos.payments.for_node("node-x") == [second, first]
    assert repos.payments.for_node("node-x", limit=1) == [second]
    assert repos.payments.for_node("nobody") == []
    repos.payments.upsert(attrs.evolve(second, state=PaymentState.SUCCEEDED, attempts=1))
    assert repos.payments.for_node("node-x", limit=1, states=(PaymentState.PENDING,)) == [first]


# --------------------------------------------------------------------------- model releases


def a_release(
    version: str, at: int, status: ProofStatus = ProofStatus.PENDING, sub_model: str = "owm-geo"
) -> ModelRelease:
    digest = hashlib.sha256(f"{sub_model}@{version}".encode()).hexdigest()
    proof = None if status is ProofStatus.NONE else b"\x00OpenTimestamps\x00" + HOSTILE.encode()
    return ModelRelease(ModelVersion(version, sub_model, digest, at), status, at, proof)


def test_a_release_round_trips_with_its_proof_bytes_and_status(repos: Repositories) -> None:
    release = a_release("owm-v0.4.2", T0)
    repos.releases.add(release)
    assert repos.releases.get("owm-geo@owm-v0.4.2") == release
    assert repos.releases.get("owm-geo@owm-v9.9.9") is None
    confirmed = attrs.evolve(release, proof_status=ProofStatus.CONFIRMED, checked_at=T0 + DAY)
    repos.releases.save(confirmed)
    assert repos.releases.get(release.release_id) == confirmed
    with pytest.raises(Conflict):
        repos.releases.add(release)
    with pytest.raises(Conflict):
        repos.releases.save(a_release("owm-v0.0.1", T0))


def test_a_release_cannot_be_saved_with_another_digest(repos: Repositories) -> None:
    release = a_release("owm-v0.4.2", T0)
    repos.releases.add(release)
    forged = attrs.evolve(release, version=attrs.evolve(release.version, digest="ee" * 32))
    with pytest.raises(Conflict):
        repos.releases.save(forged)
    assert repos.releases.get(release.release_id) == release


def test_releases_are_listed_newest_first_then_by_id(repos: Repositories) -> None:
    old = a_release("owm-v0.1.0", T0, ProofStatus.NONE)
    new_b = a_release("owm-v0.2.0", T0 + 10, sub_model="owm-b")
    new_a = a_release("owm-v0.2.0", T0 + 10, sub_model="owm-a")
    for release in (new_b, old, new_a):
        repos.releases.add(release)
    assert repos.releases.list() == [new_a, new_b, old]
    versions = repos.releases.versions()  # without the proofs: what picks the current one
    assert sorted(versions, key=lambda v: v.id) == sorted(
        (r.version for r in (new_a, new_b, old)), key=lambda v: v.id
    )
    assert current_version(versions) == current_release(repos.releases.list()).version  # type: ignore[union-attr]


# --------------------------------------------------------------------------- GitHub


def a_bounty(i: int, at: int = T0, **changes: Any) -> Bounty:
    bounty = open_bounty(
        bounty_id=f"bnt-{i}",
        repository="owm-network/owm",
        issue_number=i,
        title=f"fix #{i}: {HOSTILE}"[:200],
        amount_sat=10_000 * i,
        created_by="acme",
        now=at,
    )
    return attrs.evolve(bounty, **changes)


def test_bounties_round_trip_and_list_newest_first_by_status(repos: Repositories) -> None:
    one, two, three = a_bounty(1), a_bounty(2, at=T0 + 5), a_bounty(3, at=T0 + 5)
    for bounty in (one, three, two):
        repos.bounties.add(bounty)
    assert repos.bounties.get("bnt-1") == one and repos.bounties.get("bnt-9") is None
    paid = attrs.evolve(two, status=BountyStatus.PAID)
    repos.bounties.save(paid)
    assert repos.bounties.list() == [paid, three, one]
    assert repos.bounties.list(BountyStatus.OPEN) == [three, one]
    assert repos.bounties.list(BountyStatus.OPEN, limit=1) == [three]
    with pytest.raises(Conflict):
        repos.bounties.add(one)
    with pytest.raises(Conflict):
        repos.bounties.save(a_bounty(9))


def test_bounties_of_a_status_are_walked_by_id_in_pages_after_a_given_id(
    repos: Repositories,
) -> None:
    for i in (5, 2, 7, 1, 4):
        repos.bounties.add(a_bounty(i, at=T0 + 10 - i))
    repos.bounties.save(a_bounty(4, at=T0 + 6, status=BountyStatus.CANCELLED))
    first = repos.bounties.after(BountyStatus.OPEN, limit=2)
    assert [b.bounty_id for b in first] == ["bnt-1", "bnt-2"]
    rest = repos.bounties.after(BountyStatus.OPEN, first[-1].bounty_id, limit=2)
    assert rest == [a_bounty(5, at=T0 + 5), a_bounty(7, at=T0 + 3)]
    assert repos.bounties.after(BountyStatus.OPEN, "bnt-7") == []
    assert [b.bounty_id for b in repos.bounties.after(BountyStatus.CANCELLED)] == ["bnt-4"]


def test_an_analysis_request_round_trips_and_moves_forward(repos: Repositories) -> None:
    queued = request_analysis(
        analysis_id="ana-1", repository="owm-network/owm", requested_by="acme", now=T0
    )
    repos.analyses.add(queued)
    assert repos.analyses.get("ana-1") == queued
    assert repos.analyses.get("ana-2") is None
    done = advance_analysis(
        advance_analysis(queued, AnalysisState.RUNNING, T0 + 1), AnalysisState.DONE, T0 + 2, HOSTILE
    )
    repos.analyses.save(done)
    assert repos.analyses.get("ana-1") == done
    with pytest.raises(Conflict):
        repos.analyses.add(queued)
    with pytest.raises(Conflict):
        repos.analyses.save(attrs.evolve(queued, analysis_id="ana-3"))
    of_pull = request_analysis(analysis_id="ana-4", repository="owm-network/owm",
                               requested_by="acme", now=T0, pull_request=2**31 - 1)  # fmt: skip
    repos.analyses.add(of_pull)
    assert repos.analyses.get("ana-4") == of_pull


# --------------------------------------------------------------------------- mining payouts


def test_payouts_are_recorded_once_and_listed_newest_first(repos: Repositories) -> None:
    a = MiningPayout(T0, 12_000, "aa" * 32, "miner-a")
    b = MiningPayout(T0 + 60, 3_000, "bb" * 32, None)
    c = MiningPayout(T0 + 60, 11_000, "cc" * 32, "miner-b")
    for payout in (a, c, b):
        repos.mining_payouts.add(payout)
    assert repos.mining_payouts.recent() == [b, c, a]
    assert repos.mining_payouts.recent(limit=1) == [b]
    assert repos.mining_payouts.recent(miner_id="miner-a") == [a]
    with pytest.raises(Conflict):
        repos.mining_payouts.add(a)


# --------------------------------------------------------------------------- task inputs/outputs

BINARY_INPUT = b"\x00prompt\x00\xff\xfe" + bytes(range(256)) + b"\x00"
BLOB_STORES = pytest.mark.parametrize(
    ("store", "field"), [("task_inputs", "input"), ("task_outputs", "output")]
)


@BLOB_STORES
def test_task_data_is_durable_as_soon_as_put_returns_byte_for_byte(
    backend: Backend, store: str, field: str
) -> None:
    getattr(backend.repos, store).put("task-1", BINARY_INPUT)
    getattr(backend.repos, store).put("task-2", b"")
    other = getattr(backend.reopen(), store)
    assert other.get("task-1") == BINARY_INPUT
    assert other.get("task-2") == b""


@BLOB_STORES
def test_putting_the_same_task_data_again_is_a_no_op_and_other_data_a_conflict(
    repos: Repositories, store: str, field: str
) -> None:
    blobs = getattr(repos, store)
    blobs.put("task-1", BINARY_INPUT)
    blobs.put("task-1", BINARY_INPUT)
    with pytest.raises(Conflict):
        blobs.put("task-1", BINARY_INPUT + b"x")
    assert blobs.get("task-1") == BINARY_INPUT


@BLOB_STORES
def test_deleted_or_unknown_task_data_is_none(repos: Repositories, store: str, field: str) -> None:
    blobs = getattr(repos, store)
    blobs.put("task-1", b"a")
    blobs.put("task-2", b"b")
    blobs.delete("task-1")
    blobs.delete("task-1")
    blobs.delete("never-stored")
    assert blobs.get("task-1") is None
    assert blobs.get("never-stored") is None
    assert blobs.get("task-2") == b"b"
    blobs.put("task-1", b"new")
    assert blobs.get("task-1") == b"new"


@BLOB_STORES
def test_task_data_beyond_the_size_limit_is_refused_naming_the_field(
    repos: Repositories, store: str, field: str
) -> None:
    blobs = getattr(repos, store)
    with pytest.raises(InvalidValue) as refused:
        blobs.put("task-1", bytes(MAX_STORED_TASK_DATA_BYTES + 1))
    assert refused.value.field == field
    assert blobs.get("task-1") is None


def test_a_task_s_input_and_its_output_are_kept_apart(repos: Repositories) -> None:
    repos.task_inputs.put("task-1", b"question")
    repos.task_outputs.put("task-1", b"answer")
    repos.task_inputs.delete("task-1")
    assert repos.task_outputs.get("task-1") == b"answer"
    assert repos.task_inputs.get("task-1") is None


def test_a_task_input_written_in_a_failed_atomic_block_is_not_kept(repos: Repositories) -> None:
    with pytest.raises(RuntimeError), repos.atomic():
        repos.tasks.add(market.submit(a_request("task-1:0")))
        repos.task_inputs.put("task-1", BINARY_INPUT)
        raise RuntimeError("crash before commit")
    assert repos.tasks.get("task-1:0") is None
    assert repos.task_inputs.get("task-1") is None


def _commitment(round_id: str, replica: str, node: str, at: int, digest: str = "ab") -> Any:
    return RecordedCommitment(round_id, Commitment(replica, node, digest * 32), at)


def test_commitments_are_kept_per_round_until_the_round_is_deleted(repos: Repositories) -> None:
    first = _commitment("job", "job:0", "n-a", 100)
    second = _commitment("job", "job:1", "n-b", 105, "cd")
    other = _commitment("other", "other:0", "n-a", 90, "ef")
    for record in (second, first, other):
        repos.commitments.add(record)
    repos.commitments.add(first)  # the same again: a retry

    assert list(repos.commitments.for_round("job")) == [first, second]
    assert list(repos.commitments.rounds_started_by_after(100)) == ["job", "other"]
    assert list(repos.commitments.rounds_started_by_after(95)) == ["other"]
    assert list(repos.commitments.rounds_started_by_after(100, limit=1)) == ["job"]
    assert list(repos.commitments.rounds_started_by_after(100, "job")) == ["other"]
    assert list(repos.commitments.rounds_started_by_after(100, "other")) == []
    with pytest.raises(Conflict):
        repos.commitments.add(_commitment("job", "job:0", "n-a", 100, "99"))
    repos.commitments.delete_round("job")
    assert list(repos.commitments.for_round("job")) == []
    assert list(repos.commitments.for_round("other")) == [other]


def test_a_commitment_written_in_a_failed_atomic_block_is_not_kept(repos: Repositories) -> None:
    with pytest.raises(RuntimeError), repos.atomic():
        repos.commitments.add(_commitment("job", "job:0", "n-a", 100))
        raise RuntimeError("crash before commit")
    assert list(repos.commitments.for_round("job")) == []


# --------------------------------------------------------------------------- atomicity


def test_an_atomic_block_that_raises_leaves_no_trace(repos: Repositories) -> None:
    task = assigned("task-1", identity(1).node_id)
    repos.tasks.add(task)
    with pytest.raises(RuntimeError), repos.atomic():
        repos.tasks.save(market.complete(task, "ab" * 32, T0 + 1))
        repos.payments.upsert(a_payment(1))
        repos.slashing_log.append(_chain(1)[0])
        raise RuntimeError("crash before commit")
    assert repos.tasks.get("task-1") == task
    assert repos.payments.get(a_payment(1).payment_hash) is None
    assert repos.slashing_log.latest() is None


def test_an_atomic_block_commits_all_its_writes_together(backend: Backend) -> None:
    repos = backend.repos
    task = assigned("task-1", identity(1).node_id)
    repos.tasks.add(task)
    done = market.complete(task, "ab" * 32, T0 + 1)
    with repos.atomic():
        repos.tasks.save(done, expected_state=TaskState.ASSIGNED)
        repos.payments.upsert(a_payment(1))
        with repos.atomic():  # nesting joins the outer block
            repos.nodes.add(a_node(1))
        assert repos.tasks.get("task-1") == done  # reads see the block's own writes
    other = backend.reopen()
    assert other.tasks.get("task-1") == done
    assert other.payments.get(a_payment(1).payment_hash) == a_payment(1)
    assert other.nodes.get(a_node(1).node_id) == a_node(1)


def test_a_conflict_caught_inside_an_atomic_block_spoils_nothing_else(
    repos: Repositories,
) -> None:
    repos.nodes.add(a_node(1))
    with repos.atomic():
        repos.nodes.add(a_node(2))
        with pytest.raises(Conflict):
            repos.nodes.add(a_node(1))
        repos.nodes.add(a_node(3))
    assert [n.node_id for n in repos.nodes.list()] == sorted(a_node(i).node_id for i in (1, 2, 3))


# --------------------------------------------------------------------------- parameterised SQL


def test_text_with_quotes_and_sql_fragments_round_trips_verbatim(repos: Repositories) -> None:
    """SRS-SEC-06: values travel as bound parameters, so SQL in them is only text."""
    node = a_node(1, node_id=HOSTILE[:64])
    repos.nodes.add(node)
    proposal = a_treasury_proposal(pid=HOSTILE[:128], title=HOSTILE[:200])
    proposal = add_comment(proposal, Comment(HOSTILE, HOSTILE + " \\ %s %(x)s ?", T0 + 1))
    repos.proposals.add(proposal)
    key = ApiKey("key-1", secret_sha256(HOSTILE), HOSTILE, Plan.FREE, T0)
    repos.api_keys.add(key)
    assert repos.nodes.get(HOSTILE[:64]) == node
    assert repos.nodes.list() == [node]
    assert repos.proposals.get(HOSTILE[:128]) == proposal
    assert repos.proposals.list() == [proposal]
    assert repos.api_keys.for_owner(HOSTILE) == [key]
    assert repos.tasks.get("' OR '1'='1") is None


# --------------------------------------------------------------------------- SQL only


def test_the_database_itself_refuses_to_edit_or_delete_slashing_log_rows(
    sql_repos: SqlRepositories,
) -> None:
    entries = _chain(2)
    for entry in entries:
        sql_repos.slashing_log.append(entry)
    engine = sql_repos.database.engine
    for statement in (
        "UPDATE slashing_log SET reason = 'protocol_abuse'",
        "DELETE FROM slashing_log WHERE entry_index = 1",
    ):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert sql_repos.slashing_log.entries() == entries


def test_a_new_comment_is_one_inserted_row_and_earlier_ones_are_never_touched(
    sql_repos: SqlRepositories,
) -> None:
    sql_repos.proposals.add(a_treasury_proposal())
    earlier = [Comment(f"author-{i}", f"comment {i}", T0 + i) for i in range(50)]
    for comment in earlier:
        sql_repos.proposals.append_comment("prop-1", comment)
    statements: list[str] = []
    engine = sql_repos.database.engine

    def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(" ".join(statement.split()).lower())

    event.listen(engine, "before_cursor_execute", record)
    try:
        sql_repos.proposals.append_comment("prop-1", Comment("zoe", "one more", T0 + 99))
    finally:
        event.remove(engine, "before_cursor_execute", record)

    touching = [s for s in statements if "proposal_comments" in s and not s.startswith("select")]
    assert len(touching) == 1 and touching[0].startswith("insert into proposal_comments")
    stored = sql_repos.proposals.get("prop-1")
    assert stored is not None
    assert stored.comments == (*earlier, Comment("zoe", "one more", T0 + 99))


def test_the_database_itself_refuses_to_edit_or_delete_comments(
    sql_repos: SqlRepositories,
) -> None:
    sql_repos.proposals.add(a_treasury_proposal())
    comment = Comment("bob", "Why a year?", T0 + 10)
    sql_repos.proposals.append_comment("prop-1", comment)
    engine = sql_repos.database.engine
    for statement in (
        "UPDATE proposal_comments SET text = 'I never said that'",
        "DELETE FROM proposal_comments",
    ):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    stored = sql_repos.proposals.get("prop-1")
    assert stored is not None and stored.comments == (comment,)


def test_integers_beyond_64_bits_are_refused_as_invalid_values(
    sql_repos: SqlRepositories,
) -> None:
    with pytest.raises(InvalidValue):
        sql_repos.shares.add(attrs.evolve(a_share(1), share_difficulty=2**64), T0)
    assert sql_repos.nodes.list() == []


def test_a_sweep_page_passes_over_a_row_it_cannot_read_and_reads_on_after_it(
    sql_repos: SqlRepositories, caplog: pytest.LogCaptureFixture
) -> None:
    """A row this version cannot read back (edited by hand, or written by another version)
    must not end every payout sweep, nor come back as a short page, which would send the sweep
    to its start before the rows after the bad one: the page is filled from after it, and the
    row is logged once, by kind and position, without its values."""
    for i in range(1, 6):
        sql_repos.payments.upsert(a_payment(i, bolt11=f"lnbcrt{i}secret"))
    with sql_repos.database.engine.begin() as conn:
        conn.execute(text("UPDATE payments SET method = 'carrier-pigeon' WHERE task_id = 'task-2'"))
    owed = (PaymentState.PENDING,)
    with caplog.at_level("WARNING", logger="owm_adapters.storage.sql.rows"):
        page = sql_repos.payments.in_states_after(owed, limit=2)
        assert [p.payment_id for _, p in page] == ["pay-1", "pay-3"]
        rest = sql_repos.payments.in_states_after(owed, after=page[-1][0], limit=2)
        assert [p.payment_id for _, p in rest] == ["pay-4", "pay-5"]
        again = sql_repos.payments.in_states_after(owed, limit=10)
    assert [p.payment_id for _, p in again] == ["pay-1", "pay-3", "pay-4", "pay-5"]
    (logged,) = caplog.records  # once, though three pages passed over it
    assert "RewardPayment stored at position" in logged.getMessage()
    assert "carrier-pigeon" not in caplog.text and "secret" not in caplog.text


def test_an_overdue_task_this_version_cannot_read_hides_no_other_from_the_time_outs(
    sql_repos: SqlRepositories,
) -> None:
    node = identity(1).node_id
    for i in (1, 2):
        sql_repos.tasks.add(market.submit(a_request(f"task-{i}")))
        sql_repos.tasks.save(assigned(f"task-{i}", node, now=T0, timeout_s=100 * i))
    with sql_repos.database.engine.begin() as conn:
        conn.execute(text("UPDATE tasks SET min_tier = 't9' WHERE task_id = 'task-1'"))
    assert [task.task_id for task in sql_repos.tasks.overdue(T0 + 301)] == ["task-2"]


# --------------------------------------------------------------------------- query answers


def test_a_stored_query_answer_reads_back_equal_and_its_id_is_taken(repos: Repositories):
    from owm_core.knowledge.routing import (
        Evidence,
        Extract,
        QueryAnswer,
        Reading,
        SubModelRoute,
        compose,
    )

    route = SubModelRoute("owm-geo", 0.7, "owm-geo@owm-v0.1.0", True)
    evidence = [Evidence("p1", "owm-geo", "USGS", "Quakes shake the ground. Often.", 0.8, "ds-1")]
    reading = Reading("owm-geo", (Extract("p1", "Quakes shake the ground.", 1.5, 1.0),))
    answer = QueryAnswer("qry_abc", "what shakes?", 1_800_000_000,
                         compose([route], evidence, [reading]), 312, 5)
    assert repos.query_answers.get("qry_abc") is None
    repos.query_answers.add(answer)
    assert repos.query_answers.get("qry_abc") == answer
    with pytest.raises(Conflict):
        repos.query_answers.add(answer)


def test_a_stake_channel_backs_one_node_and_a_node_holds_one_channel(
    repos: Repositories,
) -> None:
    """SRS-STAKE-01: a second node id claiming a bound channel point is a Conflict naming it."""
    first, second = "aa" * 32 + ":0", "bb" * 32 + ":1"
    node_1, node_2 = (Identity.from_seed(bytes([n]) * 32).node_id for n in (1, 2))
    bindings = repos.channel_bindings
    bindings.bind(first, node_1, 100)
    bindings.bind(first, node_1, 101)  # the same pair again: a no-op

    with pytest.raises(Conflict, match=f"channel {first} already backs another node"):
        bindings.bind(first, node_2, 102)
    assert bindings.node_of(first) == node_1

    bindings.bind(second, node_1, 103)  # the node moved its stake to another channel
    assert (bindings.node_of(first), bindings.node_of(second)) == (None, node_1)
    bindings.bind(first, node_2, 104)
    bindings.release(first)
    bindings.release("cc" * 32 + ":9")  # unknown: ignored
    assert bindings.node_of(first) is None and bindings.node_of(second) == node_1
