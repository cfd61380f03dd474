"""A loaded firmware profile: one meter model and firmware range, ready for a driver.

This is what the rest of meterhub sees: drivers read ``channels`` and the
settings, simulators serve the same channels, the collector selects a profile
by model and firmware. It is plain frozen data, with ``extends`` already
resolved, so nothing downstream needs to know the YAML existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from firmware_profiles.errors import ProfileError
from firmware_profiles.versions import FirmwareRange
from protocols.channels import (
    Channel,
    IecSettings,
    ModbusChannel,
    ModbusSettings,
    ObisChannel,
    Role,
    SerialSettings,
)


@dataclass(frozen=True, kw_only=True)
class Profile:
    """One meter model's register map or OBIS list, for one firmware range.

    ``protocol`` is the family a profile declares (``modbus``, ``iec62056_21``,
    ``dsmr_p1``); ``channels`` are :class:`~protocols.channels.ModbusChannel`
    for Modbus and :class:`~protocols.channels.ObisChannel` otherwise, in file
    order (a variant's base channels first). ``extends`` names the base
    profile of a firmware variant, ``None`` for a base profile.

    Example::

        profile = get_profile("eastron-sdm120")
        profile.channel("energy_import_kwh").address    # 72 (0x0048)
        [c.name for c in profile.value_channels]
    """

    id: str
    manufacturer: str
    model: str
    firmware: FirmwareRange
    protocol: str
    service: str
    source: str
    path: Path
    serial: SerialSettings
    modbus: ModbusSettings
    iec: IecSettings
    channels: tuple[Channel, ...]
    extends: str | None = None
    _by_name: MappingProxyType[str, Channel] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        by_name = {channel.name: channel for channel in self.channels}
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))

    def channel(self, name: str) -> Channel:
        """The channel called ``name``; :class:`ProfileError` naming the ones that exist."""
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name)
            message = f"profile {self.id} has no channel {name!r} (it has: {known})"
            raise ProfileError(message) from None

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    @property
    def value_channels(self) -> tuple[Channel, ...]:
        """The channels that become registers of a read (role ``value``)."""
        return tuple(c for c in self.channels if c.role is Role.VALUE)

    @property
    def modbus_channels(self) -> tuple[ModbusChannel, ...]:
        return tuple(c for c in self.channels if isinstance(c, ModbusChannel))

    @property
    def obis_channels(self) -> tuple[ObisChannel, ...]:
        return tuple(c for c in self.channels if isinstance(c, ObisChannel))

    @property
    def title(self) -> str:
        """``Eastron SDM630 (firmware ≥ 2.0)``: how messages name the profile."""
        return f"{self.manufacturer} {self.model} (firmware {self.firmware})"
