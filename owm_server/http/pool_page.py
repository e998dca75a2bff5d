"""The mining pool's public page at ``/pool`` (SRS-POOL-10): plain HTML, htmx and SVG charts.

The page shows the pool's hashrate over the last hour and day, the miners active in the last
24 hours with each one's hashrate, blocks found in 30 days, the current share and network
difficulty, the FPPS rate (what one share earns its miner now), and the latest payouts — with
three charts of the last 24 hours, hour by hour: hashrate, shares accepted, sat paid. Every
figure comes from :meth:`~owm_adapters.services.api.views.Views.pool_page`, i.e. the shares the
pool stored and the payouts it recorded; the charts are drawn on the server by
:mod:`owm_server.http.charts`. Like the dashboard (:mod:`owm_server.http.dashboard`) the page
holds no data: each panel asks for its fragment (``GET /pool/fragments/<panel>``) on load and
every ten seconds. Unlike the dashboard it is public: it shows what ``GET /v1/mining/stats``
and ``GET /v1/mining/payouts`` already publish, and no per-node earnings beyond those payouts.
The current difficulty and FPPS rate need the pool running in this process (``[pool]``);
otherwise the page says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Literal

from starlette.routing import BaseRoute

from owm_adapters.services.api import ApiServices, PoolPage
from owm_core.pool.stats import HOUR_S
from owm_server.http.charts import Chart, Series, render
from owm_server.http.dashboard import _STYLE as STYLE
from owm_server.http.dashboard import (
    _ago,
    _dl,
    _table,
    htmx_document,
    panel_routes,
    panel_section,
)
from owm_server.http.dashboard_charts import CHART_STYLE

REFRESH = "every 10s"
UNITS = ("H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s")


def hashrate(hps: int) -> str:
    """``hps`` hashes per second in the largest unit that keeps it ≥ 1 (``12.3 GH/s``)."""
    value, unit = float(hps), 0
    while value >= 1000 and unit < len(UNITS) - 1:
        value, unit = value / 1000, unit + 1
    return f"{value:,.0f} {UNITS[unit]}" if unit == 0 else f"{value:,.1f} {UNITS[unit]}"


def _msat(msat: Fraction) -> str:
    """An exact msat amount in sat to the msat, or in msat below one sat."""
    if msat >= 1000:
        return f"{float(msat) / 1000:,.3f} sat"
    return f"{float(msat):.6g} msat"


def _work_items(page: PoolPage) -> list[tuple[str, str]]:
    if page.work is None:
        return [("current difficulty", "the pool is not running in this process")]
    rate = page.work.fpps_msat_per_share
    return [
        ("share difficulty", f"{page.work.share_difficulty:,}"),
        ("network difficulty", f"{float(page.work.network_difficulty):,.6g}"),
        ("block height", f"{page.work.height:,}"),
        ("FPPS rate", f"{_msat(rate)} per share (after the treasury's 20 %)"),
    ]


def summary_fragment(services: ApiServices) -> str:
    """The pool's figures and the active miners."""
    page = services.views.pool_page()
    stats = page.pool
    items = [
        ("hashrate, last hour", hashrate(stats.hashrate_1h_hps)),
        ("hashrate, last 24 h", hashrate(stats.hashrate_24h_hps)),
        ("miners, last 24 h", f"{stats.miners_24h}"),
        ("shares, last 24 h", f"{stats.shares_24h:,}"),
        ("blocks found, last 30 days", f"{stats.blocks_30d}"),
        *_work_items(page),
        ("paid to miners and treasury", f"{stats.paid_sat_total:,} sat"),
    ]
    figures = _dl(items)
    miners = _table(
        ("miner", "hashrate, last hour"),
        [(m, hashrate(hps)) for m, hps in page.hashrate_by_miner_1h.items()],
        "no miner submitted a share in the last hour",
    )
    return figures + "<h3>Miners</h3>" + miners


def _labels(now: int, hours: int) -> list[str]:
    return [time.strftime("%H:00", time.gmtime(now - (hours - i) * HOUR_S + 1))
            for i in range(hours)]  # fmt: skip


_Spec = tuple[str, str, str, str, Sequence[int], str, Literal["line", "bar"], str]
"""A chart of the page: id, title, what it counts, series, values, unit, kind, empty text."""


def charts_fragment(services: ApiServices) -> str:
    """Hashrate, shares and sat paid in each of the last 24 hours."""
    page = services.views.pool_page()
    labels = _labels(page.pool.at, len(page.hourly_hashrate_hps))
    no_share = "no share in the last 24 h"
    charts: tuple[_Spec, ...] = (
        ("chart-pool-hashrate", "Pool hashrate", "The pool's hashrate, from its shares,",
         "hashrate", page.hourly_hashrate_hps, "H/s", "line", no_share),
        ("chart-pool-shares", "Shares accepted", "Shares the pool accepted", "shares",
         page.hourly_shares, "shares", "bar", no_share),
        ("chart-pool-payouts", "Payouts", "Sat the pool paid over Lightning", "paid",
         page.hourly_paid_sat, "sat", "bar", "nothing paid in the last 24 h"),
    )  # fmt: skip
    return "".join(
        render(Chart(chart_id, title, f"{what} in each of the last 24 hours (UTC).", labels,
                     [Series(label, values)], unit=unit, kind=kind, empty=empty))
        for chart_id, title, what, label, values, unit, kind, empty in charts
    )  # fmt: skip


def payouts_fragment(services: ApiServices) -> str:
    """The latest payouts, newest first; the treasury's cut has no miner."""
    page = services.views.pool_page()
    rows = [
        (p.miner_id or "treasury (20 %)", f"{p.amount_sat:,} sat", p.payment_hash,
         _ago(page.pool.at, p.paid_at))
        for p in page.recent_payouts
    ]  # fmt: skip
    return _table(("paid to", "amount", "payment hash", "paid"), rows, "no payout yet")


PANELS: dict[str, tuple[str, Callable[[ApiServices], str]]] = {
    "summary": ("Pool", summary_fragment),
    "charts": ("The last 24 hours", charts_fragment),
    "payouts": ("Recent payouts", payouts_fragment),
}
"""The page's panels, in order: name → (heading, fragment)."""

_STYLE = STYLE + "h3{font-size:.95rem;margin:.8rem 0 .3rem}"


def page() -> str:
    """The pool page: a section per panel, each filled and refreshed by htmx."""
    sections = "".join(
        panel_section("/pool", name, title, REFRESH) for name, (title, _) in PANELS.items()
    )
    return htmx_document(
        "OWM mining pool",
        "/pool/static/htmx.min.js",
        _STYLE + CHART_STYLE,
        "<header><h1>OWM mining pool</h1>"
        "<p>Stratum V2, FPPS paid over Lightning; refreshed every 10 s.</p></header>"
        f"<main>{sections}</main>",
    )


def routes(services: ApiServices) -> list[BaseRoute]:
    """``/pool``, its fragments and its copy of htmx (the dashboard's is private)."""
    return panel_routes(services, "/pool", page(), PANELS)
