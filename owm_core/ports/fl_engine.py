"""The FL engine port: what the coordinator needs from a federated-learning runtime.

An engine (Flower in-process, Flower's deployment engine, a test fake) carries the global model
to the selected clients, brings their signed updates back and hands them to OWM's rules; the
aggregation itself stays in :mod:`owm_core.fl.aggregation` (SRS-COORD-03, SRS-SEC-05).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from owm_core.fl.reports import RoundReport


class FlEngine(Protocol):
    """A federated-learning runtime driven by OWM's selection, verification and aggregation."""

    def run(self, initial: torch.Tensor, rounds: int) -> Sequence[RoundReport]:
        """Run ``rounds`` rounds from the flat ``initial`` model; one report per round."""
        ...

    def global_model(self) -> torch.Tensor:
        """The flat global model after the last finished round."""
        ...
