"""The FL rounds repository: the coordinator's federated-learning rounds and the signed
updates uploaded into them (SRS-COORD-03).

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate


class FlRoundRepository(Protocol):
    """Coordinator FL rounds and the signed updates uploaded into them (SRS-COORD-03).

    Rounds are keyed by their number (unique across sub-models); updates by (round, node id),
    one per node and round, kept in arrival order.
    """

    def add_round(self, fl_round: FlRound) -> None:
        """Store a new round; Conflict if its number exists."""
        ...

    def save_round(self, fl_round: FlRound) -> None:
        """Replace a stored round (state, results); Conflict if unknown."""
        ...

    def get_round(self, number: int) -> FlRound | None:
        """The round ``number``, or None."""
        ...

    def rounds(self, limit: int = 100, state: RoundState | None = None) -> Sequence[FlRound]:
        """Rounds (in ``state`` if given), newest (highest number) first, at most ``limit``."""
        ...

    def add_update(self, update: RoundUpdate) -> bool:
        """Store an upload: True if new, False if the same update is stored already (idempotent);
        Conflict if the node stored a different one for the round or the round is unknown."""
        ...

    def updates(self, number: int) -> Sequence[RoundUpdate]:
        """The round's updates in arrival order."""
        ...

    def score_updates(self, number: int, scores: Mapping[str, tuple[float, bool]]) -> None:
        """Record ``node_id → (anomaly score, flagged)``; Conflict if a node has no update."""
        ...
