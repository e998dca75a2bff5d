"""Exact match and F1 of answers against their references."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from owm_core.knowledge.answer_quality import exact_match, f1_score, normalise_answer


def test_case_punctuation_and_articles_do_not_count():
    assert normalise_answer("The  Mariana Trench.") == "mariana trench"
    assert exact_match("the Pacific", ["Pacific"]) == 1.0
    assert exact_match("Pacific Ocean", ["Pacific"]) == 0.0


def test_f1_rewards_overlap_and_takes_the_best_reference():
    assert f1_score("Pacific Ocean", ["Pacific"]) == 2 * 0.5 * 1.0 / 1.5
    assert f1_score("about 8,849 metres", ["8,849 metres", "about 8,849 metres"]) == 1.0
    assert f1_score("Paris", ["Berlin"]) == 0.0
    assert f1_score("Paris", []) == 0.0


@given(st.text(max_size=40), st.lists(st.text(max_size=40), min_size=1, max_size=3))
def test_scores_lie_in_the_unit_interval_and_an_exact_match_has_f1_one(prediction, references):
    em, f1 = exact_match(prediction, references), f1_score(prediction, references)
    assert 0.0 <= em <= 1.0 and 0.0 <= f1 <= 1.0
    if em == 1.0:
        assert f1 == 1.0
