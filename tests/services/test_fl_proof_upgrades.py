"""Stamping and upgrading model versions' proofs never holds up an FL round (SRS-PERF-10):
with remote calendars the round closes without stamping, and the upgrade thread stamps,
upgrades and backs off while calendars have nothing new."""

from __future__ import annotations

import threading
from pathlib import Path

from owm_adapters.clock import SystemClock
from owm_adapters.services.fl_releases import FlReleases
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import CalendarUnavailable
from owm_core.fl.rounds import RoundState
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ProofStatus, Verification, new_model_version
from tests.services.fl_world import build_fl_world


class HangingCalendars:
    """A timestamping port whose calendars never answer until released (then fail)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.stamps = 0

    def stamp(self, digest: bytes) -> bytes:
        self.stamps += 1
        self.release.wait(30)
        raise CalendarUnavailable("0 of 4 calendars accepted the digest, 2 needed")

    def upgrade(self, proof: bytes) -> bytes:
        return proof

    def verify(self, proof: bytes, digest: bytes) -> Verification:  # pragma: no cover
        raise AssertionError("never reached: nothing was stamped")


def test_a_round_closes_at_once_while_the_calendars_hang_and_the_upgrade_thread_stamps_later(
    tmp_path: Path,
) -> None:
    world = build_fl_world(tmp_path, stamp_in_background=True)
    world.fl.upgrader.step()  # nothing to do yet
    fl_round = world.honest_round()
    closed = world.fl.close_round(fl_round.number)
    assert closed.state is RoundState.CLOSED
    release = world.repos.releases.get(str(closed.version_id))
    assert release is not None and release.proof_status is ProofStatus.NONE
    (stamped,) = world.fl.upgrader.step()
    assert stamped.proof_status is ProofStatus.PENDING and stamped.ots_proof is not None
    world.provenance.flush()
    (confirmed,) = world.fl.upgrader.step()
    assert confirmed.proof_status is ProofStatus.CONFIRMED


def test_the_round_worker_never_calls_the_calendars(tmp_path: Path) -> None:
    hanging = HangingCalendars()
    world = build_fl_world(tmp_path, stamp_in_background=True)
    world.fl.releases.timestamping = hanging
    fl_round = world.honest_round(nodes=4)
    world.fl.tick()  # closes the round: every replica uploaded
    stored = world.repos.fl_rounds.get_round(fl_round.number)
    assert stored is not None and stored.state is RoundState.CLOSED
    assert hanging.stamps == 0
    hanging.release.set()
    assert world.fl.upgrader.step() == []  # the calendars failed: logged, left for later
    assert hanging.stamps == 1


def test_the_upgrade_thread_backs_off_while_nothing_changes_and_resets_on_progress(
    tmp_path: Path,
) -> None:
    world = build_fl_world(tmp_path, upgrade_every_s=5.0, upgrade_max_backoff_s=40.0)
    fl_round = world.honest_round()
    world.fl.close_round(fl_round.number)  # stamped at once: the local calendar is pending
    periods = []
    for _ in range(5):
        world.fl.upgrader.step()
        periods.append(world.fl.upgrader.period_s)
    assert periods == [10.0, 20.0, 40.0, 40.0, 40.0]
    world.provenance.flush()
    (confirmed,) = world.fl.upgrader.step()
    assert confirmed.proof_status is ProofStatus.CONFIRMED
    assert world.fl.upgrader.period_s == 5.0


def test_a_sub_model_version_published_unstamped_is_stamped_and_confirmed_by_the_upgrade_thread(
    tmp_path: Path,
) -> None:
    """The knowledge base publishes its versions unstamped when calendars are remote."""
    world = build_fl_world(tmp_path, stamp_in_background=True)
    version = new_model_version("owm-v0.1.1", "owm-geo", {}, 1_800_000_000)
    world.repos.releases.add(ModelRelease(version=version, proof_status=ProofStatus.NONE,
                                          checked_at=1_800_000_000))
    (stamped,) = world.fl.upgrader.step()
    assert stamped.release_id == "owm-geo@owm-v0.1.1"
    assert stamped.proof_status is ProofStatus.PENDING
    world.provenance.flush()
    (confirmed,) = world.fl.upgrader.step()
    assert confirmed.proof_status is ProofStatus.CONFIRMED


def test_a_rounds_version_goes_to_an_http_calendar_and_is_confirmed_by_the_upgrade_thread(
    tmp_path: Path,
) -> None:
    """The path of ``[provenance] backend = "calendars"`` end to end, with OWM's calendar served
    over the OpenTimestamps HTTP protocol on loopback in place of the public ones (which the
    test machines cannot reach): the round closes unstamped, the upgrade thread submits the
    digest over ``POST /digest``, keeps the pending proof, fetches the path over ``GET
    /timestamp/…`` once the calendar committed it, and checks it against the chain."""
    from owm_adapters.bootstrap.provenance import timestamping_of
    from owm_adapters.bootstrap.settings import NodeChain, ProvenanceSection
    from owm_adapters.provenance.ots import describe
    from tests.adapters.provenance.calendar_world import served_calendar

    world = build_fl_world(tmp_path / "fl", stamp_in_background=True)
    with served_calendar(tmp_path / "calendar") as served:
        world.fl.releases.timestamping = timestamping_of(
            ProvenanceSection(backend="calendars", calendars=(served.url,), min_calendars=1,
                              allow_private_calendars=True),
            tmp_path / "coordinator", NodeChain(local_chain=str(served.provenance.chain_path)),
        )
        closed = world.fl.close_round(world.honest_round().number)
        release = world.repos.releases.get(str(closed.version_id))
        assert release is not None and release.proof_status is ProofStatus.NONE
        (stamped,) = world.fl.upgrader.step()
        assert stamped.proof_status is ProofStatus.PENDING and stamped.ots_proof is not None
        assert describe(stamped.ots_proof).pending_uris == (served.url,)
        assert world.fl.upgrader.step() == []  # the calendar has not committed it yet
        served.provenance.flush()
        (confirmed,) = world.fl.upgrader.step()
    assert confirmed.proof_status is ProofStatus.CONFIRMED
    assert confirmed.ots_proof is not None and describe(confirmed.ots_proof).bitcoin_heights
    stored = world.repos.releases.get(confirmed.release_id)
    assert stored is not None and stored.proof_status is ProofStatus.CONFIRMED


class PickyCalendars:
    """Calendars that stamp every digest but those in ``refused`` (they fail each time) and
    have nothing to upgrade yet."""

    def __init__(self, refused: set[bytes]) -> None:
        self.refused = refused

    def stamp(self, digest: bytes) -> bytes:
        if digest in self.refused:
            raise CalendarUnavailable("0 of 4 calendars accepted the digest, 2 needed")
        return b"pending:" + digest

    def upgrade(self, proof: bytes) -> bytes:
        raise CalendarUnavailable("no calendar has committed the digest yet")

    def verify(self, proof: bytes, digest: bytes) -> Verification:  # pragma: no cover
        raise AssertionError("never reached: no proof is upgraded")


def test_older_releases_are_stamped_though_a_full_pass_of_newer_ones_never_can_be(
    tmp_path: Path,
) -> None:
    at = 1_800_000_000
    versions = [new_model_version(f"owm-v0.1.{n}", "owm-geo", {}, at + n) for n in range(25)]
    stuck = versions[5:]  # the 20 newest: all that one pass used to look at
    releases = FlReleases(
        memory_repositories(), SystemClock(), PickyCalendars({v.digest_bytes for v in stuck}),
        tmp_path, "owm-geo",
    )
    for version in versions:
        releases.repositories.releases.add(
            ModelRelease(version=version, proof_status=ProofStatus.NONE, checked_at=at + 25)
        )
    for _ in range(3):  # ceil(25 / 20) + 1
        releases.upgrade_proofs()
    statuses = [releases.repositories.releases.get(f"owm-geo@{v.version}") for v in versions]
    assert [r.proof_status for r in statuses if r is not None] == (
        [ProofStatus.PENDING] * 5 + [ProofStatus.NONE] * 20
    )
