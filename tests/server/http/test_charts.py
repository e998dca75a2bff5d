"""The dashboard's SVG charts: valid XML for any series, one point per value, every point
inside the drawing, an accessible title and description, and an honest empty state."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_server.http.charts import HEIGHT, WIDTH, Chart, Series, render

SVG = "{http://www.w3.org/2000/svg}"

values = st.one_of(
    st.none(),
    st.integers(-10**12, 10**12),
    st.floats(-1e12, 1e12),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
text = st.text(max_size=40)
"""Any text, control characters and lone surrogates included (the renderer drops them)."""
printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)


@st.composite
def charts(draw: st.DrawFn) -> Chart:
    n = draw(st.integers(1, 60))
    series = draw(st.lists(
        st.builds(Series, text, st.lists(values, min_size=n, max_size=n)), min_size=1, max_size=5
    ))  # fmt: skip
    return Chart(
        chart_id=draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)),
        title=draw(printable), description=draw(printable),
        x_labels=draw(st.lists(text, min_size=n, max_size=n)), series=series,
        unit=draw(text), kind=draw(st.sampled_from(["line", "bar"])),
        zeros_are_empty=draw(st.booleans()),
    )  # fmt: skip


def _present(chart: Chart) -> int:
    return sum(1 for s in chart.series for v in s.values if v is not None and math.isfinite(v))


@given(charts())
def test_any_chart_is_valid_xml_with_a_point_per_value_inside_its_view_box(chart: Chart) -> None:
    drawn = render(chart)
    root = ET.fromstring(drawn)  # well-formed, whatever the labels hold
    present = [v for s in chart.series for v in s.values if v is not None and math.isfinite(v)]
    if not (any(present) if chart.zeros_are_empty else present):
        assert root.tag == "p" and root.get("class") == "empty chart-empty"
        return
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox") == f"0 0 {WIDTH} {HEIGHT}"
    points = [e for e in root.iter() if e.get("class") == "point"]
    assert len(points) == _present(chart) == int(root.get("data-points", "-1"))
    for point in points:
        if point.tag == f"{SVG}circle":
            x, y = float(point.get("cx", "nan")), float(point.get("cy", "nan"))
            assert 0 <= x <= WIDTH and 0 <= y <= HEIGHT
        else:
            x, y = float(point.get("x", "nan")), float(point.get("y", "nan"))
            w, h = float(point.get("width", "nan")), float(point.get("height", "nan"))
            assert x >= 0 and x + w <= WIDTH + 0.2 and y >= 0 and y + h <= HEIGHT
        assert point.find(f"{SVG}title") is not None  # the tooltip
    assert root.find(f"{SVG}title").text == (chart.title or None)
    assert root.find(f"{SVG}desc").text == (chart.description or None)


def test_a_line_chart_draws_a_circle_per_value_and_breaks_the_line_at_a_gap() -> None:
    chart = Chart("latency", "Payment latency", "seconds from owed to paid", ["10:00", "10:05",
                  "10:10", "10:15"], [Series("median", [3, None, 5, 4])], unit="s")  # fmt: skip
    root = ET.fromstring(render(chart))
    circles = root.findall(f"{SVG}circle")
    assert len(circles) == 3
    assert circles[0].find(f"{SVG}title").text == "median, 10:00: 3 s"
    path = root.find(f"{SVG}path").get("d")
    assert path.count("M") == 2 and path.count("L") == 1  # 3 | 5 - 4
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "latency-title latency-desc"


def test_a_bar_chart_draws_a_bar_per_value_side_by_side_and_taller_for_more() -> None:
    chart = Chart("pay", "Payments", "per 5 min", ["a", "b"],
                  [Series("succeeded", [4, 2]), Series("failed", [0, 1])], kind="bar")
    root = ET.fromstring(render(chart))
    bars = [r for r in root.findall(f"{SVG}rect") if r.get("class") == "point"]
    assert len(bars) == 4
    heights = {(b.get("data-series"), b.find(f"{SVG}title").text): float(b.get("height"))
               for b in bars}  # fmt: skip
    assert heights[("0", "succeeded, a: 4")] > heights[("0", "succeeded, b: 2")] > 0
    assert heights[("1", "failed, a: 0")] == 0
    legend = [t.text for t in root.findall(f"{SVG}text") if t.get("class") == "legend"]
    assert legend == ["succeeded", "failed"]


def test_labels_and_titles_are_escaped() -> None:
    chart = Chart("x", "<script>", "a & b", ["<b>"], [Series('"quoted"', [1])])
    drawn = render(chart)
    assert "<script>" not in drawn and "<b>" not in drawn
    assert "&lt;script&gt;" in drawn and "a &amp; b" in drawn and "&quot;quoted&quot;" in drawn


@pytest.mark.parametrize("values", [[], [None, None], [0, 0, 0], [float("nan")]])
def test_a_chart_without_data_says_so_instead_of_drawing_an_empty_grid(values) -> None:
    chart = Chart("hb", "Heartbeats", "per 5 min", ["t"] * len(values), [Series("hb", values)],
                  empty="no heartbeats in the last 3 h")
    assert render(chart) == (
        '<p class="empty chart-empty" data-chart="hb">no heartbeats in the last 3 h</p>'
    )


def test_zero_latencies_are_data_and_drawn_where_zero_counts_would_mean_nothing_happened() -> None:
    chart = Chart("lat", "Latency", "s", ["a", "b"], [Series("median", [0, None])], unit="s",
                  zeros_are_empty=False)
    root = ET.fromstring(render(chart))
    assert root.get("data-points") == "1"


def test_a_series_must_have_a_value_per_label() -> None:
    with pytest.raises(ValueError, match="2 values for 3 x labels"):
        Chart("c", "t", "d", ["a", "b", "c"], [Series("s", [1, 2])])
