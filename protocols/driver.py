"""The one interface every meter protocol implements, and the errors it may raise.

The collector polls Modbus, optical and P1 meters the same way — connect, read
the channels a profile names, close — so it never knows which protocol it is
talking to (the OpenMUC idea). Everything that can go wrong on a wire is one of
a few typed errors naming the meter's port and what was seen, so that the
collector can count failures by kind and a technician can read the log.

Example::

    with ModbusTcpDriver("10.0.0.7", 502, unit_id=1, settings=profile.modbus) as meter:
        [sample] = meter.read(profile.channels)
        sample.values["energy_import_kwh"].value   # Decimal('1234.567')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType, TracebackType
from typing import Protocol as TypingProtocol
from typing import Self

from protocols.channels import Channel


class MeterError(Exception):
    """Base of every error a driver raises; ``where`` names the port or host and meter."""

    kind = "meter_error"

    def __init__(self, message: str, *, where: str = "", raw: bytes | None = None) -> None:
        self.where = where
        self.detail = message
        self.raw = raw
        super().__init__(f"{where}: {message}" if where else message)


class LinkError(MeterError):
    """The port or host could not be opened or connected (no device, refused, unplugged)."""

    kind = "link"


class TimeoutError_(MeterError):
    """An answer started but did not complete in time (inter-character or block timeout)."""

    kind = "timeout"


class NoResponse(TimeoutError_):
    """Nothing at all came back within the response timeout."""

    kind = "no_response"


class FrameError(MeterError):
    """Bytes came back but do not form a valid frame (garbled, truncated, wrong shape)."""

    kind = "frame"


class ChecksumError(FrameError):
    """A frame whose BCC, CRC-16 or Modbus CRC does not match its contents."""

    kind = "checksum"


class DeviceError(MeterError):
    """The meter answered with a refusal (a Modbus exception response, an IEC error set)."""

    kind = "device"

    def __init__(self, message: str, *, code: int | None = None, where: str = "") -> None:
        self.code = code
        super().__init__(message, where=where)


class ProfileError(MeterError):
    """A profile that does not fit the meter or the protocol (unknown channel, bad type)."""

    kind = "profile"


@dataclass(frozen=True)
class ChannelValue:
    """One register value exactly as the meter gave it after scaling."""

    value: Decimal
    unit: str
    obis: str | None = None


@dataclass(frozen=True)
class MeterSample:
    """What one meter (or one M-Bus sub-meter) said in one read.

    ``meter_time`` is the meter's own clock when it reports one (UTC), else
    ``None``: the collector then uses its own time. ``identity`` is the serial
    or equipment id the meter reported about itself, when it did.
    ``mbus_channel`` is 0 for the meter itself, n for its n-th M-Bus sub-meter.
    """

    values: Mapping[str, ChannelValue]
    meter_time: datetime | None = None
    flags: tuple[str, ...] = ()
    identity: str | None = None
    mbus_channel: int = 0
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.meter_time is not None and self.meter_time.tzinfo is None:
            raise ValueError("meter_time must be timezone-aware")
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        object.__setattr__(self, "flags", tuple(sorted(set(self.flags))))


class MeterDriver(TypingProtocol):
    """Connect, read channels, close — the whole contract between collector and protocol."""

    where: str

    def connect(self) -> None:
        """Open the port or connection; raise :class:`LinkError` when it cannot be."""

    def read(self, channels: Sequence[Channel]) -> list[MeterSample]:
        """Read ``channels``; the meter's own sample first, then any M-Bus sub-meters."""

    def close(self) -> None:
        """Release the port; safe to call twice or after a failed connect."""


class DriverBase:
    """Context-manager plumbing shared by the drivers."""

    where: str = ""

    def connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
