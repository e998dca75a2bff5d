"""The sub-models' transformer readers in the query path: their span leads the answer, their
version is the answer's ``model_version``, and BM25 answers whenever they cannot (SRS 2.1,
SRS 4.8.3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from owm_adapters.models.reader import DEFAULT_CONFIG, serialise_version
from owm_adapters.models.reader.installed import InstalledReaders, directory_versions
from owm_adapters.models.reader.model import genesis_arrays
from owm_adapters.services.queries import QueryConfig, QueryService
from tests.server.query_harness import Conglomerate, conglomerate

ANY = QueryConfig(threshold=0.0, timeout_s=5.0)


class SpanReader:
    """A reader twin: answers with the first occurrence of ``word`` in the passages."""

    def __init__(self, word: str, version: str = "owm-geo@abc") -> None:
        self.word, self.version = word, version
        self.calls: list[str] = []

    def read(
        self, sub_model: str, query: str, passages: Sequence[tuple[str, str]], top_k: int
    ) -> tuple[str, list[tuple[str, int, int, float]]] | None:
        self.calls.append(sub_model)
        for passage_id, text in passages:
            at = text.find(self.word)
            if at >= 0:
                return self.version, [(passage_id, at, at + len(self.word), 0.9)]
        return None


class BrokenReader:
    def read(self, *_args: object) -> None:
        raise RuntimeError("the encoder is gone")


def service(world: Conglomerate, readers: object) -> QueryService:
    return QueryService(world.knowledge, world.coordinator, world.repos,
                        world.coordinator.clock, ANY, readers=readers)  # type: ignore[arg-type]


def test_the_readers_span_leads_the_answer_and_its_version_is_cited(tmp_path: Path):
    with conglomerate(tmp_path) as world:
        reader = SpanReader("Paris")
        answer = service(world, reader).ask("What is the capital of France?")
        c = answer.composition
        assert c.answered and c.answer.startswith("Paris — ")
        assert c.citations[0].answer == "Paris" and "Paris" in c.citations[0].text
        assert "owm-geo@abc" in c.model_version and not c.ots_verified
        assert reader.calls


def test_without_a_reader_or_with_a_broken_one_the_nodes_bm25_reading_answers(tmp_path: Path):
    with conglomerate(tmp_path) as world:
        for readers in (None, BrokenReader(), SpanReader("no such word")):
            c = service(world, readers).ask("What is the capital of France?").composition
            assert c.answered and "Paris is the capital" in c.answer
            assert " — " not in c.answer and not c.citations[0].answer
            assert "@abc" not in c.model_version


def test_a_span_outside_the_passages_sent_is_never_quoted(tmp_path: Path):
    class Liar(SpanReader):
        def read(self, sub_model, query, passages, top_k):  # type: ignore[override]
            passage_id, text = passages[0]
            return self.version, [(passage_id, 0, len(text) + 40, 0.99)]

    with conglomerate(tmp_path) as world:
        c = service(world, Liar("x")).ask("What is the capital of France?").composition
        assert all(x.answer in x.text for x in c.citations)


def test_installed_readers_load_a_version_file_and_refuse_a_foreign_one(tmp_path: Path):
    directory = tmp_path / "readers"
    directory.mkdir()
    blob = serialise_version("owm-geo", DEFAULT_CONFIG, genesis_arrays("owm-geo"))
    (directory / "owm-geo.owmr").write_bytes(blob)
    (directory / "owm-science.owmr").write_bytes(blob)  # owm-geo's version under another name
    readers = InstalledReaders(directory_versions(directory))
    passages = [("p1", "Paris is the capital and largest city of France.")]
    found = readers.read("owm-geo", "What is the capital of France?", passages, 1)
    assert found is not None
    version, spans = found
    assert version.startswith("owm-geo@") and len(version) == len("owm-geo@") + 12
    (passage_id, start, end, score), = spans
    assert passage_id == "p1" and 0 <= start < end and 0.0 <= score <= 1.0
    assert readers.read("owm-science", "What is DNA?", passages, 1) is None
    assert readers.read("owm-history", "When?", passages, 1) is None  # nothing installed


def test_installed_readers_ask_their_source_at_most_once_a_second_per_sub_model() -> None:
    asked: list[str] = []
    clock = [100.0]

    def source(sub_model: str) -> None:
        asked.append(sub_model)

    readers = InstalledReaders(source, monotonic=lambda: clock[0])
    passages = [("p1", "Paris is the capital of France.")]
    for _ in range(3):
        assert readers.read("owm-geo", "Capital?", passages, 1) is None
    assert readers.read("owm-history", "When?", passages, 1) is None
    clock[0] += 1.0
    assert readers.read("owm-geo", "Capital?", passages, 1) is None
    assert asked == ["owm-geo", "owm-history", "owm-geo"]


def test_the_coordinators_readers_run_their_encoder_in_int8_unless_told_otherwise(
    tmp_path: Path,
):
    from owm_adapters.bootstrap.api import READERS_DIR, readers_for
    from owm_adapters.knowledge.minilm import MiniLmEmbedder
    from owm_adapters.knowledge.qdrant import MemoryVectorStore
    from owm_adapters.models.reader.installed import InstalledReaders
    from owm_adapters.services.knowledge import KnowledgeBase
    from owm_adapters.storage.memory import memory_repositories

    (tmp_path / READERS_DIR).mkdir()
    blob = serialise_version("owm-geo", DEFAULT_CONFIG, genesis_arrays("owm-geo"))
    (tmp_path / READERS_DIR / "owm-geo.owmr").write_bytes(blob)
    kb = KnowledgeBase(memory_repositories(), MiniLmEmbedder(), MemoryVectorStore())
    passages = [("p1", "Paris is the capital and largest city of France.")]
    for int8 in (True, False):
        readers = readers_for(kb, tmp_path, int8=int8)
        assert isinstance(readers, InstalledReaders)
        loaded = readers.model("owm-geo")
        assert loaded is not None and loaded[1].int8 is int8
        found = readers.read("owm-geo", "What is the capital of France?", passages, 1)
        assert found is not None and found[0] == loaded[0]
