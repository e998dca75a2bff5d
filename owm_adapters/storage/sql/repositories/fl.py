"""SQL repositories: federated-learning rounds and their updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import insert, select, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.rows import (
    Flat,
    MappedRepository,
    from_row,
    register_row,
    to_row,
)
from owm_core.errors import Conflict
from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate, same_upload

register_row(FlRound, int64_columns=["started_at", "closed_at"])
register_row(
    RoundUpdate,
    flat=[
        Flat(
            "update",
            {
                "round": "round_number",
                "sub_model": "sub_model",
                "task_id": "task_id",
                "public_key": "public_key",
                "num_examples": "num_examples",
                "loss": "loss",
                "weights": "weights",
                "signature": "signature",
            },
        )
    ],
    computed={"node_id": lambda u: u.update.node_id, "digest": lambda u: u.update.digest},
    int64_columns=["num_examples", "received_at"],
)  # structuring the update re-verifies the node's signature over the stored weights


class SqlFlRoundRepository(MappedRepository):
    """FL rounds in ``fl_rounds``, their updates in ``fl_updates``."""

    def add_round(self, fl_round: FlRound) -> None:
        """Store a new round; Conflict if its number exists."""
        self._insert(t.fl_rounds, fl_round)

    def save_round(self, fl_round: FlRound) -> None:
        """Replace a stored round (state, results); Conflict if unknown."""
        self._overwrite(t.fl_rounds, fl_round, f"FL round {fl_round.number} is unknown",
                        t.fl_rounds.c.number == fl_round.number)

    def get_round(self, number: int) -> FlRound | None:
        """The round ``number``, or None."""
        return self._first(select(t.fl_rounds).where(t.fl_rounds.c.number == number), FlRound)

    def rounds(self, limit: int = 100, state: RoundState | None = None) -> Sequence[FlRound]:
        """Rounds (in ``state`` if given), newest (highest number) first, at most ``limit``."""
        c = t.fl_rounds.c
        query = select(t.fl_rounds).order_by(c.number.desc()).limit(limit)
        if state is not None:
            query = query.where(c.state == state.value)
        return self._all(query, FlRound)

    def _stored_update(self, number: int, node_id: str) -> RoundUpdate | None:
        c = t.fl_updates.c
        query = select(t.fl_updates).where(c.round_number == number, c.node_id == node_id)
        return self._first(query, RoundUpdate)

    def add_update(self, update: RoundUpdate) -> bool:
        """Store an upload: True if new, False if the same update is stored already."""
        c = t.fl_updates.c
        try:
            with self._db.tx(write=True) as conn:
                known = select(t.fl_rounds.c.number).where(t.fl_rounds.c.number == update.round)
                if conn.execute(known).first() is None:
                    raise Conflict(f"FL round {update.round} is unknown")
                row = conn.execute(
                    select(t.fl_updates).where(
                        c.round_number == update.round, c.node_id == update.node_id
                    )
                ).first()
                if row is not None:
                    return not same_upload(from_row(row, RoundUpdate), update)
                conn.execute(insert(t.fl_updates).values(to_row(update)))
                return True
        except Conflict:
            stored = self._stored_update(update.round, update.node_id)  # lost an insert race?
            if stored is not None and same_upload(stored, update):
                return False
            raise

    def updates(self, number: int) -> Sequence[RoundUpdate]:
        """The round's updates in arrival order."""
        c = t.fl_updates.c
        query = select(t.fl_updates).where(c.round_number == number).order_by(c.seq)
        return self._all(query, RoundUpdate)

    def score_updates(self, number: int, scores: Mapping[str, tuple[float, bool]]) -> None:
        """Record ``node_id → (anomaly score, flagged)``; Conflict if a node has no update."""
        c = t.fl_updates.c
        with self._db.tx(write=True) as conn:
            for node_id, (score, flagged) in scores.items():
                done = conn.execute(
                    update(t.fl_updates)
                    .where(c.round_number == number, c.node_id == node_id)
                    .values(anomaly_score=float(score), flagged=bool(flagged))
                )
                if done.rowcount == 0:
                    raise Conflict(f"node {node_id} has no update in FL round {number}")
