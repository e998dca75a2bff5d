"""The base of the gRPC server's interceptors: each wraps an RPC's behaviour, the function its
handler runs, chosen by the RPC's kind (``unary_unary``, ``unary_stream``, ``stream_unary``,
``stream_stream``). Stream limits (:mod:`owm_server.grpc.limits`) and metrics
(:mod:`owm_server.grpc.metrics`) differ only in how they wrap it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


class BehaviourInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Hands every RPC's behaviour to :meth:`wrap`; an unknown method passes through."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        """The handler with its behaviour wrapped (None when no handler serves the method)."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        requests = "stream" if handler.request_streaming else "unary"
        replies = "stream" if handler.response_streaming else "unary"
        kind = f"{requests}_{replies}"
        method = str(handler_call_details.method)
        return handler._replace(**{kind: self.wrap(kind, method, getattr(handler, kind))})

    def wrap(self, kind: str, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """The behaviour to run instead of ``behavior`` of ``method``; itself by default."""
        return behavior
