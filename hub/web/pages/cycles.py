"""Pages: the cycles list, a cycle's dashboard, its missing reads and sending a re-read route.

The same queries as ``/api/v1/cycles…`` (:mod:`hub.views.cycles`) and the same
actions (:func:`hub.api.runs.request_run`, :func:`hub.views.cycles.send_reread`).
A POST answers with a redirect (303) back to the page, whose query says what
happened as a fixed code or a number (``?queued=12``, ``?error=busy``): the
page turns it into its own sentence, so nothing a link carries is echoed.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from hub.access.roles import Role
from hub.api.auth import PAGE_OPERATOR, PAGE_VIEWER, Principal
from hub.api.pagination import MAX_LIMIT, PageParams
from hub.api.routes.runs import CycleId
from hub.api.runs import RunConflict, Step, get_run, request_run
from hub.export.formats import Format
from hub.reconcile import Status
from hub.reconcile_store import UnknownCycle
from hub.views.cycles import (
    CannotPublish,
    NoBroker,
    NothingToReread,
    active_collectors,
    cycle_detail,
    list_cycles,
    meter_results,
    recent_runs,
    send_reread,
    sent_route,
)
from hub.web.render import page
from protocols.read import COLLECTOR_RE

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

PER_PAGE = 50
NEEDING_A_READ = (Status.MISSING, Status.TROUBLE, Status.ESTIMATED)
"""What the missing-reads page lists: all three still lack an actual read."""
STEP_LABELS = {Step.RECONCILE: "Reconcile", Step.EDITS: "Meter edits", Step.BILL: "Bill",
               Step.EXPORT: "Export"}
STEP_BUTTONS = {Step.RECONCILE: "Reconcile", Step.EDITS: "Run edits", Step.BILL: "Bill",
                Step.EXPORT: "Export (CSV)"}

DASHBOARD_ERRORS = {
    "busy": "A step of this cycle is already queued or running: wait for it to finish.",
    "format": "That export format is not known.",
}
MISSING_ERRORS = {
    "collector": "That is not a collector id (letters, digits, '.', '_' and '-').",
    "nothing": "No meter of this cycle needs a read: no route was sent.",
    "no-broker": "This hub has no broker to send routes through (start `meterhub serve` "
                 "with its broker options): no route was sent.",
    "publish": "The broker did not take the route: nothing was sent. The hub's log says why.",
}

Offset = Annotated[int, Query(ge=0, le=2**31)]


def _operator(who: Principal) -> bool:
    return who.role.allows(Role.OPERATOR)


@router.get("/cycles", response_class=HTMLResponse)
def cycles_page(request: Request, who: Annotated[Principal, Depends(PAGE_VIEWER)],
                offset: Offset = 0) -> HTMLResponse:
    paging = PageParams(PER_PAGE, offset)
    with request.app.state.store.connect() as conn:
        items, total = list_cycles(conn, paging)
    return page(request, "cycles.html", who, title="Cycles", cycles=items, total=total,
                offset=offset, per_page=PER_PAGE)


@router.get("/cycles/{cycle}", response_class=HTMLResponse)
def cycle_page(request: Request, cycle: CycleId,
               who: Annotated[Principal, Depends(PAGE_VIEWER)],
               queued: Annotated[int | None, Query(ge=1, le=2**62)] = None,
               error: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    with request.app.state.store.connect() as conn:
        try:
            detail = cycle_detail(conn, cycle)
        except UnknownCycle:
            raise HTTPException(404, f"There is no cycle {cycle}.") from None
        runs = recent_runs(conn, cycle)
        notice, kind = None, "ok"
        if queued is not None:
            try:
                run = get_run(conn, queued)
            except LookupError:
                run = None
            if run is not None and run.cycle == cycle:
                notice = f"{STEP_LABELS[run.step]} queued as run {run.id}."
        if error in DASHBOARD_ERRORS:
            notice, kind = DASHBOARD_ERRORS[error], "error"
    return page(request, "cycle.html", who, title=f"Cycle {cycle}", cycle=detail, runs=runs,
                can_act=_operator(who), flash=notice, flash_kind=kind,
                step_labels=STEP_LABELS, step_buttons=STEP_BUTTONS, steps=list(Step))


@router.post("/cycles/{cycle}/run", response_class=RedirectResponse)
def run_step(request: Request, cycle: CycleId,
             who: Annotated[Principal, Depends(PAGE_OPERATOR)],
             step: Annotated[Step, Form()],
             format: Annotated[str | None, Form(max_length=16)] = None,
             ) -> RedirectResponse:
    """Queue a step exactly as ``POST /api/v1/cycles/{cycle}/runs`` does."""
    here = f"/cycles/{cycle}"
    options = {}
    if step is Step.EXPORT:
        try:
            options["format"] = Format(format or Format.CSV.value).value
        except ValueError:
            return RedirectResponse(f"{here}?error=format", status_code=303)
    try:
        with request.app.state.store.begin() as conn:
            run = request_run(conn, cycle, step, requested_by=who.actor, options=options)
    except UnknownCycle:
        raise HTTPException(404, f"There is no cycle {cycle}.") from None
    except RunConflict:
        return RedirectResponse(f"{here}?error=busy", status_code=303)
    runner = request.app.state.runner
    if runner is not None:
        runner.wake()
    return RedirectResponse(f"{here}?queued={run.id}", status_code=303)


@router.get("/cycles/{cycle}/missing", response_class=HTMLResponse)
def missing_page(request: Request, cycle: CycleId,
                 who: Annotated[Principal, Depends(PAGE_VIEWER)], offset: Offset = 0,
                 sent: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                 error: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    paging = PageParams(MAX_LIMIT, offset)
    with request.app.state.store.connect() as conn:
        try:
            detail = cycle_detail(conn, cycle)
            rows, total = meter_results(conn, cycle, paging, statuses=NEEDING_A_READ)
        except UnknownCycle:
            raise HTTPException(404, f"There is no cycle {cycle}.") from None
        collectors = active_collectors(conn)
        notice, kind = None, "ok"
        route = sent_route(conn, cycle, sent) if sent is not None else None
        if route is not None:
            count = len(route["meters"])
            notice = (f"Route {route['route_id']} with {count} meter{'s' if count != 1 else ''} "
                      f"sent to {route['collector']}.")
        if error in MISSING_ERRORS:
            notice, kind = MISSING_ERRORS[error], "error"
    return page(request, "missing.html", who, title=f"Missing reads · {cycle}", cycle=detail,
                rows=rows, total=total, offset=offset, per_page=MAX_LIMIT,
                collectors=collectors, can_act=_operator(who), flash=notice, flash_kind=kind)


@router.post("/cycles/{cycle}/reread", response_class=RedirectResponse)
def send_route(request: Request, cycle: CycleId,
               who: Annotated[Principal, Depends(PAGE_OPERATOR)],
               collector: Annotated[str, Form(max_length=64)] = "") -> RedirectResponse:
    """Send the re-read route exactly as ``POST /api/v1/cycles/{cycle}/reread`` does."""
    here = f"/cycles/{cycle}/missing"
    if not COLLECTOR_RE.fullmatch(collector.strip()):
        return RedirectResponse(f"{here}?error=collector", status_code=303)
    try:
        sent = send_reread(request.app.state.store, request.app.state.settings, cycle,
                           collector.strip(), actor=who.actor)
    except UnknownCycle:
        raise HTTPException(404, f"There is no cycle {cycle}.") from None
    except NothingToReread:
        return RedirectResponse(f"{here}?error=nothing", status_code=303)
    except NoBroker:
        return RedirectResponse(f"{here}?error=no-broker", status_code=303)
    except CannotPublish as exc:
        log.warning("cycle %s: re-read route for %s not sent: %s", cycle, collector, exc)
        return RedirectResponse(f"{here}?error=publish", status_code=303)
    return RedirectResponse(f"{here}?sent={sent.audit_id}", status_code=303)
