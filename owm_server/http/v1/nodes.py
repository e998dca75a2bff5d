"""The node endpoints of v1 (SRS 4.8.2, spec 4.12): challenge, register, deregister, read.

Registration and deregistration are two steps: ``POST /v1/nodes/challenge`` hands out a
one-use nonce (SRS-SEC-03), which the node signs and sends with its request. They go through
the coordinator's own use cases — the same as gRPC, never a second implementation.
``GET /v1/nodes/{node_id}/status`` is public to any client; ``…/earnings`` only to the node
itself (its signed request). No rule lives here: parse, call the service, render.
"""

from __future__ import annotations

import base64
import binascii

from starlette.responses import Response

from owm_core.coordination.registration import Registration
from owm_core.errors import InvalidValue
from owm_server.http.call import Call
from owm_server.http.contract import Access, Operation, Reply, Schema, Tag, problem
from owm_server.http.problems import Problem
from owm_server.http.v1.render import earnings, json, stake_json
from owm_server.http.v1.schemas import (
    EARNINGS,
    HEX_SIG,
    INT,
    LIMIT,
    NODE_PARAM,
    NONCE,
    NOT_FOUND,
    PUBLIC_KEY,
    STAKE,
    STR,
    nullable,
    obj,
    published,
)

CHALLENGE_BODY: Schema = obj(
    {
        "public_key": PUBLIC_KEY,
        "purpose": {"type": "string", "enum": ["register", "deregister"]},
    },
    additional=False,
)
CHALLENGE: Schema = obj(
    {"public_key": STR, "purpose": STR, "nonce": STR, "issued_at": INT, "expires_at": INT}
)
REGISTER_BODY: Schema = obj(
    {
        "public_key": PUBLIC_KEY,
        "challenge_nonce": NONCE,
        "signature": HEX_SIG,
        "manifest_envelope": {
            "type": "string",
            "maxLength": 200_000,
            "description": "base64 signed manifest",
        },
        "ln_node_uri": {"type": "string", "maxLength": 400},
        "onion_address": {"type": ["string", "null"], "maxLength": 62},
        "ln_signature": {
            "type": "string",
            "maxLength": 200,
            "description": "zbase32 signature by the Lightning node in ln_node_uri over "
            "'owm/ln-control/v1 register <public_key> <challenge_nonce> <ln pubkey>'",
        },
    },
    [
        "public_key", "challenge_nonce", "signature", "manifest_envelope", "ln_node_uri",
        "ln_signature",
    ],
    additional=False,
)
REGISTERED: Schema = obj(
    {
        "node_id": STR,
        "tier": STR,
        "stake_status": STR,
        "required_sats": INT,
        "capacity_sat": INT,
    }
)
DEREGISTER_BODY: Schema = obj(
    {"public_key": PUBLIC_KEY, "challenge_nonce": NONCE, "signature": HEX_SIG},
    additional=False,
)
NODE_STATUS: Schema = obj(
    {
        "node_id": STR,
        "status": STR,
        "tier": STR,
        "stake_status": nullable(STR),
        "registered_at": INT,
        "last_heartbeat": INT,
        "reliability_ppm": INT,
        "total_tasks_completed": INT,
        "total_sats_earned": INT,
    }
)


def node_challenge(call: Call) -> Response:
    challenge = call.services.nodes.challenge(call.body["public_key"], call.body["purpose"])
    return json(published(CHALLENGE, challenge))


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidValue(field, "must be base64") from None


def register_node(call: Call) -> Response:
    body = call.body
    registration = Registration(
        public_key=body["public_key"],
        manifest_envelope=_b64(body["manifest_envelope"], "body.manifest_envelope"),
        ln_node_uri=body["ln_node_uri"],
        onion_address=body.get("onion_address") or None,
        ln_signature=body["ln_signature"],
    )
    registered = call.services.nodes.register(
        registration, body["challenge_nonce"], body["signature"], call.client_ip
    )
    node_id, stake = registered.node.node_id, registered.stake
    reply = published(REGISTERED, stake, node_id=node_id, stake_status=stake.status.value)
    return json(reply, status=201)


def deregister_node(call: Call) -> Response:
    body = call.body
    stake = call.services.nodes.deregister(
        call.path["node_id"], body["public_key"], body["challenge_nonce"], body["signature"]
    )
    return json(stake_json(call.path["node_id"], stake))


def node_status(call: Call) -> Response:
    node, status, stake = call.services.nodes.node(call.path["node_id"])
    stake_status = None if stake is None else stake.status.value
    return json(published(NODE_STATUS, node, status=status.value, stake_status=stake_status))


def node_earnings(call: Call) -> Response:
    node_id = call.path["node_id"]
    if call.who().subject != node_id:
        raise Problem(403, "forbidden", "a node may read only its own earnings")
    return earnings(call, node_id)


def _registration() -> list[Operation]:
    """The two-step registration: challenge, then register with the signed answer."""
    nodes = Tag("nodes")
    return [
        nodes(
            "POST", "/nodes/challenge", "nodeChallenge",
            "Get a one-use challenge to sign (registration, deregistration)", Access.PUBLIC,
            node_challenge, {200: Reply("The challenge.", CHALLENGE)}, body=CHALLENGE_BODY,
        ),
        nodes(
            "POST", "/nodes/register", "registerNode", "Register a new node", Access.PUBLIC,
            register_node,
            {
                201: Reply("Registered; stake pending or active.", REGISTERED),
                401: problem("The challenge answer or manifest signature does not verify."),
                409: problem("Insufficient stake (`required_sats`), cooldown, or conflict."),
                429: problem("10 registrations per IP per hour (SRS-SEC-04)."),
            },
            body=REGISTER_BODY,
        ),
    ]


def operations() -> list[Operation]:
    """Challenge, register, deregister, read a node's status and earnings."""
    nodes = Tag("nodes")
    return [
        *_registration(),
        nodes(
            "DELETE", "/nodes/{node_id}", "deregisterNode", "Deregister a node", Access.PUBLIC,
            deregister_node,
            {
                200: Reply("Deregistered (no cooldown, SRS-STAKE-08).", STAKE),
                401: problem("The challenge answer does not verify."),
                404: NOT_FOUND,
            },
            params=(NODE_PARAM,), body=DEREGISTER_BODY,
        ),
        nodes(
            "GET", "/nodes/{node_id}/status", "nodeStatus", "Get node status",
            Access.NODE_MANAGEMENT, node_status,
            {200: Reply("The node's status.", NODE_STATUS), 404: NOT_FOUND}, params=(NODE_PARAM,),
        ),
        nodes(
            "GET", "/nodes/{node_id}/earnings", "nodeEarnings", "Get earnings history", Access.NODE,
            node_earnings,
            {
                200: Reply("Reward payments, newest first.", EARNINGS),
                403: problem("Signed by another node."),
            },
            params=(NODE_PARAM, LIMIT),
        ),
    ]
