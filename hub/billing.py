"""Bills: a pure function from an account's determinants and its rate table to bill lines.

:func:`compute_bill` takes what was measured (use × multiplier per register,
the period's days, the maximum demand, interval data when there is some)
and a :class:`~hub.rates.model.RateTable`, and returns a :class:`Bill`: its
lines, each naming the component, version and determinant it priced, and the
total. No I/O, no clock, no floats: money and use are ``Decimal`` throughout
(arithmetic under a 60-digit context), so the same determinants always give
the same bill to the cent, and :meth:`Bill.trace` leads every line back to the
billing reads (collector, seq, signature) its determinant came from.

The rules, as implemented:

- **Bill period** ``[period_start, period_end]``, both days inclusive: a
  bill of October has 31 days.
- **Rate changes**: the period is split into the parts each version is in
  force (:meth:`~hub.rates.model.RateTable.versions_in`); each part is
  billed with its version. Seasonal blocks (and wastewater's winter months)
  split a part further at the month where the season changes. Consumption is
  split by days: the part of days ``k0 … k1`` (of ``T``) gets
  ``round(use × k1 ÷ T) − round(use × k0 ÷ T)``, rounded half-up to 0.001 unit
  (:data:`SPLIT_PLACES`), so the parts always add up exactly to the use, the
  last one taking the remainder. Tier bounds written per bill are prorated
  the same way (bound × days ÷ T, to 0.001); bounds written per
  ``standard_days`` are scaled by the part's days ÷ ``standard_days``. Fixed
  charges per bill are prorated by days (amount × days ÷ T), per-day charges
  are amount × the part's days; a demand charge is the billed kW × price ×
  days ÷ T. A period no version covers is a :class:`BillingError`.
- **Rounding** (:class:`~hub.rates.model.Rounding`, per version, default
  half-up to the cent per line): each line's amount is rounded; the total is
  the sum of the rounded lines, so ``total == sum(line.amount)`` always.
  With ``per: bill`` lines keep their amounts unrounded (to 6 more decimals
  than the total, :data:`BILL_EXTRA_PLACES`) and a last ``rounding`` line
  brings the total to the rounded sum.
- **Order of computation** follows dependencies (a fee or tax after what it
  is a percentage of, a minimum after what it covers), so reordering the
  components in the file changes neither the lines nor the total; lines are
  *shown* in the file's order of the latest version, a component's lines by
  rate part, tier after tier.
- **Options** (``senior``, ``low_income``): replaced blocks price the
  component instead of its own; a percent discount is a negative line
  ``<option>:<component>`` of −percent % of the component's lines in that rate
  part (rounded as a line); a fixed discount takes its amount (prorated by
  days) but never more than the component's lines come to. Discount lines
  count as part of the component they discount: fees, taxes and minimum bills
  see the discounted charge. Several options each discount the undiscounted
  charge. An option the account has must exist in every version of the
  period (otherwise :class:`BillingError`).
- **Percentages** (fees, taxes): per rate part, percent % of the sum of the
  rounded lines of the components named (discounts on them included; a tax
  may name a fee), rounded as a line.
- **Minimum bill**: per bill, not per rate part. The minimum is the amount
  prorated by days over the parts whose version has it (or amount × days for
  ``per: day``); the covered charges are the lines of the components it
  names (discounts included) in those parts. When they come to less, one
  line (in the last such part, so a tax naming the minimum sees it) makes up
  the difference; otherwise there is no line.
- **Demand**: the period's maximum demand; with a ratchet, at least
  percent % of the highest of the last ``months`` entries of
  ``demand_history``. The line's determinant is ``demand_history`` when the
  ratchet binds, ``demand_kw`` otherwise.
- **Wastewater**: days in the winter months are billed on actual use; other
  days on the lesser of actual use and the winter average (each split by
  days); the account's ``winter_average``, or the rate's
  ``default_average`` for an account without one. The determinant is the
  register, or ``winter_average`` when the average is the lesser.
- **TOU**: from ``intervals`` when given (each interval's start, in ``zone``,
  picks the period from the weekday/weekend schedule; every interval must
  start inside the bill period; its day picks the rate part), else from the
  periods' registers, else from the total register at the ``fallback``
  blocks; else :class:`BillingError`.
- A tier line is shown for every tier up to the one the use ends in (a use
  of zero shows the first tier, at zero).

Line codes are stable: ``<component>`` then, as they apply, ``:<TOU period>``,
``:<season>``, ``:tier<n>`` (n from 1, only when the blocks have several
tiers), and ``:v<effective date>`` when the bill spans several versions;
option discounts are ``<option>:<component>``. Determinant names (the keys of
:attr:`Determinants.sources`): register names, ``demand_kw``,
``demand_history``, ``winter_average``, ``intervals``, and ``days`` (fixed
charges: the caller may attach the two reads that bound the period).

Example::

    d = Determinants("AC-10001", "RES-W1", (), date(2026, 10, 1), date(2026, 10, 31),
                     {"volume_m3": Decimal("18.4")}, meter_size="5/8in")
    bill = compute_bill(d, book.rate("RES-W1"))
    for line in bill.lines:
        print(line.code, line.quantity, line.price, line.amount, bill.trace(line))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import (
    ROUND_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from types import MappingProxyType
from typing import Any, NamedTuple

from hub.rates.model import (
    Blocks,
    Demand,
    Fixed,
    MinimumBill,
    Percentage,
    RateOption,
    RateTable,
    RateVersion,
    Rounding,
    Tier,
    Tiered,
    TimeOfUse,
    Wastewater,
)

__all__ = ["Bill", "BillLine", "BillingError", "Determinants", "ReadRef", "compute_bill"]

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)
SPLIT_PLACES = 3
"""Decimals of the parts a use (or a tier bound) is split into across rate parts."""
SPLIT_QUANTUM = Decimal(1).scaleb(-SPLIT_PLACES)
ARITHMETIC = Context(prec=60, rounding=ROUND_HALF_EVEN,
                     traps=[InvalidOperation, DivisionByZero, Overflow])
"""The context bills are computed under: products of use and price stay exact; the only
inexact steps are divisions by days, rounded at the 60th digit before the line's rounding."""
MODES = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "down": ROUND_DOWN,
         "up": ROUND_UP}
BILL_EXTRA_PLACES = 6
"""With ``per: bill`` rounding, lines keep 6 decimals more than the total (0.00000001 for
cents, half-even): exact for every product of use and price a bill has, and short enough
that adding the lines up in any decimal context gives the same sum."""
MAX_PLANS = 4096
"""Bill-period plans kept per rate table (a cycle has a handful of distinct periods)."""
EMPTY: Mapping[str, Any] = MappingProxyType({})


class BillingError(ValueError):
    """A bill that cannot be computed: a determinant missing, no version in force, an unknown
    option. The message names the rate, version and component."""


@dataclass(frozen=True, slots=True)
class ReadRef:
    """Provenance of a determinant: one billing read it came from."""

    meter: str
    kind: str
    """``actual``, ``estimated`` or ``override``."""
    collector: str | None
    seq: int | None
    signature: str | None
    """Base64 of the signed read's signature, when actual."""
    read_at: datetime


@dataclass(frozen=True, slots=True)
class Determinants:
    """What a bill is computed from: one account, one bill period.

    ``consumption`` is use × multiplier per register (the caller computes
    use across a rollover and applies the multiplier), ``sources`` the reads
    each determinant came from, by determinant name (see the module doc).
    ``demand_history`` is earlier bills' maximum demand, newest last;
    ``winter_average`` the account's average use per bill over the rate's
    winter months (``None``: no winter history, the rate's default applies).
    """

    account: str
    rate_code: str
    options: tuple[str, ...]
    period_start: date
    period_end: date
    consumption: Mapping[str, Decimal]
    demand_kw: Decimal | None = None
    meter_size: str | None = None
    intervals: tuple[tuple[datetime, Decimal], ...] = ()
    zone: tzinfo = UTC
    demand_history: tuple[Decimal, ...] = ()
    winter_average: Decimal | None = None
    sources: Mapping[str, tuple[ReadRef, ...]] = field(default_factory=lambda: EMPTY)

    @property
    def days(self) -> int:
        """Days in the bill period, both ends included."""
        return (self.period_end - self.period_start).days + 1


@dataclass(frozen=True, slots=True)
class BillLine:
    """One line of a bill: ``quantity`` ``unit`` at ``price`` comes to ``amount``.

    ``amount`` is rounded per the version's rounding rule; it equals
    ``quantity × price`` rounded, except on prorated lines (the description
    says how many days) and capped discounts. ``determinant`` is the
    determinant it priced (a key of :attr:`Determinants.sources`), ``basis``
    the codes of the lines a derived line (fee, tax, discount, minimum) was
    computed from, and ``version`` the effective date of the rate version used.
    """

    code: str
    description: str
    quantity: Decimal
    unit: str
    price: Decimal | None
    amount: Decimal
    determinant: str | None
    version: date
    basis: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Bill:
    """An account's bill for one period: its determinants, lines and total (the sum of lines)."""

    account: str
    rate_code: str
    period_start: date
    period_end: date
    determinants: Determinants
    lines: tuple[BillLine, ...]
    total: Decimal
    currency: str = "USD"

    def line(self, code: str) -> BillLine:
        """The line ``code`` (``KeyError`` when the bill has none)."""
        for line in self.lines:
            if line.code == code:
                return line
        raise KeyError(code)

    def trace(self, line: BillLine) -> tuple[ReadRef, ...]:
        """The billing reads ``line`` came from: its determinant's, or its basis lines'."""
        by_code = {each.code: each for each in self.lines}
        found: dict[ReadRef, None] = {}
        pending = [line]
        seen: set[str] = set()
        while pending:
            current = pending.pop()
            if current.code in seen:
                continue
            seen.add(current.code)
            if current.determinant is not None:
                for ref in self.determinants.sources.get(current.determinant, ()):
                    found[ref] = None
            pending.extend(by_code[code] for code in reversed(current.basis) if code in by_code)
        return tuple(found)


def compute_bill(d: Determinants, rate: RateTable) -> Bill:
    """Price ``d`` with ``rate``: the bill's lines in the rate's order, and their total.

    Raises :class:`BillingError` when the rate code differs, the period has
    days no version covers, an option is unknown, or a component lacks its
    determinant (``"rate RES-E1 v2026-01-01 component energy needs
    energy_import_kwh"``).
    """
    if d.rate_code != rate.code:
        raise BillingError(f"account {d.account} is on rate {d.rate_code}, not {rate.code}")
    key = (d.period_start, d.period_end, d.options, d.meter_size)
    with localcontext(ARITHMETIC):
        plan = rate.cache.get(key)
        if plan is None:
            if len(rate.cache) >= MAX_PLANS:
                rate.cache.clear()
            plan = rate.cache[key] = _Plan(rate, d.period_start, d.period_end, d.options,
                                           d.meter_size)
        lines = plan.run(d)
        total = sum([line.amount for line in lines], ZERO)
        if plan.final is not None:
            rounded = plan.final(total)
            if rounded != total:
                lines.append(BillLine("rounding", plan.final_description, total, rate.currency,
                                      None, rounded - total, None, plan.last_version))
                total = rounded
    return Bill(d.account, d.rate_code, d.period_start, d.period_end, d, tuple(lines), total,
                rate.currency)


# --- the plan: everything a bill period of a rate allows to compute once ----------------------

Lines = list[BillLine]
Slots = list[Any]
Step = Callable[[Determinants, Slots], None]
Run = Callable[[Determinants, Slots], Lines]


class _Part(NamedTuple):
    """A rate part of the bill period: one version, days ``k0 … k1 − 1`` of it."""

    index: int
    version: RateVersion
    start: date
    end: date
    k0: int
    k1: int
    rounder: Callable[[Decimal], Decimal]


class _Piece(NamedTuple):
    """A part, or the share of a part in one season (days ``k0 … k1 − 1`` of the period)."""

    part: _Part
    start: date
    end: date
    k0: int
    k1: int
    season: str | None
    winter: bool
    tag: str | None = None
    """The piece's first day, in its lines' codes when its season alone would repeat a code."""


class _Row(NamedTuple):
    """One tier as a piece prices it: bounds already prorated, code and words precomputed."""

    lower: Decimal
    bound: Decimal | None
    price: Decimal
    code: str
    description: str


def _rounder(rounding: Rounding) -> Callable[[Decimal], Decimal]:
    """A line's rounding: to ``places`` by ``mode``; per bill, to :data:`BILL_EXTRA_PLACES` more."""
    if rounding.per == "bill":
        quantum = Decimal(1).scaleb(-rounding.places - BILL_EXTRA_PLACES)
        mode = ROUND_HALF_EVEN
    else:
        quantum = Decimal(1).scaleb(-rounding.places)
        mode = MODES[rounding.mode]

    def rounder(value: Decimal) -> Decimal:
        return value.quantize(quantum, rounding=mode)

    return rounder


def _num(value: Decimal) -> str:
    """``500``, ``4.516``: a quantity as a person writes it."""
    return format(value.normalize(), "f")


class _Plan:
    """The steps that bill one period of one rate, for one set of options and meter size.

    Built on the first bill of a (period, options, meter size) and kept in the
    rate table's cache: versions, parts, prorated tier bounds, fixed lines,
    codes and descriptions are computed once per cycle, not once per bill.
    Built and run under :data:`ARITHMETIC`.
    """

    __slots__ = ("code", "currency", "display", "final", "final_description", "last_version",
                 "multi", "nslots", "parts", "slot_of", "steps", "total_days", "unit")

    def __init__(self, rate: RateTable, start: date, end: date, options: tuple[str, ...],
                 meter_size: str | None) -> None:
        if end < start:
            raise BillingError(f"bill period ends ({end}) before it starts ({start})")
        self.code = rate.code
        self.unit = rate.unit
        self.currency = rate.currency
        self.total_days = (end - start).days + 1
        parts = []
        covered = start
        for index, (version, first, last) in enumerate(rate.versions_in(start, end)):
            if first != covered:
                break
            parts.append(_Part(index, version, first, last, (first - start).days,
                               (last - start).days + 1, _rounder(version.rounding)))
            covered = last + timedelta(days=1)
        if covered <= end:
            known = ", ".join(v.effective.isoformat() for v in rate.versions) or "none"
            raise BillingError(f"rate {rate.code} has no version in force on {covered} "
                               f"(versions: {known})")
        self.parts = tuple(parts)
        self.multi = len(parts) > 1
        self.last_version = parts[-1].version.effective
        chosen = self._options(options)
        self.slot_of: dict[tuple[str, int], int] = {}
        for part in parts:
            for component in part.version.components:
                self.slot_of[component.id, part.index] = len(self.slot_of)
        self.nslots = len(self.slot_of)
        self.steps: list[Step] = []
        for component_id in self._computation_order():
            self.steps.append(self._step(component_id, chosen, meter_size))
        self.display = [self.slot_of[cid, part.index] for cid in self._display_order()
                        for part in parts if (cid, part.index) in self.slot_of]
        bill_rounding = [part.version.rounding for part in parts
                         if part.version.rounding.per == "bill"]
        self.final: Callable[[Decimal], Decimal] | None = None
        self.final_description = ""
        if bill_rounding:
            rule = bill_rounding[-1]
            self.final = _rounder(Rounding(rule.places, rule.mode, "line"))
            self.final_description = (f"Rounding of the total to {rule.places} decimals "
                                      f"({rule.mode.replace('_', '-')})")

    # --- per bill ---

    def run(self, d: Determinants) -> Lines:
        slots: Slots = [()] * self.nslots
        for step in self.steps:
            step(d, slots)
        lines: Lines = []
        for slot in self.display:
            lines.extend(slots[slot])
        return lines

    # --- building ---

    def _options(self, options: tuple[str, ...]) -> list[dict[str, RateOption]]:
        """Per part, the account's options as that part's version defines them."""
        chosen = []
        for part in self.parts:
            version = part.version
            picked = {}
            for name in sorted(set(options)):
                if name not in version.options:
                    raise BillingError(
                        f"rate {self.code} {version.label} has no option {name!r}; it has "
                        f"{', '.join(version.options) or 'none'}")
                picked[name] = version.options[name]
            replaced: dict[str, str] = {}
            for name, option in picked.items():
                for target in option.replace_tiers:
                    if target in replaced:
                        raise BillingError(
                            f"rate {self.code} {version.label}: options {replaced[target]} "
                            f"and {name} both replace the blocks of {target}")
                    replaced[target] = name
            chosen.append(picked)
        return chosen

    def _computation_order(self) -> list[str]:
        """Component ids, each after those it depends on in any part (ties: file order)."""
        deps: dict[str, set[str]] = {}
        for part in self.parts:
            for component in part.version.components:
                deps.setdefault(component.id, set()).update(component.depends_on)
        order: list[str] = []
        done: set[str] = set()

        def visit(node: str, trail: tuple[str, ...]) -> None:
            if node in done:
                return
            if node in trail:
                raise BillingError(f"rate {self.code}: components {' → '.join(trail)} "
                                   "depend on each other in a circle")
            for dep in sorted(deps.get(node, ())):
                if dep in deps:
                    visit(dep, (*trail, node))
            done.add(node)
            order.append(node)

        for node in deps:
            visit(node, ())
        return order

    def _display_order(self) -> list[str]:
        """The latest version's file order, then ids only earlier versions have."""
        order: list[str] = []
        for part in reversed(self.parts):
            for component in part.version.components:
                if component.id not in order:
                    order.append(component.id)
        latest = [c.id for c in self.parts[-1].version.components]
        return latest + [cid for cid in order if cid not in latest]

    def _step(self, cid: str, chosen: list[dict[str, RateOption]],
              meter_size: str | None) -> Step:
        parts = [part for part in self.parts if (cid, part.index) in self.slot_of]
        minimums = [isinstance(part.version.component(cid), MinimumBill) for part in parts]
        if all(minimums):
            return self._minimum(cid, parts)
        if any(minimums):
            raise BillingError(f"rate {self.code}: component {cid} is a minimum bill in one "
                               "version and a charge in another, both in this period")
        builders: dict[type, Callable[..., Run]] = {
            Fixed: self._fixed, Tiered: self._tiered, TimeOfUse: self._tou,
            Demand: self._demand, Wastewater: self._wastewater, Percentage: self._percentage}
        runs = []
        for part in parts:
            component = part.version.component(cid)
            options = chosen[part.index]
            kind = type(component)
            if kind is Fixed:
                run = builders[kind](component, part, meter_size)
            elif kind in (Tiered, Wastewater):
                run = builders[kind](component, part, self._replaced(cid, options))
            else:
                run = builders[kind](component, part)
            discounts = self._discounts(cid, part, options)
            runs.append((self.slot_of[cid, part.index], run, discounts))
        return _component_step(runs)

    def _replaced(self, cid: str, options: Mapping[str, RateOption]) -> Blocks | None:
        for option in options.values():
            if cid in option.replace_tiers:
                return option.replace_tiers[cid]
        return None

    def _note(self, k0: int, k1: int, part: _Part, season: str | None = None) -> str:
        """`` (summer, 14 of 31 days at v2026-10-15)`` when a line covers part of the bill."""
        if k0 == 0 and k1 == self.total_days:
            return ""
        words = [season] if season else []
        at = f" at {part.version.label}" if self.multi else ""
        words.append(f"{k1 - k0} of {self.total_days} days{at}")
        return f" ({', '.join(words)})"

    def _code(self, *parts: str | None, part: _Part) -> str:
        words = [word for word in parts if word]
        if self.multi:
            words.append(part.version.label)
        return ":".join(words)

    def _pieces(self, part: _Part, key: Callable[[int], tuple[str | None, bool]]) -> list[_Piece]:
        """``part`` cut at each month boundary where ``key(month)`` (season, winter) changes."""
        pieces = []
        start = part.start
        current = key(start.month)
        day = start
        while True:
            following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
            if following > part.end:
                break
            if key(following.month) != current:
                pieces.append(self._piece(part, start, following - timedelta(days=1), current))
                start, current = following, key(following.month)
            day = following
        pieces.append(self._piece(part, start, part.end, current))
        return pieces

    def _piece(self, part: _Part, start: date, end: date,
               key: tuple[str | None, bool]) -> _Piece:
        k0 = part.k0 + (start - part.start).days
        return _Piece(part, start, end, k0, k0 + (end - start).days + 1, key[0], key[1])

    def _rows(self, tiers: Sequence[Tier], piece: _Piece, code: str, period: str | None,
              description: str, unit: str, scale: str = "bill",
              standard_days: int | None = None) -> tuple[_Row, ...]:
        """The tiers of ``piece`` with their bounds prorated (or scaled), codes and words."""
        days = piece.k1 - piece.k0
        if scale == "days":
            assert standard_days is not None
            numerator, denominator = days, standard_days
        else:
            numerator, denominator = days, self.total_days
        rows = []
        lower = ZERO
        note = self._note(piece.k0, piece.k1, piece.part)
        name = description if period is None else f"{description}, {period}"
        if piece.season:
            name = f"{name}, {piece.season}"
        for number, tier in enumerate(tiers, start=1):
            bound = tier.up_to
            if bound is not None and numerator != denominator:
                bound = (bound * numerator / denominator).quantize(
                    SPLIT_QUANTUM, rounding=ROUND_HALF_UP)
            if len(tiers) == 1:
                words = name
            elif bound is None:
                words = f"{name} over {_num(lower)} {unit}"
            else:
                words = f"{name} {_num(lower)}–{_num(bound)} {unit}"
            tier_word = f"tier{number}" if len(tiers) > 1 else None
            rows.append(_Row(lower, bound, tier.price,
                             self._code(code, period, piece.season, piece.tag, tier_word,
                                        part=piece.part),
                             f"{words}{note}"))
            if bound is not None:
                lower = bound
        return tuple(rows)

    # --- the components ---

    def _fixed(self, component: Fixed, part: _Part,
               meter_size: str | None) -> Run:
        amount = component.amount
        label = component.description
        if amount is None:
            if meter_size is None:
                raise BillingError(f"rate {self.code} {part.version.label} component "
                                   f"{component.id} needs the meter size (one of "
                                   f"{', '.join(component.by_meter_size)})")
            if meter_size not in component.by_meter_size:
                raise BillingError(f"rate {self.code} {part.version.label} component "
                                   f"{component.id} has no charge for meter size "
                                   f"{meter_size!r}; it has "
                                   f"{', '.join(component.by_meter_size)}")
            amount = component.by_meter_size[meter_size]
            label = f"{label}, {meter_size} meter"
        days = part.k1 - part.k0
        code = self._code(component.id, part=part)
        note = self._note(part.k0, part.k1, part)
        version = part.version.effective
        if component.per == "day":
            line = BillLine(code, f"{label}{note}", Decimal(days), "days", amount,
                            part.rounder(amount * days), "days", version)
        elif days == self.total_days:
            line = BillLine(code, label, ONE, "bill", amount, part.rounder(amount), "days",
                            version)
        else:
            line = BillLine(code, f"{label}{note}", Decimal(days), "days", None,
                            part.rounder(amount * days / self.total_days), "days",
                            version)

        def run(d: Determinants, slots: Slots) -> Lines:
            return [line]

        return run

    def _tiered(self, component: Tiered, part: _Part,
                replaced: Blocks | None) -> Run:
        blocks = replaced or component.blocks
        pieces = _tag_repeats(self._pieces(part, _season_key(blocks)), _own_season)
        register = component.register
        where = f"rate {self.code} {part.version.label} component {component.id}"
        priced = [(piece, self._rows(blocks.tiers_in(piece.start.month), piece, component.id,
                                     None, component.description, self.unit, component.scale,
                                     component.standard_days))
                  for piece in pieces]
        version = part.version.effective
        rounder = part.rounder
        unit = self.unit
        total_days = self.total_days

        def run(d: Determinants, slots: Slots) -> Lines:
            use = _use(d, register, where)
            lines: Lines = []
            for piece, rows in priced:
                share = _share(use, piece.k0, piece.k1, total_days)
                _price(share, rows, unit, register, version, rounder, lines)
            return lines

        return run

    def _wastewater(self, component: Wastewater, part: _Part,
                    replaced: Blocks | None) -> Run:
        blocks = replaced or component.blocks
        winter = frozenset(component.winter_months)
        seasons = _season_key(blocks)

        def key(month: int) -> tuple[str | None, bool]:
            return seasons(month)[0], month in winter

        pieces = _tag_repeats(self._pieces(part, key), _own_season)
        register = component.register
        where = f"rate {self.code} {part.version.label} component {component.id}"
        def rows_described(description: str) -> list[tuple[_Row, ...]]:
            return [self._rows(blocks.tiers_in(piece.start.month), piece, component.id, None,
                               description, self.unit) for piece in pieces]

        on_use = list(zip(pieces, rows_described(component.description), strict=True))
        on_average = rows_described(f"{component.description} on winter average")
        on_default = rows_described(f"{component.description} on the default winter average")
        default = component.default_average
        version = part.version.effective
        rounder = part.rounder
        unit = self.unit
        total_days = self.total_days

        def run(d: Determinants, slots: Slots) -> Lines:
            use = _use(d, register, where)
            average = d.winter_average
            defaulted = average is None
            if average is None:
                average = default
            elif not isinstance(average, Decimal) or average < 0:
                raise BillingError(f"{where}: the winter average must be a Decimal ≥ 0, "
                                   f"got {average!r}")
            lines: Lines = []
            for index, (piece, rows) in enumerate(on_use):
                share = _share(use, piece.k0, piece.k1, total_days)
                if not piece.winter:
                    capped = _share(average, piece.k0, piece.k1, total_days)
                    if capped < share:
                        table = on_default[index] if defaulted else on_average[index]
                        _price(capped, table, unit, "winter_average", version, rounder, lines)
                        continue
                _price(share, rows, unit, register, version, rounder, lines)
            return lines

        return run

    def _demand(self, component: Demand, part: _Part) -> Run:
        blocks = component.blocks
        pieces = _tag_repeats(self._pieces(part, _season_key(blocks)), _own_season)
        priced = []
        for piece in pieces:
            rows = self._rows(blocks.tiers_in(piece.start.month),
                              piece._replace(k0=0, k1=self.total_days), component.id, None,
                              component.description, "kW")
            note = self._note(piece.k0, piece.k1, part, None)
            rows = tuple(row._replace(description=row.description + note) for row in rows)
            priced.append((piece.k1 - piece.k0, rows))
        ratchet = component.ratchet
        where = f"rate {self.code} {part.version.label} component {component.id}"
        version = part.version.effective
        rounder = part.rounder
        total_days = self.total_days

        def run(d: Determinants, slots: Slots) -> Lines:
            kw = d.demand_kw
            if kw is None:
                raise BillingError(f"{where} needs demand_kw")
            if not isinstance(kw, Decimal) or not kw.is_finite() or kw < 0:
                raise BillingError(f"{where}: demand_kw must be a Decimal ≥ 0, got {kw!r}")
            determinant = "demand_kw"
            suffix = ""
            if ratchet is not None and d.demand_history:
                history = d.demand_history[-ratchet.months:]
                for value in history:
                    if not isinstance(value, Decimal):
                        raise BillingError(f"{where}: demand history holds {value!r}, "
                                           "not a Decimal")
                highest = max(history)
                floor = highest * ratchet.percent / HUNDRED
                if floor > kw:
                    kw = floor
                    determinant = "demand_history"
                    suffix = (f" (ratchet: {_num(ratchet.percent)} % of {_num(highest)} kW, "
                              f"the highest of the last {ratchet.months} months)")
            lines: Lines = []
            for days, rows in priced:
                prorate = None if days == total_days else (days, total_days)
                _price(kw, rows, "kW", determinant, version, rounder, lines, prorate, suffix)
            return lines

        return run

    def _tou(self, component: TimeOfUse, part: _Part) -> Run:
        periods = component.periods

        def key(month: int) -> tuple[str | None, bool]:
            seasons = [p.blocks.season_of(month) for p in periods]
            names = [s.name for s in seasons if s is not None]
            return ("/".join(names) or None), False

        def names(piece: _Piece) -> list[str | None]:
            return [_season_name(period.blocks, piece.start.month) for period in periods]

        pieces = _tag_repeats(self._pieces(part, key), names)
        priced = []
        for piece in pieces:
            per_period = []
            for period in periods:
                season = period.blocks.season_of(piece.start.month)
                piece_ = piece._replace(season=None if season is None else season.name)
                per_period.append((period, self._rows(period.blocks.tiers_in(piece.start.month),
                                                      piece_, component.id, period.name,
                                                      component.description, self.unit)))
            priced.append((piece, per_period))
        fallback = None
        if component.fallback is not None:
            fallback = [(piece, self._rows(
                component.fallback.tiers_in(piece.start.month),
                piece._replace(season=_season_name(component.fallback, piece.start.month)),
                component.id, None, f"{component.description} (no TOU registers)", self.unit))
                for piece in _tag_repeats(self._pieces(part, _season_key(component.fallback)),
                                          _own_season)]
        registers = [period.register for period in periods]
        total_register = component.register
        where = f"rate {self.code} {part.version.label} component {component.id}"
        version = part.version.effective
        rounder = part.rounder
        unit = self.unit
        total_days = self.total_days
        weekday, weekend = component.weekday, component.weekend

        def run(d: Determinants, slots: Slots) -> Lines:
            lines: Lines = []
            if d.intervals:
                sums = _interval_sums(d, part, where, weekday, weekend, pieces)
                for index, (_piece, per_period) in enumerate(priced):
                    for period, rows in per_period:
                        use = sums.get((index, period.name), ZERO)
                        _price(use, rows, unit, "intervals", version, rounder, lines)
                return lines
            consumption = d.consumption
            if all(register in consumption for register in registers):
                for piece, per_period in priced:
                    for period, rows in per_period:
                        use = _use(d, period.register, where)
                        share = _share(use, piece.k0, piece.k1, total_days)
                        _price(share, rows, unit, period.register, version, rounder, lines)
                return lines
            if fallback is None:
                missing = [r for r in registers if r not in consumption]
                raise BillingError(f"{where} needs {', '.join(missing)} (or interval data)")
            use = _use(d, total_register, where)
            for piece, rows in fallback:
                share = _share(use, piece.k0, piece.k1, total_days)
                _price(share, rows, unit, total_register, version, rounder, lines)
            return lines

        return run

    def _percentage(self, component: Percentage,
                    part: _Part) -> Run:
        sources = [self.slot_of[ref, part.index] for ref in component.of]
        rate = component.percent / HUNDRED
        code = self._code(component.id, part=part)
        description = component.description + self._note(part.k0, part.k1, part)
        currency = self.currency
        version = part.version.effective
        rounder = part.rounder

        def run(d: Determinants, slots: Slots) -> Lines:
            base = ZERO
            basis = []
            for slot in sources:
                for line in slots[slot]:
                    base += line.amount
                    basis.append(line.code)
            return [BillLine(code, description, base, currency, rate, rounder(base * rate),
                             None, version, tuple(basis))]

        return run

    def _minimum(self, cid: str, parts: list[_Part]) -> Step:
        """One make-up line for the whole bill, in the last part that has the minimum."""
        covered: list[int] = []
        threshold = ZERO
        for part in parts:
            component = part.version.component(cid)
            assert isinstance(component, MinimumBill)
            days = part.k1 - part.k0
            if component.per == "day":
                threshold += component.amount * days
            else:
                threshold += component.amount * days / self.total_days
            covered.extend(self.slot_of[ref, part.index] for ref in component.of)
        last = parts[-1]
        rounder = last.rounder
        minimum = rounder(threshold)
        component = last.version.component(cid)
        slot = self.slot_of[cid, last.index]
        code = self._code(cid, part=last)
        currency = self.currency
        version = last.version.effective
        description = component.description
        shown = f"{minimum:,}"

        def step(d: Determinants, slots: Slots) -> None:
            charges = ZERO
            basis = []
            for source in covered:
                for line in slots[source]:
                    charges += line.amount
                    basis.append(line.code)
            if charges < minimum:
                slots[slot] = [BillLine(
                    code, f"{description} {shown} (charges came to {charges:,})", charges,
                    currency, None, rounder(minimum - charges), None, version, tuple(basis))]

        return step

    def _discounts(self, cid: str, part: _Part,
                   options: Mapping[str, RateOption]) -> list[Callable[[Lines], BillLine | None]]:
        """Each option's discount on component ``cid`` in ``part``, as a function of its lines."""
        made = []
        days = part.k1 - part.k0
        version = part.version.effective
        rounder = part.rounder
        currency = self.currency
        for name, option in options.items():
            discount = option.discount
            if discount is None or cid not in discount.of:
                continue
            code = self._code(name, cid, part=part)
            description = option.description + self._note(part.k0, part.k1, part)
            if discount.percent is not None:
                made.append(_percent_discount(code, description, -discount.percent / HUNDRED,
                                              currency, version, rounder))
                continue
            assert discount.amount is not None
            if discount.per == "day":
                quantity, unit, price = Decimal(days), "days", -discount.amount
                value = rounder(discount.amount * days)
            elif days == self.total_days:
                quantity, unit, price = ONE, "bill", -discount.amount
                value = rounder(discount.amount)
            else:
                quantity, unit, price = Decimal(days), "days", None
                value = rounder(discount.amount * days / self.total_days)
            made.append(_fixed_discount(code, description, quantity, unit, price, value,
                                        version))
        return made


def _component_step(runs: list[tuple[int, Run, list[Any]]]) -> Step:
    """The step of one component: its lines in every part, then the options' discounts."""

    def step(d: Determinants, slots: Slots) -> None:
        for slot, run, discounts in runs:
            lines = run(d, slots)
            if discounts:
                lines = list(lines)
                base_lines = tuple(lines)
                for discount in discounts:
                    line = discount(base_lines)
                    if line is not None:
                        lines.append(line)
            slots[slot] = lines

    return step


def _percent_discount(code: str, description: str, price: Decimal, currency: str,
                      version: date,
                      rounder: Callable[[Decimal], Decimal]) -> Callable[[Sequence[BillLine]],
                                                                         BillLine | None]:
    def discount(lines: Sequence[BillLine]) -> BillLine | None:
        base = sum([line.amount for line in lines], ZERO)
        return BillLine(code, description, base, currency, price, rounder(base * price), None,
                        version, tuple(line.code for line in lines))

    return discount


def _fixed_discount(code: str, description: str, quantity: Decimal, unit: str,
                    price: Decimal | None, value: Decimal,
                    version: date) -> Callable[[Sequence[BillLine]], BillLine | None]:
    capped_description = f"{description} (capped at the charge)"

    def discount(lines: Sequence[BillLine]) -> BillLine | None:
        base = sum([line.amount for line in lines], ZERO)
        if base <= 0:
            return None
        if value > base:
            return BillLine(code, capped_description, quantity, unit, price, -base, None,
                            version, tuple(line.code for line in lines))
        return BillLine(code, description, quantity, unit, price, -value, None, version,
                        tuple(line.code for line in lines))

    return discount


# --- arithmetic shared by the components -----------------------------------------------------


def _use(d: Determinants, register: str, where: str) -> Decimal:
    """The use of ``register``, checked: present, a Decimal, finite, not negative."""
    use = d.consumption.get(register)
    if use is None:
        raise BillingError(f"{where} needs {register}")
    if not isinstance(use, Decimal):
        raise BillingError(f"{where}: {register} is a {type(use).__name__} ({use!r}); "
                           "use is an exact Decimal")
    if not use.is_finite() or use < 0:
        raise BillingError(f"{where}: {register} use is {use}; a bill prices a use ≥ 0 "
                           "(a negative use is the edits' to hold)")
    return use


def _share(use: Decimal, k0: int, k1: int, total: int) -> Decimal:
    """The part of ``use`` for days ``k0 … k1 − 1`` of ``total``: parts add up to ``use``."""
    if k0 == 0 and k1 == total:
        return use
    return _cumulative(use, k1, total) - _cumulative(use, k0, total)


def _cumulative(use: Decimal, k: int, total: int) -> Decimal:
    if k == 0:
        return ZERO
    if k == total:
        return use
    return (use * k / total).quantize(SPLIT_QUANTUM, rounding=ROUND_HALF_UP)


def _price(quantity: Decimal, rows: tuple[_Row, ...], unit: str, determinant: str,
           version: date, rounder: Callable[[Decimal], Decimal], lines: Lines,
           prorate: tuple[int, int] | None = None, suffix: str = "") -> None:
    """Append a line per tier ``quantity`` reaches (the first tier at least)."""
    for row in rows:
        bound = row.bound
        last = bound is None or quantity <= bound
        part = (quantity if last else bound) - row.lower  # type: ignore[operator]
        amount = part * row.price
        if prorate is not None:
            amount = amount * prorate[0] / prorate[1]
        lines.append(BillLine(row.code, row.description + suffix if suffix else row.description,
                              part, unit, row.price, rounder(amount), determinant, version))
        if last:
            return


def _season_key(blocks: Blocks) -> Callable[[int], tuple[str | None, bool]]:
    if not blocks.seasonal:
        return _no_season
    names = {month: season.name for season in blocks.seasons for month in season.months}

    def key(month: int) -> tuple[str | None, bool]:
        return names[month], False

    return key


def _no_season(month: int) -> tuple[str | None, bool]:
    return None, False


def _own_season(piece: _Piece) -> list[str | None]:
    return [piece.season]


def _tag_repeats(pieces: list[_Piece],
                 names: Callable[[_Piece], list[str | None]]) -> list[_Piece]:
    """Tag every piece with its first day when season names alone would repeat a line code.

    (A part from November to March with a December–February season has two
    pieces outside that season; wastewater splits at winter months too.)
    """
    if len(pieces) < 2:
        return pieces
    columns = zip(*(names(piece) for piece in pieces), strict=True)
    if all(len(set(column)) == len(pieces) for column in columns):
        return pieces
    return [piece._replace(tag=piece.start.isoformat()) for piece in pieces]


def _season_name(blocks: Blocks, month: int) -> str | None:
    season = blocks.season_of(month)
    return None if season is None else season.name


def _interval_sums(d: Determinants, part: _Part, where: str,
                   weekday: tuple[tuple[str, ...], ...], weekend: tuple[tuple[str, ...], ...],
                   pieces: list[_Piece]) -> dict[tuple[int, str], Decimal]:
    """Interval use by (piece of this part, TOU period); intervals of other parts are skipped."""
    sums: dict[tuple[int, str], Decimal] = {}
    start = d.period_start
    total = d.days
    for at, use in d.intervals:
        if at.tzinfo is None:
            raise BillingError(f"{where}: interval at {at.isoformat()} has no time zone")
        if not isinstance(use, Decimal) or not use.is_finite() or use < 0:
            raise BillingError(f"{where}: interval at {at.isoformat()} has use {use!r}; "
                               "intervals carry exact Decimals ≥ 0")
        local = at.astimezone(d.zone)
        k = (local.date() - start).days
        if not 0 <= k < total:
            raise BillingError(f"{where}: interval at {at.isoformat()} starts outside the "
                               f"bill period {d.period_start} … {d.period_end}")
        if not part.k0 <= k < part.k1:
            continue
        index = next(i for i, piece in enumerate(pieces) if piece.k0 <= k < piece.k1)
        schedule = weekend if local.weekday() >= 5 else weekday
        name = schedule[local.month - 1][local.hour]
        sums[index, name] = sums.get((index, name), ZERO) + use
    return sums
