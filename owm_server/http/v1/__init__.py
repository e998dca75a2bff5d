"""Version 1 of the public API (SRS 4.8.2): every ``/v1`` operation, parse → call → render.

One module per context, named after its OpenAPI tag: :mod:`~owm_server.http.v1.query`,
:mod:`~owm_server.http.v1.slashing` (tagged ``network``), :mod:`~owm_server.http.v1.data`,
:mod:`~owm_server.http.v1.fl`, :mod:`~owm_server.http.v1.models`,
:mod:`~owm_server.http.v1.github`, :mod:`~owm_server.http.v1.nodes`,
:mod:`~owm_server.http.v1.network`, :mod:`~owm_server.http.v1.payments`,
:mod:`~owm_server.http.v1.mining`, :mod:`~owm_server.http.v1.stake` and
:mod:`~owm_server.http.v1.governance` with :mod:`~owm_server.http.v1.treasury` (statements,
the governance log, PSBTs). Each declares its schemas, renderers, handlers and
``operations()``; the schema atoms they share are :mod:`~owm_server.http.v1.schemas`, the
renderers they share :mod:`~owm_server.http.v1.render`.

No rule lives here: each handler reads its validated input from :class:`Call`, calls one
application service and renders the domain values it gets back as JSON. Node registration and
deregistration go through the coordinator's own use cases (the same as gRPC).
"""

from __future__ import annotations

from owm_server.http.contract import Operation
from owm_server.http.v1 import (
    data,
    fl,
    github,
    governance,
    mining,
    models,
    network,
    nodes,
    payments,
    query,
    slashing,
    stake,
    treasury,
)

_CONTEXTS = (
    query,
    slashing,
    data,
    fl,
    models,
    github,
    nodes,
    network,
    payments,
    mining,
    stake,
    governance,
    treasury,
)
"""In the order of the OpenAPI document's paths (and of docs/api-reference.md)."""


def operations() -> list[Operation]:
    """Every v1 operation (SRS 4.8.2) plus the node challenge step of registration."""
    return [op for context in _CONTEXTS for op in context.operations()]
