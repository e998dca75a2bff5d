"""The coordinator a devnet's ``coordinator.toml`` describes runs the GitHub App with its bounty
desk, and the desk's lapse worker (claimed bounties whose issue closed without the claimant's
merge) is one of the jobs only the leading coordinator runs (SRS-LN-08, SRS-COORD-05); its
contribution records are stamped through the process's one calendar, stopped with the
coordinator."""

from __future__ import annotations

import threading
from pathlib import Path

import attrs

from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.devnet import coordinator_settings, provision
from owm_adapters.bootstrap.settings import CoordinatorSettings, FlSection, KnowledgeSection
from owm_adapters.devnet.layout import DevnetLayout
from owm_adapters.services.github_bounties import BountyDesk
from owm_adapters.services.github_contributions import ContributionFlow
from owm_adapters.services.workers import OnStop
from owm_adapters.storage.memory import memory_repositories
from owm_core.nodes.tiers import Tier


def without_fl(tmp_path: Path) -> CoordinatorSettings:
    """A devnet coordinator's settings (the GitHub App with credentials) with FL and the
    knowledge service off."""
    layout = DevnetLayout.at(tmp_path / "devnet")
    provision(layout, 1, now=1_800_000_000, traffic_interval_s=15, query_interval_s=60,
              tier=Tier.T1)  # fmt: skip
    return attrs.evolve(coordinator_settings(layout), fl=FlSection(enabled=False),
                        knowledge=KnowledgeSection(enabled=False))  # fmt: skip


def test_the_bounty_lapses_run_as_a_singleton_job_of_the_coordinator(tmp_path: Path) -> None:
    coordinator = build_coordinator(without_fl(tmp_path), store=memory_repositories(),
                                    slashing=False)  # fmt: skip
    assert coordinator.github is not None and coordinator.singletons is not None
    (desk,) = [h for h in coordinator.github._handlers.values() if isinstance(h, BountyDesk)]
    jobs = dict(coordinator.singletons.jobs)
    assert jobs["bounty-lapses"] is desk.lapses
    # failed handlers are retried from the store, by one coordinator at a time
    assert jobs["github-handler-retries"] is coordinator.github.retries
    assert coordinator.github.retries not in coordinator.workers.items


def test_without_fl_the_contribution_records_calendar_is_stopped_with_the_coordinator(
    tmp_path: Path,
) -> None:
    coordinator = build_coordinator(without_fl(tmp_path), store=memory_repositories(),
                                    slashing=False)  # fmt: skip
    assert coordinator.github is not None
    (flow,) = [h for h in coordinator.github._handlers.values() if isinstance(h, ContributionFlow)]
    calendar = flow._ports.timestamping
    stops = [w.stop_call for w in coordinator.workers.items if isinstance(w, OnStop)]
    assert stops == [calendar.stop]  # type: ignore[attr-defined]
    before = set(threading.enumerate())
    calendar.stamp(b"\x01" * 32)  # opens the calendar: its flusher thread starts
    (flusher,) = [t for t in threading.enumerate() if t.name == "owm-calendar" and t not in before]
    assert flusher.is_alive()
    coordinator.workers.start()
    coordinator.workers.stop()
    assert not flusher.is_alive()
