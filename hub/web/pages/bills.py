"""Pages: the bills of a cycle, and one bill traced line by line to the reads it came from.

The bill page is what a clerk opens when a customer calls: every line with
its quantity, price and amount, the determinants it priced (each register's
use between two billing reads, times the multiplier; the days; the demand),
and for each line the signed reads behind it — collector and seq, linking to
the meter's page where the read's signature status is shown. The queries
are the API's (:mod:`hub.views.bills`).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse

from hub.api.auth import PAGE_VIEWER, Principal
from hub.api.pagination import PageParams
from hub.views.bills import bill_detail, bill_page
from hub.web.render import page
from protocols.read import METER_RE

router = APIRouter(include_in_schema=False)

PER_PAGE = 50
Key = Annotated[str | None, Query(max_length=64)]


def _key(value: str | None) -> str | None:
    """A filter as typed, if it can be an id at all (else None: no such filter)."""
    value = (value or "").strip()
    return value if METER_RE.fullmatch(value) else None


@router.get("/bills", response_class=HTMLResponse)
def bills_list(request: Request, who: Annotated[Principal, Depends(PAGE_VIEWER)],
               cycle: Key = None, account: Key = None,
               offset: Annotated[int, Query(ge=0, le=2**31)] = 0) -> HTMLResponse:
    shown = {"cycle": _key(cycle), "account": _key(account)}
    with request.app.state.store.connect() as conn:
        items, total = bill_page(conn, PageParams(PER_PAGE, offset), **shown)
    return page(request, "bills.html", who, title="Bills", items=items, total=total,
                offset=offset, per_page=PER_PAGE, filters=shown,
                query=urlencode({k: v for k, v in shown.items() if v}))


@router.get("/bills/{cycle}/{account:path}", response_class=HTMLResponse)
def bill_view(request: Request, cycle: Annotated[str, Path(max_length=64)],
              account: Annotated[str, Path(max_length=64)],
              who: Annotated[Principal, Depends(PAGE_VIEWER)]) -> HTMLResponse:
    if _key(cycle) is None or _key(account) is None:
        raise HTTPException(404, "no such bill")
    with request.app.state.store.connect() as conn:
        bill = bill_detail(conn, cycle, account)
    if bill is None:
        raise HTTPException(404, f"account {account} has no bill in cycle {cycle}")
    return page(request, "bill.html", who, title=f"Bill {account} · {cycle}", bill=bill)
