"""One read of one meter, outside any schedule: what a technician runs to test a probe.

Builds the same plan and driver the collector would, from command-line
arguments instead of a config file, so a read that works here works in the
agent. Nothing is signed or buffered: this is a test of the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge_agent.drivers import LaneLinks
from edge_agent.meter_config import BusConfig, MeterConfig
from edge_agent.meter_plan import MeterPlan
from firmware_profiles import Profile, ProfileError, ProfileLibrary
from protocols.channels import Protocol
from protocols.driver import MeterSample

ONE_SHOT_SERIAL = "one-shot"


def resolve_profile(
    profile: str | None, model: str | None, firmware: str | None,
    profile_dirs: Sequence[Path] = (),
) -> Profile:
    """A profile by id (or file path), or selected by model and firmware."""
    library = ProfileLibrary.load(list(profile_dirs))
    if profile is not None:
        return library.get(profile)
    if model is None or firmware is None:
        raise ProfileError("give --profile, or --model with --firmware")
    return library.select(model, firmware)


def read_once(
    protocol: Protocol,
    port: str,
    profile: Profile,
    *,
    unit_id: int = 1,
    address: str = "",
    baudrate: int | None = None,
    timeout_s: float | None = None,
    echo: bool = False,
    timezone: str | None = None,
) -> list[MeterSample]:
    """Connect, read every channel of ``profile``, close. ``port`` is ``host:port`` for TCP.

    Without ``timeout_s`` each protocol keeps its own default (a P1 port waits a
    whole DSMR 4 telegram period).
    """
    if profile.protocol != protocol.family:
        raise ProfileError(f"profile {profile.id} speaks {profile.protocol}, not {protocol.value}")
    timeout = {} if timeout_s is None else {"timeout_s": timeout_s}
    if protocol is Protocol.MODBUS_TCP:
        host, _, tcp_port = port.rpartition(":")
        if host and not tcp_port.isdigit():
            raise ValueError(f"{port!r} is not host:port")
        meter = MeterConfig(serial=ONE_SHOT_SERIAL, profile=profile.id, host=host or port,
                            port=int(tcp_port) if host else 502, unit_id=unit_id, **timeout)
        bus = None
    else:
        bus = BusConfig(name="cli", protocol=protocol.value, port=port, baudrate=baudrate,
                        echo=echo, timezone=timezone, **timeout)
        meter = MeterConfig(serial=ONE_SHOT_SERIAL, profile=profile.id, bus="cli",
                            unit_id=unit_id, address=address)
    plan = MeterPlan(config=meter, protocol=protocol, profile=profile, bus=bus, interval_s=1)
    links = LaneLinks()
    try:
        driver = links.driver(plan)
        driver.connect()
        try:
            return driver.read(profile.channels)
        finally:
            driver.close()
    finally:
        links.close()
