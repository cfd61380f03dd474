"""One row of a cycle file: an account-meter's reads, consumption and bill, checked once.

Every writer (CSV, fixed-width, JSON Lines) renders the same :class:`ExportRow`,
so what a row may hold is decided here, at construction, and not three times
over: money is a ``Decimal`` with at most two places (bills are rounded per
line when they are computed, never when they are exported) and a row's total is
the sum of its lines; reads, multipliers and consumption are ``Decimal`` and
keep the meter's places; instants are aware and made UTC to the millisecond;
identifiers are non-empty single-line text. A value that breaks a rule raises
:class:`ExportRowError` naming the row and the field.

Rows are written in one order whatever order they arrive in — route, account,
meter (code-point order) — and a cycle file holds each account-meter once, so
that order is total and a re-export is byte-identical.

Example::

    line = ExportLine("ENERGY", "Energy 0-500 kWh", Decimal("412.5"), "kWh",
                      Decimal("0.1123"), Decimal("46.32"))
    row = ExportRow(cycle="C2026-11", route="R01", account="A-1001", meter="SDM630-00001",
                    service="electric", read_type="actual",
                    previous_read=Decimal("1000.000"), previous_read_at=prev_at,
                    current_read=Decimal("1412.500"), current_read_at=cur_at,
                    multiplier=Decimal(1), consumption=Decimal("412.500"), unit="kWh",
                    edit_flags=(), lines=(line,), total=Decimal("46.32"))
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext

from protocols.scalars import ScalarError, normalize_decimal, normalize_instant

READ_TYPES = ("actual", "estimated", "handheld", "override")
"""How a row's current read was obtained (DOMAIN.md's read types, as exported)."""
CENT = Decimal("0.01")
FLAG_RE = re.compile(r"[A-Za-z0-9_.:-]+")
"""An edit flag is a rule id: no separators or spaces, so it can be joined with ``;``."""
CURRENCY_RE = re.compile(r"[A-Z]{3}")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
"""Unicode categories Cc, Cs, Zl and Zp: control characters, surrogates, line breaks."""
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
"""Sums and money formatting in this context are exact or raise; never silently rounded."""


class ExportError(Exception):
    """Base of every problem writing, reading or verifying a cycle export."""


class ExportRowError(ExportError, ValueError):
    """A row (or bill line) that cannot be exported; names the row and the field."""

    def __init__(self, why: str, *, field: str, key: tuple[str, ...] | None = None) -> None:
        self.why = why
        self.field = field
        self.key = key
        where = f"row {'/'.join(key)}, " if key else ""
        super().__init__(f"{where}field {field!r}: {why}")


def money_text(value: Decimal) -> str:
    """``Decimal('12.5')`` → ``'12.50'``: money always as text with exactly two places."""
    with localcontext(EXACT):
        return format(value.quantize(CENT), "f")


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of ``values`` (``Decimal(0)`` for none), whatever their size."""
    with localcontext(EXACT):
        return sum(values, Decimal(0))


def _decimal(value: object, field: str, owner: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise ExportRowError(f"expected a Decimal, got {type(value).__name__} {value!r}",
                             field=f"{owner}{field}")
    try:
        return normalize_decimal(value)
    except ScalarError as exc:
        raise ExportRowError(str(exc), field=f"{owner}{field}") from None


def _money(value: object, field: str, owner: str = "") -> Decimal:
    amount = _decimal(value, field, owner)
    try:
        money_text(amount)
    except (Inexact, InvalidOperation):
        raise ExportRowError(f"{amount} has more than two decimal places; money is billed "
                             "to the cent, so round when billing, not when exporting",
                             field=f"{owner}{field}") from None
    return amount


def _text(value: object, field: str, owner: str = "", *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise ExportRowError(f"expected text, got {type(value).__name__}",
                             field=f"{owner}{field}")
    if required and not value:
        raise ExportRowError("must not be empty", field=f"{owner}{field}")
    if value != value.strip():
        raise ExportRowError(f"{value!r} has leading or trailing whitespace",
                             field=f"{owner}{field}")
    if _CONTROL_RE.search(value):
        raise ExportRowError(f"{value!r} holds a control character or line break",
                             field=f"{owner}{field}")
    return value


def _flags(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ExportRowError("expected a sequence of rule ids", field="edit_flags")
    flags = tuple(value)
    for flag in flags:
        if not isinstance(flag, str) or not FLAG_RE.fullmatch(flag):
            raise ExportRowError(f"{flag!r} is not a rule id", field="edit_flags")
    return tuple(sorted(set(flags)))


def _instant(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return normalize_instant(value)  # type: ignore[arg-type]
    except ScalarError as exc:
        raise ExportRowError(str(exc), field=field) from None


@dataclass(frozen=True, slots=True)
class ExportLine:
    """One line of a bill: a rate component's quantity, unit price and amount."""

    code: str
    """The rate component (``FIXED``, ``ENERGY_T1``, ``TAX`` …): what the CIS maps to a charge."""
    description: str
    quantity: Decimal
    unit: str
    """What ``quantity`` counts (``kWh``, ``day``, ``bill``); may be empty."""
    price: Decimal | None
    """Unit price, when the line has one (a percentage tax may not)."""
    amount: Decimal
    """Money, at most two decimal places."""

    def __post_init__(self) -> None:
        owner = f"line {self.code!r}." if isinstance(self.code, str) else "line."
        _text(self.code, "code", "line.")
        _text(self.description, "description", owner, required=False)
        _text(self.unit, "unit", owner, required=False)
        object.__setattr__(self, "quantity", _decimal(self.quantity, "quantity", owner))
        if self.price is not None:
            object.__setattr__(self, "price", _decimal(self.price, "price", owner))
        object.__setattr__(self, "amount", _money(self.amount, "amount", owner))


@dataclass(frozen=True, slots=True)
class ExportRow:
    """An account-meter in a cycle file: its reads, consumption, edit flags and bill."""

    cycle: str
    route: str
    account: str
    meter: str
    service: str
    read_type: str
    """``actual``, ``estimated``, ``handheld`` or ``override``."""
    previous_read: Decimal | None
    previous_read_at: datetime | None
    current_read: Decimal | None
    current_read_at: datetime | None
    multiplier: Decimal
    consumption: Decimal | None
    """Billed consumption: register delta (with rollover) × multiplier, in ``unit``."""
    unit: str
    edit_flags: tuple[str, ...]
    """Rule ids of the edits' findings on this read; kept sorted and unique."""
    lines: tuple[ExportLine, ...]
    total: Decimal
    """Money: the sum of the lines' amounts."""
    currency: str = "USD"

    def __post_init__(self) -> None:
        for name in ("cycle", "route", "account", "meter", "service", "unit"):
            _text(getattr(self, name), name)
        key = self.key
        try:
            self._check(key)
        except ExportRowError as exc:
            raise ExportRowError(exc.why, field=exc.field, key=key) from None

    def _check(self, key: tuple[str, str, str]) -> None:
        if self.read_type not in READ_TYPES:
            raise ExportRowError(f"{self.read_type!r} is not one of {', '.join(READ_TYPES)}",
                                 field="read_type")
        self._check_reads()
        object.__setattr__(self, "edit_flags", _flags(self.edit_flags))
        lines = tuple(self.lines)
        for line in lines:
            if not isinstance(line, ExportLine):
                raise ExportRowError(f"expected ExportLine, got {type(line).__name__}",
                                     field="lines")
        object.__setattr__(self, "lines", lines)
        total = _money(self.total, "total")
        object.__setattr__(self, "total", total)
        if not isinstance(self.currency, str) or not CURRENCY_RE.fullmatch(self.currency):
            raise ExportRowError(f"{self.currency!r} is not an ISO 4217 code (e.g. USD)",
                                 field="currency")
        lines_sum = exact_sum(line.amount for line in lines)
        if lines_sum != total:
            raise ExportRowError(f"total {money_text(total)} is not the sum of the lines' "
                                 f"amounts ({money_text(lines_sum)})", field="total")

    def _check_reads(self) -> None:
        for read, at in (("previous_read", "previous_read_at"),
                         ("current_read", "current_read_at")):
            value = getattr(self, read)
            if value is not None:
                object.__setattr__(self, read, _decimal(value, read, ""))
            object.__setattr__(self, at, _instant(getattr(self, at), at))
            if (getattr(self, read) is None) != (getattr(self, at) is None):
                raise ExportRowError(f"{read} and {at} go together: both or neither",
                                     field=at)
        multiplier = _decimal(self.multiplier, "multiplier", "")
        if multiplier <= 0:
            raise ExportRowError(f"{multiplier} is not a positive multiplier",
                                 field="multiplier")
        object.__setattr__(self, "multiplier", multiplier)
        if self.consumption is not None:
            object.__setattr__(self, "consumption",
                               _decimal(self.consumption, "consumption", ""))

    @property
    def key(self) -> tuple[str, str, str]:
        """Where the row sorts, and what names it in an error: (route, account, meter)."""
        return (self.route, self.account, self.meter)


def sorted_rows(rows: Iterable[ExportRow], *, cycle: str | None = None) -> list[ExportRow]:
    """``rows`` in file order (route, account, meter), all of one cycle, each key once.

    ``cycle`` is the file's cycle; without it, the first row's. Raises
    :class:`ExportRowError` for a row of another cycle or a second row for the
    same account-meter (either would make the file's content depend on input order).
    """
    ordered = sorted(rows, key=lambda row: row.key)
    if cycle is None and ordered:
        cycle = ordered[0].cycle
    for before, row in zip([None, *ordered], ordered, strict=False):
        if row.cycle != cycle:
            raise ExportRowError(f"is cycle {row.cycle!r}, the file is cycle {cycle!r}",
                                 field="cycle", key=row.key)
        if before is not None and before.key == row.key:
            raise ExportRowError("appears twice: a cycle file has one row per account-meter",
                                 field="meter", key=row.key)
    return ordered
