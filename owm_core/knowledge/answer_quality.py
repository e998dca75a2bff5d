"""How close an answer is to its reference answers: exact match and token F1 (SRS 2.1).

The measures of extractive question answering as SQuAD defines them: both texts are normalised
(Unicode NFKC, case folded, punctuation removed, the articles ``a``/``an``/``the`` dropped,
whitespace collapsed); **exact match** is 1 when the normalised texts are equal, **F1** is the
harmonic mean of the precision and recall of their tokens (as multisets). A question with several
acceptable references scores its best one. ``bench/query_quality.py`` reports both, averaged over
the held-out questions.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

_PUNCTUATION = re.compile(r"[^\w\s]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise_answer(text: str) -> str:
    """``text`` as compared (module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _PUNCTUATION.sub(" ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when ``prediction`` equals one of ``references`` after normalisation, else 0.0."""
    mine = normalise_answer(prediction)
    return 1.0 if any(mine == normalise_answer(r) for r in references) else 0.0


def _f1(prediction: str, reference: str) -> float:
    mine, theirs = normalise_answer(prediction).split(), normalise_answer(reference).split()
    if not mine or not theirs:
        return float(mine == theirs)
    common = sum((Counter(mine) & Counter(theirs)).values())
    if not common:
        return 0.0
    precision, recall = common / len(mine), common / len(theirs)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, references: Sequence[str]) -> float:
    """The best token F1 of ``prediction`` against ``references`` (0.0 with none)."""
    return max((_f1(prediction, r) for r in references), default=0.0)


__all__ = ["exact_match", "f1_score", "normalise_answer"]
