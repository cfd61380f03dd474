"""Flags the gateway can raise on its own, before any read leaves it.

The hub runs the full meter edits; the edge only marks what it can see from
one meter's consecutive reads, so that an operator looking at a read knows the
gateway already found it odd: a register that went backwards (or rolled over
at its dial count, which is normal and informational), one that has not moved
for too long, one that rose faster than the meter could physically measure, and
a meter clock beyond tolerance. Flags never change a value; the read is kept
exactly as the meter gave it.

Pure functions over plain data: the collector keeps one :class:`RegisterMemory`
per meter and passes it back in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

ROLLOVER_HIGH_SHARE = Decimal("0.9")
ROLLOVER_LOW_SHARE = Decimal("0.1")
DEFAULT_MAX_PER_HOUR = {"kwh": Decimal(250), "wh": Decimal(250_000), "mwh": Decimal("0.25"),
                        "m3": Decimal(100), "l": Decimal(100_000)}
"""Use per hour beyond which a register rise is a spike, by unit, unless the meter sets its own."""


@dataclass(frozen=True)
class Limits:
    dials: int = 6
    max_use_per_hour: Decimal | None = None
    stuck_after_s: float = 86400
    clock_tolerance_s: float = 300


@dataclass
class _Seen:
    value: Decimal
    at: datetime
    unchanged_since: datetime


@dataclass
class RegisterMemory:
    """The last value of each cumulative register of one meter."""

    registers: dict[str, _Seen] = field(default_factory=dict)


def is_cumulative(name: str) -> bool:
    """Registers that only ever grow (until they roll over); instantaneous values are not."""
    return name.startswith(("energy_", "volume"))


def plausibility_flags(
    memory: RegisterMemory,
    values: Mapping[str, tuple[Decimal, str]],
    at: datetime,
    meter_offset_s: Decimal | None,
    limits: Limits,
) -> tuple[str, ...]:
    """Flags for a new read of ``values`` (name → (value, unit)) at ``at``; updates ``memory``."""
    flags: set[str] = set()
    if meter_offset_s is not None and abs(meter_offset_s) > Decimal(str(limits.clock_tolerance_s)):
        flags.add("clock_skew")
    ceiling = Decimal(10) ** limits.dials
    for name, (value, unit) in values.items():
        if not is_cumulative(name):
            continue
        seen = memory.registers.get(name)
        if seen is None or at <= seen.at:
            memory.registers[name] = _Seen(value, at, at)
            continue
        delta = value - seen.value
        if delta < 0:
            rolled = (
                seen.value >= ceiling * ROLLOVER_HIGH_SHARE
                and value < ceiling * ROLLOVER_LOW_SHARE
            )
            flags.add("rollover" if rolled else "backward")
            if rolled:
                delta += ceiling
        hours = Decimal(str((at - seen.at).total_seconds())) / 3600
        limit = limits.max_use_per_hour or DEFAULT_MAX_PER_HOUR.get(unit.lower())
        if delta > 0 and limit is not None and delta > limit * max(hours, Decimal("0.01")):
            flags.add("spike")
        unchanged_since = seen.unchanged_since if delta == 0 else at
        if delta == 0 and (at - unchanged_since).total_seconds() >= limits.stuck_after_s:
            flags.add("stuck")
        memory.registers[name] = _Seen(value, at, unchanged_since)
    return tuple(sorted(flags))
