"""Two coordinators on one PostgreSQL database share what a node or a client may send to either
(SRS-COORD-05): a challenge issued by one is answered at the other, a nonce used at one is
refused at the other, a registration limit counts both, a replica is assigned once, and the
jobs that must run once run on one of them, moving to the other when it stops; a payout
awaiting the payee node's invoice is listed and invoiced at either; a free API key's sliding
window counts at both, and a node's signed HTTP request is used once across them; an L402
token's per-query credit is spent once across them, and a signer's governance statement limit
counts at both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import grpc
import pytest

from owm_adapters.clock import SystemClock
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.lightning.node_invoices import NodeInvoiceSource
from owm_adapters.services.api.access import ApiAccess, PaymentRequired
from owm_adapters.services.api.config import ApiConfig
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.sql import open_repositories
from owm_core.access import l402
from owm_core.access.api_keys import Plan
from owm_core.access.callers import Caller, CallerKind, signed_request_message
from owm_core.access.ratelimit import RateLimit
from owm_core.errors import RateLimited, ReplayRejected
from owm_core.identity.envelopes import PayoutInvoice, PayoutQuery, ReplayGuard
from owm_core.identity.keys import Identity
from owm_core.market.tasks import TaskState, VerificationPolicy
from owm_core.nodes.registry import LnNodeUri
from tests.governance_keys import MAINTAINERS
from tests.node.test_node_invoices import MONTH_S, pending_payout, sealed
from tests.server.harness import (
    COORDINATOR_KEY,
    Coordinator,
    SimNode,
    StepClock,
    start_coordinator,
    task_request,
)
from tests.services.governance_world import governance_world
from tests.services.market_world import node_record
from tests.services.test_governance import ALICE, treasury_proposal


@pytest.fixture
def pair(migrated_postgresql_url: str, tmp_path: Path) -> Iterator[tuple[Coordinator, ...]]:
    ledger, clock = SimLedger(tmp_path / "lightning.sqlite3"), StepClock()
    started: list[Coordinator] = []
    try:
        for _ in range(2):
            store = open_repositories(migrated_postgresql_url, migrate=False)
            config = ServiceConfig(verification=VerificationPolicy(redundancy=1), tick_s=0.05)
            started.append(start_coordinator(store, ledger, clock, config))
        yield tuple(started)
    finally:
        for coordinator in started:
            coordinator.stop()


def staked(a: Coordinator) -> SimNode:
    node = SimNode.create()
    node.stake(a)
    return node


def test_a_challenge_issued_by_one_coordinator_registers_the_node_at_the_other(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    node = staked(a)
    request = node.register_request(a.stub, a.app.clock.now())

    reply = b.stub.Register(request)

    assert reply.node_id == node.node_id and reply.stake_status == "active"
    with pytest.raises(grpc.RpcError) as info:  # and it was one use, at both
        a.stub.Register(request)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_a_heartbeat_accepted_by_one_coordinator_is_refused_as_a_replay_by_the_other(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    node = staked(a)
    node.register(a.stub, a.app.clock.now())
    raw = node.heartbeat_envelope(a.app.clock.now())
    b.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=node.heartbeat_envelope(
        a.app.clock.now())))  # b knows the node: registered at a

    a.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=raw))
    with pytest.raises(grpc.RpcError) as info:
        b.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=raw))

    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "nonce" in info.value.details()


def test_a_task_submitted_at_one_coordinator_goes_once_to_a_node_streaming_from_the_other(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    node = staked(a)
    node.register(a.stub, a.app.clock.now())
    feed = node.open_stream(b.stub)

    a.stub.SubmitTask(task_request("shared-1"))

    (assignment,) = feed.wait_for(1, timeout_s=10)
    assert assignment.task_id.startswith("shared-1")
    stored = a.service.repositories.tasks.get(assignment.task_id)
    assert stored is not None and stored.state is TaskState.ASSIGNED
    assert stored.node_id == node.node_id
    time.sleep(0.5)
    assert len(feed.received) == 1  # pushed once
    feed.close()


def test_the_singleton_jobs_run_on_one_coordinator_and_move_when_it_stops(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    assert a.app.singletons is not None and b.app.singletons is not None
    names = [name for name, _ in a.app.singletons.jobs]
    assert {"market-housekeeping", "stake-reverification", "retention"} <= set(names)
    assert all(a.app.singletons.leads(n) for n in names)
    assert not any(b.app.singletons.leads(n) for n in names)
    assert not b.service.housekeeping.on and a.service.housekeeping.on

    a.app.singletons.stop()
    deadline = time.monotonic() + 10
    while not all(b.app.singletons.leads(n) for n in names):
        assert time.monotonic() < deadline, "the leads did not move within 10 s"
        time.sleep(0.1)
    assert b.service.housekeeping.on and not a.service.housekeeping.on


def test_a_payout_awaiting_an_invoice_at_one_coordinator_is_invoiced_at_the_other(
    migrated_postgresql_url: str, tmp_path: Path,
) -> None:
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    stores = [open_repositories(migrated_postgresql_url, migrate=False) for _ in range(2)]
    try:
        clock = SystemClock()
        paying, answering = (
            NodeInvoiceSource(s, clock, guard=ReplayGuard(ledger=s.nonces),
                              coordinator_key=COORDINATOR_KEY.public_key_hex) for s in stores
        )
        who, ln = Identity.from_seed(b"\x31" * 32), ledger.add_node("payee")
        stores[0].nodes.add(attrs.evolve(node_record(who, clock.now()),
                                         ln_node_uri=LnNodeUri.parse(f"{ln}@127.0.0.1:9735")))
        payment_id = pending_payout(paying, ln)

        query = sealed(who, PayoutQuery(node_id=who.node_id))
        [listed] = answering.pending_for(query)
        assert listed.payment_id == payment_id
        with pytest.raises(ReplayRejected):  # the same query at the other one: a replay
            paying.pending_for(query)
        good = ledger.create_invoice(ln, 5_000, "reward", MONTH_S)
        answering.submit(sealed(who, PayoutInvoice(payment_id, good.bolt11)))

        got = paying.invoice_for(ln, 5_000, "OWM reward job-9:0", MONTH_S)
        assert got.payment_hash == good.payment_hash
        assert answering.pending() == [] == paying.pending()
    finally:
        for store in stores:
            store.close()


def test_an_api_key_gets_one_quota_and_a_signed_request_one_use_across_coordinators(
    migrated_postgresql_url: str, tmp_path: Path,
) -> None:
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    stores = [open_repositories(migrated_postgresql_url, migrate=False) for _ in range(2)]
    try:
        config = ApiConfig(free_tier=RateLimit(limit=3, window_s=3_600))
        secret = b"\x07" * 32
        first, second = (
            ApiAccess(s, ledger.lightning(ledger.add_node("treasury")), SystemClock(), config,
                      secret, coordinator_key=COORDINATOR_KEY.public_key_hex, shared=True)
            for s in stores
        )
        caller = Caller(CallerKind.API_KEY, "k1", "alice", Plan.FREE)
        assert [first.admit(caller, False), second.admit(caller, False),
                first.admit(caller, False)] == [2, 1, 0]
        with pytest.raises(RateLimited):
            second.admit(caller, False)

        paid = Caller(CallerKind.API_KEY, "k2", "bob", Plan.COMMERCIAL)  # one daily quota
        first, second = (
            ApiAccess(s, ledger.lightning(ledger.add_node("treasury")), SystemClock(),
                      attrs.evolve(config, paid_requests_per_day=3, writes_per_day=1),
                      secret, coordinator_key=COORDINATOR_KEY.public_key_hex, shared=True)
            for s in stores
        )
        assert [first.admit(paid, False, write=True), second.admit(paid, False)] == [2, 1]
        with pytest.raises(RateLimited):
            second.admit(paid, False, write=True)  # the writes' quota is spent as well
        assert first.admit(paid, False) == 0
        with pytest.raises(RateLimited):
            second.admit(paid, False)

        node = Identity.from_seed(b"\x32" * 32)  # a node's signed request, replayed
        stores[0].nodes.add(node_record(node, int(time.time())))
        at, nonce = int(time.time()), "cd" * 8
        message = signed_request_message(COORDINATOR_KEY.public_key_hex, "GET", "/v1/x", at, nonce,
                                         b"")
        signature = node.sign(message).hex()
        headers = (node.public_key_hex, str(at), nonce, signature)
        assert first.caller_by_signature(headers, "GET", "/v1/x", b"").subject == node.node_id
        with pytest.raises(ReplayRejected):
            second.caller_by_signature(headers, "GET", "/v1/x", b"")
    finally:
        for store in stores:
            store.close()


def test_an_l402_tokens_per_query_credit_is_spent_once_across_coordinators(
    migrated_postgresql_url: str, tmp_path: Path,
) -> None:
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    treasury = ledger.add_node("treasury")
    ledger.open_channel(ledger.add_node("payer"), treasury, 1_000_000)
    stores = [open_repositories(migrated_postgresql_url, migrate=False) for _ in range(2)]
    try:
        config = ApiConfig(l402_price_msat=10_000, query_price_msat=4_000)  # two queries
        first, second = (
            ApiAccess(s, ledger.lightning(treasury), SystemClock(), config, b"\x07" * 32,
                      coordinator_key=COORDINATOR_KEY.public_key_hex, shared=True)
            for s in stores
        )
        offer = first.offer_access()
        paid = ledger.lightning("payer").pay(offer.invoice.bolt11, max_fee_msat=10_000,
                                             timeout_s=5)
        assert paid.preimage is not None
        token = l402.format_authorization(
            l402.Credential(offer.macaroon, bytes.fromhex(paid.preimage)))
        at_first, at_second = first.caller_by_l402(token), second.caller_by_l402(token)

        assert first.charge_query(at_first) == 6_000
        assert second.charge_query(at_second) == 2_000  # one credit, not one per coordinator
        for access, caller in ((first, at_first), (second, at_second)):
            with pytest.raises(PaymentRequired):
                access.charge_query(caller)
        second.refund_query(at_second)  # a query that failed unanswered gives its price back
        assert first.charge_query(at_first) == 2_000
    finally:
        for store in stores:
            store.close()


def test_a_signers_governance_statement_limit_counts_at_every_coordinator(
    migrated_postgresql_url: str, tmp_path: Path,
) -> None:
    stores = [open_repositories(migrated_postgresql_url, migrate=False) for _ in range(2)]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    try:
        first, second = (
            governance_world(tmp_path / name, store, per_signer=2, shared=True)
            for name, store in zip(("a", "b"), stores, strict=True)
        )
        proposal = treasury_proposal(first)  # ALICE's first statement, at the first
        second.act(ALICE, "comment", proposal, text="her second, at the second")

        for world in (first, second):  # two an hour, wherever she sends them
            with pytest.raises(RateLimited):
                world.act(ALICE, "comment", proposal, text="a third")
        second.act(MAINTAINERS[1], "comment", proposal, text="another signer is not limited")
    finally:
        for store in stores:
            store.close()
