"""Training pairs from contributed documents: cloze pairs, exclusions, contributor pairs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.knowledge.training_pairs import (
    TrainingPair,
    answer_candidates,
    cloze_pairs,
    cloze_question,
    pair_fields,
    pair_from_fields,
)

FRANCE = (
    "Paris is the capital and largest city of France. The river Seine flows through Paris. "
    "The Eiffel Tower was completed in 1889."
)
JAPAN = "Tokyo is the capital of Japan. Mount Fuji rises to 3,776 metres."


def test_a_sentence_yields_numbers_with_their_unit_and_capitalised_names():
    assert answer_candidates("Mount Fuji rises to 3,776 metres.") == [
        (0, "Mount Fuji"),
        (20, "3,776 metres"),
    ]
    assert [t for _, t in answer_candidates("The Gulf of Mexico lies south.")] == [
        "Gulf of Mexico"
    ]
    assert [t for _, t in answer_candidates("Plants contain the pigment chlorophyll.")] == [
        "Plants", "pigment", "chlorophyll"
    ]


def test_a_cloze_question_replaces_the_answer_with_its_wh_word():
    assert cloze_question("Paris is the capital of France.", 0, "Paris") == (
        "What is the capital of France?"
    )
    assert cloze_question("The tower was completed in 1889.", 27, "1889") == (
        "The tower was completed in when?"
    )
    assert cloze_question("Fuji rises to 3,776 metres.", 14, "3,776 metres") == (
        "Fuji rises to how many?"
    )


def test_every_document_sentence_becomes_answerable_pairs_with_negatives_from_other_documents():
    pairs = cloze_pairs([FRANCE, JAPAN], negatives=1, seed=3)
    answerable = [p for p in pairs if p.answerable]
    assert ("What is the capital and largest city of France?", "Paris") in {
        (p.question, p.answer) for p in answerable
    }
    for pair in answerable:
        assert pair.passage[pair.answer_start :].startswith(pair.answer)
    negatives = [p for p in pairs if not p.answerable]
    answer_of = {p.question: p.answer for p in answerable}
    assert 0 < len(negatives) <= len(answerable)
    for pair in negatives:  # never a passage that holds the answer after all
        assert pair.answer_start == -1 and answer_of[pair.question] not in pair.passage


def test_sentences_holding_a_held_out_answer_never_become_training_targets():
    pairs = cloze_pairs([FRANCE, JAPAN], exclude=["Paris", "3,776 metres"])
    answers = {p.answer for p in pairs}
    assert "Paris" not in answers
    assert "France" not in answers  # its sentence answers a held-out question
    assert "Mount Fuji" not in answers
    assert {"Tokyo", "Japan", "Eiffel Tower", "1889"} <= answers


def test_the_same_documents_and_seed_give_the_same_pairs():
    assert cloze_pairs([FRANCE, JAPAN], seed=7) == cloze_pairs([FRANCE, JAPAN], seed=7)


def test_a_contributed_pair_needs_its_answer_in_the_passage():
    pair = pair_from_fields({"question": "Capital?", "passage": JAPAN, "answer": "Tokyo"})
    assert pair.answer_start == 0
    assert pair_from_fields(pair_fields(pair)) == pair
    unanswerable = pair_from_fields({"question": "Capital of Peru?", "passage": JAPAN})
    assert not unanswerable.answerable
    with pytest.raises(InvalidValue, match="does not occur"):
        pair_from_fields({"question": "Capital?", "passage": JAPAN, "answer": "Lima"})
    with pytest.raises(InvalidValue, match="at answer_start"):
        TrainingPair("Capital?", JAPAN, "Tokyo", 5)
    with pytest.raises(InvalidValue, match="needs question"):
        pair_from_fields({"passage": JAPAN})


_WORDS = st.sampled_from(
    ["Paris", "the", "capital", "of", "France", "1889", "was", "built", "in", "Rome", "42"]
)


@given(st.lists(st.lists(_WORDS, min_size=1, max_size=12), min_size=1, max_size=4))
def test_every_answer_lies_in_its_passage_at_its_offset(texts):
    documents = [" ".join(words) + "." for words in texts]
    for pair in cloze_pairs(documents, negatives=2):
        if pair.answerable:
            start = pair.answer_start
            assert pair.passage[start : start + len(pair.answer)] == pair.answer
        else:
            assert pair.passage in {" ".join(d.split()) for d in documents}
