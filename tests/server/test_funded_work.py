"""Funded work only, over the real gRPC control plane: the attacks on the treasury fail.

Before, ``SubmitTask`` needed no credential and took any ``max_price_msat``; nodes were paid the
midpoint of their ask and that maximum by the treasury (a probe got replicas settled at
2.3e18 msat each). Now every task has a paying, authenticated submitter, prices are capped and
a client's escrow comes out of a balance it paid for with a Lightning invoice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.submitter import (
    open_task_output,
    signed_balance_request,
    signed_output_request,
)
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.services.coordinator.shared import (
    NETWORK_BUDGET,
    TOP_UP_EXPIRY_S,
    FundingConfig,
)
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import InvalidValue, LightningUnavailable
from owm_core.identity.keys import Identity
from owm_core.identity.sealing import open_sealed, result_context
from owm_core.market.tasks import VerificationPolicy
from tests.server.harness import (
    COORDINATOR_KEY,
    OPERATOR,
    Coordinator,
    SimNode,
    StepClock,
    TaskFeed,
    start_coordinator,
    task_request,
)
from tests.services.market_world import register_idle

CAP_MSAT = 50_000
KEY = COORDINATOR_KEY.public_key_hex
"""The coordinator the clients' requests are signed for."""
CLIENT = Identity.from_seed(b"\x61" * 32)
OTHER_CLIENT = Identity.from_seed(b"\x62" * 32)
PRICE = 10_000
SHARE = PRICE * 50_000 // 1_000_000
ESCROW = 2 * (PRICE + SHARE)  # redundancy 2


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def ledger(tmp_path: Path, clock: StepClock) -> SimLedger:
    return SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)


@pytest.fixture
def coordinator(ledger: SimLedger, clock: StepClock) -> Iterator[Coordinator]:
    config = ServiceConfig(
        verification=VerificationPolicy(redundancy=2),
        tick_s=0.05,
        funding=FundingConfig(max_price_msat=CAP_MSAT, budgets_msat={NETWORK_BUDGET: 25_000}),
    )
    running = start_coordinator(memory_repositories(), ledger, clock, config)
    try:
        yield running
    finally:
        running.stop()


def nodes_streaming(coordinator: Coordinator, clock: StepClock, count: int = 2) -> list[
    tuple[SimNode, TaskFeed]
]:
    streams = []
    for _ in range(count):
        node = SimNode.create()
        node.stake(coordinator)
        node.register(coordinator.stub, clock.now())
        streams.append((node, node.open_stream(coordinator.stub, ask_msat=2_000)))
    return streams


def refused(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def fund(
    coordinator: Coordinator, ledger: SimLedger, clock: StepClock, amount: int,
    client: Identity = CLIENT,
) -> None:
    """The client asks for a top-up invoice and pays it from its own Lightning node."""
    reply = coordinator.stub.FundBalance(signed_balance_request(client, amount, clock.now(),
                                                                coordinator_key=KEY))
    assert reply.bolt11 and reply.available_msat == 0
    name = f"client-{client.public_key_hex[:8]}"
    payer = ledger.add_node(name)
    ledger.open_channel(payer, coordinator.treasury, 1_000_000)
    paid = ledger.lightning(name).pay(reply.bolt11, 1_000, 5)
    assert paid.status.value == "succeeded"


def test_an_unsigned_task_is_refused_and_nothing_is_stored_or_dispatched(
    coordinator: Coordinator, clock: StepClock
) -> None:
    (_, feed), *_ = nodes_streaming(coordinator, clock)
    request = task_request("anon")
    request.ClearField("submitter_envelope")
    error = refused(lambda: coordinator.stub.SubmitTask(request))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "submitter_envelope is missing" in (error.details() or "")
    assert coordinator.service.repositories.tasks.get("anon:0") is None
    assert coordinator.service.repositories.funding.escrow("anon") is None
    assert feed.received == []


def test_a_strangers_free_task_is_refused_and_nothing_is_stored_or_dispatched(
    coordinator: Coordinator, clock: StepClock
) -> None:
    (_, feed), *_ = nodes_streaming(coordinator, clock)
    request = task_request("free", max_price_msat=0, submitter=OTHER_CLIENT)
    error = refused(lambda: coordinator.stub.SubmitTask(request))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "price above 0 msat" in (error.details() or "")
    assert coordinator.service.repositories.tasks.get("free:0") is None
    assert coordinator.service.repositories.funding.escrow("free") is None
    assert feed.received == []


def test_a_signature_over_another_price_does_not_submit_the_dearer_task(
    coordinator: Coordinator,
) -> None:
    request = task_request("swap", max_price_msat=1_000)
    request.max_price_msat = CAP_MSAT  # the operator signed 1 000 msat
    error = refused(lambda: coordinator.stub.SubmitTask(request))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert coordinator.service.repositories.tasks.get("swap:0") is None


def test_a_task_signed_for_another_coordinator_is_refused_and_nothing_is_charged(
    coordinator: Coordinator,
) -> None:
    """A testnet coordinator's operator replaying a client's signed task, while fresh, at
    mainnet's does not spend the client's balance there (SRS-SEC-03)."""
    testnet = Identity.from_seed(b"\x0d" * 32).public_key_hex
    request = task_request("elsewhere", coordinator_key=testnet)
    error = refused(lambda: coordinator.stub.SubmitTask(request))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert coordinator.service.sealing.public_key_hex in (error.details() or "")
    assert coordinator.service.repositories.tasks.get("elsewhere:0") is None
    assert coordinator.service.repositories.funding.escrow("elsewhere") is None


def test_a_price_over_the_cap_is_refused_naming_the_cap(coordinator: Coordinator) -> None:
    request = task_request("probe", max_price_msat=CAP_MSAT + 1)
    error = refused(lambda: coordinator.stub.SubmitTask(request))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"maximum price per replica of {CAP_MSAT} msat" in (error.details() or "")
    assert coordinator.service.repositories.tasks.get("probe:0") is None


def test_a_price_of_2_3e18_msat_more_than_all_bitcoin_is_refused(coordinator: Coordinator) -> None:
    request = task_request("probe", max_price_msat=CAP_MSAT)
    request.max_price_msat = 2_300_000_000_000_000_000  # the review's probe
    error = refused(lambda: coordinator.stub.SubmitTask(request))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "max_price_msat" in (error.details() or "")
    assert coordinator.service.repositories.tasks.get("probe:0") is None


def test_a_submitter_without_balance_is_refused_naming_the_msat_missing(
    coordinator: Coordinator, clock: StepClock
) -> None:
    (_, feed), *_ = nodes_streaming(coordinator, clock)
    error = refused(
        lambda: coordinator.stub.SubmitTask(task_request("unpaid", PRICE, submitter=CLIENT))
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert f"{ESCROW} msat missing" in (error.details() or "")
    assert coordinator.service.repositories.tasks.get("unpaid:0") is None
    assert feed.received == []


def test_a_paid_top_up_funds_a_task_whose_nodes_are_paid_from_its_escrow_and_the_rest_refunded(
    coordinator: Coordinator, ledger: SimLedger, clock: StepClock
) -> None:
    streams = nodes_streaming(coordinator, clock)
    fund(coordinator, ledger, clock, 100_000)
    for _ in range(2):  # credited once, however often the balance is read
        balance = coordinator.stub.FundBalance(signed_balance_request(CLIENT, 0, clock.now(),
                                                                      coordinator_key=KEY))
        assert (balance.funded_msat, balance.available_msat) == (100_000, 100_000)
    coordinator.stub.SubmitTask(task_request("paid", PRICE, submitter=CLIENT))
    after = coordinator.stub.FundBalance(signed_balance_request(CLIENT, 0, clock.now(),
                                                                coordinator_key=KEY))
    assert after.available_msat == 100_000 - ESCROW  # escrowed before dispatch
    replay = task_request("paid", PRICE, submitter=CLIENT)
    assert refused(lambda: coordinator.stub.SubmitTask(replay)).code() in {
        grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.UNAUTHENTICATED,
    }
    held = [(node, feed.wait_for(1)[0].task_id) for node, feed in streams]
    for node, replica in held:
        node.commit(coordinator.stub, replica, b"answer", clock.now())
    for node, replica in held:
        node.reveal(coordinator.stub, replica, b"answer", clock.now())
    escrow = coordinator.service.repositories.funding.escrow("paid")
    assert escrow is not None and escrow.closed
    negotiated = 2_000 + (PRICE - 2_000) // 2  # the midpoint, below the funded price
    assert escrow.paid_to_nodes_msat == 2 * negotiated
    assert escrow.treasury_share_msat == 2 * SHARE
    final = coordinator.stub.FundBalance(signed_balance_request(CLIENT, 0, clock.now(),
                                                                coordinator_key=KEY))
    assert final.available_msat == 100_000 - 2 * (negotiated + SHARE)
    assert final.refunded_msat == ESCROW - 2 * (negotiated + SHARE)


def test_network_tasks_past_the_period_budget_are_refused_until_the_next_period(
    coordinator: Coordinator, clock: StepClock
) -> None:
    register_idle(coordinator.service.repositories, 2, clock.now())  # 2 replicas need 2 nodes
    coordinator.stub.SubmitTask(task_request("net-1", PRICE))  # 20 000 of 25 000 msat
    error = refused(lambda: coordinator.stub.SubmitTask(task_request("net-2", PRICE)))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "only 5000 msat of this period's treasury budget is left" in (error.details() or "")
    assert coordinator.service.repositories.tasks.get("net-2:0") is None
    clock.advance(86_400)
    register_idle(coordinator.service.repositories, 2, clock.now(), seed=0x60)  # online again
    coordinator.service.market.admission.forget()  # registered behind the service's back
    coordinator.stub.SubmitTask(task_request("net-2", PRICE))


def test_top_up_invoices_are_bounded_per_request(
    coordinator: Coordinator, clock: StepClock
) -> None:
    huge = signed_balance_request(CLIENT, 10**13, clock.now(), coordinator_key=KEY)
    error = refused(lambda: coordinator.stub.FundBalance(huge))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "amount_msat" in (error.details() or "")


def test_a_paying_client_is_served_while_fresh_keys_fill_the_newcomers_replay_guard(
    ledger: SimLedger, clock: StepClock
) -> None:
    config = ServiceConfig(
        verification=VerificationPolicy(redundancy=2), tick_s=0.05,
        replay_max_entries=10, newcomer_replay_max_entries=4,
    )
    coordinator = start_coordinator(memory_repositories(), ledger, clock, config)
    fund(coordinator, ledger, clock, 100_000)  # its first request: a newcomer's nonce
    flood = []
    for _ in range(10):
        stranger = Identity.from_seed(os.urandom(32))
        request = signed_balance_request(stranger, 0, clock.now(), coordinator_key=KEY)
        try:
            coordinator.stub.FundBalance(request)
            flood.append("served")
        except grpc.RpcError as exc:
            flood.append(exc.details() or "")

    assert flood[:3] == ["served"] * 3
    assert all("replay guard is full" in answer for answer in flood[3:])
    paid = coordinator.stub.FundBalance(signed_balance_request(CLIENT, 0, clock.now(),
                                                               coordinator_key=KEY))
    assert paid.funded_msat == 100_000  # credited, then served from the paying clients' guard
    register_idle(coordinator.service.repositories, 2, clock.now())
    reply = coordinator.stub.SubmitTask(task_request("paid-in-flood", PRICE, submitter=CLIENT))
    assert len(reply.replica_ids) == 2
    late = refused(lambda: coordinator.stub.FundBalance(
        signed_balance_request(OTHER_CLIENT, 1_000, clock.now(), coordinator_key=KEY)
    ))
    assert late.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # a new sponsor waits out the flood
    assert (late.details() or "").startswith("replay-guard-full: replay guard is full; retry after")
    assert 1 <= int(dict(late.trailing_metadata() or ())["retry-after-s"]) <= 601
    coordinator.stop()


def test_a_failing_treasury_node_is_unavailable_over_grpc_naming_no_internal_host(
    coordinator: Coordinator, clock: StepClock, caplog: pytest.LogCaptureFixture
) -> None:
    funding = coordinator.service.funding
    treasury = funding.lightning

    class Unreachable:
        """The treasury's LND behind a broken TLS link: every new invoice fails."""

        def create_invoice(self, amount_msat: int, memo: str, expiry_s: int) -> object:
            raise LightningUnavailable(
                "LND AddInvoice failed at 10.13.37.5:10009: UNAVAILABLE: Tls handshake failed"
            )

        def __getattr__(self, name: str) -> object:
            return getattr(treasury, name)

    funding.lightning = Unreachable()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING):
        error = refused(lambda: coordinator.stub.FundBalance(
            signed_balance_request(CLIENT, 1_000, clock.now(), coordinator_key=KEY)
        ))

    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details() == (
        "lightning-unavailable: the coordinator's Lightning node cannot answer now; try again later"
    )
    assert "10.13.37.5:10009" in caplog.text  # logged for the operator, never sent
    assert coordinator.service.repositories.funding.open_top_ups(CLIENT.public_key_hex) == []


def test_fresh_keys_cannot_make_the_treasury_hold_more_open_top_up_invoices_than_its_cap(
    ledger: SimLedger, clock: StepClock
) -> None:
    config = ServiceConfig(tick_s=0.05, funding=FundingConfig(max_open_top_ups=3))
    coordinator = start_coordinator(memory_repositories(), ledger, clock, config)
    funding = coordinator.service.repositories.funding
    invoices = []
    for _ in range(3):  # each fresh key well within its own 10
        sybil = Identity.from_seed(os.urandom(32))
        invoices.append(coordinator.stub.FundBalance(
            signed_balance_request(sybil, 1_000, clock.now(), coordinator_key=KEY)
        ).bolt11)

    extra = signed_balance_request(Identity.from_seed(os.urandom(32)), 1_000, clock.now(),
                                   coordinator_key=KEY)
    with pytest.raises(grpc.RpcError) as caught:
        coordinator.stub.FundBalance(extra)

    error = caught.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "the treasury holds 3 unpaid top-up invoices" in (error.details() or "")
    assert "max_open_top_ups" in (error.details() or "")
    assert dict(error.trailing_metadata() or ())["retry-after-s"] == "60"
    assert all(invoices) and len(funding.open_top_ups()) == 3  # nothing issued past the cap
    balance = coordinator.stub.FundBalance(signed_balance_request(CLIENT, 0, clock.now(),
                                                                  coordinator_key=KEY))
    assert balance.available_msat == 0  # reading a balance is never refused by the cap
    clock.advance(TOP_UP_EXPIRY_S + 1)  # the invoices expire unpaid: room again
    reply = coordinator.stub.FundBalance(signed_balance_request(CLIENT, 1_000, clock.now(),
                                                                coordinator_key=KEY))
    assert reply.bolt11
    coordinator.stop()


def test_a_task_no_node_takes_expires_and_its_escrow_goes_back_to_the_balance(
    coordinator: Coordinator, ledger: SimLedger, clock: StepClock
) -> None:
    fund(coordinator, ledger, clock, 100_000)
    register_idle(coordinator.service.repositories, 2, clock.now())  # registered, not streaming
    coordinator.stub.SubmitTask(task_request("lonely", PRICE, submitter=CLIENT))
    clock.advance(86_400 + 1)  # past [tasks] queue_timeout_s and [funding] task_ttl_s
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        escrow = coordinator.service.repositories.funding.escrow("lonely")
        if escrow is not None and escrow.closed:
            break
        time.sleep(0.1)
    assert escrow is not None and escrow.closed and escrow.refunded_msat == ESCROW
    view = coordinator.stub.GetTask(pb.GetTaskRequest(task_id="lonely"))
    assert view.outcome == "expired"
    balance = coordinator.stub.FundBalance(signed_balance_request(CLIENT, 0, clock.now(),
                                                                  coordinator_key=KEY))
    assert balance.available_msat == 100_000


# -- reading a verified output: the submitter only, sealed to its key (SRS-SEC-02) ---------------


def verified_paid_task(
    coordinator: Coordinator, ledger: SimLedger, clock: StepClock, task_id: str
) -> list[SimNode]:
    """A task CLIENT paid for, answered b"answer" by two nodes and verified."""
    streams = nodes_streaming(coordinator, clock)
    fund(coordinator, ledger, clock, 100_000)
    coordinator.stub.SubmitTask(task_request(task_id, PRICE, submitter=CLIENT))
    held = [(node, feed.wait_for(1)[0].task_id) for node, feed in streams]
    for node, replica in held:
        node.commit(coordinator.stub, replica, b"answer", clock.now())
    for node, replica in held:
        node.reveal(coordinator.stub, replica, b"answer", clock.now())
    return [node for node, _ in held]


def test_the_submitter_reads_its_verified_output_sealed_to_its_key_and_nobody_else_opens_it(
    coordinator: Coordinator, ledger: SimLedger, clock: StepClock
) -> None:
    nodes = verified_paid_task(coordinator, ledger, clock, "mine")
    coordinator_key = coordinator.service.signer.public_key_hex
    reply = coordinator.stub.GetTaskOutput(signed_output_request(CLIENT, "mine", clock.now(),
                                                                 coordinator_key=KEY))
    assert (reply.task_id, reply.state) == ("mine", "verified")
    assert open_task_output(CLIENT, coordinator_key, reply) == b"answer"
    assert b"answer" not in reply.sealed_output
    for stranger in (nodes[0].identity, OTHER_CLIENT, coordinator.service.signer):
        with pytest.raises(InvalidValue, match="sealed_output: does not open"):
            open_task_output(stranger, coordinator_key, reply)
    with pytest.raises(InvalidValue, match="does not open"):  # not from the coordinator's key
        open_task_output(CLIENT, OTHER_CLIENT.public_key_hex, reply)
    with pytest.raises(InvalidValue, match="another purpose"):  # not this task's result
        open_sealed(
            reply.sealed_output, recipient=CLIENT, sender_public_key=coordinator_key,
            context=result_context("mine:0"),
        )


def test_a_node_another_funded_key_or_the_operator_gets_not_found_as_for_no_task_at_all(
    coordinator: Coordinator, ledger: SimLedger, clock: StepClock
) -> None:
    nodes = verified_paid_task(coordinator, ledger, clock, "private")
    fund(coordinator, ledger, clock, 100_000, OTHER_CLIENT)
    guards = coordinator.service.funding.guards

    def held(key: str) -> int:
        return guards.paying.guard.held_by(key) + guards.newcomers.guard.held_by(key)

    missing = refused(lambda: coordinator.stub.GetTaskOutput(
        signed_output_request(CLIENT, "no-such-task", clock.now(), coordinator_key=KEY)
    ))
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    for reader in (nodes[0].identity, nodes[1].identity, OTHER_CLIENT, OPERATOR):
        request = signed_output_request(reader, "private", clock.now(), coordinator_key=KEY)
        before = held(reader.public_key_hex)
        error = refused(lambda r=request: coordinator.stub.GetTaskOutput(r))
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert error.details() == (missing.details() or "").replace("no-such-task", "private")
        assert held(reader.public_key_hex) == before  # no nonce burned by strangers


def test_a_network_funded_task_is_not_read_over_the_control_plane_even_by_its_operator(
    coordinator: Coordinator, clock: StepClock
) -> None:
    register_idle(coordinator.service.repositories, 2, clock.now())
    coordinator.stub.SubmitTask(task_request("fl-round", PRICE))  # OPERATOR: network budget
    error = refused(lambda: coordinator.stub.GetTaskOutput(
        signed_output_request(OPERATOR, "fl-round", clock.now(), coordinator_key=KEY)
    ))
    assert error.code() is grpc.StatusCode.NOT_FOUND


def test_before_the_verdict_the_submitter_is_told_not_verified_yet_with_the_state(
    coordinator: Coordinator, ledger: SimLedger, clock: StepClock
) -> None:
    streams = nodes_streaming(coordinator, clock)
    fund(coordinator, ledger, clock, 100_000)
    coordinator.stub.SubmitTask(task_request("early", PRICE, submitter=CLIENT))
    (node, feed), _ = streams
    node.commit(coordinator.stub, feed.wait_for(1)[0].task_id, b"answer", clock.now())
    error = refused(lambda: coordinator.stub.GetTaskOutput(
        signed_output_request(CLIENT, "early", clock.now(), coordinator_key=KEY)
    ))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "not verified yet: task early is pending" in (error.details() or "")


def test_an_unsigned_forged_or_replayed_output_request_is_refused(
    coordinator: Coordinator, ledger: SimLedger, clock: StepClock
) -> None:
    verified_paid_task(coordinator, ledger, clock, "guarded")
    unsigned = refused(lambda: coordinator.stub.GetTaskOutput(pb.GetTaskOutputRequest()))
    assert unsigned.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "request_envelope is missing" in (unsigned.details() or "")
    forged = signed_output_request(CLIENT, "guarded", clock.now(), coordinator_key=KEY)
    forged.request_envelope = forged.request_envelope.replace(b"guarded", b"guardee")
    error = refused(lambda: coordinator.stub.GetTaskOutput(forged))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    request = signed_output_request(CLIENT, "guarded", clock.now(), coordinator_key=KEY)
    assert coordinator.stub.GetTaskOutput(request).state == "verified"
    replayed = refused(lambda: coordinator.stub.GetTaskOutput(request))
    assert replayed.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "replay" in (replayed.details() or "")


# -- every funded task ends (owm_core.market.endings) ---------------------------------------------


def test_a_spot_checked_result_no_other_node_can_recheck_is_verified_paid_and_the_rest_refunded(
    ledger: SimLedger, clock: StepClock
) -> None:
    # Before, a drawn spot check waited for a second node for good: GetTask said "pending" and
    # the client's escrow stayed open past the queue time and [funding] task_ttl_s alike.
    config = ServiceConfig(
        verification=VerificationPolicy(redundancy=2, spot_check_rate_ppm=1_000_000),
        tick_s=0.05, queue_timeout_s=3_600,
        funding=FundingConfig(max_price_msat=CAP_MSAT, budgets_msat={NETWORK_BUDGET: 25_000}),
    )
    running = start_coordinator(memory_repositories(), ledger, clock, config)
    try:
        ((node, feed),) = nodes_streaming(running, clock, count=1)  # one node: one replica
        fund(running, ledger, clock, 100_000)
        running.stub.SubmitTask(task_request("checked", PRICE, submitter=CLIENT))
        replica = feed.wait_for(1)[0].task_id
        node.commit(running.stub, replica, b"answer", clock.now())
        node.reveal(running.stub, replica, b"answer", clock.now())  # drawn: a check is due
        view = running.stub.GetTask(pb.GetTaskRequest(task_id="checked"))
        assert view.outcome == "pending"

        clock.advance(3_600 + 1)  # the check waited its queue time; no other node exists
        deadline = time.monotonic() + 15
        while view.outcome == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
            view = running.stub.GetTask(pb.GetTaskRequest(task_id="checked"))

        assert view.outcome == "verified"
        negotiated = 2_000 + (PRICE - 2_000) // 2
        escrow = running.service.repositories.funding.escrow("checked")
        assert escrow is not None and escrow.closed
        assert (escrow.paid_to_nodes_msat, escrow.treasury_share_msat) == (negotiated, SHARE)
        assert escrow.refunded_msat == ESCROW - negotiated - SHARE
        balance = running.stub.FundBalance(signed_balance_request(CLIENT, 0, clock.now(),
                                                                  coordinator_key=KEY))
        assert balance.available_msat == 100_000 - negotiated - SHARE
        reply = running.stub.GetTaskOutput(signed_output_request(CLIENT, "checked", clock.now(),
                                                                 coordinator_key=KEY))
        coordinator_key = running.service.signer.public_key_hex
        assert open_task_output(CLIENT, coordinator_key, reply) == b"answer"
    finally:
        running.stop()
