"""The conglomerate's repositories: sub-models, contributed datasets, data contributors'
credits and answered queries (SRS 2.1, SRS 2.2).

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from owm_core.knowledge.credit_payouts import DataPayee
from owm_core.knowledge.datasets import DatasetRecord, Document
from owm_core.knowledge.retrieval import DataCredit
from owm_core.knowledge.routing import QueryAnswer
from owm_core.knowledge.submodels import SubModel


class SubModelRepository(Protocol):
    """The conglomerate's sub-model registry (SRS 2.1), keyed by name."""

    def add(self, sub_model: SubModel) -> None:
        """Register a new sub-model; Conflict if its name is taken."""
        ...

    def save(self, sub_model: SubModel) -> None:
        """Replace a registered sub-model (version, datasets, hosts); Conflict if unknown."""
        ...

    def get(self, name: str) -> SubModel | None:
        """The sub-model called ``name``, or None."""
        ...

    def list(self) -> Sequence[SubModel]:
        """Every sub-model, ordered by name."""
        ...


class DatasetRepository(Protocol):
    """Contributed datasets with their documents (SRS 2.2), keyed by dataset id."""

    def add(self, record: DatasetRecord, documents: Sequence[Document]) -> None:
        """Store a contribution and its documents in order; Conflict if its id exists."""
        ...

    def save(self, record: DatasetRecord) -> None:
        """Replace a stored record (its proof); Conflict if unknown or its digest differs."""
        ...

    def get(self, dataset_id: str) -> DatasetRecord | None:
        """The contribution with ``dataset_id``, or None."""
        ...

    def documents(self, dataset_id: str) -> Sequence[Document]:
        """The dataset's documents in submission order (empty if unknown)."""
        ...

    def list(
        self, sub_model: str | None = None, contributor: str | None = None, limit: int = 100
    ) -> Sequence[DatasetRecord]:
        """Up to ``limit`` records (filtered if asked), oldest ``submitted_at`` first, then id."""
        ...


class DataCreditRepository(Protocol):
    """Credits owed to data contributors per answered query (SRS 2.2)."""

    def add(self, query_id: str, credits: Sequence[DataCredit], at: int) -> None:
        """Record the credits of one query (none: nothing); Conflict if already credited."""
        ...

    def for_contributor(
        self, contributor: str, limit: int = 100
    ) -> Sequence[tuple[str, int, DataCredit]]:
        """Up to ``limit`` (query_id, at, credit) of ``contributor``, newest first, then query."""
        ...

    def for_query(self, query_id: str) -> Sequence[DataCredit]:
        """The credits recorded for ``query_id``, by contributor then dataset id."""
        ...

    def total_msat(self, contributor: str) -> int:
        """Everything credited to ``contributor`` so far, in msat."""
        ...


class DataPayeeRepository(Protocol):
    """Where data contributors are paid their credits (one Lightning node each)."""

    def put(self, payee: DataPayee) -> None:
        """Store or replace the payee of ``payee.contributor``."""
        ...

    def get(self, contributor: str) -> DataPayee | None:
        """The payee of ``contributor``, or None."""
        ...

    def list(self, limit: int = 1_000, after: str = "") -> Sequence[DataPayee]:
        """Up to ``limit`` payees, by contributor, each after ``after`` (a sweep's keyset page)."""
        ...


class QueryAnswerRepository(Protocol):
    """Answered conglomerate queries, kept for ``GET /v1/query/{query_id}`` (SRS 4.8.2)."""

    def add(self, answer: QueryAnswer) -> None:
        """Store an answer; Conflict if its query id is already stored."""
        ...

    def get(self, query_id: str) -> QueryAnswer | None:
        """The stored answer of ``query_id``, or None."""
        ...
