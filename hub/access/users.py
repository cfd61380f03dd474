"""Operator logins for the web pages: a name, a role and a scrypt password hash.

Passwords are people's, so unlike API tokens they are hashed slowly (scrypt,
N=2^15, r=8, p=1: about 0.1 s here), with a random salt each, and the
parameters stored beside the hash so they can be raised later without
locking anyone out.

Sessions live in the database (``web_sessions``), keyed by a SHA-256 of the
cookie's random value: a logout, an expiry or a disabled user ends a session
everywhere at once, and a stolen database holds no usable cookie.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import Connection, insert, select, update

from hub.access.roles import AccessError, Role, parse_role
from hub.store.tables import web_sessions, web_users

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LENGTH = 2**15, 8, 1, 32
MIN_PASSWORD = 12
SESSION_LIFETIME = timedelta(hours=12)
"""A shift: an operator logs in once a day, a forgotten browser does not stay in for a week."""
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")


@dataclass(frozen=True)
class WebUser:
    name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class Session:
    user: str
    role: Role
    csrf: str
    expires_at: datetime


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    key = _scrypt(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).derive(password.encode("utf-8"))
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     _b64(salt), _b64(key)))


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        _scrypt(_unb64(salt), int(n), int(r), int(p)).verify(password.encode("utf-8"),
                                                               _unb64(key))
    except (ValueError, InvalidKey):
        return False
    return True


def add_user(conn: Connection, name: str, role: Role | str, password: str, *,
             now: datetime | None = None) -> WebUser:
    role = role if isinstance(role, Role) else parse_role(role)
    if not name or len(name) > 128 or not set(name) <= _NAME_CHARS:
        raise AccessError(f"{name!r} is not a user name (letters, digits, '.', '_', '@', '-')")
    check_password_strength(password)
    if conn.execute(select(web_users.c.name).where(web_users.c.name == name)).first():
        raise AccessError(f"user {name} already exists")
    conn.execute(insert(web_users).values(name=name, role=role.value, created_at=now or
                                          datetime.now(UTC), password_hash=hash_password(password)))
    return get_user(conn, name)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccessError(f"a password needs at least {MIN_PASSWORD} characters")


def set_password(conn: Connection, name: str, password: str) -> None:
    get_user(conn, name)
    check_password_strength(password)
    conn.execute(update(web_users).where(web_users.c.name == name)
                 .values(password_hash=hash_password(password)))
    end_sessions(conn, name)


def set_role(conn: Connection, name: str, role: Role | str) -> WebUser:
    role = role if isinstance(role, Role) else parse_role(role)
    get_user(conn, name)
    conn.execute(update(web_users).where(web_users.c.name == name).values(role=role.value))
    return get_user(conn, name)


def disable_user(conn: Connection, name: str, *, now: datetime | None = None) -> WebUser:
    user = get_user(conn, name)
    if user.disabled_at is not None:
        raise AccessError(f"user {name} is already disabled")
    conn.execute(update(web_users).where(web_users.c.name == name)
                 .values(disabled_at=now or datetime.now(UTC)))
    end_sessions(conn, name)
    return get_user(conn, name)


def get_user(conn: Connection, name: str) -> WebUser:
    row = conn.execute(select(web_users).where(web_users.c.name == name)).first()
    if row is None:
        raise AccessError(f"no user {name}")
    return WebUser(row.name, Role(row.role), row.created_at, row.disabled_at)


def list_users(conn: Connection) -> list[WebUser]:
    return [WebUser(r.name, Role(r.role), r.created_at, r.disabled_at)
            for r in conn.execute(select(web_users).order_by(web_users.c.name))]


def log_in(conn: Connection, name: str, password: str, *,
           now: datetime | None = None) -> tuple[str, Session] | None:
    """(cookie value, session) for a right name and password of an enabled user, else None.

    A wrong name costs the same scrypt as a wrong password, so the time taken
    does not tell which names exist.
    """
    row = conn.execute(select(web_users).where(web_users.c.name == name)).first()
    stored = row.password_hash if row is not None else _dummy_hash()
    if not password_matches(password, stored) or row is None or row.disabled_at is not None:
        return None
    now = now or datetime.now(UTC)
    cookie = secrets.token_urlsafe(32)
    session = Session(row.name, Role(row.role), secrets.token_urlsafe(24),
                      now + SESSION_LIFETIME)
    conn.execute(insert(web_sessions).values(
        id_hash=_session_hash(cookie), user=row.name, csrf=session.csrf, created_at=now,
        expires_at=session.expires_at,
    ))
    return cookie, session


def session_for(conn: Connection, cookie: str, *, now: datetime | None = None) -> Session | None:
    """The live session of ``cookie``: not ended, not expired, its user enabled."""
    if not cookie or len(cookie) > 128:
        return None
    now = now or datetime.now(UTC)
    row = conn.execute(
        select(web_sessions.c.user, web_sessions.c.csrf, web_sessions.c.expires_at,
               web_sessions.c.ended_at, web_users.c.role, web_users.c.disabled_at)
        .join(web_users, web_users.c.name == web_sessions.c.user)
        .where(web_sessions.c.id_hash == _session_hash(cookie))
    ).first()
    if row is None or row.ended_at is not None or row.disabled_at is not None \
            or row.expires_at <= now:
        return None
    return Session(row.user, Role(row.role), row.csrf, row.expires_at)


def log_out(conn: Connection, cookie: str, *, now: datetime | None = None) -> None:
    conn.execute(update(web_sessions).where(
        (web_sessions.c.id_hash == _session_hash(cookie)) & web_sessions.c.ended_at.is_(None)
    ).values(ended_at=now or datetime.now(UTC)))


def end_sessions(conn: Connection, name: str, *, now: datetime | None = None) -> None:
    conn.execute(update(web_sessions).where(
        (web_sessions.c.user == name) & web_sessions.c.ended_at.is_(None)
    ).values(ended_at=now or datetime.now(UTC)))


def csrf_matches(expected: str | None, presented: str | None) -> bool:
    """Constant-time: a CSRF token must not be guessable a character at a time."""
    return bool(expected) and presented is not None and hmac.compare_digest(
        expected.encode(), presented.encode())


def _session_hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()


def _scrypt(salt: bytes, n: int, r: int, p: int) -> Scrypt:
    return Scrypt(salt=salt, length=SCRYPT_LENGTH, n=n, r=r, p=p)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
