"""The API's contract in code: operations, their parameters and schemas, and the OpenAPI 3.1
document generated from them (``GET /v1/openapi.json``, ``scripts/gen-api-docs``).

Each endpoint is one :class:`Operation`: method, path, who may call it (:class:`Access`), its
parameters and JSON body as JSON Schema (2020-12, the dialect of OpenAPI 3.1), and the statuses
it documents. The same schemas validate requests (:func:`validate`) — so the document cannot
drift from what the server enforces — and feed the property-based tests.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from owm_core.errors import InvalidValue
from owm_server.http.problems import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA

Schema = dict[str, Any]


class Access(enum.Enum):
    """Who may call an operation (SRS 4.8.1)."""

    PUBLIC = "public"
    """Anyone; not rate limited (the document itself, buying access, node challenge flows)."""
    CLIENT = "client"
    """An API key, a paid L402 token or a node signature; free-tier keys are limited."""
    NODE_MANAGEMENT = "node_management"
    """Like CLIENT, but node-signed requests are exempt from rate limits."""
    NODE = "node"
    """Only a registered node operator's signed request; exempt from rate limits."""


@attrs.frozen
class Param:
    """A path or query parameter."""

    name: str
    location: str
    schema: Schema
    description: str
    required: bool = False
    convertor: str | None = None
    """A starlette path convertor that only matches valid values (others are a 404 route miss)."""


@attrs.frozen
class Reply:
    """A documented response."""

    description: str
    schema: Schema | None = None
    media_type: str = "application/json"


def problem(description: str) -> Reply:
    """A documented RFC 7807 problem reply."""
    return Reply(description, PROBLEM_SCHEMA, PROBLEM_MEDIA_TYPE)


@attrs.frozen
class Operation:
    """One endpoint of one API version (see the module docstring)."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    access: Access
    handler: Callable[..., Any]
    replies: Mapping[int, Reply]
    params: tuple[Param, ...] = ()
    body: Schema | None = None
    description: str = ""
    inline: bool = False
    """Cheap (cached, in-memory) handlers run on the event loop; others in the thread pool."""
    websocket: bool = False
    priced: bool = False
    """A query: with per-query pricing on, each call spends ``query_price_msat`` of an L402
    token's credit (402 with a new invoice once it is spent)."""
    raw_body: bool = False
    """The handler gets the body as raw bytes, unparsed (``body`` only documents it): a signed
    webhook's signature is checked over the exact bytes before anything parses them."""

    def statuses(self) -> dict[int, Reply]:
        """Every status this operation documents: its own and the access-related errors."""
        out = dict(self.replies)
        if any(p.convertor is None for p in self.params) or self.body is not None:
            out.setdefault(422, problem("The input is invalid; `field` names it."))
        if self.body is not None:
            out.setdefault(400, problem("The body is not a JSON object."))
            out.setdefault(415, problem("The body is not sent as application/json."))
            out.setdefault(413, problem("The body is larger than 1 MiB."))
            out.setdefault(408, problem(
                "The body did not arrive within the server's body deadline "
                "(`request-timeout`; 30 s by default); the connection is closed."
            ))
        if any(p.convertor is not None for p in self.params):
            out.setdefault(404, problem("No such record (or not a valid id)."))
        if self.access is Access.PUBLIC:
            out.setdefault(429, problem(
                "This address made too many requests to public operations (120 a minute by "
                "default; `Retry-After`)."
            ))
        else:
            out.setdefault(401, problem("The credential is unknown, revoked, forged or replayed."))
        if self.access in {Access.CLIENT, Access.NODE_MANAGEMENT}:
            out.setdefault(
                402,
                problem(
                    ("No credential, or per-query pricing and this token's payment is spent: "
                     if self.priced else "No credential: ")
                    + "pay the invoice in `WWW-Authenticate: L402 …` (SRS-API-03) or "
                    "send an API key."
                ),
            )  # fmt: skip
            out.setdefault(
                429,
                problem(
                    "The free tier's 100 requests a day, a paid key's daily quota, the day's "
                    "writes or this address's access invoices are used up, or a node-signed "
                    f"request finds {_GUARD_FULL} (`Retry-After`)."
                ),
            )
        if self.access is Access.NODE:
            out.setdefault(429, problem(
                f"The signed request finds {_GUARD_FULL}: sign it afresh and send it again "
                "after `Retry-After`."
            ))
        return dict(sorted(out.items()))


_GUARD_FULL = "the replay guard, or its key's share of it, full (`replay-guard-full`)"
"""Why a fresh node-signed request may be refused for now
(:class:`owm_core.errors.ReplayGuardFull`)."""


@attrs.frozen
class Tag:
    """The operations of one OpenAPI tag, declared one per call: ``nodes("GET", path, …)`` is
    :class:`Operation` with the tag filled in, so a module's operation list reads as a table."""

    name: str

    def __call__(
        self,
        method: str,
        path: str,
        operation_id: str,
        summary: str,
        access: Access,
        handler: Callable[..., Any],
        replies: Mapping[int, Reply],
        *,
        params: tuple[Param, ...] = (),
        body: Schema | None = None,
        description: str = "",
        inline: bool = False,
        priced: bool = False,
        raw_body: bool = False,
    ) -> Operation:
        """The operation ``method path`` under this tag."""
        return Operation(
            method, path, operation_id, summary, self.name, access, handler, replies,
            params=params, body=body, description=description, inline=inline, priced=priced,
            raw_body=raw_body,
        )


# --------------------------------------------------------------------------- validation


def _fail(field: str, reason: str) -> InvalidValue:
    return InvalidValue(field, reason)


_CHECKED_TYPES = frozenset({"object", "array", "string", "integer", "boolean"})
"""The schema types :func:`validate` checks a value against (others pass as they are)."""


def validate(schema: Schema, value: Any, field: str) -> Any:
    """Check ``value`` against the JSON Schema subset this API uses; InvalidValue names the
    first offending field (``body.title``, ``query.limit``, …)."""
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        raise _fail(field, f"must be one of {', '.join(map(str, schema['enum']))}")
    if kind == "object":
        if not isinstance(value, dict):
            raise _fail(field, "must be a JSON object")
        properties: dict[str, Schema] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                raise _fail(f"{field}.{name}", "is required")
        if schema.get("additionalProperties") is False:
            unknown = sorted(set(value) - set(properties))
            if unknown:
                raise _fail(f"{field}.{unknown[0]}"[:200], "is not a known field")
        for name, sub in properties.items():
            if name in value and not (value[name] is None and sub.get("nullable_ok")):
                validate(sub, value[name], f"{field}.{name}")
        return value
    if kind == "array":
        if not isinstance(value, list):
            raise _fail(field, "must be an array")
        if len(value) > schema.get("maxItems", 10_000):
            raise _fail(field, f"must have at most {schema['maxItems']} items")
        items = schema.get("items", {})
        if items.get("type") not in _CHECKED_TYPES and "enum" not in items:
            return value  # nothing to check per item (numbers): no 10⁶ calls for nothing
        for i, item in enumerate(value):
            validate(items, item, f"{field}[{i}]")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise _fail(field, "must be a string")
        if len(value) < schema.get("minLength", 0):
            raise _fail(field, f"must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise _fail(field, f"must have at most {schema['maxLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            raise _fail(field, f"must match {schema['pattern']}")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(field, "must be an integer")
        if "minimum" in schema and value < schema["minimum"]:
            raise _fail(field, f"must be ≥ {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise _fail(field, f"must be ≤ {schema['maximum']}")
        return value
    if kind == "boolean" and not isinstance(value, bool):
        raise _fail(field, "must be true or false")
    return value


def parse_param(param: Param, raw: str) -> Any:
    """A path or query parameter's text, converted to its schema's type and validated."""
    field = f"{param.location}.{param.name}"
    value: Any = raw
    if param.schema.get("type") == "integer":
        text = raw.strip()
        if not re.fullmatch(r"-?[0-9]{1,18}", text):
            raise _fail(field, "must be an integer")
        value = int(text)
    return validate(param.schema, value, field)


# --------------------------------------------------------------------------- OpenAPI

_SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    Access.PUBLIC: [],
    Access.CLIENT: [{"apiKey": []}, {"apiKeyHeader": []}, {"l402": []}, {"nodeSignature": []}],
    Access.NODE_MANAGEMENT: [
        {"apiKey": []},
        {"apiKeyHeader": []},
        {"l402": []},
        {"nodeSignature": []},
    ],
    Access.NODE: [{"nodeSignature": []}],
}

_VERSION_HEADERS = {
    "X-OWM-Model-Version": {
        "description": "The conglomerate model version answering now (`none` before the first "
        "release), SRS-API-01.",
        "schema": {"type": "string"},
    },
    "X-OWM-OTS-Verified": {
        "description": "Whether that version's OpenTimestamps proof is confirmed, and the chain "
        "it is checked against: `true; chain=bitcoin-main`, `false; chain=embedded-regtest` "
        "(a devnet's own chain, proving no real time), `bitcoin-test`, `bitcoin-signet`, "
        "`bitcoin-regtest`, or `none`.",
        "schema": {"type": "string", "pattern": "^(true|false); chain=[a-z-]+$"},
    },
}


def _strip(schema: Schema) -> Schema:
    """A schema without this module's private hints."""
    out: Schema = {}
    for key, value in schema.items():
        if key == "nullable_ok":
            continue
        if isinstance(value, dict):
            value = (
                {k: _strip(v) if isinstance(v, dict) else v for k, v in value.items()}
                if key == "properties"
                else _strip(value)
            )
        out[key] = value
    return out


def _responses(op: Operation) -> dict[str, Any]:
    """The documented responses of one operation, each with the version headers."""
    responses: dict[str, Any] = {}
    for status, reply in op.statuses().items():
        response: dict[str, Any] = {
            "description": reply.description,
            "headers": _VERSION_HEADERS,
        }
        if reply.schema is not None:
            response["content"] = {reply.media_type: {"schema": _strip(reply.schema)}}
        elif reply.media_type != "application/json":
            response["content"] = {
                reply.media_type: {"schema": {"type": "string", "format": "binary"}}
            }
        responses[str(status)] = response
    return responses


def _path_item(op: Operation) -> dict[str, Any]:
    """The OpenAPI operation object of one operation."""
    entry: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": _SECURITY[op.access],
        "x-owm-access": op.access.value,
    }
    if op.description:
        entry["description"] = op.description
    if op.params:
        entry["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required or p.location == "path",
                "description": p.description,
                "schema": _strip(p.schema),
            }
            for p in op.params
        ]
    if op.body is not None:
        entry["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _strip(op.body)}},
        }
    entry["responses"] = _responses(op)
    return entry


_SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer owm_…` (SRS-API-02).",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "l402": {
        "type": "http",
        "scheme": "L402",
        "description": "`Authorization: L402 <base64 macaroon>:<hex preimage>` "
        "after paying the invoice of a 402 answer (SRS-API-03).",
    },
    "nodeSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-OWM-Signature",
        "description": "Node operators: `X-OWM-Node-Key`, "
        "`X-OWM-Timestamp`, `X-OWM-Nonce` and an Ed25519 "
        "`X-OWM-Signature` over the request.",
    },
}


def openapi_document(
    version_prefix: str,
    operations: list[Operation],
    *,
    title: str,
    version: str,
    description: str,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one API version's operations."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        if not op.websocket:
            paths.setdefault(version_prefix + op.path, {})[op.method.lower()] = _path_item(op)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": _SECURITY_SCHEMES,
            "schemas": {"Problem": PROBLEM_SCHEMA},
        },
    }
