"""SQL repositories: federated-learning rounds and their updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import insert, select, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository
from owm_adapters.storage.sql.rows import (
    Flat,
    from_row,
    register_row,
    row_converter,
    to_row,
)
from owm_core.errors import Conflict
from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate, same_upload

_ROWS = row_converter()
"""How this context's values become rows and back."""
register_row(_ROWS, FlRound, int64_columns=["started_at", "closed_at"])
register_row(
    _ROWS,
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


class SqlFlRoundRepository(SqlRepository):
    """FL rounds in ``fl_rounds``, their updates in ``fl_updates``."""

    def add_round(self, fl_round: FlRound) -> None:
        """Store a new round; Conflict if its number exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.fl_rounds).values(to_row(_ROWS, fl_round)))

    def save_round(self, fl_round: FlRound) -> None:
        """Replace a stored round (state, results); Conflict if unknown."""
        c = t.fl_rounds.c
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.fl_rounds)
                .where(c.number == fl_round.number)
                .values(to_row(_ROWS, fl_round))
            )
        if done.rowcount == 0:
            raise Conflict(f"FL round {fl_round.number} is unknown")

    def get_round(self, number: int) -> FlRound | None:
        """The round ``number``, or None."""
        query = select(t.fl_rounds).where(t.fl_rounds.c.number == number)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else from_row(_ROWS, row, FlRound)

    def rounds(self, limit: int = 100, state: RoundState | None = None) -> Sequence[FlRound]:
        """Rounds (in ``state`` if given), newest (highest number) first, at most ``limit``."""
        c = t.fl_rounds.c
        query = select(t.fl_rounds).order_by(c.number.desc()).limit(limit)
        if state is not None:
            query = query.where(c.state == state.value)
        with self._db.tx() as conn:
            return [from_row(_ROWS, r, FlRound) for r in conn.execute(query).all()]

    def _stored_update(self, number: int, node_id: str) -> RoundUpdate | None:
        c = t.fl_updates.c
        query = select(t.fl_updates).where(c.round_number == number, c.node_id == node_id)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else from_row(_ROWS, row, RoundUpdate)

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
                    return not same_upload(from_row(_ROWS, row, RoundUpdate), update)
                conn.execute(insert(t.fl_updates).values(to_row(_ROWS, update)))
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
        with self._db.tx() as conn:
            return [from_row(_ROWS, r, RoundUpdate) for r in conn.execute(query).all()]

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
