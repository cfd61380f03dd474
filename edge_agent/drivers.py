"""Which driver reads a planned meter, built from its profile and its bus settings.

The only place that knows the concrete driver classes: the collector and
``edge-agent read`` ask for a driver and then speak the one interface of
:mod:`protocols.driver`. Serial settings start from the profile (the model's
factory defaults) and are overridden by the bus (what the installer set).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from protocols.channels import Protocol, SerialSettings
from protocols.driver import MeterDriver
from protocols.iec_driver import IecOpticalDriver
from protocols.modbus_driver import ModbusRtuBus, ModbusTcpDriver
from protocols.p1_driver import P1Driver

if TYPE_CHECKING:
    from edge_agent.meter_config import BusConfig
    from edge_agent.meter_plan import MeterPlan

P1_TELEGRAM_TIMEOUT_S = 12.0
"""Unless the bus sets ``timeout_s``: DSMR 4 meters send every 10 s; wait a little longer."""


def serial_settings(base: SerialSettings, bus: BusConfig) -> SerialSettings:
    """The profile's line settings with the bus's explicit overrides applied."""
    overrides = {
        name: getattr(bus, name)
        for name in ("baudrate", "parity", "bytesize", "stopbits")
        if getattr(bus, name) is not None
    }
    return replace(base, **overrides)


class LaneLinks:
    """Connections shared by the meters of one lane: today, the RS-485 bus of a Modbus RTU lane."""

    def __init__(self) -> None:
        self._rtu_buses: dict[str, ModbusRtuBus] = {}

    def driver(self, plan: MeterPlan) -> MeterDriver:
        meter, profile, bus = plan.config, plan.profile, plan.bus
        if plan.protocol is Protocol.MODBUS_TCP:
            return ModbusTcpDriver(
                meter.host or "", meter.port, unit_id=meter.unit_id,
                settings=profile.modbus, timeout_s=meter.timeout_s,
            )
        assert bus is not None  # every serial protocol has a bus (checked by plan_meters)
        line = serial_settings(profile.serial, bus)
        if plan.protocol is Protocol.MODBUS_RTU:
            rtu = self._rtu_buses.get(bus.port)
            if rtu is None:
                rtu = self._rtu_buses[bus.port] = ModbusRtuBus(
                    bus.port, serial=line, timeout_s=bus.timeout_s
                )
            return rtu.driver(meter.unit_id, profile.modbus)
        if plan.protocol is Protocol.IEC62056_21:
            return IecOpticalDriver(
                bus.port, settings=profile.iec, address=meter.address,
                response_timeout_s=bus.timeout_s, inter_char_timeout_s=bus.inter_char_timeout_s,
                timezone=bus.timezone or "UTC", echo=bus.echo,
            )
        return P1Driver(
            bus.port, serial=line,
            telegram_timeout_s=(
                bus.timeout_s if "timeout_s" in bus.model_fields_set else P1_TELEGRAM_TIMEOUT_S
            ),
            timezone=bus.timezone or "Europe/Amsterdam",
        )

    def close(self) -> None:
        for rtu in self._rtu_buses.values():
            rtu.close()
        self._rtu_buses.clear()
