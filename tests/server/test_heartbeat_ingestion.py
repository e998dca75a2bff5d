"""Batched heartbeat ingestion in the coordinator service (SRS-PERF-04, SRS-NODE-04).

Large batches are verified on the verifier threads and a cold node cache is filled in one go;
these tests pin that the verdicts, their order and the persisted heartbeats stay exactly those
of checking each heartbeat on its own.
"""

from __future__ import annotations

import os

import attrs

from owm_adapters.services.coordinator.heartbeats import PRUNE_EVERY_S, prune_activity
from owm_adapters.services.coordinator.service import (
    VERIFY_CHUNK,
    WARM_KNOWN_MIN,
    CoordinatorService,
    ServiceConfig,
)
from owm_adapters.storage.memory import memory_repositories
from owm_core.identity import envelopes
from owm_core.identity.envelopes import CapabilityManifest, EnvelopeKind, Heartbeat
from owm_core.identity.keys import Identity
from owm_core.nodes.activity import KEEP_S
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import Tier
from owm_core.ports.repositories import Repositories
from tests.server.harness import COORDINATOR_KEY, StepClock

MANIFEST = CapabilityManifest(
    tier=Tier.T1, vram_mb=0, ram_mb=16_000, bandwidth_mbps=100, gpu_vendor="none", gpu_count=0
)
LN_URI = LnNodeUri.parse("02" + "11" * 32 + "@127.0.0.1:9735")


class NoLightning:
    def channels_with(self, peer_pubkey: str) -> list[object]:
        return []


def registered(repos: Repositories, count: int, now: int) -> list[Identity]:
    """``count`` nodes with their manifests, stored directly (registration is not under test)."""
    who = [Identity.from_seed(os.urandom(32)) for _ in range(count)]
    for identity in who:
        repos.nodes.add(
            Node(
                node_id=identity.node_id,
                public_key=identity.public_key_hex,
                ln_node_uri=LN_URI,
                tier=Tier.T1,
                vram_mb=0,
                ram_mb=16_000,
                bandwidth_mbps=100,
                registered_at=now - 600,
                last_heartbeat=now - 600,
            )
        )
        manifest = envelopes.seal(
            identity, EnvelopeKind.CAPABILITY_MANIFEST, MANIFEST, os.urandom(16), now - 600,
            audience=COORDINATOR_KEY.public_key_hex,
        )
        repos.manifests.put(manifest)
    return who


def heartbeat(who: Identity, seq: int, now: int, digest: str = MANIFEST.digest()) -> bytes:
    body = Heartbeat(node_id=who.node_id, seq=seq, manifest_digest=digest)
    sealed = envelopes.seal(who, EnvelopeKind.HEARTBEAT, body, os.urandom(16), now,
                            audience=COORDINATOR_KEY.public_key_hex)
    return envelopes.to_bytes(sealed)


def service(repos: Repositories, clock: StepClock) -> CoordinatorService:
    return CoordinatorService(repos, NoLightning(), clock, ServiceConfig(),  # type: ignore[arg-type]
                              coordinator_key=COORDINATOR_KEY)  # fmt: skip


def mixed_batch(who: list[Identity], now: int) -> tuple[list[bytes], list[str]]:
    """A batch large enough for the verifier threads, with one bad heartbeat of each kind."""
    good = [heartbeat(w, seq, now) for seq in range(1, 8) for w in who]
    stranger = Identity.from_seed(os.urandom(32))
    sealed = envelopes.from_bytes(good[5])
    forged = envelopes.to_bytes(attrs.evolve(sealed, body={**sealed.body, "seq": 99}))
    bad = [
        (10, b"{not json", "envelope"),
        (40, forged, "signature does not verify"),
        (70, good[3], "already used"),
        (120, heartbeat(stranger, 1, now), "not registered"),
        (200, heartbeat(who[0], 9, now, digest="ab" * 32), "manifest"),
    ]
    for at, raw, _ in bad:
        good.insert(at, raw)
    return good, [reason for _, _, reason in bad]


def test_a_large_mixed_batch_gets_the_verdicts_of_checking_each_heartbeat_alone() -> None:
    clock = StepClock()
    repos = memory_repositories()
    who = registered(repos, WARM_KNOWN_MIN + 8, clock.now())
    batch, reasons = mixed_batch(who, clock.now())
    assert len(batch) >= 2 * VERIFY_CHUNK
    one_by_one, together = service(repos, clock), service(repos, clock)
    try:
        alone = [one_by_one.heartbeats([raw], wait=False) for raw in batch]

        result = together.heartbeats(batch, wait=False)

        assert result.accepted == sum(r.accepted for r in alone) == len(batch) - len(reasons)
        assert result.rejected == len(reasons)
        assert list(result.errors) == [e for r in alone for e in r.errors]
        assert all(reason in error for reason, error in zip(reasons, result.errors, strict=True))
    finally:
        one_by_one.stop()
        together.stop()


def test_a_batch_from_many_uncached_nodes_fills_the_cache_and_persists_every_node() -> None:
    clock = StepClock()
    repos = memory_repositories()
    who = registered(repos, WARM_KNOWN_MIN * 3, clock.now())
    coordinator = service(repos, clock)
    coordinator.start()
    try:
        result = coordinator.heartbeats([heartbeat(w, 1, clock.now()) for w in who])

        assert (result.accepted, result.rejected) == (len(who), 0)
        assert {n.node_id for n in repos.nodes.list() if n.last_heartbeat == clock.now()} == {
            w.node_id for w in who
        }
    finally:
        coordinator.stop()
    assert not coordinator.ingest.verifiers_running  # shut down with the service


def test_every_admitted_heartbeat_is_counted_in_its_minute_and_rejected_ones_are_not() -> None:
    clock = StepClock()
    repos = memory_repositories()
    who = registered(repos, 3, clock.now())
    minute = clock.now() - clock.now() % 60
    coordinator = service(repos, clock)
    coordinator.start()
    try:
        beats = [heartbeat(w, seq, clock.now()) for seq in (1, 2) for w in who]
        result = coordinator.heartbeats([*beats, beats[0]])  # the replay is refused
        coordinator.heartbeat(heartbeat(who[0], 3, clock.now()))

        assert (result.accepted, result.rejected) == (6, 1)
        counted = {(c.minute, c.node_id): c.count for c in repos.heartbeat_activity.since(0)}
        assert counted == {
            (minute, who[0].node_id): 3, (minute, who[1].node_id): 2, (minute, who[2].node_id): 2
        }
    finally:
        coordinator.stop()


def test_heartbeat_counts_older_than_two_days_are_pruned_at_most_once_an_hour() -> None:
    repos = memory_repositories()
    now = 1_800_000_000 - 1_800_000_000 % 60
    repos.heartbeat_activity.add({(now - KEEP_S - 60, "old"): 1, (now - 60, "new"): 1})
    assert prune_activity(repos, now, None) == now
    assert [c.node_id for c in repos.heartbeat_activity.since(0)] == ["new"]
    repos.heartbeat_activity.add({(now - KEEP_S - 60, "old"): 1})
    assert prune_activity(repos, now + PRUNE_EVERY_S - 1, now) == now  # too soon: kept
    assert len(repos.heartbeat_activity.since(0)) == 2
    assert prune_activity(repos, now + PRUNE_EVERY_S, now) == now + PRUNE_EVERY_S
    assert [c.node_id for c in repos.heartbeat_activity.since(0)] == ["new"]
