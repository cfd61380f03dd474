"""Consumption between reads: register deltas, rollover at the dial count, daily usage.

Shared by the rules and the estimator so that both read a history the same
way. A cumulative register that reads lower than before either *rolled
over* at its dial count (10^dials − 1 → 0, normal, the use is current +
10^dials − previous) or went *backward* (a reset, a swapped meter, a
misread). It counts as a rollover only when the wrapped use is small next to
the dial capacity (``max_wrap_share``): a 6-dial register going from 999 990
to 10 used 20; one going from 500 000 to 499 990 did not use 999 990.

Days are exact: seconds between the instants / 86 400, as a ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from hub.edits.model import MeterRead, ReadKind

SECONDS_PER_DAY = Decimal(86400)


def is_cumulative(name: str) -> bool:
    """Registers that only ever grow until they roll over; demand and instantaneous ones don't."""
    return name.startswith(("energy_", "volume"))


def days_between(start: datetime, end: datetime) -> Decimal:
    """Exact days from ``start`` to ``end`` (negative when ``end`` is earlier)."""
    delta = end - start
    return (Decimal(delta.days) * SECONDS_PER_DAY + Decimal(delta.seconds)
            + Decimal(delta.microseconds) / 1_000_000) / SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class Delta:
    """Use between two register values: ``used`` (negative when it went backward)."""

    used: Decimal
    rolled: bool = False

    @property
    def backward(self) -> bool:
        return self.used < 0


def register_delta(previous: Decimal, current: Decimal, dials: int,
                   max_wrap_share: Decimal = Decimal("0.1")) -> Delta:
    """The use from ``previous`` to ``current`` on a register of ``dials`` dials."""
    used = current - previous
    if used >= 0:
        return Delta(used)
    capacity = Decimal(10) ** dials
    wrapped = used + capacity
    if 0 <= wrapped <= capacity * max_wrap_share:
        return Delta(wrapped, rolled=True)
    return Delta(used)


@dataclass(frozen=True, slots=True)
class Interval:
    """One register's use between two consecutive reads of a history."""

    start: datetime
    end: datetime
    used: Decimal
    days: Decimal
    rolled: bool
    estimated: bool
    """Either end was estimated (or overridden): not a measured use."""

    @property
    def per_day(self) -> Decimal | None:
        return self.used / self.days if self.days > 0 else None


def intervals(reads: Sequence[MeterRead], register: str, dials: int,
              max_wrap_share: Decimal = Decimal("0.1")) -> list[Interval]:
    """The use of ``register`` between each pair of consecutive ``reads`` that both carry it."""
    found: list[Interval] = []
    previous: MeterRead | None = None
    for read in reads:
        value = read.registers.get(register)
        if value is None:
            continue
        if previous is not None:
            delta = register_delta(previous.registers[register], value, dials, max_wrap_share)
            found.append(Interval(
                previous.read_at, read.read_at, delta.used,
                days_between(previous.read_at, read.read_at), delta.rolled,
                previous.kind is not ReadKind.ACTUAL or read.kind is not ReadKind.ACTUAL))
        previous = read
    return found


def average_daily_usage(spans: Sequence[Interval]) -> Decimal | None:
    """Total use over total days of ``spans``, leaving out backward ones; None without days."""
    used = Decimal(0)
    days = Decimal(0)
    for span in spans:
        if span.used < 0 or span.days <= 0:
            continue
        used += span.used
        days += span.days
    return used / days if days > 0 else None
