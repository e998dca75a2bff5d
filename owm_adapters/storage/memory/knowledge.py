"""In-memory twin: sub-models, contributed datasets, data credits and answered queries."""

from __future__ import annotations

from collections.abc import Sequence

from owm_adapters.storage.memory.state import (
    KeyedStateRepository,
    PutStateRepository,
    StateRepository,
)
from owm_core.errors import Conflict
from owm_core.knowledge.credit_payouts import DataPayee
from owm_core.knowledge.datasets import DatasetRecord, Document
from owm_core.knowledge.retrieval import DataCredit
from owm_core.knowledge.routing import QueryAnswer
from owm_core.knowledge.submodels import SubModel


class MemorySubModelRepository(KeyedStateRepository[SubModel]):
    """The sub-model registry per name."""

    _table = "sub_models"
    _key = "name"
    _taken = "sub-model {} already exists"
    _unknown = "sub-model {} is unknown"

    def list(self) -> Sequence[SubModel]:
        """Every sub-model, ordered by name."""
        with self._lock:
            return [self._state.sub_models[n] for n in sorted(self._state.sub_models)]


class MemoryDatasetRepository(StateRepository):
    """Contributed datasets and their documents per dataset id."""

    def add(self, record: DatasetRecord, documents: Sequence[Document]) -> None:
        """Store a contribution and its documents; Conflict if its id exists."""
        with self._lock:
            if record.dataset_id in self._state.datasets:
                raise Conflict(f"dataset {record.dataset_id} already exists")
            seq = self._state.next_seq()
            self._state.datasets[record.dataset_id] = (seq, record, tuple(documents))

    def save(self, record: DatasetRecord) -> None:
        """Replace a stored record (its proof); Conflict if unknown or its digest differs."""
        with self._lock:
            stored = self._state.datasets.get(record.dataset_id)
            if stored is None:
                raise Conflict(f"dataset {record.dataset_id} is unknown")
            if stored[1].digest != record.digest:
                raise Conflict(f"dataset {record.dataset_id} has another digest")
            self._state.datasets[record.dataset_id] = (stored[0], record, stored[2])

    def get(self, dataset_id: str) -> DatasetRecord | None:
        """The contribution with ``dataset_id``, or None."""
        with self._lock:
            stored = self._state.datasets.get(dataset_id)
            return None if stored is None else stored[1]

    def documents(self, dataset_id: str) -> Sequence[Document]:
        """The dataset's documents in submission order (empty if unknown)."""
        with self._lock:
            stored = self._state.datasets.get(dataset_id)
            return [] if stored is None else list(stored[2])

    def list(
        self, sub_model: str | None = None, contributor: str | None = None, limit: int = 100
    ) -> Sequence[DatasetRecord]:
        """Up to ``limit`` records (filtered if asked), oldest first, then by id."""
        with self._lock:
            chosen = [
                r
                for _, r, _ in self._state.datasets.values()
                if (sub_model is None or sub_model in r.sub_models)
                and (contributor is None or r.contributor == contributor)
            ]
            chosen.sort(key=lambda r: (r.submitted_at, r.dataset_id))
            return chosen[:limit]


class MemoryDataCreditRepository(StateRepository):
    """Data contributors' credits per query id."""

    def add(self, query_id: str, credits: Sequence[DataCredit], at: int) -> None:
        """Record the credits of one query (none: nothing); Conflict if already credited."""
        if not credits:
            return
        with self._lock:
            if query_id in self._state.data_credits:
                raise Conflict(f"query {query_id} is already credited")
            ordered = tuple(sorted(credits, key=lambda c: (c.contributor, c.dataset_id)))
            self._state.data_credits[query_id] = (self._state.next_seq(), at, ordered)

    def for_contributor(
        self, contributor: str, limit: int = 100
    ) -> Sequence[tuple[str, int, DataCredit]]:
        """Up to ``limit`` (query_id, at, credit) of ``contributor``, newest first, then query."""
        with self._lock:
            rows = [
                (q, at, c)
                for q, (_, at, credits) in self._state.data_credits.items()
                for c in credits
                if c.contributor == contributor
            ]
            rows.sort(key=lambda r: (-r[1], r[0], r[2].dataset_id))
            return rows[:limit]

    def for_query(self, query_id: str) -> Sequence[DataCredit]:
        """The credits recorded for ``query_id``, by contributor then dataset id."""
        with self._lock:
            stored = self._state.data_credits.get(query_id)
            return [] if stored is None else list(stored[2])

    def total_msat(self, contributor: str) -> int:
        """Everything credited to ``contributor`` so far, in msat."""
        with self._lock:
            return sum(
                c.amount_msat
                for _, _, credits in self._state.data_credits.values()
                for c in credits
                if c.contributor == contributor
            )


class MemoryQueryAnswerRepository(StateRepository):
    """Answered queries by query id."""

    def add(self, answer: QueryAnswer) -> None:
        """Store an answer; Conflict if its query id is already stored."""
        self._insert_new(
            "query_answers", answer.query_id, answer, f"query {answer.query_id} is already stored"
        )

    def get(self, query_id: str) -> QueryAnswer | None:
        """The stored answer of ``query_id``, or None."""
        with self._lock:
            return self._state.query_answers.get(query_id)


class MemoryDataPayeeRepository(PutStateRepository[DataPayee]):
    """Data contributors' payees per contributor."""

    _table = "data_payees"
    _key = "contributor"

    def list(self, limit: int = 1_000, after: str = "") -> Sequence[DataPayee]:
        """Up to ``limit`` payees, by contributor, each after ``after`` (a sweep's keyset page)."""
        return self._in_key_order(limit, after)
