"""The knowledge repositories' contract (sub-models, datasets, data credits) on the in-memory
twin, SQLite and PostgreSQL — the same backends as ``test_repositories_contract.py``, whose
fixtures this module reuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_core.errors import Conflict
from owm_core.knowledge.datasets import Dataset, DatasetRecord, Document, record_for
from owm_core.knowledge.retrieval import DataCredit
from owm_core.knowledge.submodels import SubModel, SubModelKind
from owm_core.ports.repositories import Repositories
from tests.adapters.storage.test_repositories_contract import (
    BACKENDS,
    open_backend,
    sqlite_template,  # noqa: F401 (a fixture open_backend asks for)
)

T0 = 1_800_000_000


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repositories]:
    with open_backend(request.param, request, tmp_path) as opened:
        yield opened.repos


def _sub_model(name: str = "owm-geo", **changes: object) -> SubModel:
    fields: dict[str, object] = {
        "name": name,
        "description": "Geography: countries, capitals, rivers and mountains.",
        "kind": SubModelKind.RETRIEVAL_READER,
        "version": "owm-v0.1.0",
        "created_at": T0,
    }
    fields.update(changes)
    return SubModel(**fields)  # type: ignore[arg-type]


def _dataset(name: str = "capitals", sub_models: tuple[str, ...] = ("owm-geo",)) -> Dataset:
    return Dataset(
        name=name,
        sub_models=sub_models,
        documents=(
            Document("France", "Paris is the capital of France.", "atlas", "CC0-1.0"),
            Document("Japan", "Tokyo is the capital of Japan.", "atlas", "CC-BY-4.0",
                     url="https://example.org/japan"),
        ),
        description="Capitals.",
    )


def _record(dataset: Dataset, contributor: str = "alice", at: int = T0) -> DatasetRecord:
    return record_for(dataset, contributor, at, n_passages=2, proof=None)


def test_a_registered_sub_model_comes_back_equal_and_names_are_unique(store: Repositories) -> None:
    model = _sub_model(dataset_ids=("ds-" + "a" * 24,), host_node_ids=("n" + "1" * 40,))
    store.sub_models.add(model)
    assert store.sub_models.get("owm-geo") == model
    with pytest.raises(Conflict):
        store.sub_models.add(_sub_model())
    assert store.sub_models.get("owm-nothing") is None


def test_saving_a_sub_model_replaces_it_and_an_unknown_one_is_a_conflict(
    store: Repositories,
) -> None:
    store.sub_models.add(_sub_model())
    bumped = _sub_model(version="owm-v0.1.1", version_digest="ab" * 32,
                        dataset_ids=("ds-" + "b" * 24,))
    store.sub_models.save(bumped)
    assert store.sub_models.get("owm-geo") == bumped
    with pytest.raises(Conflict):
        store.sub_models.save(_sub_model("owm-other"))


def test_sub_models_are_listed_by_name(store: Repositories) -> None:
    for name in ("owm-zoo", "owm-art", "owm-geo"):
        store.sub_models.add(_sub_model(name))
    assert [m.name for m in store.sub_models.list()] == ["owm-art", "owm-geo", "owm-zoo"]


def test_a_dataset_and_its_documents_come_back_equal_and_in_order(store: Repositories) -> None:
    dataset = _dataset()
    record = _record(dataset)
    store.datasets.add(record, dataset.documents)
    assert store.datasets.get(record.dataset_id) == record
    assert tuple(store.datasets.documents(record.dataset_id)) == dataset.documents
    assert list(store.datasets.documents("ds-" + "0" * 24)) == []
    assert store.datasets.get("ds-" + "0" * 24) is None


def test_the_same_dataset_cannot_be_stored_twice(store: Repositories) -> None:
    dataset = _dataset()
    store.datasets.add(_record(dataset), dataset.documents)
    with pytest.raises(Conflict):
        store.datasets.add(_record(dataset, contributor="bob"), dataset.documents)
    assert store.datasets.get(dataset.dataset_id).contributor == "alice"  # type: ignore[union-attr]


def test_saving_a_dataset_keeps_its_digest_and_stores_its_proof(store: Repositories) -> None:
    dataset = _dataset()
    record = _record(dataset)
    store.datasets.add(record, dataset.documents)
    stamped = record_for(dataset, "alice", T0, 2, proof=b"\x00OpenTimestamps")
    store.datasets.save(stamped)
    assert store.datasets.get(record.dataset_id) == stamped
    other = _record(_dataset("other"))
    with pytest.raises(Conflict):
        store.datasets.save(other)


def test_datasets_are_listed_oldest_first_and_filter_by_sub_model_and_contributor(
    store: Repositories,
) -> None:
    a = _dataset("a", ("owm-geo",))
    b = _dataset("b", ("owm-geo", "owm-history"))
    c = _dataset("c", ("owm-history",))
    store.datasets.add(_record(c, "bob", T0 + 2), c.documents)
    store.datasets.add(_record(a, "alice", T0), a.documents)
    store.datasets.add(_record(b, "alice", T0 + 1), b.documents)
    assert [r.name for r in store.datasets.list()] == ["a", "b", "c"]
    assert [r.name for r in store.datasets.list(sub_model="owm-history")] == ["b", "c"]
    assert [r.name for r in store.datasets.list(contributor="alice")] == ["a", "b"]
    assert [r.name for r in store.datasets.list("owm-geo", "bob")] == []
    assert [r.name for r in store.datasets.list(limit=1)] == ["a"]
    assert store.datasets.list(sub_model="owm-history")[0].sub_models == ("owm-geo", "owm-history")


def _credit(contributor: str, dataset: str, msat: int, used: int = 1) -> DataCredit:
    return DataCredit(contributor, "ds-" + dataset * 24, msat, used)


def test_credits_are_recorded_once_per_query_and_summed_per_contributor(
    store: Repositories,
) -> None:
    store.data_credits.add("q1", [_credit("bob", "b", 5), _credit("alice", "a", 7, 2)], T0)
    store.data_credits.add("q2", [_credit("alice", "b", 3)], T0 + 5)
    with pytest.raises(Conflict):
        store.data_credits.add("q1", [_credit("alice", "a", 1)], T0 + 9)
    assert store.data_credits.total_msat("alice") == 10
    assert store.data_credits.total_msat("bob") == 5
    assert store.data_credits.total_msat("nobody") == 0
    assert list(store.data_credits.for_query("q1")) == [
        _credit("alice", "a", 7, 2), _credit("bob", "b", 5),
    ]
    assert list(store.data_credits.for_contributor("alice")) == [
        ("q2", T0 + 5, _credit("alice", "b", 3)),
        ("q1", T0, _credit("alice", "a", 7, 2)),
    ]
    assert len(store.data_credits.for_contributor("alice", limit=1)) == 1


def test_a_query_without_credits_records_nothing(store: Repositories) -> None:
    store.data_credits.add("q0", [], T0)
    assert list(store.data_credits.for_query("q0")) == []
    store.data_credits.add("q0", [_credit("bob", "b", 1)], T0)
    assert store.data_credits.total_msat("bob") == 1


def test_a_failed_atomic_block_stores_no_dataset(store: Repositories) -> None:
    dataset = _dataset()
    with pytest.raises(RuntimeError), store.atomic():
        store.datasets.add(_record(dataset), dataset.documents)
        raise RuntimeError("boom")
    assert store.datasets.get(dataset.dataset_id) is None
    assert list(store.datasets.documents(dataset.dataset_id)) == []
