"""API: billing cycles — the list, a cycle's dashboard, its meters, and re-read routes.

The read models and queries are :mod:`hub.views.cycles`, shared with the
operator pages; this module only maps HTTP to them (parameters, roles,
status codes).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from hub.api.auth import OPERATOR, VIEWER, Principal
from hub.api.errors import conflict, not_found, problem_responses
from hub.api.pagination import Page, PageParams, page_params
from hub.api.routes.runs import CycleId
from hub.reconcile import Status
from hub.reconcile_store import UnknownCycle
from hub.reread import NEEDS_A_READ
from hub.views.cycles import (
    CannotPublish,
    CycleDetail,
    CycleSummary,
    MeterRow,
    NothingToReread,
    RerouteOut,
    cycle_detail,
    list_cycles,
    meter_results,
    send_reread,
)
from protocols.read import COLLECTOR_RE, METER_RE

router = APIRouter(tags=["cycles"])


class RerouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collector: str = Field(pattern=rf"^{COLLECTOR_RE.pattern}$", examples=["hh-01"],
                           description="The handheld's collector id: the route goes to its "
                                       "topic meterhub/v1/<collector>/routes.")


@router.get("/cycles", responses=problem_responses())
def cycles_list(request: Request, _who: Annotated[Principal, Depends(VIEWER)],
                paging: Annotated[PageParams, Depends(page_params)]) -> Page[CycleSummary]:
    """Cycles, newest scheduled read date first, with their reconciliation counts."""
    with request.app.state.store.connect() as conn:
        items, total = list_cycles(conn, paging)
    return Page[CycleSummary].of(items, total, paging)


@router.get("/cycles/{cycle}", responses=problem_responses(404))
def cycle_dashboard(request: Request, cycle: CycleId,
                    _who: Annotated[Principal, Depends(VIEWER)]) -> CycleDetail:
    """A cycle: its facts, progress per route, the last run of each step, exceptions, bills."""
    with request.app.state.store.connect() as conn:
        try:
            return cycle_detail(conn, cycle)
        except UnknownCycle:
            raise not_found(f"cycle {cycle}") from None


@router.get("/cycles/{cycle}/meters", responses=problem_responses(404))
def cycle_meters(
    request: Request, cycle: CycleId, _who: Annotated[Principal, Depends(VIEWER)],
    paging: Annotated[PageParams, Depends(page_params)],
    meter_status: Annotated[Status | None, Query(
        alias="status", description="Only meters in this status.")] = None,
    route: Annotated[str | None, Query(pattern=rf"^{METER_RE.pattern}$",
                                       description="Only this route.")] = None,
    needs_read: Annotated[bool | None, Query(
        description="true: only meters still needing an actual read (missing or estimated: "
                    "what a re-read route takes); false: only the others.")] = None,
) -> Page[MeterRow]:
    """The cycle's meters as the last reconcile run found them, in walk order."""
    statuses = set(Status)
    if meter_status is not None:
        statuses = {meter_status}
    if needs_read is not None:
        statuses = {s for s in statuses if (s in NEEDS_A_READ) == needs_read}
    with request.app.state.store.connect() as conn:
        try:
            items, total = meter_results(conn, cycle, paging, route=route, statuses=statuses)
        except UnknownCycle:
            raise not_found(f"cycle {cycle}") from None
    return Page[MeterRow].of(items, total, paging)


@router.post("/cycles/{cycle}/reread", responses=problem_responses(404, 409, 503))
def send_reread_route(request: Request, cycle: CycleId, body: RerouteRequest,
                      who: Annotated[Principal, Depends(OPERATOR)]) -> RerouteOut:
    """Send the cycle's meters needing a read, in walk order with limits, to a handheld.

    The route is published retained at QoS 1, so a handheld that is offline gets
    it when it next connects. 409: no meter needs a read; 503: no broker, or it
    did not take the route (nothing was sent).
    """
    try:
        return send_reread(request.app.state.store, request.app.state.settings, cycle,
                           body.collector, actor=who.actor)
    except UnknownCycle:
        raise not_found(f"cycle {cycle}") from None
    except NothingToReread as exc:
        raise conflict(str(exc)) from None
    except CannotPublish as exc:
        raise HTTPException(503, str(exc)) from None
