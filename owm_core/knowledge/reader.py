"""The extractive reader a node runs for the conglomerate's query path (SRS 2.1).

Given a query and the passages the router retrieved for one sub-model (task schema
``owm.inference.passages`` v1), :func:`read_passages` splits the passages into sentences and
scores every sentence against the query with BM25 (``k1 = 1.2``, ``b = 0.75``; the sentences of
the task are the document collection). It returns the best sentences *verbatim*, each with the
id of the passage it comes from, its BM25 score and its **coverage** — the share of the query's
distinct terms that the sentence contains. Nothing is generated: the answer the router composes
can only ever quote what the retrieved data says.

Normalisation: Unicode NFKC, case folding, tokens are runs of letters/digits, English stop
words are dropped (unless the query has nothing else), and a plural ``s`` is stripped
(``earthquakes`` → ``earthquake``). Deterministic by construction — pure Python, ordered
iteration, ties broken by passage and sentence position, scores compared after rounding to
:data:`owm_core.market.task_types.FLOAT_DIGITS` digits — so redundant replicas on different machines
produce the same canonical output and hence the same output hash.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from owm_core.market.task_types import FLOAT_DIGITS

READER = "bm25-sentences-v1"
"""Name and version of the reading method; it travels in every output."""
K1 = 1.2
B = 0.75
DEFAULT_TOP_K = 3
MAX_SENTENCE_CHARS = 600
"""A longer "sentence" (a list, a table row) is cut to this many characters, on a word break."""

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves tell know please much many""".split()  # noqa: SIM905 (a word list reads better)
)
_TOKEN = re.compile(r"[^\W_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def normalise(text: str) -> str:
    """NFKC + case folding: how every text is compared."""
    return unicodedata.normalize("NFKC", text).casefold()


def _stem(token: str) -> str:
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokens(text: str) -> list[str]:
    """The comparable terms of ``text``, in order (stop words kept; see :func:`query_terms`)."""
    return [_stem(t) for t in _TOKEN.findall(normalise(text))]


def query_terms(query: str) -> list[str]:
    """The query's distinct content terms, in first-seen order (all terms if only stop words)."""
    every = tokens(query)
    content = [t for t in every if t not in STOPWORDS]
    return list(dict.fromkeys(content or every))


def sentences(text: str) -> list[str]:
    """``text`` split after ``.``, ``!``, ``?`` and at blank lines; whitespace collapsed."""
    out = []
    for part in _SENTENCE_END.split(text):
        sentence = " ".join(part.split())
        if len(sentence) > MAX_SENTENCE_CHARS:
            cut = sentence[:MAX_SENTENCE_CHARS]
            sentence = (cut.rsplit(" ", 1)[0] or cut) + " …"
        if sentence:
            out.append(sentence)
    return out


def _round(value: float) -> float:
    return float(f"{value:.{FLOAT_DIGITS}g}") if value else 0.0


def read_passages(
    query: str, passages: Sequence[Mapping[str, str]], top_k: int = DEFAULT_TOP_K
) -> dict[str, Any]:
    """The ``top_k`` sentences of ``passages`` that best answer ``query`` (module docstring).

    ``passages`` are ``{"id", "text"}`` objects (already validated). Only sentences sharing
    at least one term with the query are returned, best first; ``coverage`` at the top level
    is the best sentence coverage (0.0 when nothing matched).
    """
    terms = query_terms(query)
    wanted = set(terms)
    units: list[tuple[int, int, str, str, Counter[str]]] = []
    for p_index, passage in enumerate(passages):
        for s_index, sentence in enumerate(sentences(passage["text"])):
            units.append((p_index, s_index, passage["id"], sentence, Counter(tokens(sentence))))
    count = len(units)
    average = sum(sum(u[4].values()) for u in units) / count if count else 0.0
    frequency = Counter(t for u in units for t in wanted.intersection(u[4]))
    idf = {
        t: math.log(1.0 + (count - frequency[t] + 0.5) / (frequency[t] + 0.5)) for t in terms
    }
    scored = []
    for p_index, s_index, passage_id, sentence, counts in units:
        matched = [t for t in terms if counts[t]]
        if not matched:
            continue
        length = sum(counts.values())
        norm = K1 * (1.0 - B + B * length / average) if average else K1
        score = sum(idf[t] * counts[t] * (K1 + 1.0) / (counts[t] + norm) for t in matched)
        coverage = len(matched) / len(terms)
        scored.append((_round(score), _round(coverage), p_index, s_index, passage_id, sentence))
    scored.sort(key=lambda s: (-s[0], -s[1], s[2], s[3]))
    best = scored[:top_k]
    return {
        "reader": READER,
        "query_terms": terms,
        "coverage": best[0][1] if best else 0.0,
        "sentences": [
            {
                "passage_id": passage_id,
                "sentence": s_index,
                "text": sentence,
                "score": score,
                "coverage": coverage,
            }
            for score, coverage, _p, s_index, passage_id, sentence in best
        ],
    }


__all__ = [
    "DEFAULT_TOP_K",
    "READER",
    "STOPWORDS",
    "normalise",
    "query_terms",
    "read_passages",
    "sentences",
    "tokens",
]
