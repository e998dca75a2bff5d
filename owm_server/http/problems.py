"""RFC 7807 problem documents: the one place HTTP translates failures (SRS-API-04).

Every error the API answers is ``application/problem+json`` with a stable ``type`` URI
``https://owm.network/problems/<code>``, where ``code`` is the domain error's own stable code
(:class:`owm_core.errors.DomainError.code`) or one of the HTTP-level codes below. Invalid
input names the offending ``field``; rate limits (``rate-limited``, and ``replay-guard-full``
for a fresh signed request that found the replay guard full) carry ``retry_after_s`` and a
``Retry-After`` header; an insufficient stake carries ``required_sats``. Unexpected exceptions
become a plain 500 ``internal`` problem with no detail — the stack trace goes to the log, never
to the client. Failures of the coordinator's own backends (its Lightning node, Bitcoin node,
timestamp calendars, GitHub) are answered with a fixed detail, the one gRPC answers too
(:mod:`owm_server.outages`): their messages may name internal hosts, ports and TLS failures,
which go to the log only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from owm_core.errors import (
    BlockRejected,
    CalendarUnavailable,
    ChainUnavailable,
    Conflict,
    CooldownActive,
    DomainError,
    GitHubUnavailable,
    InsufficientStake,
    InvalidShare,
    InvalidTransition,
    InvalidValue,
    L402Invalid,
    LightningUnavailable,
    NoMatch,
    NotFound,
    PolicyViolation,
    RateLimited,
    ReplayRejected,
    RoleRequired,
    SignatureInvalid,
    StoreUnavailable,
)
from owm_server.outages import outage_detail

PROBLEM_BASE = "https://owm.network/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

_STATUS_OF_DOMAIN: dict[int, tuple[type[DomainError], ...]] = {
    422: (InvalidValue, InvalidShare, BlockRejected),
    401: (SignatureInvalid, ReplayRejected, L402Invalid),
    429: (RateLimited,),
    403: (RoleRequired,),
    404: (NotFound,),
    409: (Conflict, InsufficientStake, CooldownActive, InvalidTransition, PolicyViolation, NoMatch),
    503: (LightningUnavailable, ChainUnavailable, CalendarUnavailable, GitHubUnavailable,
          StoreUnavailable),
}  # fmt: skip
"""Each HTTP status and the domain errors answered with it."""

TITLES = {
    "invalid-value": "Invalid value",
    "malformed-request": "Malformed request",
    "signature-invalid": "Authentication failed",
    "replay-rejected": "Replayed or stale signed request",
    "l402-invalid": "Invalid L402 credential",
    "unauthenticated": "Authentication required",
    "payment-required": "Payment required",
    "forbidden": "Forbidden",
    "rate-limited": "Rate limit exceeded",
    "replay-guard-full": "Too many signed requests right now",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "unsupported-media-type": "Unsupported media type",
    "payload-too-large": "Payload too large",
    "request-timeout": "Request timeout",
    "conflict": "Conflict",
    "insufficient-stake": "Insufficient stake",
    "cooldown-active": "Cooldown active",
    "invalid-transition": "Invalid transition",
    "policy-violation": "Policy violation",
    "role-required": "Role required",
    "conglomerate-unavailable": "The conglomerate model is not available yet",
    "lightning-unavailable": "Lightning node unavailable",
    "store-unavailable": "Database unavailable",
    "github-unavailable": "GitHub unavailable",
    "github-app-off": "GitHub App not configured",
    "internal": "Internal error",
}


class Problem(Exception):
    """An HTTP-level failure the API answers with a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions


def problem_type(code: str) -> str:
    """The stable ``type`` URI of a problem code."""
    return PROBLEM_BASE + code


def status_of(exc: DomainError) -> int:
    """The HTTP status a domain error is answered with (422 for rules not listed)."""
    found = (status for status, kinds in _STATUS_OF_DOMAIN.items() if isinstance(exc, kinds))
    return next(found, 422)


def from_domain(exc: DomainError) -> Problem:
    """The problem a domain error becomes (extensions carry the error's structured fields)."""
    detail = outage_detail(exc)
    if detail is not None:  # a backend's message may name internal hosts: logged only
        return Problem(status_of(exc), exc.code, detail)
    extensions: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, InvalidValue):
        extensions["field"] = exc.field
        extensions["reason"] = exc.reason
    if isinstance(exc, RateLimited):
        extensions["retry_after_s"] = exc.retry_after_s
        headers["Retry-After"] = str(max(1, exc.retry_after_s))
    if isinstance(exc, InsufficientStake):
        extensions["required_sats"] = exc.required_sats
    if isinstance(exc, (SignatureInvalid, ReplayRejected, L402Invalid)):
        headers["WWW-Authenticate"] = 'Bearer realm="owm"'
    return Problem(status_of(exc), exc.code, exc.message, headers=headers, **extensions)


def render(problem: Problem, instance: str | None = None) -> Response:
    """The ``application/problem+json`` response of ``problem``."""
    body: dict[str, Any] = {
        "type": problem_type(problem.code),
        "title": TITLES.get(problem.code, problem.code.replace("-", " ").capitalize()),
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(problem.extensions)
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 7807 problem document (SRS-API-04).",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": PROBLEM_BASE + "<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string", "description": "the input at fault (invalid-value)"},
        "reason": {"type": "string"},
        "retry_after_s": {"type": "integer", "description": "rate-limited: seconds to wait"},
        "required_sats": {"type": "integer", "description": "insufficient-stake: the minimum"},
    },
}
