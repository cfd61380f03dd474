"""Every API error is one JSON shape (RFC 9457 problem details), naming what and where.

``{"type": "about:blank", "title": "Unprocessable Content", "status": 422,
"detail": "2 problems in the request", "errors": [{"loc": ["query", "limit"],
"msg": "Input should be less than or equal to 500", "type": "less_than_equal"}]}``

A client matches on ``status`` and ``errors[].loc``; a person reads
``detail``. Unexpected failures are logged with their traceback and answered
with a 500 that says no more than that (no internals leak to the caller).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] = []


PROBLEM_MEDIA_TYPE = "application/problem+json"


def _documented(code: int) -> dict[str, Any]:
    return {"model": Problem, "description": HTTPStatus(code).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: _documented(code) for code in (400, 401, 403, 422)}
"""The errors every authenticated route can answer, for the OpenAPI document."""


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``PROBLEM_RESPONSES`` plus route-specific codes (404, 409, 503…)."""
    return {**PROBLEM_RESPONSES, **{code: _documented(code) for code in codes}}


def problem(status: int, detail: str, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail,
                   errors=[FieldProblem(**e) for e in errors or []])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers,
                        media_type=PROBLEM_MEDIA_TYPE)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
                   "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        count = len(errors)
        return problem(422, f"{count} problem{'s' if count != 1 else ''} in the request: " +
                       "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in errors[:5]), errors)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(500, "the hub failed to answer this request; the error is in its log")


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"{what} not found")


def conflict(detail: str) -> HTTPException:
    return HTTPException(409, detail)
