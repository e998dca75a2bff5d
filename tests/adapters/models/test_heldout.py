"""The held-out questions: enough of them, answerable from the shipped data, never trained on."""

from __future__ import annotations

import json
from pathlib import Path

from owm_adapters.models.reader.heldout import heldout_answers, heldout_questions
from owm_core.knowledge.answer_quality import normalise_answer
from owm_core.knowledge.training_pairs import cloze_pairs

DEMO = Path(__file__).resolve().parents[3] / "owm_adapters" / "knowledge" / "demo_data"


def _documents() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(DEMO.glob("owm-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for name in data["sub_models"]:
            out.setdefault(name, []).extend(d["text"] for d in data["documents"])
    return out


def test_there_are_at_least_100_questions_each_answered_verbatim_by_its_sub_models_data():
    questions = heldout_questions()
    documents = _documents()
    assert len(questions) >= 100
    assert len({q.question for q in questions}) == len(questions)
    for q in questions:
        text = " ".join(documents[q.sub_model])
        assert q.answers and all(a in text for a in q.answers), q


def test_no_training_pair_of_the_demo_data_targets_a_held_out_answer():
    held = {normalise_answer(a) for a in heldout_answers()}
    for texts in _documents().values():
        for pair in cloze_pairs(texts, exclude=heldout_answers()):
            if pair.answerable:
                assert normalise_answer(pair.answer) not in held, pair
