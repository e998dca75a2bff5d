"""LND-specific behaviour: credentials, TLS, unreachable nodes, and secrets kept out of logs and
errors (SRS-SEC-07, SRS-SEC-13)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lndgrpc.compiled import lightning_pb2 as ln

from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.lightning.lnd import LndLightning, _payment
from owm_core.errors import ForceCloseNotPermitted, InvalidValue, LightningUnavailable
from tests.adapters.lightning.lightning_contract import FORCE_CLOSE_MACAROON, PAYMENT_MACAROON
from tests.fakes.lnd_server import FakeLnd, self_signed_certificate

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeLnd]:
    ledger = SimLedger(tmp_path / "ln.sqlite")
    treasury = ledger.add_node("treasury")
    peer = ledger.add_node("peer")
    ledger.open_channel(treasury, peer, 500_000)
    server = FakeLnd(ledger, "treasury", payment_macaroon=PAYMENT_MACAROON,
                     force_close_macaroon=FORCE_CLOSE_MACAROON).start()
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _adapter(fake: FakeLnd, macaroon: bytes, **kwargs: object) -> LndLightning:
    return LndLightning(fake.target, tls_cert_pem=fake.cert_pem, payment_macaroon=macaroon,
                        rpc_timeout_s=5, **kwargs)  # type: ignore[arg-type]


def test_a_wrong_macaroon_is_refused_as_lightning_unavailable(fake: FakeLnd) -> None:
    adapter = _adapter(fake, b"\x02not-the-macaroon")
    with pytest.raises(LightningUnavailable, match="UNAUTHENTICATED"):
        adapter.create_invoice(1_000, "", 60)


def test_the_force_close_macaroon_cannot_be_used_for_payments(fake: FakeLnd) -> None:
    adapter = _adapter(fake, FORCE_CLOSE_MACAROON)
    with pytest.raises(LightningUnavailable, match="PERMISSION_DENIED"):
        adapter.node_pubkey()


def test_the_payment_macaroon_cannot_force_close_even_if_configured_as_both(
    fake: FakeLnd,
) -> None:
    with pytest.raises(InvalidValue, match="distinct"):
        _adapter(fake, PAYMENT_MACAROON, force_close_macaroon=PAYMENT_MACAROON)
    payment_only = _adapter(fake, PAYMENT_MACAROON)
    (channel,) = payment_only.channels_with(fake.ledger.lightning("peer").node_pubkey())
    with pytest.raises(ForceCloseNotPermitted, match="SRS-SEC-13"):
        payment_only.force_close(channel.channel_point)


def test_a_server_with_another_tls_certificate_is_not_trusted(fake: FakeLnd) -> None:
    _, other_cert = self_signed_certificate()
    adapter = LndLightning(fake.target, tls_cert_pem=other_cert,
                           payment_macaroon=PAYMENT_MACAROON, rpc_timeout_s=5)
    with pytest.raises(LightningUnavailable, match="UNAVAILABLE"):
        adapter.node_pubkey()


def test_a_node_that_is_down_is_lightning_unavailable() -> None:
    _, cert = self_signed_certificate()
    adapter = LndLightning(f"127.0.0.1:{_free_port()}", tls_cert_pem=cert,
                           payment_macaroon=PAYMENT_MACAROON, rpc_timeout_s=5)
    with pytest.raises(LightningUnavailable, match="UNAVAILABLE"):
        adapter.channels_with("02" + "11" * 32)


def test_missing_credential_files_are_reported_without_their_contents(tmp_path: Path) -> None:
    with pytest.raises(LightningUnavailable, match="TLS certificate"):
        LndLightning.from_files("127.0.0.1:10009", tls_cert_path=tmp_path / "tls.cert",
                                payment_macaroon_path=tmp_path / "payment.macaroon")


def test_macaroons_never_reach_logs_errors_or_reprs(
    fake: FakeLnd, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SRS-SEC-07: every failing path, with all logging at DEBUG, leaks no credential."""
    caplog.set_level(logging.DEBUG)
    wrong = b"\x02wrong-but-still-secret" + bytes(range(40))
    (tmp_path / "tls.cert").write_bytes(fake.cert_pem)
    (tmp_path / "pay.macaroon").write_bytes(wrong)
    wrong_close = b"\x02another-wrong-secret" + bytes(range(40, 80))
    (tmp_path / "close.macaroon").write_bytes(wrong_close)
    rejected = LndLightning.from_files(
        fake.target, tls_cert_path=tmp_path / "tls.cert",
        payment_macaroon_path=tmp_path / "pay.macaroon",
        force_close_macaroon_path=tmp_path / "close.macaroon", rpc_timeout_s=5,
    )
    down = LndLightning(f"127.0.0.1:{_free_port()}", tls_cert_pem=fake.cert_pem,
                        payment_macaroon=PAYMENT_MACAROON,
                        force_close_macaroon=FORCE_CLOSE_MACAROON, rpc_timeout_s=5)
    errors: list[BaseException] = []
    for adapter in (rejected, down):
        for call in (
            lambda a: a.node_pubkey(),
            lambda a: a.create_invoice(1_000, "x", 60),
            lambda a: a.lookup_invoice("ab" * 32),
            lambda a: a.pay(fake.node.create_invoice(1_000, "", 60).bolt11, 0, 1),
            lambda a: a.lookup_payment("ab" * 32),
            lambda a: a.channels_with("02" + "11" * 32),
            lambda a: a.force_close("ab" * 32 + ":0"),
            lambda a: a.wait_invoice("ab" * 32, 0.1),
        ):
            with pytest.raises(LightningUnavailable) as raised:
                call(adapter)
            errors.append(raised.value)
    captured = capsys.readouterr()
    haystack = "\n".join(
        [caplog.text, captured.out, captured.err, repr(rejected), repr(down)]
        + [f"{e!s} {e!r} {e.__cause__!r} {e.__context__!r}" for e in errors]
    ).lower()
    assert "unauthenticated" in haystack and "unavailable" in haystack
    for secret in (wrong, wrong_close, PAYMENT_MACAROON, FORCE_CLOSE_MACAROON):
        assert secret.hex() not in haystack
        assert secret.hex()[8:40] not in haystack
    assert all(e.__cause__ is None and e.__suppress_context__ for e in errors)


def test_a_stake_check_answers_within_five_seconds_even_when_lnd_stalls(
    fake: FakeLnd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registering node's stake check gives up after 5 s when LND stalls, even with a longer RPC
    timeout configured, so registration answers in time (SRS-PERF-13)."""
    stalled = threading.Event()

    def stall(*_args: object, **_kwargs: object) -> list[object]:
        stalled.wait(10)
        return []

    monkeypatch.setattr(fake.ledger, "channels_of", stall)
    adapter = LndLightning(fake.target, tls_cert_pem=fake.cert_pem,
                           payment_macaroon=PAYMENT_MACAROON, rpc_timeout_s=30)
    started = time.monotonic()
    try:
        with pytest.raises(LightningUnavailable, match="DEADLINE_EXCEEDED"):
            adapter.channels_with("02" + "11" * 32)
    finally:
        stalled.set()
    assert time.monotonic() - started < 5.5


def test_a_failure_reason_newer_than_the_bundled_protos_keeps_its_number() -> None:
    """LND's FAILURE_REASON_CANCELED (6) is newer than the bundled protos, which do not name it: a
    payment that failed so is a failed payment, not an error out of every look at it."""
    raw = ln.Payment(payment_hash="ab" * 32, status=ln.Payment.FAILED,
                     failure_reason=6).SerializeToString()  # fmt: skip
    result = _payment(ln.Payment.FromString(raw), "ab" * 32)
    assert result.status.value == "failed"
    assert result.failure_reason == "FAILURE_REASON_6"
    named = _payment(ln.Payment(status=ln.Payment.FAILED, failure_reason=2), "ab" * 32)
    assert named.failure_reason == "FAILURE_REASON_NO_ROUTE"
