"""The dashboard's chart panels: the coordinator's last hours as SVG, rendered on the server.

Five panels, each a fragment the page asks for like the table panels
(:mod:`owm_server.http.dashboard`): nodes online and heartbeats, payments and earnings,
payment latency (owed to paid), FL accuracy and flagged updates per round, and stake and
slashing events. The series come from :class:`~owm_adapters.services.api.history.History`
(three hours in five-minute buckets, UTC; the latest FL rounds); the drawing from
:mod:`owm_server.http.charts`. A chart with nothing to show says so in words.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from owm_adapters.services.api import ApiServices
from owm_adapters.services.api.history import BUCKET_S, BUCKETS, RECORDS_MAX, ROUNDS_MAX
from owm_core.coordination.history import Window
from owm_server.http.charts import Chart, Series, render

CHART_REFRESH = "every 10s"
"""How often each chart panel asks for its fragment again (its buckets are minutes wide)."""
SPAN = f"the last {BUCKETS * BUCKET_S // 3600} h"
PER = f"per {BUCKET_S // 60} min"


def _labels(window: Window) -> list[str]:
    return [time.strftime("%H:%M", time.gmtime(start)) for start in window.starts()]


def _cut(cut: bool) -> str:
    if not cut:
        return ""
    return (f'<p class="note">more than {RECORDS_MAX:,} records in {SPAN}: the chart shows the '
            "earliest of them only</p>")


def activity_fragment(services: ApiServices) -> str:
    """Nodes that sent a heartbeat, and heartbeats received, per bucket."""
    window, seen = services.history.activity()
    labels = _labels(window)
    online = Chart(
        "chart-online", "Nodes online",
        f"Nodes that sent at least one heartbeat, {PER}, over {SPAN} (UTC).",
        labels, [Series("nodes online", seen.online)], unit="nodes",
        empty=f"no node sent a heartbeat in {SPAN}",
    )  # fmt: skip
    beats = Chart(
        "chart-heartbeats", "Heartbeats", f"Heartbeats received {PER} over {SPAN} (UTC).",
        labels, [Series("heartbeats", seen.heartbeats)], unit="heartbeats", kind="bar",
        empty=f"no heartbeat in {SPAN}",
    )  # fmt: skip
    return render(online) + render(beats)


def payment_flow_fragment(services: ApiServices) -> str:
    """Succeeded and failed payment attempts, and sat earned by nodes, per bucket."""
    window, flow, cut = services.history.payments()
    labels = _labels(window)
    attempts = Chart(
        "chart-payments", "Payments",
        f"Reward payment attempts that succeeded and that failed, {PER}, over {SPAN} (UTC).",
        labels, [Series("succeeded", flow.succeeded), Series("failed", flow.failed)],
        unit="payments", kind="bar", empty=f"no payment attempt in {SPAN}",
    )  # fmt: skip
    earned = Chart(
        "chart-earnings", "Earnings", f"Sat paid to nodes {PER} over {SPAN} (UTC).",
        labels, [Series("paid to nodes", flow.earned_sat)], unit="sat", kind="bar",
        empty=f"nothing paid out in {SPAN}",
    )  # fmt: skip
    return render(attempts) + render(earned) + _cut(cut)


def latency_fragment(services: ApiServices) -> str:
    """Median and longest time from a reward being owed to its payment arriving."""
    window, waits, cut = services.history.latency()
    chart = Chart(
        "chart-latency", "Payment latency",
        f"Seconds from a reward being owed to its payment arriving: median and longest of the "
        f"payments settled {PER}, over {SPAN} (UTC).",
        _labels(window), [Series("median", waits.median_s), Series("longest", waits.max_s)],
        unit="s", empty=f"no payment settled in {SPAN}", zeros_are_empty=False,
    )  # fmt: skip
    return render(chart) + _cut(cut)


def fl_quality_fragment(services: ApiServices) -> str:
    """Held-out accuracy and flagged updates of the latest FL rounds."""
    quality = services.history.rounds()
    labels = [f"#{n}" for n in quality.numbers]
    accuracy = Chart(
        "chart-fl-accuracy", "FL accuracy",
        f"Accuracy of each round's new model on the held-out set, latest {ROUNDS_MAX} rounds.",
        labels, [Series("accuracy", quality.accuracy_pct)], unit="%",
        empty="no FL round has measured an accuracy yet", zeros_are_empty=False,
    )  # fmt: skip
    flagged = Chart(
        "chart-fl-flagged", "Flagged updates",
        f"Updates the anomaly check flagged in each round, latest {ROUNDS_MAX} rounds.",
        labels, [Series("flagged", quality.flagged)], unit="updates", kind="bar",
        empty="no FL round yet" if not labels else "no update flagged in these rounds",
    )  # fmt: skip
    return render(accuracy) + render(flagged)


def stake_fragment(services: ApiServices) -> str:
    """Stakes that became active, degraded or suspended, and slashings, per bucket."""
    window, events = services.history.stake()
    chart = Chart(
        "chart-stake", "Stake and slashing events",
        f"Stakes that became active, degraded or suspended, and entries of the public slashing "
        f"log, {PER}, over {SPAN} (UTC).",
        _labels(window), [Series(name, values) for name, values in events.items()],
        unit="events", kind="bar", empty=f"no stake change and no slashing in {SPAN}",
    )  # fmt: skip
    return render(chart)


CHART_PANELS: dict[str, tuple[str, Callable[[ApiServices], str]]] = {
    "activity": ("Nodes online and heartbeats", activity_fragment),
    "payment-flow": ("Payments and earnings", payment_flow_fragment),
    "latency": ("Payment latency", latency_fragment),
    "fl-quality": ("FL accuracy and flagged updates", fl_quality_fragment),
    "stake-events": ("Stake and slashing events", stake_fragment),
}
"""The chart panels, in page order: name → (heading, fragment)."""

CHART_STYLE = """
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(26rem,1fr));gap:1rem;
margin-bottom:1rem}
.charts section{margin:0}
svg.chart{display:block;width:100%;height:auto;margin:.2rem 0 .6rem}
svg.chart .grid{stroke:#e5e5e5;stroke-width:1}
svg.chart text{font:11px system-ui,sans-serif;fill:#555}
svg.chart text.legend{font-size:12px;fill:#1d1d1f}
svg.chart circle.point:hover,svg.chart rect.point:hover{opacity:.7}
.note{color:#92400e;margin:.2rem 0}
"""
