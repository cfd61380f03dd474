"""Every mutating request is in the audit log: who, what, the answer — denials included.

Domain actions (resolving an exception, say) write their own detailed audit
records inside their transaction; this middleware adds one line per POST,
PUT, PATCH or DELETE after the answer, so a refused or failed attempt is on
record too. The request body is never logged (it may hold a password).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from hub.edits.audit import record

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def install_request_audit(app: FastAPI) -> None:
    @app.middleware("http")
    async def audit_mutations(request: Request,
                              call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.method in MUTATING:
            principal = getattr(request.state, "principal", None)
            actor = principal.actor if principal is not None else "anonymous"
            await run_in_threadpool(_record, request, actor, response.status_code)
        return response


def _record(request: Request, actor: str, status: int) -> None:
    try:
        with request.app.state.store.begin() as conn:
            record(conn, actor=actor, action=f"http.{request.method.lower()}",
                   reason=request.url.path[:1000],
                   after={"status": status,
                          "client": request.client.host if request.client else None})
    except Exception:
        log.exception("could not audit %s %s by %s", request.method, request.url.path, actor)
