"""The JSON Schema atoms every v1 module shares, declared once.

Scalars (:data:`STR`, :data:`INT`, …), the identifiers the API accepts (node ids, keys,
signatures, release ids, repositories), the builders (:func:`obj`, :func:`array`,
:func:`nullable`, :func:`envelope_schema`), the documented "no such record" problem
(:data:`NOT_FOUND`; other problem replies are :func:`~owm_server.http.contract.problem`), the
common parameters (:func:`limit`, :func:`status_filter`, :data:`NODE_PARAM`) and the record
shapes more than one context publishes (:data:`STAKE`, :data:`PAYMENT`, :data:`EARNINGS`). A
context's own shapes live in its module. :func:`published` renders a value as its shape lists
it, so a record's schema is the one list of what its JSON holds.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from owm_core import fields
from owm_core.provenance.versions import VERSION_PATTERN
from owm_server.http.contract import Param, Schema, problem

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}

HEX32: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
"""32 bytes in lowercase hex: Ed25519 public keys, challenge nonces, SHA-256 digests."""
PUBLIC_KEY: Schema = HEX32
NONCE: Schema = HEX32
HEX_SIG: Schema = {"type": "string", "pattern": "^[0-9a-f]{128}$"}
"""An Ed25519 signature in lowercase hex."""
NODE_ID: Schema = {"type": "string", "pattern": "^n[0-9a-f]{40}$", "description": "node id"}
SLUG: Schema = {"type": "string", "pattern": f"^{fields.SLUG}$"}
"""A lowercase name: of a sub-model or a dataset."""
RELEASE_ID: Schema = {
    "type": "string",
    "pattern": f"^{fields.SLUG}@{VERSION_PATTERN}$",
    "maxLength": 130,
}
"""``<sub_model>@<version>``, the id of a model release."""
REPOSITORY: Schema = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$",
    "description": "owner/name",
}
OBJECT_ID: Schema = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
MAX_SAT = 2_100_000_000_000_000
"""21 million bitcoin in satoshis: no amount the API accepts can be larger."""


def obj(
    properties: dict[str, Schema],
    required: Sequence[str] | None = None,
    *,
    additional: bool = True,
) -> Schema:
    """An object schema; every property required unless listed otherwise.

    ``additional=False`` refuses properties the schema does not name (request bodies).
    """
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }
    if not additional:
        schema["additionalProperties"] = False
    return schema


def published(shape: Schema, value: Any, **given: Any) -> dict[str, Any]:
    """``value`` as the API publishes it in ``shape`` (an object schema): each property, in
    the schema's order, is the ``given`` one or else the value's attribute of that name (an
    enum as its value, a tuple as a list)."""
    return {
        name: given[name] if name in given else _plain(getattr(value, name))
        for name in shape["properties"]
    }


def _plain(attribute: Any) -> Any:
    if isinstance(attribute, enum.Enum):
        return attribute.value
    if isinstance(attribute, tuple):
        return list(attribute)
    return attribute


def array(items: Schema) -> Schema:
    """An array of ``items``."""
    return {"type": "array", "items": items}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {**schema, "type": [schema["type"], "null"]}


def envelope_schema(kind: str, signer: str, body: Schema, description: str) -> Schema:
    """A signed envelope of ``kind`` (canonical JSON) as a request body: ``signer`` describes
    whose Ed25519 key signs it, ``body`` is the statement it carries."""
    schema = obj(
        {
            "kind": {"type": "string", "enum": [kind]},
            "signer": {**HEX32, "description": signer},
            "nonce": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "issued_at": {"type": "integer", "minimum": 0, "maximum": 2**53},
            "body": body,
            "signature": HEX_SIG,
        },
        additional=False,
    )
    schema["description"] = description
    return schema


def limit(what: str) -> Param:
    """The ``limit`` query parameter of a listing: 1 to 500, 100 by default."""
    return Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
        f"At most this many {what} (1–500).",
    )


def status_filter(values: Sequence[str], description: str) -> Param:
    """The ``status`` query parameter of a listing: one of ``values`` (the records' statuses)."""
    return Param("status", "query", {"type": "string", "enum": list(values)}, description)


LIMIT = limit("items")
NODE_PARAM = Param(
    "node_id", "path", NODE_ID, "The node's id (`n` + 40 hex).", True, convertor="node_id"
)
RELEASE_PARAM = Param("id", "path", RELEASE_ID, "`<sub_model>@<version>`.", True)
NOT_FOUND = problem("No such record.")

STAKE: Schema = obj(
    {
        "node_id": STR,
        "status": STR,
        "tier": STR,
        "required_sats": INT,
        "capacity_sat": INT,
        "bonus_bps": INT,
        "changed_at": INT,
        "channel_id": nullable(STR),
        "channel_point": nullable(STR),
        "channel_confirmations": nullable(INT),
        "next_verification_at": nullable(INT),
        "grace_until": nullable(INT),
        "cooldown_until": nullable(INT),
    }
)
"""A node's stake record (nodes: deregistration; stake: GET /v1/stake/nodes/{node_id})."""
PAYMENT: Schema = obj(
    {
        "payment_hash": STR,
        "task_id": STR,
        "amount_msat": INT,
        "state": STR,
        "attempts": INT,
        "created_at": INT,
        "updated_at": INT,
    }
)
"""A reward payment to a node (nodes: earnings; payments: history)."""
EARNINGS: Schema = obj({"node_id": STR, "total_sats_earned": INT, "payments": array(PAYMENT)})
"""A node's total earned and its reward payments, newest first (SRS-LN-10)."""
