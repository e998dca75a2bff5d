"""Paying a bare Lightning node by keysend (SRS-LN-08): a GitHub contributor whose node runs no
OWM node daemon hands in no invoice, so the coordinator on LND or Core Lightning pays the bounty
by keysend, exactly once, through the payout outbox. Each test runs against the LND adapter over
the fake LND gRPC server and the CLN adapter over the fake CLN socket (the embedded ledger
underneath), and most against the embedded ledger itself."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from coincurve import PrivateKey

from owm_adapters.github.rest import GitHubRest
from owm_adapters.github.standin import GitHubStandIn
from owm_adapters.lightning.node_invoices import NodeInvoiceSource
from owm_adapters.services.bounty_book import BountyBook, BountyTerms
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.github_bounties import BountyDesk
from owm_adapters.services.payout_renewals import WAITING_FOR_INVOICE
from owm_adapters.services.payouts import PayoutDispatcher
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.errors import InvalidValue, LightningUnavailable
from owm_core.governance.contributions import BountyStatus
from owm_core.identity.keys import Identity
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import Tier
from owm_core.payments.invoices import PendingPayout, payout_request_id
from owm_core.payments.keysend import KEYSEND_REFUSED, KeysendKey
from owm_core.payments.lightning import Invoice, PaymentResult
from owm_core.payments.outbox import INVOICE_EXPIRY_S, RETRY_BASE_S
from owm_core.payments.records import AttemptOutcome, PaymentState, PayoutMethod, RewardPayment
from owm_core.ports.lightning import Lightning
from tests.adapters.lightning.lightning_contract import World, lightning_world
from tests.github_app_support import SECRET, credentials, delivery, standin
from tests.reveals import COORDINATOR_KEY_HEX
from tests.server.harness import StepClock
from tests.services.test_github_bounties import comment, pull_closed

T0 = 1_800_000_000
REPO = "Codertocat/Hello-World"
INSTALLATION = 1
BOUNTY_SAT = 1_000
pytestmark = pytest.mark.timeout(120)


class Crash(BaseException):
    """The process dies at a checkpoint."""


def _crash_after_pay(name: str) -> None:
    if name == "after-pay":
        raise Crash(name)


def _sent_then_crashed(stage: Stage) -> str:
    """A bounty merged and its keysend sent; the process dies before recording the result."""
    stage.dispatcher.checkpoint = _crash_after_pay
    bounty_id = stage.merge_claimed_bounty()
    with pytest.raises(Crash):
        stage.dispatcher.sweep()
    return bounty_id


def _keysend_key() -> KeysendKey:
    from owm_adapters.bootstrap.coordinator import keysend_key_of

    return keysend_key_of(Identity.from_seed(b"\x07" * 32))


@attrs.define
class Stage:
    world: World
    repos: MemoryRepositories
    clock: StepClock
    app: GitHubApp
    dispatcher: PayoutDispatcher
    github: GitHubStandIn
    contributor: str
    key: KeysendKey

    def post(self, event: str, payload: dict[str, Any]) -> None:
        headers, raw = delivery(event, payload)
        self.app.receive(headers["X-Hub-Signature-256"], headers["X-GitHub-Delivery"], event, raw)

    def held_msat(self) -> int:
        with sqlite3.connect(self.world.ledger.path) as db:
            row = db.execute("SELECT COALESCE(SUM(balance_b_msat), 0) FROM sim_ln_channels"
                             " WHERE node_b = ?", (self.contributor,)).fetchone()
        return int(row[0])

    def dispatcher_on(self, lightning: Lightning, **options: Any) -> PayoutDispatcher:
        """Another dispatcher on the same store and treasury (a restart)."""
        invoices = NodeInvoiceSource(self.repos, self.clock, coordinator_key=COORDINATOR_KEY_HEX)
        return PayoutDispatcher(self.repos, lightning, invoices,
                                self.clock, keysend_key=self.key, **options)

    def merge_claimed_bounty(self) -> str:
        self.post("issue_comment", comment(f"/bounty {BOUNTY_SAT}", "maintainer", "OWNER"))
        (bounty,) = self.repos.bounties.for_issue(REPO, 1)
        self.post("issue_comment", comment(f"/claim {self.contributor}", "alice", "NONE"))
        self.post("pull_request", pull_closed(True, "alice", "This fixes #1."))
        return bounty.bounty_id

    def bounty_payment(self, bounty_id: str) -> RewardPayment:
        (payment,) = self.repos.payments.for_task(f"bounty:{bounty_id}")
        return payment


@pytest.fixture(params=["embedded", "lnd", "cln"])
def stage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stage]:
    clock = StepClock(T0)
    repos = memory_repositories()
    with lightning_world(request.param, tmp_path) as world:
        contributor = PrivateKey(b"\x05" * 32).public_key.format(compressed=True).hex()
        world.ledger.open_channel(world.treasury.node_pubkey(), contributor, 10_000_000)
        key = _keysend_key()
        # The coordinator on LND/CLN: invoices only from nodes' daemons, none from this payee.
        invoices = NodeInvoiceSource(repos, clock, coordinator_key=COORDINATOR_KEY_HEX)
        dispatcher = PayoutDispatcher(repos, world.treasury, invoices, clock, keysend_key=key)
        with standin(clock.now) as github:
            github.add_repository(REPO, INSTALLATION)
            port = GitHubRest(github.url, credentials(), clock)
            book = BountyBook(repos, clock, world.treasury, BountyTerms(max_bounty_sat=5_000,
                                                                        budget_sat=8_000))
            desk = BountyDesk(repos, book, dispatcher, port)
            app = GitHubApp(repos, clock, SECRET, port, [desk])
            yield Stage(world, repos, clock, app, dispatcher, github, contributor, key)
        dispatcher.stop()


def test_a_bounty_to_a_node_that_hands_in_no_invoice_is_paid_by_keysend_once(
    stage: Stage,
) -> None:
    bounty_id = stage.merge_claimed_bounty()
    stage.post("pull_request", pull_closed(True, "alice", "This fixes #1."))  # redelivered
    stage.dispatcher.sweep()
    stage.dispatcher.sweep()
    payment = stage.bounty_payment(bounty_id)
    assert payment.method is PayoutMethod.KEYSEND and payment.bolt11 is None
    assert payment.settled and payment.attempts == 1
    assert payment.payment_hash == stage.key.payment_hash(payment.payment_id)
    assert stage.held_msat() == BOUNTY_SAT * 1_000
    assert stage.repos.bounties.get(bounty_id).status is BountyStatus.PAID  # type: ignore[union-attr]
    outcomes = [a.outcome for a in stage.repos.payments.attempts(payment.payment_hash)]
    assert outcomes == [AttemptOutcome.STARTED, AttemptOutcome.SUCCEEDED]
    assert any(payment.payment_hash in c.body for c in stage.github.comments)


def test_a_contribution_reward_enqueued_to_a_bare_node_is_paid_by_keysend(stage: Stage) -> None:
    task_id = f"contribution:{REPO}#7"
    enqueued = stage.dispatcher.enqueue_to(stage.contributor, "ct-" + "7" * 40, task_id,
                                           250_000, f"OWM contribution {task_id}")
    again = stage.dispatcher.enqueue_to(stage.contributor, "ct-" + "7" * 40, task_id,
                                        250_000, f"OWM contribution {task_id}")
    assert again == enqueued and enqueued.method is PayoutMethod.KEYSEND
    stage.dispatcher.sweep()
    assert stage.repos.payments.get(enqueued.payment_hash).settled  # type: ignore[union-attr]
    assert stage.held_msat() == 250_000


def test_a_crash_between_sending_and_recording_pays_once_after_the_restart(
    stage: Stage,
) -> None:
    bounty_id = _sent_then_crashed(stage)
    sent = stage.bounty_payment(bounty_id)
    assert sent.state is PaymentState.IN_FLIGHT  # the money went, the record does not say so
    assert stage.held_msat() == BOUNTY_SAT * 1_000
    stage.clock.advance(60)
    restarted = stage.dispatcher_on(stage.world.treasury)
    restarted.sweep()
    restarted.sweep()
    paid = stage.bounty_payment(bounty_id)
    assert paid.settled and paid.attempts == 1 and paid.payment_hash == sent.payment_hash
    assert stage.held_msat() == BOUNTY_SAT * 1_000


@attrs.define
class ForgetfulLightning:
    """A treasury whose lookups find nothing: only the backend's own refusal to pay a hash
    twice stands between a resend and a second payment."""

    inner: Lightning
    keysends: int = 0

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        return None

    def lookup_keysend(self, key: str) -> PaymentResult | None:
        return None

    def keysend(self, dest_pubkey: str, amount_msat: int, preimage: str, max_fee_msat: int,
                timeout_s: float) -> PaymentResult:
        self.keysends += 1
        return self.inner.keysend(dest_pubkey, amount_msat, preimage, max_fee_msat, timeout_s)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_resend_of_the_same_hash_is_refused_by_the_backend_and_pays_nothing_more(
    stage: Stage,
) -> None:
    """Defence in depth: even when the outbox's lookup misses the first payment, the resend
    carries the same hash (the preimage is derived, not drawn), which LND refuses to pay twice
    (ALREADY_EXISTS), the embedded ledger too, and CLN's adapter finds by its label."""
    bounty_id = _sent_then_crashed(stage)
    forgetful = ForgetfulLightning(stage.world.treasury)
    restarted = stage.dispatcher_on(forgetful)  # type: ignore[arg-type]
    restarted.sweep()
    assert forgetful.keysends == 1  # resent, same hash
    paid = stage.bounty_payment(bounty_id)
    assert paid.settled and paid.attempts == 2
    assert stage.held_msat() == BOUNTY_SAT * 1_000


def _refused_then_waiting(stage: Stage, caplog: pytest.LogCaptureFixture) -> RewardPayment:
    """A bounty whose payee's node refuses keysend: sent once, refused, then waiting."""
    stage.world.ledger.refuse_keysend(stage.contributor)
    with caplog.at_level(logging.ERROR):
        bounty_id = stage.merge_claimed_bounty()
        stage.dispatcher.sweep()
    refused = stage.bounty_payment(bounty_id)
    assert refused.state is PaymentState.FAILED and refused.attempts == 1
    assert refused.keysend_refused
    reason = refused.last_error or ""
    assert reason.startswith(KEYSEND_REFUSED), reason
    assert any(text in reason for text in ("incorrect payment details",
                                           "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS",
                                           "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS")), reason
    assert any(r.levelno == logging.ERROR and "refuses keysend" in r.getMessage()
               for r in caplog.records)
    return refused


def _handed_in(stage: Stage, pending: PendingPayout) -> Invoice:
    """The contributor's node hands in an invoice for ``pending``, as ``SubmitInvoice`` does
    after its checks (dated by the coordinator's clock: the ledger's runs in real time)."""
    made = stage.world.ledger.create_invoice(stage.contributor, pending.amount_msat,
                                             pending.memo, pending.expiry_s)
    invoice = attrs.evolve(made, created_at=stage.clock.now())
    stage.repos.payout_requests.hand_in(pending.payment_id, invoice)
    return invoice


def _keysends_sent(stage: Stage, payment_hash: str) -> int:
    return sum(1 for a in stage.repos.payments.attempts(payment_hash)
               if a.outcome is AttemptOutcome.STARTED)


def test_a_payee_refusing_keysend_waits_for_an_invoice_instead_of_keysend_again(
    stage: Stage, caplog: pytest.LogCaptureFixture,
) -> None:
    refused = _refused_then_waiting(stage, caplog)
    stage.world.ledger.refuse_keysend(stage.contributor, refused=False)  # would take it now
    for _ in range(4):
        stage.clock.advance(600)
        stage.dispatcher.sweep()
    waiting = stage.repos.payments.get(refused.payment_hash)
    assert waiting is not None and waiting.state is PaymentState.FAILED
    assert waiting.keysend_refused
    assert (waiting.last_error or "").startswith(f"{KEYSEND_REFUSED}; {WAITING_FOR_INVOICE}")
    assert _keysends_sent(stage, refused.payment_hash) == 1  # never keysend again
    assert stage.held_msat() == 0
    (pending,) = stage.repos.payout_requests.waiting_for(stage.contributor)
    assert pending.amount_msat == BOUNTY_SAT * 1_000


def test_a_payee_refusing_keysend_is_paid_once_by_the_invoice_its_node_hands_in_later(
    stage: Stage, caplog: pytest.LogCaptureFixture,
) -> None:
    refused = _refused_then_waiting(stage, caplog)
    stage.clock.advance(RETRY_BASE_S)
    stage.dispatcher.sweep()  # asks the invoice source: the payout is listed for the node
    (pending,) = stage.repos.payout_requests.waiting_for(stage.contributor)
    stage.world.ledger.add_node("contributor", secret_key=b"\x05" * 32)
    invoice = _handed_in(stage, pending)
    stage.clock.advance(600)
    stage.dispatcher.sweep()
    stage.dispatcher.sweep()
    (paid,) = stage.repos.payments.for_task(refused.task_id)
    assert paid.settled and paid.method is PayoutMethod.INVOICE and not paid.keysend_refused
    assert paid.payment_hash == invoice.payment_hash
    assert paid.replaced_hashes == (refused.payment_hash,)  # both hashes on the record
    assert stage.held_msat() == BOUNTY_SAT * 1_000  # once
    assert _keysends_sent(stage, refused.payment_hash) == 1
    bounty_id = refused.task_id.removeprefix("bounty:")
    assert stage.repos.bounties.get(bounty_id).status is BountyStatus.PAID  # type: ignore[union-attr]
    assert stage.repos.payout_requests.waiting() == []


@pytest.mark.parametrize("crash_at", ["after-renewal-invoice", "after-renewal", "after-pay"])
def test_a_crash_while_switching_a_refused_keysend_to_an_invoice_pays_once(
    stage: Stage, caplog: pytest.LogCaptureFixture, crash_at: str,
) -> None:
    refused = _refused_then_waiting(stage, caplog)
    stage.world.ledger.add_node("contributor", secret_key=b"\x05" * 32)
    stage.clock.advance(RETRY_BASE_S)
    stage.dispatcher.sweep()
    (pending,) = stage.repos.payout_requests.waiting_for(stage.contributor)
    _handed_in(stage, pending)
    stage.clock.advance(600)

    def crash(name: str) -> None:
        if name == crash_at:
            raise Crash(name)

    stage.dispatcher.checkpoint = crash
    with pytest.raises(Crash):
        stage.dispatcher.sweep()
    stage.world.ledger.refuse_keysend(stage.contributor, refused=False)
    if crash_at == "after-renewal-invoice":  # the invoice taken, never stored: handed in again
        stage.repos.payout_requests.request(pending, keep=100)
        _handed_in(stage, pending)
    restarted = stage.dispatcher_on(stage.world.treasury)
    for _ in range(3):
        stage.clock.advance(600)
        restarted.sweep()
    (paid,) = stage.repos.payments.for_task(refused.task_id)
    assert paid.settled and paid.method is PayoutMethod.INVOICE
    assert paid.replaced_hashes == (refused.payment_hash,)
    assert stage.held_msat() == BOUNTY_SAT * 1_000
    assert _keysends_sent(stage, refused.payment_hash) == 1


def test_a_payout_paid_by_keysend_leaves_no_payout_waiting_for_an_invoice(stage: Stage) -> None:
    bounty_id = stage.merge_claimed_bounty()
    assert stage.repos.payout_requests.waiting() == []  # withdrawn with the keysend record
    stage.dispatcher.sweep()
    assert stage.bounty_payment(bounty_id).settled
    assert stage.repos.payout_requests.waiting() == []


def test_a_waiting_row_left_by_an_earlier_version_is_withdrawn_when_its_payout_is_paid(
    stage: Stage,
) -> None:
    """A keysend payout recorded before waiting rows were withdrawn kept its row; the
    transaction that records the payout paid withdraws it."""
    task_id = f"contribution:{REPO}#9"
    memo = f"OWM contribution {task_id}"
    enqueued = stage.dispatcher.enqueue_to(stage.contributor, "ct-" + "9" * 40, task_id,
                                           250_000, memo)
    left = PendingPayout(payment_id=payout_request_id(stage.contributor, 250_000, memo),
                         payee_pubkey=stage.contributor, amount_msat=250_000, memo=memo,
                         expiry_s=INVOICE_EXPIRY_S, requested_at=T0)
    stage.repos.payout_requests.request(left, keep=100)
    stage.dispatcher.sweep()
    assert stage.repos.payments.get(enqueued.payment_hash).settled  # type: ignore[union-attr]
    assert stage.repos.payout_requests.waiting() == []


def test_with_keysend_off_the_payout_waits_for_an_invoice_as_before(stage: Stage) -> None:
    off = stage.dispatcher_on(stage.world.treasury, keysend=False)
    with pytest.raises(LightningUnavailable, match="hand in an invoice"):
        off.enqueue_to(stage.contributor, "ct-" + "8" * 40, "contribution:x#8", 1_000, "memo")
    assert stage.repos.payments.for_task("contribution:x#8") == []


NEW_KEY = KeysendKey(b"\x01" * 32)
"""The keysend key of the coordinator's replacement signing key."""


def _under_new_key(stage: Stage, checkpoint: Any = None) -> PayoutDispatcher:
    """The coordinator restarted with a replaced signing key (so another keysend key)."""
    made = PayoutDispatcher(stage.repos, stage.world.treasury,
                            NodeInvoiceSource(stage.repos, stage.clock,
                                              coordinator_key=COORDINATOR_KEY_HEX), stage.clock,
                            keysend_key=NEW_KEY)
    if checkpoint is not None:
        made.checkpoint = checkpoint
    return made


def _paid_once_under_the_new_key(stage: Stage, old_hash: str, task_id: str,
                                 amount_msat: int) -> RewardPayment:
    (paid,) = stage.repos.payments.for_task(task_id)
    assert paid.settled and paid.method is PayoutMethod.KEYSEND
    assert paid.payment_hash == NEW_KEY.payment_hash(paid.payment_id)
    assert paid.replaced_hashes == paid.replaced_keysend == (old_hash,)
    assert stage.held_msat() == amount_msat  # once
    return paid


def test_a_keysend_payout_never_sent_under_a_replaced_key_is_paid_once_under_the_new_one(
    stage: Stage,
) -> None:
    enqueued = stage.dispatcher.enqueue_to(stage.contributor, "ct-" + "9" * 40,
                                           "contribution:x#9", 5_000, "memo")
    _under_new_key(stage).sweep()
    paid = _paid_once_under_the_new_key(stage, enqueued.payment_hash, "contribution:x#9", 5_000)
    assert paid.attempts == 1
    assert stage.repos.payments.get(enqueued.payment_hash) is None


def test_a_keysend_that_failed_under_a_replaced_key_is_paid_once_under_the_new_one(
    stage: Stage,
) -> None:
    """Tried under the old key without a route: the old hash is looked up (failed), the
    record moves to the new key's hash and is paid, the old attempt still counted."""
    stranger = PrivateKey(b"\x06" * 32).public_key.format(compressed=True).hex()
    enqueued = stage.dispatcher.enqueue_to(stranger, "ct-" + "5" * 40, "contribution:x#5",
                                           5_000, "memo")
    stage.dispatcher.sweep()
    failed = stage.repos.payments.get(enqueued.payment_hash)
    assert failed is not None and failed.state is PaymentState.FAILED and failed.attempts == 1
    stage.world.ledger.open_channel(stage.world.treasury.node_pubkey(), stranger, 100_000)
    stage.clock.advance(RETRY_BASE_S)
    _under_new_key(stage).sweep()
    (paid,) = stage.repos.payments.for_task("contribution:x#5")
    assert paid.settled and paid.attempts == 2
    assert paid.payment_hash == NEW_KEY.payment_hash(paid.payment_id)
    assert paid.replaced_keysend == (enqueued.payment_hash,)
    assert stage.world.treasury.lookup_keysend(paid.payment_hash) is not None


def test_a_keysend_paid_under_a_replaced_key_but_not_recorded_is_never_paid_again(
    stage: Stage,
) -> None:
    """The old key's attempt arrived, then the process died before recording it, and came back
    with another key: the old hash is looked up, found paid, and recorded; nothing is sent."""
    bounty_id = _sent_then_crashed(stage)
    sent = stage.bounty_payment(bounty_id)
    stage.clock.advance(60)
    restarted = _under_new_key(stage)
    restarted.sweep()
    restarted.sweep()
    paid = stage.bounty_payment(bounty_id)
    assert paid.settled and paid.payment_hash == sent.payment_hash and paid.attempts == 1
    assert stage.held_msat() == BOUNTY_SAT * 1_000
    assert stage.world.treasury.lookup_keysend(NEW_KEY.payment_hash(paid.payment_id)) is None


@pytest.mark.parametrize("crash_at", ["after-renewal", "before-pay", "after-pay"])
def test_a_crash_while_moving_a_keysend_to_the_new_key_pays_once(
    stage: Stage, crash_at: str,
) -> None:
    enqueued = stage.dispatcher.enqueue_to(stage.contributor, "ct-" + "4" * 40,
                                           "contribution:x#4", 5_000, "memo")

    def crash(name: str) -> None:
        if name == crash_at:
            raise Crash(name)

    with pytest.raises(Crash):
        _under_new_key(stage, crash).sweep()
    for _ in range(3):
        stage.clock.advance(600)
        _under_new_key(stage).sweep()
    _paid_once_under_the_new_key(stage, enqueued.payment_hash, "contribution:x#4", 5_000)


def test_a_keysend_moved_to_a_new_key_is_never_sent_back_under_the_old_one(
    stage: Stage,
) -> None:
    """The old key comes back after the record moved to the new key's hash (which may have
    been tried): its hash was used before, so nothing is sent under it; the record waits for
    the key that made its hash, with why."""
    stranger = PrivateKey(b"\x06" * 32).public_key.format(compressed=True).hex()
    enqueued = stage.dispatcher.enqueue_to(stranger, "ct-" + "3" * 40, "contribution:x#3",
                                           5_000, "memo")
    _under_new_key(stage).sweep()  # moved, tried, no route
    moved = stage.repos.payments.get(NEW_KEY.payment_hash(enqueued.payment_id))
    assert moved is not None and moved.state is PaymentState.FAILED
    stage.world.ledger.open_channel(stage.world.treasury.node_pubkey(), stranger, 100_000)
    stage.clock.advance(600)
    stage.dispatcher.sweep()  # the old key again
    stuck = stage.repos.payments.get(moved.payment_hash)
    assert stuck is not None and stuck.state is PaymentState.FAILED
    assert "another coordinator key" in (stuck.last_error or "")
    assert stage.world.treasury.lookup_keysend(enqueued.payment_hash) is None  # never sent
    stage.clock.advance(600)
    _under_new_key(stage).sweep()
    paid = stage.repos.payments.get(moved.payment_hash)
    assert paid is not None and paid.settled


def test_the_preimage_is_never_logged(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bounty_id = stage.merge_claimed_bounty()
    stage.dispatcher.sweep()
    payment = stage.bounty_payment(bounty_id)
    preimage = stage.key.preimage(payment.payment_id)
    assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == payment.payment_hash
    assert payment.settled
    assert preimage not in caplog.text
    assert all(preimage not in c.body for c in stage.github.comments)


@attrs.define
class RefusingLightning:
    """A treasury whose node refuses the keysend request itself (an older CLN without
    ``maxfee``, say): the backend answers InvalidValue."""

    inner: Lightning
    keysends: int = 0

    def keysend(self, dest_pubkey: str, amount_msat: int, preimage: str, max_fee_msat: int,
                timeout_s: float) -> PaymentResult:
        self.keysends += 1
        raise InvalidValue("keysend", "maxfee: unknown parameter")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_keysend_request_the_node_refuses_fails_with_why_and_waits_for_its_backoff(
    stage: Stage,
) -> None:
    refusing = RefusingLightning(stage.world.treasury)
    dispatcher = stage.dispatcher_on(refusing)  # type: ignore[arg-type]
    enqueued = dispatcher.enqueue_to(stage.contributor, "ct-" + "6" * 40, "contribution:x#6",
                                     5_000, "memo")
    dispatcher.sweep()
    dispatcher.sweep()
    failed = stage.repos.payments.get(enqueued.payment_hash)
    assert failed is not None and failed.state is PaymentState.FAILED and failed.attempts == 1
    assert failed.last_error == "refused: keysend: maxfee: unknown parameter"
    assert refusing.keysends == 1  # not resent before the backoff
    stage.clock.advance(RETRY_BASE_S)
    dispatcher.sweep()
    assert refusing.keysends == 2 and stage.held_msat() == 0


def test_a_registered_nodes_lightning_node_is_never_paid_by_keysend(stage: Stage) -> None:
    """Nodes of the network hand their invoices in (SRS-LN-04): a payout to a registered
    node's Lightning node (an FPPS payout, say) waits for its invoice, keysend or not."""
    stage.repos.nodes.add(Node(
        node_id="n" + "4" * 40, public_key="cd" * 32,
        ln_node_uri=LnNodeUri(stage.contributor, "127.0.0.1", 9735), tier=Tier.T1, vram_mb=0,
        ram_mb=1, bandwidth_mbps=1, registered_at=T0, last_heartbeat=T0,
    ))
    with pytest.raises(LightningUnavailable, match="hand in an invoice"):
        stage.dispatcher.enqueue_to(stage.contributor, "fp-" + "4" * 40, "pool:miner#0",
                                    20_000_000, "OWM pool FPPS miner")
    assert stage.repos.payments.for_task("pool:miner#0") == []
    assert [p.payee_pubkey for p in stage.repos.payout_requests.waiting()] == [stage.contributor]
