"""Slow down password guessing at the login form: a few tries, then a wait.

After :data:`MAX_FAILURES` wrong passwords for one user name (from anywhere)
within :data:`WINDOW`, that name is refused for the rest of the window, even
with the right password — so guessing costs hours, not seconds, while a
person who mistyped three times is not locked out. Kept in memory per hub
process: with N workers behind a load balancer an attacker gets N times the
tries, still far too few to matter against a 12-character minimum.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

MAX_FAILURES = 5
WINDOW = 15 * 60.0


class LoginThrottle:
    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def retry_after(self, user: str) -> float:
        """Seconds until ``user`` may try again; 0 when it may try now."""
        with self._lock:
            recent = self._recent(user)
            if len(recent) < self.max_failures:
                return 0.0
            return max(0.0, recent[0] + self.window_s - self._clock())

    def failed(self, user: str) -> None:
        with self._lock:
            self._recent(user).append(self._clock())

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(user.casefold(), None)

    def _recent(self, user: str) -> deque[float]:
        failures = self._failures[user.casefold()]
        while failures and failures[0] <= self._clock() - self.window_s:
            failures.popleft()
        while len(failures) > self.max_failures:
            failures.popleft()
        return failures
