"""A meter's use per cycle as an inline SVG bar chart: no JavaScript, no chart library.

The page that shows a meter answers "was this cycle's use measured or made
up?" at a glance: measured use is a solid bar, an estimate is hatched with a
dashed outline, an operator's override is marked with a dot above its bar,
and a cycle whose use cannot be measured (the first read, or a register the
previous read lacks) is a dashed stub on the zero line. Every bar carries a
``<title>`` tooltip with the exact figure.

It is a pure function of its points: the same points give the same bytes
(no random ids, no clock), every text is escaped for XML (characters XML
cannot hold become U+FFFD), and any Decimal — zero, negative, huge, NaN
(drawn as unmeasured) — gives a well-formed document.

Example::

    svg = consumption_svg([ChartPoint("C2026-10", Decimal("300.5")),
                           ChartPoint("C2026-11", Decimal("310"), kind="estimated")],
                          unit="kWh")
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal

from protocols.scalars import format_decimal

ACTUAL, ESTIMATED, OVERRIDE, UNMEASURED = "actual", "estimated", "override", "unmeasured"
KINDS = (ACTUAL, ESTIMATED, OVERRIDE)

LEFT, RIGHT, TOP, BOTTOM = 72, 16, 40, 64
PLOT_HEIGHT = 180
STEP, BAR_WIDTH = 44, 28
MIN_WIDTH = 480
LABEL_CHARS = 12
HATCH_ID = "mh-chart-estimated-hatch"

STYLES = {
    ACTUAL: 'fill="#1f5fbf"',
    ESTIMATED: f'fill="url(#{HATCH_ID})" stroke="#7a4fb5" stroke-width="1.5" '
               'stroke-dasharray="4 2"',
    OVERRIDE: 'fill="#a86400"',
    UNMEASURED: 'fill="none" stroke="#5b6675" stroke-width="1" stroke-dasharray="2 2"',
}
"""How each kind of bar is drawn (attributes, so the SVG needs no stylesheet)."""
LEGEND = ((ACTUAL, "actual read"), (ESTIMATED, "estimated"), (OVERRIDE, "override"),
          (UNMEASURED, "no use measured"))

_WIDE = Context(prec=34, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""Room for any finite Decimal's difference: a chart never overflows."""
Scale = Callable[[Decimal], float]
"""A value's y coordinate in the plot."""
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class ChartPoint:
    """One cycle's bar: its label (the cycle), its use (None: not measured), its read's kind."""

    label: str
    value: Decimal | None
    kind: str = ACTUAL
    """actual, estimated or override (anything else is drawn as actual)."""
    note: str = ""
    """More for the tooltip: when it was read, how it was estimated."""


def text(value: str) -> str:
    """``value`` safe as XML character data or an attribute value."""
    return html.escape(_NOT_XML.sub("\ufffd", value), quote=True)


def number(value: Decimal) -> str:
    """A figure short enough for an axis or a tooltip: exact unless it is very long."""
    if value.is_zero():
        return "0"
    if -7 < value.adjusted() < 15:  # positional stays short: no million-digit strings
        exact = format_decimal(value)
        if len(exact) <= 18:
            return exact
    return f"{value:.6E}"


def _measured(value: Decimal | None) -> Decimal | None:
    return value if value is not None and value.is_finite() else None


def consumption_svg(points: Sequence[ChartPoint], *, unit: str = "",
                    title: str = "Use per billing cycle") -> str:
    """The SVG document (a string) of one bar per point, oldest first, left to right."""
    values = [v for v in (_measured(p.value) for p in points) if v is not None]
    top = max([Decimal(0), *values])
    bottom = min([Decimal(0), *values])
    span = _WIDE.subtract(top, bottom) or Decimal(1)

    def y(value: Decimal) -> float:
        return TOP + float(_WIDE.divide(_WIDE.subtract(top, value), span)) * PLOT_HEIGHT

    zero = y(Decimal(0))
    width = max(MIN_WIDTH, LEFT + STEP * len(points) + RIGHT)
    height = TOP + PLOT_HEIGHT + BOTTOM
    units = f" {text(unit)}" if unit else ""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="mh-chart-title" '
        f'class="chart" data-testid="consumption-chart" style="max-width:100%;height:auto" '
        f'font-family="system-ui, sans-serif" '
        f'font-size="11">',
        f'<title id="mh-chart-title">{text(title)}</title>',
        f'<defs><pattern id="{HATCH_ID}" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#efe7f8"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#7a4fb5" stroke-width="2"/></pattern></defs>',
    ]
    out.extend(_legend())
    out.extend(_axes(width, top, bottom, zero, y, units))
    if not points:
        out.append(f'<text class="empty" x="{(LEFT + width - RIGHT) / 2:.2f}" '
                   f'y="{TOP + PLOT_HEIGHT / 2:.2f}" text-anchor="middle" fill="#5b6675">'
                   'no billing reads yet</text>')
    for n, point in enumerate(points):
        out.extend(_bar(n, point, zero, y, units))
    out.append("</svg>")
    return "".join(out)


def _legend() -> list[str]:
    parts = ['<g class="legend">']
    x = 8
    for kind, label in LEGEND:
        parts.append(f'<rect class="swatch" data-kind="{kind}" x="{x}" y="10" width="12" '
                     f'height="12" {STYLES[kind]}/>'
                     f'<text x="{x + 16}" y="20">{text(label)}</text>')
        x += 24 + 7 * len(label)
    parts.append("</g>")
    return parts


def _axes(width: int, top: Decimal, bottom: Decimal, zero: float, y: Scale, units: str
          ) -> list[str]:
    right = width - RIGHT
    base = TOP + PLOT_HEIGHT
    parts = [
        '<g class="axes" stroke="#b8c0cc">',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/>',
        f'<line class="zero" x1="{LEFT}" y1="{zero:.2f}" x2="{right}" y2="{zero:.2f}" '
        'stroke="#5b6675"/>',
        "</g>",
    ]
    drawn: list[float] = []
    for value, at in ((Decimal(0), zero), (top, y(top)), (bottom, y(bottom))):
        if any(abs(at - other) < 12 for other in drawn):
            continue  # the labels would overlap: zero, or the extreme nearest it, says enough
        drawn.append(at)
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{at + 4:.2f}" text-anchor="end">'
                     f'{text(number(value))}</text>')
    middle = TOP + PLOT_HEIGHT / 2
    name = f"use ({units.strip()})" if units else "use"
    parts.append(f'<text class="axis-label" x="14" y="{middle:.2f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {middle:.2f})">{name}</text>')
    parts.append(f'<text class="axis-label" x="{(LEFT + right) / 2:.2f}" y="{base + BOTTOM - 6}" '
                 'text-anchor="middle">billing cycle</text>')
    return parts


def _bar(n: int, point: ChartPoint, zero: float, y: Scale, units: str) -> list[str]:
    kind = point.kind if point.kind in KINDS else ACTUAL
    value = _measured(point.value)
    x = LEFT + STEP * n + (STEP - BAR_WIDTH) / 2
    centre = x + BAR_WIDTH / 2
    if value is None:
        style, top, tall = UNMEASURED, zero - 2, 2.0
        figure = "no use measured"
    else:
        at = y(value)
        style, top, tall = kind, min(at, zero), abs(at - zero)
        figure = f"{number(value)}{units}"
    tip = " · ".join(t for t in (point.label, figure, kind, point.note) if t)
    label = point.label if len(point.label) <= LABEL_CHARS \
        else point.label[:LABEL_CHARS - 1] + "…"
    base = TOP + PLOT_HEIGHT
    parts = [f'<g class="point" data-kind="{kind}" data-label="{text(point.label)}">',
             f'<title>{text(tip)}</title>',
             f'<rect class="chart-bar {style}" data-kind="{kind}" x="{x:.2f}" y="{top:.2f}" '
             f'width="{BAR_WIDTH}" height="{tall:.2f}" {STYLES[style]}/>']
    if kind == OVERRIDE:
        parts.append(f'<circle class="override-mark" cx="{centre:.2f}" cy="{top - 6:.2f}" '
                     'r="3" fill="#a86400"/>')
    parts.append(f'<text class="label" x="{centre:.2f}" y="{base + 14}" text-anchor="end" '
                 f'transform="rotate(-35 {centre:.2f} {base + 14})">{text(label)}</text>')
    parts.append("</g>")
    return parts
