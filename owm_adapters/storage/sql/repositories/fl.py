"""SQL repositories: federated-learning rounds and their updates."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, insert, select, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, int64
from owm_core.errors import Conflict
from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate, same_upload
from owm_core.fl.updates import SignedUpdate


def _fl_round_row(r: FlRound) -> dict[str, Any]:
    return {
        "number": r.number,
        "sub_model": r.sub_model,
        "state": r.state.value,
        "started_at": int64("started_at", r.started_at),
        "closed_at": None if r.closed_at is None else int64("closed_at", r.closed_at),
        "rule": r.rule,
        "f": r.f,
        "task_ids": json.dumps(list(r.task_ids)),
        "base_version": r.base_version,
        "participants": r.participants,
        "accepted": json.dumps(list(r.accepted)),
        "rejected": json.dumps(list(r.rejected)),
        "flagged": json.dumps(list(r.flagged)),
        "accuracy_ppm": r.accuracy_ppm,
        "loss": r.loss,
        "version_id": r.version_id,
        "failure": r.failure,
    }


def _row_fl_round(row: Row[Any]) -> FlRound:
    m = row._mapping
    return FlRound(
        number=m["number"],
        sub_model=m["sub_model"],
        state=RoundState(m["state"]),
        started_at=m["started_at"],
        closed_at=m["closed_at"],
        rule=m["rule"],
        f=m["f"],
        task_ids=tuple(json.loads(m["task_ids"])),
        base_version=m["base_version"],
        participants=m["participants"],
        accepted=tuple(json.loads(m["accepted"])),
        rejected=tuple(json.loads(m["rejected"])),
        flagged=tuple(json.loads(m["flagged"])),
        accuracy_ppm=m["accuracy_ppm"],
        loss=None if m["loss"] is None else float(m["loss"]),
        version_id=m["version_id"],
        failure=m["failure"],
    )


def _fl_update_row(u: RoundUpdate) -> dict[str, Any]:
    signed = u.update
    return {
        "round_number": signed.round,
        "node_id": signed.node_id,
        "task_id": signed.task_id,
        "sub_model": signed.sub_model,
        "public_key": signed.public_key,
        "digest": signed.digest,
        "signature": signed.signature,
        "weights": signed.weights,
        "num_examples": int64("num_examples", signed.num_examples),
        "loss": float(signed.loss),
        "received_at": int64("received_at", u.received_at),
        "anomaly_score": u.anomaly_score,
        "flagged": u.flagged,
    }


def _row_fl_update(row: Row[Any]) -> RoundUpdate:
    m = row._mapping
    signed = SignedUpdate(  # re-verifies the node's signature over the stored weights
        round=m["round_number"],
        sub_model=m["sub_model"],
        task_id=m["task_id"],
        public_key=m["public_key"],
        num_examples=m["num_examples"],
        loss=float(m["loss"]),
        weights=bytes(m["weights"]),
        signature=m["signature"],
    )
    score = m["anomaly_score"]
    return RoundUpdate(
        update=signed,
        received_at=m["received_at"],
        anomaly_score=None if score is None else float(score),
        flagged=bool(m["flagged"]),
    )


class SqlFlRoundRepository(SqlRepository):
    """FL rounds in ``fl_rounds``, their updates in ``fl_updates``."""

    def add_round(self, fl_round: FlRound) -> None:
        """Store a new round; Conflict if its number exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.fl_rounds).values(_fl_round_row(fl_round)))

    def save_round(self, fl_round: FlRound) -> None:
        """Replace a stored round (state, results); Conflict if unknown."""
        c = t.fl_rounds.c
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.fl_rounds)
                .where(c.number == fl_round.number)
                .values(_fl_round_row(fl_round))
            )
        if done.rowcount == 0:
            raise Conflict(f"FL round {fl_round.number} is unknown")

    def get_round(self, number: int) -> FlRound | None:
        """The round ``number``, or None."""
        query = select(t.fl_rounds).where(t.fl_rounds.c.number == number)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_fl_round(row)

    def rounds(self, limit: int = 100, state: RoundState | None = None) -> Sequence[FlRound]:
        """Rounds (in ``state`` if given), newest (highest number) first, at most ``limit``."""
        c = t.fl_rounds.c
        query = select(t.fl_rounds).order_by(c.number.desc()).limit(limit)
        if state is not None:
            query = query.where(c.state == state.value)
        with self._db.tx() as conn:
            return [_row_fl_round(r) for r in conn.execute(query).all()]

    def _stored_update(self, number: int, node_id: str) -> RoundUpdate | None:
        c = t.fl_updates.c
        query = select(t.fl_updates).where(c.round_number == number, c.node_id == node_id)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_fl_update(row)

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
                    return not same_upload(_row_fl_update(row), update)
                conn.execute(insert(t.fl_updates).values(_fl_update_row(update)))
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
            return [_row_fl_update(r) for r in conn.execute(query).all()]

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
