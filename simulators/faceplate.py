"""What a simulated meter shows for any channel a profile names, faults included.

The protocol simulators differ only in how they put values on a wire; what the
values *are* lives here once, so a Modbus, an optical and a P1 simulator of the
same meter agree, and a test can compute the expected read independently of the
driver under test. Cumulative registers come from :class:`SimulatedMeter` (real
load shapes); instantaneous values (voltage, current, power, demand, flow) are
derived from the same hourly use, so they are consistent with the registers.

Time can run faster than the wall clock (``speed``), so a one-minute test sees
hours of consumption and a rollover or a spike happens while one watches.

Example::

    face = Faceplate(MeterSpec("E1", Service.ELECTRIC, tou=True), speed=60)
    face.value("energy_import_kwh", "kWh")    # Decimal('0.012')
    face.meter_time()                         # the meter's clock (skewed if faulted)
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from simulators.faults import Fault, FaultSwitch
from simulators.meter_model import MeterSpec, SimulatedMeter, split_start

log = logging.getLogger(__name__)

# Multiply a value in the base unit (kWh, kW, m3, m3/h) by this to express it in the channel's unit.
_UNIT_FACTORS: dict[str, Decimal] = {
    "kwh": Decimal(1), "wh": Decimal(1000), "mwh": Decimal("0.001"),
    "kw": Decimal(1), "w": Decimal(1000),
    "kvarh": Decimal(1), "varh": Decimal(1000), "kvar": Decimal(1), "var": Decimal(1000),
    "m3": Decimal(1), "l": Decimal(1000), "m3/h": Decimal(1), "l/h": Decimal(1000),
    "l/s": Decimal(1000) / 3600,
}
EXPORT_SHARE = Decimal("0.05")
"""Exported energy as a share of imported: a small rooftop system."""
ROLLOVER_LEAD_S = 10
"""Under the rollover fault, registers start about this many wall seconds of use below the wrap."""
SPIKE_FACTOR = 10


class Faceplate:
    """A meter's displayed values at the current (possibly accelerated) simulated time."""

    def __init__(
        self,
        spec: MeterSpec,
        *,
        faults: FaultSwitch | None = None,
        epoch: datetime | None = None,
        speed: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.faults = faults or FaultSwitch()
        self._clock = clock
        self._started = clock()
        self.epoch = epoch or datetime.fromtimestamp(self._started, UTC)
        self.speed = speed
        self.meter = SimulatedMeter(spec, self.epoch)
        self._frozen: dict[str, Decimal] = {}
        self._lock = threading.Lock()
        self._offset = Decimal(0)
        if self.faults.is_on(Fault.ROLLOVER):
            self._offset = self._rollover_offset()

    @property
    def spec(self) -> MeterSpec:
        return self.meter.spec

    def now(self) -> datetime:
        """True simulated time: the epoch plus wall time elapsed × ``speed``."""
        return self.at_wall(self._clock())

    def at_wall(self, timestamp: float) -> datetime:
        """The simulated time at wall-clock ``timestamp`` (what a test compares a read with)."""
        elapsed = (timestamp - self._started) * self.speed
        return self.epoch + timedelta(seconds=max(elapsed, 0.0))

    def meter_time(self, at: datetime | None = None) -> datetime:
        """The meter's clock at simulated instant ``at`` (default: now).

        The clock was set to the epoch when the meter started and ticks in real
        seconds, not at the accelerated ``speed`` its registers run on, so a
        collector polling a fast fleet still sees a plausible clock: drifting per
        the spec, ``skew_s`` ahead under ``clock_skew``.
        """
        at = at or self.now()
        ticked = (at - self.epoch).total_seconds() / self.speed
        shown = self.meter.meter_time(self.epoch + timedelta(seconds=ticked))
        if self.faults.is_on(Fault.CLOCK_SKEW):
            shown += timedelta(seconds=self.faults.skew_s)
        return shown

    def values(self, names: Mapping[str, str], at: datetime | None = None) -> dict[str, Decimal]:
        """Each channel's value, ``names`` mapping channel name → unit."""
        at = at or self.now()
        return {name: self.value(name, unit, at) for name, unit in names.items()}

    def value(self, name: str, unit: str, at: datetime | None = None) -> Decimal:
        at = at or self.now()
        factor = _UNIT_FACTORS.get(unit.lower(), Decimal(1))
        if _is_register(name):
            return self._register(name, at) * factor
        return self._instantaneous(name, at, factor)

    def status_word(self, flags: Mapping[int, str]) -> int:
        """A status register: the bit whose flag names tamper is set under the tamper fault."""
        word = 0
        if self.faults.is_on(Fault.TAMPER):
            for bit, flag in flags.items():
                if "tamper" in flag:
                    word |= 1 << bit
        return word

    def _register(self, name: str, at: datetime) -> Decimal:
        registers = self._registers(at)
        base = _base_register(name)
        value = registers.get(base)
        if value is None:
            log.warning("simulated meter %s has no register %r; showing 0", self.spec.serial, name)
            return Decimal(0)
        faults = self.faults
        with self._lock:
            if faults.is_on(Fault.STUCK):
                value = self._frozen.setdefault(name, value)
            else:
                self._frozen.pop(name, None)
        if faults.is_on(Fault.SPIKE):
            value += Decimal(10) ** (self.spec.dials - 1)
        if faults.is_on(Fault.BACKWARD):
            value -= min(value, max(self.spec.mean_per_day, Decimal(1)))
        return self._truncate(value % (Decimal(10) ** self.spec.dials))

    def _registers(self, at: datetime) -> dict[str, Decimal]:
        """Totals and both TOU registers (every meter has them here; profiles pick)."""
        t1, t2 = self.meter.consumed(at)
        start = self.spec.start_value + self._offset
        total = start + t1 + t2
        export = (t1 + t2) * EXPORT_SHARE
        start_t1, start_t2 = split_start(start)
        t1, t2 = start_t1 + t1, start_t2 + t2
        registers = {
            "energy_import": total, "energy_import_t1": t1, "energy_import_t2": t2,
            "energy_export": export, "energy_export_t1": export * t1 / max(t1 + t2, Decimal(1)),
            "energy_export_t2": export * t2 / max(t1 + t2, Decimal(1)),
            "energy_total": total + export,
            "volume": total, "volume_t1": t1, "volume_t2": t2, "volume_reverse": Decimal(0),
        }
        for phase in ("l1", "l2", "l3"):  # a balanced three-phase load
            registers[f"energy_import_{phase}"] = total / 3
            registers[f"energy_export_{phase}"] = export / 3
        return registers

    def _instantaneous(self, name: str, at: datetime, factor: Decimal) -> Decimal:
        hours = int((at - self.epoch).total_seconds() // 3600)
        rate = self.meter.hourly_use(hours)  # kWh in this hour = mean kW; m3/h for water
        wobble = Decimal(str(round(math.sin(at.timestamp() / 600), 4)))
        if self.faults.is_on(Fault.SPIKE):
            rate *= SPIKE_FACTOR
        if name.startswith("voltage"):
            value = Decimal(230) + 3 * wobble
        elif name.startswith("current"):
            value = rate * 1000 / Decimal(230)
        elif name.startswith("frequency"):
            value = Decimal(50) + wobble / 20
        elif name.startswith("power_factor"):
            value = Decimal("0.95") + wobble / 50
        elif name.startswith(("demand", "max_demand")):
            value = rate * Decimal("1.25") * factor
        elif name.startswith(("power_failures", "long_power_failures", "voltage_sags")):
            return Decimal(0)  # event counters: a quiet grid
        elif name.startswith(("active_power", "flow")):
            value = rate * factor
        else:
            log.warning("simulated meter %s has no value %r; showing 0", self.spec.serial, name)
            return Decimal(0)
        return value.quantize(Decimal("0.001"), rounding=ROUND_DOWN)

    def _truncate(self, value: Decimal) -> Decimal:
        return value.quantize(Decimal(1).scaleb(-self.spec.decimals), rounding=ROUND_DOWN)

    def _rollover_offset(self) -> Decimal:
        """Offset placing the total register ``ROLLOVER_LEAD_S`` of use below 10^dials."""
        per_second = self.spec.mean_per_day / 86400 * Decimal(str(self.speed))
        lead_use = per_second * ROLLOVER_LEAD_S
        ceiling = Decimal(10) ** self.spec.dials
        resolution = Decimal(1).scaleb(-self.spec.decimals)
        return ceiling - self.spec.start_value - max(lead_use, resolution)


def _is_register(name: str) -> bool:
    return name.startswith(("energy_", "volume"))


def _base_register(name: str) -> str:
    """``energy_import_kwh_t1`` → ``energy_import_t1``: the quantity without its unit."""
    parts = [part for part in name.split("_") if part not in {"kwh", "wh", "mwh", "m3", "l"}]
    return "_".join(parts)
