"""DSMR P1 telegrams as data: parse, check and write what a Dutch or Belgian smart meter pushes.

A P1 port (DSMR 2.2, 3, 4.x, 5.x, ESMR 5, Fluvius) pushes a telegram every 1 s
(DSMR 5) or 10 s (4.x)::

    /ISk5\\2MT382-1000          header: / + manufacturer (3) + baud char + identification
                                blank line
    1-3:0.2.8(50)               one data object per line: OBIS code, then (groups)
    0-0:1.0.0(101209113020W)    timestamps YYMMDDhhmmss + S (summer) / W (winter)
    1-0:1.8.1(123456.789*kWh)   value*unit
    0-1:24.2.1(101209112500W)(12785.123*m3)
    !EF2F                       ! + CRC-16/ARC over "/" … "!" (none in DSMR 2.2 and 3)

As in ndokter/dsmr_parser, versions differ in data, not in code: :data:`SHAPES`
lists the few objects whose groups have a fixed form (the clock, M-Bus
captures, the power-failure log, DSMR 2.2/3 gas with its value on the next
line), one small engine checks every line against its shape, and everything
else is accepted as text groups. A :class:`DataLine` keeps its groups exactly
as the meter wrote them, so ``from_bytes(t.to_bytes()) == t`` and the typed
readings (:meth:`DataLine.quantity`, :meth:`DataLine.timestamp`,
:meth:`DataLine.text`, :meth:`DataLine.event_log`) are computed on demand.

Pure: no I/O. For any input bytes the parser raises only
:class:`~protocols.driver.FrameError` (malformed) or its subclass
:class:`~protocols.driver.ChecksumError` (CRC mismatch); the drivers add the port.

Example::

    telegram = Telegram.from_bytes(raw)
    telegram.version                                   # '50'
    telegram.find("1-0:1.8.1").quantity()              # Quantity(Decimal('123456.789'), 'kWh')
    gas = telegram.find("0-1:24.2.1")
    gas.timestamp(0), gas.quantity(1)                  # capture time (UTC), volume
    telegram.find("0-0:96.1.1").text()                 # 'K8EG004046395507'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple
from zoneinfo import ZoneInfo

from protocols.driver import ChecksumError, FrameError

DEFAULT_TIMEZONE = "Europe/Amsterdam"
MAX_TELEGRAM_BYTES = 16384
"""Longest telegram accepted; real ones are 0.5–2 KB (a full 1024-char text message included)."""

_CODE = r"\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}(?:[*.]\d{1,3})?"
_CODE_RE = re.compile(_CODE, re.ASCII)
_HEADER_RE = re.compile(r"/[A-Za-z]{3}\d[\x20-\x7e]{1,96}", re.ASCII)
_GROUP_CHARS = r"[\x20-\x27\x2a-\x7e]"  # printable ASCII except the parentheses
_LINE_RE = re.compile(rf"({_CODE})((?:\({_GROUP_CHARS}*\))+)", re.ASCII)
_CONTINUATION_RE = re.compile(rf"(?:\({_GROUP_CHARS}*\))+", re.ASCII)
_GROUP_RE = re.compile(rf"\(({_GROUP_CHARS}*)\)", re.ASCII)
_GROUP_TEXT_RE = re.compile(rf"{_GROUP_CHARS}*", re.ASCII)
_TAIL_RE = re.compile(rb"!([0-9A-Fa-f]{4})?(?:\r?\n)?", re.ASCII)
_NUMBER_RE = re.compile(r"(-?\d{1,20}(?:\.\d{1,20})?)(?:\*([^\s()*]{1,16}))?", re.ASCII)
_TIMESTAMP_RE = re.compile(r"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([SW]?)", re.ASCII)
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})*", re.ASCII)


def _arc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_ARC_TABLE = _arc_table()


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (poly 0x8005 reflected = 0xA001, init 0, no final xor), table-driven.

    DSMR computes it over the telegram from ``/`` through ``!`` inclusive.

    >>> hex(crc16_arc(b"123456789"))
    '0xbb3d'
    """
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _ARC_TABLE[(crc ^ byte) & 0xFF]
    return crc


class Kind(StrEnum):
    """What one parenthesised group of a data object holds."""

    NUMBER = "number"
    """``0001.234`` or ``0001.234*kWh``: an exact decimal with an optional unit."""
    TIMESTAMP = "timestamp"
    """``YYMMDDhhmmssX``, X = ``S`` summer, ``W`` winter, absent in DSMR 2.2 and 3."""
    OBIS = "obis"
    """An OBIS reference such as ``0-0:96.7.19`` (event logs, DSMR 2.2 gas)."""
    TEXT = "text"
    """Anything printable (identifiers and messages are hex-encoded text)."""


_KIND_RES = {
    Kind.NUMBER: _NUMBER_RE,
    Kind.TIMESTAMP: _TIMESTAMP_RE,
    Kind.OBIS: _CODE_RE,
    Kind.TEXT: _GROUP_TEXT_RE,
}


@dataclass(frozen=True)
class Shape:
    """The form of one kind of data object: fixed groups, then repeated ones.

    ``count_group`` names the fixed group that says how many times ``repeat``
    follows (the power-failure log). Groups from index ``wrap_after`` on are
    written one per line after the object's first line (DSMR 2.2/3 gas).
    """

    name: str
    fixed: tuple[Kind, ...]
    repeat: tuple[Kind, ...] = ()
    count_group: int | None = None
    wrap_after: int | None = None

    def check(self, code: str, groups: tuple[str, ...]) -> None:
        """Raise :class:`FrameError` unless ``groups`` fit this shape."""
        extra = len(groups) - len(self.fixed)
        if extra < 0 or (extra and not self.repeat) or (
            self.repeat and extra % len(self.repeat)
        ):
            raise FrameError(f"{code}: {len(groups)} groups do not fit its {self.name} form")
        kinds = self.fixed + self.repeat * (extra // len(self.repeat) if self.repeat else 0)
        for index, (kind, group) in enumerate(zip(kinds, groups, strict=True)):
            if not _KIND_RES[kind].fullmatch(group):
                raise FrameError(f"{code}: group {index} {group!r} is not a {kind}")
        if self.count_group is not None:
            count = groups[self.count_group]
            if not count.isdigit() or int(count) * len(self.repeat) != extra:
                raise FrameError(
                    f"{code}: says {count!r} entries but has {extra // len(self.repeat)}"
                )


GENERIC = Shape("generic", (), repeat=(Kind.TEXT,))
"""Any object not in :data:`SHAPES`: one or more text groups, typed when read."""

SHAPES: tuple[tuple[re.Pattern[str], Shape], ...] = (
    (re.compile(r"0-0:1\.0\.0", re.ASCII), Shape("clock", (Kind.TIMESTAMP,))),
    (re.compile(r"0-\d{1,3}:24\.2\.\d{1,3}", re.ASCII),
     Shape("M-Bus capture", (Kind.TIMESTAMP, Kind.NUMBER))),
    (re.compile(r"0-\d{1,3}:24\.3\.0", re.ASCII),
     Shape("DSMR 2.2/3 gas", (Kind.TIMESTAMP, Kind.TEXT, Kind.TEXT, Kind.TEXT, Kind.OBIS,
                              Kind.TEXT), repeat=(Kind.NUMBER,), wrap_after=6)),
    (re.compile(r"\d{1,3}-\d{1,3}:99\.97\.0", re.ASCII),
     Shape("event log", (Kind.NUMBER, Kind.OBIS), repeat=(Kind.TIMESTAMP, Kind.NUMBER),
           count_group=0)),
)
"""Objects whose groups have a fixed form, by OBIS code (first match wins)."""


def shape_of(code: str) -> Shape:
    """The :class:`Shape` that lines with OBIS ``code`` must have."""
    for pattern, shape in SHAPES:
        if pattern.fullmatch(code):
            return shape
    return GENERIC


class Quantity(NamedTuple):
    """A number exactly as written, and its unit (``""`` when the meter writes none)."""

    value: Decimal
    unit: str


class PowerFailure(NamedTuple):
    """One entry of the power-failure event log (``1-0:99.97.0``)."""

    ended_at: datetime
    duration: Quantity


@dataclass(frozen=True)
class DataLine:
    """One data object: OBIS ``code`` and its groups' text, e.g. ``("101209112500W", "1.5*m3")``."""

    code: str
    groups: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        if not isinstance(self.code, str) or not _CODE_RE.fullmatch(self.code):
            raise FrameError(f"{self.code!r} is not an OBIS code")
        if not self.groups:
            raise FrameError(f"{self.code}: a data object has at least one group")
        for group in self.groups:
            if not isinstance(group, str) or not _GROUP_TEXT_RE.fullmatch(group):
                raise FrameError(f"{self.code}: group {group!r} is not printable ASCII")
        shape_of(self.code).check(self.code, self.groups)

    def group(self, index: int) -> str:
        """The text of group ``index``; :class:`FrameError` when the object has no such group."""
        if not 0 <= index < len(self.groups):
            raise FrameError(f"{self.code} has {len(self.groups)} groups, no group {index}")
        return self.groups[index]

    def quantity(self, index: int = 0) -> Quantity:
        """Group ``index`` as an exact number and its unit: ``'00.244*kW'`` → (0.244, 'kW')."""
        text = self.group(index)
        match = _NUMBER_RE.fullmatch(text)
        if not match:
            raise FrameError(f"{self.code}: group {index} {text!r} is not a number")
        return Quantity(Decimal(match[1]), match[2] or "")

    def timestamp(self, index: int = 0, *, timezone: str = DEFAULT_TIMEZONE) -> datetime:
        """Group ``index`` as an aware UTC datetime; see :func:`parse_timestamp`."""
        return parse_timestamp(self.group(index), timezone=timezone, where=self.code)

    def octets(self, index: int = 0) -> bytes:
        """Group ``index`` decoded from hex (equipment identifiers, text messages)."""
        text = self.group(index)
        if not _HEX_RE.fullmatch(text):
            raise FrameError(f"{self.code}: group {index} {text!r} is not hex")
        return bytes.fromhex(text)

    def text(self, index: int = 0) -> str:
        """Group ``index`` as hex-encoded ASCII, NUL padding dropped: ``'4B38'`` → ``'K8'``."""
        octets = self.octets(index)
        try:
            return octets.decode("ascii").strip("\x00")
        except UnicodeDecodeError as exc:
            raise FrameError(f"{self.code}: group {index} is not hex-encoded ASCII") from exc

    def event_log(self, *, timezone: str = DEFAULT_TIMEZONE) -> tuple[PowerFailure, ...]:
        """The entries of a power-failure log ``(n)(0-0:96.7.19)(end)(duration*s)…``."""
        if shape_of(self.code).name != "event log":
            raise FrameError(f"{self.code} is not an event log")
        return tuple(
            PowerFailure(self.timestamp(index, timezone=timezone), self.quantity(index + 1))
            for index in range(2, len(self.groups), 2)
        )

    def to_text(self) -> str:
        """The line(s) as the meter writes them, CR LF after each."""
        wrap = shape_of(self.code).wrap_after or len(self.groups)
        head = "".join(f"({group})" for group in self.groups[:wrap])
        tail = "".join(f"({group})\r\n" for group in self.groups[wrap:])
        return f"{self.code}{head}\r\n{tail}"


@dataclass(frozen=True)
class Telegram:
    """One P1 telegram: its header line, its data objects, and whether it carries a CRC."""

    header: str
    lines: tuple[DataLine, ...]
    checksum: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        if not isinstance(self.header, str) or not _HEADER_RE.fullmatch(self.header):
            raise FrameError(f"{self.header!r} is not a P1 header (/XXX5identification)")

    @property
    def manufacturer(self) -> str:
        """The three-letter FLAG id after ``/``: ``ISk``, ``KFM``, ``Ene``."""
        return self.header[1:4]

    @property
    def identification(self) -> str:
        """The rest of the header after the baud character: ``\\2MT382-1000``."""
        return self.header[5:]

    @property
    def version(self) -> str | None:
        """``1-3:0.2.8``: ``'42'``, ``'50'``; ``None`` for DSMR 2.2 and 3, which do not say."""
        line = self.find("1-3:0.2.8")
        return line.groups[0] if line else None

    def find(self, code: str) -> DataLine | None:
        """The first data object with OBIS ``code``, or ``None``."""
        for line in self.lines:
            if line.code == code:
                return line
        return None

    def body(self) -> bytes:
        """The bytes the CRC covers: ``/`` through ``!``."""
        lines = "".join(line.to_text() for line in self.lines)
        return f"{self.header}\r\n\r\n{lines}!".encode("ascii")

    def to_bytes(self) -> bytes:
        """The telegram as a meter sends it, CRC included when ``checksum``."""
        body = self.body()
        crc = f"{crc16_arc(body):04X}".encode("ascii") if self.checksum else b""
        return body + crc + b"\r\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, verify_crc: bool = True) -> Telegram:
        """Parse one telegram from ``/`` to the end of its CRC line.

        Line ends may be CR LF or LF; blank lines are skipped; a line starting
        with ``(`` continues the object before it (DSMR 2.2/3 gas). The CRC is
        checked before the lines are parsed, so line noise shows as a
        :class:`ChecksumError` rather than as whatever shape it happened to break.
        """
        data = bytes(data)
        if len(data) > MAX_TELEGRAM_BYTES:
            raise FrameError(f"{len(data)} bytes is longer than any telegram", raw=data[:256])
        if not data.startswith(b"/"):
            raise FrameError("a telegram starts with '/'", raw=data)
        end = data.find(b"\n!")
        if end < 0:
            raise FrameError("no end of telegram ('!' at the start of a line)", raw=data)
        body, tail = data[: end + 2], data[end + 1 :]
        match = _TAIL_RE.fullmatch(tail)
        if not match:
            raise FrameError(f"bytes after '!' are not a CRC line: {tail[:16]!r}", raw=data)
        if match[1] is not None and verify_crc:
            sent, computed = int(match[1], 16), crc16_arc(body)
            if sent != computed:
                raise ChecksumError(
                    f"CRC {sent:04X} sent, {computed:04X} computed over {len(body)} bytes",
                    raw=data,
                )
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError as exc:
            raise FrameError(f"non-ASCII byte at {exc.start}", raw=data) from exc
        try:
            return cls._parse(text[:-1], checksum=match[1] is not None)
        except FrameError as exc:
            raise FrameError(exc.detail, raw=data) from exc

    @classmethod
    def _parse(cls, text: str, *, checksum: bool) -> Telegram:
        header, *rest = text.split("\n")
        pending: list[tuple[str, list[str]]] = []
        for number, raw_line in enumerate(rest, start=2):
            line = raw_line.removesuffix("\r")
            if not line:
                continue
            if line.startswith("("):
                if not pending or not _CONTINUATION_RE.fullmatch(line):
                    raise FrameError(f"line {number}: {line[:40]!r} continues nothing")
                pending[-1][1].extend(_GROUP_RE.findall(line))
                continue
            match = _LINE_RE.fullmatch(line)
            if not match:
                raise FrameError(f"line {number}: {line[:40]!r} is not code(value)…")
            pending.append((match[1], _GROUP_RE.findall(match[2])))
        lines = tuple(DataLine(code, tuple(groups)) for code, groups in pending)
        return cls(header.removesuffix("\r"), lines, checksum)


def parse_timestamp(text: str, *, timezone: str = DEFAULT_TIMEZONE, where: str = "") -> datetime:
    """``YYMMDDhhmmssX`` in the meter's ``timezone`` → aware UTC datetime.

    X = ``S`` (summer, DST in force) or ``W`` (winter) picks the right one of
    the two 02:00–03:00 hours of the autumn change; a flag that contradicts the
    zone's rules (or no flag, as in DSMR 2.2 and 3) leaves the zone's own reading
    (the first of the two hours).

    >>> parse_timestamp("101209113020W")
    datetime.datetime(2010, 12, 9, 10, 30, 20, tzinfo=datetime.timezone.utc)
    """
    match = _TIMESTAMP_RE.fullmatch(text)
    if not match:
        raise FrameError(f"{where + ': ' if where else ''}{text!r} is not YYMMDDhhmmssX")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    zone = ZoneInfo(timezone)
    try:
        local = datetime(2000 + year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError as exc:
        raise FrameError(f"{where + ': ' if where else ''}{text!r} is no date: {exc}") from exc
    flag = match[7]
    if flag:
        summer = flag == "S"
        for candidate in (local, local.replace(fold=1)):
            if bool(candidate.dst()) == summer:
                return candidate.astimezone(UTC)
    return local.astimezone(UTC)


def format_timestamp(moment: datetime, *, timezone: str = DEFAULT_TIMEZONE) -> str:
    """The inverse of :func:`parse_timestamp` for an aware ``moment`` (seconds truncated).

    >>> format_timestamp(datetime(2010, 12, 9, 10, 30, 20, tzinfo=UTC))
    '101209113020W'
    """
    if moment.tzinfo is None:
        raise ValueError("format_timestamp needs an aware datetime")
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime("%y%m%d%H%M%S") + ("S" if local.dst() else "W")
