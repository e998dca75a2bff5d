"""The FL engine port: what the coordinator needs from a federated-learning runtime.

An engine (Flower in-process, Flower's deployment engine, a test fake) carries the global model
to the selected clients, brings their signed updates back and hands them to OWM's rules; the
aggregation itself stays in :mod:`owm_core.fl.aggregation` (SRS-COORD-03, SRS-SEC-05).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs
import torch

from owm_core.fl.aggregation import Rule
from owm_core.fl.anomaly import AnomalyScore
from owm_core.stake.slashing import SlashingSignal


@attrs.frozen(eq=False)
class RoundReport:
    """What one finished round produced, as the engine reports it.

    ``participants``: replies received; ``accepted``: updates that passed verification and
    were aggregated; ``rejected``: one reason per refused reply; ``scores``/``signals``: from
    :mod:`owm_core.fl.anomaly` (empty when the round was skipped for too few updates);
    ``metrics``: the clients' aggregated training metrics.
    """

    round_number: int
    rule: Rule
    participants: int
    accepted: int
    rejected: tuple[str, ...]
    scores: tuple[AnomalyScore, ...]
    signals: tuple[SlashingSignal, ...]
    metrics: dict[str, float]


class FlEngine(Protocol):
    """A federated-learning runtime driven by OWM's selection, verification and aggregation."""

    def run(self, initial: torch.Tensor, rounds: int) -> Sequence[RoundReport]:
        """Run ``rounds`` rounds from the flat ``initial`` model; one report per round."""
        ...

    def global_model(self) -> torch.Tensor:
        """The flat global model after the last finished round."""
        ...
