"""SQL repositories: data contributors' credits and payees, and answered queries."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import func, insert, select

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, int64
from owm_adapters.storage.sql.rows import (
    MappedRepository,
    PutRepository,
    from_row,
    register_row,
)
from owm_core.errors import Conflict
from owm_core.knowledge.credit_payouts import DataPayee
from owm_core.knowledge.retrieval import DataCredit
from owm_core.knowledge.routing import QueryAnswer, answer_fields, answer_from_fields

register_row(DataCredit)
register_row(DataPayee, int64_columns=["registered_at"])


class SqlDataCreditRepository(MappedRepository):
    """Data contributors' credits in ``data_credits``."""

    def add(self, query_id: str, credits: Sequence[DataCredit], at: int) -> None:
        """Record the credits of one query; Conflict if that query was already credited."""
        if not credits:
            return
        c = t.data_credits.c
        with self._db.tx(write=True) as conn:
            taken = conn.execute(select(c.seq).where(c.query_id == query_id).limit(1)).first()
            if taken is not None:
                raise Conflict(f"query {query_id} is already credited")
            conn.execute(
                insert(t.data_credits),
                [
                    {
                        "query_id": query_id,
                        "contributor": k.contributor,
                        "dataset_id": k.dataset_id,
                        "amount_msat": int64("amount_msat", k.amount_msat),
                        "passages_used": k.passages_used,
                        "credited_at": int64("credited_at", at),
                    }
                    for k in sorted(credits, key=lambda k: (k.contributor, k.dataset_id))
                ],
            )

    def for_contributor(
        self, contributor: str, limit: int = 100
    ) -> Sequence[tuple[str, int, DataCredit]]:
        """Up to ``limit`` (query_id, at, credit) of ``contributor``, newest first, then query."""
        c = t.data_credits.c
        query = (
            select(t.data_credits)
            .where(c.contributor == contributor)
            .order_by(c.credited_at.desc(), c.query_id, c.dataset_id)
            .limit(limit)
        )
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [(r.query_id, r.credited_at, from_row(r, DataCredit)) for r in rows]

    def for_query(self, query_id: str) -> Sequence[DataCredit]:
        """The credits recorded for ``query_id``, by contributor then dataset id."""
        c = t.data_credits.c
        query = select(t.data_credits).where(c.query_id == query_id)
        return self._all(query.order_by(c.contributor, c.dataset_id), DataCredit)

    def total_msat(self, contributor: str) -> int:
        """Everything credited to ``contributor`` so far, in msat."""
        c = t.data_credits.c
        query = select(func.coalesce(func.sum(c.amount_msat), 0)).where(
            c.contributor == contributor
        )
        with self._db.tx() as conn:
            return int(conn.execute(query).scalar_one())


class SqlQueryAnswerRepository(SqlRepository):
    """Answered queries in ``query_answers`` (the answer's fields as JSON text)."""

    def add(self, answer: QueryAnswer) -> None:
        """Store an answer; Conflict if its query id is already stored."""
        row = {
            "query_id": answer.query_id,
            "created_at": answer.created_at,
            "answer": json.dumps(answer_fields(answer), sort_keys=True, ensure_ascii=False),
        }
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.query_answers).values(row))

    def get(self, query_id: str) -> QueryAnswer | None:
        """The stored answer of ``query_id``, or None."""
        c = t.query_answers.c
        with self._db.tx() as conn:
            stored = conn.execute(select(c.answer).where(c.query_id == query_id)).scalar()
        return None if stored is None else answer_from_fields(json.loads(stored))


class SqlDataPayeeRepository(PutRepository[DataPayee]):
    """Data contributors' payees in ``data_payees``, by contributor."""

    _table = t.data_payees

    def list(self, limit: int = 1_000, after: str = "") -> Sequence[DataPayee]:
        """Up to ``limit`` payees, by contributor, each after ``after`` (a sweep's keyset page)."""
        return self._in_key_order(limit, after)
