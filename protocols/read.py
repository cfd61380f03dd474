"""The read: what one meter said at one moment, and its place in a collector's chain.

Two types, because a read is born in two steps. A :class:`Reading` is what a
driver (or a technician's keypad) produced: meter, both clocks, registers,
flags. The edge buffer turns it into a :class:`Read` by giving it the
collector's name, the next ``seq``, the previous read's hash and the signing
key's id — only then can it be signed. Both validate on construction, so an
invalid read cannot exist as an object; errors are
:class:`~protocols.errors.InvalidFieldError` naming the field.

Example::

    from datetime import UTC, datetime
    from decimal import Decimal
    reading = Reading(
        meter="SDM630-0012345",
        read_at=datetime(2026, 11, 23, 19, 40, 59, tzinfo=UTC),
        collected_at=datetime(2026, 11, 23, 19, 41, 0, 123000, tzinfo=UTC),
        clock=ClockQuality(ntp_synced=True, meter_offset_s=Decimal("-1.123")),
        source=Source.AMI,
        values={"energy_import_kwh": RegisterValue(Decimal("1234.567"), "kWh", "1.8.0")},
    )
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from protocols.errors import InvalidFieldError
from protocols.scalars import ScalarError, normalize_decimal, normalize_instant

READ_FORMAT_VERSION = 1
"""The ``v`` of every read; a new version is a new set of fields, never a reinterpretation."""

COLLECTOR_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Collector names become MQTT topic levels, so no ``/``, ``+``, ``#`` or spaces."""
METER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
REGISTER_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
FLAG_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
UNIT_RE = re.compile(r"[^\s\x00-\x1f\x7f\"\\\ud800-\udfff]{1,16}")
OBIS_RE = re.compile(
    r"(?:\d{1,3}-\d{1,3}:)?[0-9A-Z]{1,3}\.[0-9A-Z]{1,3}(?:\.\d{1,3})?(?:\*\d{1,3})?"
)
HEX64_RE = re.compile(r"[0-9a-f]{64}")
KEY_ID_RE = re.compile(r"[0-9a-f]{32}")
MAX_SEQ = 2**63 - 1
TROUBLE_FLAG_PREFIX = "trouble_"
"""A technician's trouble report (protocols/trouble.py) is a read with such a flag."""
T = TypeVar("T")


class Source(StrEnum):
    """How the read was taken; billing rules prefer some sources over others."""

    AMI = "ami"
    HANDHELD_PROBE = "handheld_probe"
    HANDHELD_MANUAL = "handheld_manual"


@dataclass(frozen=True, slots=True)
class ClockQuality:
    """How far the collector's clock can be trusted, and how far the meter's was off.

    ``meter_offset_s`` is meter time minus collector time, in seconds; ``None``
    when the meter has no clock (then ``read_at`` is the collector's time).
    """

    ntp_synced: bool
    meter_offset_s: Decimal | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ntp_synced, bool):
            raise InvalidFieldError("must be true or false", field="clock.ntp_synced")
        if self.meter_offset_s is not None:
            object.__setattr__(
                self, "meter_offset_s",
                scalar_field(normalize_decimal, self.meter_offset_s, "clock.meter_offset_s"),
            )


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """One register as the meter gave it after scaling: value, unit, OBIS code if known."""

    value: Decimal
    unit: str
    obis: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", scalar_field(normalize_decimal, self.value, "value"))
        if not isinstance(self.unit, str) or not UNIT_RE.fullmatch(self.unit):
            raise InvalidFieldError(f"unit {self.unit!r} is not 1–16 printable characters",
                                    field="unit")
        if self.obis is not None and (
            not isinstance(self.obis, str) or not OBIS_RE.fullmatch(self.obis)
        ):
            raise InvalidFieldError(f"{self.obis!r} is not an OBIS code", field="obis")


@dataclass(frozen=True, kw_only=True)
class Reading:
    """What one meter said at one moment, before it joins a collector's chain."""

    meter: str
    read_at: datetime
    collected_at: datetime
    clock: ClockQuality
    source: Source
    values: Mapping[str, RegisterValue]
    flags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check(self.meter, METER_RE, "meter", "a meter serial (letters, digits, ._:/-)")
        object.__setattr__(self, "read_at",
                           scalar_field(normalize_instant, self.read_at, "read_at"))
        object.__setattr__(self, "collected_at",
                           scalar_field(normalize_instant, self.collected_at, "collected_at"))
        if not isinstance(self.clock, ClockQuality):
            raise InvalidFieldError("must be a ClockQuality", field="clock")
        try:
            object.__setattr__(self, "source", Source(self.source))
        except ValueError:
            raise InvalidFieldError(
                f"{self.source!r} is not one of {[s.value for s in Source]}", field="source"
            ) from None
        object.__setattr__(self, "flags", _flags(self.flags))
        trouble_report = any(f.startswith(TROUBLE_FLAG_PREFIX) for f in self.flags)
        object.__setattr__(self, "values", _values(self.values, may_be_empty=trouble_report))


@dataclass(frozen=True, kw_only=True)
class Read(Reading):
    """A reading placed in its collector's hash chain: what gets signed and stored."""

    version: ClassVar[int] = READ_FORMAT_VERSION

    collector: str
    seq: int
    prev_hash: str
    key_id: str

    def __post_init__(self) -> None:
        Reading.__post_init__(self)
        _check(self.collector, COLLECTOR_RE, "collector", "a collector name (letters, digits, ._-)")
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or not (
            1 <= self.seq <= MAX_SEQ
        ):
            raise InvalidFieldError(f"{self.seq!r} is not a seq ≥ 1", field="seq")
        _check(self.prev_hash, HEX64_RE, "prev_hash", "64 lowercase hex digits")
        _check(self.key_id, KEY_ID_RE, "key_id", "32 lowercase hex digits")

    @classmethod
    def chain(
        cls, reading: Reading, *, collector: str, seq: int, prev_hash: str, key_id: str
    ) -> Read:
        """Place ``reading`` in a chain (the fields of ``reading`` are already valid)."""
        return cls(
            meter=reading.meter,
            read_at=reading.read_at,
            collected_at=reading.collected_at,
            clock=reading.clock,
            source=reading.source,
            values=reading.values,
            flags=reading.flags,
            collector=collector,
            seq=seq,
            prev_hash=prev_hash,
            key_id=key_id,
        )


def _check(value: object, pattern: re.Pattern[str], name: str, expected: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidFieldError(f"{value!r} is not {expected}", field=name)


def scalar_field(convert: Callable[[Any], T], value: object, field: str) -> T:
    """``convert(value)``, with a :class:`ScalarError` reported as an error on ``field``."""
    try:
        return convert(value)
    except ScalarError as exc:
        raise InvalidFieldError(str(exc), field=field) from None


def _values(values: object, *, may_be_empty: bool = False) -> Mapping[str, RegisterValue]:
    """A read carries at least one register; only a trouble report may carry none."""
    if not isinstance(values, Mapping) or (not values and not may_be_empty):
        raise InvalidFieldError("a read carries at least one register (only a trouble "
                                "report, flagged trouble_…, may carry none)", field="values")
    for name, register in values.items():
        _check(name, REGISTER_RE, "values", "a register name (lowercase, digits, _)")
        if not isinstance(register, RegisterValue):
            raise InvalidFieldError("must be a RegisterValue", field=f"values.{name}")
    return MappingProxyType(dict(sorted(values.items())))


def _flags(flags: object) -> tuple[str, ...]:
    if isinstance(flags, str) or not isinstance(flags, (tuple, list, set, frozenset)):
        raise InvalidFieldError("must be a collection of flag names", field="flags")
    for flag in flags:
        _check(flag, FLAG_RE, "flags", "a flag name (lowercase, digits, _)")
    return tuple(sorted(set(flags)))
