"""API: bills — each account's bill of a cycle, its lines, and the signed reads behind each line."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from hub.api.auth import VIEWER, Principal
from hub.api.errors import not_found, problem_responses
from hub.api.pagination import Page, PageParams, page_params
from hub.api.routes.meters import KEY_PATTERN
from hub.views.bills import BillDetail, BillOut, bill_detail, bill_page

router = APIRouter(tags=["bills"])

SEGMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
"""A cycle id in a path: an id as imported, without '/' (it separates the account)."""


def _filter(description: str) -> object:
    return Query(min_length=1, max_length=64, pattern=KEY_PATTERN, description=description)


@router.get("/bills", responses=problem_responses())
def list_bills(
    request: Request, _who: Annotated[Principal, Depends(VIEWER)],
    paging: Annotated[PageParams, Depends(page_params)],
    cycle: Annotated[str | None, _filter("Only this cycle's bills.")] = None,
    account: Annotated[str | None, _filter("Only this account's bills.")] = None,
    rate_code: Annotated[str | None, _filter("Only bills on this rate.")] = None,
) -> Page[BillOut]:
    """Bills, the latest cycle first, then by account."""
    with request.app.state.store.connect() as conn:
        items, total = bill_page(conn, paging, cycle=cycle, account=account,
                                 rate_code=rate_code)
    return Page[BillOut].of(items, total, paging)


@router.get("/bills/{cycle}/{account:path}", responses=problem_responses(404))
def show_bill(
    request: Request,
    cycle: Annotated[str, Path(min_length=1, max_length=64, pattern=SEGMENT_PATTERN,
                               description="Cycle id, as imported (e.g. C2026-11).")],
    account: Annotated[str, Path(min_length=1, max_length=64, pattern=KEY_PATTERN,
                                 description="Account id, as imported.")],
    _who: Annotated[Principal, Depends(VIEWER)],
) -> BillDetail:
    """One bill: its lines in order, each traced to the billing reads (and the signed reads)
    it came from; its determinants as stored and how each register's use was measured."""
    with request.app.state.store.connect() as conn:
        found = bill_detail(conn, cycle, account)
    if found is None:
        raise not_found(f"bill of account {account} in cycle {cycle}")
    return found
