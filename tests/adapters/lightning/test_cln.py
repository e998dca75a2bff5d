"""CLN-specific behaviour: the JSON-RPC wire format, an unreachable socket (SRS-LN-01), and force
close over clnrest with a rune restricted to ``method=close`` (SRS-SEC-13, SRS-SEC-07).

The force-close tests run against a fake clnrest (HTTPS on 127.0.0.1, self-signed certificate)
that checks real CLN runes with the ``runes`` package, in front of the fake CLN socket.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import ssl
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from owm_adapters.bootstrap.coordinator import lightning_from, slashing_service_from
from owm_adapters.bootstrap.settings import (
    ConfigError,
    CoordinatorLightning,
    CoordinatorSection,
    CoordinatorSettings,
)
from owm_adapters.lightning.cln import ClnLightning, ClnRestForceClose
from owm_adapters.lightning.embedded import SimLedger, SimLightning
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import (
    ChannelNotFound,
    ForceCloseNotPermitted,
    InvalidValue,
    LightningUnavailable,
)
from owm_core.identity.keys import Identity
from owm_core.payments.lightning import PaymentStatus
from tests.fakes.cln_server import FakeCln
from tests.fakes.clnrest_server import FakeClnRest, RestCall
from tests.fakes.lnd_server import self_signed_certificate
from tests.server.harness import StepClock

pytestmark = pytest.mark.timeout(60)

CLOSE_ONLY = [["method=close"]]


@attrs.define
class Node:
    """The treasury behind a fake CLN socket and a fake clnrest, with a staked peer."""

    ledger: SimLedger
    cln: FakeCln
    rest: FakeClnRest
    peer: SimLightning
    stake_point: str
    directory: Path

    def force_closer(self, rune: str) -> ClnRestForceClose:
        return ClnRestForceClose(self.rest.url, rune, ca_pem=self.rest.ca_file.read_bytes())

    def adapter(self, rune: str | None = None) -> ClnLightning:
        closer = None if rune is None else self.force_closer(rune)
        return ClnLightning(self.cln.socket_path, force_closer=closer, poll_interval_s=0.02)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    ledger = SimLedger(tmp_path / "ln.sqlite")
    treasury = ledger.add_node("treasury")
    peer_key = ledger.add_node("peer")
    stake = ledger.open_channel(treasury, peer_key, 1_000_000, push_sat=100_000)
    directory = tempfile.mkdtemp(prefix="owm-cln-", dir="/tmp")
    cln = FakeCln(ledger, "treasury", os.path.join(directory, "lightning-rpc")).start()
    rest = FakeClnRest(cln, tmp_path / "clnrest", echo_rune_in_errors=True).start()
    yield Node(ledger, cln, rest, ledger.lightning("peer"), stake.channel_point, tmp_path)
    rest.stop()
    cln.stop()
    shutil.rmtree(directory, ignore_errors=True)


def _post(node: Node, method: str, body: dict[str, object], rune: str | None
          ) -> tuple[int, dict[str, Any]]:
    """A raw clnrest request (what any client holding ``rune`` could send)."""
    tls = ssl.create_default_context(cafile=str(node.rest.ca_file))
    port = int(node.rest.url.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=10)
    headers = {"Content-Type": "application/json"} | ({} if rune is None else {"Rune": rune})
    try:
        connection.request("POST", f"/v1/{method}", body=json.dumps(body), headers=headers)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        connection.close()


# -- the JSON-RPC socket ----------------------------------------------------------------------


def test_the_adapter_sends_compact_json_rpc_and_the_reply_echoes_its_id(node: Node) -> None:
    pubkey = ClnLightning(node.cln.socket_path).node_pubkey()
    (request,) = node.cln.requests
    assert request["jsonrpc"] == "2.0" and request["method"] == "getinfo"
    assert pubkey == node.cln.node.node_pubkey()
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(node.cln.socket_path)
        raw.sendall(b'{"jsonrpc":"2.0","id":"probe:1","method":"nosuch","params":{}}')
        reply = b""
        while not reply.endswith(b"\n\n"):
            reply += raw.recv(4096)
    answer = json.loads(reply)
    assert answer["id"] == "probe:1" and answer["error"]["code"] == -32601


def _listpays(node: Node) -> list[dict[str, Any]]:
    return [r.get("params") or {} for r in node.cln.requests if r["method"] == "listpays"]


def test_looking_a_payment_up_asks_listpays_for_its_hash_only(node: Node) -> None:
    """A hash CLN does not know is not searched for among every payment of the node (a
    keysend's label): that read is ``lookup_keysend``'s, asked only of keysend payouts."""
    adapter = node.adapter()
    adapter.keysend(node.peer.node_pubkey(), 1_000, "12" * 32, 0, 5)  # a keysend on the node
    node.cln.requests.clear()
    unknown = "ab" * 32
    assert adapter.lookup_payment(unknown) is None
    invoice = node.peer.create_invoice(2_000, "paid", 3600)
    paid = adapter.pay(invoice.bolt11, 0, 5)
    assert adapter.lookup_payment(invoice.payment_hash) == paid
    assert _listpays(node) == [{"payment_hash": unknown}] + [
        {"payment_hash": invoice.payment_hash}] * 2


def test_looking_a_keysend_up_reads_the_pays_by_label(node: Node) -> None:
    adapter = node.adapter()
    sent = adapter.keysend(node.peer.node_pubkey(), 1_000, "13" * 32, 0, 5)
    node.cln.requests.clear()
    assert adapter.lookup_keysend(sent.payment_hash) == sent
    assert _listpays(node) == [{}]


def test_a_missing_socket_is_lightning_unavailable(tmp_path: Path) -> None:
    adapter = ClnLightning(tmp_path / "nothing-here")
    with pytest.raises(LightningUnavailable, match="CLN getinfo failed"):
        adapter.node_pubkey()


# -- force close over clnrest (SRS-SEC-13) ------------------------------------------------------


def test_without_a_force_close_rune_force_close_is_refused_naming_the_settings(
    node: Node,
) -> None:
    with pytest.raises(ForceCloseNotPermitted, match="SRS-SEC-13") as refused:
        node.adapter().force_close(node.stake_point)
    for setting in ("cln_rest_url", "cln_force_close_rune_file", "cln_rest_ca_file"):
        assert setting in refused.value.message
    assert node.ledger.closed_channel(node.stake_point) is None
    assert node.rest.calls == []


def test_force_close_goes_to_clnrest_with_the_close_only_rune_and_the_channel_ends_closed(
    node: Node,
) -> None:
    adapter = node.adapter(node.rest.create_rune(CLOSE_ONLY))
    (channel,) = adapter.channels_with(node.peer.node_pubkey())
    txid = adapter.force_close(node.stake_point)
    assert node.ledger.closed_channel(node.stake_point) == (txid, True)
    assert node.rest.calls == [
        RestCall("close", {"id": channel.channel_id, "unilateraltimeout": 1}, True, "0", 201)
    ]
    assert "close" not in [r["method"] for r in node.cln.requests]  # not over the socket


def test_payments_over_the_socket_never_carry_the_rune(node: Node) -> None:
    rune = node.rest.create_rune(CLOSE_ONLY)
    adapter = node.adapter(rune)
    invoice = node.peer.create_invoice(25_000, "reward", 600)
    paid = adapter.pay(invoice.bolt11, max_fee_msat=0, timeout_s=5)
    own = adapter.create_invoice(10_000, "query", 600)
    assert paid.status is PaymentStatus.SUCCEEDED
    assert adapter.lookup_invoice(own.payment_hash) == own
    adapter.force_close(node.stake_point)
    assert {"pay", "invoice", "listpeerchannels"} <= {r["method"] for r in node.cln.requests}
    assert rune not in json.dumps(node.cln.requests)
    assert [call.method for call in node.rest.calls] == ["close"]


def test_a_rune_for_another_method_cannot_close(node: Node) -> None:
    pay_rune = node.rest.create_rune([["method=pay"]])
    status, answer = _post(node, "close", {"id": "1x1x0", "unilateraltimeout": 1}, pay_rune)
    assert (status, answer["code"]) == (401, 1502)
    assert answer["message"].startswith("Not permitted: method")
    assert node.ledger.closed_channel(node.stake_point) is None
    with pytest.raises(InvalidValue, match="not restricted to the close method") as refused:
        node.force_closer(pay_rune)
    assert refused.value.field == "cln_force_close_rune_file"
    assert "createrune restrictions='[[\"method=close\"]]'" in refused.value.message
    # Passes the adapter's local check, but lightningd refuses it: the method is not also pay.
    contradictory = node.rest.create_rune([["method=close"], ["method=pay"]])
    with pytest.raises(ForceCloseNotPermitted, match="HTTP 401: 1502: Not permitted: method"):
        node.adapter(contradictory).force_close(node.stake_point)
    assert node.ledger.closed_channel(node.stake_point) is None


@pytest.mark.parametrize("case", ["other node's unrestricted rune", "no rune", "not a rune"])
def test_clnrest_refuses_close_without_a_rune_of_this_node_that_permits_it(
    node: Node, case: str
) -> None:
    stranger = FakeClnRest(node.cln, node.directory / "stranger")
    rune = {
        "other node's unrestricted rune": stranger.create_rune(),
        "no rune": None,
        "not a rune": "bm90IGEgcnVuZQ",
    }[case]
    status, answer = _post(node, "close", {"id": "1x1x0", "unilateraltimeout": 1}, rune)
    assert status in {401, 403}
    assert answer["code"] in {1501, -32602}
    assert answer["message"].startswith("Not authorized") or "rune" in answer["message"]
    assert node.ledger.closed_channel(node.stake_point) is None


def test_a_rejected_rune_never_appears_in_logs_errors_or_reprs(
    node: Node, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = FakeClnRest(node.cln, node.directory / "forger").create_rune(CLOSE_ONLY)
    closer = node.force_closer(forged)
    adapter = ClnLightning(node.cln.socket_path, force_closer=closer)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ForceCloseNotPermitted) as refused:
        adapter.force_close(node.stake_point)
    error = refused.value
    assert "1501" in error.message and "Not derived from master" in error.message
    assert node.rest.calls[-1].status == 401  # the fake quoted the rune back: redacted
    assert "<redacted>" in error.message
    seen = [
        str(error), repr(error), "".join(traceback.format_exception(error)), repr(closer),
        repr(adapter), caplog.text, *(r.getMessage() for r in caplog.records),
        *capsys.readouterr(),
    ]
    assert caplog.records  # the failure was logged ...
    assert not [text for text in seen if forged in text]  # ... without the rune
    assert error.__context__ is None and error.__cause__ is None
    assert node.ledger.closed_channel(node.stake_point) is None


def test_the_documented_hardened_rune_closes_but_cannot_redirect_funds(node: Node) -> None:
    hardened = node.rest.create_rune([["method=close"], ["pnamedestination!"], ["pnum<3"]])
    status, answer = _post(
        node, "close", {"id": "1x1x0", "destination": "bcrt1qattacker"}, hardened
    )
    assert (status, answer["code"]) == (401, 1502)
    txid = node.adapter(hardened).force_close(node.stake_point)
    assert node.ledger.closed_channel(node.stake_point) == (txid, True)


def test_an_unknown_channel_at_clnrest_is_channel_not_found(node: Node) -> None:
    closer = node.force_closer(node.rest.create_rune(CLOSE_ONLY))
    with pytest.raises(ChannelNotFound, match="Short channel id not found"):
        closer.close("999x9x9")


def test_clnrest_with_an_untrusted_certificate_is_unavailable(node: Node) -> None:
    _, other_cert = self_signed_certificate()
    closer = ClnRestForceClose(node.rest.url, node.rest.create_rune(CLOSE_ONLY),
                               ca_pem=other_cert)
    with pytest.raises(LightningUnavailable, match="TLS verification failed"):
        ClnLightning(node.cln.socket_path, force_closer=closer).force_close(node.stake_point)
    assert node.rest.calls == []
    deadline = time.monotonic() + 5  # the server sees the client's alert a moment later
    while not node.rest.connection_errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any("UNKNOWN_CA" in e for e in node.rest.connection_errors)
    assert node.ledger.closed_channel(node.stake_point) is None


@pytest.mark.parametrize("ca_pem", [b"", b"\n", b"not a certificate"])
def test_a_ca_file_without_a_certificate_is_refused_rather_than_trusting_system_roots(
    node: Node, ca_pem: bytes
) -> None:
    with pytest.raises(InvalidValue) as refused:
        ClnRestForceClose(node.rest.url, node.rest.create_rune(CLOSE_ONLY), ca_pem=ca_pem)
    assert refused.value.field == "cln_rest_ca_file"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:3010", "file:///etc/passwd", "https://user:pw@127.0.0.1:3010",
            "127.0.0.1:3010"],
)
def test_only_an_https_clnrest_url_is_accepted(node: Node, url: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        ClnRestForceClose(url, node.rest.create_rune(CLOSE_ONLY),
                          ca_pem=node.rest.ca_file.read_bytes())
    assert refused.value.field == "cln_rest_url"


def test_the_rune_file_must_be_private_and_hold_a_close_only_rune(node: Node) -> None:
    rune = node.rest.create_rune(CLOSE_ONLY)
    rune_file = node.directory / "force-close.rune"
    rune_file.write_text(rune + "\n")
    rune_file.chmod(0o644)
    with pytest.raises(InvalidValue, match="chmod 600") as refused:
        ClnRestForceClose.from_files(node.rest.url, rune_file=rune_file,
                                     ca_file=node.rest.ca_file)
    assert rune not in refused.value.message
    rune_file.chmod(0o600)
    closer = ClnRestForceClose.from_files(node.rest.url, rune_file=rune_file,
                                          ca_file=node.rest.ca_file)
    txid = ClnLightning(node.cln.socket_path, force_closer=closer).force_close(node.stake_point)
    assert node.ledger.closed_channel(node.stake_point) == (txid, True)
    rune_file.write_text(node.rest.create_rune() + "\n")  # unrestricted: refused locally
    with pytest.raises(InvalidValue, match="not restricted to the close method"):
        ClnRestForceClose.from_files(node.rest.url, rune_file=rune_file,
                                     ca_file=node.rest.ca_file)


# -- wiring: coordinator.toml → bootstrap → slashing (SRS-SEC-13) -------------------------------


def _settings(node: Node, **lightning: str) -> CoordinatorSettings:
    return CoordinatorSettings(
        coordinator=CoordinatorSection(
            data_dir=str(node.directory / "data"),
            signing_key_path=str(node.directory / "coordinator.key"),
        ),
        lightning=CoordinatorLightning(backend="cln", cln_socket=node.cln.socket_path,
                                       **lightning),
    )


def _rune_file(node: Node, rune: str) -> str:
    path = node.directory / "force-close.rune"
    path.write_text(rune + "\n")
    path.chmod(0o600)
    return str(path)


def test_slashing_on_cln_refuses_to_start_without_clnrest_and_the_close_only_rune(
    node: Node,
) -> None:
    coordinator = Identity.from_seed(b"\x01" * 32)
    with pytest.raises(ConfigError, match="SRS-SEC-13") as refused:
        slashing_service_from(_settings(node), memory_repositories(), StepClock(),
                              coordinator=coordinator)
    for setting in ("cln_rest_url", "cln_force_close_rune_file", "cln_rest_ca_file"):
        assert f"lightning.{setting}" in refused.value.message
    half = _settings(node, cln_rest_url=node.rest.url)
    with pytest.raises(ConfigError) as refused:
        slashing_service_from(half, memory_repositories(), StepClock(), coordinator=coordinator)
    assert refused.value.message.startswith(
        "lightning.cln_force_close_rune_file, lightning.cln_rest_ca_file: slashing needs"
    )
    with pytest.raises(ConfigError, match=r"^lightning\.cln_rest_ca_file: needed"):
        lightning_from(
            _settings(node, cln_rest_url=node.rest.url,
                      cln_force_close_rune_file=_rune_file(node, "x")),
            force_close=True,
        )


def test_only_the_slashing_handle_holds_the_rune_and_closes_over_clnrest(node: Node) -> None:
    rune = node.rest.create_rune(CLOSE_ONLY)
    settings = _settings(
        node, cln_rest_url=node.rest.url, cln_force_close_rune_file=_rune_file(node, rune),
        cln_rest_ca_file=str(node.rest.ca_file),
    )
    payments = lightning_from(settings)
    with pytest.raises(ForceCloseNotPermitted):
        payments.force_close(node.stake_point)
    service = slashing_service_from(settings, memory_repositories(), StepClock(),
                                    coordinator=Identity.from_seed(b"\x02" * 32))
    assert rune not in repr(service.force_closer)
    txid = service.force_closer.force_close(node.stake_point)
    assert node.ledger.closed_channel(node.stake_point) == (txid, True)
    assert [(c.method, c.status) for c in node.rest.calls] == [("close", 201)]


def test_a_rune_file_others_can_read_stops_the_coordinator_with_a_config_error(
    node: Node,
) -> None:
    rune = node.rest.create_rune(CLOSE_ONLY)
    path = _rune_file(node, rune)
    os.chmod(path, 0o640)
    settings = _settings(node, cln_rest_url=node.rest.url, cln_force_close_rune_file=path,
                         cln_rest_ca_file=str(node.rest.ca_file))
    with pytest.raises(ConfigError, match="chmod 600") as refused:
        lightning_from(settings, force_close=True)
    assert rune not in refused.value.message
