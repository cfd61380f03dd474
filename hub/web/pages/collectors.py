"""Pages: collector health, and revoking a collector from a plain form (admins).

The same query as ``GET /api/v1/collectors`` (:mod:`hub.views.collectors`):
is each collector enrolled, and is it talking — its last status message,
buffer depth and acked seq. A revocation returns to the list with a fixed
code saying what happened (``?done=revoked``); nothing from the query
string is shown as it came.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from hub.access.roles import Role
from hub.api.auth import PAGE_ADMIN, PAGE_VIEWER, Principal
from hub.api.pagination import PageParams
from hub.views.collectors import REASON_PATTERN, AlreadyRevoked, collector_page, revoke
from hub.web.render import page
from protocols.read import COLLECTOR_RE

router = APIRouter(include_in_schema=False)

PER_PAGE = 50
DONE = {"revoked": ("Collector revoked: the hub refuses everything it sends from now on.",
                    "ok"),
        "already-revoked": ("That collector was already revoked; nothing was changed.",
                            "error"),
        "reason-required": ("A revocation needs a reason (one line of text).", "error")}


@router.get("/collectors", response_class=HTMLResponse)
def collectors_list(request: Request, who: Annotated[Principal, Depends(PAGE_VIEWER)],
                    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
                    done: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    settings = request.app.state.settings
    with request.app.state.store.connect() as conn:
        items, total = collector_page(conn, PageParams(PER_PAGE, offset),
                                      now=datetime.now(UTC),
                                      offline_after_s=settings.collector_offline_after_s)
    notice, kind = DONE.get(done or "", (None, "ok"))
    return page(request, "collectors.html", who, title="Collectors", items=items, total=total,
                offset=offset, per_page=PER_PAGE, notice=notice, notice_kind=kind,
                can_revoke=who.role.allows(Role.ADMIN))


@router.post("/collectors/{collector_id}/revoke", response_class=RedirectResponse)
def revoke_form(request: Request,
                collector_id: Annotated[str, Path(min_length=1, max_length=64)],
                who: Annotated[Principal, Depends(PAGE_ADMIN)],
                reason: Annotated[str, Form(max_length=500)] = "") -> RedirectResponse:
    if not COLLECTOR_RE.fullmatch(collector_id):
        raise HTTPException(404, "no such collector")
    if not re.fullmatch(REASON_PATTERN, reason):
        return RedirectResponse("/collectors?done=reason-required", status_code=303)
    settings = request.app.state.settings
    try:
        with request.app.state.store.begin() as conn:
            found = revoke(conn, collector_id, reason=reason.strip(), actor=who.actor,
                           now=datetime.now(UTC),
                           offline_after_s=settings.collector_offline_after_s)
    except AlreadyRevoked:
        return RedirectResponse("/collectors?done=already-revoked", status_code=303)
    if found is None:
        raise HTTPException(404, "no such collector")
    return RedirectResponse("/collectors?done=revoked", status_code=303)
