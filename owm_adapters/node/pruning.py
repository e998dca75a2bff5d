"""Deleting kept model versions no task needs any more (rule: :mod:`owm_core.provenance.retention`).

Each verified version lies in the model cache as ``<sub_model>/<version>.npz`` with its
``.json`` record and ``.ots`` proof; ``current.npz`` (what unpinned tasks read) is never
touched. Only versions the rule does not keep are deleted — never the installed one and never
one a queued or running task is pinned to, so no task loses the file it reads (SRS-SEC-11).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from pathlib import Path

from owm_core.provenance.retention import kept_versions

log = logging.getLogger(__name__)

SUFFIXES = (".npz", ".json", ".ots")


def held_versions(folder: Path) -> dict[str, int]:
    """The versions kept in one sub-model's folder, with their ``created_at`` (-1 when the
    record is missing or unreadable: such a version counts as the oldest)."""
    held: dict[str, int] = {}
    for path in folder.glob("*.npz"):
        if path.stem == "current":
            continue
        try:
            record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            held[path.stem] = int(record["created_at"])
        except (OSError, ValueError, KeyError, TypeError):
            held[path.stem] = -1
    return held


def prune_versions(
    model_dir: Path, sub_model: str, current: str | None, pinned: Collection[str], keep: int
) -> list[str]:
    """Delete the versions of ``sub_model`` the retention rule does not keep; the deleted ones."""
    folder = model_dir / sub_model
    held = held_versions(folder)
    keep_set = kept_versions(held, current, pinned, keep)
    pruned = sorted(v for v in held if v not in keep_set)
    for version in pruned:
        for suffix in SUFFIXES:
            (folder / f"{version}{suffix}").unlink(missing_ok=True)
    if pruned:
        log.info("model cache: pruned %d old version(s) of %s", len(pruned), sub_model,
                 extra={"sub_model": sub_model, "pruned": pruned})
    return pruned


__all__ = ["held_versions", "prune_versions"]
