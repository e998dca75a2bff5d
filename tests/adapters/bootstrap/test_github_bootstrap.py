"""The coordinator a devnet's ``coordinator.toml`` describes runs the GitHub App with its bounty
desk, and the desk's lapse worker (claimed bounties whose issue closed without the claimant's
merge) is one of the jobs only the leading coordinator runs (SRS-LN-08, SRS-COORD-05)."""

from __future__ import annotations

from pathlib import Path

import attrs

from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.devnet import coordinator_settings, provision
from owm_adapters.bootstrap.settings import FlSection, KnowledgeSection
from owm_adapters.devnet.layout import DevnetLayout
from owm_adapters.services.github_bounties import BountyDesk
from owm_adapters.storage.memory import memory_repositories
from owm_core.nodes.tiers import Tier


def test_the_bounty_lapses_run_as_a_singleton_job_of_the_coordinator(tmp_path: Path) -> None:
    layout = DevnetLayout.at(tmp_path / "devnet")
    provision(layout, 1, now=1_800_000_000, traffic_interval_s=15, query_interval_s=60,
              tier=Tier.T1)  # fmt: skip
    settings = attrs.evolve(coordinator_settings(layout), fl=FlSection(enabled=False),
                            knowledge=KnowledgeSection(enabled=False))  # fmt: skip
    coordinator = build_coordinator(settings, store=memory_repositories(), slashing=False)
    assert coordinator.github is not None and coordinator.singletons is not None
    (desk,) = [h for h in coordinator.github._handlers.values() if isinstance(h, BountyDesk)]
    jobs = dict(coordinator.singletons.jobs)
    assert jobs["bounty-lapses"] is desk.lapses
    # failed handlers are retried from the store, by one coordinator at a time
    assert jobs["github-handler-retries"] is coordinator.github.retries
    assert coordinator.github.retries not in coordinator.workers.items
