"""What a simulated meter measures: cumulative registers that grow like real load.

Every protocol simulator serves these registers; the physics lives here once,
so a Modbus and an optical simulator of the same meter agree. The model is
deterministic — the register value at an instant depends only on the meter's
spec and that instant — so a test can compute what a driver *should* read
without sharing any of the driver's code.

Consumption per hour = mean daily use / 24 × a daily shape for the service
(electric evening peak, water morning and evening, gas heating mornings) ×
a per-hour pseudo-random factor in [0.6, 1.4] seeded by serial and hour.
Registers truncate to the meter's decimals, as mechanical and most electronic
registers do, and roll over at 10^dials.

Example::

    meter = SimulatedMeter(MeterSpec("SDM120-0001", Service.ELECTRIC, tou=True), epoch)
    meter.registers(epoch + timedelta(days=30))
    # {'energy_import_kwh': Decimal('361.204'), 'energy_import_kwh_t1': ..., ...}
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum


class Service(StrEnum):
    ELECTRIC = "electric"
    WATER = "water"
    GAS = "gas"


# Relative use by hour of day (00..23); each sums to 24 so the mean factor is 1.
_SHAPES: dict[Service, tuple[Decimal, ...]] = {
    Service.ELECTRIC: tuple(Decimal(x) for x in (
        "0.50", "0.45", "0.42", "0.42", "0.45", "0.60", "0.95", "1.30", "1.25", "1.00",
        "0.90", "0.90", "0.95", "0.90", "0.88", "0.95", "1.15", "1.60", "1.95", "1.90",
        "1.65", "1.30", "0.90", "0.69")),
    Service.WATER: tuple(Decimal(x) for x in (
        "0.20", "0.10", "0.08", "0.08", "0.10", "0.40", "1.80", "2.60", "2.00", "1.20",
        "1.00", "1.00", "1.10", "1.00", "0.90", "0.90", "1.00", "1.30", "1.60", "1.70",
        "1.50", "1.20", "0.80", "0.44")),
    Service.GAS: tuple(Decimal(x) for x in (
        "0.60", "0.55", "0.55", "0.60", "0.80", "1.40", "2.00", "2.00", "1.60", "1.10",
        "0.90", "0.80", "0.80", "0.80", "0.80", "0.90", "1.10", "1.40", "1.50", "1.40",
        "1.20", "1.00", "0.80", "0.60")),
}
_UNITS = {Service.ELECTRIC: "kWh", Service.WATER: "m3", Service.GAS: "m3"}
_TOTAL_REGISTER = {
    Service.ELECTRIC: "energy_import_kwh", Service.WATER: "volume_m3", Service.GAS: "volume_m3",
}
DAY_TARIFF_HOURS = range(7, 23)
DAY_TARIFF_START_SHARE = Decimal("0.6")
"""The share of a meter's starting total already on its day-tariff register."""


def split_start(start: Decimal) -> tuple[Decimal, Decimal]:
    """A starting total split over the two tariff registers, so they sum to it as real ones do."""
    day = (start * DAY_TARIFF_START_SHARE).quantize(Decimal(1), rounding=ROUND_DOWN)
    return day, start - day
"""Hours billed at tariff 1 (day) when the meter has TOU registers; the rest are tariff 2."""


@dataclass(frozen=True)
class MeterSpec:
    """A meter's identity and how it behaves."""

    serial: str
    service: Service
    dials: int = 6
    decimals: int = 3
    mean_per_day: Decimal = Decimal("12")
    start_value: Decimal = Decimal("0")
    tou: bool = False
    clock_drift_ppm: int = 0
    seed: int = 0

    @property
    def unit(self) -> str:
        return _UNITS[self.service]

    @property
    def total_register(self) -> str:
        return _TOTAL_REGISTER[self.service]


@dataclass
class SimulatedMeter:
    """A meter whose registers can be asked for at any instant after its epoch."""

    spec: MeterSpec
    epoch: datetime
    _cumulative: list[tuple[Decimal, Decimal]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware")
        self._cumulative = [(Decimal(0), Decimal(0))]  # (tariff 1, tariff 2) at each hour

    def hourly_use(self, hour_index: int) -> Decimal:
        """Consumption in hour ``hour_index`` after the epoch."""
        spec = self.spec
        hour_of_day = (self.epoch + timedelta(hours=hour_index)).hour
        noise = random.Random(f"{spec.serial}:{spec.seed}:{hour_index}").randint(600, 1400)  # noqa: S311 - simulation, not security
        return spec.mean_per_day / 24 * _SHAPES[spec.service][hour_of_day] * noise / 1000

    def consumed(self, at: datetime) -> tuple[Decimal, Decimal]:
        """Exact (tariff 1, tariff 2) consumption from the epoch to ``at``."""
        seconds = Decimal((at - self.epoch).total_seconds())
        if seconds < 0:
            raise ValueError(f"{at} is before the meter's epoch {self.epoch}")
        whole_hours = int(seconds // 3600)
        while len(self._cumulative) <= whole_hours:
            hour = len(self._cumulative) - 1
            t1, t2 = self._cumulative[-1]
            use = self.hourly_use(hour)
            if (self.epoch + timedelta(hours=hour)).hour in DAY_TARIFF_HOURS:
                t1 += use
            else:
                t2 += use
            self._cumulative.append((t1, t2))
        t1, t2 = self._cumulative[whole_hours]
        partial = self.hourly_use(whole_hours) * (seconds - whole_hours * 3600) / 3600
        if (self.epoch + timedelta(hours=whole_hours)).hour in DAY_TARIFF_HOURS:
            return t1 + partial, t2
        return t1, t2 + partial

    def registers(self, at: datetime) -> dict[str, Decimal]:
        """What the meter's registers show at ``at`` (truncated, rolled over)."""
        t1, t2 = self.consumed(at)
        total_name = self.spec.total_register
        registers = {total_name: self._register(self.spec.start_value + t1 + t2)}
        if self.spec.tou:
            start_t1, start_t2 = split_start(self.spec.start_value)
            registers[f"{total_name}_t1"] = self._register(start_t1 + t1)
            registers[f"{total_name}_t2"] = self._register(start_t2 + t2)
        return registers

    def meter_time(self, at: datetime) -> datetime:
        """The meter's own clock at true time ``at``, drifting by ``clock_drift_ppm``."""
        elapsed = (at - self.epoch).total_seconds()
        return (at + timedelta(seconds=elapsed * self.spec.clock_drift_ppm / 1e6)).astimezone(UTC)

    def _register(self, value: Decimal) -> Decimal:
        quantum = Decimal(1).scaleb(-self.spec.decimals)
        rolled = value % (Decimal(10) ** self.spec.dials)
        return rolled.quantize(quantum, rounding=ROUND_DOWN)
