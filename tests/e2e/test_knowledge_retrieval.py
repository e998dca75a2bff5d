"""Real retrieval: the demo datasets indexed with the real MiniLM encoder
in Qdrant's embedded local mode on disk answer real questions — the passage that holds the
answer is in the top 3 and the right sub-model scores highest; an off-topic question scores low
everywhere. MiniLM is loaded once per process (``shared_minilm``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from owm_adapters.knowledge.minilm import shared_minilm
from owm_adapters.knowledge.qdrant import QdrantVectorStore
from owm_adapters.services.knowledge import KnowledgeBase
from owm_adapters.storage.memory import memory_repositories

T0 = 1_800_000_000


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    store = QdrantVectorStore(path=tmp_path_factory.mktemp("qdrant"))
    built = KnowledgeBase(memory_repositories(), shared_minilm(), store)
    built.load_demo_data(T0)
    yield built
    built.close()


@pytest.mark.parametrize(
    ("question", "sub_model", "title"),
    [
        ("What is the capital of France?", "owm-geo", "France"),
        ("What is photosynthesis?", "owm-science", "Photosynthesis"),
        ("When did the Roman Empire fall?", "owm-history", "Fall of the Western Roman Empire"),
        ("Which is the highest mountain on Earth?", "owm-geo", "Highest mountains"),
        ("How fast does light travel?", "owm-science", "Speed of light"),
        ("When did the Second World War begin?", "owm-history", "Second World War"),
        ("What is DNA made of?", "owm-science", "DNA"),
        ("Who was the first person to walk on the Moon?", "owm-history", "Moon landing"),
    ],
)
def test_a_demo_question_finds_its_passage_and_its_sub_model(
    kb: KnowledgeBase, question: str, sub_model: str, title: str
) -> None:
    retrieval = kb.search(question, limit=3)
    assert title in [p.passage.title for p in retrieval.passages]
    assert retrieval.scores[0].sub_model == sub_model
    assert retrieval.scores[0].score > 0.5
    best = retrieval.passages[0].passage
    assert best.licence == "CC0-1.0" and best.contributor == "owm-demo"


def test_an_off_topic_question_scores_low_for_every_sub_model(kb: KnowledgeBase) -> None:
    retrieval = kb.search("What is the best pizza topping?", limit=3)
    assert max(s.score for s in retrieval.scores) < 0.4


def test_retrieval_can_be_restricted_to_one_sub_model(kb: KnowledgeBase) -> None:
    passages = kb.retrieve("What is the capital of France?", limit=5, sub_models=["owm-history"])
    assert passages and all(p.passage.sub_models == ("owm-history",) for p in passages)


def test_the_index_persists_in_qdrant_local_mode(kb: KnowledgeBase) -> None:
    expected = sum(r.n_passages for r in kb.datasets())
    assert kb.store.count(kb.collection) == expected >= 100
    assert kb.sync_index() == 0
