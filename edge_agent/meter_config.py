"""The ``[collection]``, ``[[bus]]`` and ``[[meter]]`` sections: what the agent polls, and how.

A gateway's config names its serial buses once and each meter once; the
protocol of a meter follows from where it hangs (a Modbus RTU bus, an optical
port, a P1 port, or a TCP address), and its register map from its firmware
profile. Mistakes that only show at the meter — a profile for the wrong
protocol, two meters on one address, a bus nobody defined — are caught here,
at start, with the key that is wrong.

Example::

    [collection]
    retries = 2                  # attempts after the first failure of a poll
    retry_backoff_s = 0.5        # doubled per attempt, with jitter

    [[bus]]
    name = "rs485-a"
    protocol = "modbus_rtu"      # modbus_rtu | iec62056_21 | dsmr_p1
    port = "/dev/ttyUSB0"
    baudrate = 9600

    [[meter]]
    serial = "E1001"
    profile = "eastron-sdm120"   # or: model = "SDM120", firmware = "2.4"
    bus = "rs485-a"
    unit_id = 1
    interval_s = 900

    [[meter]]
    serial = "E2001"
    profile = "abb-b23"
    host = "10.0.0.7"            # Modbus TCP
    port = 502
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from protocols.channels import Protocol
from protocols.read import METER_RE, Source
from protocols.time_zones import load_zone

MeterSerial = Annotated[str, StringConstraints(pattern=f"^{METER_RE.pattern}$")]
SERIAL_PROTOCOLS = (Protocol.MODBUS_RTU, Protocol.IEC62056_21, Protocol.DSMR_P1)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CollectionSection(_Section):
    """How polls are retried and spread; defaults suit a gateway on a quiet bus."""

    source: Source = Source.AMI
    default_interval_s: float = Field(default=900, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    tcp_lanes: int = Field(default=16, ge=1, le=256)
    clock_tolerance_s: float = Field(default=300, gt=0)
    health_path: str = "health.json"
    profile_dirs: list[str] = Field(default_factory=list)


class BusConfig(_Section):
    """A serial line: an RS-485 Modbus bus, an optical probe, or a P1 port."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    protocol: Literal["modbus_rtu", "iec62056_21", "dsmr_p1"]
    port: str
    baudrate: int | None = Field(default=None, gt=0)
    parity: Literal["N", "E", "O"] | None = None
    bytesize: Literal[7, 8] | None = None
    stopbits: Literal[1, 2] | None = None
    timeout_s: float = Field(default=1.0, gt=0)
    inter_char_timeout_s: float = Field(default=0.5, gt=0)
    echo: bool = False
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        """Meters stamp local time; an unknown zone would only fail at the first read."""
        if zone is not None:
            load_zone(zone)
        return zone


class MeterConfig(_Section):
    """One meter: who it is, which profile reads it, where it is, how often."""

    serial: MeterSerial
    profile: str | None = None
    model: str | None = None
    firmware: str | None = None
    bus: str | None = None
    host: str | None = None
    port: int = Field(default=502, gt=0, lt=65536)
    unit_id: int = Field(default=1, ge=0, le=247)
    address: str = ""
    interval_s: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)
    dials: int = Field(default=6, ge=1, le=12)
    max_use_per_hour: Decimal | None = Field(default=None, gt=0)
    stuck_after_s: float = Field(default=86400, gt=0)
    submeters: dict[int, MeterSerial] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_place_and_one_profile(self) -> MeterConfig:
        if (self.bus is None) == (self.host is None):
            raise ValueError("give exactly one of bus (a serial line) or host (Modbus TCP)")
        if (self.profile is None) == (self.model is None):
            raise ValueError("give exactly one of profile or model (+ firmware)")
        if self.model is not None and self.firmware is None:
            raise ValueError("model needs firmware, to select the profile for it")
        return self


def meter_protocol(meter: MeterConfig, buses: dict[str, BusConfig]) -> Protocol:
    """The protocol a meter is read with: its bus's, or Modbus TCP for a host."""
    if meter.host is not None:
        return Protocol.MODBUS_TCP
    return Protocol(buses[meter.bus or ""].protocol)
