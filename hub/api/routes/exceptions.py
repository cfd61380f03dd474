"""API: the meter-edit exceptions queue — list, read one, decide on one.

The read models, the queue query and the decision are :mod:`hub.views.exceptions`,
shared with the operator pages; this module maps HTTP to them. Every decision
is one audit record (besides the request audit every POST gets).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError

from hub.api.auth import OPERATOR, VIEWER, Principal
from hub.api.errors import conflict, not_found, problem_responses
from hub.api.pagination import Page, PageParams, page_params
from hub.edits.actions import AlreadyResolved, ResolveError, UnknownException
from hub.edits.model import Severity
from hub.views.exceptions import (
    ExceptionDetailOut,
    ExceptionOut,
    ExceptionStatus,
    Filters,
    ResolutionOut,
    ResolveRequest,
    decide,
    exception_detail,
    exceptions_page,
)
from protocols.read import METER_RE

router = APIRouter(tags=["exceptions"])

ExceptionId = Annotated[int, Path(ge=1, le=2**62, description="Exception id.")]
KEY = rf"^{METER_RE.pattern}$"
"""Cycle and account ids have the shape of a meter serial (as the master data import checks)."""


@router.get("/exceptions", responses=problem_responses())
def exceptions_list(
    request: Request, _who: Annotated[Principal, Depends(VIEWER)],
    paging: Annotated[PageParams, Depends(page_params)],
    cycle: Annotated[str | None, Query(pattern=KEY)] = None,
    exception_status: Annotated[ExceptionStatus | None, Query(alias="status")] = None,
    severity: Severity | None = None,
    rule: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$",
                                      description="A rule name, e.g. spike.")] = None,
    meter: Annotated[str | None, Query(pattern=KEY)] = None,
    account: Annotated[str | None, Query(pattern=KEY)] = None,
) -> Page[ExceptionOut]:
    """The queue, most severe first, then oldest first; every filter given must match."""
    filters = Filters(cycle=cycle, rule=rule, meter=meter, account=account,
                      status=exception_status.value if exception_status else None,
                      severity=severity.value if severity else None)
    with request.app.state.store.connect() as conn:
        items, total = exceptions_page(conn, filters, paging)
    return Page[ExceptionOut].of(items, total, paging)


@router.get("/exceptions/{exception_id}", responses=problem_responses(404))
def exception_show(request: Request, exception_id: ExceptionId,
                   _who: Annotated[Principal, Depends(VIEWER)]) -> ExceptionDetailOut:
    """One exception, the meter's billing read in its cycle, and its audit trail."""
    with request.app.state.store.connect() as conn:
        found = exception_detail(conn, exception_id)
    if found is None:
        raise not_found(f"exception {exception_id}")
    return found


@router.post("/exceptions/{exception_id}/resolve", responses=problem_responses(404, 409))
def exception_resolve(request: Request, exception_id: ExceptionId, body: ResolveRequest,
                      who: Annotated[Principal, Depends(OPERATOR)]) -> ResolutionOut:
    """Decide: accept, reject (re-read), estimate or override — with a reason, audited.

    409: it is no longer open. 422: the decision cannot be carried out (no billing
    read to accept, no history to estimate from …), saying why.
    """
    try:
        return decide(request.app.state.store, request.app.state.settings, exception_id,
                      body, actor=who.actor)
    except UnknownException:
        raise not_found(f"exception {exception_id}") from None
    except AlreadyResolved as exc:
        raise conflict(str(exc)) from None
    except ResolveError as exc:
        raise RequestValidationError([{"loc": ("body", "action"), "msg": str(exc),
                                       "type": "cannot_resolve"}]) from None
