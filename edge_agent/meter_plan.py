"""From the configured meters to what the collector polls: protocol, profile, bus, interval.

Resolving a meter's profile and checking it against its bus is done once, at
load, for every meter, so that all mistakes of a config are reported together
(``meter[3].profile: no profile eastron-sdm12``) rather than one per restart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.drivers import serial_settings
from edge_agent.meter_config import BusConfig, MeterConfig, meter_protocol
from firmware_profiles import Profile, ProfileError, ProfileLibrary
from protocols.channels import Protocol, SerialSettings

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig


class MeterPlanError(Exception):
    """Meters that cannot be polled as configured; ``problems`` lists ``(key, why)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {why}" for key, why in problems))


@dataclass(frozen=True)
class MeterPlan:
    """One meter as the collector polls it."""

    config: MeterConfig
    protocol: Protocol
    profile: Profile
    bus: BusConfig | None
    interval_s: float

    @property
    def serial(self) -> str:
        return self.config.serial

    @property
    def lane(self) -> str:
        """Meters sharing a lane are polled one transaction at a time: one per serial bus."""
        return plan_lane(self.config, self.bus)


def plan_meters(config: AgentConfig) -> list[MeterPlan]:
    """Every configured meter resolved, or :class:`MeterPlanError` listing all problems."""
    problems = _duplicates(config)
    buses = config.buses
    if not config.meter:
        return []
    library = ProfileLibrary.load([Path(d) for d in config.collection.profile_dirs])
    plans: list[MeterPlan] = []
    addresses: Counter[tuple[str, int | str]] = Counter()
    for index, meter in enumerate(config.meter):
        key = f"meter[{index}]"
        if meter.bus is not None and meter.bus not in buses:
            problems.append((f"{key}.bus", f"no [[bus]] named {meter.bus!r}"))
            continue
        protocol = meter_protocol(meter, buses)
        try:
            profile = (
                library.get(meter.profile) if meter.profile is not None
                else library.select(meter.model or "", meter.firmware or "")
            )
        except ProfileError as exc:
            problems.append((f"{key}.{'profile' if meter.profile else 'model'}", str(exc)))
            continue
        if profile.protocol != protocol.family:
            problems.append((
                f"{key}.profile",
                f"profile {profile.id} speaks {profile.protocol}, but the meter is on "
                f"{protocol.value}",
            ))
            continue
        bus = buses.get(meter.bus) if meter.bus else None
        addresses[(plan_lane(meter, bus), _address(meter, protocol))] += 1
        plans.append(MeterPlan(
            config=meter, protocol=protocol, profile=profile, bus=bus,
            interval_s=meter.interval_s or config.collection.default_interval_s,
        ))
    for (lane, address), count in addresses.items():
        if count > 1:
            problems.append(("meter", f"{count} meters share address {address} on {lane}"))
    problems.extend(_mixed_line_settings(config, plans))
    if problems:
        raise MeterPlanError(problems)
    return plans


def _mixed_line_settings(config: AgentConfig, plans: list[MeterPlan]) -> list[tuple[str, str]]:
    """An RS-485 line runs at one speed and framing; its meters' defaults must agree.

    A Modbus RTU bus opens its port once, for every meter on it. When the bus sets
    no line settings, each meter's profile supplies its factory defaults, and two
    models with different defaults (an SDM120 at 2400 baud beside an EM340 at 9600)
    cannot both be right: one of them would never answer. Say so at load, naming
    both, rather than poll with whichever meter came first.
    """
    by_bus: dict[str, dict[SerialSettings, MeterPlan]] = {}
    for plan in plans:
        if plan.protocol is Protocol.MODBUS_RTU and plan.bus is not None:
            line = serial_settings(plan.profile.serial, plan.bus)
            by_bus.setdefault(plan.bus.name, {}).setdefault(line, plan)
    index = {bus.name: i for i, bus in enumerate(config.bus)}
    return [
        (f"bus[{index[name]}]", f"{name}: its meters' profiles disagree on the line settings ("
         + "; ".join(f"{plan.serial} ({plan.profile.id}): {_line(line)}"
                     for line, plan in lines.items())
         + "); one RS-485 line has one: set baudrate, parity, bytesize and stopbits on the bus")
        for name, lines in by_bus.items() if len(lines) > 1
    ]


def _line(line: SerialSettings) -> str:
    return f"{line.baudrate} {line.bytesize}{line.parity}{line.stopbits}"


def _duplicates(config: AgentConfig) -> list[tuple[str, str]]:
    checks = (
        ("bus", "bus name", [bus.name for bus in config.bus]),
        ("bus", "port", [bus.port for bus in config.bus]),
        ("meter", "meter serial", [meter.serial for meter in config.meter]),
    )
    return [
        (key, f"{what} {value!r} is used {count} times")
        for key, what, values in checks
        for value, count in Counter(values).items()
        if count > 1
    ]


def plan_lane(meter: MeterConfig, bus: BusConfig | None) -> str:
    return f"bus:{bus.name}" if bus else f"tcp:{meter.host}:{meter.port}"


def _address(meter: MeterConfig, protocol: Protocol) -> int | str:
    """What tells meters on one line apart: unit id, IEC address, or nothing (P1: one meter)."""
    if protocol in (Protocol.MODBUS_RTU, Protocol.MODBUS_TCP):
        return meter.unit_id
    if protocol is Protocol.IEC62056_21:
        return meter.address or "(no address)"
    return "(the port)"
