"""The query path end to end in one process: retrieval → routing → inference tasks through the
market → nodes' readings → grounded answer, stored and streamed (SRS 4.8.3, SRS-API-05)."""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import pytest

from owm_adapters.services.queries import QueryConfig, QueryService
from owm_core.errors import InvalidValue, NotFound
from owm_core.knowledge.routing import ABSTAIN_BELOW, NO_ANSWER
from owm_core.market.tasks import TaskState, VerificationPolicy
from tests.server.query_harness import Conglomerate, conglomerate

# The hashing embedder of the unit-test knowledge base gives similarities around 0.2-0.3, so
# these tests route with a threshold of 0 (MiniLM's routing is tested in test_query_quality).
ANY = QueryConfig(threshold=0.0, timeout_s=5.0)


def service(world: Conglomerate, config: QueryConfig = ANY) -> QueryService:
    return QueryService(world.knowledge, world.coordinator, world.repos,
                        world.coordinator.clock, config)


def test_a_question_is_answered_by_nodes_reading_the_retrieved_passages(tmp_path: Path):
    with conglomerate(tmp_path, ({}, {"ask_msat": 2_000})) as world:
        queries = service(world)
        answer = queries.ask("What is the capital of France?")
        c = answer.composition
        assert c.answered, c.answer
        assert "Paris is the capital" in c.answer
        assert c.answer.split(" [")[0] in {x.text for x in c.citations}
        assert c.data_sources and c.sub_models_used
        assert ABSTAIN_BELOW <= c.confidence <= 1.0
        executed = sum(len(n.executed) for n in world.nodes)
        assert executed == len(c.sub_models_used)
        # every task was paid its negotiated price; the query costs their sum in whole sats
        paid = world.repos.tasks.with_state(TaskState.SETTLED, 100)
        assert answer.cost_sats == -(-sum(t.price_msat or 0 for t in paid) // 1000) > 0
        assert queries.answer(answer.query_id) == answer
        # the contributors of the cited passages are credited, nobody else
        credits = world.repos.data_credits.for_query(answer.query_id)
        assert {x.dataset_id for x in credits} == {x.dataset_id for x in c.citations}
        # the nodes whose readings were verified are listed as the sub-models' hosts
        readers = {t.node_id for t in paid}
        for name in c.sub_models_used:
            hosted = world.knowledge.sub_model(name)
            assert hosted is not None and set(hosted.host_node_ids) <= readers
            assert hosted.host_node_ids


def test_the_stream_reports_retrieval_each_sub_model_and_then_the_answer(tmp_path: Path):
    with conglomerate(tmp_path) as world:
        events = list(service(world).stream("When did the Western Roman Empire fall?"))
        kinds = [e.kind for e in events]
        assert kinds[0] == "retrieval" and kinds[-1] == "answer"
        chosen = [s["name"] for s in events[0].data["sub_models"]]
        partials = [e.data for e in events[1:-1]]
        assert sorted(p["sub_model"] for p in partials) == sorted(chosen)
        assert all(p["outcome"] == "verified" for p in partials)
        final = events[-1].answer
        assert final is not None and final.query_id == events[0].data["query_id"]


def test_a_sub_model_whose_node_never_answers_is_left_out_without_hanging(tmp_path: Path):
    with conglomerate(tmp_path, ({"silent": True},)) as world:
        queries = service(world, QueryConfig(threshold=0.0, timeout_s=0.5))
        started = time.monotonic()
        answer = queries.ask("What is the capital of France?")
        assert time.monotonic() - started < 3.0
        c = answer.composition
        assert not c.answered and c.answer.startswith(NO_ANSWER)
        assert c.missing_sub_models and "left out" in c.answer
        assert c.confidence == 0.0 and answer.cost_sats == 0


def test_a_slow_sub_model_only_lowers_the_confidence_of_the_others_answer(tmp_path: Path):
    with conglomerate(tmp_path, ({}, {"delay_s": 3.0, "ask_msat": 500})) as world:
        # the cheaper node wins the first task it can take, then is busy sleeping
        queries = service(world, QueryConfig(threshold=0.0, timeout_s=1.0))
        answer = queries.ask("What is the capital of France?")
        c = answer.composition
        assert c.missing_sub_models
        assert set(c.missing_sub_models).isdisjoint(c.sub_models_used)
        assert all(m in c.answer for m in c.missing_sub_models)


def test_a_question_answered_before_its_host_is_slashed_is_answered_after_by_the_nodes_left(
    tmp_path: Path,
):
    # Three nodes, each reading verified by all three; then one is slashed (suspended).
    three = VerificationPolicy(redundancy=3)
    with conglomerate(tmp_path, ({}, {}, {}), verification=three) as world:
        queries = service(world)
        before = queries.ask("What is the capital of France?")
        assert before.composition.answered, before.composition.answer
        name = before.composition.sub_models_used[0]
        hosted = world.knowledge.sub_model(name)
        assert hosted is not None and len(hosted.host_node_ids) == 3
        gone = world.repos.nodes.get(hosted.host_node_ids[0])
        assert gone is not None
        world.repos.nodes.save(attrs.evolve(gone, suspended=True, reliability_ppm=0))
        slashed = next(n for n in world.nodes if n.sim.identity.node_id == gone.node_id)
        others = [n for n in world.nodes if n is not slashed]
        read_before = len(slashed.executed), [len(n.executed) for n in others]

        after = queries.ask("What is the capital of France?")

        c = after.composition
        assert c.answered and c.answer == before.composition.answer
        assert c.sub_models_used == before.composition.sub_models_used
        assert len(slashed.executed) == read_before[0]  # routed to the hosts left
        assert all(len(n.executed) > k for n, k in zip(others, read_before[1], strict=True))
        assert after.cost_sats > 0


def test_no_sub_model_above_the_threshold_answers_that_nothing_covers_it(tmp_path: Path):
    with conglomerate(tmp_path) as world:
        answer = service(world, QueryConfig(threshold=0.99)).ask("What is the capital of France?")
        c = answer.composition
        assert not c.answered and c.confidence == 0.0 and c.sub_models_used == ()
        assert "No sub-model" in c.answer
        assert sum(len(n.executed) for n in world.nodes) == 0


def test_an_unknown_query_id_is_not_found_and_a_blank_question_is_invalid(tmp_path: Path):
    with conglomerate(tmp_path, ()) as world:
        queries = service(world)
        with pytest.raises(NotFound):
            queries.answer("qry_missing")
        with pytest.raises(InvalidValue) as raised:
            queries.ask("   ")
        assert raised.value.field == "query"
