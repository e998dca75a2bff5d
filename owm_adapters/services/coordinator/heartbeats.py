"""Heartbeat ingestion of one coordinator process (SRS-NODE-04, SRS-PERF-04).

:class:`HeartbeatIngest` owns what the core's admission rule
(:func:`owm_core.coordination.heartbeats.admit_heartbeat`) cannot: a cache of every registered
node's key and current manifest digest, the verifier threads (large batches' Ed25519 checks,
which release the GIL), and the writer thread that persists verified heartbeats in batches.
A heartbeat is committed before :meth:`HeartbeatIngest.heartbeat` returns: it waits for the
batch it joined. Each batch moves the nodes' ``last_heartbeat`` forward and, in the same
commit, adds to the per-minute heartbeat counts the dashboard charts
(:mod:`owm_core.nodes.activity`); counts older than ``KEEP_S`` are pruned once an hour.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from owm_adapters.services.coordinator.shared import LockedGuard, Observed, ServiceConfig
from owm_core.coordination.heartbeats import (
    AdmittedHeartbeat,
    HeartbeatFields,
    KnownNode,
    admit_heartbeats,
    verify_heartbeat,
)
from owm_core.coordination.wire import open_envelope
from owm_core.errors import DomainError, NotFound, ReplayGuardFull
from owm_core.identity.envelopes import CapabilityManifest, Envelope, EnvelopeKind, open_body
from owm_core.nodes.activity import KEEP_S, count_heartbeats, merge_counts
from owm_core.nodes.tiers import Tier
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

WARM_KNOWN_MIN = 32
"""A heartbeat batch naming this many uncached nodes loads the whole registry once."""
VERIFY_CHUNK = 128
"""Heartbeats per task handed to the verifier threads (a batch of fewer than two stays inline)."""
PRUNE_EVERY_S = 3600
"""How often the writer forgets heartbeat counts older than ``KEEP_S``."""


@attrs.frozen
class HeartbeatResult:
    """Accepted / rejected counts of a heartbeat batch, with the first few reasons.

    Each reason is ``<code>: <message>``, the form of a gRPC status message, so a node tells a
    replay (``replay-rejected``) from a heartbeat refused only because the replay guard had no
    room (``replay-guard-full``, to be sent again later). ``retry_after_s`` is the soonest a
    heartbeat refused for want of room may be sent again (None: none was).
    """

    accepted: int
    rejected: int
    errors: tuple[str, ...] = ()
    retry_after_s: int | None = None


def _verify_chunk(raws: Sequence[bytes], audience: str) -> list[HeartbeatFields | DomainError]:
    checked: list[HeartbeatFields | DomainError] = []
    for raw in raws:
        try:
            checked.append(verify_heartbeat(raw, audience))
        except DomainError as exc:
            checked.append(exc)
    return checked


def _manifest_of(raw: bytes, audience: str) -> tuple[Envelope, CapabilityManifest]:
    """A node's new signed manifest, verified as signed for ``audience`` (this coordinator)."""
    envelope = open_envelope(raw, EnvelopeKind.CAPABILITY_MANIFEST, "manifest_envelope", audience)
    manifest = open_body(envelope)
    assert isinstance(manifest, CapabilityManifest)
    return envelope, manifest


def prune_activity(repositories: Repositories, now: int, pruned_at: int | None) -> int | None:
    """Forget heartbeat counts older than ``KEEP_S`` unless that ran less than
    ``PRUNE_EVERY_S`` ago; when it last ran."""
    if pruned_at is not None and now - pruned_at < PRUNE_EVERY_S:
        return pruned_at
    repositories.heartbeat_activity.delete_older_than(now - KEEP_S)
    return now


@attrs.define(eq=False)
class HeartbeatIngest:
    """Verify, admit and persist heartbeats in batches (see the module docstring)."""

    repositories: Repositories
    clock: Clock
    config: ServiceConfig
    _guard: LockedGuard
    _observed: Observed
    coordinator_key: str = attrs.field(kw_only=True)  # nodes sign for it (SRS-SEC-03)
    #: The registered nodes' keys and manifest digests.
    _known: dict[str, KnownNode] = attrs.field(init=False, factory=dict)
    _known_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _known_warm_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _known_warmed: bool = attrs.field(init=False, default=False)
    #: The verifier threads, started by the first batch that needs them.
    _verifiers: ThreadPoolExecutor | None = attrs.field(init=False, default=None)
    _verifiers_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    #: The writer's batch: heartbeats and counts waiting to be committed, and which
    #: generations of joiners are committed.
    _hb_cond: threading.Condition = attrs.field(init=False, factory=threading.Condition)
    _hb_write_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _hb_pending: dict[str, int] = attrs.field(init=False, factory=dict)
    _hb_counts: dict[tuple[int, str], int] = attrs.field(init=False, factory=dict)
    _pruned_at: int | None = attrs.field(init=False, default=None)
    _hb_open_gen: int = attrs.field(init=False, default=1)
    _hb_flushed_gen: int = attrs.field(init=False, default=0)
    _stopping: threading.Event = attrs.field(init=False, factory=threading.Event)
    _writer: threading.Thread | None = attrs.field(init=False, default=None)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (a no-op while it runs)."""
        if self._writer is not None:
            return
        self._writer = threading.Thread(target=self._run_writer, name="owm-hb-writer", daemon=True)
        self._writer.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the writer and the verifier threads, then write what is still pending."""
        self._stopping.set()
        with self._hb_cond:
            self._hb_cond.notify_all()
        if self._writer is not None:
            self._writer.join(timeout_s)
            self._writer = None
        with self._verifiers_lock:
            verifiers, self._verifiers = self._verifiers, None
        if verifiers is not None:
            verifiers.shutdown(wait=True)  # lets running batches finish their chunks
        if self._hb_pending:
            self._flush_once()

    @property
    def verifiers_running(self) -> bool:
        """Whether the verifier threads are up (started by the first large batch)."""
        return self._verifiers is not None

    # -- the registry's view -----------------------------------------------------------------

    def remember(self, node_id: str, public_key: str) -> None:
        """Cache a newly registered node's key and the digest of its stored manifest."""
        manifest = self.repositories.manifests.get(node_id)
        if manifest is not None:
            digest = CapabilityManifest.from_body(manifest.body).digest()
            with self._known_lock:
                self._known[node_id] = KnownNode(public_key, digest)

    def forget(self, node_id: str) -> None:
        """Drop a node that left from the cache."""
        with self._known_lock:
            self._known.pop(node_id, None)

    # -- heartbeats --------------------------------------------------------------------------

    def heartbeat(self, raw: bytes, manifest_raw: bytes = b"") -> str:
        """Verify one heartbeat (and an optional new manifest); its node id once persisted."""
        if manifest_raw:
            self._replace_manifest(manifest_raw)
        node_id, at = self._check_heartbeat(raw)
        generation = self._enqueue({node_id: at}, count_heartbeats([(node_id, at)]))
        self._observed.current.heartbeats_accepted(1)
        self._wait_flushed(generation)
        return node_id

    def heartbeats(self, raws: Iterable[bytes], wait: bool = True) -> HeartbeatResult:
        """Verify a batch of heartbeats; persist the accepted ones in the writer's next batch.

        With ``wait`` the call returns once that batch is committed.
        """
        seen: dict[str, int] = {}
        admitted: list[tuple[str, int]] = []
        errors: list[str] = []
        retry_after_s: int | None = None
        accepted = rejected = 0
        checked = self._verify_all(list(raws))
        if not self._known_warmed:
            self._warm_known(checked)
        for item in self._admit_all(checked):
            if isinstance(item, DomainError):
                rejected += 1
                if len(errors) < 5:
                    errors.append(f"{item.code}: {item.message}")
                if isinstance(item, ReplayGuardFull):
                    later = item.retry_after_s
                    retry_after_s = later if retry_after_s is None else min(retry_after_s, later)
                continue
            node_id, at = item
            accepted += 1
            admitted.append((node_id, at))
            if at > seen.get(node_id, -1):
                seen[node_id] = at
        observer = self._observed.current
        if rejected:
            observer.heartbeats_rejected(rejected)
        if seen:
            observer.heartbeats_accepted(accepted)
            generation = self._enqueue(seen, count_heartbeats(admitted))
            if wait:
                self._wait_flushed(generation)
        return HeartbeatResult(accepted, rejected, tuple(errors), retry_after_s)

    def flush(self) -> None:
        """Persist every pending heartbeat now (tests, shutdown)."""
        self._flush_once()

    def _check_heartbeat(self, raw: bytes) -> tuple[str, int]:
        admitted = self._admit_all([verify_heartbeat(raw, self.coordinator_key)])[0]
        if isinstance(admitted, DomainError):
            raise admitted
        return admitted

    def _admit_all(
        self, checked: list[HeartbeatFields | DomainError]
    ) -> list[AdmittedHeartbeat | DomainError]:
        """Admit verified heartbeats by the core's rule (:func:`admit_heartbeats`, SRS-NODE-04)
        with one replay-ledger round trip for the batch when several coordinators share the
        database (SRS-PERF-04, SRS-COORD-05); refusals of verification pass through in place.
        Only the I/O is here: keys and manifest digests come from the cache; the replay guard
        is shared, hence the lock."""
        beats = [
            (c, self._lookup_known(c.node_id, c.manifest_digest))
            for c in checked
            if not isinstance(c, DomainError)
        ]
        now = self.clock.now()
        with self._guard.lock:
            admitted = iter(admit_heartbeats(beats, self._guard.guard, now))
        return [c if isinstance(c, DomainError) else next(admitted) for c in checked]

    def _verify_all(self, raws: list[bytes]) -> list[HeartbeatFields | DomainError]:
        """Signature and shape of every heartbeat in ``raws``, in order (no replay guard yet).

        Why threads: the Ed25519 check releases the GIL, so a large batch is cut into chunks
        verified on one thread per core (started on first use, shut down by :meth:`stop`);
        small batches are verified inline (SRS-PERF-04).
        """
        cores = os.cpu_count() or 1
        if len(raws) < 2 * VERIFY_CHUNK or cores < 2 or self._stopping.is_set():
            return _verify_chunk(raws, self.coordinator_key)
        with self._verifiers_lock:
            if self._verifiers is None:
                self._verifiers = ThreadPoolExecutor(cores, thread_name_prefix="owm-hb-verify")
            verifiers = self._verifiers
        chunks = [raws[i : i + VERIFY_CHUNK] for i in range(0, len(raws), VERIFY_CHUNK)]
        try:
            futures = [verifiers.submit(_verify_chunk, c, self.coordinator_key) for c in chunks]
        except RuntimeError:  # shut down by stop() meanwhile
            return _verify_chunk(raws, self.coordinator_key)
        return [item for future in futures for item in future.result()]

    # -- the known-node cache ----------------------------------------------------------------

    def _warm_known(self, checked: Iterable[HeartbeatFields | DomainError]) -> None:
        """Load every registered node's key and manifest digest into the cache, once.

        Why: a coordinator that has just started would otherwise spend two queries (about a
        millisecond of Python, holding the GIL) on each node's first heartbeat (SRS-PERF-04).
        Only a batch naming at least :data:`WARM_KNOWN_MIN` uncached nodes triggers it, and only
        once per process; cached entries are never overwritten, and later misses (new nodes,
        newer manifests) take the per-node path of :meth:`_lookup_known`.
        """
        with self._known_lock:
            missing = {
                c.node_id
                for c in checked
                if not isinstance(c, DomainError) and c.node_id not in self._known
            }
        if len(missing) < WARM_KNOWN_MIN:
            return
        with self._known_warm_lock:
            if self._known_warmed:
                return
            keys = {n.node_id: n.public_key for n in self.repositories.nodes.list()}
            loaded: dict[str, KnownNode] = {}
            for envelope in self.repositories.manifests.matching(Tier.T1, 0, 0):
                node_id = envelope.signer_node_id
                if keys.get(node_id) is not None:
                    digest = CapabilityManifest.from_body(envelope.body).digest()
                    loaded[node_id] = KnownNode(keys[node_id], digest)
            with self._known_lock:
                for node_id, known in loaded.items():
                    self._known.setdefault(node_id, known)
            self._known_warmed = True

    def _known_node(self, node_id: str) -> KnownNode:
        known = self._lookup_known(node_id)
        if known is None:
            raise NotFound(f"node {node_id} is not registered")
        return known

    def _lookup_known(self, node_id: str, cited_digest: str | None = None) -> KnownNode | None:
        """A registered node's key and current manifest digest (cached), or None; reloaded when
        a heartbeat cites another manifest (another coordinator process may have stored a
        newer one, SRS-COORD-05)."""
        with self._known_lock:
            known = self._known.get(node_id)
            if known is not None and cited_digest not in (None, known.manifest_digest):
                del self._known[node_id]
                known = None
        if known is not None:
            return known
        node = self.repositories.nodes.get(node_id)
        manifest = self.repositories.manifests.get(node_id)
        if node is None or manifest is None:
            return None
        known = KnownNode(node.public_key, CapabilityManifest.from_body(manifest.body).digest())
        with self._known_lock:
            self._known[node_id] = known
        return known

    def _replace_manifest(self, raw: bytes) -> None:
        envelope, manifest = _manifest_of(raw, self.coordinator_key)
        node_id = envelope.signer_node_id
        known = self._known_node(node_id)
        with self._guard.lock:
            self._guard.guard.accept_registered(envelope, known.public_key, self.clock.now())
        self.repositories.manifests.put(envelope)
        with self._known_lock:
            self._known[node_id] = KnownNode(envelope.signer, manifest.digest())

    # -- the batched writer ------------------------------------------------------------------

    def _enqueue(self, seen: dict[str, int], counts: dict[tuple[int, str], int]) -> int:
        with self._hb_cond:
            self._hb_counts = merge_counts(self._hb_counts, counts)
            pending = self._hb_pending
            was_empty = not pending
            for node_id, at in seen.items():
                if at > pending.get(node_id, -1):
                    pending[node_id] = at
            if was_empty or len(pending) >= self.config.heartbeat_batch_max:
                self._hb_cond.notify_all()
            return self._hb_open_gen

    def _wait_flushed(self, generation: int, timeout_s: float = 30.0) -> None:
        with self._hb_cond:
            ok = self._hb_cond.wait_for(
                lambda: self._hb_flushed_gen >= generation or self._writer is None, timeout_s
            )
        if not ok or self._writer is None:
            self._flush_once()

    def _flush_once(self) -> None:
        with self._hb_write_lock:
            with self._hb_cond:
                batch, self._hb_pending = self._hb_pending, {}
                counts, self._hb_counts = self._hb_counts, {}
                generation = self._hb_open_gen
                self._hb_open_gen += 1
            if batch:
                with self.repositories.atomic():
                    self.repositories.nodes.record_heartbeats(batch)
                    self.repositories.heartbeat_activity.add(counts)
            self._pruned_at = prune_activity(self.repositories, self.clock.now(), self._pruned_at)
        with self._hb_cond:
            self._hb_flushed_gen = max(self._hb_flushed_gen, generation)
            self._hb_cond.notify_all()

    def _run_writer(self) -> None:
        flush_s = self.config.heartbeat_flush_s
        batch_max = self.config.heartbeat_batch_max
        stopping = self._stopping.is_set
        while True:
            with self._hb_cond:
                self._hb_cond.wait_for(lambda: bool(self._hb_pending) or stopping())
                if stopping() and not self._hb_pending:
                    return
                deadline = time.monotonic() + flush_s
                while len(self._hb_pending) < batch_max and not stopping():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._hb_cond.wait(remaining)
            try:
                self._flush_once()
            except Exception:
                log.exception("heartbeat batch could not be written; retrying")
                time.sleep(flush_s)
