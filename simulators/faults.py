"""The ways a simulated meter misbehaves, switchable while it runs.

Field meters fail in a handful of recurring ways — silent, slow, garbled on the
line, or wrong in what they count — and a collector must survive each. Every
protocol simulator reads one :class:`FaultSwitch`; a test (or ``meter-sim`` from
a fleet file) turns faults on and off while the meter serves. Line faults
(``no_answer``, ``slow_answer``, ``garbled``) strike each request with the
switch's ``rate``; value faults hold while they are on.

Example::

    faults = FaultSwitch({Fault.GARBLED}, rate=0.5, seed=7)
    if faults.strikes(Fault.GARBLED):
        frame = faults.garble(frame)
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from enum import StrEnum


class Fault(StrEnum):
    NO_ANSWER = "no_answer"
    SLOW_ANSWER = "slow_answer"
    GARBLED = "garbled"
    """Corrupt the answer: a wrong BCC/CRC or damaged bytes, as line noise does."""
    ROLLOVER = "rollover"
    """Start the registers just below 10^dials so they roll over to zero soon."""
    BACKWARD = "backward"
    """Registers read lower than before (a swapped meter, a reset register)."""
    STUCK = "stuck"
    """Registers stop advancing at the value they had when the fault came on."""
    SPIKE = "spike"
    """Registers jump far beyond any plausible use; instantaneous values × 10."""
    TAMPER = "tamper"
    """The meter's tamper status bit is set."""
    CLOCK_SKEW = "clock_skew"
    """The meter's clock runs ``skew_s`` ahead of true time."""


LINE_FAULTS = frozenset({Fault.NO_ANSWER, Fault.SLOW_ANSWER, Fault.GARBLED})


class FaultSwitch:
    """Which faults a meter shows now. Thread-safe: tests flip it while the meter serves."""

    def __init__(
        self,
        faults: Iterable[Fault | str] = (),
        *,
        rate: float = 1.0,
        slow_s: float = 1.5,
        skew_s: float = 3600.0,
        seed: int = 0,
    ) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"fault rate must be within 0..1, not {rate}")
        self._active = {Fault(fault) for fault in faults}
        self.rate = rate
        self.slow_s = slow_s
        self.skew_s = skew_s
        self._random = random.Random(seed)  # noqa: S311 - simulation, not security
        self._lock = threading.Lock()

    @property
    def active(self) -> frozenset[Fault]:
        with self._lock:
            return frozenset(self._active)

    def set(self, *faults: Fault | str) -> None:
        """Turn ``faults`` on (others stay as they are)."""
        with self._lock:
            self._active.update(Fault(fault) for fault in faults)

    def clear(self, *faults: Fault | str) -> None:
        """Turn ``faults`` off; with no argument, turn every fault off."""
        with self._lock:
            if faults:
                self._active.difference_update(Fault(fault) for fault in faults)
            else:
                self._active.clear()

    def is_on(self, fault: Fault) -> bool:
        with self._lock:
            return fault in self._active

    def strikes(self, fault: Fault) -> bool:
        """Whether ``fault`` hits this request: on, and (for line faults) drawn at ``rate``."""
        with self._lock:
            if fault not in self._active:
                return False
            return fault not in LINE_FAULTS or self._random.random() < self.rate

    def garble(self, frame: bytes) -> bytes:
        """``frame`` with one byte flipped past its first, as a noisy line would."""
        if len(frame) < 2:
            return bytes(b ^ 0x55 for b in frame)
        with self._lock:
            position = self._random.randrange(1, len(frame))
            mask = self._random.randrange(1, 128)
        return frame[:position] + bytes([frame[position] ^ mask]) + frame[position + 1 :]
