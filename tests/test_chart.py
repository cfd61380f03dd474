"""The consumption chart is a pure function: any points give one well-formed SVG, bar for bar."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.web.chart import (
    HATCH_ID,
    PLOT_HEIGHT,
    TOP,
    ChartPoint,
    consumption_svg,
    number,
)

SVG = "{http://www.w3.org/2000/svg}"
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

values = st.one_of(
    st.none(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal(0), Decimal("-0"), Decimal("0.000"), Decimal("-12.5"),
                     Decimal("9E+999999"), Decimal("-9E+999999"), Decimal("1E-999999"),
                     Decimal("123456789012345678901234567890.123")]),
)
points = st.lists(st.builds(
    ChartPoint, label=st.text(max_size=80), value=values,
    kind=st.sampled_from(["actual", "estimated", "override", "other"]), note=st.text(max_size=40),
), max_size=40)


def bars(svg: ET.Element) -> list[ET.Element]:
    return [r for r in svg.iter(f"{SVG}rect") if r.get("class", "").startswith("chart-bar ")]


def as_xml_reads(text: str) -> str:
    """What an XML parser gives back for ``text``: no invalid characters, CR LF as LF."""
    return NOT_XML.sub("\ufffd", text).replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=150, deadline=None)
@given(points, st.text(max_size=10))
def test_any_points_give_a_well_formed_svg_with_one_bar_each(chart_points, unit):
    drawn = consumption_svg(chart_points, unit=unit)
    svg = ET.fromstring(drawn)  # well-formed, or this raises
    assert svg.tag == f"{SVG}svg"
    found = bars(svg)
    assert len(found) == len(chart_points)
    assert sum(b.get("data-kind") == "estimated" for b in found) == \
        sum(p.kind == "estimated" for p in chart_points)
    assert len(svg.findall(f".//{SVG}circle[@class='override-mark']")) == \
        sum(p.kind == "override" for p in chart_points)
    for bar in found:
        y, height = float(bar.get("y")), float(bar.get("height"))
        assert height >= 0 and y >= TOP - 3 and y + height <= TOP + PLOT_HEIGHT + 0.01
    groups = svg.findall(f"{SVG}g[@class='point']")
    for group, point in zip(groups, chart_points, strict=True):
        title = group.find(f"{SVG}title").text or ""
        assert title.startswith(as_xml_reads(point.label))  # every text escaped, none lost
    assert consumption_svg(chart_points, unit=unit) == drawn  # deterministic


@given(st.text(max_size=30))
def test_markup_in_a_label_is_text_not_markup(label):
    svg = ET.fromstring(consumption_svg([ChartPoint(f"<b>{label}</b>&", Decimal(1))]))
    assert svg.find(f".//{SVG}b") is None
    [title] = [t for t in svg.iter(f"{SVG}title") if "·" in (t.text or "")]
    assert title.text.startswith(as_xml_reads(f"<b>{label}</b>&"))


def test_estimates_are_hatched_overrides_marked_and_the_tallest_bar_fills_the_plot():
    svg = ET.fromstring(consumption_svg([
        ChartPoint("C1", Decimal("300")), ChartPoint("C2", Decimal("150"), "estimated"),
        ChartPoint("C3", Decimal("75"), "override"), ChartPoint("C4", None),
    ], unit="kWh"))
    first, estimated, override, unmeasured = bars(svg)
    assert estimated.get("fill") == f"url(#{HATCH_ID})" and estimated.get("stroke-dasharray")
    assert first.get("fill") != estimated.get("fill") != override.get("fill")
    assert svg.find(f".//{SVG}pattern[@id='{HATCH_ID}']") is not None
    assert float(first.get("height")) == PLOT_HEIGHT
    assert float(estimated.get("height")) == PLOT_HEIGHT / 2
    assert "unmeasured" in unmeasured.get("class") and unmeasured.get("fill") == "none"
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "use (kWh)" in texts and "billing cycle" in texts and "300" in texts
    assert {"actual read", "estimated", "override", "no use measured"} <= set(texts)  # legend
    titles = [t.text for t in svg.iter(f"{SVG}title")]
    assert "C2 · 150 kWh · estimated" in titles and "C4 · no use measured · actual" in titles


def test_negative_use_hangs_below_the_zero_line_and_no_points_say_so():
    svg = ET.fromstring(consumption_svg([ChartPoint("C1", Decimal("10")),
                                         ChartPoint("C2", Decimal("-10"))]))
    up, down = bars(svg)
    zero = float(svg.find(f".//{SVG}line[@class='zero']").get("y1"))
    assert float(up.get("y")) + float(up.get("height")) == zero == float(down.get("y"))
    empty = ET.fromstring(consumption_svg([]))
    assert bars(empty) == []
    assert "no billing reads yet" in [t.text for t in empty.iter(f"{SVG}text")]


def test_long_figures_are_shortened_for_people():
    assert number(Decimal("300.000")) == "300.000"
    assert number(Decimal("-0.0")) == "0"
    assert number(Decimal("9E+999999")) == "9.000000E+999999"
    assert number(Decimal("1E-999999")) == "1.000000E-999999"
