"""What a CIS would hold for a simulated meter: its billed reads of past cycles.

The meter edits judge a cycle's read against the meter's history (average
daily use, same period last year, stuck over N cycles), so a demo or a test
fleet needs a history that agrees with what its simulated meters show now.
This writes one: going back cycle by cycle from the meter's starting value at
the fleet's epoch, each month's use is the meter's mean daily use × the days,
± 20 % (seeded per meter and cycle, so the same fleet gets the same history),
wrapping below zero as a register that rolled over in the past would.

A few shapes make a history for an edits fault a simulator alone cannot
show, because it lies between bills rather than between polls:

- ``flat_last`` — the last N billed reads equal the starting value: with a
  meter that no longer counts, the register is stuck (N ≥ 2) or the cycle's
  use is zero (N = 1);
- ``above_start`` — the last billed read is this many days of use *above*
  the starting value, so the next read goes backward.

The rows are ``meterhub import history``'s columns (docs/master-data.md).

Example::

    rows = history_rows(spec, EPOCH, [date(2026, 10, 3), ...], multiplier=Decimal(1))
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal

from protocols.scalars import format_decimal, format_instant
from simulators.meter_model import MeterSpec, split_start

COLUMNS = ("cycle_id", "meter_serial", "read_at", "read_type", "register", "value",
           "multiplier")
DEMAND_PEAK = Decimal("2.5")
"""A month's peak quarter-hour demand as a multiple of the mean load (kW), on TOU meters."""
READ_TIME = time(9, 0)
"""Past cycles were read at about 09:00 UTC on their scheduled day (plus a per-meter offset)."""


@dataclass(frozen=True)
class HistoryShape:
    flat_last: int = 0
    above_start_days: int = 0


@dataclass(frozen=True)
class PastCycle:
    id: str
    scheduled: date


def history_rows(spec: MeterSpec, epoch: datetime, cycles: Sequence[PastCycle], *,
                 multiplier: Decimal = Decimal(1), shape: HistoryShape = HistoryShape(),
                 installed: tuple[date, date | None] | None = None) -> list[dict[str, str]]:
    """The billed reads of ``spec``'s meter for ``cycles`` (oldest first), as CSV rows."""
    quantum = Decimal(1).scaleb(-spec.decimals)
    capacity = Decimal(10) ** spec.dials
    minute = sum(spec.serial.encode()) % 50
    reads: list[tuple[PastCycle, datetime, Decimal]] = []
    value, later = spec.start_value, epoch
    for back, cycle in enumerate(reversed(cycles)):
        at = datetime.combine(cycle.scheduled, READ_TIME, UTC) + timedelta(minutes=minute)
        days = Decimal((later - at).total_seconds()) / 86400
        noise = Decimal(random.Random(f"{spec.serial}:history:{back}").randint(80, 120)) / 100  # noqa: S311 - simulation, not security
        if back < shape.flat_last:
            pass  # the register did not move
        elif back == 0 and shape.above_start_days:
            value = spec.start_value + spec.mean_per_day * shape.above_start_days
        else:
            value -= spec.mean_per_day * days * noise
        shown = value % capacity  # Decimal's % keeps the sign: wrap a negative one up
        shown = shown + capacity if shown < 0 else shown
        reads.append((cycle, at, shown.quantize(quantum, rounding=ROUND_DOWN)))
        later = at
    rows = []
    ordered = list(reversed(reads))
    if installed is not None:
        ordered = _with_install_read(spec, epoch, cycles, ordered, installed[0], quantum,
                                     capacity)
    for cycle, at, total in ordered:
        if installed is not None and not _installed_on(at.date(), installed):
            continue
        registers = {spec.total_register: total}
        if spec.tou:
            day, night = split_start(total)
            registers[f"{spec.total_register}_t1"] = day.quantize(quantum)
            registers[f"{spec.total_register}_t2"] = night.quantize(quantum)
            registers["demand_kw"] = (spec.mean_per_day / 24 * DEMAND_PEAK).quantize(quantum)
        rows.extend({"cycle_id": cycle.id, "meter_serial": spec.serial,
                     "read_at": format_instant(at), "read_type": "actual", "register": name,
                     "value": format_decimal(value), "multiplier": format_decimal(multiplier)}
                    for name, value in registers.items())
    return rows


def _with_install_read(spec: MeterSpec, epoch: datetime, cycles: Sequence[PastCycle],
                       reads: list[tuple[PastCycle, datetime, Decimal]], installed: date,
                       quantum: Decimal, capacity: Decimal
                       ) -> list[tuple[PastCycle, datetime, Decimal]]:
    """A meter set during the history gets its install read, as a CIS records it.

    It is filed under the last cycle scheduled before the install day (the
    meter had no read of its own in that cycle), so the next bill has a start.
    """
    at = datetime.combine(installed, READ_TIME, UTC)
    earlier = [c for c in cycles if c.scheduled <= installed]
    if not earlier or at >= epoch:
        return reads
    days = Decimal((epoch - at).total_seconds()) / 86400
    value = spec.start_value - spec.mean_per_day * days
    shown = value % capacity
    shown = shown + capacity if shown < 0 else shown
    kept = [r for r in reads if r[1].date() >= installed]
    return [(earlier[-1], at, shown.quantize(quantum, rounding=ROUND_DOWN)), *kept]


def monthly_cycles(first: date, count: int, prefix: str = "C") -> list[PastCycle]:
    """``count`` monthly cycles scheduled on ``first``'s day of the month, oldest first."""
    cycles = []
    for n in range(count):
        month = first.month - 1 + n
        scheduled = date(first.year + month // 12, month % 12 + 1, first.day)
        cycles.append(PastCycle(f"{prefix}{scheduled:%Y-%m}", scheduled))
    return cycles


def _installed_on(day: date, installed: tuple[date, date | None]) -> bool:
    start, end = installed
    return start <= day and (end is None or day <= end)

