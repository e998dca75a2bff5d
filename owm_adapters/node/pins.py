"""The sub-model version an assignment pins: held, installed now, or the replica is rejected.

The coordinator pins every task that runs a sub-model's weights to one version and signs it
into each assignment (``AssignedTask.model_version``). Before such a replica is queued the node
makes sure it holds exactly that version: kept in the model cache already, else downloaded and
verified now through the weights watcher's install path (SRS-NODE-10). When it cannot — no
``[coordinator] api_url`` to fetch from, the proof still pending here, a failed download — the
replica is rejected naming ``model_version`` and the reason, so the coordinator hands it to
another node at once; the node never answers with another version's weights, which would lose
the redundant verification for an honest node (SRS-SEC-11).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from owm_adapters.node.weights import CachedModelRuntime
from owm_adapters.node.weights_watcher import WeightsWatcher
from owm_core.errors import DomainError, InvalidValue
from owm_core.market.tasks import GENESIS_VERSION, MODEL_VERSION_PIN
from owm_core.nodes.control_plane import AssignedTask
from owm_core.provenance.releases import weights_sub_model

_PIN = re.compile(MODEL_VERSION_PIN)


def pinned_version_problem(
    task: AssignedTask, data: Mapping[str, Any], model_dir: str, watcher: WeightsWatcher | None
) -> InvalidValue | None:
    """Why this node cannot run ``task``'s pinned version, or None when it can (it may have
    installed it just now)."""
    pinned = task.model_version
    if not pinned:
        return None
    if not _PIN.fullmatch(pinned):
        return InvalidValue("model_version", f"{pinned[:64]!r} is not a model version")
    sub_model = weights_sub_model(task.task_type, task.input_schema_id, data)
    if sub_model is None or pinned == GENESIS_VERSION:
        return None  # no weights read, or the deterministic untrained ones every node has
    if model_dir and CachedModelRuntime(Path(model_dir)).has_version(sub_model, pinned):
        return None
    wanted = f"{sub_model}@{pinned}"
    if watcher is None or not model_dir:
        return InvalidValue("model_version", f"{wanted} is not installed on this node and it "
                            "has no [coordinator] api_url to fetch it from")
    try:
        outcome = watcher.ensure_version(sub_model, pinned)
    except DomainError as exc:
        return InvalidValue("model_version", f"{wanted} could not be installed: {exc.message}")
    if outcome.installed:
        return None
    return InvalidValue("model_version", f"{wanted} could not be installed: {outcome.reason}")


__all__ = ["pinned_version_problem"]
