"""The v1 query operations (SRS 4.8.2/4.8.3, SRS-API-05): parse → call the query path → render.

``POST /v1/query`` answers a question with the conglomerate (JSON, the SRS 4.8.3 schema);
``POST /v1/query/stream`` (or ``"stream": true``) streams the same work as Server-Sent Events
(``text/event-stream``: events ``retrieval``, ``partial`` — one per sub-model —, ``answer``,
or ``error`` with a problem document if the query fails after the stream started);
``GET /v1/query/{query_id}`` returns a stored answer. No rule lives here: the work is
:class:`~owm_adapters.services.queries.QueryService`'s. A coordinator without a knowledge base
answers 503 ``conglomerate-unavailable`` (no answer is ever invented).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from owm_adapters.services.queries import QueryEvent, QueryService
from owm_core.errors import DomainError
from owm_core.knowledge.routing import QueryAnswer, answer_fields
from owm_server.http.call import Call, running
from owm_server.http.contract import Access, Operation, Param, Reply, Schema, Tag, problem
from owm_server.http.problems import from_domain
from owm_server.http.v1.schemas import OBJECT_ID, STR, array

log = logging.getLogger(__name__)

SSE_MEDIA_TYPE = "text/event-stream"
DEFAULT_MAX_TOKENS = 1024

_STRS: Schema = array(STR)
QUERY_BODY: Schema = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 2_000},
        "context": {"type": "object", "description": "Reserved; accepted and ignored."},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 32_768},
        "stream": {"type": "boolean", "description": "Answer as Server-Sent Events."},
    },
    "required": ["query"],
    "additionalProperties": False,
}
QUERY_ANSWER: Schema = {
    "type": "object",
    "description": "An answer of the conglomerate (SRS 4.8.3) with its grounding.",
    "required": [
        "query_id", "answer", "answered", "sub_models_used", "missing_sub_models",
        "data_sources", "confidence", "model_version", "ots_verified", "latency_ms",
        "cost_sats", "citations", "query", "created_at",
    ],
    "properties": {
        "query_id": STR,
        "answer": {
            "type": "string",
            "description": "Quoted sentences, each cited `[n]`, led by the reader's answer span "
                           "(`Paris — …`) when a sub-model's transformer reader answered.",
        },
        "answered": {"type": "boolean", "description": "False: no data answers the question."},
        "sub_models_used": _STRS,
        "missing_sub_models": {**_STRS, "description": "Chosen but not answered in time."},
        "data_sources": {**_STRS, "description": "`[n]` in the answer is the n-th source."},
        "confidence": {
            "type": "number", "minimum": 0, "maximum": 1,
            "description": "Observed frequency with which answers of this evidence strength "
                           "are supported by the data (docs/conglomerate.md).",
        },
        "model_version": {
            "type": "string",
            "description": "Release ids of the sub-models, or the reader versions that answered "
                           "(`owm-geo@<12 hex>`, docs/models.md).",
        },
        "ots_verified": {"type": "boolean"},
        "latency_ms": {"type": "integer"},
        "cost_sats": {"type": "integer"},
        "citations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sub_model", "passage_id", "source", "text", "strength"],
                "properties": {
                    "sub_model": STR, "passage_id": STR, "source": STR, "text": STR,
                    "strength": {"type": "number"}, "dataset_id": STR,
                    "answer": {**STR, "description": "The reader's answer span in `text` "
                                                     "(empty for the BM25 reader)."},
                    "model_version": {
                        **STR,
                        "description": "The version of the sub-model that read this passage: "
                                       "its transformer reader's (`owm-geo@<12 hex>`) when "
                                       "`answer` is set, else its release.",
                    },
                },
            },
        },
        "query": STR,
        "created_at": {"type": "integer"},
    },
}
_UNAVAILABLE = problem("No knowledge base is configured (`conglomerate-unavailable`).")
_SSE_DESCRIPTION = (
    "Server-Sent Events: `retrieval` (chosen sub-models), `partial` (one per sub-model as its "
    "task settles), `answer` (the SRS 4.8.3 document), or `error` (a problem document)."
)


def _service(call: Call) -> QueryService:
    return running(
        call.services.queries,
        "conglomerate-unavailable",
        "the conglomerate has no knowledge base configured; no answer is invented",
        headers={"Retry-After": "3600"},
    )


def answer_json(answer: QueryAnswer) -> dict[str, Any]:
    """The SRS 4.8.3 response document of an answer."""
    return answer_fields(answer)


def sse(kind: str, data: dict[str, Any], event_id: int) -> bytes:
    """One Server-Sent Event (``id``, ``event``, one ``data`` line of compact JSON)."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event_id}\nevent: {kind}\ndata: {payload}\n\n".encode()


def _event_data(event: QueryEvent) -> dict[str, Any]:
    return answer_json(event.answer) if event.answer is not None else event.data


def _streamed(
    first: QueryEvent, rest: Iterator[QueryEvent], answered: Callable[[QueryAnswer], None]
) -> Iterator[bytes]:
    yield sse(first.kind, _event_data(first), 0)
    number = 1
    try:
        for event in rest:
            if event.answer is not None:
                answered(event.answer)
            yield sse(event.kind, _event_data(event), number)
            number += 1
    except DomainError as exc:
        problem = from_domain(exc)
        yield sse("error", {"code": problem.code, "status": problem.status,
                            "detail": problem.detail, **problem.extensions}, number)
    except Exception:
        log.exception("a streamed query failed")
        yield sse("error", {"code": "internal", "status": 500,
                            "detail": "the server failed; the details are in its log"}, number)


def stream_response(call: Call) -> Response:
    """Start the query (retrieval and dispatch happen before the first byte, so bad input is
    still a problem document), then stream its events (SRS-API-05)."""
    body = call.body
    service = _service(call)
    answered = _admit(call)
    events = service.stream(body["query"], body.get("max_tokens", DEFAULT_MAX_TOKENS))
    first = next(events)
    if first.answer is not None:
        answered(first.answer)
    return StreamingResponse(
        _streamed(first, events, answered),
        media_type=SSE_MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _admit(call: Call) -> Callable[[QueryAnswer], None]:
    """Hold the query's worst case of its caller's share of the treasury's daily query budget
    (429 once it is spent); what to call with its answer, which gives back what it did not
    cost. An answer missing a sub-model (its task may still be paid) keeps the hold."""
    share = call.services.query_share
    if share is None or call.caller is None:
        return lambda _answer: None
    hold = share.admit(call.caller, call.services.clock.now())

    def answered(answer: QueryAnswer) -> None:
        complete = not answer.composition.missing_sub_models
        share.settle(hold, answer.cost_sats * 1000 if complete else None)

    return answered


def post_query(call: Call) -> Response:
    """``POST /v1/query``: the answer as JSON, or as SSE when ``stream`` is true."""
    if call.body.get("stream") is True:
        return stream_response(call)
    body = call.body
    service = _service(call)
    answered = _admit(call)
    answer = service.ask(body["query"], body.get("max_tokens", DEFAULT_MAX_TOKENS))
    answered(answer)
    return JSONResponse(answer_json(answer))


def get_query(call: Call) -> Response:
    """``GET /v1/query/{query_id}``: a stored answer."""
    return JSONResponse(answer_json(_service(call).answer(call.path["query_id"])))


def operations() -> list[Operation]:
    """The query API (SRS 4.8.2): ask, ask as a stream, read a stored answer."""
    query = Tag("query")
    client = Access.CLIENT
    return [
        query(
            "POST", "/query", "query", "Send a query to the conglomerate model", client, post_query,
            {
                200: Reply("The answer (SRS 4.8.3); SSE instead when `stream` is true.",
                           QUERY_ANSWER),
                503: _UNAVAILABLE,
            },
            body=QUERY_BODY,
            description="Routes the question to the relevant sub-models, has nodes read their "
                        "retrieved passages through the task market, and answers only with "
                        "quoted, cited sentences; without relevant data it says so. With "
                        "per-query pricing on, each query spends `query_price_msat` of an L402 "
                        "token's payment (`OWM-Credit-Msat` says what is left). Each caller "
                        "(key, token or node) draws at most `[funding] "
                        "query_share_msat_per_caller` of the treasury's daily query budget, "
                        "each query counted at its most; past it, 429 with `Retry-After` until "
                        "00:00 UTC.",
            priced=True,
        ),
        query(
            "POST", "/query/stream", "queryStream", "Streaming answer (SSE, SRS-API-05)", client,
            stream_response,
            {200: Reply(_SSE_DESCRIPTION, {"type": "string"}, SSE_MEDIA_TYPE), 503: _UNAVAILABLE},
            body=QUERY_BODY,
            priced=True,
        ),
        query(
            "GET", "/query/{query_id}", "getQuery", "Retrieve a stored query result", client,
            get_query,
            {
                200: Reply("The stored answer.", QUERY_ANSWER),
                404: problem("No such query."),
                503: _UNAVAILABLE,
            },
            params=(
                Param("query_id", "path", OBJECT_ID, "The query's id.", True),
            ),
        ),
    ]


__all__ = ["QUERY_ANSWER", "QUERY_BODY", "answer_json", "operations", "sse"]
