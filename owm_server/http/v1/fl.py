"""The federated-learning endpoints of the public API v1 (SRS-COORD-03, SRS-SEC-06, SRS-NODE-10).

* ``POST /v1/fl/updates`` — a node uploads its signed update of a round (the body is
  :mod:`owm_core.fl.updates`' wire format; the Ed25519 signature inside it is the credential,
  so the operation is public). 202 with a receipt; the same upload again gets the same answer.
* ``GET /v1/fl/rounds`` — rounds newest first: state, rule, participants, accepted, rejected,
  flagged nodes, accuracy and the model version each produced.
* ``GET /v1/model/versions/{id}/weights`` — the ``.npz`` of a version the FL rounds published,
  which nodes install only after its OTS proof (``…/ots``) verifies.

No rule lives here: parse, call :class:`~owm_adapters.services.fl_rounds.FlRoundService`, render.
Errors are RFC 7807 problems: 422 naming the field, 404 for an unknown round or task, 409 when
the round is not open, the task is not the uploader's or the node already sent another update.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from owm_adapters.services.fl_rounds import FlRoundService
from owm_core.fl.rounds import FlRound
from owm_core.fl.updates import MAX_PARAMETERS
from owm_server.http.call import Call, running
from owm_server.http.contract import Access, Operation, Reply, Schema, Tag, problem
from owm_server.http.v1.schemas import (
    HEX32,
    HEX_SIG,
    INT,
    NUM,
    RELEASE_PARAM,
    SLUG,
    STR,
    array,
    limit,
    nullable,
    published,
)

UPDATE_BODY: Schema = {
    "type": "object",
    "description": (
        "A node's signed FL update (docs/fl-protocol.md, *Rounds on the coordinator*). "
        "`signature` is Ed25519 by `public_key` over "
        "owm_core.fl.participants.update_statement(round, node id of public_key, "
        "update_digest(weights as flat float32))."
    ),
    "properties": {
        "round": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
        "sub_model": SLUG,
        "task_id": {"type": "string", "minLength": 1, "maxLength": 128,
                    "description": "the replica id of the fl_training assignment"},
        "public_key": HEX32,
        "num_examples": {"type": "integer", "minimum": 1},
        "loss": {"type": "number", "minimum": 0},
        "weights": {
            "type": "array",
            "items": NUM,
            "minItems": 1,
            "maxItems": MAX_PARAMETERS,
            "description": "flat float32 values of the trained model (state_dict order)",
        },
        "signature": HEX_SIG,
    },
    "required": [
        "round", "sub_model", "task_id", "public_key", "num_examples", "loss", "weights",
        "signature",
    ],
    "additionalProperties": False,
}

RECEIPT: Schema = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["accepted", "duplicate"]},
        "round": INT,
        "node_id": STR,
        "digest": {**STR, "description": "hex of the tensor digest the signature covers"},
    },
    "required": ["status", "round", "node_id", "digest"],
}

ROUND: Schema = {
    "type": "object",
    "properties": {
        "round": INT,
        "sub_model": STR,
        "state": {"type": "string", "enum": ["open", "closed", "failed"]},
        "started_at": INT,
        "closed_at": nullable(INT),
        "rule": STR,
        "f": {**INT, "description": "Byzantine updates the rule was told to tolerate"},
        "tasks": array(STR),
        "base_version": {**STR, "description": "release the round started from, or genesis"},
        "participants": {**INT, "description": "updates received"},
        "accepted": array(STR),
        "rejected": array(STR),
        "flagged": {**array(STR), "description": "node ids whose update looked poisoned"},
        "accuracy": nullable(NUM),
        "accuracy_ppm": nullable(INT),
        "loss": nullable(NUM),
        "version": {**nullable(STR), "description": "the release the round produced"},
        "failure": STR,
    },
    "required": [
        "round", "sub_model", "state", "started_at", "closed_at", "rule", "f", "tasks",
        "base_version", "participants", "accepted", "rejected", "flagged", "accuracy",
        "accuracy_ppm", "loss", "version", "failure",
    ],
}


def round_json(r: FlRound) -> dict[str, Any]:
    """A round as the API publishes it."""
    return published(
        ROUND,
        r,
        round=r.number,
        tasks=list(r.task_ids),
        accuracy=None if r.accuracy_ppm is None else r.accuracy_ppm / 1_000_000,
        version=r.version_id,
    )


def _fl(call: Call) -> FlRoundService:
    return running(
        call.services.fl, "fl-unavailable", "this coordinator runs no FL rounds ([fl] enabled)"
    )


def upload_update(call: Call) -> Response:
    receipt = _fl(call).accept_update(call.body)
    return JSONResponse(
        {
            "status": "duplicate" if receipt.duplicate else "accepted",
            "round": receipt.round,
            "node_id": receipt.node_id,
            "digest": receipt.digest,
        },
        status_code=202,
    )


def list_rounds(call: Call) -> Response:
    rounds = _fl(call).rounds(limit=call.query.get("limit", 100))
    return JSONResponse({"rounds": [round_json(r) for r in rounds]})


def get_version_weights(call: Call) -> Response:
    release_id = call.path["id"]
    call.services.releases.release(release_id)  # 404 for an unknown version
    raw = _fl(call).weights_file(release_id)
    filename = release_id.replace("@", "_") + ".npz"
    return Response(
        raw,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def operations() -> list[Operation]:
    """The FL upload, the round listing and weight downloads (SRS-COORD-03, SRS-NODE-10)."""
    fl = Tag("fl")
    model = Tag("model")
    unavailable = problem("This coordinator runs no FL rounds (`fl-unavailable`).")
    return [
        fl(
            "POST", "/fl/updates", "uploadFlUpdate",
            "Upload a node's signed FL update for an open round", Access.PUBLIC, upload_update,
            {
                202: Reply("Accepted (or the same update again: `duplicate`).", RECEIPT),
                404: problem("No such round or task (`not-found`)."),
                409: problem(
                    "The round is not open, the task is not assigned to this node, or the "
                    "node already uploaded a different update for the round."
                ),
                503: unavailable,
            },
            body=UPDATE_BODY,
            description=(
                "The signature inside the body authenticates the upload; no other credential "
                "is needed. Uploads travel over clearnet only (SRS-NET-04)."
            ),
        ),
        fl(
            "GET", "/fl/rounds", "listFlRounds",
            "List FL rounds with accuracy, participants and flagged nodes", Access.CLIENT,
            list_rounds,
            {
                200: Reply(
                    "Rounds, newest first.",
                    {"type": "object", "properties": {"rounds": array(ROUND)},
                     "required": ["rounds"]},
                ),
                503: unavailable,
            },
            params=(limit("rounds"),),
        ),
        model(
            "GET", "/model/versions/{id}/weights", "getModelVersionWeights",
            "Download a model version's weights (.npz)", Access.CLIENT, get_version_weights,
            {
                200: Reply(
                    "The `.npz` of the version's tensors (install only after its OTS proof "
                    "verifies).",
                    None,
                    "application/octet-stream",
                ),
                404: problem("No such version, or no weights are published for it."),
                503: unavailable,
            },
            params=(RELEASE_PARAM,),
        ),
    ]
