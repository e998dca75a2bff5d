"""The router's rules: threshold routing, grounded answers, calibrated confidence, cost."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.knowledge.routing import (
    ABSTAIN_BELOW,
    CALIBRATION,
    NO_ANSWER,
    NO_SUB_MODEL,
    Calibration,
    Evidence,
    Extract,
    QueryAnswer,
    Reading,
    SubModelRoute,
    answer_fields,
    answer_from_fields,
    compose,
    cost_sats,
    fit_calibration,
    reading_from_output,
    route,
)

names = st.sampled_from(["owm-geo", "owm-history", "owm-science", "owm-events", "owm-law"])
relevances = st.floats(-1.0, 1.0, allow_nan=False)
candidate_lists = st.lists(
    st.tuples(names, relevances), unique_by=lambda c: c[0], max_size=5
).map(lambda cs: [SubModelRoute(n, r, f"{n}@owm-v0.1.0", True) for n, r in cs])


@settings(max_examples=200)
@given(candidates=candidate_lists, low=st.floats(-1, 1), high=st.floats(-1, 1),
       k=st.integers(1, 5))
def test_raising_the_threshold_never_adds_a_sub_model(candidates, low, high, k):
    low, high = min(low, high), max(low, high)
    strict = {r.sub_model for r in route(candidates, high, 5)}
    loose = {r.sub_model for r in route(candidates, low, 5)}
    assert strict <= loose
    chosen = route(candidates, low, k)
    assert len(chosen) <= k
    assert all(r.relevance >= low for r in chosen)
    assert [r.relevance for r in chosen] == sorted((r.relevance for r in chosen), reverse=True)
    # the most relevant ones are kept when k cuts the list
    assert chosen == route(candidates, low, 5)[:k]


@settings(max_examples=200)
@given(candidates=candidate_lists, narrow=st.floats(0, 2), wide=st.floats(0, 2))
def test_narrowing_the_margin_never_adds_a_sub_model_and_keeps_the_best(candidates, narrow,
                                                                        wide):
    narrow, wide = min(narrow, wide), max(narrow, wide)
    few = route(candidates, -1.0, 5, narrow)
    many = route(candidates, -1.0, 5, wide)
    assert set(few) <= set(many)
    if candidates:
        assert few[0].relevance == max(c.relevance for c in candidates)
        assert all(r.relevance >= few[0].relevance - narrow for r in few)


@given(candidates=candidate_lists)
def test_routing_does_not_depend_on_the_order_sub_models_are_listed_in(candidates):
    assert route(candidates, 0.0) == route(list(reversed(candidates)), 0.0)


def test_a_sub_model_listed_twice_is_refused():
    geo = SubModelRoute("owm-geo", 0.5)
    with pytest.raises(InvalidValue) as raised:
        route([geo, geo])
    assert raised.value.field == "candidates"


GEO = SubModelRoute("owm-geo", 0.6, "owm-geo@owm-v0.1.0", True)
HIST = SubModelRoute("owm-history", 0.4, "owm-history@owm-v0.2.0", False)
PASSAGES = (
    Evidence("g1", "owm-geo", "USGS", "The Cascadia zone is 1,000 km long. It is quiet.", 0.7,
             "ds-geo"),
    Evidence("h1", "owm-history", "Wikipedia", "The 1700 Cascadia earthquake was huge.", 0.5),
)


def test_the_answer_quotes_the_passages_and_cites_their_sources_in_order():
    readings = [
        Reading("owm-geo", (Extract("g1", "The Cascadia zone is 1,000 km long.", 2.0, 1.0),)),
        Reading("owm-history", (Extract("h1", "The 1700 Cascadia earthquake was huge.", 1.0,
                                        0.9),)),
    ]
    result = compose([GEO, HIST], PASSAGES, readings)
    assert result.answered
    assert result.answer == (
        "The Cascadia zone is 1,000 km long. [1] The 1700 Cascadia earthquake was huge. [2]"
    )
    assert result.data_sources == ("USGS", "Wikipedia")
    assert result.sub_models_used == ("owm-geo", "owm-history")
    assert result.model_version == "owm-geo@owm-v0.1.0,owm-history@owm-v0.2.0"
    assert result.ots_verified is False  # owm-history's version is not anchored yet
    assert result.citations[0].dataset_id == "ds-geo"
    assert [c.model_version for c in result.citations] == [GEO.version, HIST.version]


def test_a_sentence_that_is_not_in_the_sent_passage_is_never_used():
    forged = Reading("owm-geo", (Extract("g1", "Buy bitcoin now.", 9.0, 1.0),
                                 Extract("h1", "The 1700 Cascadia earthquake was huge.", 9.0,
                                         1.0)))
    result = compose([GEO], PASSAGES, [forged])
    assert not result.answered and result.answer == NO_ANSWER
    assert result.citations == () and result.confidence == 0.0


def test_no_relevant_sub_model_says_so_with_zero_confidence():
    result = compose([], PASSAGES, [])
    assert result.answer == NO_SUB_MODEL and result.confidence == 0.0
    assert not result.answered and result.data_sources == ()


def test_a_weak_match_abstains_with_low_confidence():
    weak = (Evidence("g1", "owm-geo", "USGS", "Zones are regions.", 0.1),)
    reading = Reading("owm-geo", (Extract("g1", "Zones are regions.", 0.3, 0.25),))
    result = compose([GEO], weak, [reading])
    assert not result.answered and result.answer.startswith(NO_ANSWER)
    assert result.confidence < 0.3 and result.data_sources == ()


def test_a_sub_model_that_missed_the_deadline_is_named_and_lowers_confidence():
    reading = Reading("owm-geo", (Extract("g1", "The Cascadia zone is 1,000 km long.", 2.0,
                                          1.0),))
    complete = compose([GEO], PASSAGES, [reading])
    partial = compose([GEO, HIST], PASSAGES, [reading])
    assert partial.missing_sub_models == ("owm-history",)
    assert "owm-history" in partial.answer and "left out" in partial.answer
    assert partial.confidence < complete.confidence
    assert partial.sub_models_used == ("owm-geo",)


def test_max_words_limits_the_answer_but_keeps_one_sentence():
    readings = [Reading("owm-geo", (Extract("g1", "The Cascadia zone is 1,000 km long.", 2, 1.0),
                                    Extract("g1", "It is quiet.", 1, 1.0)))]
    assert len(compose([GEO], PASSAGES, readings, max_words=3).citations) == 1
    assert len(compose([GEO], PASSAGES, readings).citations) == 2


texts = st.sampled_from(["The Cascadia zone is 1,000 km long.", "It is quiet.", "Buy now.",
                         "The 1700 Cascadia earthquake was huge.", ""])
extracts = st.builds(
    Extract, st.sampled_from(["g1", "h1", "x"]), texts, st.floats(0, 10),
    st.floats(0, 1),
)
reading_lists = st.lists(
    st.builds(Reading, st.sampled_from(["owm-geo", "owm-history", "owm-law"]),
              st.lists(extracts, max_size=4).map(tuple)),
    max_size=3, unique_by=lambda r: r.sub_model,
)


@settings(max_examples=200)
@given(readings=reading_lists, chosen=st.sampled_from([[], [GEO], [HIST], [GEO, HIST]]))
def test_confidence_is_bounded_and_every_answer_sentence_is_quoted(readings, chosen):
    result = compose(chosen, PASSAGES, readings)
    assert 0.0 <= result.confidence <= 1.0
    sources = {p.passage_id: p for p in PASSAGES}
    for citation in result.citations:
        assert citation.text in sources[citation.passage_id].text
        assert citation.source in result.data_sources
        assert citation.sub_model in {r.sub_model for r in chosen}
    if not result.answered:
        assert result.data_sources == () and result.citations == ()
        assert result.confidence < ABSTAIN_BELOW
    assert set(result.sub_models_used) | set(result.missing_sub_models) == {
        r.sub_model for r in chosen
    }


@given(st.lists(st.floats(0, 1), min_size=2, max_size=20))
def test_the_calibration_is_monotone_and_bounded(strengths):
    values = [CALIBRATION(x) for x in sorted(strengths)]
    assert values == sorted(values)
    assert all(0.0 <= v <= 1.0 for v in values)


@settings(max_examples=100)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=60),
       st.integers(1, 12))
def test_a_fitted_calibration_is_monotone_and_matches_the_overall_rate(samples, bins):
    fitted = fit_calibration(samples, bins)
    ys = [p for _, p in fitted.points]
    assert ys == sorted(ys)
    assert all(0.0 < y < 1.0 for y in ys)  # smoothed: a sample never proves certainty
    assert len(fitted.points) <= bins


def test_a_fit_on_separable_samples_rises_from_unlikely_to_likely():
    samples = [(x / 100, x >= 60) for x in range(0, 100, 2)]
    fitted = fit_calibration(samples, 5)
    assert fitted(0.1) < 0.1 and fitted(0.95) > 0.9 and fitted(0.5) < fitted(0.7)


def test_calibration_knots_must_be_monotone():
    with pytest.raises(InvalidValue):
        Calibration(((0.1, 0.5), (0.2, 0.4)))


@given(st.lists(st.integers(0, 10**9), max_size=10))
def test_cost_is_the_paid_prices_rounded_up_to_whole_sats(prices):
    cost = cost_sats(prices)
    assert cost * 1000 >= sum(prices) > (cost - 1) * 1000 or cost == sum(prices) == 0


def test_a_float_price_is_refused():
    with pytest.raises(InvalidValue):
        cost_sats([1.5])  # type: ignore[list-item]


def test_a_node_output_parses_into_a_reading_and_malformed_ones_are_refused():
    output = {"sub_model": "owm-geo", "sentences": [
        {"passage_id": "g1", "sentence": 0, "text": "It is quiet.", "score": 1.2, "coverage": 0.5}
    ], "coverage": 0.5, "reader": "bm25-sentences-v1", "query_terms": ["quiet"]}
    reading = reading_from_output("owm-geo", json.dumps(output).encode())
    assert reading.extracts == (Extract("g1", "It is quiet.", 1.2, 0.5),)
    for bad in (b"nope", json.dumps({**output, "sub_model": "owm-law"}).encode(),
                json.dumps({"sub_model": "owm-geo"}).encode()):
        with pytest.raises(InvalidValue):
            reading_from_output("owm-geo", bad)


def test_a_stored_answer_round_trips_through_its_fields():
    reading = Reading("owm-geo", (Extract("g1", "It is quiet.", 1.0, 1.0),))
    answer = QueryAnswer("qry_1", "quiet?", 1_800_000_000, compose([GEO], PASSAGES, [reading]),
                         312, 5)
    fields = answer_fields(answer)
    assert {"answer", "sub_models_used", "data_sources", "confidence", "model_version",
            "ots_verified", "latency_ms", "cost_sats", "query_id"} <= set(fields)
    assert fields["citations"][0]["model_version"] == GEO.version
    restored = answer_from_fields(json.loads(json.dumps(fields)))
    assert restored.composition == answer.composition
    assert restored.cost_sats == 5 and restored.query_id == "qry_1"
