"""The model releases of federated-learning rounds: weights files and provenance.

:class:`FlReleases` writes each round's model to ``<weights_dir>/<sub_model>/<version>.npz``
(the format ``owm_adapters.node.weights`` installs), stamps its digest through the
:class:`~owm_core.ports.timestamping.Timestamping` port and upgrades pending proofs until they
are confirmed (SRS-NODE-10, SRS-COORD-03).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from owm_adapters.models.architectures import (
    TINYNET,
    architecture,
    flatten,
    from_named,
    named,
    unflatten,
)
from owm_adapters.models.tinynet import GENESIS
from owm_adapters.services.sweep_cursor import SweepCursor
from owm_adapters.services.workers import Loop
from owm_core.errors import DomainError, InvalidValue, NotFound
from owm_core.fl.rounds import FlRound, RoundState
from owm_core.fl.updates import SUB_MODEL_RE
from owm_core.ports.clock import Clock
from owm_core.ports.fl_model import ModelArchitecture
from owm_core.ports.repositories import Repositories
from owm_core.ports.timestamping import Timestamping
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion, ProofStatus, new_model_version

log = logging.getLogger(__name__)

PROOF_BATCH = 20
"""Unconfirmed releases one proof-upgrade pass looks at: the next page after its cursor."""


def flat_weights(
    arrays: Mapping[str, Any], arch: ModelArchitecture | None = None
) -> np.ndarray[Any, Any]:
    """An architecture's named tensors (TinyNet's by default) as one flat float32 vector
    (layout order)."""
    arch = arch or architecture(TINYNET)
    try:
        return flatten(from_named(arch, arrays))
    except ValueError as exc:
        raise InvalidValue("weights", str(exc)) from None


def shaped_weights(
    flat: np.ndarray[Any, Any], arch: ModelArchitecture | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """A flat float32 vector as an architecture's named tensors (TinyNet's by default)."""
    arch = arch or architecture(TINYNET)
    return named(arch, unflatten(flat, arch))


def npz_bytes(version: str, arrays: Mapping[str, np.ndarray[Any, Any]]) -> bytes:
    """The weights file of a version: the named tensors plus ``__version__`` (the node's cache
    format; dunder entries are metadata and not part of the digest)."""
    buffer = io.BytesIO()
    entries: dict[str, Any] = {"__version__": np.array(version), **arrays}
    np.savez(buffer, **entries)
    return buffer.getvalue()


@attrs.define
class FlReleases:
    """Weights files and provenance of the releases FL rounds produce (module docstring)."""

    repositories: Repositories
    clock: Clock
    timestamping: Timestamping
    weights_dir: Path
    sub_model: str
    #: What the rounds train (TinyNet unless ``[fl] model`` says otherwise).
    arch: ModelArchitecture = attrs.field(factory=lambda: architecture(TINYNET))
    #: Stamp while publishing (a local calendar answers at once); else the upgrade pass does.
    stamp_at_publish: bool = True
    _globals: dict[str, np.ndarray[Any, Any]] = attrs.field(factory=dict, init=False)
    _unreadable: set[str] = attrs.field(factory=set, init=False)
    _proofs: SweepCursor[str] = attrs.field(factory=lambda: SweepCursor(""), init=False)

    def latest(self) -> tuple[str, np.ndarray[Any, Any]]:
        """The newest release of the sub-model's closed rounds whose weights are readable
        (as this architecture's), and its flat weights; genesis if none."""
        for fl_round in self.repositories.fl_rounds.rounds(limit=50, state=RoundState.CLOSED):
            if fl_round.sub_model != self.sub_model or fl_round.version_id is None:
                continue
            try:
                return fl_round.version_id, self.weights_of(fl_round.version_id)
            except (NotFound, InvalidValue):
                if fl_round.version_id not in self._unreadable:
                    self._unreadable.add(fl_round.version_id)
                    log.warning("weights of %s are missing or not %s's; FL continues from an "
                                "older version", fl_round.version_id, self.arch.name)
        return GENESIS, self.weights_of(GENESIS)

    def weights_of(self, base: str) -> np.ndarray[Any, Any]:
        """The flat weights of a release produced here, or of ``genesis``."""
        if base not in self._globals:
            if base == GENESIS:
                self._globals[base] = flatten(self.arch.genesis(self.sub_model).parameters())
            else:
                with np.load(io.BytesIO(self.weights_file(base)), allow_pickle=False) as data:
                    self._globals[base] = flat_weights(dict(data), self.arch)
        return self._globals[base]

    def weights_path(self, release_id: str) -> Path:
        """Where the weights file of ``release_id`` (``<sub_model>@<version>``) is kept."""
        sub_model, _, version = release_id.partition("@")
        if not SUB_MODEL_RE.fullmatch(sub_model) or not version or "/" in version:
            raise NotFound(f"no weights for {release_id}")
        return self.weights_dir / sub_model / f"{version}.npz"

    def weights_file(self, release_id: str) -> bytes:
        """The ``.npz`` of a version this service published (``GET …/{id}/weights``)."""
        try:
            return self.weights_path(release_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no weights are published for {release_id}") from None

    def remember(self, release_id: str, flat: np.ndarray[Any, Any]) -> None:
        """Keep a just published release's weights in memory (the next round starts there)."""
        self._globals[release_id] = flat

    def publish(self, fl_round: FlRound, flat: np.ndarray[Any, Any], now: int) -> ModelRelease:
        """Write a closed round's model and stamp its digest; the release to store."""
        version = f"owm-v0.{fl_round.number}.0"
        arrays = shaped_weights(flat, self.arch)
        parent = None
        if fl_round.base_version != GENESIS:
            base = self.repositories.releases.get(fl_round.base_version)
            parent = base.version.digest if base is not None else None
        model = new_model_version(version, fl_round.sub_model, arrays, created_at=now,
                                  parent=parent)
        self._write_weights(model, arrays)
        if not self.stamp_at_publish:
            return ModelRelease(version=model, proof_status=ProofStatus.NONE, checked_at=now)
        try:
            proof = self.timestamping.stamp(model.digest_bytes)
        except DomainError as exc:  # the upgrade pass stamps it later
            log.warning("model version %s could not be stamped yet: %s", model.id, exc.message)
            return ModelRelease(version=model, proof_status=ProofStatus.NONE, checked_at=now)
        return ModelRelease(
            version=model, proof_status=ProofStatus.PENDING, checked_at=now, ots_proof=proof
        )

    def _write_weights(self, model: ModelVersion, arrays: Mapping[str, Any]) -> None:
        path = self.weights_path(model.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(npz_bytes(model.version, arrays))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- provenance --------------------------------------------------------------------------

    def unconfirmed(self, limit: int = 20) -> list[ModelRelease]:
        """The newest ``limit`` published releases whose proof is not confirmed yet: those of
        FL rounds and the knowledge base's sub-model versions alike."""
        found = [r for r in self.repositories.releases.list()
                 if r.proof_status is not ProofStatus.CONFIRMED]
        return found[:limit]

    def upgrade_proofs(self) -> list[ModelRelease]:
        """Stamp unstamped releases, upgrade pending ones; the releases that changed.

        Each pass takes the next :data:`PROOF_BATCH` unconfirmed releases after the last one it
        looked at (by release id, from the start again at the end), so releases whose proof
        cannot be stamped or stays pending for long never keep the others from being stamped
        and confirmed (SRS-NODE-10): each is looked at within ``ceil(unconfirmed /
        PROOF_BATCH) + 1`` passes."""
        changed = []
        for release in self._proofs.page(self._unconfirmed_after, _release_id, PROOF_BATCH):
            try:
                updated = self._upgraded(release)
            except DomainError as exc:
                log.info("proof of %s not upgraded yet: %s", release.release_id, exc.message)
                continue
            if updated != release:
                self.repositories.releases.save(updated)
                changed.append(updated)
        return changed

    def _unconfirmed_after(self, after: str, limit: int) -> list[ModelRelease]:
        found = [r for r in self.repositories.releases.list()
                 if r.proof_status is not ProofStatus.CONFIRMED and r.release_id > after]
        return sorted(found, key=_release_id)[:limit]

    def _upgraded(self, release: ModelRelease) -> ModelRelease:
        now = max(self.clock.now(), release.version.created_at)
        digest = release.version.digest_bytes
        if release.ots_proof is None:
            proof = self.timestamping.stamp(digest)
            return attrs.evolve(
                release, ots_proof=proof, proof_status=ProofStatus.PENDING, checked_at=now
            )
        proof = self.timestamping.upgrade(release.ots_proof)
        status = ProofStatus(self.timestamping.verify(proof, digest).status)
        if proof == release.ots_proof and status is release.proof_status:
            return release
        return attrs.evolve(release, ots_proof=proof, proof_status=status, checked_at=now)


class ProofUpgrader:
    """The ``owm-ots-upgrade`` thread: runs :meth:`FlReleases.upgrade_proofs` every
    ``every_s`` while passes change something, doubling the wait up to ``max_backoff_s``
    while calendars have nothing new (or cannot be reached: logged by the adapter), and at
    once after :meth:`wake` (a round published a release). Never the round worker's thread,
    so no calendar holds up a round."""

    def __init__(self, releases: FlReleases, every_s: float, max_backoff_s: float) -> None:
        self.releases = releases
        self.every_s = every_s
        self.max_backoff_s = max(every_s, max_backoff_s)
        self._loop = Loop("owm-ots-upgrade", self.step, every_s)

    @property
    def period_s(self) -> float:
        """How long until the next pass (when not woken)."""
        return self._loop.period_s

    def step(self) -> list[ModelRelease]:
        """One pass; sets the wait before the next one."""
        try:
            changed = self.releases.upgrade_proofs()
        except Exception:
            log.exception("proof upgrade pass failed; backing off")
            changed = []
        if changed or not self.releases.unconfirmed():
            self._loop.period_s = self.every_s
        else:
            self._loop.period_s = min(self.max_backoff_s, self._loop.period_s * 2)
        return changed

    def wake(self) -> None:
        """Run a pass now, from the shortest wait on."""
        self._loop.period_s = self.every_s
        self._loop.wake()

    def start(self) -> None:
        """Start the thread."""
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it (a pass in progress completes)."""
        self._loop.stop(timeout_s)


def _release_id(release: ModelRelease) -> str:
    return release.release_id
