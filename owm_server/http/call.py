"""What a handler receives: the services, the validated input and the authenticated caller."""

from __future__ import annotations

from typing import Any

import attrs

from owm_adapters.services.api import ApiServices
from owm_core.access.callers import Caller
from owm_server.http.problems import Problem


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

    def who(self) -> Caller:
        """The caller; operations that are not public always have one."""
        if self.caller is None:
            raise Problem(401, "unauthenticated", "this operation needs a credential")
        return self.caller
