"""``[provenance]`` builds the coordinator's timestamping: the embedded calendar, or remote
calendars (the public ones by default) checked against the coordinator's own chain source."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from owm_adapters.bootstrap.provenance import calendar_url_of, ots_chain_of, timestamping_of
from owm_adapters.bootstrap.settings import (
    PUBLIC_CALENDARS,
    ConfigError,
    NodeChain,
    ProvenanceSection,
)
from owm_adapters.provenance.embedded import EmbeddedProvenance
from owm_adapters.provenance.ots import describe
from owm_core.errors import CalendarUnavailable
from tests.adapters.provenance.calendar_world import ServedCalendar, served_calendar

DIGEST = hashlib.sha256(b"owm-base@owm-v0.3.0").digest()


def own_chain(served: ServedCalendar) -> NodeChain:
    return NodeChain(local_chain=str(served.provenance.chain_path))


def test_the_defaults_stay_on_the_embedded_calendar_and_name_the_public_calendars() -> None:
    section = ProvenanceSection()
    assert section.backend == "embedded" and section.calendars == PUBLIC_CALENDARS
    assert section.min_calendars == 2 and section.submit_timeout_s == 30


def test_a_served_embedded_calendar_writes_its_served_url_into_pending_attestations(
    tmp_path: Path,
) -> None:
    section = ProvenanceSection(calendar_listen="127.0.0.1:8765")
    assert calendar_url_of(section) == "http://127.0.0.1:8765"
    built = timestamping_of(section, tmp_path)
    assert isinstance(built, EmbeddedProvenance) and built.url == "http://127.0.0.1:8765"
    built.stop()


CALENDARS = ProvenanceSection(backend="calendars")


@pytest.mark.parametrize(
    ("section", "chain", "message"),
    [
        (ProvenanceSection(backend="opentimestamps"), None, "not supported"),
        (CALENDARS, None, "needs a chain"),
        (ProvenanceSection(backend="calendars", min_calendars=5),
         NodeChain(bitcoin_rpc="http://x:8332"), "min_calendars"),
        (ProvenanceSection(submit_timeout_s=31), None, "submit_timeout_s"),
        (ProvenanceSection(upgrade_every_s=60, upgrade_max_backoff_s=30), None,
         "upgrade_max_backoff_s"),
        (CALENDARS, NodeChain(local_chain="/nonexistent/chain.sqlite3"), "does not exist"),
    ],
)
def test_unusable_provenance_settings_are_refused_naming_the_key(
    section: ProvenanceSection, chain: NodeChain | None, message: str, tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=message):
        timestamping_of(section, tmp_path, chain)


def test_remote_calendars_stamp_upgrade_and_verify_against_the_coordinators_chain(
    tmp_path: Path,
) -> None:
    with served_calendar(tmp_path / "cal") as served:
        section = ProvenanceSection(
            backend="calendars", calendars=(served.url,), min_calendars=1,
            allow_private_calendars=True,
        )
        ots = timestamping_of(section, tmp_path, own_chain(served))
        pending = ots.stamp(DIGEST)
        assert describe(pending).pending_uris == (served.url,)
        served.provenance.flush()
        verdict = ots.verify(ots.upgrade(pending), DIGEST)
    assert verdict.ok and verdict.height == 1


def test_the_api_names_the_chain_proofs_are_checked_against(tmp_path: Path) -> None:
    embedded = timestamping_of(ProvenanceSection(), tmp_path)
    assert ots_chain_of(embedded) == "embedded-regtest"
    chain = NodeChain(local_chain=str(tmp_path / "c.sqlite3"), network="regtest")
    (tmp_path / "c.sqlite3").touch()
    remote = timestamping_of(CALENDARS, tmp_path, chain)
    assert ots_chain_of(remote) == "bitcoin-regtest"


def test_remote_calendars_on_loopback_are_refused_unless_the_devnet_allows_them(
    tmp_path: Path,
) -> None:
    with served_calendar(tmp_path / "cal") as served:
        section = ProvenanceSection(backend="calendars", calendars=(served.url,), min_calendars=1)
        with pytest.raises(CalendarUnavailable, match="loopback"):
            timestamping_of(section, tmp_path, own_chain(served)).stamp(DIGEST)
