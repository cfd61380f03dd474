"""The CIS files, row by row: text fields in, a typed row or the list of what is wrong out.

Pure functions over plain data, no database: each parser takes one record's
fields and returns either a frozen row with typed values or every problem of
that record (not just the first), so a rejected file is fixed in one pass.
:func:`parse_records` adds what needs the whole file but not the store:
keys given twice, a meter described two ways, a route given two cycles, the
rows of one billed read that disagree on its time, type or multiplier.
What needs the store (references, installation history) is
:mod:`hub.imports.apply`'s job.

Every text value is one line of printable text: a control character in a
name would reach bills and handheld screens, and PostgreSQL refuses NUL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from hub.imports.csv_file import Record
from hub.imports.problems import ROW, Problem
from hub.rates.model import OPTION_RE, RATE_CODE_RE
from protocols.read import METER_RE, REGISTER_RE
from protocols.scalars import (
    ScalarError,
    format_decimal,
    format_instant,
    normalize_instant,
    parse_decimal,
)


class Kind(StrEnum):
    """The master data files, in an import order that works: each refers only to earlier ones."""

    ACCOUNTS = "accounts"
    METERS = "meters"
    CYCLES = "cycles"
    ROUTES = "routes"
    HISTORY = "history"
    """The CIS's billed reads of earlier cycles: the meter edits' history."""


COLUMNS: Mapping[Kind, tuple[str, ...]] = {
    Kind.ACCOUNTS: ("account_id", "name", "service_address", "status", "rate_code",
                    "rate_options"),
    Kind.METERS: ("meter_serial", "service", "model", "profile", "multiplier", "dials", "unit",
                  "size", "account_id", "installed_on", "removed_on"),
    Kind.CYCLES: ("cycle_id", "read_window_start", "read_window_end", "scheduled_read_date",
                  "bill_period_start", "bill_period_end"),
    Kind.ROUTES: ("route_id", "cycle_id", "sequence", "meter_serial", "location_notes",
                  "latitude", "longitude", "hazards"),
    Kind.HISTORY: ("cycle_id", "meter_serial", "read_at", "read_type", "register", "value",
                   "multiplier"),
}
"""Each file's header: exactly these columns, in any order."""

ACCOUNT_STATUSES = ("active", "inactive", "vacant", "closed")
SERVICES = ("electric", "water", "gas")
UNITS_BY_SERVICE: Mapping[str, tuple[str, ...]] = {
    "electric": ("kWh",),
    "water": ("m3", "ft3", "gal", "ccf"),
    "gas": ("m3", "ft3", "ccf"),
}
"""The register units a meter of each service may have (``ccf``: hundred cubic feet)."""
UNITS = ("kWh", "m3", "ft3", "gal", "ccf")
MAX_DIALS = 12
MAX_SEQUENCE = 999_999
"""Walk order bound: far beyond any route, well inside a 32-bit integer column."""
MAX_TEXT = 500
"""Longest name, address, note or hazard accepted: longer is a broken export, not a note."""
READ_TYPES = ("actual", "estimated")
"""How the CIS billed a read: from the meter, or estimated (``billing_reads.kind``)."""

KEY_RE = METER_RE
"""Account ids and meter serials: the shape a read's meter id has."""
CYCLE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Cycle ids name export files (``C2026-11.csv``) and sit in API paths (``/cycles/{id}``), so
no ``/`` or ``:``; checked here, or a cycle imported today could not be exported at its end
(:data:`hub.export.files.CYCLE_FILE_RE` is this one)."""
PROFILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_INSTANT_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}"
                         r"(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})?")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT_RE = re.compile(r"[0-9]{1,9}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class AccountRow:
    line: int
    account_id: str
    name: str
    service_address: str
    status: str
    rate_code: str
    rate_options: tuple[str, ...]
    """Sorted, so a CIS listing the same options in another order changes nothing."""


@dataclass(frozen=True)
class MeterRow:
    """One installation of a meter on an account, with the meter's own facts."""

    line: int
    meter_serial: str
    service: str
    model: str | None
    profile: str | None
    multiplier: Decimal
    dials: int
    unit: str
    size: str | None
    account_id: str
    installed_on: date
    removed_on: date | None

    @property
    def installation(self) -> tuple[str, str, date]:
        """The installation's key: (meter, account, installed on)."""
        return (self.meter_serial, self.account_id, self.installed_on)

    @property
    def attributes(self) -> dict[str, object]:
        """The meter's own facts, as the ``meters`` table stores them."""
        return {"service": self.service, "model": self.model, "profile": self.profile,
                "multiplier": format_decimal(self.multiplier), "dials": self.dials,
                "unit": self.unit, "size": self.size}


@dataclass(frozen=True)
class CycleRow:
    line: int
    cycle_id: str
    read_window_start: date
    read_window_end: date
    scheduled_read_date: date
    bill_period_start: date
    bill_period_end: date


@dataclass(frozen=True)
class RouteStopRow:
    line: int
    route_id: str
    cycle_id: str
    sequence: int
    meter_serial: str
    location_notes: str
    latitude: Decimal | None
    longitude: Decimal | None
    hazards: str


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One register of one billed read: history files are long, a row per register."""

    line: int
    cycle_id: str
    meter_serial: str
    read_at: datetime
    """Aware UTC, to the millisecond."""
    read_type: str
    register: str
    value: Decimal
    multiplier: Decimal

    @property
    def read(self) -> tuple[str, str]:
        """The billed read the row belongs to: (cycle, meter)."""
        return (self.cycle_id, self.meter_serial)


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """A billed read of the CIS: a file's rows for one (cycle, meter), put together."""

    line: int
    """The line of its first row."""
    lines: tuple[int, ...]
    cycle_id: str
    meter_serial: str
    read_at: datetime
    read_type: str
    multiplier: Decimal
    registers: Mapping[str, Decimal]
    """Register name → value, in name order."""


def history_reads(rows: Iterable[HistoryRow]) -> list[HistoryRead]:
    """The billed reads of a history file's rows, in the order they first appear.

    Each read takes its time, type and multiplier from its first row:
    :func:`parse_records` has already refused rows that disagree.
    """
    grouped: dict[tuple[str, str], list[HistoryRow]] = {}
    for row in rows:
        grouped.setdefault(row.read, []).append(row)
    reads = []
    for group in grouped.values():
        first = group[0]
        registers = {row.register: row.value for row in sorted(group, key=lambda r: r.register)}
        reads.append(HistoryRead(first.line, tuple(row.line for row in group), first.cycle_id,
                                 first.meter_serial, first.read_at, first.read_type,
                                 first.multiplier, registers))
    return reads


AnyRow = AccountRow | MeterRow | CycleRow | RouteStopRow | HistoryRow
RowT = TypeVar("RowT", bound=AnyRow)


class _Fields:
    """One record's fields, read column by column; every problem found is kept, not raised."""

    def __init__(self, fields: Mapping[str, str], *, file: str, line: int) -> None:
        self.fields, self.file, self.line = fields, file, line
        self.problems: list[Problem] = []

    def problem(self, column: str, reason: str) -> None:
        self.problems.append(Problem(self.file, self.line, column, reason))

    def text(self, column: str, *, required: bool = True, max_len: int = MAX_TEXT,
             pattern: re.Pattern[str] | None = None, shape: str = "") -> str | None:
        """The stripped value; ``None`` for an empty optional field or a problem."""
        value = self.fields.get(column, "").strip()
        if not value:
            if required:
                self.problem(column, "required; the field is empty")
            return None
        if _CONTROL_RE.search(value):
            self.problem(column, "holds a control character (line break, tab, NUL …); "
                                 "one line of printable text is expected")
        elif len(value) > max_len:
            self.problem(column, f"{len(value)} characters; at most {max_len}")
        elif pattern is not None and not pattern.fullmatch(value):
            self.problem(column, f"{_show(value)} is not {shape}")
        else:
            return value
        return None

    def key(self, column: str) -> str | None:
        return self.text(column, max_len=64, pattern=KEY_RE,
                         shape="an id (letters, digits, ._:/-; at most 64, starting with a "
                               "letter or digit)")

    def cycle_key(self, column: str) -> str | None:
        return self.text(column, max_len=64, pattern=CYCLE_ID_RE,
                         shape="a cycle id (letters, digits, . _ -; at most 64, starting with "
                               "a letter or digit): it names the cycle's export file")

    def choice(self, column: str, choices: Sequence[str]) -> str | None:
        value = self.text(column, max_len=64)
        if value is not None and value not in choices:
            self.problem(column, f"{_show(value)} is not one of {', '.join(choices)}")
            return None
        return value

    def day(self, column: str, *, required: bool = True) -> date | None:
        value = self.text(column, required=required, max_len=10, pattern=_DATE_RE,
                          shape="a date YYYY-MM-DD")
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.problem(column, f"{value} is not a calendar date")
            return None

    def instant(self, column: str) -> datetime | None:
        """An ISO 8601 instant with its zone (``Z`` or an offset), as aware UTC."""
        value = self.text(column, max_len=40)
        if value is None:
            return None
        match = _INSTANT_RE.fullmatch(value)
        if match is None:
            if _DATE_RE.fullmatch(value):
                self.problem(column, f"{value} is a date without a time; write when the meter "
                                     f"was read, with its zone: {value}T09:12:00Z (UTC) or "
                                     f"{value}T11:12:00+02:00")
            else:
                self.problem(column, f"{_show(value)} is not an instant like "
                                     "2026-10-03T09:12:00Z or 2026-10-03T11:12:00+02:00")
            return None
        if match["zone"] is None:
            self.problem(column, f"{value} has no time zone; add Z for UTC or the offset it "
                                 f"was written in: {value}Z or {value}+02:00")
            return None
        try:
            return normalize_instant(datetime.fromisoformat(value))
        except (ValueError, OverflowError):  # 2026-02-30, 25:00, +24:00, beyond year 1..9999
            self.problem(column, f"{value} is not a calendar instant")
            return None

    def integer(self, column: str, low: int, high: int) -> int | None:
        value = self.text(column, max_len=9, pattern=_INT_RE,
                          shape=f"a whole number from {low} to {high}")
        if value is None:
            return None
        number = int(value)
        if not low <= number <= high:
            self.problem(column, f"{number} is not from {low} to {high}")
            return None
        return number

    def decimal(self, column: str, *, required: bool = True, max_len: int) -> Decimal | None:
        value = self.text(column, required=required, max_len=max_len)
        if value is None:
            return None
        try:
            return parse_decimal(value)
        except ScalarError:
            self.problem(column, f"{_show(value)} is not a decimal number written plainly "
                                 "(like 40, 1.5 or -0.25: no +, no exponent, no leading zeros)")
            return None


def parse_account(fields: Mapping[str, str], *, file: str, line: int
                  ) -> AccountRow | list[Problem]:
    """An ``accounts.csv`` record, or its problems."""
    f = _Fields(fields, file=file, line=line)
    account_id = f.key("account_id")
    name = f.text("name")
    address = f.text("service_address")
    status = f.choice("status", ACCOUNT_STATUSES)
    rate_code = f.text("rate_code", max_len=64, pattern=RATE_CODE_RE,
                       shape="a rate code (letters, digits, ._-)")
    options = _rate_options(f)
    if f.problems:
        return f.problems
    assert account_id and name and address and status and rate_code and options is not None
    return AccountRow(line, account_id, name, address, status, rate_code, options)


def _rate_options(f: _Fields) -> tuple[str, ...] | None:
    value = f.text("rate_options", required=False)
    if value is None:
        return None if any(p.column == "rate_options" for p in f.problems) else ()
    codes = [code.strip() for code in value.split(";")]
    bad = [code for code in codes if not OPTION_RE.fullmatch(code)]
    if bad:
        f.problem("rate_options", f"{', '.join(_show(code) for code in bad)}: each option is a "
                                  "lowercase code (a-z, 0-9, _), separated by ';'")
        return None
    twice = sorted({code for code in codes if codes.count(code) > 1})
    if twice:
        f.problem("rate_options", f"{', '.join(twice)} listed twice")
        return None
    return tuple(sorted(codes))


def parse_meter(fields: Mapping[str, str], *, file: str, line: int) -> MeterRow | list[Problem]:
    """A ``meters.csv`` record (one installation), or its problems."""
    f = _Fields(fields, file=file, line=line)
    serial = f.key("meter_serial")
    service = f.choice("service", SERVICES)
    model = f.text("model", required=False, max_len=64)
    profile = f.text("profile", required=False, max_len=64, pattern=PROFILE_RE,
                     shape="a firmware profile id (letters, digits, ._-)")
    multiplier = f.decimal("multiplier", max_len=32)
    if multiplier is not None and multiplier <= 0:
        f.problem("multiplier", f"{format_decimal(multiplier)} is not above 0")
    dials = f.integer("dials", 1, MAX_DIALS)
    unit = f.choice("unit", UNITS)
    if service and unit and unit not in UNITS_BY_SERVICE[service]:
        f.problem("unit", f"{unit} is not a unit of a {service} meter "
                          f"({', '.join(UNITS_BY_SERVICE[service])})")
    size = f.text("size", required=False, max_len=32)
    account_id = f.key("account_id")
    installed_on = f.day("installed_on")
    removed_on = f.day("removed_on", required=False)
    if installed_on and removed_on and removed_on < installed_on:
        f.problem("removed_on", f"{removed_on} is before installed_on {installed_on}")
    if f.problems:
        return f.problems
    assert serial and service and multiplier is not None and dials and unit and account_id
    assert installed_on
    return MeterRow(line, serial, service, model, profile, multiplier, dials, unit, size,
                    account_id, installed_on, removed_on)


def parse_cycle(fields: Mapping[str, str], *, file: str, line: int) -> CycleRow | list[Problem]:
    """A ``cycles.csv`` record, or its problems; an empty scheduled date is the window's end."""
    f = _Fields(fields, file=file, line=line)
    cycle_id = f.cycle_key("cycle_id")
    window_start, window_end = f.day("read_window_start"), f.day("read_window_end")
    scheduled = f.day("scheduled_read_date", required=False)
    bill_start, bill_end = f.day("bill_period_start"), f.day("bill_period_end")
    if window_start and window_end:
        if window_end < window_start:
            f.problem("read_window_end", f"{window_end} is before read_window_start "
                                         f"{window_start}")
        elif scheduled and not window_start <= scheduled <= window_end:
            f.problem("scheduled_read_date", f"{scheduled} is outside the read window "
                                             f"{window_start}..{window_end}")
    if bill_start and bill_end and bill_end < bill_start:
        f.problem("bill_period_end", f"{bill_end} is before bill_period_start {bill_start}")
    if f.problems:
        return f.problems
    assert cycle_id and window_start and window_end and bill_start and bill_end
    return CycleRow(line, cycle_id, window_start, window_end, scheduled or window_end,
                    bill_start, bill_end)


def parse_route_stop(fields: Mapping[str, str], *, file: str, line: int
                     ) -> RouteStopRow | list[Problem]:
    """A ``routes.csv`` record (one stop of a route), or its problems."""
    f = _Fields(fields, file=file, line=line)
    route_id, cycle_id = f.key("route_id"), f.cycle_key("cycle_id")
    sequence = f.integer("sequence", 1, MAX_SEQUENCE)
    serial = f.key("meter_serial")
    notes = f.text("location_notes", required=False) or ""
    latitude = _coordinate(f, "latitude", 90)
    longitude = _coordinate(f, "longitude", 180)
    coordinates_read = not any(p.column in {"latitude", "longitude"} for p in f.problems)
    if coordinates_read and (latitude is None) != (longitude is None):
        given, empty = ("latitude", "longitude") if longitude is None else ("longitude",
                                                                            "latitude")
        f.problem(empty, f"empty while {given} is given; give both or neither")
    hazards = f.text("hazards", required=False) or ""
    if f.problems:
        return f.problems
    assert route_id and cycle_id and sequence and serial
    return RouteStopRow(line, route_id, cycle_id, sequence, serial, notes, latitude, longitude,
                        hazards)


def parse_history(fields: Mapping[str, str], *, file: str, line: int
                  ) -> HistoryRow | list[Problem]:
    """A ``history.csv`` record (one register of a billed read), or its problems."""
    f = _Fields(fields, file=file, line=line)
    cycle_id, serial = f.cycle_key("cycle_id"), f.key("meter_serial")
    read_at = f.instant("read_at")
    read_type = f.choice("read_type", READ_TYPES)
    register = f.text("register", max_len=64, pattern=REGISTER_RE,
                      shape="a register name (a-z, 0-9 and _, starting with a letter; at most "
                            "64), like energy_import_kwh")
    value = f.decimal("value", max_len=40)
    if value is not None and value < 0:
        f.problem("value", f"{format_decimal(value)} is below 0; a register never is")
    multiplier = f.decimal("multiplier", max_len=32)
    if multiplier is not None and multiplier <= 0:
        f.problem("multiplier", f"{format_decimal(multiplier)} is not above 0")
    if f.problems:
        return f.problems
    assert cycle_id and serial and read_at and read_type and register
    assert value is not None and multiplier is not None
    return HistoryRow(line, cycle_id, serial, read_at, read_type, register, value, multiplier)


def _coordinate(f: _Fields, column: str, bound: int) -> Decimal | None:
    value = f.decimal(column, required=False, max_len=16)
    if value is not None and not -bound <= value <= bound:
        f.problem(column, f"{format_decimal(value)} is outside -{bound}..{bound} degrees")
        return None
    return value


PARSERS: Mapping[Kind, Callable[..., AnyRow | list[Problem]]] = {
    Kind.ACCOUNTS: parse_account,
    Kind.METERS: parse_meter,
    Kind.CYCLES: parse_cycle,
    Kind.ROUTES: parse_route_stop,
    Kind.HISTORY: parse_history,
}


@dataclass(frozen=True)
class Parsed:
    """A file's valid rows (a repeated key's first row only) and every problem found."""

    rows: tuple[AnyRow, ...]
    problems: tuple[Problem, ...]


def parse_records(kind: Kind, records: Iterable[Record], *, file: str) -> Parsed:
    """Parse every record of a ``kind`` file, then check what spans rows."""
    parser = PARSERS[kind]
    rows: list[AnyRow] = []
    problems: list[Problem] = []
    for record in records:
        result = parser(record.fields, file=file, line=record.line)
        if isinstance(result, list):
            problems.extend(result)
        else:
            rows.append(result)
    kept, more = _FILE_CHECKS[kind](rows, file)
    return Parsed(tuple(kept), tuple(problems + more))


def _first_of_each(rows: Sequence[RowT], key: Callable[[RowT], Hashable], file: str,
                   what: Callable[[RowT], str]) -> tuple[list[RowT], list[Problem]]:
    """Rows with a key not seen before, and a problem for each repeat naming the first line."""
    first: dict[Hashable, RowT] = {}
    kept, problems = [], []
    for row in rows:
        seen = first.setdefault(key(row), row)
        if seen is row:
            kept.append(row)
        else:
            problems.append(Problem(file, row.line, ROW,
                                    f"{what(row)} is also on line {seen.line}"))
    return kept, problems


def _accounts_in_file(rows: Sequence[AccountRow], file: str
                      ) -> tuple[list[AccountRow], list[Problem]]:
    return _first_of_each(rows, lambda r: r.account_id, file,
                          lambda r: f"account {r.account_id}")


def _cycles_in_file(rows: Sequence[CycleRow], file: str) -> tuple[list[CycleRow], list[Problem]]:
    return _first_of_each(rows, lambda r: r.cycle_id, file, lambda r: f"cycle {r.cycle_id}")


def _meters_in_file(rows: Sequence[MeterRow], file: str) -> tuple[list[MeterRow], list[Problem]]:
    """One row per installation, and one description per meter across its installations."""
    kept, problems = _first_of_each(
        rows, lambda r: r.installation, file,
        lambda r: f"installation of meter {r.meter_serial} on account {r.account_id} from "
                  f"{r.installed_on}")
    described: dict[str, MeterRow] = {}
    consistent = []
    for row in kept:
        first = described.setdefault(row.meter_serial, row)
        differing = [name for name, value in row.attributes.items()
                     if first.attributes[name] != value]
        for name in differing:
            problems.append(Problem(
                file, row.line, name,
                f"meter {row.meter_serial} has {name} {_show(row.attributes[name])} here but "
                f"{_show(first.attributes[name])} on line {first.line}; a meter's facts are "
                "the same on each of its installations"))
        if not differing:
            consistent.append(row)
    return consistent, problems


def _routes_in_file(rows: Sequence[RouteStopRow], file: str
                    ) -> tuple[list[RouteStopRow], list[Problem]]:
    """One stop per (route, sequence), a meter once per route, one cycle per route."""
    kept, problems = _first_of_each(rows, lambda r: (r.route_id, r.sequence), file,
                                    lambda r: f"route {r.route_id} sequence {r.sequence}")
    kept, more = _first_of_each(kept, lambda r: (r.route_id, r.meter_serial), file,
                                lambda r: f"meter {r.meter_serial} on route {r.route_id}")
    problems += more
    cycle_of: dict[str, RouteStopRow] = {}
    consistent = []
    for row in kept:
        first = cycle_of.setdefault(row.route_id, row)
        if first.cycle_id != row.cycle_id:
            problems.append(Problem(file, row.line, "cycle_id",
                                    f"route {row.route_id} is in cycle {row.cycle_id} here but "
                                    f"in {first.cycle_id} on line {first.line}"))
        else:
            consistent.append(row)
    return consistent, problems


def _history_in_file(rows: Sequence[HistoryRow], file: str
                     ) -> tuple[list[HistoryRow], list[Problem]]:
    """A register once per billed read, and one time, type and multiplier per billed read."""
    kept, problems = _first_of_each(
        rows, lambda r: (*r.read, r.register), file,
        lambda r: f"register {r.register} of cycle {r.cycle_id} meter {r.meter_serial}")
    first_of: dict[tuple[str, str], HistoryRow] = {}
    consistent = []
    for row in kept:
        first = first_of.setdefault(row.read, row)
        if _read_facts(row) == _read_facts(first):
            consistent.append(row)
            continue
        for column, here, there in zip(_READ_FACTS, _read_facts(row), _read_facts(first),
                                       strict=True):
            if here != there:
                problems.append(Problem(
                    file, row.line, column,
                    f"{_fact(here)} here but {_fact(there)} on line {first.line}; the rows "
                    f"of cycle {row.cycle_id} meter {row.meter_serial} are one billed read and "
                    "agree on read_at, read_type and multiplier"))
    return consistent, problems


_READ_FACTS = ("read_at", "read_type", "multiplier")
"""What every row of a billed read repeats."""


def _read_facts(row: HistoryRow) -> tuple[datetime, str, str]:
    """A row's :data:`_READ_FACTS` as they are stored: the instant in UTC, the decimal's text."""
    return (row.read_at, row.read_type, format_decimal(row.multiplier))


def _fact(value: datetime | str) -> str:
    return format_instant(value) if isinstance(value, datetime) else value


_FILE_CHECKS: Mapping[Kind, Callable[..., tuple[list[AnyRow], list[Problem]]]] = {
    Kind.ACCOUNTS: _accounts_in_file,
    Kind.METERS: _meters_in_file,
    Kind.CYCLES: _cycles_in_file,
    Kind.ROUTES: _routes_in_file,
    Kind.HISTORY: _history_in_file,
}


def _show(value: object) -> str:
    """A value quoted for a message, cut short: the reason must stay one readable line."""
    text = "(empty)" if value is None else repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "…"
