"""Nodes on real Lightning networks get paid: the node's own LND issues the invoice, hands it
to the coordinator over gRPC, the coordinator checks amount, payee and expiry and pays it
(SRS-LN-04)."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from owm_adapters.bootstrap import logs
from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.settings import (
    ConfigError,
    CoordinatorLightning,
    CoordinatorSettings,
    load_coordinator_settings,
)
from owm_adapters.clock import SystemClock
from owm_adapters.control_plane.grpc_client import GrpcControlPlane
from owm_adapters.control_plane.in_process import InProcessControlPlane
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.lightning.lnd import LndLightning
from owm_adapters.lightning.node_invoices import NodeInvoiceSource
from owm_adapters.node.daemon import DaemonSettings, NodeDaemon
from owm_adapters.node.invoicing import PayoutInvoicer
from owm_adapters.node.task_log import TaskLog
from owm_adapters.node.task_runner import Limits, TaskRunner
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import InvalidValue, LightningUnavailable, NotFound
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, PayoutInvoice, PayoutQuery, ReplayGuard
from owm_core.identity.keys import Identity
from owm_core.identity.payout_requests import sign_payout_request
from owm_core.market.tasks import TaskRequest, VerificationMode, VerificationPolicy
from owm_core.nodes.control_plane import ControlPlaneRefused
from owm_core.nodes.tiers import Tier
from owm_core.payments.invoices import PendingPayout
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.payments.records import PaymentState, RewardPayment
from owm_server.grpc.server import CoordinatorServer
from tests.adapters.lightning.lightning_contract import FORCE_CLOSE_MACAROON, PAYMENT_MACAROON
from tests.fakes.lnd_server import FakeLnd
from tests.node.conftest import MANIFEST, T1_STAKE_SAT, Network
from tests.node.test_daemon import wait_for
from tests.reveals import COORDINATOR_KEY_HEX
from tests.tls_support import COORDINATOR_TLS, client_tls

pytestmark = pytest.mark.timeout(120)

MONTH_S = 30 * 24 * 3600


def sealed(identity: Identity, body: PayoutQuery | PayoutInvoice) -> bytes:
    envelope = envelopes.seal(identity, body.KIND, body, os.urandom(16), int(time.time()),
                              audience=COORDINATOR_KEY_HEX)
    return envelopes.to_bytes(envelope)


def write_lnd_files(fake: FakeLnd, folder: Path, macaroon: bytes) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tls.cert").write_bytes(fake.cert_pem)
    (folder / "admin.macaroon").write_bytes(macaroon)
    return folder / "tls.cert", folder / "admin.macaroon"


@attrs.frozen
class PaidOnLnd:
    """What paying a node on LND left behind: the payment, the node's invoice and preimage,
    the node's messages, what still waits, every log line written meanwhile, the macaroons."""

    payment: RewardPayment
    invoice: Invoice
    preimage: str
    said: list[str]
    pending: list[PendingPayout]
    log_text: str
    macaroons: tuple[bytes, ...]


@pytest.fixture(scope="module")
def paid_on_lnd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaidOnLnd]:
    """A coordinator whose treasury is an LND pays a node daemon to an invoice the node's own
    LND created (both over LND's gRPC with macaroons), with every logger at DEBUG writing JSON
    lines as ``owm-coordinator --log-level debug --log-format json`` does."""
    tmp_path = tmp_path_factory.mktemp("paid-on-lnd")
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.configure("DEBUG", "json", stream=stream)
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    treasury_pubkey = ledger.add_node("treasury")
    node_pubkey = ledger.add_node("node-lnd")
    ledger.open_channel(treasury_pubkey, node_pubkey, 2 * T1_STAKE_SAT, push_sat=T1_STAKE_SAT)
    treasury_lnd = FakeLnd(ledger, "treasury", payment_macaroon=PAYMENT_MACAROON,
                           force_close_macaroon=FORCE_CLOSE_MACAROON).start()
    node_macaroon = bytes.fromhex("0201036c6e6402f801") + os.urandom(32)
    node_lnd = FakeLnd(ledger, "node-lnd", payment_macaroon=node_macaroon,
                       force_close_macaroon=os.urandom(40)).start()
    cert, macaroon = write_lnd_files(treasury_lnd, tmp_path / "treasury", PAYMENT_MACAROON)
    settings = CoordinatorSettings(lightning=CoordinatorLightning(
        backend="lnd", lnd_host=treasury_lnd.target, lnd_tls_cert=str(cert),
        lnd_macaroon=str(macaroon)))
    coordinator = build_coordinator(
        settings, store=memory_repositories(), slashing=False,
        config=ServiceConfig(tick_s=0.05, assignment_timeout_s=30, verification=VerificationPolicy(
            mode=VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0)),
    )
    service = coordinator.service
    assert isinstance(service.lightning, LndLightning)
    assert isinstance(coordinator.node_invoices, NodeInvoiceSource)
    coordinator.workers.start()
    server = CoordinatorServer(service, "127.0.0.1:0", tls=COORDINATOR_TLS, max_workers=16,
                               invoices=coordinator.node_invoices)
    server.start()
    identity = Identity.from_seed(os.urandom(32))
    control = GrpcControlPlane(f"127.0.0.1:{server.port}", tls=client_tls(identity),
                               coordinator_public_key=service.signer.public_key_hex)
    said: list[str] = []
    node_ln = LndLightning(node_lnd.target, tls_cert_pem=node_lnd.cert_pem,
                           payment_macaroon=node_macaroon, rpc_timeout_s=5)
    invoicer = PayoutInvoicer(identity, control, node_ln, SystemClock(),
                              coordinator_public_key=service.signer.public_key_hex,
                              registered_pubkey=node_pubkey, say=said.append)
    data_dir = tmp_path / "node"
    daemon = NodeDaemon(
        identity, control, MANIFEST, TaskRunner(limits=Limits(timeout_s=60)),
        TaskLog.in_dir(data_dir), SystemClock(),
        DaemonSettings(ln_node_uri=f"{node_pubkey}@127.0.0.1:9735", heartbeat_interval_s=0.5,
                       coordinator_public_key=service.sealing.public_key_hex,
                       payment_check_interval_s=0.2, invoice_poll_s=0.2),
        data_dir=data_dir, say=said.append, invoicer=invoicer, ln_signer=node_ln,
    )
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: daemon.state == "serving")
        service.submit_task(TaskRequest(
            task_id="paid-1", task_type="inference", input_schema_id="owm.inference.text",
            input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0,
            gpu_required=False, max_price_msat=10_000), b'{"prompt": "pay me on lnd"}')

        def paid() -> bool:
            payments = service.repositories.payments.for_task("paid-1:0")
            return bool(payments) and payments[0].state is PaymentState.SUCCEEDED

        wait_for(paid, 60)

        [payment] = service.repositories.payments.for_task("paid-1:0")
        invoice = node_ln.lookup_invoice(payment.payment_hash)  # created by the node's LND
        result = service.lightning.lookup_payment(payment.payment_hash)
        assert result is not None and result.preimage is not None
        pending = coordinator.node_invoices.pending()
    finally:
        stop.set()
        thread.join(30)
        control.close()
        server.stop(1)
        coordinator.workers.stop()
        treasury_lnd.stop()
        node_lnd.stop()
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    yield PaidOnLnd(payment, invoice, result.preimage, said, pending, stream.getvalue(),
                    (PAYMENT_MACAROON, node_macaroon))


def test_a_node_on_lnd_is_paid_to_an_invoice_its_own_lnd_created(paid_on_lnd: PaidOnLnd):
    assert paid_on_lnd.invoice.state is InvoiceState.SETTLED
    assert paid_on_lnd.invoice.amount_paid_msat == paid_on_lnd.payment.amount_msat
    assert any("invoice for" in line and "handed in" in line for line in paid_on_lnd.said)
    assert paid_on_lnd.pending == []


def test_no_macaroon_or_preimage_of_the_lnd_payment_reaches_a_log_line(paid_on_lnd: PaidOnLnd):
    """SRS-SEC-07, end to end: both LND macaroons were sent on every call of the flow and the
    preimage came back from the payment, yet no log line at DEBUG holds any of them."""
    text = paid_on_lnd.log_text
    assert paid_on_lnd.payment.payment_hash in text  # the flow was logged, hashes readable
    secrets = [paid_on_lnd.preimage]
    for macaroon in paid_on_lnd.macaroons:
        secrets += [macaroon.hex(), base64.b64encode(macaroon).decode()]
    assert [secret for secret in secrets if secret in text] == []
    assert [secret for secret in secrets if secret in "\n".join(paid_on_lnd.said)] == []


def test_the_node_s_invoice_record_carries_the_payout_amount_and_payment_hash_as_fields(
    paid_on_lnd: PaidOnLnd,
) -> None:
    """With ``--log-format json`` the node's "invoice handed in" line is a record whose fields
    name the payout, its amount and the payment hash the coordinator then paid."""
    entries = [json.loads(line) for line in paid_on_lnd.log_text.splitlines()]
    [handed] = [e for e in entries if e["logger"] == "owm_adapters.node.events"
                and "handed in" in e["message"]]
    payment = paid_on_lnd.payment
    assert (handed["payment_hash"], handed["amount_msat"]) == (
        payment.payment_hash, payment.amount_msat)
    assert handed["payment_id"] in handed["message"] and handed["node_id"] == payment.node_id




@pytest.fixture
def source(network: Network) -> Iterator[NodeInvoiceSource]:
    """A node invoice source, served by a gRPC server that ``network.url`` now names."""
    invoices = NodeInvoiceSource(network.service.repositories, SystemClock(),
                                 coordinator_key=network.coordinator_key)
    server = CoordinatorServer(network.service, "127.0.0.1:0", tls=COORDINATOR_TLS, max_workers=16,
                               invoices=invoices)
    server.start()
    network.server, original = server, network.server
    yield invoices
    network.server = original
    server.stop(1)


def registered(network: Network, alias: str):
    node = network.node(alias)
    plane = InProcessControlPlane(network.service)
    manifest = envelopes.to_bytes(envelopes.seal(
        node.identity, EnvelopeKind.CAPABILITY_MANIFEST, MANIFEST, os.urandom(16),
        int(time.time()), audience=COORDINATOR_KEY_HEX))
    plane.register(node.identity, manifest, MANIFEST.digest(), node.ln_node_uri, None,
                   node.ln_signer)
    return node


def pending_payout(source: NodeInvoiceSource, payee: str, amount_msat: int = 5_000) -> str:
    with pytest.raises(LightningUnavailable, match="waiting for Lightning node"):
        source.invoice_for(payee, amount_msat, "OWM reward job-9:0", MONTH_S)
    [pending] = [p for p in source.pending() if p.payee_pubkey == payee]
    return pending.payment_id


def test_a_wrong_amount_or_wrong_payee_invoice_is_refused_with_a_clear_reason(
    network: Network, source: NodeInvoiceSource
):
    node = registered(network, "ln-checked")
    payment_id = pending_payout(source, node.ln_pubkey)
    plane = GrpcControlPlane(network.url, tls=client_tls(node.identity),
                             coordinator_public_key=network.coordinator_key)
    try:
        [listed] = plane.pending_payouts(sealed(node.identity,
                                                PayoutQuery(node_id=node.identity.node_id)))
        assert (listed.payment_id, listed.amount_msat, listed.payee_pubkey) == (
            payment_id, 5_000, node.ln_pubkey)

        short = network.ledger.create_invoice(node.ln_pubkey, 4_000, "short", MONTH_S)
        with pytest.raises(ControlPlaneRefused) as refused:
            plane.submit_invoice(sealed(node.identity, PayoutInvoice(payment_id, short.bolt11)))
        assert refused.value.status == "invalid-value"
        assert "bolt11: is for 4000 msat; the payout is exactly 5000 msat" in refused.value.reason

        other = network.ledger.add_node("someone-else")
        diverted = network.ledger.create_invoice(other, 5_000, "diverted", MONTH_S)
        with pytest.raises(ControlPlaneRefused) as refused:
            plane.submit_invoice(sealed(node.identity, PayoutInvoice(payment_id, diverted.bolt11)))
        assert f"is payable to Lightning node {other}, not to the node registered" \
            in refused.value.reason

        stale = network.ledger.create_invoice(node.ln_pubkey, 5_000, "stale", 60)
        with pytest.raises(ControlPlaneRefused, match="expires too soon"):
            plane.submit_invoice(sealed(node.identity, PayoutInvoice(payment_id, stale.bolt11)))

        with pytest.raises(LightningUnavailable):  # nothing usable was handed in
            source.invoice_for(node.ln_pubkey, 5_000, "OWM reward job-9:0", MONTH_S)

        good = network.ledger.create_invoice(node.ln_pubkey, 5_000, "reward", MONTH_S)
        assert plane.submit_invoice(sealed(node.identity, PayoutInvoice(payment_id, good.bolt11))
                                    ) == good.payment_hash
    finally:
        plane.close()
    got = source.invoice_for(node.ln_pubkey, 5_000, "OWM reward job-9:0", MONTH_S)
    assert got.payment_hash == good.payment_hash and got.amount_msat == 5_000
    assert source.pending() == []


def test_a_node_cannot_see_or_answer_another_nodes_payouts(
    network: Network, source: NodeInvoiceSource
):
    owner = registered(network, "ln-owner")
    thief = registered(network, "ln-thief")
    payment_id = pending_payout(source, owner.ln_pubkey)
    assert source.pending_for(sealed(thief.identity,
                                     PayoutQuery(node_id=thief.identity.node_id))) == []
    bolt11 = network.ledger.create_invoice(thief.ln_pubkey, 5_000, "mine", MONTH_S).bolt11
    with pytest.raises(NotFound, match="from this node"):
        source.submit(sealed(thief.identity, PayoutInvoice(payment_id, bolt11)))
    with pytest.raises(InvalidValue, match="node_id"):
        source.pending_for(sealed(thief.identity, PayoutQuery(node_id=owner.identity.node_id)))


def test_strangers_payout_queries_take_no_place_in_the_replay_guard(network: Network) -> None:
    guard = ReplayGuard(max_entries=2)
    source = NodeInvoiceSource(network.service.repositories, SystemClock(), guard=guard,
                               coordinator_key=network.coordinator_key)
    for _ in range(5):
        stranger = Identity.from_seed(os.urandom(32))
        with pytest.raises(NotFound, match="no node is registered"):
            source.pending_for(sealed(stranger, PayoutQuery(node_id=stranger.node_id)))
    assert len(guard) == 0
    owner = registered(network, "ln-owner")
    assert source.pending_for(sealed(owner.identity,
                                     PayoutQuery(node_id=owner.identity.node_id))) == []


def test_the_invoicer_reports_a_refusal_once_with_the_coordinators_reason(
    network: Network, source: NodeInvoiceSource
):
    node = registered(network, "ln-misconfigured")
    pending_payout(source, node.ln_pubkey)
    wrong_node = network.ledger.lightning(network.ledger.add_node("not-registered"))
    said: list[str] = []
    plane = InProcessControlPlane(network.service, invoices=source)
    invoicer = PayoutInvoicer(node.identity, plane, wrong_node, SystemClock(),
                              coordinator_public_key=network.coordinator_key,
                              registered_pubkey=node.ln_pubkey, say=said.append)
    assert invoicer.poll_once() == [] and invoicer.poll_once() == []
    assert said[0].startswith("warning: your Lightning node is ")
    refusals = [line for line in said if "invoice refused" in line]
    assert len(refusals) == 1 and "not to the node registered" in refusals[0]
    right = PayoutInvoicer(node.identity, plane,
                           network.ledger.lightning(node.ln_pubkey), SystemClock(),
                           coordinator_public_key=network.coordinator_key, say=said.append)
    assert len(right.poll_once()) == 1


def test_an_invoice_the_nodes_own_lightning_refuses_holds_back_no_other_payout(
    network: Network, source: NodeInvoiceSource
):
    """The node's Lightning node refuses to make one invoice (an amount over its limit, say):
    that payout is reported once and the payouts after it are still handed in."""
    node = registered(network, "ln-picky")
    for amount_msat in (9_000, 5_000):  # the one refused is listed first: the oldest
        with pytest.raises(LightningUnavailable, match="waiting for Lightning node"):
            source.invoice_for(node.ln_pubkey, amount_msat, "OWM reward", MONTH_S)
    said: list[str] = []
    picky = Picky(network.ledger.lightning(node.ln_pubkey), refused_msat=9_000)
    plane = InProcessControlPlane(network.service, invoices=source)
    invoicer = PayoutInvoicer(node.identity, plane, picky, SystemClock(),
                              coordinator_public_key=network.coordinator_key, say=said.append)
    assert len(invoicer.poll_once()) == 1 and invoicer.poll_once() == []
    refusals = [line for line in said if "invoice refused" in line]
    assert len(refusals) == 1 and "too large (test)" in refusals[0]
    assert [p.amount_msat for p in source.pending()] == [9_000]


@attrs.define
class Picky:
    """A Lightning node that refuses to make invoices of one amount."""

    inner: Any
    refused_msat: int

    def create_invoice(self, amount_msat: int, memo: str, expiry_s: int) -> Any:
        if amount_msat == self.refused_msat:
            raise InvalidValue("amount_msat", "too large (test)")
        return self.inner.create_invoice(amount_msat, memo, expiry_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_coordinator_accepts_lnd_and_cln_backends_and_names_what_is_missing(tmp_path: Path):
    config = tmp_path / "coordinator.toml"
    config.write_text('[lightning]\nbackend = "lnd"\nlnd_macaroon = "/x/admin.macaroon"\n')
    assert load_coordinator_settings(config).lightning.backend == "lnd"
    config.write_text('[lightning]\nbackend = "cln"\n')
    with pytest.raises(ConfigError, match="cln_socket"):
        load_coordinator_settings(config)
    config.write_text('[lightning]\nbackend = "lnd"\n')
    with pytest.raises(ConfigError, match="lnd_macaroon"):
        load_coordinator_settings(config)
    config.write_text('[lightning]\nbackend = "eclair"\n')
    with pytest.raises(ConfigError, match="'embedded', 'lnd' or 'cln'"):
        load_coordinator_settings(config)


def test_a_node_on_core_lightning_hands_in_invoices_from_its_rpc_socket(
    network: Network, source: NodeInvoiceSource, tmp_path: Path
):
    from owm_adapters.lightning.cln import ClnLightning
    from tests.fakes.cln_server import FakeCln

    node = registered(network, "ln-cln")
    payment_id = pending_payout(source, node.ln_pubkey, 7_000)
    socket_path = str(tmp_path / "lightning-rpc")
    cln = FakeCln(network.ledger, node.ln_pubkey, socket_path).start()
    try:
        plane = GrpcControlPlane(network.url, tls=client_tls(node.identity),
                             coordinator_public_key=network.coordinator_key)
        invoicer = PayoutInvoicer(node.identity, plane,
                                  ClnLightning(socket_path), SystemClock(),
                                  coordinator_public_key=network.coordinator_key,
                                  registered_pubkey=node.ln_pubkey, say=lambda _line: None)
        [payment_hash] = invoicer.poll_once()
        assert any(r.get("method") == "invoice" for r in cln.requests)
    finally:
        cln.stop()
    invoice = source.invoice_for(node.ln_pubkey, 7_000, "OWM reward job-9:0", MONTH_S)
    assert invoice.payment_hash == payment_hash and payment_id not in {
        p.payment_id for p in source.pending()}
    paid = network.ledger.lightning(network.treasury).pay(invoice.bolt11, 1_000, 10)
    assert paid.status.value == "succeeded"


def test_payout_requests_carry_the_coordinators_signature_and_forged_ones_are_not_invoiced(
    network: Network, source: NodeInvoiceSource
):
    from owm_core.identity.payout_requests import verify_payout_request

    node = registered(network, "ln-forged")
    pending_payout(source, node.ln_pubkey)
    plane = GrpcControlPlane(network.url, tls=client_tls(node.identity),
                             coordinator_public_key=network.coordinator_key)
    try:
        [listed] = plane.pending_payouts(sealed(node.identity,
                                                PayoutQuery(node_id=node.identity.node_id)))
        verify_payout_request(network.coordinator_key, listed, node.identity.public_key_hex)
    finally:
        plane.close()
    impostor = Identity.from_seed(os.urandom(32)).public_key_hex  # not this coordinator's key
    lightning = network.ledger.lightning(node.ln_pubkey)
    twin = InProcessControlPlane(network.service, invoices=source)
    invoicer = PayoutInvoicer(node.identity, twin, lightning, SystemClock(),
                              coordinator_public_key=impostor, say=lambda _line: None)
    # Its query is signed for the impostor: refused here (SRS-SEC-03), nothing handed in.
    with pytest.raises(ControlPlaneRefused, match="signature"):
        invoicer.poll_once()
    assert [p.payee_pubkey for p in source.pending()].count(node.ln_pubkey) == 1
    # Told the right key, the node invoices nothing a man in the middle re-signed.
    forger = Identity.from_seed(os.urandom(32))
    misled = PayoutInvoicer(node.identity, ForgingPlane(twin, forger), lightning, SystemClock(),
                            coordinator_public_key=network.coordinator_key,
                            say=lambda _line: None)  # fmt: skip
    assert misled.poll_once() == []
    assert [p.payee_pubkey for p in source.pending()].count(node.ln_pubkey) == 1


class ForgingPlane:
    """A control plane behind a man in the middle who re-signs every payout request it passes
    on with ``forger``'s key instead of the coordinator's."""

    def __init__(self, inner: InProcessControlPlane, forger: Identity) -> None:
        self.inner, self.forger = inner, forger

    def pending_payouts(self, query: bytes) -> list[PendingPayout]:
        signer = envelopes.from_bytes(query).signer
        return [sign_payout_request(self.forger, p, signer)
                for p in self.inner.pending_payouts(query)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
