"""The meter edits' rules: is this billing read plausible against the meter's history and facts?

Each rule is a pure function ``(item, ctx, config) -> Finding | None`` over one
meter's billing read (:class:`~hub.edits.model.EditInput`), a :class:`Context`
of figures every rule shares (computed once per read, some only when a rule
first asks), and the rule's :class:`~hub.edits.ruleset.RuleConfig` for the
meter's service and class. ``None`` is a pass; a rule that lacks what it needs
(no history, no TOU registers, no capacity) passes. :data:`RULES` lists them in
the order :func:`run_rules` runs them; the thresholds live in the rule set
(``hub/edits/rulesets/default.yaml`` documents each).

Figures, as every rule reads them:

- the cycle's *use* is the delta of the service's total register from the last
  history read that carries it (:func:`hub.edits.usage.register_delta`, with
  the rule set's ``max_wrap_share``), times the multiplier in force (the
  read's, else the meter's); negative when it went backward;
- the *history intervals* are the uses between consecutive history reads
  carrying the register, each times the multiplier of its later read;
  backward intervals count towards ``cycles`` but never into an average;
- comparisons of uses per day are made by cross-multiplying exact
  ``Decimal`` s and integer microseconds (``used × days_h > used_h × factor ×
  days``) under a 60-digit decimal context (:data:`EXACT`), so a figure exactly
  at its limit passes, whatever a division would have rounded to. Only the
  messages divide.

Example::

    findings = run_rules(EditInput(cycle, facts, read, history), default_rule_set())
    for finding in findings:
        print(finding.rule, finding.severity, finding.message)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal, localcontext
from decimal import Context as DecimalContext
from fnmatch import fnmatchcase

from hub.edits.model import ACTIVE, EditInput, Finding, MeterRead, ReadKind, Severity
from hub.edits.ruleset import (
    CHECK_PARAMS,
    OUTCOME_RULES,
    Registers,
    RuleConfig,
    RuleSet,
)
from hub.edits.usage import register_delta
from hub.reconcile import Cycle
from protocols.read import TROUBLE_FLAG_PREFIX

__all__ = ["OUTCOME_RULES", "RULES", "Context", "Rule", "run_rules"]

ZERO = Decimal(0)
EXACT = DecimalContext(prec=60)
"""The arithmetic the rules run under: products of a register value, a factor and a time
in microseconds stay exact, so a figure exactly at its limit passes."""
US_PER_DAY = 86_400_000_000
DAYS_PER_YEAR = 365
PLAUSIBILITY_FLAGS = frozenset({"backward", "rollover", "spike", "stuck", "clock_skew"})
"""The gateway's own flags (:mod:`edge_agent.plausibility`): never meter alarms."""
GOOD_KINDS = (ReadKind.ACTUAL, ReadKind.OVERRIDE)
MAX_KNOWN_FLAGS = 4096
"""Flags whose alarm severity is remembered per rule set (meters raise a few dozen kinds)."""


class Context:
    """What the rules share about one read: its use, days, history intervals, averages.

    ``used`` is ``None`` when the read or its history lacks the total
    register; ``raw`` is the same delta before the multiplier and ``us`` the
    microseconds since the previous read. History figures are computed on
    first use and kept: ``spans()`` (newest first), ``average(n)``,
    ``highest()``, ``last_year()``.
    """

    __slots__ = ("_average", "_average_n", "_highest", "_last_year", "_spans", "active",
                 "current", "history", "item", "meter", "mult", "plan", "previous",
                 "previous_value", "raw", "read", "rolled", "total", "unit", "us", "used")

    def __init__(self, item: EditInput, plan: _Plan) -> None:
        read = item.read
        meter = item.meter
        history = item.history
        total = plan.registers.total
        self.item = item
        self.read = read
        self.meter = meter
        self.history = history
        self.plan = plan
        self.total = total
        self.unit = meter.unit
        self.active = meter.account_status == ACTIVE
        multiplier = read.multiplier
        self.mult = meter.multiplier if multiplier is None else multiplier
        self._spans: list[tuple[Decimal, int]] | None = None
        self._average_n = -1
        self._average: tuple[Decimal, int, int] = (ZERO, 0, 0)
        self._highest: tuple[Decimal, int, int, MeterRead | None] | None = None
        self._last_year: tuple[Decimal, int, MeterRead, MeterRead] | bool | None = False
        current = self.current = read.registers.get(total)
        self.previous = None
        self.previous_value = None
        self.raw = self.used = None
        self.rolled = False
        self.us = 0
        if current is None:
            return
        for earlier in reversed(history):
            value = earlier.registers.get(total)
            if value is not None:
                self.previous = earlier
                self.previous_value = value
                raw = current - value
                if raw < ZERO:
                    delta = register_delta(value, current, meter.dials, plan.wrap_share)
                    raw = delta.used
                    self.rolled = delta.rolled
                self.raw = raw
                self.used = raw * self.mult
                elapsed = read.read_at - earlier.read_at
                self.us = (elapsed.days * 86_400 + elapsed.seconds) * 1_000_000 + (
                    elapsed.microseconds)
                return

    def spans(self) -> list[tuple[Decimal, int]]:
        """``(use, microseconds)`` of each history interval of the total register, newest first."""
        spans = self._spans
        if spans is None:
            spans = self._spans = []
            total = self.total
            dials = self.meter.dials
            share = self.plan.wrap_share
            default = self.meter.multiplier
            later_value: Decimal | None = None
            later_at = later_mult = None
            for read in reversed(self.history):
                value = read.registers.get(total)
                if value is None:
                    continue
                at = read.read_at
                if later_value is not None:
                    used = later_value - value
                    if used < ZERO:
                        used = register_delta(value, later_value, dials, share).used
                    elapsed = later_at - at
                    spans.append((used * later_mult, (
                        elapsed.days * 86_400 + elapsed.seconds) * 1_000_000 + (
                        elapsed.microseconds)))
                later_value = value
                later_at = at
                multiplier = read.multiplier
                later_mult = default if multiplier is None else multiplier
        return spans

    def average(self, cycles: int) -> tuple[Decimal, int, int]:
        """``(use, microseconds, intervals)`` summed over the usable of the last ``cycles``.

        Usable: not backward, and of positive length. The usual history (the
        register only grew, one multiplier) telescopes: the use is the newest
        value minus the oldest, without walking each interval.
        """
        if self._average_n != cycles:
            found = self._telescoped(cycles)
            if found is None:
                used = ZERO
                us = count = 0
                for span_used, span_us in self.spans()[:cycles]:
                    if span_used >= ZERO and span_us > 0:
                        used += span_used
                        us += span_us
                        count += 1
                found = (used, us, count)
            self._average_n = cycles
            self._average = found
        return self._average

    def known_average(self) -> tuple[Decimal, int, int] | None:
        """The last :meth:`average` computed for this read, if any (whatever its ``cycles``)."""
        return self._average if self._average_n >= 0 else None

    def _telescoped(self, cycles: int) -> tuple[Decimal, int, int] | None:
        """:meth:`average` when the last ``cycles`` intervals only grew under one multiplier."""
        total = self.total
        default = self.meter.multiplier
        newest = later = None
        later_value = newest_value = ZERO
        multiplier = default
        count = 0
        for read in reversed(self.history):
            value = read.registers.get(total)
            if value is None:
                continue
            if later is None:
                newest = later = read
                newest_value = later_value = value
                multiplier = default if read.multiplier is None else read.multiplier
                continue
            later_multiplier = default if later.multiplier is None else later.multiplier
            if (value > later_value or read.read_at >= later.read_at
                    or later_multiplier != multiplier):
                return None  # a rollover, a backward step, or a change: walk the intervals
            count += 1
            later = read
            later_value = value
            if count == cycles:
                break
        if count == 0 or newest is None or later is None:
            return ZERO, 0, 0
        return ((newest_value - later_value) * multiplier,
                _microseconds(newest.read_at - later.read_at), count)

    def highest(self) -> tuple[Decimal, int, int, MeterRead | None]:
        """The history interval with the highest use per day: ``(use, µs, usable, its end)``."""
        if self._highest is None:
            best_used = ZERO
            best_us = 0
            best_index = -1
            count = 0
            for index, (used, us) in enumerate(self.spans()):
                if used < ZERO or us <= 0:
                    continue
                count += 1
                if best_index < 0 or used * best_us > best_used * us:
                    best_used, best_us, best_index = used, us, index
            self._highest = (best_used, best_us, count, self._span_end(best_index))
        return self._highest

    def _span_end(self, index: int) -> MeterRead | None:
        if index < 0:
            return None
        carrying = [read for read in self.history if self.total in read.registers]
        return carrying[len(carrying) - 1 - index]

    def last_year(self) -> tuple[Decimal, int, MeterRead, MeterRead] | None:
        """Last year's use over the same period: ``(use, µs, first read, last read)``.

        The history reads nearest a year before the previous read and a year
        before this one, each within ``last_year_tolerance_days`` (actual and
        override reads preferred), summed interval by interval; ``None``
        without them or when the register went backward in between.
        """
        if self._last_year is False:
            self._last_year = self._find_last_year()
        return self._last_year  # type: ignore[return-value]

    def _find_last_year(self) -> tuple[Decimal, int, MeterRead, MeterRead] | None:
        previous = self.previous
        history = self.history
        if previous is None or not history:
            return None
        year = timedelta(days=DAYS_PER_YEAR)
        tolerance = self.plan.last_year_tolerance
        start_at = previous.read_at - year
        if history[0].read_at > start_at + tolerance:
            return None  # less than a year of history
        total = self.total
        carrying = [read for read in history if total in read.registers]
        first = _nearest(carrying, start_at, tolerance)
        last = _nearest(carrying, self.read.read_at - year, tolerance)
        if first is None or last is None or first.read_at >= last.read_at:
            return None
        used = ZERO
        earlier = first
        for read in carrying:
            if read.read_at <= first.read_at or read.read_at > last.read_at:
                continue
            delta = register_delta(earlier.registers[total], read.registers[total],
                                   self.meter.dials, self.plan.wrap_share)
            if delta.used < ZERO:
                return None
            used += delta.used * (self.meter.multiplier if read.multiplier is None
                                  else read.multiplier)
            earlier = read
        return used, _microseconds(last.read_at - first.read_at), first, last

    def trailing_estimates(self) -> int:
        """How many of the latest history reads in a row are estimates."""
        count = 0
        for read in reversed(self.history):
            if read.kind is not ReadKind.ESTIMATED:
                break
            count += 1
        return count


Rule = Callable[[EditInput, Context, RuleConfig], Finding | None]


# --- use against history -----------------------------------------------------------------------


def high_usage(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """Use per day > ADU × factor and use − ADU × days > min_excess; active accounts only."""
    if ctx.used is None or ctx.used < ZERO or not ctx.active:
        return None
    average, average_us, count = ctx.average(config.params["cycles"])
    if count < config.params["min_cycles"] or average_us <= 0:
        return None
    return _above("high_usage", ctx, config, average, average_us,
                  f"the average of {_per_day(average, average_us, ctx.unit)} over the last "
                  f"{_cycles(count)}")


def low_usage(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """Use per day < ADU × factor and ADU × days − use > min_shortfall; zero use is left out."""
    if ctx.used is None or ctx.used <= ZERO or not ctx.active:
        return None
    average, average_us, count = ctx.average(config.params["cycles"])
    if count < config.params["min_cycles"] or average_us <= 0:
        return None
    return _below("low_usage", ctx, config, average, average_us,
                  f"the average of {_per_day(average, average_us, ctx.unit)} over the last "
                  f"{_cycles(count)}")


def high_usage_last_year(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """As :func:`high_usage`, against last year's use per day over the same period."""
    if ctx.used is None or ctx.used < ZERO or not ctx.active:
        return None
    found = ctx.last_year()
    if found is None:
        return None
    before, before_us, first, last = found
    return _above("high_usage_last_year", ctx, config, before, before_us,
                  _last_year(before, before_us, first, last, item.cycle, ctx.unit))


def low_usage_last_year(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """As :func:`low_usage`, against last year's use per day over the same period."""
    if ctx.used is None or ctx.used <= ZERO or not ctx.active:
        return None
    found = ctx.last_year()
    if found is None:
        return None
    before, before_us, first, last = found
    return _below("low_usage_last_year", ctx, config, before, before_us,
                  _last_year(before, before_us, first, last, item.cycle, ctx.unit))


def _above(rule: str, ctx: Context, config: RuleConfig, reference: Decimal,
           reference_us: int, against: str) -> Finding | None:
    """Use per day above ``reference`` per day × factor, by more than ``min_excess`` in all."""
    used, us, params = ctx.used or ZERO, ctx.us, config.params
    factor = params["factor"]
    if used * reference_us <= reference * factor * us:
        return None
    limit = params["min_excess"]
    if (used - limit) * reference_us <= reference * us:
        return None
    expected = reference * us / reference_us
    return Finding(rule, config.severity, (
        f"{_used(ctx)}, {_times(used * reference_us, reference * us, factor)} {against} "
        f"(limit {_factor(factor)}×): {_about(used - expected)} {ctx.unit} above it, "
        f"limit {_qty(limit)} {ctx.unit}."), ctx.total)


def _below(rule: str, ctx: Context, config: RuleConfig, reference: Decimal,
           reference_us: int, against: str) -> Finding | None:
    """Use per day below ``reference`` per day × factor, by more than ``min_shortfall``."""
    used, us, params = ctx.used or ZERO, ctx.us, config.params
    factor = params["factor"]
    if used * reference_us >= reference * factor * us:
        return None
    limit = params["min_shortfall"]
    if reference * us <= (used + limit) * reference_us:
        return None
    expected = reference * us / reference_us
    return Finding(rule, config.severity, (
        f"{_used(ctx)}, {_times(used * reference_us, reference * us, factor)} {against} "
        f"(limit {_factor(factor)}×): {_about(expected - used)} {ctx.unit} below it, "
        f"limit {_qty(limit)} {ctx.unit}."), ctx.total)


def _last_year(before: Decimal, before_us: int, first: MeterRead, last: MeterRead,
               cycle: Cycle, unit: str) -> str:
    return (f"last year's {_per_day(before, before_us, unit)} over the same period "
            f"({_day(first.read_at, cycle)} to {_day(last.read_at, cycle)})")


def spike(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """Use per day > the highest earlier interval's use per day × factor, above min_use."""
    used = ctx.used
    params = config.params
    if used is None or used <= params["min_use"]:
        return None
    us = ctx.us
    factor = params["factor"]
    known = ctx.known_average()
    if known is not None:
        average, average_us, _ = known
        if average_us > 0 and used * average_us <= average * factor * us:
            return None  # the highest use per day is at least any average: no spike
    best, best_us, count, end = ctx.highest()
    if count < params["min_cycles"]:
        return None
    if used * best_us <= best * factor * us:
        return None
    when = f" (the {_days(best_us)} days to {_day(end.read_at, item.cycle)})" if end else ""
    return Finding("spike", config.severity, (
        f"{_used(ctx)}, {_times(used * best_us, best * us, factor)} the highest earlier use of "
        f"{_per_day(best, best_us, ctx.unit)}{when} (limit {_factor(factor)}×, over "
        f"{_cycles(count)})."), ctx.total)


# --- the register itself -------------------------------------------------------------------------


def zero_consumption(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """The total register did not move over the cycle, on an active account."""
    if ctx.raw is None or ctx.raw != ZERO or not ctx.active:
        return None
    return Finding("zero_consumption", config.severity, (
        f"No use: {ctx.total} still reads {_qty(ctx.current)} {ctx.unit}, as on "
        f"{_day(ctx.previous.read_at, item.cycle)} ({_days(ctx.us)} days earlier), on an "
        f"active account."), ctx.total)


def inactive_consumption(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """Use above min_use on an account that is not active (or a meter with no account)."""
    used = ctx.used
    if used is None or ctx.active:
        return None
    limit = config.params["min_use"]
    if used <= limit:
        return None
    status = item.meter.account_status
    whose = (f"account {item.meter.account} is {status}" if status and item.meter.account
             else f"the account is {status}" if status else "the meter serves no account")
    return Finding("inactive_consumption", config.severity, (
        f"{_used(ctx)}, but {whose} (limit {_qty(limit)} {ctx.unit})."), ctx.total)


def negative_consumption(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """The total register reads lower than the last bill and it is not a rollover."""
    raw = ctx.raw
    if raw is None or raw >= ZERO:
        return None
    capacity = Decimal(10) ** item.meter.dials
    return Finding("negative_consumption", config.severity, (
        f"{ctx.total} went backward from {_qty(ctx.previous_value)} to {_qty(ctx.current)} "
        f"{ctx.unit} ({_qty(ctx.used)} {ctx.unit}) since "
        f"{_day(ctx.previous.read_at, item.cycle)}; on {item.meter.dials} dials a rollover "
        f"would mean {_qty((raw + capacity) * ctx.mult)} {ctx.unit} used, more than "
        f"{_percent(ctx.plan.wrap_share)} of the dial."), ctx.total)


def rollover(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """The total register rolled over at its dial count (normal; noted)."""
    if not ctx.rolled:
        return None
    return Finding("rollover", config.severity, (
        f"{ctx.total} rolled over on {item.meter.dials} dials: {_qty(ctx.previous_value)} → "
        f"{_qty(ctx.current)} {ctx.unit}, used {_qty(ctx.used)} {ctx.unit}."), ctx.total)


def stuck_register(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """The same value on ``cycles`` billing reads in a row (this one included), active account."""
    if ctx.raw is None or ctx.raw != ZERO or not ctx.active or ctx.rolled:
        return None
    cycles = config.params["cycles"]
    current = ctx.current
    total = ctx.total
    seen = 1
    since = ctx.read
    for read in reversed(ctx.history):
        value = read.registers.get(total)
        if value is None:
            continue
        if value != current:
            return None
        seen += 1
        since = read
        if seen >= cycles:
            break
    if seen < cycles:
        return None
    return Finding("stuck_register", config.severity, (
        f"{total} has read {_qty(current)} {ctx.unit} on the last {seen} billing reads "
        f"(since {_day(since.read_at, item.cycle)}, limit {cycles}): the register may be "
        f"stuck."), total)


def tou_sum_mismatch(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """The TOU registers' use (or values) must add up to the total's, within tolerance."""
    tou = ctx.plan.registers.tou
    total_now = ctx.current
    if not tou or total_now is None:
        return None
    registers = item.read.registers
    previous = ctx.previous
    before = previous.registers if previous is not None else {}
    values = ZERO
    uses: Decimal | None = ZERO
    for name in tou:
        end = registers.get(name)
        if end is None:
            return None
        values += end
        start = before.get(name)
        if start is None or uses is None:
            uses = None
            continue
        used = end - start
        if used < ZERO:
            used = register_delta(start, end, item.meter.dials, ctx.plan.wrap_share).used
        uses += used
    if uses is None:
        what = "values"
        total = total_now
        parts = values
    else:
        what = "use"
        total = ctx.raw
        if total < ZERO:
            return None  # negative_consumption says it
        parts = uses
    params = config.params
    gap = abs(parts - total)
    allowed = max(params["tolerance"], params["tolerance_share"] * abs(total))
    if gap <= allowed:
        return None
    return Finding("tou_sum_mismatch", config.severity, (
        f"The TOU registers' {what} ({' + '.join(tou)}) add up to {_qty(parts)} {ctx.unit}, "
        f"{ctx.total}'s is {_qty(total)} {ctx.unit}: {_qty(gap)} apart, more than the "
        f"{_qty(allowed)} {ctx.unit} allowed (register units, before the multiplier)."),
        ctx.total)


# --- the read and the meter's facts --------------------------------------------------------------


def read_outside_window(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """The read was taken outside the cycle's read window (its days in the cycle's zone)."""
    start, end = _window(item.cycle)
    at = item.read.read_at
    if start <= at < end:
        return None
    cycle = item.cycle
    return Finding("read_outside_window", config.severity, (
        f"Read at {_instant(at, cycle)}, outside cycle {cycle.id}'s read window "
        f"{cycle.window_start.isoformat()} to {cycle.window_end.isoformat()}."))


def meter_clock_offset(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """The meter's clock is off the collector's by more than ``tolerance_s`` seconds."""
    offset = item.read.meter_offset_s
    if offset is None:
        return None
    tolerance = config.params["tolerance_s"]
    if abs(offset) <= tolerance:
        return None
    way = "ahead of" if offset > ZERO else "behind"
    return Finding("meter_clock_offset", config.severity, (
        f"The meter's clock was {_qty(abs(offset))} s {way} the collector's at the read "
        f"(limit {_qty(tolerance)} s)."))


def multiplier_change(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """The multiplier differs from the last bill's and no meter exchange since explains it."""
    if not item.history:
        return None
    last = item.history[-1]
    before = last.multiplier
    if before is None or before == ctx.mult:
        return None
    installed = item.meter.installed_on
    last_day = _date(last.read_at, item.cycle.zone)
    if installed is not None and installed > last_day:
        return None
    since = (f"the meter was installed on {installed.isoformat()}, before that bill"
             if installed is not None else "no meter exchange is recorded")
    return Finding("multiplier_change", config.severity, (
        f"The multiplier is {_qty(ctx.mult)}, but the last bill ({last_day.isoformat()}) used "
        f"{_qty(before)}, and {since}."))


def meter_alarm(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """Alarm flags on the read, by the rule set's alarm table; one finding, its worst flag's."""
    flags = item.read.flags
    if not flags:
        return None
    table = ctx.plan.alarms
    found = []
    worst = config.severity
    for flag in flags:
        severity = table.get(flag, False)
        if severity is False:
            severity = ctx.plan.alarm_severity(flag)
            if len(table) < MAX_KNOWN_FLAGS:
                table[flag] = severity
        if severity is not None:
            found.append(f"{flag} ({severity})")
            if severity.rank > worst.rank:
                worst = severity
    if not found:
        return None
    return Finding("meter_alarm", worst, (
        f"The meter raised {'an alarm' if len(found) == 1 else 'alarms'}: "
        f"{', '.join(found)}."))


def demand_over_capacity(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """Demand register × multiplier > the meter class's ``capacity_kw`` (``null``: no limit)."""
    capacity = config.params["capacity_kw"]
    name = ctx.plan.registers.demand
    if capacity is None or name is None:
        return None
    value = item.read.registers.get(name)
    if value is None:
        return None
    demand = value * ctx.mult
    if demand <= capacity:
        return None
    meter = item.meter
    cls = f" for a {meter.size} service" if meter.size else ""
    return Finding("demand_over_capacity", config.severity, (
        f"Demand of {_qty(demand)} kW ({name}) is above the meter's capacity of "
        f"{_qty(capacity)} kW{cls}."), name)


def consecutive_estimates(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """An estimate that makes more estimates in a row than ``estimation.max_consecutive``.

    An operator's estimate (it cites its audit record) passes: going past the
    limit was that operator's decision, with its reason on record.
    """
    if item.read.kind is not ReadKind.ESTIMATED or item.read.audit_id is not None:
        return None
    run = ctx.trailing_estimates() + 1
    limit = ctx.plan.max_consecutive
    if run <= limit:
        return None
    return Finding("consecutive_estimates", config.severity, (
        f"This is the {_ordinal(run)} estimated read in a row; the rule set allows {limit}: "
        f"the meter needs an actual read."))


def read_on_removed_meter(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """Read dated after the meter was removed or before it was installed (cycle's zone)."""
    meter = item.meter
    removed = meter.removed_on
    installed = meter.installed_on
    if removed is None and installed is None:
        return None
    at = item.read.read_at
    utc_day = at.toordinal()  # within a day of the read's day in any zone
    if ((installed is None or installed.toordinal() < utc_day - 1)
            and (removed is None or removed.toordinal() > utc_day + 1)):
        return None
    day = _date(at, item.cycle.zone)
    if removed is not None and day > removed:
        return Finding("read_on_removed_meter", config.severity, (
            f"Read dated {day.isoformat()}, after meter {meter.serial} was removed on "
            f"{removed.isoformat()}."))
    if installed is not None and day < installed:
        return Finding("read_on_removed_meter", config.severity, (
            f"Read dated {day.isoformat()}, before meter {meter.serial} was installed on "
            f"{installed.isoformat()}."))
    return None


def unverified_provenance(item: EditInput, ctx: Context, config: RuleConfig) -> Finding | None:
    """An actual read must be signed (collector, seq); an override needs a reason and audit id.

    Estimates pass (they name their method). An override passes only with
    both ``reason`` and ``audit_id``, signed or not: its value is the
    operator's, not the collector's.
    """
    read = item.read
    kind = read.kind
    if kind is ReadKind.ACTUAL:
        if read.collector is not None and read.seq is not None:
            return None
        return Finding("unverified_provenance", config.severity, (
            "An actual read without a collector's signature (no collector and sequence "
            "number): it was not taken and signed by a gateway or handheld."))
    if kind is ReadKind.OVERRIDE:
        reason = read.reason
        if reason is not None and reason.strip() and read.audit_id is not None:
            return None
        missing = " and ".join(name for name, absent in (
            ("a reason", reason is None or not reason.strip()),
            ("an audit id", read.audit_id is None)) if absent)
        return Finding("unverified_provenance", config.severity, (
            f"A read entered at the hub without {missing}: an override needs an audited "
            f"reason."))
    return None


RULES: Mapping[str, Rule] = {
    "high_usage": high_usage,
    "low_usage": low_usage,
    "high_usage_last_year": high_usage_last_year,
    "low_usage_last_year": low_usage_last_year,
    "zero_consumption": zero_consumption,
    "inactive_consumption": inactive_consumption,
    "negative_consumption": negative_consumption,
    "rollover": rollover,
    "spike": spike,
    "stuck_register": stuck_register,
    "read_outside_window": read_outside_window,
    "meter_clock_offset": meter_clock_offset,
    "multiplier_change": multiplier_change,
    "meter_alarm": meter_alarm,
    "demand_over_capacity": demand_over_capacity,
    "tou_sum_mismatch": tou_sum_mismatch,
    "consecutive_estimates": consecutive_estimates,
    "read_on_removed_meter": read_on_removed_meter,
    "unverified_provenance": unverified_provenance,
}
"""Every rule :func:`run_rules` runs, in order (the rule set configures each by this name)."""

if tuple(RULES) != tuple(CHECK_PARAMS):  # pragma: no cover - a code change out of step
    raise RuntimeError("hub.edits.rules.RULES and hub.edits.ruleset.CHECK_PARAMS differ")


class _Plan:
    """What :func:`run_rules` needs per service and meter class, derived once per rule set."""

    __slots__ = ("_alarm_table", "alarms", "checks", "last_year_tolerance", "max_consecutive",
                 "registers", "wrap_share")

    def __init__(self, rule_set: RuleSet, service: str, meter_class: str) -> None:
        configs = rule_set.rules_for(service, meter_class)
        self.checks = tuple((rule, configs[name]) for name, rule in RULES.items()
                            if configs[name].enabled)
        self.registers: Registers = rule_set.registers(service)
        settings = rule_set.estimation
        self.wrap_share = settings.max_wrap_share
        self.max_consecutive = settings.max_consecutive
        self.last_year_tolerance = timedelta(days=settings.last_year_tolerance_days)
        self._alarm_table = rule_set.alarms
        self.alarms: dict[str, Severity | None] = rule_set.cache.setdefault("alarm_flags", {})

    def alarm_severity(self, flag: str) -> Severity | None:
        """The alarm table's severity of ``flag``: the first pattern matching it decides."""
        if flag in PLAUSIBILITY_FLAGS or flag.startswith(TROUBLE_FLAG_PREFIX):
            return None
        for pattern, severity in self._alarm_table:
            if fnmatchcase(flag, pattern):
                return severity
        return None


def run_rules(item: EditInput, rule_set: RuleSet) -> tuple[Finding, ...]:
    """Every enabled rule of the meter's service and class over ``item``; the findings, in order.

    Never raises on a well-formed input (history oldest first and before the
    read, registers non-negative). A meter whose service the rule set does not
    configure raises :class:`~hub.edits.ruleset.RuleSetLookupError`: billing it
    unchecked would be worse.
    """
    meter = item.meter
    plans = rule_set.cache
    key = (meter.service, meter.size)
    plan = plans.get(key)
    if plan is None:
        plan = plans[key] = _Plan(rule_set, meter.service, rule_set.meter_class(meter))
    found = []
    with localcontext(EXACT):
        ctx = Context(item, plan)
        for rule, config in plan.checks:
            finding = rule(item, ctx, config)
            if finding is not None:
                found.append(finding)
    return tuple(found)


# --- helpers -----------------------------------------------------------------------------------


def _nearest(reads: Sequence[MeterRead], target: datetime,
             tolerance: timedelta) -> MeterRead | None:
    """The read nearest ``target`` within ``tolerance``; an actual or override beats an estimate."""
    near = [read for read in reads if abs(read.read_at - target) <= tolerance]
    good = [read for read in near if read.kind in GOOD_KINDS]
    return min(good or near, key=lambda read: abs(read.read_at - target), default=None)


def _microseconds(elapsed: timedelta) -> int:
    return (elapsed.days * 86_400 + elapsed.seconds) * 1_000_000 + elapsed.microseconds


_WINDOWS: dict[int, tuple[Cycle, datetime, datetime]] = {}


def _window(cycle: Cycle) -> tuple[datetime, datetime]:
    """``cycle.window()``, kept per cycle object (a run asks one cycle a million times)."""
    entry = _WINDOWS.get(id(cycle))
    if entry is None or entry[0] is not cycle:
        if len(_WINDOWS) > 64:
            _WINDOWS.clear()
        entry = _WINDOWS[id(cycle)] = (cycle, *cycle.window())
    return entry[1], entry[2]


def _date(instant: datetime, zone: tzinfo) -> date:
    return instant.astimezone(zone).date()


def _day(instant: datetime, cycle: Cycle) -> str:
    return _date(instant, cycle.zone).isoformat()


def _instant(instant: datetime, cycle: Cycle) -> str:
    return instant.astimezone(cycle.zone).isoformat(timespec="minutes")


def _used(ctx: Context) -> str:
    """``Used 1 240 kWh in 30.0 days (41.3 kWh/day)``."""
    return (f"Used {_qty(ctx.used)} {ctx.unit} in {_days(ctx.us)} days "
            f"({_per_day(ctx.used, ctx.us, ctx.unit)})")


def _qty(value: Decimal | None) -> str:
    """An amount for people: at most 3 decimals, trailing zeros dropped, thousands spaced."""
    if value is None:
        return "?"
    if value.as_tuple().exponent < -3:  # type: ignore[operator]
        value = value.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    text = f"{value:,f}".replace(",", " ")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _about(value: Decimal) -> str:
    """A computed amount (an average times days) to one decimal: ``764.3``."""
    return _qty(value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _per_day(used: Decimal, us: int, unit: str) -> str:
    """Use per day to 1 decimal (2 below 10, 3 below 1): ``41.3 kWh/day``."""
    rate = used * US_PER_DAY / us if us > 0 else ZERO
    for quantum, floor in _RATE_STEPS:
        value = rate.quantize(quantum, rounding=ROUND_HALF_UP)
        if abs(value) >= floor:
            break
    return f"{value:,f}".replace(",", " ") + f" {unit}/day"


_RATE_STEPS = ((Decimal("0.1"), 10), (Decimal("0.01"), 1), (Decimal("0.001"), 0))


def _days(us: int) -> str:
    return str((Decimal(us) / US_PER_DAY).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _factor(factor: Decimal) -> str:
    return f"{factor:f}"


def _times(numerator: Decimal, denominator: Decimal, limit: Decimal) -> str:
    """``2.6×``: the ratio, with as many decimals as it takes to differ from ``limit``."""
    if denominator <= ZERO:
        return "∞×"
    ratio = numerator / denominator
    for places in range(1, 7):
        shown = ratio.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        if shown != limit:
            break
    return f"{shown:f}×"


def _cycles(count: int) -> str:
    return "cycle" if count == 1 else f"{count} cycles"


def _percent(share: Decimal) -> str:
    return f"{_qty(share * 100)} %"


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10,
                                                                                     "th")
    return f"{number}{suffix}"
