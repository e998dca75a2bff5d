"""What a reader returns for one passage: an answer span and how sure it is (SRS 2.1)."""

from __future__ import annotations

import attrs


@attrs.frozen
class Span:
    """One answer the reader found: where it is, what it says, how sure the reader is.

    ``relevance`` is the rerank head's probability that the passage answers the question,
    ``span_probability`` the start × end softmax probability of the span, ``score`` their
    product (what spans are ranked by).
    """

    passage_id: str
    start: int
    end: int
    text: str
    relevance: float
    span_probability: float

    @property
    def score(self) -> float:
        """``relevance × span_probability``."""
        return self.relevance * self.span_probability
