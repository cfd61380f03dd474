"""Who may use the handheld's route page: an access code, the sessions it opens, a throttle.

Every read the page records is signed with the handheld's key, so with an
access code (``[handheld] access_code_file``, required off loopback) every
page and form asks for a session first. ``POST /login`` compares the typed
code in constant time and opens a random session (its cookie HttpOnly,
SameSite=Strict, Path=/, Secure over https) valid for
:data:`SESSION_LIFETIME_S`; sessions live in this process only, so a restart
asks for the code again. After :data:`FREE_FAILURES` wrong codes from one
client, it must wait :data:`FIRST_LOCKOUT_S`, doubling with every further
wrong code up to :data:`MAX_LOCKOUT_S` (:class:`LoginThrottle`). The pages
that use this live in :mod:`edge_agent.handheld_web`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.handheld_config import normalize_code
from protocols.web_paths import local_path

SESSION_COOKIE = "handheld_session"
SESSION_LIFETIME_S = 12 * 3600.0
"""A shift: after it the technician types the code again."""
MAX_SESSIONS = 64
"""Sessions kept at once; opening one more ends the oldest."""
FREE_FAILURES = 5
"""Wrong codes a client may type before it must wait."""
FIRST_LOCKOUT_S = 30.0
"""The wait after the :data:`FREE_FAILURES`-th wrong code; doubled by each further one …"""
MAX_LOCKOUT_S = 3600.0
"""… up to this."""
FORGET_FAILURES_S = 24 * 3600.0
"""Wrong codes older than this (with none since) are forgotten."""
MAX_THROTTLED_CLIENTS = 4096


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this page only, ``/`` for anything else."""
    return local_path(target, refused=frozenset({"/login", "/logout"}))


@dataclass
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Wrong codes per client: :data:`FREE_FAILURES` free, then a wait that doubles each time.

    A right code resets the client. Durations run on a monotonic clock: a
    handheld's wall clock may jump when it first syncs, which must neither lock
    a technician out for hours nor lift a lockout.
    """

    def __init__(
        self, *, free: int = FREE_FAILURES, first_lockout_s: float = FIRST_LOCKOUT_S,
        max_lockout_s: float = MAX_LOCKOUT_S, forget_s: float = FORGET_FAILURES_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.first_lockout_s = first_lockout_s
        self.max_lockout_s = max_lockout_s
        self.forget_s = forget_s
        self._clock = clock
        self._clients: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def lockout_s(self, failures: int) -> float:
        """How long a client must wait after ``failures`` wrong codes in a row."""
        if failures < self.free:
            return 0.0
        doublings = min(failures - self.free, 32)
        return min(self.first_lockout_s * 2**doublings, self.max_lockout_s)

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try a code again; 0 when it may now."""
        with self._lock:
            failures = self._clients.get(client)
            if failures is None:
                return 0.0
            return max(0.0, failures.last + self.lockout_s(failures.count) - self._clock())

    def failed(self, client: str) -> int:
        """Count a wrong code from ``client``; the number of wrong codes in a row."""
        now = self._clock()
        with self._lock:
            self._forget(now)
            failures = self._clients.pop(client, None) or _Failures(0, now)
            failures.count += 1
            failures.last = now
            self._clients[client] = failures  # re-inserted: the dict stays oldest first
            while len(self._clients) > MAX_THROTTLED_CLIENTS:
                del self._clients[next(iter(self._clients))]
            return failures.count

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _forget(self, now: float) -> None:
        stale = [client for client, failures in self._clients.items()
                 if now - failures.last > self.forget_s]
        for client in stale:
            del self._clients[client]


class Sessions:
    """The sessions opened by the access code: random tokens, kept here as their hashes.

    In memory only: a restart of the handheld ends every session. Lifetimes
    run on a monotonic clock (see :class:`LoginThrottle`).
    """

    def __init__(
        self, *, lifetime_s: float = SESSION_LIFETIME_S, limit: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime_s = lifetime_s
        self.limit = limit
        self._clock = clock
        self._expiry: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def open(self) -> str:
        """A new session's token, for the cookie; the oldest session ends when over the limit."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            for key in [key for key, expiry in self._expiry.items() if expiry <= now]:
                del self._expiry[key]
            while len(self._expiry) >= self.limit:
                del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
            self._expiry[_digest(token)] = now + self.lifetime_s
        return token

    def valid(self, token: str | None) -> bool:
        """Whether ``token`` names a session that has not ended."""
        if not token:
            return False
        with self._lock:
            expiry = self._expiry.get(_digest(token))
            return expiry is not None and self._clock() < expiry

    def close(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._expiry.pop(_digest(token), None)

    def __len__(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for expiry in self._expiry.values() if expiry > now)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class AccessControl:
    """The page's access code, the sessions it opened, and the throttle on wrong codes."""

    def __init__(
        self, code: str, *, sessions: Sessions | None = None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self._code = normalize_code(code).encode("utf-8")
        if not self._code:
            raise ValueError("an empty access code would let anyone in")
        self.sessions = sessions if sessions is not None else Sessions()
        self.throttle = throttle if throttle is not None else LoginThrottle()

    def __repr__(self) -> str:
        return f"AccessControl(<code>, {len(self.sessions)} sessions)"

    def matches(self, typed: str) -> bool:
        """Whether ``typed`` is the code, as typed by a person (case, spaces, dashes ignored)."""
        return hmac.compare_digest(normalize_code(typed).encode("utf-8"), self._code)


def wait_text(seconds: float) -> str:
    if seconds < 120:
        return f"{math.ceil(seconds)} seconds"
    return f"{math.ceil(seconds / 60)} minutes"
