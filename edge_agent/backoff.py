"""Exponential back-off with jitter, so a fleet does not reconnect in lock-step.

When a broker restarts, every gateway loses its link in the same second;
without jitter they would all retry in the same seconds too, and keep doing
so. "Equal jitter": each delay is half the exponential step plus a random
share of the other half — it still grows, and the fleet spreads out.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays of min·2ⁿ (capped at max), each drawn from [step/2, step]."""

    def __init__(self, minimum_s: float, maximum_s: float, *,
                 rng: Callable[[], float] = random.random) -> None:
        if not 0 < minimum_s <= maximum_s:
            raise ValueError("need 0 < minimum_s <= maximum_s")
        self.minimum_s = minimum_s
        self.maximum_s = maximum_s
        self._rng = rng
        self._failures = 0

    def next(self) -> float:
        """The delay before the next attempt, one failure later."""
        step = min(self.maximum_s, self.minimum_s * 2 ** min(self._failures, 32))
        self._failures += 1
        return step / 2 + step / 2 * self._rng()

    def reset(self) -> None:
        """The link works again: the next failure starts from the minimum."""
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures
