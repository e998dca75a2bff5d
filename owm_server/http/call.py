"""What a handler receives: the services, the validated input and the authenticated caller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from owm_adapters.services.api import ApiServices
from owm_core.access.callers import Caller
from owm_server.http.problems import Problem

T = TypeVar("T")


@attrs.define
class Call:
    """One request, parsed and authenticated, as an operation's handler sees it."""

    services: ApiServices
    path: dict[str, Any]
    query: dict[str, Any]
    body: Any
    caller: Caller | None
    client_ip: str | None
    remaining: int | None = None
    #: The request's headers (case-insensitive), for operations that read their own.
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def who(self) -> Caller:
        """The caller; operations that are not public always have one."""
        if self.caller is None:
            raise Problem(401, "unauthenticated", "this operation needs a credential")
        return self.caller


def running(
    service: T | None, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> T:
    """``service`` when this coordinator runs it, else a 503 problem ``code`` saying so
    (an optional capability: knowledge, FL rounds, slashing, queries)."""
    if service is None:
        raise Problem(503, code, detail, headers=headers)
    return service
