"""Pages: the cycle exports — download the file and manifest, verify them again (operators).

Verifying from the page runs the same check as ``POST /api/v1/exports/{id}/verify``
(:func:`hub.views.exports.verify`) and returns to the list with a fixed code
(``?done=verified&export=3``); the message shown is built from the verdict
stored with the export, never from the query string.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from hub.access.roles import Role
from hub.api.auth import PAGE_OPERATOR, PAGE_VIEWER, Principal
from hub.api.pagination import PageParams
from hub.views.exports import export_page, export_view, verify
from hub.web.render import page
from protocols.read import METER_RE

router = APIRouter(include_in_schema=False)

PER_PAGE = 50
ExportId = Annotated[int, Path(ge=1, le=2**62)]
NO_KEY = "The hub has no export key to verify with: start `meterhub serve` with --hub-key."


@router.get("/exports", response_class=HTMLResponse)
def exports_list(request: Request, who: Annotated[Principal, Depends(PAGE_VIEWER)],
                 cycle: Annotated[str | None, Query(max_length=64)] = None,
                 offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
                 done: Annotated[str | None, Query(max_length=32)] = None,
                 export: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> HTMLResponse:
    shown = (cycle or "").strip()
    shown = shown if METER_RE.fullmatch(shown) else ""
    exports_dir = request.app.state.settings.exports_dir
    with request.app.state.store.connect() as conn:
        items, total = export_page(conn, PageParams(PER_PAGE, offset), exports_dir,
                                   cycle=shown or None)
        verified = export_view(conn, export, exports_dir) \
            if done == "verified" and export is not None else None
    notice, kind = None, "ok"
    if verified is not None and verified.verification.ok is not None:
        if verified.verification.ok:
            notice = f"Export {verified.id} ({verified.file_name}) verified ✓: " \
                     f"{verified.verification.detail}."
        else:
            notice, kind = (f"Export {verified.id} ({verified.file_name}) FAILED "
                            f"verification: {verified.verification.detail}"), "error"
    elif done == "no-key":
        notice, kind = NO_KEY, "error"
    return page(request, "exports.html", who, title="Exports", items=items, total=total,
                offset=offset, per_page=PER_PAGE, cycle=shown,
                query=urlencode({"cycle": shown}) if shown else "",
                notice=notice, notice_kind=kind, can_verify=who.role.allows(Role.OPERATOR))


@router.post("/exports/{export_id}/verify", response_class=RedirectResponse)
def verify_form(request: Request, export_id: ExportId,
                _who: Annotated[Principal, Depends(PAGE_OPERATOR)]) -> RedirectResponse:
    signer = request.app.state.settings.export_signer
    if signer is None:
        return RedirectResponse("/exports?done=no-key", status_code=303)
    with request.app.state.store.begin() as conn:
        result = verify(conn, export_id, request.app.state.settings.exports_dir,
                        signer.public_key)
    if result is None:
        raise HTTPException(404, f"export {export_id} not found")
    return RedirectResponse(f"/exports?{urlencode({'done': 'verified', 'export': export_id})}",
                            status_code=303)
