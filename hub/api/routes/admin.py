"""API: administration — API tokens, operator logins and the rate tables.

Tokens and users are the admin's: a token's secret is in the answer that
makes it and nowhere else (the hub keeps its SHA-256), and no answer ever
carries a hash. Rates are readable by every viewer (what a bill was priced
with is no secret); replacing one is the admin's.

``PUT /rates/{code}`` takes the rate file itself (YAML, as
``application/yaml`` or ``text/plain``), validates it exactly as the hub
does at start — a problem is a 422 naming the key, ``errors[].loc`` =
``["body", "versions", "2026-10-15", "components", "energy", …]`` — writes
it atomically to the rates directory and swaps this worker's rate book, so
the next bill step prices with it. Other ``meterhub serve`` workers load the
directory when they start: restart them (or send the same PUT to each).

Every change writes a domain audit record (``token.create``,
``token.revoke``, ``user.add``, ``user.disable``, ``user.role``,
``rate.update``) in the change's own transaction, besides the request audit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from edge_agent.files import write_atomic
from hub.access.roles import AccessError, Role
from hub.access.tokens import create_token, get_token, revoke_token
from hub.access.users import (
    MIN_PASSWORD,
    add_user,
    disable_user,
    get_user,
    set_role,
)
from hub.api.auth import ADMIN, VIEWER, Principal
from hub.api.errors import conflict, not_found, problem, problem_responses
from hub.api.pagination import Page, PageParams, page_params, paged_rows
from hub.api.settings import HubSettings
from hub.edits.audit import record
from hub.rates.book import SUFFIX, RateBook
from hub.rates.model import RateTable
from hub.rates.schema import MAX_FILE_BYTES, RateError, parse_rate
from hub.store.tables import api_tokens, web_users

router = APIRouter(tags=["admin"])

NAME_PATTERN = r"^[A-Za-z0-9._@-]+$"
"""A login name: what :func:`hub.access.users.add_user` accepts."""
RATE_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""A rate code (``hub.rates.model.RATE_CODE_RE``), which is also its file's name."""
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
                        "text/plain"})

TokenId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$",
                              description="The token's id (tok-…).")]
UserName = Annotated[str, Path(min_length=1, max_length=128, pattern=NAME_PATTERN,
                               description="The user's login name.")]
RateCode = Annotated[str, Path(min_length=1, max_length=64, pattern=RATE_CODE_PATTERN,
                               description="Rate code, e.g. RES-E1.")]

_rates_lock = threading.Lock()
"""Rate updates read, change and swap the settings: one at a time, so none is lost."""


# --- tokens -------------------------------------------------------------------------------


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute; null: never used.")


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"\S",
                      description="Who or what uses it.", examples=["cis-export"])
    role: Role
    expires_days: int | None = Field(None, ge=1, le=36500,
                                     description="Stops working after this many days; "
                                     "default: until revoked.")


class NewTokenOut(BaseModel):
    token: TokenOut
    secret: str = Field(description="The bearer token. Shown in this answer only: the hub "
                        "keeps its hash, and cannot show it again.")


@router.get("/tokens", responses=problem_responses())
def list_tokens(request: Request, _who: Annotated[Principal, Depends(ADMIN)],
                paging: Annotated[PageParams, Depends(page_params)]) -> Page[TokenOut]:
    """Every API token, oldest first (no secrets, no hashes)."""
    query = select(*(c for c in api_tokens.c if c.name != "token_hash")).order_by(
        api_tokens.c.created_at, api_tokens.c.id)
    with request.app.state.store.connect() as conn:
        rows, total = paged_rows(conn, query, paging)
    return Page[TokenOut].of([TokenOut.model_validate(row) for row in rows], total, paging)


@router.post("/tokens", status_code=status.HTTP_201_CREATED, responses=problem_responses())
def make_token(request: Request, body: TokenRequest,
               who: Annotated[Principal, Depends(ADMIN)]) -> NewTokenOut:
    """Make an API token; its secret is in this answer and nowhere else."""
    now = datetime.now(UTC)
    expires_at = now + timedelta(days=body.expires_days) if body.expires_days else None
    try:
        with request.app.state.store.begin() as conn:
            made = create_token(conn, body.name, body.role, created_by=who.actor,
                                expires_at=expires_at, now=now)
            record(conn, actor=who.actor, action="token.create", reason=body.name, after={
                "token": made.token.id, "name": body.name, "role": body.role.value,
                "expires_at": expires_at.isoformat() if expires_at else None})
    except AccessError as exc:
        raise _unprocessable(str(exc)) from None
    return NewTokenOut(token=TokenOut.model_validate(made.token), secret=made.secret)


@router.post("/tokens/{token_id}/revoke", responses=problem_responses(404, 409))
def revoke(request: Request, token_id: TokenId,
           who: Annotated[Principal, Depends(ADMIN)]) -> TokenOut:
    """Stop a token from working, at once, in every hub worker."""
    with request.app.state.store.begin() as conn:
        try:
            current = get_token(conn, token_id)
        except AccessError:
            raise not_found(f"token {token_id}") from None
        if current.revoked_at is not None:
            raise conflict(f"token {token_id} was already revoked at "
                           f"{current.revoked_at.isoformat()}")
        token = revoke_token(conn, token_id)
        record(conn, actor=who.actor, action="token.revoke", reason=token.name,
               before={"token": token.id, "revoked_at": None},
               after={"token": token.id, "revoked_at": token.revoked_at.isoformat()
                      if token.revoked_at else None})
    return TokenOut.model_validate(token)


# --- users --------------------------------------------------------------------------------


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None


class UserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN,
                      description="Login name: letters, digits, '.', '_', '@', '-'.",
                      examples=["alice"])
    role: Role
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024,
                          description=f"At least {MIN_PASSWORD} characters. Never logged.")


class RoleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


@router.get("/users", responses=problem_responses())
def list_users(request: Request, _who: Annotated[Principal, Depends(ADMIN)],
               paging: Annotated[PageParams, Depends(page_params)]) -> Page[UserOut]:
    """Every operator login, by name."""
    query = select(web_users.c.name, web_users.c.role, web_users.c.created_at,
                   web_users.c.disabled_at).order_by(web_users.c.name)
    with request.app.state.store.connect() as conn:
        rows, total = paged_rows(conn, query, paging)
    return Page[UserOut].of([UserOut.model_validate(row) for row in rows], total, paging)


@router.post("/users", status_code=status.HTTP_201_CREATED, responses=problem_responses(409))
def add(request: Request, body: UserRequest, who: Annotated[Principal, Depends(ADMIN)]) -> UserOut:
    """Add an operator login."""
    with request.app.state.store.begin() as conn:
        try:
            get_user(conn, body.name)
        except AccessError:
            pass
        else:
            raise conflict(f"user {body.name} already exists")
        try:
            user = add_user(conn, body.name, body.role, body.password)
        except AccessError as exc:
            raise _unprocessable(str(exc)) from None
        record(conn, actor=who.actor, action="user.add", reason=user.name,
               after={"user": user.name, "role": user.role.value})
    return UserOut.model_validate(user)


@router.post("/users/{name}/disable", responses=problem_responses(404, 409))
def disable(request: Request, name: UserName,
            who: Annotated[Principal, Depends(ADMIN)]) -> UserOut:
    """Stop a login from working; its sessions end at once."""
    with request.app.state.store.begin() as conn:
        current = _user(conn, name)
        if current.disabled_at is not None:
            raise conflict(f"user {name} is already disabled")
        user = disable_user(conn, name)
        record(conn, actor=who.actor, action="user.disable", reason=name,
               before={"user": name, "disabled_at": None},
               after={"user": name, "disabled_at": user.disabled_at.isoformat()
                      if user.disabled_at else None})
    return UserOut.model_validate(user)


@router.post("/users/{name}/role", responses=problem_responses(404))
def change_role(request: Request, name: UserName, body: RoleRequest,
                who: Annotated[Principal, Depends(ADMIN)]) -> UserOut:
    """Give a user another role (from its next request on)."""
    with request.app.state.store.begin() as conn:
        before = _user(conn, name)
        user = set_role(conn, name, body.role)
        record(conn, actor=who.actor, action="user.role", reason=name,
               before={"user": name, "role": before.role.value},
               after={"user": name, "role": user.role.value})
    return UserOut.model_validate(user)


def _user(conn: Any, name: str) -> Any:
    try:
        return get_user(conn, name)
    except AccessError:
        raise not_found(f"user {name}") from None


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(422, detail)


# --- rates --------------------------------------------------------------------------------


class ComponentOut(BaseModel):
    id: str
    type: str
    description: str


class VersionOut(BaseModel):
    effective: date
    ends: date | None = Field(description="Last day in force; null: until the next version "
                              "(or open-ended).")
    components: list[ComponentOut]
    options: list[str]


class RateSummary(BaseModel):
    code: str
    service: str
    unit: str
    currency: str
    description: str
    versions: list[date] = Field(description="Effective dates, oldest first.")


class RateDetail(BaseModel):
    code: str
    service: str
    unit: str
    register_: str = Field(serialization_alias="register",
                           description="The register its use is priced from by default.")
    currency: str
    description: str
    versions: list[VersionOut]
    yaml: str | None = Field(description="The rate file as the hub holds it; null when the "
                             "rates directory has no file of this code.")


@router.get("/rates", responses=problem_responses())
def list_rates(request: Request, _who: Annotated[Principal, Depends(VIEWER)],
               paging: Annotated[PageParams, Depends(page_params)]) -> Page[RateSummary]:
    """The rate book this worker bills with: every code and its versions."""
    tables = list(_settings(request).rate_book)
    shown = tables[paging.offset:paging.offset + paging.limit]
    return Page[RateSummary].of([RateSummary(
        code=t.code, service=t.service, unit=t.unit, currency=t.currency,
        description=t.description, versions=[v.effective for v in t.versions]) for t in shown],
        len(tables), paging)


@router.get("/rates/{code}", responses=problem_responses(404))
def show_rate(request: Request, code: RateCode,
              _who: Annotated[Principal, Depends(VIEWER)]) -> RateDetail:
    """One rate: its versions and components, and the YAML file itself."""
    settings = _settings(request)
    if code not in settings.rate_book:
        raise not_found(f"rate {code}")
    return _detail(settings, settings.rate_book.rate(code))


@router.put("/rates/{code}", responses=problem_responses(413, 415), openapi_extra={
    "requestBody": {"required": True, "description": "The rate file (YAML), whose `code` is "
                    "the one in the path.", "content": {
                        "application/yaml": {"schema": {"type": "string"}},
                        "text/plain": {"schema": {"type": "string"}}}}})
async def put_rate(request: Request, code: RateCode,
                   who: Annotated[Principal, Depends(ADMIN)]) -> RateDetail:
    """Replace (or add) a rate file; validated first, then billed with from the next step on."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in YAML_TYPES:
        raise HTTPException(415,
                            "send the rate file as application/yaml or text/plain")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FILE_BYTES:
            raise HTTPException(413,
                                f"a rate file is at most {MAX_FILE_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _rate_problem(RateError(f"{code}{SUFFIX}", "(file)",
                                       f"not UTF-8 text (byte {exc.start})"))
    return await run_in_threadpool(_replace_rate, request.app, code, text, who.actor)


def _replace_rate(app: FastAPI, code: str, text: str, actor: str) -> RateDetail | Response:
    source = f"{code}{SUFFIX}"
    try:
        table = parse_rate(text, source)
    except RateError as error:
        return _rate_problem(error)
    if table.code != code:
        return _rate_problem(RateError(source, "code", f"{table.code!r} is not the code in the "
                                                       f"path ({code!r})"))
    with _rates_lock:
        settings: HubSettings = app.state.settings
        path = settings.rates_dir / source
        old = path.read_bytes() if path.exists() else None
        with app.state.store.begin() as conn:
            record(conn, actor=actor, action="rate.update", reason=code,
                   before={"sha256": hashlib.sha256(old).hexdigest() if old else None,
                           "versions": [v.effective.isoformat() for v in
                                        settings.rate_book.rate(code).versions]
                           if code in settings.rate_book else []},
                   after={"sha256": hashlib.sha256(text.encode()).hexdigest(),
                          "versions": [v.effective.isoformat() for v in table.versions]})
            write_atomic(path, text.encode("utf-8"))  # inside: a failed write is not audited
        book = settings.rate_book
        settings = dataclasses.replace(settings, rate_book=RateBook(
            {**{t.code: t for t in book}, code: table}, book.source))
        app.state.settings = settings
        if app.state.runner is not None:
            app.state.runner.settings = settings
    return _detail(settings, table)


def _rate_problem(error: RateError) -> Response:
    loc: list[str | int] = ["body"]
    if not error.key.startswith("("):
        loc += error.key.split(".")
    return problem(422, str(error),
                   [{"loc": loc, "msg": error.why, "type": "rate_file"}])


def _settings(request: Request) -> HubSettings:
    return request.app.state.settings


def _detail(settings: HubSettings, table: RateTable) -> RateDetail:
    path = settings.rates_dir / f"{table.code}{SUFFIX}"
    try:
        text: str | None = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    return RateDetail(
        code=table.code, service=table.service, unit=table.unit, register_=table.register,
        currency=table.currency, description=table.description, yaml=text,
        versions=[VersionOut(
            effective=version.effective, ends=last,
            components=[ComponentOut(id=c.id, type=c.type, description=c.description)
                        for c in version.components],
            options=sorted(version.options)) for version, _, last in table.spans()])
