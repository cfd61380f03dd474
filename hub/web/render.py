"""Render a page: the templates, their filters, and what every page knows (who, CSRF, nav).

Example::

    @router.get("/cycles/{cycle}", response_class=HTMLResponse)
    def dashboard(request: Request, who: Annotated[Principal, Depends(PAGE_VIEWER)]):
        return page(request, "cycle.html", who, title=f"Cycle {cycle}", cycle=view)
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from hub.api.auth import Principal
from protocols.scalars import format_instant

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

NAV = (("Cycles", "/cycles"), ("Exceptions", "/exceptions"), ("Meters", "/meters"),
       ("Exports", "/exports"), ("Collectors", "/collectors"))


def money(value: Any, places: str = "0.01") -> str:
    """``1234.5`` → ``1,234.50``: Decimal in, never float; text that is no number as it is."""
    try:
        return f"{Decimal(str(value)).quantize(Decimal(places)):,}"
    except (InvalidOperation, ValueError):
        return str(value)


def instant(value: datetime | None) -> str:
    """A UTC time as the pages show it: ``2026-11-23 06:00Z``; ``—`` for none."""
    if value is None:
        return "—"
    return f"{value:%Y-%m-%d %H:%M}Z"


templates.env.filters["money"] = money
templates.env.filters["instant"] = instant
templates.env.filters["iso"] = lambda value: format_instant(value) if value else ""


def page(request: Request, template: str, who: Principal, *, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    """``template`` rendered with ``context`` plus ``who``, ``csrf`` and the navigation."""
    return templates.TemplateResponse(request, template, {
        "who": who, "csrf": who.csrf or "", "nav": NAV, "path": request.url.path, **context,
    }, status_code=status_code)
