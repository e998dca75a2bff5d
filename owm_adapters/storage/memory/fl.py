"""In-memory twin: federated-learning rounds and their updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from owm_adapters.storage.memory.state import StateRepository
from owm_core.errors import Conflict
from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate, same_upload


class MemoryFlRoundRepository(StateRepository):
    """FL rounds per number and their updates per (round, node id), in arrival order."""

    def add_round(self, fl_round: FlRound) -> None:
        """Store a new round; Conflict if its number exists."""
        self._insert_new(
            "fl_rounds", fl_round.number, fl_round, f"FL round {fl_round.number} already exists"
        )

    def save_round(self, fl_round: FlRound) -> None:
        """Replace a stored round (state, results); Conflict if unknown."""
        self._replace_known(
            "fl_rounds", fl_round.number, fl_round, f"FL round {fl_round.number} is unknown"
        )

    def get_round(self, number: int) -> FlRound | None:
        """The round ``number``, or None."""
        with self._lock:
            return self._state.fl_rounds.get(number)

    def rounds(self, limit: int = 100, state: RoundState | None = None) -> Sequence[FlRound]:
        """Rounds (in ``state`` if given), newest (highest number) first, at most ``limit``."""
        with self._lock:
            chosen = [r for r in self._state.fl_rounds.values() if state in (None, r.state)]
        return sorted(chosen, key=lambda r: r.number, reverse=True)[:limit]

    def add_update(self, update: RoundUpdate) -> bool:
        """Store an upload: True if new, False if the same update is stored already."""
        key = (update.round, update.node_id)
        with self._lock:
            if update.round not in self._state.fl_rounds:
                raise Conflict(f"FL round {update.round} is unknown")
            stored = self._state.fl_updates.get(key)
            if stored is not None and same_upload(stored[1], update):
                return False
            self._state.fl_updates[key] = (self._state.next_seq(), update)
            return True

    def updates(self, number: int) -> Sequence[RoundUpdate]:
        """The round's updates in arrival order."""
        with self._lock:
            rows = [v for (r, _), v in self._state.fl_updates.items() if r == number]
        return [u for _, u in sorted(rows, key=lambda row: row[0])]

    def score_updates(self, number: int, scores: Mapping[str, tuple[float, bool]]) -> None:
        """Record ``node_id → (anomaly score, flagged)``; Conflict if a node has no update."""
        with self._lock:
            for node_id in scores:
                if (number, node_id) not in self._state.fl_updates:
                    raise Conflict(f"node {node_id} has no update in FL round {number}")
            for node_id, (score, flagged) in scores.items():
                seq, stored = self._state.fl_updates[(number, node_id)]
                scored = attrs.evolve(stored, anomaly_score=float(score), flagged=bool(flagged))
                self._state.fl_updates[(number, node_id)] = (seq, scored)
