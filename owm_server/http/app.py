"""The HTTP shell's assembly: ``create_app(services)`` builds the starlette application.

* **Versions are mounts** (SRS-API-06): ``/v1`` is a :class:`~starlette.routing.Mount` of the
  v1 operations and their OpenAPI document (``/v1/openapi.json``); a ``/v2`` would be another
  mount beside it, so both can be served at once.
* **One dispatcher** per operation (:func:`endpoint`): count a public operation's request
  against its client address's limit, read the body (≤ 1 MiB), validate path and query,
  authenticate (API key, L402 token or a node's signature over the raw body) and count the
  request against the caller's rate limit — all before the body is parsed, so a stranger's
  body costs no parsing (SRS-SEC-04) — then refuse JSON nested deeper than
  :data:`MAX_JSON_DEPTH` with a cheap scan (a deep document would otherwise exhaust the
  parser's recursion), parse and validate the body, call the handler. Cheap, cached handlers
  run on the event loop; the rest in the thread pool.
* **One error translation**: every failure becomes an RFC 7807 problem document
  (:mod:`owm_server.http.problems`); nothing the client sends produces a 5xx or a stack trace.
* **Every response** carries ``X-OWM-Model-Version`` and ``X-OWM-OTS-Verified`` (SRS-API-01),
  added by :class:`VersionHeaders` around everything, errors included.
* **The web dashboard** (``/dashboard``, HTML + htmx) sits beside the versions, read-only:
  :mod:`owm_server.http.dashboard`. It and the live mining feed are private by default
  (loopback peers only): :mod:`owm_server.http.private`.
* **Liveness and readiness** (``/healthz``, ``/readyz``) sit beside the versions too:
  :mod:`owm_server.http.health`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, NoMatchFound, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from owm_adapters.probes import Readiness
from owm_adapters.services.api import ApiServices, ReadCache
from owm_core.access.callers import Caller
from owm_core.errors import DomainError, PaymentRequired
from owm_server.http import dashboard, health, pool_page, portal, v1
from owm_server.http.call import Call
from owm_server.http.contract import Access, Operation, openapi_document, parse_param, validate
from owm_server.http.metrics import HttpMetrics, RouteMetrics
from owm_server.http.private import PrivateRoutes
from owm_server.http.problems import Problem, from_domain, render
from owm_server.http.v1.mining import dashboard_json

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_JSON_DEPTH = 32
"""No request body of the API nests objects and arrays deeper than this."""
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
API_TITLE = "OWM public API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "The public HTTP API of an OWM coordinator (SRS 4.8). Every response carries "
    "`X-OWM-Model-Version` and `X-OWM-OTS-Verified`; every error is an RFC 7807 problem "
    "document whose `type` is `https://owm.network/problems/<code>`. Credentials: an API key "
    "(`Authorization: Bearer owm_…` or `X-API-Key`; the free tier allows 100 requests a day), "
    "an L402 token (answer a 402 by paying its invoice; 24 h of commercial access), or a node "
    "operator's Ed25519 signature (`X-OWM-Node-Key`, `X-OWM-Timestamp`, `X-OWM-Nonce`, "
    "`X-OWM-Signature`; exempt from rate limits on node-management endpoints). The live mining "
    "dashboard is also a WebSocket at `/v1/mining/dashboard`. Connections: a request's headers "
    "must arrive within 10 s and its body within 30 s of them (else `408 request-timeout`), "
    "and one address holds at most 64 connections at once (the next is answered "
    "`429 rate-limited`); the coordinator's operator may set other limits."
)
_SIGNATURE_HEADERS = ("x-owm-node-key", "x-owm-timestamp", "x-owm-nonce", "x-owm-signature")
_NODE_MANAGEMENT = {Access.NODE_MANAGEMENT, Access.NODE}


class NodeIdConvertor(Convertor[str]):
    """Matches node ids only, so ``/v1/nodes/register`` never reads as a node called register."""

    regex = "n[0-9a-f]{40}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("node_id", NodeIdConvertor())


def version_headers(services: ApiServices) -> list[tuple[bytes, bytes]]:
    """``X-OWM-Model-Version`` and ``X-OWM-OTS-Verified`` of the release answering now."""
    try:
        release = services.releases.current_release()
    except Exception:  # the store is down: say so in the headers, never fail the request
        log.exception("cannot read the current model release")
        release = None
    version = release.version.version if release is not None else "none"
    verified = "true" if release is not None and release.ots_verified else "false"
    verified += f"; chain={services.releases.chain}"
    return [(b"x-owm-model-version", version.encode()), (b"x-owm-ots-verified", verified.encode())]


class VersionHeaders:
    """ASGI middleware: the model version and its OTS status on every response (SRS-API-01)."""

    def __init__(self, app: ASGIApp, services: ApiServices) -> None:
        self.app = app
        self.services = services
        self._ttl_ms = services.config.cache_ttl_ms
        self._cached: tuple[int, list[tuple[bytes, bytes]]] | None = None

    def _headers(self) -> list[tuple[bytes, bytes]]:
        # Recomputed at most once per cache period: every response needs them (SRS-API-01).
        now = self.services.clock.monotonic_ms()
        if self._cached is None or now - self._cached[0] >= self._ttl_ms:
            self._cached = (now, version_headers(self.services))
        return self._cached[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._headers()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Problem(413, "payload-too-large", f"bodies are limited to {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Problem(413, "payload-too-large", f"bodies are limited to {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` nests arrays and objects deeper than ``limit`` (brackets in strings
    do not count); linear in the size and stops at the first level past the limit."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', raw)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _parse_body(op: Operation, raw: bytes, content_type: str) -> Any:
    if op.body is None:
        return None
    if content_type and "json" not in content_type.split(";")[0].lower():
        raise Problem(415, "unsupported-media-type", "send the body as application/json")
    if op.raw_body:  # checked (a signature over the exact bytes) and parsed by the service
        return raw
    if json_depth_exceeds(raw):
        raise Problem(
            400, "malformed-request", f"the body nests deeper than {MAX_JSON_DEPTH} levels"
        )
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Problem(400, "malformed-request", "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise Problem(400, "malformed-request", "the body must be a JSON object")
    if _may_hold_surrogates(raw):
        try:  # JSON may escape lone surrogates (\ud800), which no UTF-8 store or reply holds
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Problem(
                400, "malformed-request", "the body holds an unpaired surrogate"
            ) from None
    return validate(op.body, value, "body")


def _may_hold_surrogates(raw: bytes) -> bool:
    """Whether parsing ``raw`` can give a string with a surrogate: UTF-8 JSON holds one only
    as a ``\\uD800``–``\\uDFFF`` escape or as the bytes the parser's ``surrogatepass``
    decodes (``ED A0``–``ED BF``); other encodings are checked in full. A scan instead of
    re-encoding the whole parsed body: a megabyte of numbers costs no second pass."""
    if json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
        return True
    return _SURROGATE.search(raw) is not None


def _path_and_query(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def authenticate(
    services: ApiServices, op: Operation, request: Request, raw_body: bytes
) -> Caller | None:
    """The caller of a request, or None for public operations (see the module docstring).

    No credential at all on a client operation is answered with 402 and an L402 challenge
    (an invoice for 24 hours of access) — the way Aperture-style L402 gates work.
    """
    if op.access is Access.PUBLIC:
        return None
    headers = {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]
    }
    signed = [headers.get(name) for name in _SIGNATURE_HEADERS]
    authorization = headers.get("authorization", "").strip()
    scheme = authorization.split(" ", 1)[0].lower()
    if any(signed):
        if not all(signed):
            raise Problem(
                401,
                "unauthenticated",
                "signed requests need X-OWM-Node-Key, X-OWM-Timestamp, X-OWM-Nonce "
                "and X-OWM-Signature",
            )
        values = (signed[0] or "", signed[1] or "", signed[2] or "", signed[3] or "")
        return services.access.caller_by_signature(
            values, request.method, _path_and_query(request), raw_body
        )
    if op.access is Access.NODE:
        raise Problem(
            401,
            "unauthenticated",
            "this operation needs a node operator's signature",
            headers={"WWW-Authenticate": 'OWM-Signature realm="owm"'},
        )
    if scheme == "bearer":
        return services.access.caller_by_api_key(authorization[len("bearer") :].strip())
    if scheme in {"l402", "lsat"}:
        return services.access.caller_by_l402(authorization)
    api_key = headers.get("x-api-key")
    if api_key:
        return services.access.caller_by_api_key(api_key.strip())
    if authorization:
        raise Problem(
            401,
            "unauthenticated",
            "use Bearer <API key>, L402 or a node signature",
            headers={"WWW-Authenticate": 'Bearer realm="owm"'},
        )
    raise payment_required(
        services,
        request,
        "send an API key, or pay the invoice for 24 h of access and present "
        "Authorization: L402 <macaroon>:<preimage>",
    )


def payment_required(services: ApiServices, request: Request, detail: str) -> Problem:
    """A 402 problem carrying a fresh invoice and its L402 challenge (SRS-API-03)."""
    offer = services.access.offer_access(request.client.host if request.client else None)
    return Problem(
        402,
        "payment-required",
        detail,
        headers={"WWW-Authenticate": offer.www_authenticate},
        invoice=offer.invoice.bolt11,
        payment_hash=offer.invoice.payment_hash,
        amount_msat=offer.invoice.amount_msat,
    )


def _internal(exc: BaseException) -> Response:
    log.error("unexpected error while answering a request", exc_info=exc)
    return render(Problem(500, "internal", "the server failed; the details are in its log"))


class RenderedCache:
    """Rendered bodies of public aggregate reads, reused for ``cache_ttl_ms`` per request.

    Only operations marked ``inline`` use it — their answers do not depend on the caller —
    and only after the caller was authenticated and counted, so access control and rate
    limits apply to every request; what is saved is recomputing and re-encoding the same
    JSON thousands of times a second (SRS-PERF-08). An entry is keyed by the operation's own
    parameters as parsed (``?limit=020&junk=1`` is ``limit=20``): parameters the operation does
    not know make no entries. Full, it drops the entry used least recently, so a flood of new
    keys cannot push out what is asked for all the time (SRS-SEC-04).
    """

    def __init__(self, services: ApiServices, max_entries: int = 4_096) -> None:
        self._services = services
        self._cache = ReadCache(services.clock, services.config.cache_ttl_ms, max_entries)

    def get(self, key: Hashable) -> Response | None:
        hit, entry = self._cache.lookup(key)
        if not hit:
            return None
        body, media_type = entry
        return Response(body, media_type=media_type)

    def put(self, key: Hashable, response: Response) -> None:
        if response.status_code == 200:
            media_type = response.media_type or "application/json"
            self._cache.put(key, (bytes(response.body), media_type))

    def __len__(self) -> int:
        return len(self._cache)


def cache_key(path: dict[str, Any], query: dict[str, Any]) -> Hashable:
    """What a request of one operation is cached under: its parsed parameters, sorted."""
    return tuple(sorted(path.items())), tuple(sorted(query.items()))


def endpoint(services: ApiServices, op: Operation) -> Callable[[Request], Awaitable[Response]]:
    """The starlette endpoint of one operation (see the module docstring)."""
    path_params = [p for p in op.params if p.location == "path"]
    query_params = [p for p in op.params if p.location == "query"]
    rendered = RenderedCache(services) if op.inline else None

    def run(request: Request, raw: bytes) -> Response:
        try:
            path = {p.name: parse_param(p, request.path_params[p.name]) for p in path_params}
            query: dict[str, Any] = {}
            if query_params and request.scope["query_string"]:
                given = request.query_params
                query = {
                    p.name: parse_param(p, given[p.name]) for p in query_params if p.name in given
                }
            # Who asks, and whether they may, before the body is parsed: a stranger's body
            # costs no parsing (signatures are checked over the raw bytes).
            caller = authenticate(services, op, request, raw)
            remaining = credit = None
            if caller is not None:
                remaining = services.access.admit(
                    caller, op.access in _NODE_MANAGEMENT, write=op.method != "GET"
                )
            body = _parse_body(op, raw, request.headers.get("content-type", ""))
            if caller is not None and op.priced:
                credit = services.access.charge_query(caller)
            client = request.client.host if request.client is not None else None
            key = cache_key(path, query)
            cached = rendered.get(key) if rendered is not None else None
            if cached is not None:
                response: Response = cached
            else:
                try:
                    response = op.handler(
                        Call(services, path, query, body, caller, client, headers=request.headers)
                    )
                except Exception:
                    if credit is not None and caller is not None:
                        services.access.refund_query(caller)  # not answered: not charged
                    raise
                if rendered is not None:
                    rendered.put(key, response)
            if remaining is not None:
                response.headers["RateLimit-Remaining"] = str(remaining)
            if credit is not None:
                response.headers["OWM-Credit-Msat"] = str(credit)
            return response
        except PaymentRequired as unpaid:
            return render(payment_required(services, request, unpaid.message), request.url.path)
        except Problem as problem:
            return render(problem, request.url.path)
        except DomainError as exc:
            return render(from_domain(exc), request.url.path)
        except Exception as exc:
            return _internal(exc)

    async def handle(request: Request) -> Response:
        try:
            if op.access is Access.PUBLIC:  # before the body is even read
                services.access.admit_public(request.client.host if request.client else None)
            raw = await _read_body(request) if op.body is not None else b""
        except Problem as problem:
            return render(problem, request.url.path)
        except DomainError as exc:
            return render(from_domain(exc), request.url.path)
        if op.inline:
            return run(request, raw)
        return await run_in_threadpool(run, request, raw)

    return handle


def dashboard_socket(services: ApiServices) -> Callable[[WebSocket], Awaitable[None]]:
    """The live mining dashboard (SRS-POOL-09): a frame at once, then every interval."""

    async def stream(socket: WebSocket) -> None:
        await socket.accept(headers=version_headers(services))
        interval = services.config.dashboard_interval_s
        try:
            while True:
                frame = await run_in_threadpool(services.views.dashboard)
                await socket.send_json(dashboard_json(frame))
                try:
                    message = await asyncio.wait_for(socket.receive(), timeout=interval)
                except TimeoutError:
                    continue
                if message["type"] == "websocket.disconnect":
                    return
        except WebSocketDisconnect:
            return

    return stream


class StaticRoutes(BaseRoute):
    """The parameterless routes of a version, found by one dict lookup instead of a scan.

    Starlette tries routes in order with a regex each; with thirty operations that scan was the
    largest cost of a request under load (SRS-PERF-08). Paths with parameters stay ordinary
    routes after this one.
    """

    def __init__(self, routes: list[Route]) -> None:
        self.table = {route.path: route for route in routes}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        route = self.table.get(get_route_path(scope))
        if route is None:
            return Match.NONE, {}
        return route.matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.table[get_route_path(scope)].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)


def _by_method(
    handlers: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    """One endpoint for every method of a path, so a 405's ``Allow`` lists them all."""

    async def dispatch(request: Request) -> Response:
        handler = handlers.get(request.method) or handlers["GET"]  # HEAD is GET without a body
        return await handler(request)

    return dispatch


def version_routes(
    services: ApiServices, prefix: str, operations: list[Operation]
) -> list[BaseRoute]:
    """The routes of one API version: its operations and its OpenAPI document."""
    document = openapi_document(
        prefix, operations, title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION
    )

    async def openapi(_request: Request) -> Response:
        return JSONResponse(document)

    static: list[Route] = [Route("/openapi.json", openapi, methods=["GET"])]
    dynamic: list[BaseRoute] = []
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for op in operations:
        path = op.path
        for param in op.params:
            if param.convertor is not None:
                path = path.replace(f"{{{param.name}}}", f"{{{param.name}:{param.convertor}}}")
        by_path.setdefault(path, {})[op.method] = endpoint(services, op)
    for path, handlers in by_path.items():
        route = Route(path, _by_method(handlers), methods=sorted(handlers))
        if "{" in path:
            dynamic.append(route)
        else:
            static.append(route)
    routes: list[BaseRoute] = [StaticRoutes(static), *dynamic]
    return routes


def openapi_v1(services: ApiServices | None = None) -> dict[str, Any]:
    """The v1 OpenAPI document (scripts/gen-api-docs renders it without a server)."""
    return openapi_document(
        "/v1", v1.operations(), title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        problem = Problem(404, "not-found", f"no operation at {request.url.path}")
    elif exc.status_code == 405:
        problem = Problem(
            405,
            "method-not-allowed",
            f"{request.method} is not allowed here",
            headers=dict(exc.headers or {}),
        )
    else:
        problem = Problem(exc.status_code, "malformed-request", str(exc.detail))
    return render(problem, request.url.path)


async def _unexpected(_request: Request, exc: Exception) -> Response:
    return _internal(exc)


async def _client_gone(request: Request, _exc: Exception) -> Response:
    """The client closed its connection before its body arrived: nothing failed here and
    nobody reads an answer, so one quiet line, no traceback (an empty answer, sent nowhere)."""
    log.debug("client went away before sending its whole body: %s %s", request.method,
             request.url.path)
    return Response(status_code=400)


def create_app(
    services: ApiServices,
    metrics: HttpMetrics | None = None,
    readiness: Readiness | None = None,
) -> Starlette:
    """The public API application over ``services`` (see the module docstring); with
    ``metrics``, every request is counted and timed by route template; ``/readyz`` runs
    ``readiness`` (no probes when None: a bare app knows no backends of its own)."""
    v1_routes = version_routes(services, "/v1", v1.operations())
    v1_routes.append(WebSocketRoute("/mining/dashboard", dashboard_socket(services)))
    return Starlette(
        routes=[
            Mount("/v1", routes=v1_routes),
            *dashboard.routes(services),
            *portal.routes(services),
            *pool_page.routes(services),
            *health.routes(readiness or Readiness({})),
        ],
        middleware=[
            *([Middleware(RouteMetrics, metrics=metrics)] if metrics is not None else []),
            Middleware(VersionHeaders, services=services),
            Middleware(PrivateRoutes, access=services.config.dashboard_access),
        ],
        exception_handlers={
            HTTPException: _http_exception,
            ClientDisconnect: _client_gone,
            Exception: _unexpected,
        },
    )
