"""The query path's node task: ``owm.inference.passages`` v1 and its extractive reader."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.node.task_exec import execute
from owm_core.errors import InvalidValue
from owm_core.knowledge.reader import query_terms, read_passages, sentences
from owm_core.market.task_types import (
    MAX_PASSAGE_CHARS,
    MAX_PASSAGES,
    canonical_output,
    output_hash,
    validate_input,
)

SCHEMA = "owm.inference.passages"


def raw(value: object) -> bytes:
    return json.dumps(value).encode()


def task(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sub_model": "owm-geo",
        "query": "Where is the Cascadia subduction zone?",
        "passages": [
            {"id": "geo-1", "text": "The Cascadia subduction zone runs from Vancouver Island "
                                    "to northern California. It can produce large earthquakes."},
            {"id": "geo-2", "text": "Mount Rainier is a volcano in Washington."},
        ],
    }
    base.update(changes)
    return base


def rejected(payload: object) -> InvalidValue:
    with pytest.raises(InvalidValue) as raised:
        validate_input("inference", SCHEMA, 1, raw(payload))
    return raised.value


def test_a_valid_passages_input_is_accepted_and_decoded():
    schema, data = validate_input("inference", SCHEMA, 1, raw(task(top_k=2)))
    assert schema.schema_id == SCHEMA and data["top_k"] == 2
    assert data["passages"][1]["id"] == "geo-2"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (task(passages=[]), "input.passages"),
        (task(passages="text"), "input.passages"),
        (task(passages=[{"id": "a", "text": "x"}] * 2), "input.passages[1].id"),
        (task(passages=[{"id": "a", "text": "x"}, 5]), "input.passages[1]"),
        (task(passages=[{"id": "a"}]), "input.passages[0].text"),
        (task(passages=[{"id": "a", "text": ""}]), "input.passages[0].text"),
        (task(passages=[{"id": "a", "text": 3}]), "input.passages[0].text"),
        (task(passages=[{"id": "a", "text": "x", "url": "u"}]), "input.passages[0].url"),
        (task(passages=[{"id": "a", "text": "x" * (MAX_PASSAGE_CHARS + 1)}]),
         "input.passages[0].text"),
        (task(passages=[{"id": f"p{i}", "text": "x"} for i in range(MAX_PASSAGES + 1)]),
         "input.passages"),
        (task(query=""), "input.query"),
        (task(sub_model="Not A Slug"), "input.sub_model"),
        (task(top_k=0), "input.top_k"),
        (task(extra=1), "input.extra"),
    ],
)
def test_invalid_passages_inputs_are_refused_naming_the_field(payload, field):
    assert rejected(payload).field == field


def test_the_fourth_passage_with_a_bad_text_is_named_by_index():
    passages = [{"id": f"p{i}", "text": "fine"} for i in range(3)] + [{"id": "p3", "text": 1}]
    error = rejected(task(passages=passages))
    assert error.field == "input.passages[3].text" and "string" in error.reason


def test_the_node_answers_with_the_sentence_that_contains_the_answer():
    _, data = validate_input("inference", SCHEMA, 1, raw(task()))
    output = execute("inference", data, None)
    best = output["sentences"][0]
    assert output["sub_model"] == "owm-geo"
    assert best["passage_id"] == "geo-1"
    assert best["text"].startswith("The Cascadia subduction zone runs from Vancouver Island")
    assert output["coverage"] == 1.0


def test_passages_that_share_no_word_with_the_query_yield_nothing():
    output = read_passages("quantum chromodynamics", [{"id": "a", "text": "Cats sleep a lot."}])
    assert output["sentences"] == [] and output["coverage"] == 0.0


def test_stop_words_and_plurals_do_not_count_as_content():
    assert query_terms("What are the earthquakes in the Cascades?") == ["earthquake", "cascade"]
    assert query_terms("who are they") == ["who", "are", "they"]


def test_long_sentences_are_cut_on_a_word_break():
    (cut,) = sentences("word " * 400)
    assert len(cut) <= 602 and cut.endswith(" …")


VOCABULARY = (
    "river mountain city capital volcano earthquake zone north south the of is a in big old "
    "France Paris 1906 lava quake ocean"
)
words = st.sampled_from(VOCABULARY.split())
texts = st.lists(words, min_size=1, max_size=40).map(
    lambda ws: " ".join(w + ("." if i % 7 == 6 else "") for i, w in enumerate(ws))
)
passage_lists = st.lists(texts, min_size=1, max_size=6).map(
    lambda ts: [{"id": f"p{i}", "text": t} for i, t in enumerate(ts)]
)
queries = st.lists(words, min_size=1, max_size=6).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(query=queries, passages=passage_lists, top_k=st.integers(1, 10))
def test_reading_is_deterministic_and_only_quotes_the_passages(query, passages, top_k):
    first = read_passages(query, passages, top_k)
    again = read_passages(query, [dict(p) for p in passages], top_k)
    assert output_hash(first) == output_hash(again)
    assert canonical_output(first) == canonical_output(json.loads(canonical_output(first)))
    by_id = {p["id"]: " ".join(p["text"].split()) for p in passages}
    assert len(first["sentences"]) <= top_k
    for hit in first["sentences"]:
        assert hit["text"] in by_id[hit["passage_id"]]
        assert 0.0 < hit["coverage"] <= 1.0 and hit["score"] > 0.0
    scores = [(h["score"], h["coverage"]) for h in first["sentences"]]
    assert scores == sorted(scores, reverse=True)
    assert first["coverage"] == (scores[0][1] if scores else 0.0)


@settings(max_examples=80, deadline=None)
@given(query=queries, passages=passage_lists)
def test_a_larger_top_k_only_extends_the_list(query, passages):
    short = read_passages(query, passages, 2)["sentences"]
    longer = read_passages(query, passages, 5)["sentences"]
    assert longer[: len(short)] == short
