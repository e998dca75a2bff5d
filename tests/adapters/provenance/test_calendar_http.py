"""Remote OpenTimestamps calendars over HTTP: the protocol against OWM's own calendar served on
loopback, the public defaults, and the no-SSRF rules for calendars a proof names."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from pathlib import Path

import pytest
from opentimestamps.calendar import DEFAULT_AGGREGATORS
from opentimestamps.core.notary import PendingAttestation
from opentimestamps.core.op import OpSHA256
from opentimestamps.core.timestamp import DetachedTimestampFile, Timestamp

from owm_adapters.bootstrap.settings import PUBLIC_CALENDARS
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.provenance.calendar_http import (
    DEFAULT_CALENDARS,
    CalendarDirectory,
    HttpCalendar,
    whitelist_of,
)
from owm_adapters.provenance.ots import OpenTimestamps, describe, serialise_proof
from owm_core.access.destinations import DestinationPolicy
from owm_core.errors import CalendarUnavailable
from owm_core.provenance.versions import Network
from tests.adapters.provenance.calendar_world import served_calendar, silent_server

DEVNET = DestinationPolicy.devnet()
DIGEST = hashlib.sha256(b"owm-geo@owm-v0.9.0").digest()


def test_the_default_calendars_are_the_ones_the_reference_client_submits_to() -> None:
    assert DEFAULT_CALENDARS == tuple(DEFAULT_AGGREGATORS) == PUBLIC_CALENDARS


def test_a_digest_stamped_over_http_is_upgraded_and_verifies_once_the_calendar_commits_it(
    tmp_path: Path,
) -> None:
    with served_calendar(tmp_path / "cal") as served:
        calendar = HttpCalendar(served.url, policy=DEVNET)
        chain = LocalChain(served.provenance.chain_path)
        ots = OpenTimestamps(chain, Network.REGTEST, [calendar])
        pending = ots.stamp(DIGEST)
        assert describe(pending).pending_uris == (served.url,)
        assert ots.upgrade(pending) == pending  # not committed yet: still pending (HTTP 404)
        served.provenance.flush()
        confirmed = ots.upgrade(pending)
        verdict = ots.verify(confirmed, DIGEST)
    assert verdict.ok and verdict.height == 1


def test_a_calendar_on_loopback_is_refused_outside_a_devnet(tmp_path: Path) -> None:
    with served_calendar(tmp_path / "cal") as served:
        calendar = HttpCalendar(served.url)  # the strict default policy
        with pytest.raises(CalendarUnavailable, match="loopback"):
            calendar.submit(DIGEST)
        assert served.provenance.endpoints().calendar.pending_count() == 0


def test_an_unreachable_calendar_is_logged_and_the_others_still_acknowledge_the_stamp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with served_calendar(tmp_path / "cal") as served, silent_server(None) as hanging:
        calendars = [HttpCalendar(hanging, policy=DEVNET, timeout_s=0.5),
                     HttpCalendar(served.url, policy=DEVNET)]
        ots = OpenTimestamps(LocalChain(served.provenance.chain_path), Network.REGTEST,
                             calendars)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            proof = ots.stamp(DIGEST)
        assert time.monotonic() - started < 5
    assert describe(proof).pending_uris == (served.url,)
    assert any(hanging in r.getMessage() for r in caplog.records)


def test_no_calendar_acknowledging_within_the_timeout_fails_the_stamp(tmp_path: Path) -> None:
    with silent_server(None) as hanging:
        ots = OpenTimestamps(None, calendars=[HttpCalendar(hanging, policy=DEVNET,
                                                           timeout_s=0.3)])
        with pytest.raises(CalendarUnavailable, match="0 of 1 calendars accepted"):
            ots.stamp(DIGEST)


def test_a_calendar_redirect_is_not_followed(tmp_path: Path) -> None:
    metadata = b"http://169.254.169.254/latest/meta-data/"
    with silent_server(metadata) as redirecting, pytest.raises(CalendarUnavailable, match="302"):
        HttpCalendar(redirecting, policy=DEVNET).submit(DIGEST)


def _proof_pending_at(uri: str) -> bytes:
    detached = DetachedTimestampFile(OpSHA256(), Timestamp(DIGEST))
    detached.timestamp.attestations.add(PendingAttestation(uri))
    return serialise_proof(detached)


def test_an_upgrade_never_contacts_a_calendar_off_the_whitelist() -> None:
    contacted: list[str] = []

    def resolver(host: str, port: int) -> list:
        contacted.append(host)
        return []

    directory = CalendarDirectory(whitelist_of(), resolver=resolver)
    ots = OpenTimestamps(None, remote_calendar=directory)
    for uri in ("http://169.254.169.254/latest", "https://evil.example.org",
                "http://127.0.0.1:2375"):
        proof = _proof_pending_at(uri)
        assert ots.upgrade(proof) == proof
    assert contacted == []


def test_the_public_calendars_of_the_reference_whitelist_are_followed_on_upgrade() -> None:
    whitelist = whitelist_of()
    assert "https://alice.btc.calendar.opentimestamps.org" in whitelist
    assert "https://finney.calendar.eternitywall.com" in whitelist
    assert "http://alice.btc.calendar.opentimestamps.org" not in whitelist
    assert "https://a.pool.opentimestamps.org" not in whitelist
    assert "https://a.pool.opentimestamps.org" in whitelist_of(PUBLIC_CALENDARS)


def test_a_whitelisted_name_that_resolves_to_a_private_address_is_refused() -> None:
    directory = CalendarDirectory(
        whitelist_of(), resolver=lambda host, port: [ipaddress.ip_address("10.0.0.5")]
    )
    calendar = directory("https://alice.btc.calendar.opentimestamps.org")
    assert calendar is not None
    with pytest.raises(CalendarUnavailable, match="private"):
        calendar.get_timestamp(DIGEST)


def test_a_proof_pending_under_an_earlier_calendar_url_is_still_upgraded_after_a_restart(
    tmp_path: Path,
) -> None:
    """A devnet restarts its calendar on a fresh port: proofs pending at the old URL must not
    stay pending forever."""
    from owm_adapters.provenance.embedded import EmbeddedProvenance

    before = EmbeddedProvenance(tmp_path, url="http://127.0.0.1:40001", poll_s=3600)
    pending = before.stamp(DIGEST)
    before.stop()
    after = EmbeddedProvenance(tmp_path, url="http://127.0.0.1:40002", poll_s=3600)
    try:
        after.flush()
        confirmed = after.upgrade(pending)
        assert describe(confirmed).bitcoin_heights == (1,)
        assert after.verify(confirmed, DIGEST).ok
    finally:
        after.stop()
