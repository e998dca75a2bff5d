"""Replies to nodes signed by the coordinator key (SRS-SEC-01/03).

:func:`signed` decorates a unary servicer method like :func:`~owm_server.grpc.status.guarded`
and fills the reply's ``coordinator_signature`` over (method name, request, reply): a node's
client accepts a reply only when its pinned coordinator key made it for that request
(:mod:`owm_adapters.control_plane.replies`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from owm_adapters.control_plane import replies
from owm_server.grpc.status import guarded

_F = TypeVar("_F", bound=Callable[..., Any])


def signed(method: _F) -> _F:
    """Guard ``method`` and sign its reply with the service's coordinator key."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        reply = method(self, request, context)
        replies.sign(self.service.signer, method.__name__, request, reply)
        return reply

    return guarded(wrapper)  # type: ignore[return-value]
