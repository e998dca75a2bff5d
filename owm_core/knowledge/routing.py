"""The conglomerate's router: which sub-models answer a query, and how their readings become
one grounded answer with a calibrated confidence (SRS 2.1, SRS 4.8.3).

Rules, in the order a query meets them:

1. **Routing** (:func:`route`). Every sub-model has a *relevance* to the query: the cosine
   similarity of the query's embedding to the sub-model's domain and data (computed by the
   knowledge adapter). Sub-models with relevance ≥ :data:`ROUTE_THRESHOLD` and within
   :data:`ROUTE_MARGIN` of the most relevant one are chosen, the most relevant first, at most
   :data:`MAX_SUB_MODELS` of them. Raising the threshold (or narrowing the margin) can only
   remove sub-models, never add one.
2. **Reading.** Each chosen sub-model gets one ``owm.inference.passages`` task with the passages
   retrieved from its own data; a node returns the best sentences verbatim
   (:mod:`owm_core.knowledge.reader`). :func:`reading_from_output` parses a verified output.
   Where the sub-model's transformer reader is installed it reads the same passages: its
   extracts carry the *answer span* it extracted and its score (relevance × span probability,
   ``owm_adapters.models.reader``); these readings replace the BM25 ones of that sub-model.
3. **Grounding** (:func:`compose`). A sentence is used only if it occurs (whitespace aside) in a
   passage that was actually sent to that sub-model, and an answer span only if it occurs in
   its sentence, so neither a node nor a reader can inject text; the answer is made of such
   sentences only, each followed by ``[n]``, the number of its data source in
   ``data_sources``, led by the best reader's span (``Paris — Paris is the capital… [1]``).
   Sentences with a span come first, by the reader's score; the others by strength. Nothing is
   generated or paraphrased.
4. **Confidence.** Each sentence has an *evidence strength*
   ``x = (max(0, similarity) + coverage) / 2`` in [0, 1]: the retrieval similarity of its
   passage and the share of the query's terms it contains. The answer's confidence is
   :data:`CALIBRATION` applied to the best sentence's ``x`` — a monotone map fitted
   (:func:`fit_calibration`, isotonic regression) on the demo questions, answerable and not;
   its meaning is **the observed frequency with which an answer of this evidence strength is
   supported by the data** (the table and how it was measured are in docs/conglomerate.md).
   Sub-models that did not answer in time scale it by
   ``1 − MISSING_PENALTY × missing / chosen`` (a conservative, uncalibrated discount).
5. **Abstaining.** Below :data:`ABSTAIN_BELOW`, or with no sub-model or no grounded sentence,
   the response says that no data answers the question (:data:`NO_ANSWER`), cites nothing and
   keeps its low confidence (0.0 when nothing was found at all).
6. **Cost.** ``cost_sats`` is the sum of the prices of the paid replicas, in msat, rounded up to
   whole sats (:func:`cost_sats`).

Pure: values in, values out; floats only for similarities and confidences, never for money.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.knowledge.reader import query_terms, sentences, tokens

ROUTE_THRESHOLD = 0.35
"""Least cosine similarity (MiniLM, query vs. a sub-model's domain and data) to be routed to."""
ROUTE_MARGIN = 0.2
"""A sub-model whose relevance trails the best one's by more than this is not asked (a clear
domain match makes weaker sub-models' tasks cost without adding evidence)."""
MAX_SUB_MODELS = 3
"""At most this many sub-models answer one query."""
MAX_SENTENCES = 3
"""At most this many sentences make up an answer."""
ABSTAIN_BELOW = 0.5
"""Below this confidence (support less likely than not) the conglomerate says it has no answer
instead of quoting weak hits."""
MISSING_PENALTY = 0.5
"""Share of the confidence lost when every chosen sub-model failed to answer in time."""
MODEL_VERSION_NONE = "none"

NO_SUB_MODEL = (
    "No sub-model of the conglomerate covers this question, so no answer is given "
    "(nothing is invented)."
)
NO_ANSWER = (
    "The conglomerate's data does not answer this question, so no answer is given "
    "(nothing is invented)."
)

_SPACE = re.compile(r"\s+")


def _unit_interval(_instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(attribute.name, "must be a number")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidValue(attribute.name, f"must lie in [0, 1], got {value!r}")


def _similarity(_instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(attribute.name, "must be a number")
    if not -1.0 - 1e-6 <= float(value) <= 1.0 + 1e-6:
        raise InvalidValue(attribute.name, f"must lie in [-1, 1], got {value!r}")


def _flatten(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


# --------------------------------------------------------------------------- values


@attrs.frozen
class SubModelRoute:
    """A sub-model as the router sees it: how relevant it is to the query, and its version."""

    sub_model: str = attrs.field(validator=fields.text(max_len=64, pattern=fields.SLUG))
    relevance: float = attrs.field(validator=_similarity)
    version: str = attrs.field(default=MODEL_VERSION_NONE, validator=fields.text(max_len=200))
    ots_verified: bool = attrs.field(default=False, validator=fields.instance_of(bool))


@attrs.frozen
class Evidence:
    """One retrieved passage: whose data it is, where it comes from, how similar it is."""

    passage_id: str = attrs.field(validator=fields.text(max_len=128))
    sub_model: str = attrs.field(validator=fields.text(max_len=64, pattern=fields.SLUG))
    source: str = attrs.field(validator=fields.text(max_len=200))
    text: str = attrs.field(validator=fields.text(max_len=4_000))
    similarity: float = attrs.field(validator=_similarity)
    dataset_id: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=128))


@attrs.frozen
class Extract:
    """A sentence quoted from a passage, with its score and query coverage; ``answer`` is the
    span of it a sub-model's reader extracted as the answer ("" for the BM25 reader)."""

    passage_id: str
    text: str
    score: float
    coverage: float = attrs.field(validator=_unit_interval)
    answer: str = ""


@attrs.frozen
class Reading:
    """What one sub-model's verified inference task returned."""

    sub_model: str
    extracts: tuple[Extract, ...]


@attrs.frozen
class Citation:
    """A sentence of the answer: the text, the passage and source it quotes, its strength, and
    ``model_version``, the version of the sub-model that read it (its transformer reader's
    version when that reader produced ``answer``, else its release; SRS 4.8.3)."""

    sub_model: str
    passage_id: str
    source: str
    text: str
    strength: float = attrs.field(validator=_unit_interval)
    dataset_id: str = ""
    answer: str = ""
    model_version: str = ""


@attrs.frozen
class Composition:
    """The router's answer before the service adds id, timing and cost (SRS 4.8.3)."""

    answer: str
    answered: bool
    sub_models_used: tuple[str, ...]
    missing_sub_models: tuple[str, ...]
    data_sources: tuple[str, ...]
    citations: tuple[Citation, ...]
    confidence: float = attrs.field(validator=_unit_interval)
    model_version: str
    ots_verified: bool


@attrs.frozen
class QueryAnswer:
    """A stored query result: the SRS 4.8.3 response plus what it was asked and when."""

    query_id: str = attrs.field(validator=fields.text(max_len=64, pattern=r"[A-Za-z0-9_-]+"))
    query: str = attrs.field(validator=fields.text(max_len=20_000))
    created_at: int = attrs.field(validator=fields.timestamp())
    composition: Composition = attrs.field(validator=fields.instance_of(Composition))
    latency_ms: int = attrs.field(validator=fields.integer(minimum=0))
    cost_sats: int = attrs.field(validator=fields.money())


# --------------------------------------------------------------------------- calibration


@attrs.frozen
class Calibration:
    """A monotone, piecewise-linear map from evidence strength to confidence, both in [0, 1].

    ``points`` are ``(strength, confidence)`` knots with increasing strengths and
    non-decreasing confidences; below the first and above the last knot the map is flat.
    """

    points: tuple[tuple[float, float], ...]

    def __attrs_post_init__(self) -> None:
        if not self.points:
            raise InvalidValue("points", "needs at least one knot")
        previous: tuple[float, float] | None = None
        for x, p in self.points:
            if not (0.0 <= x <= 1.0 and 0.0 <= p <= 1.0):
                raise InvalidValue("points", f"knot ({x}, {p}) lies outside [0, 1]²")
            if previous is not None and (x <= previous[0] or p < previous[1]):
                raise InvalidValue("points", "strengths must increase, confidences not decrease")
            previous = (x, p)

    def __call__(self, strength: float) -> float:
        """The confidence for ``strength`` (clipped to [0, 1] first)."""
        x = min(1.0, max(0.0, float(strength)))
        points = self.points
        if x <= points[0][0]:
            return points[0][1]
        for (x0, p0), (x1, p1) in itertools.pairwise(points):
            if x <= x1:
                return p0 + (p1 - p0) * (x - x0) / (x1 - x0)
        return points[-1][1]


def _rate(block: list[float]) -> float:
    return (block[1] + 1.0) / (block[2] + 2.0)


def fit_calibration(samples: Iterable[tuple[float, bool]], bins: int = 10) -> Calibration:
    """Isotonic regression (pool adjacent violators) of "supported" on evidence strength.

    ``samples`` are ``(strength, supported)`` pairs from labelled questions. They are grouped
    into at most ``bins`` equally populated bins (by strength); adjacent bins whose supported
    rate decreases are pooled until the rates are non-decreasing; each pooled block becomes a
    knot at its mean strength with its supported rate, Laplace-smoothed
    (``(supported + 1) / (count + 2)``, then made non-decreasing again) so that a few dozen
    questions never claim certainty.
    The result estimates how often answers of a given strength are supported.
    """
    ordered = sorted((min(1.0, max(0.0, float(x))), bool(ok)) for x, ok in samples)
    if not ordered:
        raise InvalidValue("samples", "needs at least one labelled sample")
    if bins < 1:
        raise InvalidValue("bins", "must be at least 1")
    size = math.ceil(len(ordered) / bins)
    blocks: list[list[float]] = []  # [sum_x, sum_ok, count]
    for start in range(0, len(ordered), size):
        chunk = ordered[start : start + size]
        blocks.append([sum(x for x, _ in chunk), sum(1.0 for _, ok in chunk if ok), len(chunk)])
        while len(blocks) > 1 and blocks[-2][1] * blocks[-1][2] > blocks[-1][1] * blocks[-2][2]:
            last = blocks.pop()
            for i in range(3):
                blocks[-1][i] += last[i]
    merged: list[list[float]] = []
    for block in blocks:  # blocks at the same (rounded) strength become one knot
        if merged and round(block[0] / block[2], 4) <= round(merged[-1][0] / merged[-1][2], 4):
            for i in range(3):
                merged[-1][i] += block[i]
        else:
            merged.append(block)
    knots: list[tuple[float, float]] = []
    for block in merged:  # smoothing can reorder blocks of different sizes: keep it monotone
        rate = max(round(_rate(block), 4), knots[-1][1] if knots else 0.0)
        knots.append((round(block[0] / block[2], 4), rate))
    return Calibration(tuple(knots))


CALIBRATION = Calibration(
    ((0.0, 0.0833), (0.1033, 0.0833), (0.5752, 0.4167), (0.7118, 0.9167), (0.8373, 0.9167),
     (0.8942, 0.9167))
)
"""Fitted (6 bins) on the 60 labelled demo questions of ``owm_adapters.services.query_calibration``
with
MiniLM retrieval; reproduce with ``scripts/calibrate-router``."""


# --------------------------------------------------------------------------- rules


def route(
    candidates: Iterable[SubModelRoute],
    threshold: float = ROUTE_THRESHOLD,
    max_k: int = MAX_SUB_MODELS,
    margin: float = ROUTE_MARGIN,
) -> tuple[SubModelRoute, ...]:
    """The sub-models a query goes to: relevance ≥ ``threshold`` and ≥ best − ``margin``, most
    relevant first, at most ``max_k``.

    Ties are broken by name so that the choice never depends on input order.
    """
    if isinstance(max_k, bool) or not isinstance(max_k, int) or max_k < 1:
        raise InvalidValue("max_k", f"must be an integer ≥ 1, got {max_k!r}")
    listed = list(candidates)
    if len({c.sub_model for c in listed}) != len(listed):
        raise InvalidValue("candidates", "a sub-model appears more than once")
    best = max((c.relevance for c in listed), default=0.0)
    relevant = [c for c in listed if c.relevance >= max(threshold, best - margin)]
    relevant.sort(key=lambda c: (-c.relevance, c.sub_model))
    return tuple(relevant[:max_k])


def evidence_strength(similarity: float, coverage: float) -> float:
    """``(max(0, similarity) + coverage) / 2`` clipped to [0, 1] (module docstring, rule 4)."""
    return min(1.0, max(0.0, (max(0.0, similarity) + coverage) / 2.0))


def reading_from_output(sub_model: str, output: bytes) -> Reading:
    """Parse a verified ``owm.inference.passages`` output; InvalidValue(``output``) if malformed."""
    try:
        data = json.loads(output.decode("utf-8"))
        extracts = tuple(
            Extract(
                str(item["passage_id"]),
                str(item["text"]),
                float(item["score"]),
                float(item["coverage"]),
                str(item.get("answer") or ""),
            )
            for item in data["sentences"]
        )
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise InvalidValue("output", f"is not a passages reading: {exc}") from None
    if data.get("sub_model") != sub_model:
        raise InvalidValue("output", f"reads for {data.get('sub_model')!r}, not {sub_model!r}")
    return Reading(sub_model, extracts)


def _sentence_around(text: str, start: int, end: int) -> str:
    """The sentence of ``text`` (whitespace-normalised) that holds ``text[start:end]``."""
    cursor = 0
    flat = " ".join(text.split())
    target = " ".join(text[start:end].split())
    before = len(" ".join(text[:start].split()))
    for sentence in sentences(flat):
        at = flat.find(sentence.removesuffix(" …"), cursor)
        if at < 0:
            continue
        cursor = at + len(sentence)
        if at <= before + 1 and target in sentence and before < at + len(sentence):
            return sentence.removesuffix(" …")
    return target


def reading_from_spans(
    sub_model: str,
    query: str,
    passages: Mapping[str, str],
    spans: Sequence[tuple[str, int, int, float]],
) -> Reading:
    """A transformer reader's spans ``(passage id, start, end, score)`` as a :class:`Reading`:
    each span with the sentence that holds it and that sentence's query coverage (rule 2)."""
    terms = query_terms(query)
    extracts = []
    for passage_id, start, end, score in spans:
        text = passages.get(passage_id)
        if text is None or not 0 <= start < end <= len(text):
            continue
        sentence = _sentence_around(text, start, end)
        found = set(tokens(sentence))
        coverage = sum(1 for t in terms if t in found) / len(terms) if terms else 0.0
        extracts.append(
            Extract(passage_id, sentence, round(float(score), 6), round(coverage, 6),
                    " ".join(text[start:end].split()))
        )
    return Reading(sub_model, tuple(extracts))


def grounded(extract: Extract, passage: Evidence) -> bool:
    """Whether ``extract`` is literally part of ``passage`` (whitespace-insensitive)."""
    text = _flatten(extract.text).removesuffix(" …")
    if extract.answer and _flatten(extract.answer) not in text:
        return False
    return bool(text) and text in _flatten(passage.text)


def _versions(routes: Sequence[SubModelRoute]) -> tuple[str, bool]:
    if not routes:
        return MODEL_VERSION_NONE, False
    version = ",".join(r.version for r in sorted(routes, key=lambda r: r.sub_model))
    return version, all(r.ots_verified for r in routes)


def _missing_note(missing: Sequence[str]) -> str:
    if not missing:
        return ""
    return f" (No answer in time from {', '.join(missing)}; left out.)"


def compose(
    chosen: Sequence[SubModelRoute],
    evidence: Sequence[Evidence],
    readings: Sequence[Reading],
    *,
    calibration: Calibration = CALIBRATION,
    max_sentences: int = MAX_SENTENCES,
    max_words: int | None = None,
    abstain_below: float = ABSTAIN_BELOW,
) -> Composition:
    """Combine the sub-models' readings into one grounded answer (module docstring, rules 3-5).

    ``chosen`` are the routed sub-models, ``evidence`` the passages sent to them, ``readings``
    the verified outputs that arrived in time; a chosen sub-model without a reading is
    reported in ``missing_sub_models`` and lowers the confidence.
    """
    answered_by = {r.sub_model for r in readings}
    used = tuple(r.sub_model for r in chosen if r.sub_model in answered_by)
    missing = tuple(r.sub_model for r in chosen if r.sub_model not in answered_by)
    version, verified = _versions([r for r in chosen if r.sub_model in answered_by])
    if not chosen:
        return Composition(NO_SUB_MODEL, False, (), (), (), (), 0.0, version, verified)
    passages = {(e.sub_model, e.passage_id): e for e in evidence}
    versions = {r.sub_model: r.version for r in chosen}
    candidates: list[tuple[int, float, float, str, str, Citation]] = []
    for reading in readings:
        if reading.sub_model not in versions:
            continue
        for extract in reading.extracts:
            passage = passages.get((reading.sub_model, extract.passage_id))
            if passage is None or not grounded(extract, passage):
                continue
            strength = round(evidence_strength(passage.similarity, extract.coverage), 4)
            citation = Citation(
                reading.sub_model, passage.passage_id, passage.source,
                _flatten(extract.text), strength, passage.dataset_id, _flatten(extract.answer),
                versions[reading.sub_model],
            )
            first = -extract.score if extract.answer else -strength
            candidates.append(
                (0 if extract.answer else 1, first, -extract.score, reading.sub_model,
                 passage.passage_id, citation)
            )
    candidates.sort(key=lambda c: c[:5])
    completeness = 1.0 - MISSING_PENALTY * len(missing) / len(chosen)
    best = candidates[0][-1].strength if candidates else 0.0
    confidence = round(calibration(best) * completeness, 4) if candidates else 0.0
    if not candidates or confidence < abstain_below:
        text = NO_ANSWER + _missing_note(missing)
        return Composition(text, False, used, missing, (), (), confidence, version, verified)
    citations: list[Citation] = []
    seen: set[str] = set()
    words = 0
    for *_, citation in candidates:
        key = citation.text.casefold()
        if key in seen or citation.strength < best / 2:
            continue
        length = len(citation.text.split())
        too_long = max_words is not None and words + length > max_words
        if citations and (len(citations) >= max_sentences or too_long):
            break
        seen.add(key)
        citations.append(citation)
        words += length
    sources = tuple(dict.fromkeys(c.source for c in citations))
    parts = [f"{c.text} [{sources.index(c.source) + 1}]" for c in citations]
    lead = f"{citations[0].answer} — " if citations[0].answer else ""
    text = lead + " ".join(parts) + _missing_note(missing)
    return Composition(
        text, True, used, missing, sources, tuple(citations), confidence, version, verified
    )


def cost_sats(prices_msat: Iterable[int]) -> int:
    """What a query costs: the paid replicas' prices summed in msat, rounded up to whole sats."""
    total = 0
    for price in prices_msat:
        if isinstance(price, bool) or not isinstance(price, int) or price < 0:
            raise InvalidValue("price_msat", f"must be an integer ≥ 0, got {price!r}")
        total += price
    return -(-total // 1000)


def answer_fields(answer: QueryAnswer) -> dict[str, Any]:
    """The SRS 4.8.3 response fields of a stored answer (plus the router's own details)."""
    c = answer.composition
    return {
        "query_id": answer.query_id,
        "answer": c.answer,
        "answered": c.answered,
        "sub_models_used": list(c.sub_models_used),
        "missing_sub_models": list(c.missing_sub_models),
        "data_sources": list(c.data_sources),
        "confidence": c.confidence,
        "model_version": c.model_version,
        "ots_verified": c.ots_verified,
        "latency_ms": answer.latency_ms,
        "cost_sats": answer.cost_sats,
        "citations": [
            {
                "sub_model": x.sub_model,
                "passage_id": x.passage_id,
                "source": x.source,
                "text": x.text,
                "strength": round(x.strength, 4),
                "dataset_id": x.dataset_id,
                "answer": x.answer,
                "model_version": x.model_version,
            }
            for x in c.citations
        ],
        "query": answer.query,
        "created_at": answer.created_at,
    }


def answer_from_fields(data: Mapping[str, Any]) -> QueryAnswer:
    """The inverse of :func:`answer_fields` (stores keep answers in this shape)."""
    try:
        composition = Composition(
            answer=str(data["answer"]),
            answered=bool(data["answered"]),
            sub_models_used=tuple(data["sub_models_used"]),
            missing_sub_models=tuple(data["missing_sub_models"]),
            data_sources=tuple(data["data_sources"]),
            citations=tuple(
                Citation(
                    str(x["sub_model"]), str(x["passage_id"]), str(x["source"]),
                    str(x["text"]), float(x["strength"]), str(x.get("dataset_id", "")),
                    str(x.get("answer", "")), str(x.get("model_version", "")),
                )
                for x in data["citations"]
            ),
            confidence=float(data["confidence"]),
            model_version=str(data["model_version"]),
            ots_verified=bool(data["ots_verified"]),
        )
        return QueryAnswer(
            str(data["query_id"]), str(data["query"]), int(data["created_at"]), composition,
            int(data["latency_ms"]), int(data["cost_sats"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidValue("answer", f"is not a stored query answer: {exc}") from None


__all__ = [
    "ABSTAIN_BELOW",
    "CALIBRATION",
    "MAX_SENTENCES",
    "MAX_SUB_MODELS",
    "MISSING_PENALTY",
    "NO_ANSWER",
    "NO_SUB_MODEL",
    "ROUTE_MARGIN",
    "ROUTE_THRESHOLD",
    "Calibration",
    "Citation",
    "Composition",
    "Evidence",
    "Extract",
    "QueryAnswer",
    "Reading",
    "SubModelRoute",
    "answer_fields",
    "answer_from_fields",
    "compose",
    "cost_sats",
    "evidence_strength",
    "fit_calibration",
    "grounded",
    "reading_from_output",
    "reading_from_spans",
    "route",
]
