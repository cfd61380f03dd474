"""Who is asking: a bearer token (other systems) or a session cookie (the pages).

Every route declares the least role it needs with :func:`require`; the
dependency answers 401 when nobody is logged in or the token is unknown,
revoked or expired, and 403 when the role is too small. A mutating request
made with a session cookie must also carry the session's CSRF token (form
field ``csrf`` or header ``X-CSRF-Token``): the cookie alone is something a
hostile page can make the browser send, the token is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from hub.access.roles import Role
from hub.access.tokens import authenticate
from hub.access.users import csrf_matches, session_for
from hub.store import Store

SESSION_COOKIE = "meterhub_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    via: Literal["token", "session"]
    csrf: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names who acted: ``token:cis-export`` or ``alice``."""
        return f"token:{self.name}" if self.via == "token" else self.name


class LoginRequired(Exception):
    """A page was asked for without a session: the pages answer with the login form."""


def principal_of(request: Request, store: Store) -> Principal | None:
    """The principal of ``request``, or None; remembered on the request for the audit log."""
    if hasattr(request.state, "principal"):
        return request.state.principal
    found: Principal | None = None
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret:
        with store.begin() as conn:
            token = authenticate(conn, secret.strip())
        if token is not None:
            found = Principal(token.name, token.role, "token")
    elif cookie := request.cookies.get(SESSION_COOKIE):
        with store.connect() as conn:
            session = session_for(conn, cookie)
        if session is not None:
            found = Principal(session.user, session.role, "session", session.csrf)
    request.state.principal = found
    return found


def require(role: Role, *, page: bool = False) -> Callable[[Request], object]:
    """A dependency admitting ``role`` or above; ``page`` sends the anonymous to log in."""

    async def dependency(request: Request) -> Principal:
        store: Store = request.app.state.store
        # the store is blocking I/O: off the event loop, as FastAPI does for plain routes
        principal = await run_in_threadpool(principal_of, request, store)
        if principal is None:
            if page:
                raise LoginRequired
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                "a bearer token or a session is required",
                                headers={"WWW-Authenticate": "Bearer"})
        if not principal.role.allows(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"{principal.actor} is {principal.role.value}; this needs "
                                f"{role.value}")
        if principal.via == "session" and request.method not in SAFE_METHODS:
            presented = request.headers.get(CSRF_HEADER)
            if presented is None and request.headers.get("content-type", "").startswith(
                    ("application/x-www-form-urlencoded", "multipart/form-data")):
                form = await request.form()
                value = form.get("csrf")
                presented = value if isinstance(value, str) else None
            if not csrf_matches(principal.csrf, presented):
                raise HTTPException(status.HTTP_403_FORBIDDEN,
                                    "missing or wrong CSRF token: reload the page and try again")
        return principal

    return dependency


VIEWER = require(Role.VIEWER)
OPERATOR = require(Role.OPERATOR)
ADMIN = require(Role.ADMIN)
PAGE_VIEWER = require(Role.VIEWER, page=True)
PAGE_OPERATOR = require(Role.OPERATOR, page=True)
PAGE_ADMIN = require(Role.ADMIN, page=True)
