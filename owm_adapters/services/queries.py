"""The query path of the conglomerate: ``POST /v1/query`` from question to stored answer.

:class:`QueryService` owns the I/O around the pure router (:mod:`owm_core.knowledge.routing`), in
the order below (SRS 4.8.3, SRS-API-05):

1. **Retrieve** — one call to the knowledge base embeds the query once and returns every
   sub-model's relevance and the closest passages (``KnowledgeBase.search``).
2. **Route** — :func:`owm_core.knowledge.routing.route` picks the relevant sub-models; each gets
its own
   passages (a second, filtered search only when the first found none of its passages).
3. **Dispatch** — one ``inference`` task per chosen sub-model (schema
   ``owm.inference.passages`` v1) through the task market
   (:meth:`~owm_adapters.services.coordinator.market.TaskMarket.submit_task`), so nodes
   read
   the passages and the coordinator verifies their outputs like any other task. Who pays:
   the treasury's ``queries`` budget per period (``[funding] query_budget_msat_per_day``);
   the API consumer already paid the treasury through its key's or L402 token's quota, so
   the reader tasks are network tasks, capped and escrowed like every other.
4. **Await** — each task is awaited in parallel (``await_task``) until a shared deadline
   (:attr:`QueryConfig.timeout_s`); a sub-model whose task is not verified in time is left
   out and named in the answer, which never hangs.
5. **Model reading** — where the coordinator has a sub-model's transformer reader
   (``readers``, :mod:`owm_adapters.models.reader.installed`), it reads the same passages in
   parallel with the nodes: its reading (answer spans in their sentences) replaces the nodes'
   BM25 reading of that sub-model and its version id becomes the answer's ``model_version``.
   No reader, or one that fails or is late: the nodes' BM25 reading answers (the fallback).
6. **Combine** — :func:`owm_core.knowledge.routing.compose` builds the grounded answer and its
   calibrated confidence; the cost is what the market paid for the tasks; data contributors
   whose passages are cited are credited (``KnowledgeBase.credit``); the answer is stored
   (``repositories.query_answers``) for ``GET /v1/query/{query_id}``.

:meth:`QueryService.stream` yields the same steps as :class:`QueryEvent` values (retrieval
done, each sub-model's reading as it arrives, the final answer) for Server-Sent Events;
:meth:`QueryService.ask` is the same stream run to its end.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

import attrs

from owm_adapters.services.coordinator.funding import QUERIES
from owm_adapters.services.coordinator.market import TaskMarket
from owm_core.errors import DomainError, InvalidValue, must_exist
from owm_core.knowledge.retrieval import DataCredit, Retrieval, RetrievedPassage
from owm_core.knowledge.routing import (
    CALIBRATION,
    MAX_SUB_MODELS,
    ROUTE_MARGIN,
    ROUTE_THRESHOLD,
    Calibration,
    Evidence,
    QueryAnswer,
    Reading,
    SubModelRoute,
    compose,
    cost_sats,
    reading_from_output,
    reading_from_spans,
    route,
)
from owm_core.knowledge.submodels import SubModel
from owm_core.market.task_types import MAX_PASSAGE_CHARS, MAX_QUERY_CHARS
from owm_core.market.tasks import TaskRequest, TaskState
from owm_core.nodes.tiers import Tier
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

PASSAGES_SCHEMA = "owm.inference.passages"
QUERY_ID_PREFIX = "qry_"


class SubModelReaders(Protocol):
    """The sub-models' transformer readers (``owm_adapters.models.reader.installed``)."""

    def read(
        self, sub_model: str, query: str, passages: Sequence[tuple[str, str]], top_k: int
    ) -> tuple[str, Sequence[tuple[str, int, int, float]]] | None:
        """``(version id, spans (passage id, start, end, score))`` best first, or None when the
        sub-model has no usable reader (the BM25 readings are kept)."""
        ...


class KnowledgeSource(Protocol):
    """What the query path needs from the knowledge base (``owm_adapters.services.knowledge``)."""

    def search(
        self, query: str, limit: int = 5, sub_models: Sequence[str] | None = None
    ) -> Retrieval:
        """Embed ``query`` once: every sub-model's relevance and the closest passages."""
        ...

    def sub_model(self, name: str) -> SubModel | None:
        """The registered sub-model ``name``, or None."""
        ...

    def credit(
        self, query_id: str, used: Sequence[RetrievedPassage], cost_msat: int, now: int
    ) -> tuple[DataCredit, ...]:
        """Credit the contributors of the ``used`` passages with their share of ``cost_msat``."""
        ...

    def set_hosts(self, name: str, node_ids: Sequence[str]) -> SubModel:
        """Record which nodes host sub-model ``name``."""
        ...


@attrs.frozen
class QueryConfig:
    """Tuning of the query path (defaults documented in docs/conglomerate.md)."""

    threshold: float = ROUTE_THRESHOLD
    margin: float = ROUTE_MARGIN
    max_sub_models: int = MAX_SUB_MODELS
    passages_per_sub_model: int = 6
    reader_top_k: int = 3
    timeout_s: float = 4.0
    max_price_msat: int = 10_000
    min_tier: Tier = Tier.T1
    calibration: Calibration = CALIBRATION
    reader_int8: bool = True
    """Whether the coordinator's transformer readers run their frozen encoder in int8 (PyTorch
    dynamic quantization: about half the CPU of float32 a read, F1 within 2 points on the
    held-out questions, docs/models.md); read by the composition root that builds them."""
    caller_share_msat: int = attrs.field(default=10_000_000, validator=attrs.validators.ge(0))
    """What one caller (API key, L402 token, node) may draw of the treasury's ``queries``
    budget per UTC day, each query counted at its most (:meth:`QueryService.most_msat`); 0:
    no share (``[funding] query_share_msat_per_caller``)."""


@attrs.frozen
class QueryEvent:
    """One step of a streamed query: ``retrieval``, ``partial`` (one sub-model) or ``answer``."""

    kind: str
    data: dict[str, Any]
    answer: QueryAnswer | None = None


@attrs.frozen
class _Dispatched:
    route: SubModelRoute
    task_id: str | None
    passages: tuple[RetrievedPassage, ...]
    error: str = ""


def _read_by(chosen: SubModelRoute, version: str) -> SubModelRoute:
    """``chosen`` answered by reader ``version``: its OTS status holds only for that release."""
    same = version == chosen.version
    return attrs.evolve(chosen, version=version, ots_verified=chosen.ots_verified and same)


def _model_reading(
    readers: SubModelReaders, query: str, item: _Dispatched, top_k: int
) -> tuple[str, Reading] | None:
    """The sub-model's transformer reading of the passages sent to its nodes, or None."""
    passages = [(p.passage.passage_id, p.passage.text[:MAX_PASSAGE_CHARS]) for p in item.passages]
    try:
        found = readers.read(item.route.sub_model, query, passages, top_k)
    except Exception:  # the BM25 readings answer instead
        log.exception("the reader of %s failed", item.route.sub_model)
        return None
    if found is None:
        return None
    version, spans = found
    return version, reading_from_spans(item.route.sub_model, query, dict(passages), spans)


def _retrieval_event(
    query_id: str, dispatched: Sequence[_Dispatched], retrieval: Retrieval
) -> QueryEvent:
    """The ``retrieval`` event: the chosen sub-models and every one considered."""
    return QueryEvent(
        "retrieval",
        {
            "query_id": query_id,
            "sub_models": [
                {"name": d.route.sub_model, "relevance": round(d.route.relevance, 4),
                 "passages": len(d.passages)}
                for d in dispatched
            ],
            "considered": [
                {"name": s.sub_model, "relevance": round(s.score, 4)} for s in retrieval.scores
            ],
        },
    )


def _node_event(item: _Dispatched, outcome: str, reading: Reading | None) -> QueryEvent:
    """The ``partial`` event of one sub-model's nodes: their task's outcome and reading."""
    return QueryEvent(
        "partial",
        {
            "sub_model": item.route.sub_model,
            "outcome": outcome,
            "sentences": [
                {"passage_id": x.passage_id, "text": x.text, "coverage": x.coverage}
                for x in (reading.extracts if reading is not None else ())
            ],
        },
    )


def _model_event(name: str, found: tuple[str, Reading]) -> QueryEvent:
    """The ``partial`` event of a sub-model its transformer reader answered for."""
    version, reading = found
    sentences = [
        {"passage_id": x.passage_id, "text": x.text, "coverage": x.coverage, "answer": x.answer}
        for x in reading.extracts
    ]
    return QueryEvent(
        "partial",
        {"sub_model": name, "outcome": "read-by-model", "model_version": version,
         "sentences": sentences},
    )


def _new_query_id(entropy: Callable[[int], bytes]) -> str:
    return QUERY_ID_PREFIX + entropy(12).hex()


@attrs.define(eq=False)
class QueryService:
    """The conglomerate's query path (see the module docstring)."""

    knowledge: KnowledgeSource
    market: TaskMarket
    repositories: Repositories
    clock: Clock
    config: QueryConfig = attrs.Factory(QueryConfig)
    _entropy: Callable[[int], bytes] = attrs.field(default=os.urandom, kw_only=True)
    readers: SubModelReaders | None = attrs.field(default=None, kw_only=True)
    #: The threads that wait for the reader tasks' results.
    _pool: ThreadPoolExecutor = attrs.field(init=False)

    @_pool.default
    def _waiters(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=32, thread_name_prefix="owm-query")

    def close(self) -> None:
        """Stop the waiter threads (in-flight queries finish first)."""
        self._pool.shutdown(wait=True)

    def most_msat(self, replicas: int) -> int:
        """The most one query can draw of the ``queries`` budget: a reader task for each of
        up to ``max_sub_models`` sub-models, each escrowed at ``max_price_msat`` for each of
        the ``replicas`` the market funds a task for."""
        return self.config.max_sub_models * self.config.max_price_msat * replicas

    # -- reading results ----------------------------------------------------------------------

    def answer(self, query_id: str) -> QueryAnswer:
        """The stored answer of ``query_id``; NotFound if there is none."""
        return must_exist(self.repositories.query_answers.get(query_id), f"no query {query_id}")

    # -- answering -----------------------------------------------------------------------------

    def ask(self, query: str, max_tokens: int = 1024) -> QueryAnswer:
        """Answer ``query`` (the whole stream, returning only the final, stored answer)."""
        for event in self.stream(query, max_tokens):
            if event.answer is not None:
                return event.answer
        raise AssertionError("the query stream ended without an answer")  # pragma: no cover

    def stream(self, query: str, max_tokens: int = 1024) -> Iterator[QueryEvent]:
        """Answer ``query`` step by step (module docstring); the last event is the answer."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidValue("query", "must be a non-empty question")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidValue("query", f"must be at most {MAX_QUERY_CHARS} characters")
        started_ms = self.clock.monotonic_ms()
        query_id = _new_query_id(self._entropy)
        config = self.config
        retrieval = self.knowledge.search(query, self._search_limit())
        chosen = tuple(
            self._versioned(r)
            for r in route(
                self._candidates(retrieval), config.threshold, config.max_sub_models,
                config.margin,
            )
        )
        dispatched = [self._dispatch(query, r, retrieval) for r in chosen]
        modelled = {
            d.route.sub_model: self._pool.submit(
                _model_reading, self.readers, query, d, self.config.reader_top_k
            )
            for d in dispatched if d.passages and self.readers is not None
        }
        yield _retrieval_event(query_id, dispatched, retrieval)
        readings: list[Reading] = []
        paid_msat: list[int] = []
        for item, outcome, reading, prices in self._await_all(dispatched, started_ms):
            paid_msat.extend(prices)
            if reading is not None:
                readings.append(reading)
            yield _node_event(item, outcome, reading)
        models = self._model_readings(modelled, started_ms)
        yield from (_model_event(name, found) for name, found in models.items())
        readings = [r for r in readings if r.sub_model not in models]
        readings.extend(reading for _, reading in models.values())
        evidence = [
            self._evidence(d.route.sub_model, p) for d in dispatched for p in d.passages
        ]
        routes = [  # no passages: nothing to read
            _read_by(d.route, models[d.route.sub_model][0]) if d.route.sub_model in models
            else d.route
            for d in dispatched if d.passages
        ]
        composition = compose(
            routes,
            evidence,
            readings,
            calibration=config.calibration,
            max_words=max(1, max_tokens * 3 // 4),
        )
        cost_msat = sum(paid_msat)
        answer = QueryAnswer(
            query_id,
            query,
            self.clock.now(),
            composition,
            max(0, self.clock.monotonic_ms() - started_ms),
            cost_sats(paid_msat),
        )
        self._credit(answer, dispatched, cost_msat)
        self.repositories.query_answers.add(answer)
        yield QueryEvent("answer", {"query_id": query_id}, answer)

    # -- steps -------------------------------------------------------------------------------

    def _search_limit(self) -> int:
        return self.config.passages_per_sub_model * self.config.max_sub_models

    def _candidates(self, retrieval: Retrieval) -> list[SubModelRoute]:
        return [
            SubModelRoute(s.sub_model, min(1.0, max(-1.0, float(s.score))))
            for s in retrieval.scores
        ]

    def _versioned(self, chosen: SubModelRoute) -> SubModelRoute:
        """The chosen sub-model with its stamped release id and whether its OTS proof is
        confirmed (``model_version`` / ``ots_verified`` of the answer)."""
        name = chosen.sub_model
        sub_model = self.knowledge.sub_model(name)
        if sub_model is None:
            return attrs.evolve(chosen, version=f"{name}@unversioned", ots_verified=False)
        release_id = f"{name}@{sub_model.version}"
        release = self.repositories.releases.get(release_id)
        verified = bool(release is not None and release.ots_verified)
        return attrs.evolve(chosen, version=release_id, ots_verified=verified)

    def _passages_for(self, query: str, name: str, retrieval: Retrieval) -> tuple[
        RetrievedPassage, ...
    ]:
        limit = self.config.passages_per_sub_model
        found = retrieval.passages_for([name])[:limit]
        if not found:
            found = self.knowledge.search(query, limit, [name]).passages_for([name])[:limit]
        return tuple(found)

    def _dispatch(self, query: str, chosen: SubModelRoute, retrieval: Retrieval) -> _Dispatched:
        passages = self._passages_for(query, chosen.sub_model, retrieval)
        if not passages:
            return _Dispatched(chosen, None, (), "no passages")
        payload = {
            "sub_model": chosen.sub_model,
            "query": query,
            "passages": [
                {"id": p.passage.passage_id, "text": p.passage.text[:MAX_PASSAGE_CHARS]}
                for p in passages
            ],
            "top_k": self.config.reader_top_k,
        }
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request = TaskRequest(
            task_id=self.market.new_task_id(),
            task_type="inference",
            input_schema_id=PASSAGES_SCHEMA,
            input_schema_version=1,
            min_tier=self.config.min_tier,
            min_vram_mb=0,
            min_ram_mb=0,
            gpu_required=False,
            max_price_msat=self.config.max_price_msat,
        )
        try:
            self.market.submit_task(request, raw, QUERIES)
        except DomainError as exc:
            log.warning("query task for %s was not submitted: %s", chosen.sub_model, exc)
            return _Dispatched(chosen, None, passages, str(exc))
        return _Dispatched(chosen, request.task_id, passages)

    def _model_readings(
        self, futures: dict[str, Future[tuple[str, Reading] | None]], started_ms: int
    ) -> dict[str, tuple[str, Reading]]:
        """The readers' readings that are ready by the query's deadline."""
        deadline_ms = started_ms + int(self.config.timeout_s * 1000)
        out: dict[str, tuple[str, Reading]] = {}
        for name, future in futures.items():
            remaining_s = max(0.0, (deadline_ms - self.clock.monotonic_ms()) / 1000)
            try:
                found = future.result(timeout=remaining_s)
            except Exception:  # late or failed: the BM25 reading stays
                log.warning("the reader of %s gave no reading in time", name)
                continue
            if found is not None and found[1].extracts:
                out[name] = found
        return out

    def _await_one(
        self, item: _Dispatched, deadline_ms: int
    ) -> tuple[_Dispatched, str, Reading | None, list[int]]:
        if item.task_id is None:
            return item, "not-dispatched", None, []
        remaining_s = max(0.0, (deadline_ms - self.clock.monotonic_ms()) / 1000)
        replicas, outcome = self.market.await_task(item.task_id, remaining_s)
        prices = [
            r.price_msat for r in replicas
            if r.state is TaskState.SETTLED and r.price_msat is not None
        ]
        if outcome != "verified":
            return item, "timed-out" if outcome == "pending" else outcome, None, prices
        self._note_hosts(
            item.route.sub_model,
            {r.node_id for r in replicas if r.state is TaskState.SETTLED and r.node_id},
        )
        output = self.market.task_output(item.task_id)
        if output is None:
            return item, "no-output", None, prices
        try:
            return item, outcome, reading_from_output(item.route.sub_model, output), prices
        except InvalidValue as exc:
            log.warning("query task %s gave an unreadable output: %s", item.task_id, exc)
            return item, "unreadable", None, prices

    def _note_hosts(self, name: str, node_ids: set[str]) -> None:
        """The nodes whose reading of ``name`` was verified serve it: the registry lists them
        (SRS 2.1), written only when a new node appears."""
        model = self.knowledge.sub_model(name)
        if model is None or node_ids <= set(model.host_node_ids):
            return
        try:
            self.knowledge.set_hosts(name, sorted(set(model.host_node_ids) | node_ids))
        except DomainError as exc:  # the registry lags; the answer does not depend on it
            log.warning("could not record the hosts of %s: %s", name, exc)

    def _await_all(
        self, dispatched: Sequence[_Dispatched], started_ms: int
    ) -> Iterator[tuple[_Dispatched, str, Reading | None, list[int]]]:
        """Each sub-model's result as soon as it is settled, all by one shared deadline."""
        deadline_ms = started_ms + int(self.config.timeout_s * 1000)
        futures: set[Future[tuple[_Dispatched, str, Reading | None, list[int]]]] = {
            self._pool.submit(self._await_one, item, deadline_ms) for item in dispatched
        }
        while futures:
            done, futures = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    yield future.result()
                except Exception:  # a store hiccup loses one sub-model, never the query
                    log.exception("waiting for a query task failed")

    def _evidence(self, sub_model: str, found: RetrievedPassage) -> Evidence:
        passage = found.passage
        return Evidence(
            passage.passage_id,
            sub_model,
            passage.source or passage.title or passage.dataset_id,
            passage.text[:MAX_PASSAGE_CHARS],
            min(1.0, max(-1.0, float(found.score))),
            passage.dataset_id,
        )

    def _credit(self, answer: QueryAnswer, dispatched: Sequence[_Dispatched], msat: int) -> None:
        """Credit the contributors whose passages the answer cites (SRS 2.2)."""
        cited = {(c.sub_model, c.passage_id) for c in answer.composition.citations}
        used = [
            p for d in dispatched for p in d.passages
            if (d.route.sub_model, p.passage.passage_id) in cited
        ]
        if not used:
            return
        try:
            self.knowledge.credit(answer.query_id, used, msat, answer.created_at)
        except DomainError:
            log.exception("data contributors of query %s could not be credited", answer.query_id)


__all__ = ["KnowledgeSource", "QueryConfig", "QueryEvent", "QueryService", "SubModelReaders"]
