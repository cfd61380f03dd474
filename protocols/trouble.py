"""Trouble and skip codes: why a technician came back from a meter without a read.

A trouble report travels as a read like any other (signed, chained, synced)
whose flags carry ``trouble_<code>``; it may carry no register at all, since
there was nothing to read. The hub's reconciliation marks such a meter
``trouble`` with the codes instead of ``missing``.
"""

from __future__ import annotations

from enum import StrEnum

from protocols.read import TROUBLE_FLAG_PREFIX as FLAG_PREFIX


class Trouble(StrEnum):
    NO_ACCESS = "no_access"
    DOG = "dog"
    LOCKED_GATE = "locked_gate"
    DAMAGED = "damaged"
    METER_CHANGED = "meter_changed"
    METER_MISSING = "meter_missing"
    OBSTRUCTED = "obstructed"
    UNSAFE = "unsafe"
    LEAK = "leak"
    SKIPPED = "skipped"

    @property
    def flag(self) -> str:
        return FLAG_PREFIX + self.value

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    Trouble.NO_ACCESS: "No access",
    Trouble.DOG: "Dog",
    Trouble.LOCKED_GATE: "Locked gate",
    Trouble.DAMAGED: "Meter damaged",
    Trouble.METER_CHANGED: "Meter changed (other serial on site)",
    Trouble.METER_MISSING: "Meter missing",
    Trouble.OBSTRUCTED: "Dial obstructed / unreadable",
    Trouble.UNSAFE: "Unsafe to approach",
    Trouble.LEAK: "Leak seen",
    Trouble.SKIPPED: "Skipped (time, weather)",
}


def trouble_codes(flags: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The trouble codes among a read's flags, without the prefix."""
    return tuple(f.removeprefix(FLAG_PREFIX) for f in flags if f.startswith(FLAG_PREFIX))
