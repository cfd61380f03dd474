"""What a driver is asked to read: channels, as firmware profiles describe them.

A channel maps one thing a meter exposes (a Modbus register block, an OBIS data
set) to one canonical register name of the read (``energy_import_kwh``,
``volume_m3`` …). These are plain frozen dataclasses so that the drivers, the
profile loader (``firmware_profiles``) and the simulators can share the *data*
without sharing any code path: the loader builds them from YAML, a driver reads
them, a simulator serves them.

Example::

    ModbusChannel(name="energy_import_kwh", unit="kWh", obis="1-0:1.8.0",
                  address=0x0048, function=4, data_type=DataType.FLOAT32)
    ObisChannel(name="volume_m3", unit="m3", obis="0-1:24.2.1", code="0-1:24.2.1",
                group=1, mbus_channel=1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType


class DataType(StrEnum):
    """How a Modbus value is laid out in 16-bit registers."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        """Number of 16-bit registers the value occupies."""
        return {"16": 1, "32": 2, "64": 4}[self.value[-2:]]

    @property
    def is_float(self) -> bool:
        return self.value.startswith("float")


class ByteOrder(StrEnum):
    """Order of bytes inside each register, or of registers inside a value."""

    BIG = "big"
    LITTLE = "little"


class Role(StrEnum):
    """What a channel contributes to a sample.

    Only ``value`` channels become registers of the read; the others feed the
    sample's flags (``status``: a bit field, bit → flag name), its meter time
    (``clock``: a full timestamp; ``clock_date`` + ``clock_time``: IEC 0.9.2 and
    0.9.1), or the identity the meter reports (``identity``: serial number).
    """

    VALUE = "value"
    STATUS = "status"
    CLOCK = "clock"
    CLOCK_DATE = "clock_date"
    CLOCK_TIME = "clock_time"
    IDENTITY = "identity"


class Protocol(StrEnum):
    """The wire protocols meterhub speaks to meters."""

    MODBUS_RTU = "modbus_rtu"
    MODBUS_TCP = "modbus_tcp"
    IEC62056_21 = "iec62056_21"
    DSMR_P1 = "dsmr_p1"

    @property
    def family(self) -> str:
        """What a profile declares: ``modbus`` covers both RTU and TCP."""
        return "modbus" if self.value.startswith("modbus") else self.value


@dataclass(frozen=True, kw_only=True)
class Channel:
    """One value of a meter, under its canonical register name.

    ``scale`` multiplies the raw value exactly (``Decimal``), e.g. ``0.01`` for a
    counter in hundredths of a kWh. A ``status`` channel names its bits in
    ``flags``; a set bit without a name becomes the flag ``status_bit_<n>``.
    """

    name: str
    unit: str = ""
    obis: str | None = None
    scale: Decimal = Decimal(1)
    role: Role = Role.VALUE
    flags: Mapping[int, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", MappingProxyType(dict(self.flags)))


@dataclass(frozen=True, kw_only=True)
class ModbusChannel(Channel):
    """A value at ``address`` read with ``function`` 3 (holding) or 4 (input registers)."""

    address: int
    function: int = 3
    data_type: DataType = DataType.UINT16
    byte_order: ByteOrder = ByteOrder.BIG
    word_order: ByteOrder = ByteOrder.BIG

    @property
    def count(self) -> int:
        return self.data_type.registers

    @property
    def end(self) -> int:
        """First address after this value."""
        return self.address + self.count


@dataclass(frozen=True, kw_only=True)
class ObisChannel(Channel):
    """A data set ``code(value*unit)(…)`` in an IEC 62056-21 readout or a DSMR telegram.

    ``code`` is matched as the meter writes it (``1.8.0`` in many optical
    readouts, ``1-0:1.8.0`` in DSMR). ``group`` picks the parenthesised value
    when a set has several (DSMR gas: group 0 is the capture time, group 1 the
    volume). ``mbus_channel`` > 0 marks a sub-meter (DSMR M-Bus gas, water): its
    values form their own sample with its own timestamp.
    """

    code: str
    group: int = 0
    mbus_channel: int = 0


@dataclass(frozen=True, kw_only=True)
class ModbusSettings:
    """How a model wants to be read over Modbus, from its profile.

    ``max_block`` caps the registers one request may ask for when adjacent
    channels are merged; ``max_gap`` is how many unused registers a merged
    request may span (some meters answer an exception for unmapped addresses,
    so their profiles set it to 0); ``merge: false`` reads each channel alone.
    """

    merge: bool = True
    max_block: int = 100
    max_gap: int = 0


@dataclass(frozen=True, kw_only=True)
class IecSettings:
    """Optical-port behaviour of a model, from its profile (see DOMAIN.md)."""

    mode: str = "C"
    initial_baud: int = 300
    max_baud: int = 9600
    reaction_s: float = 0.2
    switch_delay_s: float = 0.3
    honours_baud_switch: bool = True
    wakeup: bool = False


@dataclass(frozen=True, kw_only=True)
class SerialSettings:
    """Default line settings of a model's serial port."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1


def status_flags(word: int, flags: Mapping[int, str]) -> tuple[str, ...]:
    """Flag names for the set bits of a status ``word``; unnamed bits become ``status_bit_<n>``.

    >>> status_flags(0b101, {0: "tamper"})
    ('status_bit_2', 'tamper')
    """
    if word < 0:
        raise ValueError(f"a status word is unsigned, not {word}")
    set_bits = (bit for bit in range(word.bit_length()) if word >> bit & 1)
    names = {flags.get(bit, f"status_bit_{bit}") for bit in set_bits}
    return tuple(sorted(names))
