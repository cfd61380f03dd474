"""The ``[handheld]`` section: the agent as a technician's handheld (``edge-agent route``).

A handheld is configured once by the utility and then carried for years by
people who never see the file, so every setting is checked at start: the page
listens on loopback unless told otherwise (it has no login), and the probe's
protocol is one a handheld probe can speak. Relative paths are relative to the
config file, like the rest of the agent's config.

Example::

    [handheld]
    listen_host = "127.0.0.1"        # its own browser; anything else needs --allow-remote
    listen_port = 8080
    routes_path = "routes.sqlite"    # routes received over MQTT, and the visits made
    probe_protocol = "iec62056_21"   # or "modbus_rtu"
    probe_port = "/dev/ttyUSB0"      # the optical head's (or RS-485 adapter's) serial device
    probe_baudrate = 300             # optional: override the profile's rate
    probe_timeout_s = 2.0            # optional: response timeout (default: the protocol's)
    probe_echo = true                # the optical head echoes what it sends
    probe_unit_id = 1                # Modbus RTU only
    meter_timezone = "Europe/Vienna" # time zone of the meters' clocks (IEC)
    default_profile = "landis-gyr-zmd310"  # for stops whose route names no profile
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocols.time_zones import load_zone


class HandheldSection(BaseModel):
    """Where the route page listens, where routes are kept, and how the probe is reached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8080, ge=1, le=65535)
    routes_path: Path = Path("routes.sqlite")
    probe_protocol: Literal["iec62056_21", "modbus_rtu"] = "iec62056_21"
    probe_port: str | None = None
    """None: manual reads and trouble still work; "read with probe" says why it cannot."""
    probe_baudrate: int | None = Field(default=None, gt=0)
    probe_timeout_s: float | None = Field(default=None, gt=0)
    probe_echo: bool = False
    probe_unit_id: int = Field(default=1, ge=0, le=247)
    meter_timezone: str | None = None
    default_profile: str | None = None

    @field_validator("meter_timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        """Checked at load: a bad zone would otherwise fail the technician's first probe read."""
        if zone is not None:
            load_zone(zone)
        return zone

    def resolved(self, base: Path) -> HandheldSection:
        """``routes_path`` made relative to ``base`` (the config file's directory)."""
        return self.model_copy(update={"routes_path": base / self.routes_path})
