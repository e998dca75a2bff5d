"""The data-contribution endpoints of the public API v1 (SRS 2.2).

``POST /v1/data/datasets`` takes one ``owm-dataset/1`` document (docs/conglomerate.md) from an
authenticated caller, who becomes its contributor, and hands it to the
:class:`~owm_adapters.services.knowledge.KnowledgeBase`: validated, content-hashed, indexed for
its sub-models and OTS-stamped. ``GET /v1/data/datasets`` lists contributions;
``GET /v1/submodels`` the conglomerate's sub-model registry; ``GET /v1/data/credits`` the
caller's credits and Lightning payouts, ``POST /v1/data/payee`` names where they go.
No rule lives here: parse, call the service, render. Invalid datasets are 422 problems naming
the field (``documents[3].licence``); a dataset another contributor already gave is a 409.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from owm_adapters.services.data_payouts import CreditStatement
from owm_adapters.services.knowledge import KnowledgeBase
from owm_core.knowledge.datasets import (
    FORMAT,
    MAX_DATASET_BYTES,
    MAX_DOCUMENTS,
    DatasetRecord,
    dataset_from_object,
)
from owm_core.knowledge.submodels import SubModel
from owm_server.http.call import Call, running
from owm_server.http.contract import Access, Operation, Param, Reply, Schema, Tag, problem
from owm_server.http.v1.schemas import INT, SLUG, STR, array, nullable, obj, published

DATASET_BODY: Schema = {
    "type": "object",
    "description": (
        f"An `{FORMAT}` dataset (docs/conglomerate.md), at most {MAX_DATASET_BYTES} bytes and "
        f"{MAX_DOCUMENTS} documents. Every document needs a source and a licence, its own or "
        "the dataset's. Field errors are 422 problems whose `field` is a path such as "
        "`documents[3].licence`."
    ),
    "properties": {
        "format": {"type": "string", "enum": [FORMAT]},
        "name": SLUG,
        "sub_models": {"type": "array", "items": SLUG, "minItems": 1, "maxItems": 8},
        "source": {"type": "string", "minLength": 1, "maxLength": 300},
        "licence": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "SPDX id (`CC0-1.0`, `CC-BY-4.0`) or a short licence text",
        },
        "description": {"type": "string", "maxLength": 2000},
        "documents": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_DOCUMENTS,
            "items": {
                "type": "object",
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": 300},
                    "text": {"type": "string", "minLength": 1, "maxLength": 50000},
                    "source": {"type": "string", "minLength": 1, "maxLength": 300},
                    "licence": {"type": "string", "minLength": 1, "maxLength": 200},
                    "url": {"type": "string", "minLength": 1, "maxLength": 2000},
                },
                "required": ["title", "text"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["name", "sub_models", "documents"],
    "additionalProperties": False,
}

DATASET: Schema = obj(
    {
        "dataset_id": {**STR, "description": "`ds-` + the first 24 hex digits of the digest"},
        "digest": {**STR, "description": "hex SHA-256 of the canonical JSON (OTS-stamped)"},
        "name": STR,
        "sub_models": array(STR),
        "contributor": STR,
        "submitted_at": INT,
        "documents": INT,
        "passages": INT,
        "size_bytes": INT,
        "licences": array(STR),
        "sources": array(STR),
        "description": STR,
        "ots_status": {"type": "string", "enum": ["none", "pending"]},
    }
)
SUB_MODEL: Schema = obj(
    {
        "name": STR,
        "description": STR,
        "kind": {"type": "string", "enum": ["retrieval-reader", "trained"]},
        "version": STR,
        "version_id": {**STR, "description": "`<name>@<version>` (GET /v1/model/versions/{id})"},
        "version_digest": {"type": ["string", "null"]},
        "datasets": array(STR),
        "hosts": array(STR),
        "created_at": INT,
    }
)


def dataset_json(r: DatasetRecord) -> dict[str, Any]:
    """A contribution as the API publishes it."""
    return published(
        DATASET,
        r,
        documents=r.n_documents,
        passages=r.n_passages,
        ots_status="none" if r.proof is None else "pending",
    )


def sub_model_json(m: SubModel) -> dict[str, Any]:
    """A registered sub-model as the API publishes it."""
    return published(
        SUB_MODEL,
        m,
        version_id=f"{m.name}@{m.version}",
        datasets=list(m.dataset_ids),
        hosts=list(m.host_node_ids),
    )


def _knowledge(call: Call) -> KnowledgeBase:
    return running(
        call.services.knowledge, "knowledge-unavailable", "this coordinator runs no knowledge base"
    )


def submit_dataset(call: Call) -> Response:
    knowledge = _knowledge(call)
    dataset = dataset_from_object(call.body)
    record = knowledge.submit_dataset(dataset, call.who().owner, call.services.clock.now())
    return JSONResponse(dataset_json(record), status_code=201)


def list_datasets(call: Call) -> Response:
    records = _knowledge(call).datasets(
        sub_model=call.query.get("sub_model"),
        contributor=call.query.get("contributor"),
        limit=call.query.get("limit", 100),
    )
    return JSONResponse({"datasets": [dataset_json(r) for r in records]})


def list_sub_models(call: Call) -> Response:
    return JSONResponse({"sub_models": [sub_model_json(m) for m in _knowledge(call).sub_models()]})


PAYOUT = obj({"payment_hash": STR, "amount_msat": INT, "state": STR, "created_at": INT})
CREDIT = obj({"query_id": STR, "at": INT, "dataset_id": STR, "amount_msat": INT,
              "passages_used": INT})
STATEMENT = obj(
    {
        "contributor": STR,
        "credited_msat": INT,
        "enqueued_msat": INT,
        "paid_msat": INT,
        "owed_msat": INT,
        "ln_node": nullable(STR),
        "payouts": array(PAYOUT),
        "credits": array(CREDIT),
    }
)
PAYEE_BODY: Schema = obj(
    {"ln_node": {"type": "string", "pattern": "^0[23][0-9a-f]{64}$"}}, additional=False
)


def statement_json(s: CreditStatement) -> dict[str, Any]:
    """A contributor's credits and payouts as the API publishes them."""
    return published(
        STATEMENT,
        s,
        ln_node=s.payee.ln_pubkey if s.payee is not None else None,
        payouts=[published(PAYOUT, p) for p in s.payouts],
        credits=[published(CREDIT, c, query_id=q, at=at) for q, at, c in s.credits],
    )


def my_credits(call: Call) -> Response:
    return JSONResponse(statement_json(call.services.credits.statement(call.who().owner)))


def set_payee(call: Call) -> Response:
    owner = call.who().owner
    call.services.credits.register_payee(owner, call.body["ln_node"])
    return JSONResponse(statement_json(call.services.credits.statement(owner)))


def operations() -> list[Operation]:
    """The data contributors' API and the sub-model registry (SRS 2.1, SRS 2.2)."""
    data = Tag("data")
    client = Access.CLIENT
    unavailable = problem("No knowledge base runs on this coordinator.")
    return [
        data(
            "POST", "/data/datasets", "submitDataset",
            "Contribute a dataset to the conglomerate's sub-models", client, submit_dataset,
            {
                201: Reply("Stored, indexed and stamped (or already yours: the same record).",
                           DATASET),
                409: problem("Another contributor already gave this exact dataset."),
                503: unavailable,
            },
            body=DATASET_BODY,
            description="The caller (the API key's owner) is credited whenever passages of the "
            "dataset ground an answer. The dataset's SHA-256 over its canonical JSON is "
            "OpenTimestamps-stamped; each sub-model it feeds gets a new version.",
        ),
        data(
            "GET", "/data/datasets", "listDatasets", "List contributed datasets", client,
            list_datasets,
            {200: Reply("Contributions, oldest first.", obj({"datasets": array(DATASET)})),
             503: unavailable},
            params=(
                Param("sub_model", "query", SLUG, "Only datasets of this sub-model."),
                Param("contributor", "query", {"type": "string", "maxLength": 256},
                      "Only datasets of this contributor."),
                Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000},
                      "At most this many (default 100)."),
            ),
        ),
        data(
            "GET", "/data/credits", "myDataCredits", "Your data credits and their payouts",
            client, my_credits,
            {200: Reply("The caller's credits (latest first), payouts and what is owed.",
                        STATEMENT)},
            description="Credits are paid over Lightning to the registered node when they "
            "reach the threshold, or daily once a satoshi is owed.",
        ),
        data(
            "POST", "/data/payee", "setDataPayee", "Name the Lightning node your credits go to",
            client, set_payee, {200: Reply("The caller's statement with the payee.", STATEMENT)},
            body=PAYEE_BODY,
        ),
        data(
            "GET", "/submodels", "listSubModels", "List the conglomerate's sub-models", client,
            list_sub_models,
            {200: Reply("Sub-models by name.", obj({"sub_models": array(SUB_MODEL)})),
             503: unavailable},
        ),
    ]
