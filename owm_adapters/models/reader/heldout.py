"""The held-out questions of the demo sub-models: written for measuring the readers, never
trained on (SRS 2.1).

``heldout.json`` holds questions over the three shipped demo datasets
(``owm_adapters/knowledge/demo_data``), each with the sub-model whose data answers it and one or
more acceptable reference answers, every reference occurring verbatim in that data.
``bench/query_quality.py`` scores the readers on them; :func:`heldout_answers` is what the
training-pair builder (:func:`owm_core.knowledge.training_pairs.cloze_pairs`) must exclude when
it builds pairs from the demo data, so that no sentence answering one of them is trained on.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import attrs

HELDOUT_FILE = Path(__file__).with_name("heldout.json")


@attrs.frozen
class HeldOutQuestion:
    """A question, the sub-model whose data answers it, and its acceptable answers."""

    sub_model: str
    question: str
    answers: tuple[str, ...]


@cache
def heldout_questions() -> tuple[HeldOutQuestion, ...]:
    """Every held-out question, in file order."""
    data = json.loads(HELDOUT_FILE.read_text(encoding="utf-8"))
    return tuple(
        HeldOutQuestion(q["sub_model"], q["question"], tuple(q["answers"]))
        for q in data["questions"]
    )


def heldout_answers() -> tuple[str, ...]:
    """Every reference answer of the held-out questions (to exclude from training pairs)."""
    return tuple(a for q in heldout_questions() for a in q.answers)
