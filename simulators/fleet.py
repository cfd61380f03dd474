"""Many simulated meters at once, from a fleet file, each on a real socket or pty.

A fleet is what a test engineer puts in front of a collector: Modbus TCP meters
on their own ports, RS-485 buses of Modbus RTU meters (one pty per bus, several
unit ids on it), optical meters and P1 ports on ptys, each meter with its own
load and its own faults. The fleet also writes the ``[[bus]]`` and ``[[meter]]``
sections an edge agent needs to poll it, so a demo or a test can start a fleet
and an agent without anyone copying device paths by hand.

Example ``fleet.yaml``::

    speed: 60                 # simulated seconds per wall-clock second
    meters:
      - {serial: E1001, profile: eastron-sdm120, protocol: modbus_tcp}
      - {serial: E2001, profile: abb-b23, protocol: modbus_rtu, bus: rs485-a, unit_id: 2,
         faults: [garbled], fault_rate: 0.3}
      - {serial: L3001, profile: landis-gyr-zmd310, protocol: iec62056_21}
      - {serial: P4001, profile: sagemcom-t210d, protocol: dsmr_p1, gas_serial: G4001}
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from firmware_profiles import Profile, ProfileError, ProfileLibrary
from protocols.channels import ModbusChannel, ObisChannel, SerialSettings
from simulators.faceplate import Faceplate
from simulators.faults import Fault, FaultSwitch
from simulators.iec_meter import IecMeterSimulator
from simulators.meter_model import MeterSpec, Service
from simulators.modbus_server import ModbusRtuSimulator, ModbusTcpSimulator, SimulatedDevice
from simulators.p1_emitter import P1Emitter
from simulators.serial_link import VirtualCable
from simulators.serving import Serving

log = logging.getLogger(__name__)

SimProtocol = Literal["modbus_tcp", "modbus_rtu", "iec62056_21", "dsmr_p1"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FleetMeter(_Model):
    serial: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")]
    profile: str
    protocol: SimProtocol
    port: int = Field(default=0, ge=0, lt=65536)
    unit_id: int = Field(default=1, ge=1, le=247)
    bus: str | None = None
    baudrate: int | None = Field(default=None, gt=0)
    """Line speed of a Modbus RTU bus, instead of the profile's factory default."""
    address: str = ""
    service: Service | None = None
    mean_per_day: Decimal = Field(default=Decimal(12), gt=0)
    dials: int = Field(default=6, ge=1, le=12)
    decimals: int = Field(default=3, ge=0, le=6)
    start_value: Decimal = Field(default=Decimal(0), ge=0)
    clock_drift_ppm: int = 0
    faults: list[Fault] = Field(default_factory=list)
    fault_after_s: float = Field(default=0, ge=0)
    """Switch the faults on this long after the start (a register can only go backward
    or jump after it was first read normally)."""
    fault_rate: float = Field(default=1.0, ge=0, le=1)
    slow_s: float = Field(default=1.5, ge=0)
    skew_s: float = 3600.0
    dsmr_version: Literal["4.2", "5.0"] = "5.0"
    interval_s: float | None = Field(default=None, gt=0)
    """P1 telegram period; default as the version sends: 1 s (DSMR 5) or 10 s (4.x)."""
    gas_serial: str | None = None
    poll_interval_s: float | None = Field(default=None, gt=0)


class FleetFile(_Model):
    speed: float = Field(default=1.0, gt=0)
    seed: int = 0
    epoch: datetime | None = None
    baud_check: bool = True
    pace: bool = False
    """Deliver serial bytes no faster than their baud rate, as a real line does."""
    meters: list[FleetMeter]


class FleetError(Exception):
    """A fleet file that cannot be started; names the file and each problem."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {key}: {why}" for key, why in problems)
        super().__init__(f"{source}: invalid fleet\n{lines}")


def load_fleet(path: Path) -> FleetFile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise FleetError(str(path), [("(file)", str(exc))]) from None
    try:
        return FleetFile.model_validate(raw)
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in e["loc"]) or "(root)", e["msg"])
                    for e in exc.errors()]
        raise FleetError(str(path), problems) from None


@dataclass
class RunningMeter:
    """One simulated meter: where a collector finds it, and the switch of its faults."""

    config: FleetMeter
    profile: Profile
    endpoint: str
    faceplate: Faceplate
    gas: Faceplate | None = None

    @property
    def faults(self) -> FaultSwitch:
        return self.faceplate.faults


@dataclass
class Fleet:
    """Started simulators; stop them all with :meth:`stop` (or use as a context manager)."""

    meters: list[RunningMeter] = field(default_factory=list)
    buses: dict[str, str] = field(default_factory=dict)
    _stoppers: list[Callable[[], None]] = field(default_factory=list)
    """What to call to stop each started part (simulators, cables, fault timers)."""

    def meter(self, serial: str) -> RunningMeter:
        return next(m for m in self.meters if m.config.serial == serial)

    def stop(self) -> None:
        for stop in reversed(self._stoppers):
            try:
                stop()
            except OSError as exc:
                log.warning("stopping %s: %s", stop, exc)
        self._stoppers.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def manifest(self) -> dict[str, object]:
        return {
            "buses": self.buses,
            "meters": [
                {"serial": m.config.serial, "profile": m.profile.id,
                 "protocol": m.config.protocol, "endpoint": m.endpoint,
                 "unit_id": m.config.unit_id, "faults": [f.value for f in m.config.faults],
                 "epoch": m.faceplate.epoch.isoformat(), "speed": m.faceplate.speed}
                for m in self.meters
            ],
        }

    def agent_sections(
        self, *, interval_s: float = 5.0, extra: dict[str, dict[str, object]] | None = None
    ) -> str:
        """``[[bus]]`` and ``[[meter]]`` TOML for an edge agent polling this fleet.

        ``extra`` adds settings to chosen meters (serial → {key: value}), e.g. a
        short ``stuck_after_s`` for a test.
        """
        lines: list[str] = []
        for name, path in self.buses.items():
            first = next(m for m in self.meters if _bus_name(m.config) == name)
            protocol = first.config.protocol
            lines += ["[[bus]]", f"name = {_toml(name)}", f"protocol = {_toml(protocol)}",
                      f"port = {_toml(path)}"]
            if protocol == "modbus_rtu":  # one line for all its meters, as the bus runs it
                line = _line(first.config, first.profile)
                lines += [f"baudrate = {line.baudrate}", f"parity = {_toml(line.parity)}",
                          f"bytesize = {line.bytesize}", f"stopbits = {line.stopbits}"]
            elif first.config.baudrate:
                lines.append(f"baudrate = {first.config.baudrate}")
            lines.append("")
        for meter in self.meters:
            config = meter.config
            lines += ["[[meter]]", f"serial = {_toml(config.serial)}",
                      f"profile = {_toml(meter.profile.id)}",
                      f"interval_s = {config.poll_interval_s or interval_s}"]
            if config.protocol == "modbus_tcp":
                host, port = meter.endpoint.rsplit(":", 1)
                lines += [f"host = {_toml(host)}", f"port = {port}"]
            else:
                lines.append(f"bus = {_toml(_bus_name(config))}")
            if config.protocol.startswith("modbus"):
                lines.append(f"unit_id = {config.unit_id}")
            if config.address:
                lines.append(f"address = {_toml(config.address)}")
            lines.append(f"dials = {config.dials}")
            if config.gas_serial:
                lines.append(f"submeters = {{1 = {_toml(config.gas_serial)}}}")
            for key, value in (extra or {}).get(config.serial, {}).items():
                lines.append(f"{key} = {_toml(value) if isinstance(value, str) else value}")
            lines.append("")
        return "\n".join(lines)


def _toml(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def _bus_name(meter: FleetMeter) -> str:
    return meter.bus or f"{meter.protocol}-{meter.serial}"


def start_fleet(
    fleet: FleetFile, *, library: ProfileLibrary | None = None, host: str = "127.0.0.1"
) -> Fleet:
    """Start every meter of ``fleet``; on any failure, stop what started and raise."""
    library = library or ProfileLibrary.load()
    profiles = _profiles(fleet, library)
    running = Fleet()
    try:
        faceplates = {m.serial: _faceplate(m, profiles[m.serial], fleet) for m in fleet.meters}
        running._stoppers += [
            _delayed_faults(m, faceplates[m.serial]).cancel
            for m in fleet.meters if m.fault_after_s and m.faults
        ]
        rtu_buses: dict[str, list[FleetMeter]] = defaultdict(list)
        for meter in fleet.meters:
            if meter.protocol == "modbus_rtu":
                rtu_buses[_bus_name(meter)].append(meter)
                continue
            running.meters.append(_start_single(meter, profiles[meter.serial],
                                                faceplates[meter.serial], fleet, running, host))
        for name, members in rtu_buses.items():
            cable = _cable(fleet, running)
            devices = {
                m.unit_id: SimulatedDevice(faceplates[m.serial], _modbus(profiles[m.serial]))
                for m in members
            }
            simulator = ModbusRtuSimulator(cable.meter_path, devices=devices,
                                           serial=_line(members[0], profiles[members[0].serial]))
            simulator.start()
            running._stoppers.append(simulator.stop)
            running.buses[name] = cable.device_path
            running.meters += [
                RunningMeter(m, profiles[m.serial], cable.device_path, faceplates[m.serial])
                for m in members
            ]
    except BaseException:
        running.stop()
        raise
    return running


def _profiles(fleet: FleetFile, library: ProfileLibrary) -> dict[str, Profile]:
    problems, profiles = [], {}
    for index, meter in enumerate(fleet.meters):
        try:
            profile = library.get(meter.profile)
        except ProfileError as exc:
            problems.append((f"meters.{index}.profile", str(exc)))
            continue
        family = "modbus" if meter.protocol.startswith("modbus") else meter.protocol
        if profile.protocol != family:
            problems.append((f"meters.{index}.protocol",
                             f"profile {profile.id} speaks {profile.protocol}"))
        profiles[meter.serial] = profile
    serials = [m.serial for m in fleet.meters]
    problems += [("meters", f"serial {s!r} is used twice") for s in set(serials)
                 if serials.count(s) > 1]
    if problems:
        raise FleetError("fleet", problems)
    return profiles


def _faceplate(meter: FleetMeter, profile: Profile, fleet: FleetFile) -> Faceplate:
    service = meter.service or Service(profile.service)
    spec = MeterSpec(
        meter.serial, service, dials=meter.dials, decimals=meter.decimals,
        mean_per_day=meter.mean_per_day, start_value=meter.start_value,
        tou=True, clock_drift_ppm=meter.clock_drift_ppm, seed=fleet.seed,
    )
    faults = FaultSwitch(() if meter.fault_after_s else meter.faults, rate=meter.fault_rate,
                         slow_s=meter.slow_s, skew_s=meter.skew_s,
                         seed=zlib.crc32(f"{fleet.seed}:{meter.serial}".encode()))
    return Faceplate(spec, faults=faults, epoch=fleet.epoch, speed=fleet.speed)


def _delayed_faults(meter: FleetMeter, faceplate: Faceplate) -> threading.Timer:
    timer = threading.Timer(meter.fault_after_s, faceplate.faults.set, args=meter.faults)
    timer.daemon = True
    timer.start()
    return timer


def _line(meter: FleetMeter, profile: Profile) -> SerialSettings:
    if meter.baudrate is None:
        return profile.serial
    return replace(profile.serial, baudrate=meter.baudrate)


def _modbus(profile: Profile) -> list[ModbusChannel]:
    return [c for c in profile.channels if isinstance(c, ModbusChannel)]


def _obis(profile: Profile) -> list[ObisChannel]:
    return [c for c in profile.channels if isinstance(c, ObisChannel)]


def _cable(fleet: FleetFile, running: Fleet) -> VirtualCable:
    cable = VirtualCable(enforce_baud=fleet.baud_check, pace=fleet.pace)
    running._stoppers.append(cable.close)
    return cable


def _start_single(
    meter: FleetMeter, profile: Profile, faceplate: Faceplate, fleet: FleetFile,
    running: Fleet, host: str,
) -> RunningMeter:
    gas = None
    endpoint = ""
    if meter.protocol == "modbus_tcp":
        simulator: Serving = ModbusTcpSimulator(
            host, meter.port,
            devices={meter.unit_id: SimulatedDevice(faceplate, _modbus(profile))},
        )
    else:
        cable = _cable(fleet, running)
        running.buses[_bus_name(meter)] = endpoint = cable.device_path
        if meter.protocol == "iec62056_21":
            simulator = IecMeterSimulator(
                cable.meter_path, faceplate, _obis(profile), settings=profile.iec,
                manufacturer=_iec_manufacturer(profile), address=meter.address,
            )
        else:
            gas_spec = MeterSpec(meter.gas_serial or f"{meter.serial}-gas", Service.GAS,
                                 dials=5, seed=fleet.seed)
            gas = Faceplate(gas_spec, epoch=fleet.epoch, speed=fleet.speed)
            simulator = P1Emitter(
                cable.meter_path, faceplate, _obis(profile), sub_meters={1: gas},
                version=meter.dsmr_version,
                interval_s=meter.interval_s or (1.0 if meter.dsmr_version == "5.0" else 10.0),
            )
    simulator.start()
    running._stoppers.append(simulator.stop)
    # A collector opens the driver's end of a serial meter's cable, not the meter's.
    endpoint = endpoint or simulator.endpoint
    return RunningMeter(meter, profile, endpoint, faceplate, gas)


def _iec_manufacturer(profile: Profile) -> str:
    """The three-letter FLAG id the simulated meter announces (LGZ, ISK, …)."""
    known = {"landis": "LGZ", "iskra": "ISK", "elster": "ELS", "itron": "ACE"}
    for prefix, flag in known.items():
        if profile.manufacturer.lower().startswith(prefix):
            return flag
    return profile.manufacturer[:3].upper().ljust(3, "X")


def parse_faults(text: str | None) -> Sequence[Fault]:
    """``"garbled,tamper"`` → the faults, for the single-meter commands."""
    if not text:
        return []
    return [Fault(part.strip()) for part in text.split(",") if part.strip()]
