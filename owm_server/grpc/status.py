"""Domain errors → gRPC statuses: the one place the control plane translates failures.

Every servicer method runs under :func:`guarded` (or :func:`guarded_stream`), so a client sees
a status code and a one-line message — the field at fault for INVALID_ARGUMENT — and never a
stack trace. Unexpected exceptions are logged here and answered with INTERNAL. A failure of the
coordinator's own backends (its Lightning node, database, Bitcoin node, calendars, GitHub) is
UNAVAILABLE with the fixed text HTTP answers too (:mod:`owm_server.outages`): its message may
name internal hosts and goes to the log only (SRS-SEC-07).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc

from owm_core.errors import (
    CalendarUnavailable,
    ChainUnavailable,
    Conflict,
    CooldownActive,
    DomainError,
    GitHubUnavailable,
    InsufficientStake,
    InvalidTransition,
    InvalidValue,
    LightningUnavailable,
    NoMatch,
    NotFound,
    RateLimited,
    ReplayRejected,
    SignatureInvalid,
    StoreUnavailable,
)
from owm_server.outages import outage_detail

log = logging.getLogger(__name__)

_CODES: dict[grpc.StatusCode, tuple[type[DomainError], ...]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (InvalidValue,),
    grpc.StatusCode.UNAUTHENTICATED: (SignatureInvalid, ReplayRejected),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (RateLimited,),
    grpc.StatusCode.FAILED_PRECONDITION: (InsufficientStake, CooldownActive, InvalidTransition,
                                          NoMatch),
    grpc.StatusCode.NOT_FOUND: (NotFound,),
    grpc.StatusCode.ALREADY_EXISTS: (Conflict,),
    grpc.StatusCode.UNAVAILABLE: (LightningUnavailable, StoreUnavailable, ChainUnavailable,
                                  CalendarUnavailable, GitHubUnavailable),
}  # fmt: skip
"""Each status code and the domain errors answered with it (FAILED_PRECONDITION for the rest)."""


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client gets for ``exc``."""
    if isinstance(exc, DomainError):
        code = next(
            (c for c, kinds in _CODES.items() if isinstance(exc, kinds)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        message = outage_detail(exc) or exc.message
        if isinstance(exc, InsufficientStake):
            message = f"{message} (required_sats={exc.required_sats})"
        return code, f"{exc.code}: {message}"
    return grpc.StatusCode.INTERNAL, "internal error; the coordinator logged the details"


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """End the RPC with the status of ``exc`` (RateLimited adds ``retry-after-s`` metadata)."""
    code, message = status_of(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("unexpected error in an RPC", exc_info=exc)
    if isinstance(exc, RateLimited):
        context.set_trailing_metadata((("retry-after-s", str(exc.retry_after_s)),))
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort always raises


_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(method: _F) -> _F:
    """Decorate a unary servicer method so that failures become statuses (see module doc)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            abort(context, exc)

    return wrapper  # type: ignore[return-value]


def guarded_stream(method: _F) -> _F:
    """Like :func:`guarded`, for methods that return a response stream (generators)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            abort(context, exc)

    return wrapper  # type: ignore[return-value]
