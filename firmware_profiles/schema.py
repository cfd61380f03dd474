"""The shape of a profile file, as pydantic models: types and ranges, key by key.

These models only say what each key may hold; rules that span keys (a status
channel needs flags, two Modbus channels must not share a register, a variant
keeps its base's protocol) live in :mod:`firmware_profiles.loader`, which can
report them with the exact key path. Every top-level key is optional here so
that a firmware variant may list only what differs; the loader decides what a
complete profile must have.

Numbers that must be exact are never YAML floats: a scale of ``0.1`` written
as a float is already inexact, so scales are decimal strings (``"0.1"``) or
integers, and versions are strings (``"1.10"`` would otherwise become 1.1).

A profile file (its name without ``.yaml`` is its ``id``)::

    id: eastron-sdm120
    manufacturer: Eastron
    model: SDM120                       # what a meter config names; any case
    firmware: {min: "1.0", max: null}   # inclusive; null = open end
    protocol: modbus                    # modbus | iec62056_21 | dsmr_p1
    service: electric                   # electric | water | gas
    source: "Eastron SDM120-Modbus protocol V2.4, <url>"
    serial: {baudrate: 2400, bytesize: 8, parity: N, stopbits: 1}
    modbus: {merge: true, max_block: 40, max_gap: 0,           # -> ModbusSettings
             function: 4, data_type: float32, byte_order: big, word_order: big}  # defaults
    channels:
      energy_import_kwh: {address: 0x0048, unit: kWh, obis: "1-0:1.8.0"}
      energy_import_kwh_t1: {address: 0x0100, type: int32, scale: "0.01", unit: kWh}
      alarms: {address: 0x0200, type: uint16, role: status, flags: {0: tamper, 1: leak}}

An ``iec62056_21`` or ``dsmr_p1`` channel names its data set instead of an
address: ``{code: "1-0:1.8.1", unit: kWh, group: 0, mbus_channel: 0}``; its
``obis`` defaults to the code when the code is an OBIS code. An ``iec:``
section (→ ``IecSettings``) belongs to ``iec62056_21`` profiles only. Roles:
``value`` (the default; needs a unit), ``status`` (needs ``flags``: bit →
flag name), ``clock``, ``clock_date``, ``clock_time``, ``identity``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from protocols.channels import ByteOrder, DataType, Role
from protocols.read import FLAG_RE, OBIS_RE, UNIT_RE

PROTOCOLS = ("modbus", "iec62056_21", "dsmr_p1")
SERVICES = ("electric", "water", "gas")
BAUD_RATES = (300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200)
IEC_BAUD_RATES = (300, 600, 1200, 2400, 4800, 9600, 19200)
MAX_MODBUS_BLOCK = 125
"""Registers one read (function 3 or 4) may return, by the Modbus specification."""


def _exact_decimal(value: object) -> Decimal:
    """A scale from YAML: a decimal string or an integer, never a float."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, float):
        raise ValueError(
            f"write it as a string, e.g. scale: \"{value!r}\" — a YAML float is inexact"
        )
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return number
    raise ValueError("must be a decimal string such as \"0.01\", or an integer")


def _version_text(value: object) -> str:
    """A firmware version: a string (an integer is accepted as its digits), never a float."""
    if isinstance(value, bool):
        raise ValueError("must be a version string, not true/false")
    if isinstance(value, float):
        raise ValueError(
            f"quote it: \"{value!r}\" — a YAML number loses trailing zeros (1.10 becomes 1.1)"
        )
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 32:
        raise ValueError("must be a version string of 1–32 characters, e.g. \"1.0\" or \"B32\"")
    return value.strip()


def _matching(pattern_name: str, pattern: Any, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    check.__name__ = f"check_{pattern_name}"
    return AfterValidator(check)


def _register_address(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a register address: an integer 0..65535, e.g. 0x0048")
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{value} is outside 0..65535")
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_decimal)]
Version = Annotated[str, BeforeValidator(_version_text)]
Unit = Annotated[StrictStr, _matching("unit", UNIT_RE, "a unit (1–16 printable characters)")]
Obis = Annotated[StrictStr, _matching("obis", OBIS_RE, "an OBIS code such as 1-0:1.8.0")]
FlagName = Annotated[
    StrictStr, _matching("flag", FLAG_RE, "a flag name (lowercase letters, digits, _)")
]
Address = Annotated[int, BeforeValidator(_register_address)]
Text = Annotated[StrictStr, Field(min_length=1, max_length=500)]
DataSetCode = Annotated[
    StrictStr,
    _matching("code", re.compile(r"[^\s()*]{1,24}(?:\*[^\s()*]{1,8})?"),
              "a data-set code as the meter writes it, e.g. 1.8.0 or 1-0:1.8.0*255"),
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FirmwareSpec(_Spec):
    """``firmware: {min: "1.0", max: null}``: an inclusive range, ``null`` for an open end."""

    min: Version | None = None
    max: Version | None = None


class SerialSpec(_Spec):
    """``serial:`` line settings of the meter's port."""

    baudrate: Literal[BAUD_RATES] | None = None  # type: ignore[valid-type]
    bytesize: Literal[7, 8] | None = None
    parity: Literal["N", "E", "O"] | None = None
    stopbits: Literal[1, 2] | None = None


class ModbusSectionSpec(_Spec):
    """``modbus:`` request merging (→ ``ModbusSettings``) and channel defaults."""

    merge: StrictBool | None = None
    max_block: Annotated[StrictInt, Field(ge=1, le=MAX_MODBUS_BLOCK)] | None = None
    max_gap: Annotated[StrictInt, Field(ge=0, le=MAX_MODBUS_BLOCK)] | None = None
    function: Literal[3, 4] | None = None
    data_type: DataType | None = None
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None


class IecSectionSpec(_Spec):
    """``iec:`` optical-port behaviour (→ ``IecSettings``)."""

    mode: Literal["A", "B", "C", "D", "E"] | None = None
    initial_baud: Literal[IEC_BAUD_RATES] | None = None  # type: ignore[valid-type]
    max_baud: Literal[IEC_BAUD_RATES] | None = None  # type: ignore[valid-type]
    reaction_s: Annotated[float, Field(ge=0, le=2)] | None = None
    switch_delay_s: Annotated[float, Field(ge=0, le=5)] | None = None
    honours_baud_switch: StrictBool | None = None
    wakeup: StrictBool | None = None


class _ChannelSpec(_Spec):
    unit: Unit | None = None
    obis: Obis | None = None
    scale: ExactDecimal | None = None
    role: Role = Role.VALUE
    flags: dict[StrictInt, FlagName] | None = None


class ModbusChannelSpec(_ChannelSpec):
    """A channel of a ``modbus`` profile: a value at a register address."""

    address: Address
    type: DataType | None = None
    function: Literal[3, 4] | None = None
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None


class ObisChannelSpec(_ChannelSpec):
    """A channel of an ``iec62056_21`` or ``dsmr_p1`` profile: a data set by its code."""

    code: DataSetCode
    group: Annotated[StrictInt, Field(ge=0, le=15)] = 0
    mbus_channel: Annotated[StrictInt, Field(ge=0, le=4)] = 0


CHANNEL_SPECS: dict[str, type[_ChannelSpec]] = {
    "modbus": ModbusChannelSpec,
    "iec62056_21": ObisChannelSpec,
    "dsmr_p1": ObisChannelSpec,
}
ChannelSpec = ModbusChannelSpec | ObisChannelSpec


class HeaderSpec(_Spec):
    """Everything in a profile file; ``channels`` stays raw until the protocol is known."""

    id: StrictStr | None = None
    manufacturer: Text | None = None
    model: Text | None = None
    firmware: FirmwareSpec | None = None
    protocol: Literal[PROTOCOLS] | None = None  # type: ignore[valid-type]
    service: Literal[SERVICES] | None = None  # type: ignore[valid-type]
    source: Text | None = None
    serial: SerialSpec | None = None
    modbus: ModbusSectionSpec | None = None
    iec: IecSectionSpec | None = None
    channels: dict[Any, Any] | None = None
    extends: StrictStr | None = None
    remove: list[StrictStr] | None = None


_OTHER_KIND = {
    "modbus": ("code", "group", "mbus_channel"),
    "obis": ("address", "type", "function", "byte_order", "word_order"),
}
_SHORT_INPUT = (str, int, float, bool, type(None))
_REQUIRED = {
    "address": "required: a modbus channel needs its register address",
    "code": "required: an {protocol} channel needs its data-set code, e.g. 1.8.0",
}


def problems_from(exc: ValidationError, prefix: str = "", *, protocol: str = "") -> list[
    tuple[str, str]
]:
    """``(key, why)`` for each error pydantic found, with ``prefix`` before every key path."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"] if part != "[key]"]
        key = ".".join(filter(None, [prefix, *loc])) or "(root)"
        problems.append((key, _why(error, loc, protocol)))
    return problems


def _why(error: Any, loc: list[str], protocol: str) -> str:
    kind = error["type"]
    name = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        return _unknown_key(name, protocol)
    if kind == "missing":
        return _REQUIRED.get(name, "required").format(protocol=protocol or "OBIS")
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if kind != "value_error" and isinstance(value, _SHORT_INPUT) and len(repr(value)) <= 40:
        if kind == "string_type" and isinstance(value, float):
            return f"{message} — quote it: \"{value!r}\""
        message = f"{message}, got {value!r}"
    return message


def _unknown_key(name: str, protocol: str) -> str:
    kind_of = "modbus" if protocol == "modbus" else "obis"
    if protocol and name in _OTHER_KIND[kind_of]:
        other = "OBIS" if protocol == "modbus" else "Modbus"
        return f"unknown key: {name} belongs to {other} channels, not to {protocol} profiles"
    return "unknown key"
