"""Which sub-model version a submitted task runs: one pin per task, chosen at submission.

A task that runs a sub-model's weights (``inference`` on features or text, ``fl_training``
without ``global_weights``) is pinned to the newest release of that sub-model whose proof this
coordinator holds as confirmed and whose weights nodes can download, else ``genesis``
(:func:`owm_core.provenance.releases.pinned_version`). The pin is stored with every replica and
signed into each assignment, so replicas on nodes that installed different versions (installs
roll out over minutes while FL rounds publish a version a minute) compute the same output
instead of an honest node losing the redundant verification and being slashed (SRS-SEC-11,
SRS-NODE-10).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from owm_core.errors import InvalidValue
from owm_core.market import task_types
from owm_core.market.tasks import TaskRequest
from owm_core.ports.repositories.provenance import ModelReleaseRepository
from owm_core.provenance.releases import ModelRelease, pinned_version, weights_sub_model

RELEASES_MEMO_S = 1.0
"""How long one read of the releases serves further submissions: one read a second under load,
not one per task (a pin is stored with its task, so a second's lag changes nothing)."""


class VersionPins:
    """Chooses each submitted task's pin (module docstring)."""

    def __init__(self, releases: ModelReleaseRepository) -> None:
        self._releases = releases
        #: Whether nodes can download a release's weights (``sub_model@version``); set by the
        #: composition root to the FL rounds' published files. Only such a release is pinned:
        #: the knowledge base's versions, for one, have no weights to download.
        self.has_weights: Callable[[str], bool] = lambda _release_id: False
        self._read: tuple[float, Sequence[ModelRelease]] | None = None

    def pin_for(self, request: TaskRequest, input_data: bytes) -> str:
        """The version every replica of this task runs; empty for a task that runs no
        sub-model's weights, or whose input no node would accept anyway (nodes reject it)."""
        try:
            data = task_types.parse_input(input_data)
        except InvalidValue:
            return ""
        sub_model = weights_sub_model(request.task_type, request.input_schema_id, data)
        if sub_model is None:
            return ""
        return pinned_version(self._recent_releases(), sub_model, self.has_weights)

    def _recent_releases(self) -> Sequence[ModelRelease]:
        read = self._read
        if read is None or time.monotonic() - read[0] >= RELEASES_MEMO_S:
            read = (time.monotonic(), self._releases.list())
            self._read = read
        return read[1]


__all__ = ["RELEASES_MEMO_S", "VersionPins"]
