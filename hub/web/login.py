"""Log in, log out: a session cookie for the operator pages, with the user's role.

The cookie is HttpOnly and SameSite=Strict (Secure behind HTTPS), holds only
a random value whose hash names the session row, and dies with a logout, a
disabled user or the end of a shift (:data:`hub.access.users.SESSION_LIFETIME`).
Every login, failed or not, is in the audit log; a user name with too many
wrong passwords is refused for a while (:mod:`hub.web.throttle`).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.access.users import SESSION_LIFETIME, log_in, log_out
from hub.api.auth import PAGE_VIEWER, SESSION_COOKIE, Principal
from hub.edits.audit import record
from hub.web.render import templates
from hub.web.throttle import LoginThrottle
from protocols.web_paths import local_path

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site (:func:`protocols.web_paths.local_path`), else the cycles."""
    return local_path(target, default="/cycles", refused=frozenset({"/login", "/logout"}))


@router.get("/", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/cycles", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/cycles") -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {
        "who": None, "next": safe_next(next), "user": "", "error": None, "title": "Log in"})


@router.post("/login", response_model=None)
def login(request: Request, user: Annotated[str, Form(max_length=128)],
          password: Annotated[str, Form(max_length=1024)],
          next: Annotated[str, Form(max_length=2048)] = "/cycles",
          ) -> Response:
    store = request.app.state.store
    throttle: LoginThrottle = request.app.state.login_throttle
    wait = throttle.retry_after(user)
    if wait > 0:
        log.warning("login for %r refused: too many wrong passwords (%.0f s left)", user, wait)
        with store.begin() as conn:
            record(conn, actor="anonymous", action="login.throttled",
                   reason=f"too many wrong passwords for {user!r}",
                   after={"client": request.client.host if request.client else None})
        return templates.TemplateResponse(request, "login.html", {
            "who": None, "next": safe_next(next), "user": user, "title": "Log in",
            "error": f"Too many wrong passwords for this user: try again in "
                     f"{max(1, round(wait / 60))} minute(s)."},
            status_code=429, headers={"Retry-After": str(int(wait) + 1)})
    with store.begin() as conn:
        opened = log_in(conn, user, password)
        record(conn, actor=user if opened else "anonymous",
               action="login" if opened else "login.failed",
               reason=None if opened else f"wrong user or password for {user!r}",
               after={"client": request.client.host if request.client else None})
    if opened is None:
        throttle.failed(user)
        log.warning("failed login for %r from %s", user,
                    request.client.host if request.client else "?")
        return templates.TemplateResponse(request, "login.html", {
            "who": None, "next": safe_next(next), "user": user, "title": "Log in",
            "error": "Wrong user name or password."}, status_code=401)
    throttle.succeeded(user)
    cookie, _session = opened
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(SESSION_LIFETIME.total_seconds()),
                        httponly=True, samesite="strict",
                        secure=request.app.state.settings.secure_cookies, path="/")
    return response


@router.post("/logout", response_class=RedirectResponse)
def logout(request: Request, _who: Annotated[Principal, Depends(PAGE_VIEWER)]
           ) -> RedirectResponse:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with request.app.state.store.begin() as conn:
            log_out(conn, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
