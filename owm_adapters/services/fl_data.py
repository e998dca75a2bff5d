"""What an FL round of one sub-model starts from, trains on and is scored on: its releases and
its contributed documents, read through the architecture (SRS-COORD-03).

:class:`RoundData` holds the sub-model's :class:`~owm_adapters.services.fl_releases.FlReleases`
and reads the documents of every dataset contributed to the rounds' sub-model
from the store; the architecture turns them into the training data a round's task carries
(:meth:`~owm_core.ports.fl_model.ModelArchitecture.round_data`) and into the held-out set every
new version is scored on (:meth:`~owm_core.ports.fl_model.ModelArchitecture.holdout`, built
once per set of datasets). TinyNet reads none: its data are synthetic blobs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from owm_adapters.models.architectures import TINYNET, architecture, unflatten
from owm_adapters.services.fl_releases import FlReleases
from owm_core.errors import NotFound
from owm_core.fl.rounds import FlRound
from owm_core.knowledge.datasets import Document
from owm_core.ports.clock import Clock
from owm_core.ports.fl_model import ModelArchitecture
from owm_core.ports.repositories import Repositories
from owm_core.ports.timestamping import Timestamping

MAX_DATASETS = 1_000
"""Most contributed datasets one sub-model's training data is built from."""


def evaluate(
    flat: np.ndarray[Any, Any],
    arch: ModelArchitecture | None = None,
    sub_model: str = "owm-base",
    holdout: Any = None,
) -> tuple[int, float]:
    """``(accuracy in ppm, loss)`` of the flat model ``flat`` of ``arch`` (TinyNet by default)
    on ``holdout`` (default: the architecture's held-out set with no documents)."""
    arch = arch or architecture(TINYNET)
    model = arch.genesis(sub_model)
    model.set_parameters(unflatten(flat, arch))
    accuracy, loss = model.evaluate(arch.holdout(()) if holdout is None else holdout)
    return round(accuracy * 1_000_000), loss


@attrs.define
class RoundData:
    """One sub-model's releases, documents and held-out set (module docstring)."""

    repositories: Repositories
    arch: ModelArchitecture
    sub_model: str
    releases: FlReleases
    _holdout: tuple[tuple[str, ...], Any] | None = attrs.field(default=None, init=False)

    def documents(self) -> tuple[tuple[str, ...], list[Document]]:
        """The ids of the datasets contributed to the sub-model (oldest first) and their
        documents, in that order."""
        records = self.repositories.datasets.list(self.sub_model, None, MAX_DATASETS)
        documents: list[Document] = []
        for record in records:
            documents.extend(self.repositories.datasets.documents(record.dataset_id))
        return tuple(r.dataset_id for r in records), documents

    def evaluate(self, flat: np.ndarray[Any, Any]) -> tuple[int, float]:
        """``(accuracy in ppm, loss)`` of a flat model on the held-out set."""
        ids, documents = self.documents()
        if self._holdout is None or self._holdout[0] != ids:
            self._holdout = (ids, self.arch.holdout(documents))
        return evaluate(flat, self.arch, self.sub_model, self._holdout[1])


@attrs.frozen
class SubModels:
    """The sub-models FL rounds take turns over, each with its :class:`RoundData`."""

    rotation: tuple[str, ...]
    by_name: dict[str, RoundData]

    @classmethod
    def build(
        cls,
        rotation: tuple[str, ...],
        arch_of: Callable[[str], ModelArchitecture],
        store: Repositories,
        clock: Clock,
        timestamping: Timestamping,
        weights_dir: Path,
        *,
        stamp_at_publish: bool,
    ) -> SubModels:
        """One :class:`RoundData` (and :class:`FlReleases`) per sub-model of ``rotation``, each
        of the architecture ``arch_of`` names for it."""
        return cls(rotation, {
            name: RoundData(store, arch_of(name), name, FlReleases(
                store, clock, timestamping, weights_dir, name, arch_of(name),
                stamp_at_publish=stamp_at_publish))
            for name in rotation
        })

    def turns(self, number: int) -> list[RoundData]:
        """The sub-models round ``number`` tries, in order: ``rotation[(number - 1) mod n]``
        first, then the next ones (a sub-model with no training data yet is skipped)."""
        n = len(self.rotation)
        return [self.by_name[self.rotation[(number - 1 + k) % n]] for k in range(n)]

    def of(self, fl_round: FlRound) -> RoundData:
        """``fl_round``'s sub-model; NotFound if rounds no longer train it."""
        if fl_round.sub_model not in self.by_name:
            raise NotFound(f"FL rounds no longer train {fl_round.sub_model}")
        return self.by_name[fl_round.sub_model]
