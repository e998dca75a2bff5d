"""What a caller is told when one of the coordinator's own backends fails (SRS-SEC-07).

A backend's error message is for the operator: it may name internal hosts, ports and TLS
failures (``LND AddInvoice failed at 10.13.37.5:10009: UNAVAILABLE: …``). Both shells answer
such a failure with the fixed text of :data:`BACKEND_OUTAGES` instead — HTTP as the problem's
``detail`` (:mod:`owm_server.http.problems`), gRPC as the status message
(:mod:`owm_server.grpc.status`) — and :func:`outage_detail` logs the message.
"""

from __future__ import annotations

import logging

from owm_core.errors import (
    CalendarUnavailable,
    ChainUnavailable,
    DomainError,
    GitHubUnavailable,
    LightningUnavailable,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

BACKEND_OUTAGES: tuple[tuple[type[DomainError], str], ...] = (
    (LightningUnavailable, "the coordinator's Lightning node cannot answer now; try again later"),
    (ChainUnavailable, "the coordinator's Bitcoin node cannot answer now; try again later"),
    (CalendarUnavailable, "no timestamp calendar answered; try again later"),
    (StoreUnavailable, "the coordinator's database cannot answer now; try again later"),
    (GitHubUnavailable, "GitHub cannot be reached from the coordinator now; try again later"),
)
"""Each backend's failure and the fixed text callers get for it."""


def outage_detail(exc: DomainError) -> str | None:
    """The fixed text a caller gets for ``exc`` when it is a backend's failure (its message
    goes to the log at WARNING), or None for any other error."""
    for kind, detail in BACKEND_OUTAGES:
        if isinstance(exc, kind):
            log.warning("backend unavailable while answering a request: %s", exc.message)
            return detail
    return None
