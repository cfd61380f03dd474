"""Pages: the meter list (search by serial prefix and service), and one meter.

One meter's page answers a billing question in one place: the account it
serves and where it was installed, its use cycle by cycle as a chart (an
estimate is drawn hatched, an override marked), and its latest reads with
their signed provenance — collector and seq, key, hash, and whether the hub
verified the signature. The queries are the API's (:mod:`hub.views.meters`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from hub.api.auth import PAGE_VIEWER, Principal
from hub.api.pagination import PageParams
from hub.views.meters import (
    DEFAULT_CYCLES,
    Consumption,
    consumption,
    meter_detail,
    meter_page,
    read_page,
)
from hub.web.chart import ChartPoint, consumption_svg
from hub.web.render import page
from protocols.read import METER_RE

router = APIRouter(include_in_schema=False)

PER_PAGE = 50
READS_PER_PAGE = 20
SERVICES = ("electric", "water", "gas")
SERIAL_PREFIX = re.compile(r"[A-Za-z0-9._:/-]*")
Offset = Annotated[int, Query(ge=0, le=2**31)]


@router.get("/meters", response_class=HTMLResponse)
def meters_list(request: Request, who: Annotated[Principal, Depends(PAGE_VIEWER)],
                q: Annotated[str | None, Query(max_length=64)] = None,
                service: Annotated[str | None, Query(max_length=16)] = None,
                offset: Offset = 0) -> HTMLResponse:
    prefix = (q or "").strip()
    shown_service = service if service in SERVICES else None
    notice = None
    items, total = [], 0
    if SERIAL_PREFIX.fullmatch(prefix):
        with request.app.state.store.connect() as conn:
            items, total = meter_page(conn, PageParams(PER_PAGE, offset),
                                      service=shown_service, q=prefix or None)
    else:
        notice = "A serial holds only letters, digits and . _ : / - : nothing can match that."
    query = urlencode({k: v for k, v in (("q", prefix), ("service", shown_service)) if v})
    return page(request, "meters.html", who, title="Meters", items=items, total=total,
                offset=offset, per_page=PER_PAGE, q=prefix, service=shown_service,
                services=SERVICES, query=query, notice=notice, notice_kind="error")


@router.get("/meters/{serial:path}", response_class=HTMLResponse)
def meter_view(request: Request, serial: str, who: Annotated[Principal, Depends(PAGE_VIEWER)],
               reads_offset: Offset = 0) -> HTMLResponse:
    if not METER_RE.fullmatch(serial):
        raise HTTPException(404, "no such meter")
    with request.app.state.store.connect() as conn:
        meter = meter_detail(conn, serial)
        if meter is None:
            raise HTTPException(404, f"meter {serial} not found")
        use = consumption(conn, serial, cycles_back=DEFAULT_CYCLES)
        latest, reads_total = read_page(conn, serial, PageParams(READS_PER_PAGE, reads_offset))
    return page(request, "meter.html", who, title=f"Meter {serial}", meter=meter, use=use,
                chart=chart_of(use), reads=latest, reads_total=reads_total,
                reads_offset=reads_offset, reads_per_page=READS_PER_PAGE)


def chart_of(use: Consumption | None) -> Markup:
    """The consumption chart of the main register; the SVG escapes its own text."""
    points = []
    if use is not None:
        for point in use.points:
            used = next((r.used for r in point.registers if r.name == use.main_register), None)
            note = f"read {point.read_at:%Y-%m-%d}"
            if point.method:
                note += f", {point.method.replace('_', ' ')}"
            points.append(ChartPoint(point.cycle, Decimal(used) if used is not None else None,
                                     point.kind, note))
    register = use.main_register if use is not None and use.main_register else "use"
    svg = consumption_svg(points, unit=use.unit if use is not None else "",
                          title=f"{register} per billing cycle")
    return Markup(svg)  # noqa: S704 - every text in it is escaped by consumption_svg
