"""Where in the passages a reader looks for its answer: the sentences BM25 ranks best (SRS 2.1).

Reading is two-stage. :func:`bm25_regions` ranks every sentence of the passages against the
question with the BM25 reader every node runs (:func:`owm_core.knowledge.reader.read_passages`)
and keeps the best ``count``; the transformer then reads each whole passage (the context it was
trained on) but may only place its answer span inside those sentences, and ranks the candidates
by its own relevance × span probability. BM25 finds the sentence that holds the answer for most
questions; the transformer is what turns a sentence into an answer (``bench/query_quality.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from owm_core.knowledge.reader import read_passages


def _locate(text: str, sentence: str) -> tuple[int, int] | None:
    """The character range of ``sentence`` (whitespace-collapsed, maybe cut with "…") in
    ``text``."""
    words = sentence.removesuffix(" …").split()
    if not words:
        return None
    found = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return (found.start(), found.end()) if found else None


def bm25_regions(
    question: str, passages: Sequence[tuple[str, str]], count: int
) -> list[list[tuple[int, int]]]:
    """Per passage, the character ranges of its sentences among the ``count`` best by BM25
    (an empty list: none of its sentences)."""
    index = {passage_id: row for row, (passage_id, _) in enumerate(passages)}
    regions: list[list[tuple[int, int]]] = [[] for _ in passages]
    reading = read_passages(
        question, [{"id": pid, "text": text} for pid, text in passages], count
    )
    for item in reading["sentences"]:
        row = index.get(item["passage_id"])
        if row is None:
            continue
        found = _locate(passages[row][1], item["text"])
        if found is not None:
            regions[row].append(found)
    return regions
