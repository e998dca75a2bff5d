"""What retrieval returns, and how data contributors are credited when their data is used.

Values the query path consumes: a :class:`RetrievedPassage` (a passage with
its similarity score), a :class:`SubModelScore` (how close a query is to one sub-model's domain
and data: the router's raw input) and a :class:`Retrieval` (both for one query, embedded once).

Crediting (SRS 2.2 "Data Contributor"): when passages ground an answer, a share
of the query's cost, :data:`DEFAULT_DATA_SHARE_PPM` parts per million unless the caller says
otherwise, is split among the (contributor, dataset) pairs whose passages were used, in
proportion to how many of the used passages each pair supplied. Integer msat only: the split uses
the largest-remainder method, so the credits always sum to the share exactly, and ties in the
remainder go to the pair that sorts first (contributor, then dataset id) — deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.knowledge.datasets import CONTRIBUTOR_MAX_CHARS, Passage
from owm_core.knowledge.submodels import DATASET_ID_PATTERN

#: Share of a query's cost credited to the data contributors whose passages grounded the answer.
DEFAULT_DATA_SHARE_PPM = 100_000  # 10 %
PPM = 1_000_000


def _score(_instance: object, attribute: attrs.Attribute[float], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(attribute.name, "must be a finite number")
    if not -1.0001 <= value <= 1.0001:
        raise InvalidValue(attribute.name, f"a cosine similarity lies in [-1, 1], got {value}")


@attrs.frozen
class RetrievedPassage:
    """A passage found for a query, with its cosine similarity to the query (higher is closer)."""

    passage: Passage = attrs.field(validator=fields.instance_of(Passage))
    score: float = attrs.field(validator=_score)

    @property
    def sub_model(self) -> str:
        """The (first) sub-model this passage's dataset is indexed for."""
        return self.passage.sub_models[0]


@attrs.frozen
class SubModelScore:
    """How relevant one sub-model is to a query: the router's raw evidence.

    ``domain`` is the cosine similarity of the query to the sub-model's domain description;
    ``data`` the best similarity to any of its passages (``-1.0`` when it has none);
    ``score`` = max(domain, data). The threshold rule lives in the router.
    """

    sub_model: str = attrs.field(validator=fields.text(max_len=64, pattern=fields.SLUG))
    domain: float = attrs.field(validator=_score)
    data: float = attrs.field(validator=_score)

    @property
    def score(self) -> float:
        """max(domain, data)."""
        return max(self.domain, self.data)


def _scores(value: Iterable[SubModelScore]) -> tuple[SubModelScore, ...]:
    return tuple(value)


def _passages(value: Iterable[RetrievedPassage]) -> tuple[RetrievedPassage, ...]:
    return tuple(value)


@attrs.frozen
class Retrieval:
    """Everything retrieval knows about one query: per-sub-model scores and the top passages.

    ``scores`` is sorted by score, highest first (ties by name); ``passages`` by score, highest
    first (ties by passage id).
    """

    query: str = attrs.field(validator=fields.text(max_len=10_000))
    scores: tuple[SubModelScore, ...] = attrs.field(converter=_scores)
    passages: tuple[RetrievedPassage, ...] = attrs.field(converter=_passages)

    def score_of(self, sub_model: str) -> SubModelScore | None:
        """The score of ``sub_model``, or None if it is not registered."""
        return next((s for s in self.scores if s.sub_model == sub_model), None)

    def passages_for(self, sub_models: Sequence[str]) -> tuple[RetrievedPassage, ...]:
        """The passages indexed for any of ``sub_models``, in score order."""
        wanted = set(sub_models)
        return tuple(p for p in self.passages if wanted.intersection(p.passage.sub_models))


# --- crediting data contributors ---------------------------------------------------------------


@attrs.frozen
class DataCredit:
    """msat owed to a contributor because passages of their dataset grounded an answer."""

    contributor: str = attrs.field(validator=fields.text(max_len=CONTRIBUTOR_MAX_CHARS))
    dataset_id: str = attrs.field(validator=fields.text(max_len=27, pattern=DATASET_ID_PATTERN))
    amount_msat: int = attrs.field(validator=fields.money())
    passages_used: int = attrs.field(validator=fields.integer(minimum=1))


def data_share_msat(cost_msat: int, share_ppm: int = DEFAULT_DATA_SHARE_PPM) -> int:
    """The part of a query's ``cost_msat`` owed to data contributors (rounded down)."""
    if isinstance(cost_msat, bool) or not isinstance(cost_msat, int) or cost_msat < 0:
        raise InvalidValue("cost_msat", "must be a non-negative integer")
    if isinstance(share_ppm, bool) or not isinstance(share_ppm, int) or not 0 <= share_ppm <= PPM:
        raise InvalidValue("share_ppm", f"must be an integer in [0, {PPM}]")
    return cost_msat * share_ppm // PPM


def credit_data_contributors(
    used: Sequence[Passage | RetrievedPassage],
    cost_msat: int,
    share_ppm: int = DEFAULT_DATA_SHARE_PPM,
) -> tuple[DataCredit, ...]:
    """Split the data share of ``cost_msat`` among the contributors of the ``used`` passages.

    Each distinct passage counts once (a passage listed twice is not paid twice). Returns one
    credit per (contributor, dataset) pair, sorted by contributor then dataset id; the amounts
    sum to :func:`data_share_msat` exactly (zero credits, i.e. an empty tuple, when nothing was
    used). Amounts may be 0 msat for a tiny share; they are kept so usage is still recorded.
    """
    share = data_share_msat(cost_msat, share_ppm)
    seen: set[str] = set()
    counts: dict[tuple[str, str], int] = {}
    for item in used:
        passage = item.passage if isinstance(item, RetrievedPassage) else item
        if not isinstance(passage, Passage):
            raise InvalidValue("used", f"must hold passages, got {type(item).__name__}")
        if passage.passage_id in seen:
            continue
        seen.add(passage.passage_id)
        key = (passage.contributor, passage.dataset_id)
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return ()
    total = sum(counts.values())
    keys = sorted(counts)
    floors = {k: share * counts[k] // total for k in keys}
    left = share - sum(floors.values())
    by_remainder = sorted(keys, key=lambda k: (-(share * counts[k] % total), k))
    for k in by_remainder[:left]:
        floors[k] += 1
    return tuple(
        DataCredit(
            contributor=c, dataset_id=d, amount_msat=floors[(c, d)], passages_used=counts[(c, d)]
        )
        for c, d in keys
    )
