"""Charts as server-rendered SVG: line and bar charts with axes, a legend and tooltips.

The dashboard draws its charts on the server, like the rest of its HTML: no chart library and
no script — the browser only swaps the fragment in. A :class:`Chart` is one or more
:class:`Series` of values over shared x labels (time buckets, FL rounds); :func:`render` gives
an ``<svg>`` element with

* ``role="img"``, a ``<title>`` and a ``<desc>`` (what screen readers announce),
* a y axis from 0 (or the lowest value, if negative) to a round number above the highest,
  with four gridlines and their values, and at most eight x labels,
* one element of class ``point`` per value — a ``<circle>`` on a line, a ``<rect>`` in a bar
  chart — each with a ``<title>`` (the browser's tooltip: series, x label, value and unit);
  a missing value (None, NaN) draws nothing and breaks the line,
* ``data-points``: how many points were drawn, so tests (and people) can count them.

A chart whose values are all missing — or all zero, for counts (``zeros_are_empty``), where
zero means nothing happened — is not drawn: an honest "no data yet" sentence (``Chart.empty``)
says so instead of an empty grid. Every text is XML-escaped (characters XML
cannot hold are dropped); every
coordinate lies inside the ``viewBox``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

WIDTH = 640
HEIGHT = 230
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 30, 34
"""Margins around the plot area: y labels left, legend on top, x labels below."""
MAX_X_LABELS = 8
MAX_BAR_GROUP = 48
"""Widest group of bars at one x label (a chart of one round stays a bar, not a wall)."""
LEGEND_CHARS = 28
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#d97706")
"""One colour per series, in order (distinguishable, and readable on white)."""


def _values(values: Iterable[float | None]) -> tuple[float | None, ...]:
    return tuple(values)


def _texts(texts: Iterable[str]) -> tuple[str, ...]:
    return tuple(texts)


@attrs.frozen
class Series:
    """One named line or set of bars: a value (or None) per x label."""

    label: str
    values: tuple[float | None, ...] = attrs.field(converter=_values)


def _series(series: Iterable[Series]) -> tuple[Series, ...]:
    return tuple(series)


@attrs.frozen
class Chart:
    """What :func:`render` draws; ``chart_id`` names its elements' ids (unique on a page)."""

    chart_id: str
    title: str
    description: str
    x_labels: tuple[str, ...] = attrs.field(converter=_texts)
    series: tuple[Series, ...] = attrs.field(converter=_series)
    unit: str = ""
    kind: Literal["line", "bar"] = "line"
    empty: str = "no data yet"
    zeros_are_empty: bool = True

    def __attrs_post_init__(self) -> None:
        for s in self.series:
            if len(s.values) != len(self.x_labels):
                raise ValueError(f"series {s.label!r} has {len(s.values)} values for "
                                 f"{len(self.x_labels)} x labels")


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot hold (controls, surrogates): dropped from any text."""


def _e(value: object) -> str:
    return html.escape(_NOT_XML.sub("", str(value)), quote=True)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _nice(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value`` (> 0)."""
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        nice = step * 10.0**exponent
        if nice >= value:
            return nice
    return max(value, 10.0 ** min(exponent + 1, 300))


def _top(value: float, whole: bool) -> float:
    """The axis' end at or above ``value`` ≥ 0: a round number, or for whole numbers four
    times a whole step (so the four gridlines fall on whole numbers)."""
    if value <= 0:
        return 0.0
    if not whole:
        return _nice(value)
    return 4 * float(math.ceil(max(1.0, _nice(value / 4))))


def _number(value: float) -> str:
    """A short label: integers as such (with thousands separators), others to 3 digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) >= 1e-3 else f"{value:.1e}"


@attrs.frozen
class _Scale:
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float], n: int) -> _Scale:
        whole = all(float(v).is_integer() for v in values)  # counts: whole-number gridlines
        hi = _top(max(0.0, *values), whole)
        lo = -_top(-min(0.0, *values), whole)
        if hi == lo:
            hi = lo + (4.0 if whole else 1.0)
        return cls(lo, hi, n)

    def y(self, value: float) -> float:
        plot = HEIGHT - TOP - BOTTOM
        return round(TOP + plot * (self.hi - value) / (self.hi - self.lo), 1)

    def band(self) -> float:
        return (WIDTH - LEFT - RIGHT) / self.n

    def x(self, i: int) -> float:
        return round(LEFT + (i + 0.5) * self.band(), 1)


def _axes(chart: Chart, scale: _Scale) -> list[str]:
    parts = []
    for k in range(5):
        value = scale.lo + (scale.hi - scale.lo) * k / 4
        y = scale.y(value)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4}" text-anchor="end">'
                     f"{_e(_number(value))}</text>")
    step = max(1, math.ceil(len(chart.x_labels) / MAX_X_LABELS))
    for i, label in enumerate(chart.x_labels):
        if i % step == 0:
            parts.append(f'<text class="tick" x="{scale.x(i)}" y="{HEIGHT - BOTTOM + 16}" '
                         f'text-anchor="middle">{_e(label)}</text>')
    if chart.unit:
        parts.append(f'<text class="unit" x="4" y="{TOP - 12}">{_e(chart.unit)}</text>')
    return parts


def _legend(chart: Chart) -> list[str]:
    parts, x = [], LEFT + 40
    for n, s in enumerate(chart.series):
        label = s.label if len(s.label) <= LEGEND_CHARS else s.label[: LEGEND_CHARS - 1] + "…"
        if x + 24 + 7 * len(label) > WIDTH:  # no room left: the tooltips still name it
            break
        color = COLORS[n % len(COLORS)]
        parts.append(f'<rect x="{x}" y="{TOP - 22}" width="10" height="10" fill="{color}"/>'
                     f'<text class="legend" x="{x + 14}" y="{TOP - 13}">{_e(label)}</text>')
        x += 24 + 7 * len(label)
    return parts


def _tip(chart: Chart, s: Series, i: int, value: float) -> str:
    unit = f" {chart.unit}" if chart.unit else ""
    return f"<title>{_e(s.label)}, {_e(chart.x_labels[i])}: {_e(_number(value))}{_e(unit)}</title>"


def _line(chart: Chart, n: int, s: Series, scale: _Scale) -> tuple[list[str], int]:
    color = COLORS[n % len(COLORS)]
    path, points, pen_down = [], [], False
    for i, raw in enumerate(s.values):
        value = _finite(raw)
        if value is None:
            pen_down = False
            continue
        x, y = scale.x(i), scale.y(value)
        path.append(f"{'L' if pen_down else 'M'}{x},{y}")
        pen_down = True
        points.append(f'<circle class="point" data-series="{n}" cx="{x}" cy="{y}" r="3" '
                      f'fill="{color}">{_tip(chart, s, i, value)}</circle>')
    line = (f'<path class="line" d="{" ".join(path)}" fill="none" stroke="{color}" '
            f'stroke-width="2"/>') if path else ""
    return [line, *points], len(points)


def _bars(chart: Chart, n: int, s: Series, scale: _Scale) -> tuple[list[str], int]:
    color = COLORS[n % len(COLORS)]
    group = min(scale.band() * 0.8, MAX_BAR_GROUP)
    width = round(group / len(chart.series), 1)
    zero = scale.y(0.0)
    bars = []
    for i, raw in enumerate(s.values):
        value = _finite(raw)
        if value is None:
            continue
        x = round(scale.x(i) - group / 2 + n * width, 1)
        y = scale.y(value)
        top, height = min(y, zero), round(abs(zero - y), 1)
        bars.append(f'<rect class="point" data-series="{n}" x="{x}" y="{top}" width="{width}" '
                    f'height="{height}" fill="{color}">{_tip(chart, s, i, value)}</rect>')
    return bars, len(bars)


def has_data(chart: Chart) -> bool:
    """Whether any value is present (and, where ``zeros_are_empty``, not zero); otherwise the
    chart says ``empty``."""
    present = [v for s in chart.series for v in map(_finite, s.values) if v is not None]
    return any(present) if chart.zeros_are_empty else bool(present)


def render(chart: Chart) -> str:
    """The chart as an ``<svg>`` element (see the module docstring), or its ``empty`` text."""
    cid = _e(chart.chart_id)
    if not has_data(chart):
        return f'<p class="empty chart-empty" data-chart="{cid}">{_e(chart.empty)}</p>'
    values = [v for s in chart.series for v in map(_finite, s.values) if v is not None]
    scale = _Scale.of(values, len(chart.x_labels))
    body, count = _axes(chart, scale), 0
    for n, s in enumerate(chart.series):
        drawn, k = (_bars if chart.kind == "bar" else _line)(chart, n, s, scale)
        body.extend(drawn)
        count += k
    body.extend(_legend(chart))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{cid}-title {cid}-desc" data-points="{count}">'
        f'<title id="{cid}-title">{_e(chart.title)}</title>'
        f'<desc id="{cid}-desc">{_e(chart.description)}</desc>'
        + "".join(body)
        + "</svg>"
    )
