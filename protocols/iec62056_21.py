"""IEC 62056-21 (optical port, modes A, B and C) messages as bytes and back, with no I/O.

Each message of a sign-on is a frozen class with ``to_bytes()`` and
``from_bytes()``, so every frame round-trips and can be property-tested (the
idea of pwitab/iec62056_21, without its blocking sleeps: timing belongs to the
driver, :mod:`protocols.iec_driver`). Parsing is strict and total: for *any*
input bytes a parser returns a message or raises :class:`FrameError`
(:class:`ChecksumError` for a BCC mismatch) — never another exception.

Values stay exactly as the meter wrote them: a data set keeps its value text,
and :meth:`DataValue.decimal` turns it into a ``Decimal`` without passing
through a float.

Example::

    RequestMessage().to_bytes()                                  # b'/?!\\r\\n'
    ident = IdentificationMessage.from_bytes(b"/LGZ5\\\\2ZMD3104407.B32\\r\\n")
    ident.baud_for("C"), ident.reaction_time_s, ident.enhanced   # (9600, 0.2, '2')
    AckOptionSelectMessage(baud_char="5").to_bytes()             # b'\\x06050\\r\\n'
    block = DataBlock.from_bytes(frame)                          # checks the BCC
    block.find("1.8.0").values[0].decimal()                      # Decimal('123.456')
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Self, TypeVar

from protocols.driver import ChecksumError, FrameError

SOH = 0x01
STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
CRLF = b"\r\n"

MODE_C_BAUDS: Mapping[str, int] = MappingProxyType({
    "0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200,
})
"""Baud rate characters of modes C (and E): the identification proposes, the option select asks."""
MODE_B_BAUDS: Mapping[str, int] = MappingProxyType({
    "A": 600, "B": 1200, "C": 2400, "D": 4800, "E": 9600, "F": 19200,
})
"""Baud rate characters of mode B: the meter switches to this rate right after identifying."""
MODES = ("A", "B", "C")
REACTION_TIME_S = 0.2
"""Minimum reaction time a meter announces with an upper-case third manufacturer letter."""
FAST_REACTION_TIME_S = 0.02
"""… and with a lower-case third letter (``/LGz…``)."""
MAX_REQUEST_ADDRESS = 32

_T = TypeVar("_T")

_PRINTABLE = frozenset(range(0x20, 0x7F))
_ADDRESS_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_DATE_RE = re.compile(r"[0-9]?([0-9]{2})([0-9]{2})([0-9]{2})|([0-9]{2})-([0-9]{2})-([0-9]{2})")
_TIME_RE = re.compile(r"[0-9]?([0-9]{2})([0-9]{2})([0-9]{2})|([0-9]{2}):([0-9]{2}):([0-9]{2})")
_TIMESTAMP_RE = re.compile(r"([0-9]{10,13})([SW]?)")


def bcc(data: bytes) -> int:
    """Block check character: XOR of ``data`` in 7 bits.

    Over a data message it covers the bytes after ``STX`` up to and including ``ETX``.

    >>> bcc(b"!\\r\\n\\x03")
    37
    """
    check = 0
    for byte in data:
        check ^= byte
    return check & 0x7F


def baud_of(char: str, mode: str) -> int | None:
    """The baud rate ``char`` stands for in ``mode``; ``None`` in mode A or for another char.

    >>> baud_of("5", "C"), baud_of("E", "B"), baud_of("5", "A")
    (9600, 9600, None)
    """
    table = {"B": MODE_B_BAUDS, "C": MODE_C_BAUDS}.get(mode.upper(), {})
    return table.get(char)


def baud_char(baud: int, mode: str) -> str:
    """The character of the highest rate of ``mode`` not above ``baud``.

    Raises ``ValueError`` when the mode has no rate that low (or is mode A).

    >>> baud_char(9600, "C"), baud_char(14400, "C"), baud_char(2400, "B")
    ('5', '5', 'C')
    """
    table = {"B": MODE_B_BAUDS, "C": MODE_C_BAUDS}.get(mode.upper(), {})
    fitting = [(rate, char) for char, rate in table.items() if rate <= baud]
    if not fitting:
        raise ValueError(f"mode {mode} has no baud rate character for {baud} baud or less")
    return max(fitting)[1]


# --- sign-on messages ---------------------------------------------------------


@dataclass(frozen=True)
class RequestMessage:
    """``/?[address]!CR LF``: the reader's request; an empty address asks any meter."""

    address: str = ""

    def __post_init__(self) -> None:
        if len(self.address) > MAX_REQUEST_ADDRESS or not set(self.address) <= _ADDRESS_CHARS:
            raise ValueError(
                f"device address {self.address!r}: at most {MAX_REQUEST_ADDRESS} digits, "
                "letters and spaces"
            )

    def to_bytes(self) -> bytes:
        return b"/?" + self.address.encode("ascii") + b"!\r\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        text = _ascii(data, "request")
        if len(text) < 5 or not text.startswith("/?") or not text.endswith("!\r\n"):
            raise FrameError("request is not /?[address]!CR LF", raw=bytes(data))
        return _build(cls, data, text[2:-3])


@dataclass(frozen=True)
class IdentificationMessage:
    """``/XXXZ[\\W]ident CR LF``: who the meter is and which baud rate it offers.

    ``manufacturer`` is the three-letter FLAG id (a lower-case third letter
    announces a 20 ms reaction time instead of 200 ms), ``baud_char`` the rate
    character (see :func:`baud_of`), ``enhanced`` the ``W`` of an optional
    enhanced-identification pair ``\\W`` (``\\2``: the meter speaks HDLC, mode E),
    ``identification`` the model text.
    """

    manufacturer: str
    baud_char: str
    identification: str
    enhanced: str | None = None

    def __post_init__(self) -> None:
        if len(self.manufacturer) != 3 or not all(
            "A" <= c <= "Z" or "a" <= c <= "z" for c in self.manufacturer
        ):
            raise ValueError(f"manufacturer {self.manufacturer!r} is not three letters")
        if len(self.baud_char) != 1 or not _printable(self.baud_char, exclude="/!\\"):
            raise ValueError(f"baud rate character {self.baud_char!r} is not allowed")
        if self.enhanced is not None and (
            len(self.enhanced) != 1 or not _printable(self.enhanced, exclude="/!")
        ):
            raise ValueError(f"enhanced identification {self.enhanced!r} is not one character")
        if not _printable(self.identification, exclude="/!"):
            raise ValueError(f"identification {self.identification!r} has a forbidden character")
        if self.enhanced is None and self.identification.startswith("\\"):
            raise ValueError("an identification starting with \\ reads as an enhanced pair")

    @property
    def reaction_time_s(self) -> float:
        """Minimum time the meter needs between a message and the next one (20 or 200 ms)."""
        return FAST_REACTION_TIME_S if self.manufacturer[2].islower() else REACTION_TIME_S

    def baud_for(self, mode: str) -> int | None:
        """The baud rate the meter offers in ``mode`` (``None`` in mode A or for a foreign char)."""
        return baud_of(self.baud_char, mode)

    def to_bytes(self) -> bytes:
        pair = "" if self.enhanced is None else "\\" + self.enhanced
        text = f"/{self.manufacturer}{self.baud_char}{pair}{self.identification}\r\n"
        return text.encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        text = _ascii(data, "identification")
        if not text.startswith("/") or not text.endswith("\r\n") or len(text) < 7:
            raise FrameError("identification is not /XXXZ[\\W]ident CR LF", raw=bytes(data))
        body = text[1:-2]
        rest, enhanced = body[4:], None
        if rest.startswith("\\"):
            if len(rest) < 2:
                raise FrameError("identification ends inside its \\W pair", raw=bytes(data))
            enhanced, rest = rest[1], rest[2:]
        return _build(cls, data, body[:3], body[3], rest, enhanced)


@dataclass(frozen=True)
class AckOptionSelectMessage:
    """``ACK V Z Y CR LF``: the reader picks protocol ``V``, baud ``Z`` and mode ``Y`` (mode C).

    ``protocol`` 0 is the normal protocol, 2 HDLC; ``mode`` 0 asks for the data
    readout, 1 for programming mode.
    """

    baud_char: str
    protocol: str = "0"
    mode: str = "0"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("protocol", self.protocol, "0123456789"),
            ("baud rate character", self.baud_char, "0123456789"),
            ("mode", self.mode, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        ):
            if len(value) != 1 or value not in allowed:
                raise ValueError(f"option select {name} {value!r} is not one of {allowed}")

    @property
    def baud(self) -> int | None:
        """The baud rate asked for (``None`` for a reserved character 7–9)."""
        return MODE_C_BAUDS.get(self.baud_char)

    def to_bytes(self) -> bytes:
        return bytes([ACK]) + f"{self.protocol}{self.baud_char}{self.mode}\r\n".encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        text = _ascii(data, "option select")
        if len(text) != 6 or text[0] != chr(ACK) or not text.endswith("\r\n"):
            raise FrameError("option select is not ACK V Z Y CR LF", raw=bytes(data))
        return _build(cls, data, text[2], text[1], text[3])


# --- the data message -----------------------------------------------------------


@dataclass(frozen=True)
class DataValue:
    """One parenthesised ``(value*unit)`` of a data set; ``unit`` is ``None`` without ``*``."""

    value: str
    unit: str | None = None

    def __post_init__(self) -> None:
        if not _printable(self.value, exclude="()*/!"):
            raise ValueError(f"data set value {self.value!r} has a forbidden character")
        if self.unit is not None and not _printable(self.unit, exclude="()/!"):
            raise ValueError(f"data set unit {self.unit!r} has a forbidden character")

    def decimal(self) -> Decimal:
        """The value as the exact decimal the meter wrote (``'000123.450'`` → ``123.450``).

        Surrounding spaces and a sign are allowed (``( 001.67*kW)``, ``(+000.8*A)``);
        anything else raises :class:`FrameError`.
        """
        return parse_decimal(self.value)

    def to_text(self) -> str:
        return f"({self.value})" if self.unit is None else f"({self.value}*{self.unit})"


@dataclass(frozen=True)
class DataSet:
    """``address(value*unit)(…)``: one data set with one or more values.

    A meter may follow a set with further parenthesised values — a capture
    time, a second register: ``1.6.0(0012.34*kW)(2611011215)``.
    """

    address: str
    values: tuple[DataValue, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValueError(f"data set {self.address!r} has no value")
        if not _printable(self.address, exclude="()/!"):
            raise ValueError(f"data set address {self.address!r} has a forbidden character")

    def to_text(self) -> str:
        return self.address + "".join(value.to_text() for value in self.values)

    def to_bytes(self) -> bytes:
        return self.to_text().encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        line = DataLine.from_bytes(bytes(data) + CRLF)
        if len(line.sets) != 1:
            raise FrameError(f"expected one data set, found {len(line.sets)}", raw=bytes(data))
        return cls(line.sets[0].address, line.sets[0].values)


@dataclass(frozen=True)
class DataLine:
    """One line of a data block: zero or more data sets, then ``CR LF``."""

    sets: tuple[DataSet, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sets", tuple(self.sets))
        if any(not data_set.address for data_set in self.sets[1:]):
            raise ValueError("only the first data set of a line may have an empty address")

    def to_bytes(self) -> bytes:
        return "".join(data_set.to_text() for data_set in self.sets).encode("ascii") + CRLF

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        text = _ascii(data, "data line")
        if not text.endswith("\r\n"):
            raise FrameError("data line does not end with CR LF", raw=bytes(data))
        return cls(tuple(_parse_sets(text[:-2], bytes(data))))


@dataclass(frozen=True)
class DataBlock:
    """A data message: ``STX`` data lines ``!`` ``CR LF`` ``ETX`` ``BCC`` — the meter's readout."""

    lines: tuple[DataLine, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))

    @property
    def sets(self) -> Iterator[DataSet]:
        """Every data set, line by line."""
        for line in self.lines:
            yield from line.sets

    def find(self, address: str) -> DataSet | None:
        """The first data set written under ``address`` exactly, or ``None``."""
        return next((data_set for data_set in self.sets if data_set.address == address), None)

    def to_bytes(self) -> bytes:
        covered = b"".join(line.to_bytes() for line in self.lines) + b"!\r\n" + bytes([ETX])
        return bytes([STX]) + covered + bytes([bcc(covered)])

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse a whole data message; the BCC is checked before anything else is read."""
        raw = bytes(data)
        if len(raw) < 6 or raw[0] != STX:
            raise FrameError("data message does not start with STX", raw=raw)
        if raw[-2] != ETX:
            raise FrameError("data message does not end with ETX and a BCC", raw=raw)
        expected = bcc(raw[1:-1])
        if raw[-1] != expected:
            raise ChecksumError(f"BCC is 0x{raw[-1]:02X}, the data gives 0x{expected:02X}", raw=raw)
        body = raw[1:-2]
        if not body.endswith(b"!\r\n"):
            raise FrameError("data message lacks its end line !CR LF", raw=raw)
        content = body[:-3]
        if content and not content.endswith(CRLF):
            raise FrameError("last data line does not end with CR LF", raw=raw)
        lines = [DataLine.from_bytes(line + CRLF) for line in content.split(CRLF)[:-1]]
        return cls(tuple(lines))


# --- values inside data sets -------------------------------------------------------


def parse_decimal(text: str) -> Decimal:
    """The exact decimal of a value as a meter writes it: ``' 001.670'`` → ``Decimal('1.670')``.

    Leading zeros, a sign and surrounding spaces are accepted; exponents, ``NaN``
    and digit separators are not.
    """
    stripped = text.strip(" ")
    if len(stripped) > 64 or not _NUMBER_RE.fullmatch(stripped):
        raise FrameError(f"{text!r} is not a decimal number")
    try:
        return Decimal(stripped)
    except InvalidOperation as error:  # unreachable for text the pattern accepts
        raise FrameError(f"{text!r} is not a decimal number") from error


def parse_hex(text: str) -> int:
    """A status word written in hexadecimal digits (``F.F(00000010)`` → 16)."""
    stripped = text.strip(" ")
    if len(stripped) > 32 or not _HEX_RE.fullmatch(stripped):
        raise FrameError(f"{text!r} is not a hexadecimal status word")
    return int(stripped, 16)


def parse_date(text: str) -> date:
    """A meter date: ``YYMMDD`` (0.9.2), ``YY-MM-DD``, or ``ZYYMMDD`` after a status digit."""
    match = _DATE_RE.fullmatch(text.strip(" "))
    if match is None:
        raise FrameError(f"{text!r} is not a date YYMMDD")
    year, month, day = (int(part) for part in _groups(match))
    try:
        return date(2000 + year, month, day)
    except ValueError as error:
        raise FrameError(f"{text!r} is not a valid date: {error}") from error


def parse_time(text: str) -> time:
    """A meter time of day: ``hhmmss`` (0.9.1), ``hh:mm:ss``, or with a leading status digit."""
    match = _TIME_RE.fullmatch(text.strip(" "))
    if match is None:
        raise FrameError(f"{text!r} is not a time hhmmss")
    hour, minute, second = (int(part) for part in _groups(match))
    try:
        return time(hour, minute, second)
    except ValueError as error:
        raise FrameError(f"{text!r} is not a valid time: {error}") from error


def parse_timestamp(text: str, tz: tzinfo) -> datetime:
    """A capture time ``YYMMDDhhmm`` or ``YYMMDDhhmmss`` as an aware datetime in the meter's ``tz``.

    A leading status digit (``1YYMMDDhhmmss``, as EMH writes) is ignored; a
    trailing ``S``/``W`` (summer/winter time) settles the repeated hour when
    clocks go back.
    """
    match = _TIMESTAMP_RE.fullmatch(text.strip(" "))
    if match is None or len(match[1]) not in (10, 11, 12, 13):
        raise FrameError(f"{text!r} is not a timestamp YYMMDDhhmm[ss]")
    digits = match[1][1:] if len(match[1]) in (11, 13) else match[1]
    parts = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    year, month, day, hour, minute = parts[:5]
    second = parts[5] if len(parts) == 6 else 0
    try:
        return datetime(2000 + year, month, day, hour, minute, second, tzinfo=tz,
                        fold=1 if match[2] == "W" else 0)
    except ValueError as error:
        raise FrameError(f"{text!r} is not a valid timestamp: {error}") from error


# --- helpers ---------------------------------------------------------------------------


def _ascii(data: bytes, what: str) -> str:
    """``data`` as text when every byte is 7-bit, else :class:`FrameError` (noise, wrong baud)."""
    raw = bytes(data)
    if not raw.isascii():
        raise FrameError(f"{what} has bytes above 0x7F (line noise or a wrong baud rate)", raw=raw)
    return raw.decode("ascii")


def _printable(text: str, *, exclude: str) -> bool:
    return all(ord(char) in _PRINTABLE and char not in exclude for char in text)


def _build(cls: type[_T], data: bytes, *fields: object) -> _T:
    """``cls(*fields)``, a validation failure reported as the :class:`FrameError` it is."""
    try:
        return cls(*fields)
    except ValueError as error:
        raise FrameError(str(error), raw=bytes(data)) from error


def _parse_sets(text: str, raw: bytes) -> Iterator[DataSet]:
    position, end = 0, len(text)
    while position < end:
        opening = text.find("(", position)
        if opening < 0:
            raise FrameError(f"text {text[position:]!r} after the last data set", raw=raw)
        address, values = text[position:opening], []
        while opening < end and text[opening] == "(":
            closing = text.find(")", opening)
            if closing < 0:
                raise FrameError(f"data set {address!r} has an unclosed (", raw=raw)
            inner = text[opening + 1 : closing]
            if "(" in inner:
                raise FrameError(f"data set {address!r} has ( inside a value", raw=raw)
            value, star, unit = inner.partition("*")
            values.append(_build(DataValue, raw, value, unit if star else None))
            opening = closing + 1
        yield _build(DataSet, raw, address, tuple(values))
        position = opening


def _groups(match: re.Match[str]) -> list[str]:
    return [group for group in match.groups() if group is not None]
