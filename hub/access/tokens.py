"""API tokens: bearer secrets for other systems, stored only as a SHA-256 hash.

A token is ``mh_`` and 43 URL-safe characters (256 random bits). That much
entropy makes a plain SHA-256 the right hash at rest: there is nothing to
guess, so a slow password hash would only slow every request. The token is
shown once when made; the hub keeps its id, name, role and hash, so a stolen
database gives no usable token.

Example::

    with store.begin() as conn:
        made = create_token(conn, "cis-export", Role.VIEWER, created_by="admin")
    print(made.secret)            # give this to the CIS, once
    with store.begin() as conn:
        token = authenticate(conn, made.secret)   # -> ApiToken, or None
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from hub.access.roles import AccessError, Role, parse_role
from hub.store.tables import api_tokens

PREFIX = "mh_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written at most once a minute per token: not a write per request."""


@dataclass(frozen=True)
class ApiToken:
    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(conn: Connection, name: str, role: Role | str, *, created_by: str,
                 expires_at: datetime | None = None, now: datetime | None = None) -> NewToken:
    role = role if isinstance(role, Role) else parse_role(role)
    if not name.strip() or len(name) > 128:
        raise AccessError("a token needs a name of 1 to 128 characters (who or what uses it)")
    now = now or datetime.now(UTC)
    token_id = f"tok-{secrets.token_hex(4)}"
    secret = PREFIX + secrets.token_urlsafe(32)
    conn.execute(insert(api_tokens).values(
        id=token_id, name=name, role=role.value, token_hash=token_hash(secret), created_at=now,
        created_by=created_by, expires_at=expires_at,
    ))
    return NewToken(get_token(conn, token_id), secret)


def get_token(conn: Connection, token_id: str) -> ApiToken:
    row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
    if row is None:
        raise AccessError(f"no token {token_id}")
    return _token(row)


def list_tokens(conn: Connection) -> list[ApiToken]:
    rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id))
    return [_token(row) for row in rows]


def revoke_token(conn: Connection, token_id: str, *, now: datetime | None = None) -> ApiToken:
    token = get_token(conn, token_id)
    if token.revoked_at is not None:
        raise AccessError(f"token {token_id} was already revoked at "
                          f"{token.revoked_at:%Y-%m-%d %H:%M}Z")
    conn.execute(update(api_tokens).where(api_tokens.c.id == token_id)
                 .values(revoked_at=now or datetime.now(UTC)))
    return get_token(conn, token_id)


def authenticate(conn: Connection, secret: str, *, now: datetime | None = None) -> ApiToken | None:
    """The usable token ``secret`` is, or None (unknown, revoked or expired)."""
    if not secret.startswith(PREFIX) or len(secret) > 128:
        return None
    now = now or datetime.now(UTC)
    row = conn.execute(select(api_tokens)
                       .where(api_tokens.c.token_hash == token_hash(secret))).first()
    if row is None:
        return None
    token = _token(row)
    if not token.usable(now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        conn.execute(update(api_tokens).where(api_tokens.c.id == token.id)
                     .values(last_used_at=now))
    return token


def _token(row: Row[Any]) -> ApiToken:
    return ApiToken(id=row.id, name=row.name, role=Role(row.role), created_at=row.created_at,
                    created_by=row.created_by, expires_at=row.expires_at,
                    revoked_at=row.revoked_at, last_used_at=row.last_used_at)
