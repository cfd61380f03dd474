"""Estimation: a billing read for a meter whose read is missing or was rejected.

A cycle cannot wait forever for a meter the network and the handheld route
both missed, nor bill a read the edits rejected; the utility bills an
*estimate* and trues it up with the next actual read. This module computes
that estimate as a pure function over the meter's history, so each figure can
be checked by hand; the engine decides when to call it and the store layer
saves what comes out.

Every cumulative register of the last history read (the *base*) is
estimated, each on its own figures but all by the same method (so the TOU
registers and the total each get their own value). A demand register is
carried over from the latest good read (a peak is not a count to add up);
other non-cumulative registers are not estimated. The methods, tried in the rule
set's order (``EstimationSettings.methods``) unless one is asked for:

- **interpolation** — needs a ``later`` *actual* read after ``at`` and a good
  (actual or override) history read ``good`` before it::

      value = good + use(good → later) × days(good → at) / days(good → later)

  refused when the register went backward between the two reads.
- **same period last year** — the history reads nearest ``base − 365 days``
  and ``at − 365 days`` (each within ``last_year_tolerance_days``; actual and
  override reads preferred over estimates; two distinct reads in time order)
  give last year's use per day over the same calendar period, scaled to this
  period's day count::

      value = base + use(ly_start → ly_end) / days(ly_start → ly_end) × days(base → at)

  last year's use is summed interval by interval over the good reads between
  the two, so a rollover in between counts once per turn and an estimate that
  overshot (and was trued up) does not look like a backward step; a real
  backward step in between refuses the method.
- **average daily usage** — over the last ``history_cycles`` intervals of the
  history (consecutive reads carrying the register)::

      value = base + ADU × days(base → at)

  Backward intervals are left out. Intervals between two actual reads are
  preferred: when at least ``min_history_cycles`` of them remain, only they
  count; otherwise the intervals touching an estimated or overridden read
  count too (and the explanation says so). Fewer than ``min_history_cycles``
  usable intervals (and never fewer than one) refuses the method.

Rounding: each estimated value is rounded ``ROUND_HALF_UP`` to the number of
decimals of the register value it was built on (its exponent, at least 0
decimals: ``10412.5`` → one decimal, ``1E+3`` → none), and then wrapped
modulo 10^dials, so an estimate rolls over like the register would
(4 dials: 9 990 + 25 → 15).

Limit: when the last ``max_consecutive`` history reads are all estimates,
another one would be one too many: :class:`EstimationLimit` is raised, for
every method, including one an operator asked for.

An estimate never replaces a real read: this module only *makes* a
:class:`~hub.edits.model.MeterRead` of kind ``estimated`` naming its method;
callers (the store layer) never put it where an actual read exists for the
cycle. Its ``multiplier`` is left ``None``, like any read under edit.

Example::

    try:
        made = estimate(facts, history, cycle.target, settings, later=late_read, cycle=cycle.id)
    except CannotEstimate as exc:
        queue(exc.meter, str(exc))
    else:
        print(made.method, made.read.registers, made.explanation)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

from hub.edits.model import (
    EstimationMethod,
    EstimationSettings,
    MeterFacts,
    MeterRead,
    ReadKind,
)
from hub.edits.usage import (
    Interval,
    average_daily_usage,
    days_between,
    intervals,
    is_cumulative,
    register_delta,
)

DAYS_PER_YEAR = 365
GOOD_KINDS = (ReadKind.ACTUAL, ReadKind.OVERRIDE)
DEMAND_PREFIXES = ("demand_", "max_demand_")
"""Registers that hold a peak (kW, W): carried into an estimate, never added up."""
METHOD_WORDS = {
    EstimationMethod.INTERPOLATION: "interpolation",
    EstimationMethod.SAME_PERIOD_LAST_YEAR: "same period last year",
    EstimationMethod.AVERAGE_DAILY_USAGE: "average daily usage",
}
_PRECISION = 50  # digits for the arithmetic; 10^8 registers with a few decimals never near it


@dataclass(frozen=True, slots=True)
class Estimate:
    """An estimated billing read, the method that made it, and why it says what it says."""

    read: MeterRead
    method: EstimationMethod
    explanation: str


class CannotEstimate(Exception):
    """No method could (or the one asked for cannot) estimate the meter; ``reason`` says why."""

    def __init__(self, meter: str, reason: str) -> None:
        super().__init__(f"cannot estimate meter {meter}: {reason}")
        self.meter = meter
        self.reason = reason


class EstimationLimit(CannotEstimate):
    """The meter's last ``consecutive`` reads are estimates and the rule set allows ``limit``."""

    def __init__(self, meter: str, consecutive: int, limit: int) -> None:
        super().__init__(meter, (
            f"its last {consecutive} billing reads are estimates and the rule set allows "
            f"{limit} in a row; it needs an actual read"))
        self.consecutive = consecutive
        self.limit = limit


class _Refused(Exception):
    """One method cannot estimate one register; the message is the method's reason."""


@dataclass(frozen=True, slots=True)
class _Figure:
    value: Decimal
    """The estimated register value, rounded and wrapped."""
    clause: str
    """What was computed, for the explanation."""


def consecutive_estimates(history: Sequence[MeterRead]) -> int:
    """How many of the latest ``history`` reads in a row are estimates (0 when the last is not)."""
    count = 0
    for read in reversed(history):
        if read.kind is not ReadKind.ESTIMATED:
            break
        count += 1
    return count


def estimate(meter: MeterFacts, history: Sequence[MeterRead], at: datetime,
             settings: EstimationSettings, *, later: MeterRead | None = None,
             method: EstimationMethod | None = None, cycle: str | None = None) -> Estimate:
    """Estimate ``meter``'s cumulative registers at ``at`` from its ``history`` (oldest first).

    ``later`` is an actual read after ``at`` when one exists (interpolation
    needs it). With ``method`` only that method is tried; otherwise the rule
    set's methods in order, and the first that can estimate every register
    wins. Raises :class:`EstimationLimit` when the rule set's run of
    consecutive estimates is used up, :class:`CannotEstimate` when no method
    has what it needs.

    Example (1 000.0 read 10-01, 1 090.0 read 10-31, estimated at 10-21)::

        made = estimate(facts, history, at, EstimationSettings(), later=late_read)
        made.method                               # EstimationMethod.INTERPOLATION
        made.read.registers["energy_import_kwh"]  # Decimal("1060.0") = 1000 + 90 × 20/30
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no time zone; times must be aware UTC")
    run = consecutive_estimates(history)
    if run >= settings.max_consecutive:
        raise EstimationLimit(meter.serial, run, settings.max_consecutive)
    if not history:
        raise CannotEstimate(meter.serial, "it has no billing read history to estimate from")
    base = history[-1]
    if base.read_at >= at:
        raise CannotEstimate(meter.serial, (
            f"its last billing read ({_day(base.read_at)}) is not before the estimate's time "
            f"({_day(at)})"))
    registers = [name for name in base.registers if is_cumulative(name)]
    if not registers:
        raise CannotEstimate(meter.serial, (
            f"its last billing read ({_day(base.read_at)}) carries no cumulative register"))

    methods = (method,) if method is not None else settings.methods
    refusals: list[str] = []
    for candidate in methods:
        try:
            figures = {name: _estimate_register(candidate, name, meter, history, at, settings,
                                                later)
                       for name in registers}
        except _Refused as refused:
            refusals.append(f"{METHOD_WORDS[candidate]}: {refused}")
            continue
        values = {name: figure.value for name, figure in figures.items()}
        explanation = _explain(candidate, figures)
        demand = _last_demand(history)
        if demand is not None:
            name, value, source = demand
            values[name] = value
            explanation += (f"; {name} {_show(value)} as on the last good read "
                            f"({_day(source.read_at)})")
        read = MeterRead(at, values, kind=ReadKind.ESTIMATED, method=candidate, cycle=cycle)
        return Estimate(read, candidate, explanation)
    if not refusals:
        raise CannotEstimate(meter.serial, "the rule set names no estimation method")
    raise CannotEstimate(meter.serial, "; ".join(refusals))


def _last_demand(history: Sequence[MeterRead]) -> tuple[str, Decimal, MeterRead] | None:
    """The demand register of the latest good (actual or override) read, if it has one.

    A demand is a peak, not a count: no method adds it up, so an estimated
    read carries the last measured one (what a demand rate bills when the
    meter could not be read), and the explanation says so.
    """
    for read in reversed(history):
        if read.kind not in GOOD_KINDS:
            continue
        for name, value in read.registers.items():
            if name.startswith(DEMAND_PREFIXES):
                return name, value, read
        return None
    return None


def _estimate_register(method: EstimationMethod, name: str, meter: MeterFacts,
                       history: Sequence[MeterRead], at: datetime,
                       settings: EstimationSettings, later: MeterRead | None) -> _Figure:
    make: Callable[..., _Figure] = _METHODS[method]
    with localcontext() as context:
        context.prec = _PRECISION
        return make(name, meter, history, at, settings, later)


def _interpolate(name: str, meter: MeterFacts, history: Sequence[MeterRead], at: datetime,
                 settings: EstimationSettings, later: MeterRead | None) -> _Figure:
    if later is None:
        raise _Refused("there is no later read to interpolate to")
    if later.kind is not ReadKind.ACTUAL:
        raise _Refused(f"the later read ({_day(later.read_at)}) is {later.kind}, not actual")
    if later.read_at <= at:
        raise _Refused(f"the later read ({_day(later.read_at)}) is not after {_day(at)}")
    end = later.registers.get(name)
    if end is None:
        raise _Refused(f"the later read ({_day(later.read_at)}) does not carry {name}")
    good = next((read for read in reversed(history)
                 if read.kind in GOOD_KINDS and name in read.registers), None)
    if good is None:
        raise _Refused(f"no actual or override read in the history carries {name}")
    start = good.registers[name]
    used = register_delta(start, end, meter.dials, settings.max_wrap_share).used
    if used < 0:
        raise _Refused(
            f"{name} went backward from {_show(start)} ({_day(good.read_at)}) to "
            f"{_show(end)} ({_day(later.read_at)})")
    elapsed = days_between(good.read_at, at)
    span = days_between(good.read_at, later.read_at)
    added = used * elapsed / span
    value, ending = _settle(start, added, meter)
    unit = meter.unit
    return _Figure(value, (
        f"interpolated between {_show(start)} {unit} read {_day(good.read_at)} and "
        f"{_show(end)} {unit} read {_day(later.read_at)}: {_show(used)} {unit} × "
        f"{_days(elapsed)}/{_days(span)} days = {_show(added, start)} {unit}{ending}"))


def _same_period_last_year(name: str, meter: MeterFacts, history: Sequence[MeterRead],
                           at: datetime, settings: EstimationSettings,
                           later: MeterRead | None) -> _Figure:
    base = history[-1]
    carrying = [read for read in history if name in read.registers]
    year = timedelta(days=DAYS_PER_YEAR)
    tolerance = timedelta(days=settings.last_year_tolerance_days)
    first = _nearest(carrying, base.read_at - year, tolerance)
    last = _nearest(carrying, at - year, tolerance)
    if first is None or last is None:
        missing = base.read_at - year if first is None else at - year
        raise _Refused(
            f"no read of {name} within {settings.last_year_tolerance_days} days of "
            f"{_day(missing)}")
    if first.read_at >= last.read_at:
        raise _Refused(
            f"last year's reads nearest {_day(base.read_at - year)} and {_day(at - year)} "
            f"are not two reads in time order")
    between = [read for read in carrying
               if read is first or read is last
               or (first.read_at < read.read_at < last.read_at and read.kind in GOOD_KINDS)]
    spans = intervals(between, name, meter.dials, settings.max_wrap_share)
    backward = next((span for span in spans if span.used < 0), None)
    if backward is not None:
        raise _Refused(
            f"{name} went backward between {_day(backward.start)} and {_day(backward.end)} "
            f"last year")
    used = sum((span.used for span in spans), Decimal(0))
    span_days = days_between(first.read_at, last.read_at)
    per_day = used / span_days
    elapsed = days_between(base.read_at, at)
    added = per_day * elapsed
    start = base.registers[name]
    value, ending = _settle(start, added, meter)
    unit = meter.unit
    return _Figure(value, (
        f"same period last year {_rate(per_day)} {unit}/day ({_show(used)} {unit} from "
        f"{_day(first.read_at)} to {_day(last.read_at)}, {_days(span_days)} days) × "
        f"{_days(elapsed)} days = {_show(added, start)} {unit} on top of {_show(start)} {unit} "
        f"read {_day(base.read_at)}{ending}"))


def _average_daily_usage(name: str, meter: MeterFacts, history: Sequence[MeterRead],
                         at: datetime, settings: EstimationSettings,
                         later: MeterRead | None) -> _Figure:
    base = history[-1]
    window = intervals(history, name, meter.dials, settings.max_wrap_share)
    window = window[-settings.history_cycles:] if settings.history_cycles > 0 else []
    usable = [span for span in window if span.used >= 0 and span.days > 0]
    measured = [span for span in usable if not span.estimated]
    spans: list[Interval] = measured
    note = ""
    if len(measured) < settings.min_history_cycles or not measured:
        spans = usable
        note = ", estimated or overridden reads included"
    adu = average_daily_usage(spans)
    if adu is None or len(spans) < settings.min_history_cycles:
        raise _Refused(
            f"{len(usable)} usable interval(s) of {name} in the last "
            f"{settings.history_cycles} cycles, the rule set needs "
            f"{max(settings.min_history_cycles, 1)}")
    elapsed = days_between(base.read_at, at)
    added = adu * elapsed
    start = base.registers[name]
    value, ending = _settle(start, added, meter)
    unit = meter.unit
    if len(spans) < len(window):
        cycles = f"{len(spans)} of the last {len(window)} cycles"
    else:
        cycles = "the last cycle" if len(spans) == 1 else f"the last {len(spans)} cycles"
    return _Figure(value, (
        f"average daily usage {_rate(adu)} {unit}/day over {cycles}{note} × "
        f"{_days(elapsed)} days = {_show(added, start)} {unit} on top of {_show(start)} {unit} "
        f"read {_day(base.read_at)}{ending}"))


_METHODS: Mapping[EstimationMethod, Callable[..., _Figure]] = {
    EstimationMethod.INTERPOLATION: _interpolate,
    EstimationMethod.SAME_PERIOD_LAST_YEAR: _same_period_last_year,
    EstimationMethod.AVERAGE_DAILY_USAGE: _average_daily_usage,
}


def _nearest(reads: Sequence[MeterRead], target: datetime,
             tolerance: timedelta) -> MeterRead | None:
    """The read nearest ``target`` within ``tolerance``; a good read beats any estimate."""
    near = [read for read in reads if abs(read.read_at - target) <= tolerance]
    good = [read for read in near if read.kind in GOOD_KINDS]
    pool = good or near
    return min(pool, key=lambda read: abs(read.read_at - target), default=None)


def _quantum(reference: Decimal) -> Decimal:
    """One unit in ``reference``'s last decimal place; 1 for whole numbers (``1E+3`` too)."""
    exponent = reference.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return Decimal(1).scaleb(-places)


def _settle(start: Decimal, added: Decimal, meter: MeterFacts) -> tuple[Decimal, str]:
    """``start + added`` rounded half-up to ``start``'s decimals, wrapped at 10^dials.

    Returns the value and the explanation's ending (the value, and the rollover if any).
    """
    capacity = Decimal(10) ** meter.dials
    value = (start + added).quantize(_quantum(start), rounding=ROUND_HALF_UP)
    wrapped = value % capacity
    if wrapped < 0:
        wrapped += capacity
    turn = f" (rolled over at {_show(capacity)})" if value >= capacity else ""
    return wrapped, f" → {_show(wrapped)} {meter.unit}{turn}"


def _explain(method: EstimationMethod, figures: Mapping[str, _Figure]) -> str:
    if len(figures) == 1:
        return next(iter(figures.values())).clause
    return f"{METHOD_WORDS[method]} per register: " + "; ".join(
        f"{name}: {figure.clause}" for name, figure in figures.items())


def _show(value: Decimal, like: Decimal | None = None) -> str:
    """A figure for people: thousands grouped by a space; rounded to ``like``'s decimals."""
    if like is not None:
        value = value.quantize(_quantum(like), rounding=ROUND_HALF_UP)
    return f"{value:,f}".replace(",", " ")


def _rate(value: Decimal) -> str:
    """A per-day figure to 3 decimals, trailing zeros dropped."""
    return _trimmed(value, Decimal("0.001"))


def _days(value: Decimal) -> str:
    """A day count to 2 decimals, trailing zeros dropped: 30, 30.5, 30.25."""
    return _trimmed(value, Decimal("0.01"))


def _trimmed(value: Decimal, quantum: Decimal) -> str:
    rounded = value.quantize(quantum, rounding=ROUND_HALF_UP)
    text = _show(rounded)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _day(instant: datetime) -> str:
    """The UTC calendar day of ``instant``."""
    return instant.astimezone(UTC).date().isoformat()
