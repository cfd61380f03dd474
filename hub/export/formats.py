"""The cycle file's three byte forms — CSV, fixed-width, JSON Lines — written and read back.

Each form is a pure function of the rows (and, for fixed-width, the cycle and
the caller's ``generated_at``): UTF-8, ``\\n`` line ends, rows in
:func:`~hub.export.rows.sorted_rows` order, money as text with two places,
reads and consumption with the meter's places, instants as ISO 8601 UTC with
milliseconds and ``Z``. So the same rows always give the same bytes, and a
re-export is byte-identical. Every form reads back (:func:`parse`) into the
rows it was written from, which is how verification re-counts a file's rows
from the file itself.

- **CSV** (``csv``): a header, then one record per account-meter with the
  columns of :data:`CSV_COLUMNS`. Absent values are empty cells; ``edit_flags``
  are rule ids joined with ``;``; ``lines`` holds the bill lines as one compact
  JSON array (keys ``amount``, ``code``, ``description``, ``price``,
  ``quantity``, ``unit``; numbers as strings, sorted keys), so every row has the
  same columns whatever its number of lines, and ``line_count`` says how many.
- **Fixed-width** (``fixed``): classic CIS records of :data:`RECORD_LENGTH`
  bytes — a header, per account-meter a detail record followed by its edit-flag
  and bill-line records, and a trailer with counts and control totals. The
  layout is data (:func:`fixed_width_layout`); the writer, the reader and the
  documented table (:func:`layout_markdown`) all come from it. A value that
  does not fit its field raises :class:`FieldWidthError`; nothing is truncated
  or rounded.
- **JSON Lines** (``jsonl``): one compact JSON object per account-meter, sorted
  keys, decimals as strings, absent values ``null``, ``edit_flags`` and
  ``lines`` as arrays.

Example::

    data = render(rows, Format.CSV)
    assert parse(data, Format.CSV) == sorted_rows(rows)
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from enum import StrEnum
from typing import Any

from hub.export.rows import (
    EXACT,
    ExportError,
    ExportLine,
    ExportRow,
    ExportRowError,
    exact_sum,
    money_text,
    sorted_rows,
)
from protocols.scalars import (
    ScalarError,
    format_decimal,
    format_instant,
    normalize_decimal,
    normalize_instant,
    parse_decimal,
    parse_instant,
)


class Format(StrEnum):
    """A cycle file's byte form; its value is what ``--format`` takes."""

    CSV = "csv"
    FIXED = "fixed"
    JSONL = "jsonl"

    @property
    def extension(self) -> str:
        """The file name's extension: ``csv``, ``txt`` (fixed-width) or ``jsonl``."""
        return {"csv": "csv", "fixed": "txt", "jsonl": "jsonl"}[self.value]


class FieldWidthError(ExportError):
    """A value that does not fit its fixed-width field: too long, or too many places."""

    def __init__(self, why: str, *, record: str, field: str,
                 key: tuple[str, ...] | None = None) -> None:
        self.why = why
        self.record = record
        self.field = field
        self.key = key
        where = f"row {'/'.join(key)}, " if key else ""
        super().__init__(f"{where}{record} record, field {field!r}: {why}")


class ExportParseError(ExportError, ValueError):
    """Bytes that are not a well-formed export in the named format; says where."""

    def __init__(self, why: str, *, fmt: Format, line: int | None = None,
                 field: str | None = None) -> None:
        self.why = why
        self.fmt = fmt
        self.line = line
        self.field = field
        where = [f"{fmt.value} export"]
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {why}")


_MONEY_RE = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]{2}")
_LINE_KEYS = ("amount", "code", "description", "price", "quantity", "unit")


# --- shared text forms ---------------------------------------------------------------------

def _opt_decimal(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def _opt_instant(value: datetime | None) -> str | None:
    return None if value is None else format_instant(value)


def _line_object(line: ExportLine) -> dict[str, str | None]:
    return {"amount": money_text(line.amount), "code": line.code,
            "description": line.description, "price": _opt_decimal(line.price),
            "quantity": format_decimal(line.quantity), "unit": line.unit}


def _compact(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _parse_money(text: object) -> Decimal:
    if not isinstance(text, str) or not _MONEY_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not money with two decimal places (e.g. 12.50)")
    return normalize_decimal(Decimal(text))


def _parse_opt_decimal(text: object) -> Decimal | None:
    if text is None:
        return None
    return parse_decimal(text)  # type: ignore[arg-type]


def _parse_opt_instant(text: object) -> datetime | None:
    if text is None:
        return None
    return parse_instant(text)  # type: ignore[arg-type]


def _line_from_object(obj: object) -> ExportLine:
    if not isinstance(obj, dict) or sorted(obj) != list(_LINE_KEYS):
        raise ValueError(f"a bill line is an object with keys {', '.join(_LINE_KEYS)}")
    return ExportLine(code=obj["code"], description=obj["description"],
                      quantity=parse_decimal(obj["quantity"]), unit=obj["unit"],
                      price=_parse_opt_decimal(obj["price"]), amount=_parse_money(obj["amount"]))


def _strict_json(text: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("a key appears twice")
        return dict(pairs)

    def no_number(text: str) -> Any:
        raise ValueError(f"number {text} where a decimal string belongs")

    return json.loads(text, object_pairs_hook=no_duplicates, parse_float=no_number,
                      parse_int=no_number)


# --- CSV -----------------------------------------------------------------------------------

CSV_COLUMNS = ("cycle", "route", "account", "meter", "service", "read_type",
               "previous_read", "previous_read_at", "current_read", "current_read_at",
               "multiplier", "consumption", "unit", "edit_flags", "line_count", "total",
               "currency", "lines")
"""The CSV header, in order."""


def _csv_record(row: ExportRow) -> list[str]:
    return [row.cycle, row.route, row.account, row.meter, row.service, row.read_type,
            _opt_decimal(row.previous_read) or "", _opt_instant(row.previous_read_at) or "",
            _opt_decimal(row.current_read) or "", _opt_instant(row.current_read_at) or "",
            format_decimal(row.multiplier), _opt_decimal(row.consumption) or "", row.unit,
            ";".join(row.edit_flags), str(len(row.lines)), money_text(row.total),
            row.currency, _compact([_line_object(line) for line in row.lines])]


def _render_csv(rows: Sequence[ExportRow]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_record(row) for row in rows)
    return buffer.getvalue().encode("utf-8")


def _row_from_csv(cells: Mapping[str, str]) -> ExportRow:
    def opt(name: str) -> str | None:
        return cells[name] or None

    lines_json = _strict_json(cells["lines"])
    if not isinstance(lines_json, list):
        raise ValueError("lines must be a JSON array")
    lines = tuple(_line_from_object(obj) for obj in lines_json)
    if cells["line_count"] != str(len(lines)):
        raise ValueError(f"line_count {cells['line_count']!r} but {len(lines)} lines")
    return ExportRow(
        cycle=cells["cycle"], route=cells["route"], account=cells["account"],
        meter=cells["meter"], service=cells["service"], read_type=cells["read_type"],
        previous_read=_parse_opt_decimal(opt("previous_read")),
        previous_read_at=_parse_opt_instant(opt("previous_read_at")),
        current_read=_parse_opt_decimal(opt("current_read")),
        current_read_at=_parse_opt_instant(opt("current_read_at")),
        multiplier=parse_decimal(cells["multiplier"]),
        consumption=_parse_opt_decimal(opt("consumption")), unit=cells["unit"],
        edit_flags=tuple(cells["edit_flags"].split(";")) if cells["edit_flags"] else (),
        lines=lines, total=_parse_money(cells["total"]), currency=cells["currency"])


def _parse_csv(data: bytes) -> list[ExportRow]:
    text = _utf8(data, Format.CSV)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = []
    try:
        header = next(reader, None)
        if header is None or tuple(header) != CSV_COLUMNS:
            raise ExportParseError(f"the header must be {','.join(CSV_COLUMNS)}",
                                   fmt=Format.CSV, line=1)
        for record in reader:
            line = reader.line_num
            if len(record) != len(CSV_COLUMNS):
                raise ExportParseError(f"{len(record)} columns, expected {len(CSV_COLUMNS)}",
                                       fmt=Format.CSV, line=line)
            try:
                rows.append(_row_from_csv(dict(zip(CSV_COLUMNS, record, strict=True))))
            except (ExportRowError, ScalarError, ValueError) as exc:
                raise ExportParseError(str(exc), fmt=Format.CSV, line=line) from None
    except csv.Error as exc:
        raise ExportParseError(str(exc), fmt=Format.CSV, line=reader.line_num) from None
    return rows


def _utf8(data: bytes, fmt: Format) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExportParseError(f"not UTF-8: {exc}", fmt=fmt) from None
    if text and not text.endswith("\n"):
        raise ExportParseError("the last line has no line end: a truncated file?", fmt=fmt)
    return text


# --- JSON Lines ----------------------------------------------------------------------------

JSONL_KEYS = ("account", "consumption", "currency", "current_read", "current_read_at",
              "cycle", "edit_flags", "lines", "meter", "multiplier", "previous_read",
              "previous_read_at", "read_type", "route", "service", "total", "unit")
"""Every JSON Lines object has exactly these keys (sorted)."""


def _jsonl_object(row: ExportRow) -> dict[str, object]:
    return {"account": row.account, "consumption": _opt_decimal(row.consumption),
            "currency": row.currency, "current_read": _opt_decimal(row.current_read),
            "current_read_at": _opt_instant(row.current_read_at), "cycle": row.cycle,
            "edit_flags": list(row.edit_flags),
            "lines": [_line_object(line) for line in row.lines], "meter": row.meter,
            "multiplier": format_decimal(row.multiplier),
            "previous_read": _opt_decimal(row.previous_read),
            "previous_read_at": _opt_instant(row.previous_read_at),
            "read_type": row.read_type, "route": row.route, "service": row.service,
            "total": money_text(row.total), "unit": row.unit}


def _render_jsonl(rows: Sequence[ExportRow]) -> bytes:
    return "".join(_compact(_jsonl_object(row)) + "\n" for row in rows).encode("utf-8")


def _row_from_jsonl(obj: object) -> ExportRow:
    if not isinstance(obj, dict) or tuple(sorted(obj)) != JSONL_KEYS:
        raise ValueError(f"an object with exactly the keys {', '.join(JSONL_KEYS)}")
    flags, lines = obj["edit_flags"], obj["lines"]
    if not isinstance(flags, list) or not isinstance(lines, list):
        raise ValueError("edit_flags and lines must be arrays")
    return ExportRow(
        cycle=obj["cycle"], route=obj["route"], account=obj["account"], meter=obj["meter"],
        service=obj["service"], read_type=obj["read_type"],
        previous_read=_parse_opt_decimal(obj["previous_read"]),
        previous_read_at=_parse_opt_instant(obj["previous_read_at"]),
        current_read=_parse_opt_decimal(obj["current_read"]),
        current_read_at=_parse_opt_instant(obj["current_read_at"]),
        multiplier=parse_decimal(obj["multiplier"]),
        consumption=_parse_opt_decimal(obj["consumption"]), unit=obj["unit"],
        edit_flags=tuple(flags), lines=tuple(_line_from_object(line) for line in lines),
        total=_parse_money(obj["total"]), currency=obj["currency"])


def _parse_jsonl(data: bytes) -> list[ExportRow]:
    text = _utf8(data, Format.JSONL)
    rows = []
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        try:
            rows.append(_row_from_jsonl(_strict_json(line)))
        except (ExportRowError, ScalarError, ValueError) as exc:
            raise ExportParseError(str(exc), fmt=Format.JSONL, line=number) from None
    return rows


# --- fixed-width ---------------------------------------------------------------------------

class FieldKind(StrEnum):
    """How a fixed-width field is written; justification and padding follow from it."""

    CONSTANT = "constant"
    """The record type letter."""
    TEXT = "text"
    """UTF-8 text, left-justified, padded with spaces; its width counts bytes."""
    COUNT = "count"
    """A non-negative integer, right-justified, padded with zeros."""
    DECIMAL = "decimal"
    """Sign, zero-padded digits, a point and exactly ``scale`` places; blank when absent."""
    INSTANT = "instant"
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC); blank when absent."""
    FILLER = "filler"
    """Spaces, up to the record length."""


@dataclass(frozen=True)
class Field:
    """One field of a fixed-width record: where it sits and how it is written."""

    record: str
    name: str
    start: int
    """1-based byte position of the field's first byte in its record."""
    width: int
    kind: FieldKind
    scale: int = 0
    """Decimal places of a :attr:`FieldKind.DECIMAL` field."""
    description: str = ""

    @property
    def end(self) -> int:
        """1-based byte position of the field's last byte."""
        return self.start + self.width - 1

    @property
    def justify(self) -> str:
        return "right" if self.kind in (FieldKind.COUNT, FieldKind.DECIMAL) else "left"

    @property
    def padding(self) -> str:
        return "zeros" if self.kind in (FieldKind.COUNT, FieldKind.DECIMAL) else "spaces"

    @property
    def picture(self) -> str:
        """The field's form, as the layout table shows it."""
        if self.kind is FieldKind.CONSTANT:
            return f"`{self.record}`"
        if self.kind is FieldKind.TEXT:
            return f"text X({self.width})"
        if self.kind is FieldKind.COUNT:
            return f"count 9({self.width}), e.g. `{'42'.rjust(self.width, '0')}`"
        if self.kind is FieldKind.DECIMAL:
            example = _encode_field(self, Decimal("-12.5"), None).decode("ascii")
            return f"decimal, {self.scale} places, e.g. `{example}`"
        if self.kind is FieldKind.INSTANT:
            return "`YYYY-MM-DDTHH:MM:SS.mmmZ`"
        return "spaces"


RECORD_LENGTH = 500
"""Bytes in every fixed-width record, before its ``\\n``: identifiers get the 64 bytes
the hub allows them (:data:`protocols.read.METER_RE`), with room left for new fields."""
LAYOUT_VERSION = 1

RECORD_TYPES: Mapping[str, str] = {
    "H": "header: the first record, once",
    "D": "detail: one per account-meter, in route, account, meter order",
    "E": "edit flag: one per flag, right after its detail record",
    "L": "bill line: one per line, after its detail's edit-flag records",
    "T": "trailer: the last record, once, with counts and control totals",
}

_T, _C, _D, _I = FieldKind.TEXT, FieldKind.COUNT, FieldKind.DECIMAL, FieldKind.INSTANT
_SPEC: Mapping[str, tuple[tuple[str, int, FieldKind, int, str], ...]] = {
    "H": (
        ("layout_version", 2, _C, 0, "layout version of this table: 01"),
        ("cycle", 64, _T, 0, "billing cycle id"),
        ("generated_at", 24, _I, 0, "when the cycle's bills were computed"),
    ),
    "D": (
        ("row_number", 7, _C, 0, "1, 2, 3 … in file order; its E and L records repeat it"),
        ("cycle", 64, _T, 0, "billing cycle id"),
        ("route", 64, _T, 0, "route id"),
        ("account", 64, _T, 0, "account number"),
        ("meter", 64, _T, 0, "meter serial"),
        ("service", 16, _T, 0, "electric, water or gas"),
        ("read_type", 10, _T, 0, "actual, estimated, handheld or override"),
        ("previous_read", 18, _D, 6, "previous billing read (register)"),
        ("previous_read_at", 24, _I, 0, "when it was read"),
        ("current_read", 18, _D, 6, "this cycle's billing read (register)"),
        ("current_read_at", 24, _I, 0, "when it was read"),
        ("multiplier", 14, _D, 6, "meter multiplier (CT/PT ratio)"),
        ("consumption", 18, _D, 6, "billed consumption: register delta × multiplier"),
        ("unit", 16, _T, 0, "unit of reads and consumption (kWh, m3, ft3, gal, ccf)"),
        ("flag_count", 2, _C, 0, "number of E records that follow"),
        ("line_count", 3, _C, 0, "number of L records that follow them"),
        ("total", 14, _D, 2, "bill total (money): the sum of its lines"),
        ("currency", 3, _T, 0, "ISO 4217 currency code"),
    ),
    "E": (
        ("row_number", 7, _C, 0, "the detail record's row_number"),
        ("flag_number", 2, _C, 0, "1, 2, 3 … within the detail"),
        ("rule", 64, _T, 0, "rule id of a meter-edit finding on this read"),
    ),
    "L": (
        ("row_number", 7, _C, 0, "the detail record's row_number"),
        ("line_number", 3, _C, 0, "1, 2, 3 … within the detail, in bill order"),
        ("code", 64, _T, 0, "rate component code"),
        ("description", 120, _T, 0, "line text as printed on the bill"),
        ("quantity", 18, _D, 6, "billed quantity"),
        ("unit", 16, _T, 0, "unit of the quantity"),
        ("price", 18, _D, 8, "unit price; blank when the line has none"),
        ("amount", 14, _D, 2, "line amount (money)"),
    ),
    "T": (
        ("detail_count", 7, _C, 0, "D records (account-meters)"),
        ("flag_count", 9, _C, 0, "E records"),
        ("line_count", 9, _C, 0, "L records"),
        ("record_count", 10, _C, 0, "all records, header and trailer included"),
        ("amount_total", 16, _D, 2, "control total: the sum of every D record's total"),
        ("consumption_total", 22, _D, 6,
         "control total: the sum of every D record's consumption, all units together"),
    ),
}


def _build_layout() -> dict[str, tuple[Field, ...]]:
    layout = {}
    for record, spec in _SPEC.items():
        fields = [Field(record, "record_type", 1, 1, FieldKind.CONSTANT, 0,
                        f"record type {record}: {RECORD_TYPES[record].split(':')[0]}")]
        for name, width, kind, scale, description in spec:
            fields.append(Field(record, name, fields[-1].end + 1, width, kind, scale,
                                description))
        used = fields[-1].end
        if used > RECORD_LENGTH:  # pragma: no cover - a layout edit that cannot ship
            raise AssertionError(f"{record} record is {used} bytes, over {RECORD_LENGTH}")
        if used < RECORD_LENGTH:
            fields.append(Field(record, "filler", used + 1, RECORD_LENGTH - used,
                                FieldKind.FILLER, 0, "reserved: pads the record"))
        layout[record] = tuple(fields)
    return layout


_LAYOUT = _build_layout()


def fixed_width_layout() -> list[Field]:
    """Every field of every record type, in file order (H, D, E, L, T) and position."""
    return [f for record in RECORD_TYPES for f in _LAYOUT[record]]


def layout_markdown() -> str:
    """The fixed-width layout as the README documents it (generated, never hand-edited)."""
    out = [
        f"Every record is {RECORD_LENGTH} bytes of UTF-8 followed by `\\n`; positions and "
        "widths count bytes, so a multi-byte character takes more than one position. "
        "Text is left-justified and padded with spaces; counts and decimals are "
        "right-justified and padded with zeros after the sign; an absent read, time or "
        "price is all spaces. Times are UTC. A value that does not fit its field stops "
        "the export: nothing is truncated or rounded.",
        "",
        "| record | meaning |",
        "|---|---|",
        *(f"| `{record}` | {meaning} |" for record, meaning in RECORD_TYPES.items()),
        "",
        "| record | field | start | end | width | form | justified | padding | description |",
        "|---|---|---:|---:|---:|---|---|---|---|",
    ]
    out += [f"| `{f.record}` | `{f.name}` | {f.start} | {f.end} | {f.width} | {f.picture} | "
            f"{f.justify} | {f.padding} | {f.description} |" for f in fixed_width_layout()]
    return "\n".join(out) + "\n"


def _encode_text(f: Field, value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > f.width:
        raise _FieldProblem(f"{value!r} is {len(raw)} bytes, the field holds {f.width}", f.name)
    return raw.ljust(f.width, b" ")


def _encode_count(f: Field, value: int) -> bytes:
    text = str(value)
    if value < 0 or len(text) > f.width:
        raise _FieldProblem(f"{value} does not fit {f.width} digits", f.name)
    return text.rjust(f.width, "0").encode("ascii")


def _encode_decimal(f: Field, value: Decimal | None) -> bytes:
    if value is None:
        return b" " * f.width
    with localcontext(EXACT):
        try:
            fixed = value.quantize(Decimal(1).scaleb(-f.scale))
        except (Inexact, InvalidOperation):
            raise _FieldProblem(f"{format_decimal(value)} has more than the field's "
                                f"{f.scale} decimal places", f.name) from None
    whole, _, places = format(abs(fixed), "f").partition(".")
    digits = f.width - 2 - f.scale
    if len(whole) > digits:
        raise _FieldProblem(f"{format_decimal(value)} has more than the field's {digits} "
                            "integer digits", f.name)
    sign = "-" if fixed < 0 else "+"
    return f"{sign}{whole.rjust(digits, '0')}.{places}".encode("ascii")


def _encode_instant(f: Field, value: datetime | None) -> bytes:
    return b" " * f.width if value is None else format_instant(value).encode("ascii")


_ENCODERS: Mapping[FieldKind, Callable[[Field, Any], bytes]] = {
    FieldKind.CONSTANT: lambda f, _: f.record.encode("ascii"),
    FieldKind.TEXT: _encode_text,
    FieldKind.COUNT: _encode_count,
    FieldKind.DECIMAL: _encode_decimal,
    FieldKind.INSTANT: _encode_instant,
    FieldKind.FILLER: lambda f, _: b" " * f.width,
}


def _encode_field(f: Field, value: Any, key: tuple[str, ...] | None) -> bytes:
    try:
        return _ENCODERS[f.kind](f, value)
    except _FieldProblem as exc:
        raise FieldWidthError(exc.why, record=f.record, field=f.name, key=key) from None


def _record(record: str, values: Mapping[str, Any],
            key: tuple[str, ...] | None = None) -> bytes:
    return b"".join(_encode_field(f, values.get(f.name), key) for f in _LAYOUT[record])


def _decode_constant(f: Field, raw: bytes) -> str:
    return raw.decode("ascii")


def _decode_filler(f: Field, raw: bytes) -> None:
    if raw.strip(b" "):
        raise ValueError("filler must be spaces")


def _decode_text(f: Field, raw: bytes) -> str:
    return raw.decode("utf-8").rstrip(" ")


def _decode_count(f: Field, raw: bytes) -> int:
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"{raw.decode('utf-8', 'replace')!r} is not {f.width} digits")
    return int(raw)


def _decode_decimal(f: Field, raw: bytes) -> Decimal | None:
    text = raw.decode("ascii")
    if not text.strip(" "):
        return None
    digits = f.width - 2 - f.scale
    if not re.fullmatch(rf"[+-][0-9]{{{digits}}}\.[0-9]{{{f.scale}}}", text):
        raise ValueError(f"{text!r} is not a signed decimal with {f.scale} places")
    return normalize_decimal(Decimal(text))


def _decode_instant(f: Field, raw: bytes) -> datetime | None:
    text = raw.decode("ascii")
    return None if not text.strip(" ") else parse_instant(text)


_DECODERS: Mapping[FieldKind, Callable[[Field, bytes], Any]] = {
    FieldKind.CONSTANT: _decode_constant,
    FieldKind.TEXT: _decode_text,
    FieldKind.COUNT: _decode_count,
    FieldKind.DECIMAL: _decode_decimal,
    FieldKind.INSTANT: _decode_instant,
    FieldKind.FILLER: _decode_filler,
}


def _fields(record: str, data: bytes) -> dict[str, Any]:
    values = {}
    for f in _LAYOUT[record]:
        try:
            values[f.name] = _DECODERS[f.kind](f, data[f.start - 1:f.end])
        except (ValueError, ScalarError, UnicodeDecodeError) as exc:
            raise _FieldProblem(str(exc), f.name) from None
    return values


class _FieldProblem(Exception):
    def __init__(self, why: str, field: str) -> None:
        self.why = why
        self.field = field


def _render_fixed(rows: Sequence[ExportRow], cycle: str | None,
                  generated_at: datetime | None) -> bytes:
    out = [_record("H", {"layout_version": LAYOUT_VERSION, "cycle": cycle or "",
                         "generated_at": generated_at})]
    flags = lines = 0
    for number, row in enumerate(rows, start=1):
        values = {name: getattr(row, name) for name in (
            "cycle", "route", "account", "meter", "service", "read_type", "previous_read",
            "previous_read_at", "current_read", "current_read_at", "multiplier",
            "consumption", "unit", "total", "currency")}
        out.append(_record("D", {**values, "row_number": number,
                                 "flag_count": len(row.edit_flags),
                                 "line_count": len(row.lines)}, row.key))
        for flag_number, rule in enumerate(row.edit_flags, start=1):
            out.append(_record("E", {"row_number": number, "flag_number": flag_number,
                                     "rule": rule}, row.key))
        for line_number, line in enumerate(row.lines, start=1):
            out.append(_record("L", {"row_number": number, "line_number": line_number,
                                     "code": line.code, "description": line.description,
                                     "quantity": line.quantity, "unit": line.unit,
                                     "price": line.price, "amount": line.amount}, row.key))
        flags += len(row.edit_flags)
        lines += len(row.lines)
    out.append(_record("T", {
        "detail_count": len(rows), "flag_count": flags, "line_count": lines,
        "record_count": len(out) + 1,
        "amount_total": exact_sum(row.total for row in rows),
        "consumption_total": exact_sum(row.consumption for row in rows
                                       if row.consumption is not None)}))
    return b"".join(record + b"\n" for record in out)


@dataclass(frozen=True)
class FixedWidthFile:
    """A fixed-width cycle file read back: its header and its rows."""

    cycle: str
    generated_at: datetime | None
    rows: list[ExportRow]


def parse_fixed_width(data: bytes) -> FixedWidthFile:
    """Read a fixed-width cycle file, checking every record, count and control total."""
    if data and not data.endswith(b"\n"):
        raise ExportParseError("the last record has no line end: a truncated file?",
                               fmt=Format.FIXED)
    records = data.split(b"\n")[:-1]
    reader = _FixedReader(records)
    return reader.read()


class _FixedReader:
    """The state of reading one fixed-width file, record by record."""

    def __init__(self, records: list[bytes]) -> None:
        self.records = records
        self.index = 0

    def fail(self, why: str, field: str | None = None) -> ExportParseError:
        return ExportParseError(why, fmt=Format.FIXED, line=self.index + 1, field=field)

    def take(self, record: str) -> dict[str, Any]:
        if self.index >= len(self.records):
            raise self.fail(f"the file ends where a {record} record belongs")
        data = self.records[self.index]
        if len(data) != RECORD_LENGTH:
            raise self.fail(f"a record is {RECORD_LENGTH} bytes, this one is {len(data)}")
        if data[:1] != record.encode("ascii"):
            raise self.fail(f"expected a {record} record, found {data[:1]!r}", "record_type")
        try:
            values = _fields(record, data)
        except _FieldProblem as exc:
            raise self.fail(exc.why, exc.field) from None
        self.index += 1
        return values

    def peek(self) -> bytes:
        return self.records[self.index][:1] if self.index < len(self.records) else b""

    def read(self) -> FixedWidthFile:
        header = self.take("H")
        if header["layout_version"] != LAYOUT_VERSION:
            self.index -= 1
            raise self.fail(f"layout version {header['layout_version']}, this reader knows "
                            f"{LAYOUT_VERSION}", "layout_version")
        rows = []
        while self.peek() == b"D":
            rows.append(self.detail(len(rows) + 1, header["cycle"]))
        trailer = self.take("T")
        if self.index != len(self.records):
            raise self.fail("records after the trailer")
        self.index -= 1
        expected = {
            "detail_count": len(rows),
            "flag_count": sum(len(row.edit_flags) for row in rows),
            "line_count": sum(len(row.lines) for row in rows),
            "record_count": len(self.records),
            "amount_total": exact_sum(row.total for row in rows),
            "consumption_total": exact_sum(row.consumption for row in rows
                                           if row.consumption is not None),
        }
        for name, value in expected.items():
            if trailer[name] != value:
                raise self.fail(f"trailer says {trailer[name]}, the records add up to {value}",
                                name)
        return FixedWidthFile(header["cycle"], header["generated_at"], rows)

    def detail(self, number: int, cycle: str) -> ExportRow:
        start = self.index
        d = self.take("D")
        if d["row_number"] != number:
            self.index = start
            raise self.fail(f"row_number {d['row_number']}, expected {number}", "row_number")
        if d["cycle"] != cycle:
            self.index = start
            raise self.fail(f"cycle {d['cycle']!r}, the header says {cycle!r}", "cycle")
        flags = [self.child("E", number, "flag_number", i)["rule"]
                 for i in range(1, d["flag_count"] + 1)]
        lines = []
        for i in range(1, d["line_count"] + 1):
            values = self.child("L", number, "line_number", i)
            try:
                lines.append(ExportLine(values["code"], values["description"],
                                        values["quantity"], values["unit"], values["price"],
                                        values["amount"]))
            except ExportRowError as exc:
                self.index -= 1
                raise self.fail(exc.why, exc.field) from None
        try:
            return ExportRow(
                cycle=d["cycle"], route=d["route"], account=d["account"], meter=d["meter"],
                service=d["service"], read_type=d["read_type"],
                previous_read=d["previous_read"], previous_read_at=d["previous_read_at"],
                current_read=d["current_read"], current_read_at=d["current_read_at"],
                multiplier=d["multiplier"], consumption=d["consumption"], unit=d["unit"],
                edit_flags=tuple(flags), lines=tuple(lines), total=d["total"],
                currency=d["currency"])
        except ExportRowError as exc:
            self.index = start
            raise self.fail(exc.why, exc.field) from None

    def child(self, record: str, number: int, counter: str, expected: int) -> dict[str, Any]:
        values = self.take(record)
        if values["row_number"] != number or values[counter] != expected:
            self.index -= 1
            raise self.fail(f"expected {record} record {expected} of row {number}, found "
                            f"{values[counter]} of row {values['row_number']}", counter)
        return values


# --- the three forms behind one interface ---------------------------------------------------

def render(rows: Iterable[ExportRow], fmt: Format | str, *, cycle: str | None = None,
           generated_at: datetime | None = None) -> bytes:
    """The bytes of a cycle file in ``fmt``; the same rows in any order give the same bytes.

    ``cycle`` is the file's cycle (default: the rows'); every row must belong to
    it. ``generated_at`` goes into the fixed-width header (CSV and JSON Lines
    carry no time of their own): pass a time that belongs to the data, such as
    when the bills were computed, never the wall clock, or a re-export differs.
    """
    fmt = Format(fmt)
    ordered = sorted_rows(rows, cycle=cycle)
    if fmt is Format.CSV:
        return _render_csv(ordered)
    if fmt is Format.JSONL:
        return _render_jsonl(ordered)
    if cycle is None and ordered:
        cycle = ordered[0].cycle
    if generated_at is not None:
        generated_at = normalize_instant(generated_at)
    return _render_fixed(ordered, cycle, generated_at)


def parse(data: bytes, fmt: Format | str) -> list[ExportRow]:
    """The rows of a cycle file, read back strictly; :class:`ExportParseError` says where not."""
    fmt = Format(fmt)
    if fmt is Format.CSV:
        return _parse_csv(data)
    if fmt is Format.JSONL:
        return _parse_jsonl(data)
    return parse_fixed_width(data).rows


def count_rows(data: bytes, fmt: Format | str) -> int:
    """How many account-meters a cycle file holds, counted by reading the file itself."""
    return len(parse(data, fmt))
