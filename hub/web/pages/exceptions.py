"""Pages: the exceptions queue, one exception, and deciding on it from a plain form.

The same queue query and the same decision as ``/api/v1/exceptions…``
(:mod:`hub.views.exceptions`). A decision made from the queue returns to the
queue with its filters and a fixed code saying what happened
(``?done=accepted&id=17``); a decision that cannot be made shows the
exception again with the reason it was refused.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from hub.access.roles import Role
from hub.api.auth import PAGE_OPERATOR, PAGE_VIEWER, Principal
from hub.api.pagination import PageParams
from hub.edits.actions import Action, AlreadyResolved, ResolveError, UnknownException
from hub.edits.model import EstimationMethod, Severity
from hub.edits.queue import STATUSES
from hub.views.exceptions import (
    ExceptionDetailOut,
    Filters,
    ResolveRequest,
    decide,
    exception_detail,
    exceptions_page,
)
from hub.web.render import page
from protocols.read import METER_RE

router = APIRouter(include_in_schema=False)

PER_PAGE = 50
RULE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""A filter that is no cycle id or rule name is dropped, not searched for."""
QUEUE = "/exceptions"
FILTERS = ("cycle", "status", "severity", "rule")
DONE = {"accepted": "accepted: the read stands",
        "rejected": "rejected: the meter goes on the next re-read route",
        "estimated": "estimated: the meter bills on an estimate",
        "overridden": "overridden: the meter bills on the values given"}
ERRORS = {
    "resolved": "That exception was already decided by someone else; nothing was changed.",
}

ExceptionId = Annotated[int, Path(ge=1, le=2**62)]
Text = Annotated[str | None, Query(max_length=64)]


def _operator(who: Principal) -> bool:
    return who.role.allows(Role.OPERATOR)


@router.get("/exceptions", response_class=HTMLResponse)
def queue_page(request: Request, who: Annotated[Principal, Depends(PAGE_VIEWER)],
               cycle: Text = None, status: Text = "open", severity: Text = None,
               rule: Text = None, offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
               done: Text = None, id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
               error: Text = None) -> HTMLResponse:
    shown = {"cycle": cycle if cycle and METER_RE.fullmatch(cycle) else None,
             "status": status if status in (*STATUSES, "all") else "open",
             "severity": severity if severity in {s.value for s in Severity} else None,
             "rule": rule if rule and RULE_RE.fullmatch(rule) else None}
    filters = Filters(cycle=shown["cycle"], severity=shown["severity"], rule=shown["rule"],
                      status=None if shown["status"] == "all" else shown["status"])
    with request.app.state.store.connect() as conn:
        items, total = exceptions_page(conn, filters, PageParams(PER_PAGE, offset))
    query = {k: v for k, v in shown.items() if v}
    here = f"{QUEUE}?{urlencode({**query, 'offset': offset})}"
    notice, kind = None, "ok"
    if done in DONE and id is not None:
        notice = f"Exception {id} {DONE[done]}."
    if error in ERRORS:
        notice, kind = ERRORS[error], "error"
    return page(request, "exceptions.html", who, title="Exceptions", items=items,
                total=total, offset=offset, per_page=PER_PAGE, filters=shown,
                query=urlencode(query), here=here, statuses=STATUSES,
                severities=[s.value for s in reversed(Severity)], can_act=_operator(who),
                flash=notice, flash_kind=kind)


@router.get("/exceptions/{exception_id}", response_class=HTMLResponse)
def exception_page(request: Request, exception_id: ExceptionId,
                   who: Annotated[Principal, Depends(PAGE_VIEWER)],
                   done: Text = None, error: Text = None) -> HTMLResponse:
    with request.app.state.store.connect() as conn:
        detail = exception_detail(conn, exception_id)
    if detail is None:
        raise HTTPException(404, f"There is no exception {exception_id}.")
    if error in ERRORS:
        return _detail(request, who, detail, notice=ERRORS[error], kind="error")
    notice = f"Exception {exception_id} {DONE[done]}." if done in DONE else None
    return _detail(request, who, detail, notice=notice)


@router.post("/exceptions/{exception_id}/resolve", response_model=None)
def resolve_form(
    request: Request, exception_id: ExceptionId,
    who: Annotated[Principal, Depends(PAGE_OPERATOR)],
    action: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=4000)] = "",
    method: Annotated[str, Form(max_length=32)] = "",
    registers: Annotated[list[str] | None, Form(alias="register")] = None,
    value: Annotated[list[str] | None, Form()] = None,
    back: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    """Decide from a form: ``register``/``value`` pairs are an override's values."""
    values = {name.strip(): text.strip()
              for name, text in zip(registers or [], value or [], strict=False) if text.strip()}
    try:
        decision = ResolveRequest(action=action, reason=reason, method=method or None,
                                  values=values or None)
    except ValidationError as exc:
        return _refused(request, who, exception_id, "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in exc.errors()))
    try:
        decide(request.app.state.store, request.app.state.settings, exception_id, decision,
               actor=who.actor)
    except UnknownException:
        raise HTTPException(404, f"There is no exception {exception_id}.") from None
    except AlreadyResolved:
        return RedirectResponse(_back(back, exception_id, error="resolved"), status_code=303)
    except ResolveError as exc:
        return _refused(request, who, exception_id, str(exc))
    return RedirectResponse(_back(back, exception_id, done=decision.action.status),
                            status_code=303)


def _refused(request: Request, who: Principal, exception_id: int, why: str) -> HTMLResponse:
    """The exception again, saying why the decision was not made (422)."""
    with request.app.state.store.connect() as conn:
        detail = exception_detail(conn, exception_id)
    if detail is None:
        raise HTTPException(404, f"There is no exception {exception_id}.")
    return _detail(request, who, detail, notice=f"Not done: {why}", kind="error",
                   status_code=422)


def _detail(request: Request, who: Principal, detail: ExceptionDetailOut, *,
            notice: str | None, kind: str = "ok", status_code: int = 200) -> HTMLResponse:
    return page(request, "exception.html", who, title=f"Exception {detail.exception.id}",
                detail=detail, can_act=_operator(who), flash=notice, flash_kind=kind,
                actions=[a.value for a in Action], methods=[m.value for m in EstimationMethod],
                status_code=status_code)


def _back(back: str, exception_id: int, **code: str) -> str:
    """Where a decision returns: the queue page it came from (filters kept), or the exception.

    Only a path under ``/exceptions`` is followed, so a crafted form cannot send
    the operator elsewhere.
    """
    parts = urlsplit(back)
    if parts.scheme or parts.netloc or not (parts.path == QUEUE
                                            or parts.path.startswith(f"{QUEUE}/")):
        parts = urlsplit(f"{QUEUE}/{exception_id}")
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("done", "error", "id")]
    query += [*code.items(), ("id", str(exception_id))]
    return f"{parts.path}?{urlencode(query)}"
