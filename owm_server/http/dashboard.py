"""The coordinator's web dashboard: plain HTML and htmx at ``/dashboard``.

One page (``GET /dashboard``) lays out the network totals, then five charts of the last hours
(:mod:`owm_server.http.dashboard_charts`: nodes online and heartbeats, payments and earnings,
payment latency, FL accuracy and flagged updates per round, stake and slashing events — SVG
drawn on the server by :mod:`owm_server.http.charts`, no script), then six tables — nodes and
their stakes, recent tasks, FL rounds with accuracy, reward payments, model versions with
their OpenTimestamps status, and the public slashing log. The page itself holds no data: each panel
asks for its fragment (``GET /dashboard/fragments/<panel>``) when the page loads and every two
seconds after that (``hx-get`` + ``hx-trigger="load, every 2s"``; a chart every ten seconds,
its buckets being five minutes wide and its reads larger), so what a person sees is always
what the coordinator's store holds now.

Everything is rendered on the server from the API's services and the coordinator's
repositories, read-only, at most once per ``cache_ttl_ms`` per panel, and every value is
HTML-escaped. Only the operator's machine sees it by default (:mod:`owm_server.http.private`).
htmx itself (``static/htmx.min.js``, htmx 2.0.11 from the ``htmx.org`` npm package, 0BSD)
is served from this package: nothing is loaded from another site, and the
Content-Security-Policy says so.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from owm_adapters.services.api import ApiServices, ReadCache
from owm_core.market.tasks import Task, TaskState
from owm_core.payments.records import RewardPayment
from owm_core.stake.slashing import SlashingLogEntry
from owm_server.http.dashboard_charts import CHART_PANELS, CHART_REFRESH, CHART_STYLE

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
REFRESH = "every 2s"
"""How often each panel asks for its fragment again."""
MAX_ROWS = 20
RECENT_SETTLED_S = 3_600
"""Payments settled this long ago or later are listed whoever was paid."""
"""Rows shown per panel (newest first where the store can tell)."""

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; "
        "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_HTMX_CONFIG = '{"includeIndicatorStyles": false}'
_IN_PROGRESS = (
    TaskState.ASSIGNED,
    TaskState.SUBMITTED,
    TaskState.TIMED_OUT,
    TaskState.COMPLETED,
    TaskState.VERIFIED,
)


def _e(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> str:
    """A table whose cells are escaped; ``empty`` is shown when there are no rows."""
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    if not body:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _dl(items: Iterable[tuple[str, str]]) -> str:
    """A definition list of (term, value) pairs, escaped."""
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"


def _ago(now: int, at: int | None) -> str:
    if at is None:
        return "-"
    seconds = max(0, now - at)
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _sat(msat: int | None) -> str:
    if msat is None:
        return "-"
    return f"{msat // 1000:,} sat" if msat % 1000 == 0 else f"{msat / 1000:,.3f} sat"


def _short(value: str | None, keep: int = 12) -> str:
    if not value:
        return "-"
    return value if len(value) <= keep + 1 else value[:keep] + "…"


# --------------------------------------------------------------------------- panels


def summary_fragment(services: ApiServices) -> str:
    """Network totals (the same figures as GET /v1/network/stats)."""
    stats = services.views.network_stats()
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_status.items())) or "none"
    items = [
        ("nodes", f"{stats.nodes_total} ({by_status})"),
        ("staked", f"{stats.staked_sat:,} sat in {stats.active_stakes} active stakes"),
        ("tasks completed", f"{stats.total_tasks_completed}"),
        ("rewards earned", f"{stats.total_sats_earned:,} sat"),
    ]
    return _dl(items)


def nodes_fragment(services: ApiServices) -> str:
    """Every registered node: state, tier, stake, liveness, work done and earnings."""
    repositories = services.repositories
    now = services.clock.now()
    rows = []
    for node in sorted(repositories.nodes.list(), key=lambda n: n.registered_at):
        stake = repositories.stakes.get(node.public_key)
        rows.append(
            (
                node.node_id,
                services.coordinator.status_of(node.node_id).value,
                node.tier.value,
                stake.status.value if stake is not None else "none",
                f"{stake.capacity_sat:,} / {stake.required_sats:,} sat" if stake else "-",
                _ago(now, node.last_heartbeat),
                node.total_tasks_completed,
                f"{node.total_sats_earned:,} sat",
            )
        )
    return _table(
        ("node", "state", "tier", "stake", "stake capacity / required", "last heartbeat",
         "tasks", "earned"),
        rows,
        "no node has registered yet",
    )


def _recent_payments(services: ApiServices, limit: int) -> list[RewardPayment]:
    """The latest payments: each node's rewards, whatever their state, and every payment settled
    in the last hour, which adds bounties, contribution rewards and data-credit payouts paid to
    Lightning nodes that are not registered OWM nodes (SRS-LN-08)."""
    repositories = services.repositories
    found: dict[str, RewardPayment] = {}
    for node in repositories.nodes.list():
        found.update((p.payment_id, p) for p in repositories.payments.for_node(node.node_id, limit))
    since = services.clock.now() - RECENT_SETTLED_S
    found.update((p.payment_id, p) for p in repositories.payments.settled_since(since))
    payments = sorted(found.values(), key=lambda p: (p.updated_at, p.payment_id), reverse=True)
    return payments[:limit]


def tasks_fragment(services: ApiServices) -> str:
    """Tasks in progress, then the latest paid ones (found through their reward payments)."""
    repositories = services.repositories
    shown: list[Task] = []
    for state in _IN_PROGRESS:
        shown.extend(repositories.tasks.with_state(state, MAX_ROWS))
    seen = {task.task_id for task in shown}
    for payment in _recent_payments(services, MAX_ROWS):
        if len(shown) >= MAX_ROWS:
            break
        task = repositories.tasks.get(payment.task_id)
        if task is not None and task.task_id not in seen:
            seen.add(task.task_id)
            shown.append(task)
    rows = [
        (
            task.task_id,
            task.request.task_type,
            task.state.value,
            task.node_id or "-",
            _sat(task.price_msat),
        )
        for task in shown[:MAX_ROWS]
    ]
    return _table(("task", "type", "state", "node", "price"), rows, "no tasks yet")


def fl_fragment(services: ApiServices) -> str:
    """Federated-learning rounds, newest first: who took part, who was rejected or flagged,
    the new model's accuracy on the held-out set and the version the round produced."""
    now = services.clock.now()
    rows = [
        (
            r.number,
            r.sub_model,
            r.state.value,
            r.rule,
            r.participants,
            len(r.accepted),
            len(r.rejected),
            len(r.flagged),
            "-" if r.accuracy_ppm is None else f"{r.accuracy_ppm / 10_000:.1f} %",
            r.version_id or (r.failure[:60] if r.failure else "-"),
            _ago(now, r.started_at),
        )
        for r in services.repositories.fl_rounds.rounds(MAX_ROWS)
    ]
    return _table(
        ("round", "sub-model", "state", "rule", "updates", "accepted", "rejected", "flagged",
         "accuracy", "version", "started"),
        rows,
        "no FL round yet",
    )


def payments_fragment(services: ApiServices) -> str:
    """The latest reward payments over Lightning (SRS-LN-04/05), newest first."""
    now = services.clock.now()
    rows = [
        (
            p.node_id,
            p.task_id,
            _sat(p.amount_msat),
            p.state.value,
            p.attempts,
            _short(p.payment_hash, 16),
            _ago(now, p.updated_at),
        )
        for p in _recent_payments(services, MAX_ROWS)
    ]
    return _table(
        ("node", "task", "amount", "state", "attempts", "payment hash", "updated"),
        rows,
        "no reward payments yet",
    )


def versions_fragment(services: ApiServices) -> str:
    """Model versions and the status of their OpenTimestamps proofs (SRS-NODE-10)."""
    now = services.clock.now()
    rows = [
        (
            r.release_id,
            _short(r.version.digest, 16),
            r.proof_status.value,
            _ago(now, r.version.created_at),
            _ago(now, r.checked_at),
        )
        for r in list(services.releases.releases())[:MAX_ROWS]
    ]
    return _table(
        ("version", "digest", "proof", "created", "proof checked"), rows, "no model version yet"
    )


def slashing_fragment(services: ApiServices) -> str:
    """The public slashing log, newest entry first (SRS-STAKE-06)."""
    entries = list(services.repositories.slashing_log.entries(0, None))[-MAX_ROWS:]
    now = services.clock.now()
    rows = [
        (e.index, e.node_id, e.reason.value, e.channel_id, _short(e.evidence_hash, 16),
         _ago(now, e.at))
        if isinstance(e, SlashingLogEntry)
        else (e.index, e.node_id, f"reversal of #{e.reverses}", e.channel_id,
              _short(e.statement_hash, 16), _ago(now, e.at))
        for e in reversed(entries)
    ]
    return _table(
        ("#", "node", "reason", "channel", "evidence", "when"), rows, "nobody has been slashed"
    )


PANELS: dict[str, tuple[str, Callable[[ApiServices], str]]] = {
    "summary": ("Network", summary_fragment),
    **CHART_PANELS,
    "nodes": ("Nodes and stakes", nodes_fragment),
    "tasks": ("Recent tasks", tasks_fragment),
    "fl": ("FL rounds", fl_fragment),
    "payments": ("Payments", payments_fragment),
    "versions": ("Model versions", versions_fragment),
    "slashing": ("Slashing log", slashing_fragment),
}

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4rem;margin:0 0 .2rem}
header p{margin:0 0 1rem;color:#555}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;
margin-bottom:1rem}
h2{font-size:1.05rem;margin:.2rem 0 .5rem}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.2rem .6rem .2rem 0;border-bottom:1px solid #eee;
white-space:nowrap;max-width:22rem;overflow:hidden;text-overflow:ellipsis}
th{color:#555;font-weight:600}
dl{display:grid;grid-template-columns:max-content auto;gap:.15rem 1rem;margin:0}
dt{color:#555}dd{margin:0}
.empty{color:#777;margin:.2rem 0}
"""


def panel_section(base: str, name: str, title: str, refresh: str) -> str:
    """A panel's section of a page at ``base``: htmx fills it from ``base/fragments/name`` on
    load and ``refresh`` after that."""
    return (
        f'<section id="{name}"><h2>{_e(title)}</h2>'
        f'<div class="panel" hx-get="{base}/fragments/{name}" '
        f'hx-trigger="load, {refresh}" hx-swap="innerHTML">'
        '<p class="empty">loading…</p></div></section>'
    )


def htmx_document(
    title: str, script: str, style: str, body: str, htmx_config: str = _HTMX_CONFIG
) -> str:
    """A whole HTML page: ``title`` (escaped), ``style`` inline, htmx from ``script`` (this
    server's copy, :func:`htmx_route`) configured by ``htmx_config``, and ``body``."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<meta name=\"htmx-config\" content='{htmx_config}'>"
        f"<title>{_e(title)}</title><style>{style}</style>"
        f'<script src="{script}"></script></head><body>{body}</body></html>'
    )


def page() -> str:
    """The dashboard page: a section per panel, each filled and refreshed by htmx; the chart
    panels side by side in a grid after the network totals."""
    charts = "".join(
        panel_section("/dashboard", name, title, CHART_REFRESH)
        for name, (title, _) in CHART_PANELS.items()
    )
    sections = "".join(
        panel_section("/dashboard", name, title, REFRESH)
        + (f'<div class="charts">{charts}</div>' if name == "summary" else "")
        for name, (title, _render) in PANELS.items()
        if name not in CHART_PANELS
    )
    return htmx_document(
        "OWM coordinator dashboard",
        "/dashboard/static/htmx.min.js",
        _STYLE + CHART_STYLE,
        "<header><h1>OWM coordinator</h1><p>Live view of this coordinator's store; the charts "
        "refresh every 10 s, every other panel every 2 s.</p></header>"
        f"<main>{sections}</main>",
    )


def fragment_endpoint(
    services: ApiServices, panels: dict[str, tuple[str, Callable[[ApiServices], str]]]
) -> Callable[[Request], Response]:
    """``GET …/fragments/{panel}`` over ``panels``: each rendered at most once per cache period
    however many browsers poll it; an unknown panel is a 404 naming it (escaped); a panel that
    fails says so without blanking the others."""
    rendered = ReadCache(services.clock, services.config.cache_ttl_ms)

    def fragment(request: Request) -> Response:
        name = request.path_params["panel"]
        panel = panels.get(name)
        if panel is None:
            return HTMLResponse(
                f'<p class="empty">no panel {_e(name)}</p>', 404, headers=_SECURITY_HEADERS
            )
        started = time.monotonic()
        try:
            body = rendered.get(name, lambda: panel[1](services))
        except Exception:  # one broken panel must not blank the others
            log.exception("panel %s failed", name)
            body = '<p class="empty">this panel could not be read; see the coordinator log</p>'
        log.debug("panel %s rendered in %.1f ms", name, (time.monotonic() - started) * 1000)
        return HTMLResponse(body, headers=_SECURITY_HEADERS)

    return fragment


def htmx_route(path: str) -> Route:
    """``GET path``: the vendored htmx, cacheable for a day."""
    script = (STATIC_DIR / "htmx.min.js").read_bytes()

    def htmx(_request: Request) -> Response:
        return Response(
            script,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    return Route(path, htmx, methods=["GET"])


def panel_routes(
    services: ApiServices,
    base: str,
    page_html: str,
    panels: dict[str, tuple[str, Callable[[ApiServices], str]]],
    *also: str,
) -> list[BaseRoute]:
    """A page of panels: ``GET base`` (and each path in ``also``) the page, its fragments
    below ``base/fragments/`` and its copy of htmx. Plain routes, not a Mount: mounts are the
    API's versions (/v1, a future /v2)."""

    def index(_request: Request) -> Response:
        return HTMLResponse(page_html, headers=_SECURITY_HEADERS)

    return [
        *(Route(path, index, methods=["GET"]) for path in (base, *also)),
        Route(f"{base}/fragments/{{panel}}", fragment_endpoint(services, panels), methods=["GET"]),
        htmx_route(f"{base}/static/htmx.min.js"),
    ]


def routes(services: ApiServices) -> list[BaseRoute]:
    """The dashboard's routes: the page at ``/dashboard`` and its fragments and script below."""
    return panel_routes(services, "/dashboard", page(), PANELS, "/dashboard/")
