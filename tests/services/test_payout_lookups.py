"""How the payment dispatcher looks a payout's hashes up on the treasury's node (SRS-LN-04,
SRS-LN-08): an invoice's hash by the hash alone (``Lightning.lookup_payment``), a keysend
payout's hash, and every replaced hash that was one, as a keysend attempt
(``Lightning.lookup_keysend``). On Core Lightning the second is a read of every payment the
node ever made (``listpays`` has no label filter), so an invoice payout must never cost one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
from coincurve import PrivateKey

from owm_adapters.lightning.node_invoices import NodeInvoiceSource
from owm_adapters.services.payouts import PayoutDispatcher
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.identity.keys import Identity
from owm_core.payments.keysend import KeysendKey
from owm_core.payments.lightning import Invoice, PaymentResult
from owm_core.payments.outbox import RETRY_BASE_S
from owm_core.payments.records import PaymentState, PayoutMethod
from owm_core.ports.lightning import Lightning
from tests.adapters.lightning.lightning_contract import World, lightning_world
from tests.reveals import COORDINATOR_KEY_HEX
from tests.server.harness import StepClock

pytestmark = pytest.mark.timeout(120)

AMOUNT_MSAT = 50_000


class Crash(BaseException):
    """The process dies at a checkpoint."""


def _crash_before_pay(name: str) -> None:
    if name == "before-pay":
        raise Crash(name)


def _key() -> KeysendKey:
    from owm_adapters.bootstrap.coordinator import keysend_key_of

    return keysend_key_of(Identity.from_seed(b"\x08" * 32))


@attrs.define
class Lookups:
    """The treasury's node, recording which lookup each hash was asked with."""

    inner: Lightning
    by_hash: list[str] = attrs.field(factory=list)
    by_key: list[str] = attrs.field(factory=list)

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        self.by_hash.append(payment_hash)
        return self.inner.lookup_payment(payment_hash)

    def lookup_keysend(self, key: str) -> PaymentResult | None:
        self.by_key.append(key)
        return self.inner.lookup_keysend(key)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@attrs.define
class Treasury:
    world: World
    repos: MemoryRepositories
    clock: StepClock
    payee: str
    lookups: Lookups

    def dispatcher(self) -> PayoutDispatcher:
        """A dispatcher over the store and the treasury (a restart makes a new one)."""
        return PayoutDispatcher(self.repos, self.lookups,  # type: ignore[arg-type]
                                NodeInvoiceSource(self.repos, self.clock,
                                                  coordinator_key=COORDINATOR_KEY_HEX), self.clock,
                                keysend_key=_key())

    def payee_invoice(self, memo: str) -> Invoice:
        return self.world.ledger.create_invoice(self.payee, AMOUNT_MSAT, memo, 3600)

    def unfiltered_listpays(self) -> int:
        """How many ``listpays`` without a hash filter the CLN socket answered."""
        assert self.world.cln is not None
        return sum(1 for r in self.world.cln.requests if r["method"] == "listpays"
                   and not (r.get("params") or {}).get("payment_hash"))


@contextmanager
def _treasury(backend: str, directory: Path) -> Iterator[Treasury]:
    # The ledger dates invoices by the real clock: the coordinator's starts there too.
    clock = StepClock(int(time.time()))
    with lightning_world(backend, directory) as world:
        payee = world.ledger.add_node("payee", secret_key=b"\x09" * 32)
        world.ledger.open_channel(world.treasury.node_pubkey(), payee, 1_000_000)
        yield Treasury(world, memory_repositories(), clock, payee, Lookups(world.treasury))


@pytest.fixture(params=["embedded", "lnd", "cln"])
def treasury(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Treasury]:
    with _treasury(request.param, tmp_path) as built:
        yield built


@pytest.fixture
def cln(tmp_path: Path) -> Iterator[Treasury]:
    with _treasury("cln", tmp_path) as built:
        yield built


def test_an_invoice_payout_on_cln_never_reads_every_payment_of_the_node(cln: Treasury) -> None:
    """Each invoice payout is sent, and after a crash looked up again, by its hash: ``listpays``
    always carries the hash (before, a hash CLN had not seen cost a read of every pay)."""
    dispatcher = cln.dispatcher()
    cln.world.treasury.keysend(PrivateKey().public_key.format(compressed=True).hex(), 1_000,
                               "21" * 32, 0, 1)  # the node has made other payments
    assert cln.world.cln is not None
    cln.world.cln.requests.clear()
    first = dispatcher.enqueue_to(cln.payee_invoice("one").bolt11, "ct-" + "1" * 40,
                                  "contribution:x#1", AMOUNT_MSAT, "one")
    dispatcher.sweep()
    crashed = dispatcher.enqueue_to(cln.payee_invoice("two").bolt11, "ct-" + "2" * 40,
                                    "contribution:x#2", AMOUNT_MSAT, "two")
    dispatcher.checkpoint = _crash_before_pay  # in flight, never sent: CLN never saw the hash
    with pytest.raises(Crash):
        dispatcher.sweep()
    restarted = cln.dispatcher()
    restarted.sweep()
    for payment in (first, crashed):
        paid = cln.repos.payments.get(payment.payment_hash)
        assert paid is not None and paid.settled and paid.method is PayoutMethod.INVOICE
    assert crashed.payment_hash in cln.lookups.by_hash  # looked up before it was sent
    assert cln.lookups.by_key == []
    assert cln.unfiltered_listpays() == 0


def test_a_keysend_payout_is_looked_up_as_a_keysend_and_an_invoice_by_its_hash(
    treasury: Treasury,
) -> None:
    """A payee refusing keysend, then paid by the invoice its node hands in: the keysend hash
    is looked up as a keysend attempt every time, also once it is a replaced hash, and the
    invoice by its hash (LND, CLN and the embedded ledger)."""
    dispatcher = treasury.dispatcher()
    treasury.world.ledger.refuse_keysend(treasury.payee)
    keysend = dispatcher.enqueue_to(treasury.payee, "ct-" + "3" * 40, "contribution:x#3",
                                    AMOUNT_MSAT, "three")
    assert keysend.method is PayoutMethod.KEYSEND
    dispatcher.sweep()
    treasury.clock.advance(RETRY_BASE_S)
    dispatcher.sweep()  # the keysend hash is looked up; the payout waits for an invoice
    assert treasury.lookups.by_key == [keysend.payment_hash]
    assert treasury.lookups.by_hash == []
    (pending,) = treasury.repos.payout_requests.waiting_for(treasury.payee)
    invoice = attrs.evolve(treasury.payee_invoice(pending.memo), created_at=treasury.clock.now())
    treasury.repos.payout_requests.hand_in(pending.payment_id, invoice)
    treasury.clock.advance(600)
    dispatcher.sweep()
    (paid,) = treasury.repos.payments.for_task("contribution:x#3")
    assert paid.state is PaymentState.SUCCEEDED and paid.payment_hash == invoice.payment_hash
    assert paid.replaced_hashes == paid.replaced_keysend == (keysend.payment_hash,)
    assert set(treasury.lookups.by_key) == {keysend.payment_hash}
    assert len(treasury.lookups.by_key) >= 3  # before the renewal and before the send
    assert invoice.payment_hash not in treasury.lookups.by_key

