"""Liveness and readiness of the coordinator's HTTP API, for load balancers and supervisors.

* ``GET /healthz``: 200 ``{"status": "alive"}`` while the process answers HTTP at all; it
  checks nothing else, so a supervisor restarts only a process that is really stuck.
* ``GET /readyz``: runs the composed readiness probes (:mod:`owm_adapters.probes`; the parts
  are database, schema, lightning, chain and vector store, as far as the coordinator runs them)
  in the thread pool, each bounded by a short timeout. All ``ok``: 200
  ``{"status": "ready", "parts": {...}}``. Otherwise 503 ``not-ready``
  (``application/problem+json``) whose detail and ``failing`` list name the failing parts and
  whose ``parts`` give each part's status word. Only part names and status words are answered,
  never a backend's own error text (it may name internal hosts: docs/security.md).

Both sit outside the versioned API (``/v1``): they describe this process, not the network.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from owm_adapters.probes import Readiness, failing
from owm_server.http.problems import Problem, render


def routes(readiness: Readiness) -> list[Route]:
    """``/healthz`` and ``/readyz`` over ``readiness``."""

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        parts = await run_in_threadpool(readiness.check)
        down = failing(parts)
        if not down:
            return JSONResponse({"status": "ready", "parts": parts})
        problem = Problem(
            503, "not-ready", f"not ready: {', '.join(down)}", failing=down, parts=parts,
            headers={"Retry-After": "5"},
        )
        return render(problem, request.url.path)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
