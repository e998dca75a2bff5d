"""The embedded calendar and chain over HTTP (``[provenance] calendar_listen``): a devnet's
OpenTimestamps calendar and Bitcoin-Core-style JSON-RPC for the reference tools.

* ``POST /digest`` — body: the raw digest (20 to 64 bytes); 200 with the serialised timestamp
  (``application/octet-stream``), as a public calendar answers ``ots stamp``;
* ``GET /timestamp/{hex}`` — 200 with the rest of the path once committed in a block, 404
  ``Pending confirmation in Bitcoin blockchain`` before, as ``ots upgrade`` expects;
* ``POST /`` — JSON-RPC 1.0/2.0 (single calls or batches), the read-only subset of Bitcoin
  Core that ``ots verify --bitcoin-node URL`` calls; HTTP statuses as bitcoind's (200, 500 for
  an error, 404 for an unknown method under 1.0). Any credentials are accepted: the chain is
  public data.

No rule lives here: parse, call :class:`Endpoints` (``owm_adapters.provenance.calendar_server``),
render. Bad input is an RFC 7807 problem, as on the API.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from owm_core.errors import DomainError
from owm_server.http.problems import Problem, render

MAX_BODY_BYTES = 64 * 1024
OTS_MEDIA_TYPE = "application/octet-stream"


class Endpoints(Protocol):
    """What :class:`owm_adapters.provenance.calendar_server.CalendarEndpoints` offers."""

    def digest(self, body: bytes) -> bytes: ...

    def timestamp(self, commitment_hex: str) -> bytes | None: ...

    def rpc(self, method: str, params: list[Any]) -> Any: ...


async def _body(request: Request, limit: int) -> bytes:
    body = await request.body()
    if len(body) > limit:
        raise Problem(413, "too-large", f"the body is over {limit} bytes")
    return body


def _rpc_reply(endpoints: Endpoints, call: Any) -> tuple[int, dict[str, Any]]:
    """One JSON-RPC call's HTTP status and envelope (bitcoind's conventions)."""
    two = isinstance(call, dict) and call.get("jsonrpc") == "2.0"
    call_id = call.get("id") if isinstance(call, dict) else None
    method = call.get("method") if isinstance(call, dict) else None
    params = call.get("params", []) if isinstance(call, dict) else None
    try:
        if not isinstance(method, str) or not isinstance(params, list):
            raise _rpc_error(-32600, "Invalid Request object")
        result = endpoints.rpc(method, params)
    except Exception as exc:
        code, message = getattr(exc, "code", None), getattr(exc, "message", None)
        if not isinstance(code, int) or not isinstance(message, str):
            raise
        error = {"code": code, "message": message}
        if two:
            return 200, {"jsonrpc": "2.0", "error": error, "id": call_id}
        return (404 if code == -32601 else 500), {"result": None, "error": error, "id": call_id}
    if two:
        return 200, {"jsonrpc": "2.0", "result": result, "id": call_id}
    return 200, {"result": result, "error": None, "id": call_id}


class _RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _rpc_error(code: int, message: str) -> _RpcFailure:
    return _RpcFailure(code, message)


def create_calendar_app(endpoints: Endpoints) -> Starlette:
    """The calendar and JSON-RPC routes over ``endpoints`` (module docstring)."""

    async def post_digest(request: Request) -> Response:
        body = await _body(request, MAX_BODY_BYTES)
        try:
            answer = await run_in_threadpool(endpoints.digest, body)
        except DomainError as exc:
            return render(Problem(400, exc.code, exc.message), request.url.path)
        return Response(answer, media_type=OTS_MEDIA_TYPE)

    async def get_timestamp(request: Request) -> Response:
        try:
            answer = await run_in_threadpool(endpoints.timestamp, request.path_params["hex"])
        except DomainError as exc:
            return render(Problem(400, exc.code, exc.message), request.url.path)
        if answer is None:
            return Response("Pending confirmation in Bitcoin blockchain", 404,
                            media_type="text/plain")
        return Response(answer, media_type=OTS_MEDIA_TYPE)

    async def post_rpc(request: Request) -> Response:
        try:
            payload = json.loads(await _body(request, MAX_BODY_BYTES))
        except ValueError:
            error = {"code": -32700, "message": "Parse error"}
            return JSONResponse({"result": None, "error": error, "id": None}, 500)
        if isinstance(payload, list):
            replies = [await run_in_threadpool(_rpc_reply, endpoints, one) for one in payload]
            return JSONResponse([reply for _, reply in replies])
        status, reply = await run_in_threadpool(_rpc_reply, endpoints, payload)
        return JSONResponse(reply, status)

    return Starlette(routes=[
        Route("/digest", post_digest, methods=["POST"]),
        Route("/timestamp/{hex}", get_timestamp, methods=["GET"]),
        Route("/", post_rpc, methods=["POST"]),
    ])
