"""The knowledge base service: registry, contributions (validate → hash → index → stamp →
store → new sub-model version), crediting, idempotent demo data. Runs on the hashing embedder
and the numpy vector store (fast); real retrieval quality is checked with MiniLM + Qdrant in
``tests/e2e/test_knowledge_retrieval.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owm_adapters.bootstrap.coordinator import demo_knowledge_base, knowledge_base_from
from owm_adapters.bootstrap.settings import (
    ConfigError,
    CoordinatorSection,
    CoordinatorSettings,
    KnowledgeSection,
    load_coordinator_settings,
)
from owm_adapters.knowledge.minilm import HashingEmbedder
from owm_adapters.knowledge.qdrant import MemoryVectorStore, QdrantVectorStore
from owm_adapters.services.knowledge import DEMO_CONTRIBUTOR, KnowledgeBase
from owm_adapters.storage.memory import memory_repositories
from owm_adapters.storage.sql import open_repositories
from owm_core.errors import CalendarUnavailable, Conflict, InvalidValue, NotFound
from owm_core.provenance.versions import ProofStatus, Verification

T0 = 1_800_000_000


class FakeTimestamping:
    """Stamps by remembering digests; ``down`` makes the calendars unreachable."""

    def __init__(self) -> None:
        self.stamped: list[bytes] = []
        self.down = False

    def stamp(self, digest: bytes) -> bytes:
        if self.down:
            raise CalendarUnavailable("no calendar answers")
        self.stamped.append(digest)
        return b"\x00ots-pending:" + digest

    def upgrade(self, proof: bytes) -> bytes:
        return proof

    def verify(self, proof: bytes, digest: bytes) -> Verification:  # pragma: no cover
        raise NotImplementedError


def _kb(timestamping: FakeTimestamping | None = None) -> KnowledgeBase:
    return KnowledgeBase(
        memory_repositories(), HashingEmbedder(), MemoryVectorStore(), timestamping=timestamping
    )


def _dataset(name: str = "rivers", sub_models: tuple[str, ...] = ("owm-geo",)) -> bytes:
    return json.dumps(
        {
            "name": name,
            "sub_models": list(sub_models),
            "source": "Alice's atlas",
            "licence": "CC-BY-4.0",
            "documents": [
                {"title": "Danube", "text": "The Danube flows through ten countries into the "
                 "Black Sea. It passes Vienna, Bratislava, Budapest and Belgrade."},
                {"title": "Rhine", "text": "The Rhine rises in the Swiss Alps and flows to the "
                 "North Sea through Germany and the Netherlands."},
            ],
        }
    ).encode()


def test_a_contribution_is_stored_indexed_attributed_and_stamped() -> None:
    stamps = FakeTimestamping()
    kb = _kb(stamps)
    kb.register_sub_model("owm-geo", "Geography of the world: rivers and countries.", T0)
    record = kb.submit(_dataset(), "alice", T0 + 1)
    assert record.contributor == "alice"
    assert record.n_documents == 2 and record.n_passages == 2
    assert record.licences == ("CC-BY-4.0",)
    assert bytes.fromhex(record.digest) in stamps.stamped
    assert record.proof == b"\x00ots-pending:" + bytes.fromhex(record.digest)
    assert kb.dataset(record.dataset_id) == record
    assert kb.datasets(contributor="alice") == [record]
    [hit] = kb.retrieve("Which river flows into the Black Sea past Vienna?", limit=1)
    passage = hit.passage
    assert passage.title == "Danube"
    assert (passage.contributor, passage.licence) == ("alice", "CC-BY-4.0")
    assert passage.source == "Alice's atlas"
    assert passage.dataset_id == record.dataset_id and hit.sub_model == "owm-geo"


def test_each_contribution_makes_a_new_stamped_sub_model_version_listed_as_a_release() -> None:
    stamps = FakeTimestamping()
    kb = _kb(stamps)
    first = kb.register_sub_model("owm-geo", "Geography of the world.", T0)
    assert first.version == "owm-v0.1.0" and first.version_digest is None
    a = kb.submit(_dataset("a"), "alice", T0 + 1)
    after_a = kb.sub_model("owm-geo")
    b = kb.submit(_dataset("b"), "bob", T0 + 2)
    after_b = kb.sub_model("owm-geo")
    assert after_a is not None and after_b is not None
    assert (after_a.version, after_b.version) == ("owm-v0.1.1", "owm-v0.1.2")
    assert after_b.dataset_ids == tuple(sorted((a.dataset_id, b.dataset_id)))
    release = kb.repositories.releases.get("owm-geo@owm-v0.1.2")
    assert release is not None
    assert release.version.digest == after_b.version_digest
    assert release.version.parent == after_a.version_digest
    assert release.proof_status is ProofStatus.PENDING
    assert bytes.fromhex(after_b.version_digest or "") in stamps.stamped


def test_unreachable_calendars_do_not_lose_the_contribution() -> None:
    stamps = FakeTimestamping()
    stamps.down = True
    kb = _kb(stamps)
    kb.register_sub_model("owm-geo", "Geography of the world.", T0)
    record = kb.submit(_dataset(), "alice", T0)
    assert record.proof is None
    release = kb.repositories.releases.get("owm-geo@owm-v0.1.1")
    assert release is not None and release.proof_status is ProofStatus.NONE


def test_the_same_dataset_is_attributed_to_its_first_contributor_only() -> None:
    kb = _kb()
    kb.register_sub_model("owm-geo", "Geography of the world.", T0)
    first = kb.submit(_dataset(), "alice", T0)
    assert kb.submit(_dataset(), "alice", T0 + 50) == first
    with pytest.raises(Conflict, match="another contributor"):
        kb.submit(_dataset(), "mallory", T0 + 60)
    assert kb.sub_model("owm-geo").version == "owm-v0.1.1"  # type: ignore[union-attr]


def test_a_dataset_for_an_unregistered_sub_model_is_refused_before_anything_is_stored() -> None:
    kb = _kb()
    kb.register_sub_model("owm-geo", "Geography of the world.", T0)
    with pytest.raises(InvalidValue) as refused:
        kb.submit(_dataset(sub_models=("owm-geo", "owm-cooking")), "alice", T0)
    assert refused.value.field == "sub_models"
    assert "owm-geo" in refused.value.reason
    assert kb.datasets() == []
    assert kb.store.count(kb.collection) == 0


def test_an_invalid_dataset_is_refused_naming_the_field() -> None:
    kb = _kb()
    with pytest.raises(InvalidValue) as refused:
        kb.submit(b'{"name": "x", "sub_models": ["owm-geo"], "documents": [{"title": "t"}]}',
                  "alice", T0)
    assert refused.value.field == "documents[0].text"


def test_registering_is_idempotent_but_a_changed_domain_is_a_conflict() -> None:
    kb = _kb()
    model = kb.register_sub_model("owm-geo", "Geography of the world.", T0)
    assert kb.register_sub_model("owm-geo", "Geography of the world.", T0 + 9) == model
    with pytest.raises(Conflict):
        kb.register_sub_model("owm-geo", "Cooking recipes.", T0)
    hosted = kb.set_hosts("owm-geo", ["n" + "2" * 40, "n" + "1" * 40])
    assert hosted.host_node_ids == ("n" + "1" * 40, "n" + "2" * 40)
    with pytest.raises(NotFound):
        kb.set_hosts("owm-none", [])


def test_credits_are_computed_stored_once_per_query_and_add_up() -> None:
    kb = _kb()
    kb.register_sub_model("owm-geo", "Geography of the world.", T0)
    kb.submit(_dataset(), "alice", T0)
    used = kb.retrieve("Danube Rhine rivers", limit=2)
    credits = kb.credit("qry_1", used, cost_msat=10_000, now=T0 + 5)
    assert sum(c.amount_msat for c in credits) == 1_000  # 10 % of the cost
    assert kb.credit("qry_1", used, cost_msat=99_999, now=T0 + 6) == credits
    assert kb.credited_msat("alice") == 1_000
    assert kb.credit("qry_2", [], cost_msat=10_000, now=T0) == ()


def test_scores_cover_every_sub_model_and_a_sub_model_without_data_scores_minus_one() -> None:
    kb = _kb()
    kb.register_sub_model("owm-geo", "Geography of the world: rivers and countries.", T0)
    kb.register_sub_model("owm-empty", "Nothing has been contributed here yet.", T0)
    kb.submit(_dataset(), "alice", T0)
    retrieval = kb.search("Which countries does the Danube river flow through?", limit=3)
    assert retrieval.scores[0].sub_model == "owm-geo"
    empty = retrieval.score_of("owm-empty")
    assert empty is not None and empty.data == -1.0
    assert [s.sub_model for s in kb.route_scores("Danube")] == [
        s.sub_model for s in kb.search("Danube", 1).scores
    ]
    with pytest.raises(InvalidValue):
        kb.search("   ")


def test_demo_data_loads_idempotently_for_three_sub_models() -> None:
    kb = demo_knowledge_base()
    names = [m.name for m in kb.sub_models()]
    assert names == ["owm-geo", "owm-history", "owm-science"]
    count = kb.store.count(kb.collection)
    records = kb.load_demo_data(T0 + 100)
    assert kb.store.count(kb.collection) == count
    assert {r.contributor for r in records} == {DEMO_CONTRIBUTOR}
    assert {r.licences for r in records} == {("CC0-1.0",)}
    for model in kb.sub_models():
        assert 30 <= sum(r.n_documents for r in kb.datasets(sub_model=model.name)) <= 60
        assert model.version == "owm-v0.1.1"


def test_a_new_vector_store_over_stored_datasets_is_reindexed() -> None:
    kb = demo_knowledge_base()
    expected = kb.store.count(kb.collection)
    again = KnowledgeBase(kb.repositories, HashingEmbedder(), MemoryVectorStore())
    assert again.sync_index() == expected
    assert again.store.count(again.collection) == expected
    assert again.sync_index() == 0


def test_the_composition_root_builds_a_qdrant_backed_base_that_survives_a_restart(
    tmp_path: Path,
) -> None:
    settings = CoordinatorSettings(
        coordinator=CoordinatorSection(data_dir=str(tmp_path)),
        knowledge=KnowledgeSection(embedder="hashing"),
    )
    repos = memory_repositories()
    first = knowledge_base_from(settings, repos, now=T0)
    assert first is not None and isinstance(first.store, QdrantVectorStore)
    indexed = first.store.count(first.collection)
    assert indexed > 100 and (tmp_path / "qdrant").is_dir()
    first.close()
    again = knowledge_base_from(settings, repos, now=T0 + 60)
    assert again is not None
    assert again.store.count(again.collection) == indexed
    assert again.search("Paris France Seine", 3).passages[0].passage.title == "France"
    again.close()
    off = CoordinatorSettings(knowledge=KnowledgeSection(enabled=False))
    assert knowledge_base_from(off, repos, now=T0) is None


def test_an_unknown_embedder_in_the_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.toml"
    path.write_text('[knowledge]\nembedder = "word2vec"\n')
    with pytest.raises(ConfigError, match=r"knowledge\.embedder"):
        load_coordinator_settings(path)


def test_the_service_works_the_same_over_sqlite(tmp_path: Path) -> None:
    repos = open_repositories(f"sqlite:///{tmp_path / 'coordinator.sqlite3'}")
    try:
        kb = KnowledgeBase(repos, HashingEmbedder(), MemoryVectorStore(), FakeTimestamping())
        kb.load_demo_data(T0)
        record = kb.submit(_dataset(), "alice", T0 + 1)
        assert kb.dataset(record.dataset_id) == record
        geo = kb.sub_model("owm-geo")
        assert geo is not None and geo.version == "owm-v0.1.2"
        assert record.dataset_id in geo.dataset_ids
        assert repos.releases.get("owm-geo@owm-v0.1.2") is not None
        assert kb.credit("qry_9", kb.retrieve("Danube Black Sea", 2), 5_000, T0) != ()
        assert kb.credited_msat("alice") + kb.credited_msat(DEMO_CONTRIBUTOR) == 500
    finally:
        repos.close()
