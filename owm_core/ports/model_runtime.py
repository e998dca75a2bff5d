"""The model runtime port: loading sub-model weights and running inference on a node.

Weights reach a runtime only after their OpenTimestamps proof verified (SRS-NODE-10); the
runtime keeps the previous version loaded when a load is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class ModelRuntime(Protocol):
    """Executes a sub-model on this node's hardware (CPU fallback when there is no GPU)."""

    def load(self, sub_model: str, version: str, weights: Mapping[str, Any]) -> None:
        """Make ``version`` of ``sub_model`` the one that answers; replaces the previous one."""
        ...

    def keep(self, sub_model: str, version: str, weights: Mapping[str, Any]) -> None:
        """Keep ``version`` for the tasks pinned to it, leaving the answering one in place."""
        ...

    def loaded_version(self, sub_model: str) -> str | None:
        """The version currently answering for ``sub_model``, or None if none is loaded."""
        ...

    def infer(self, sub_model: str, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run one inference task and return its JSON-serialisable outputs."""
        ...
