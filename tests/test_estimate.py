"""Estimation: each method against hand-worked figures, the limit, and a property over histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.edits.estimate import (
    CannotEstimate,
    Estimate,
    EstimationLimit,
    consecutive_estimates,
    estimate,
)
from hub.edits.model import EstimationMethod, EstimationSettings, MeterFacts, MeterRead, ReadKind
from hub.edits.usage import is_cumulative

INTERPOLATION = EstimationMethod.INTERPOLATION
LAST_YEAR = EstimationMethod.SAME_PERIOD_LAST_YEAR
ADU = EstimationMethod.AVERAGE_DAILY_USAGE
TOTAL = "energy_import_kwh"
METER = MeterFacts("SDM630-00001", "electric", dials=6, multiplier=Decimal(1), unit="kWh")
DAY0 = datetime(2026, 7, 1, tzinfo=UTC)
SETTINGS = EstimationSettings()


def on(month: int, day: int, year: int = 2026) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def days(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


def read(at: datetime, value: str | None = None, kind: ReadKind = ReadKind.ACTUAL,
         **registers: str) -> MeterRead:
    values = {name: Decimal(text) for name, text in registers.items()}
    if value is not None:
        values[TOTAL] = Decimal(value)
    return MeterRead(at, values, kind=kind)


def monthly() -> list[MeterRead]:
    """Four reads 30 days apart using 60, 90, 120 kWh: average 270 / 90 = 3 kWh/day."""
    return [read(days(0), "700.0"), read(days(30), "760.0"), read(days(60), "850.0"),
            read(days(90), "970.0")]


# --- interpolation -------------------------------------------------------------------


def test_interpolation_between_last_good_read_and_later_read():
    # base 1000.0 on 10-01, later 1090.0 on 10-31, at 10-21 → 1000 + 90 × 20/30 = 1060.0
    history = [read(on(9, 1), "940.0"), read(on(10, 1), "1000.0")]
    made = estimate(METER, history, on(10, 21), SETTINGS, later=read(on(10, 31), "1090.0"))
    assert made.method is INTERPOLATION
    assert made.read.registers == {TOTAL: Decimal("1060.0")}


def test_estimated_read_is_marked_names_its_method_and_cycle():
    history = [read(on(10, 1), "1000.0")]
    made = estimate(METER, history, on(10, 21), SETTINGS, later=read(on(10, 31), "1090.0"),
                    cycle="C10")
    assert made.read.kind is ReadKind.ESTIMATED
    assert made.read.method is INTERPOLATION
    assert made.read.read_at == on(10, 21)
    assert made.read.cycle == "C10"
    assert not made.read.signed
    assert history == [read(on(10, 1), "1000.0")]


def test_interpolation_explanation_carries_the_figures():
    made = estimate(METER, [read(on(10, 1), "1000.0")], on(10, 21), SETTINGS,
                    later=read(on(10, 31), "1090.0"))
    assert made.explanation == (
        "interpolated between 1 000.0 kWh read 2026-10-01 and 1 090.0 kWh read 2026-10-31: "
        "90.0 kWh × 20/30 days = 60.0 kWh → 1 060.0 kWh")


def test_interpolation_starts_from_last_good_read_skipping_an_estimate():
    # the estimate of 10-11 is not a good read: 1000.0 (10-01) + 90 × 20/30 = 1060.0
    history = [read(on(10, 1), "1000.0"), read(on(10, 11), "1050.0", ReadKind.ESTIMATED)]
    made = estimate(METER, history, on(10, 21), SETTINGS, later=read(on(10, 31), "1090.0"))
    assert made.read.registers[TOTAL] == Decimal("1060.0")


def test_interpolation_ignores_a_later_read_that_is_not_actual():
    later = read(on(10, 31), "1090.0", ReadKind.OVERRIDE)
    with pytest.raises(CannotEstimate, match=r"later read \(2026-10-31\) is override, not actual"):
        estimate(METER, [read(on(10, 1), "1000.0")], on(10, 21), SETTINGS, later=later,
                 method=INTERPOLATION)


def test_interpolation_refuses_a_register_that_went_backward():
    # 1000.0 → 900.0 on 6 dials: a wrap would be 999 900 kWh, far above 10 % of 10^6
    with pytest.raises(CannotEstimate, match=r"went backward from 1 000\.0"):
        estimate(METER, [read(on(10, 1), "1000.0")], on(10, 21), SETTINGS,
                 later=read(on(10, 31), "900.0"), method=INTERPOLATION)


def test_tou_registers_are_estimated_separately_and_demand_carried_over():
    # total 1000 → 1090, t1 600 → 660, t2 400 → 430; 20 of 30 days:
    # total 1000 + 90 × 2/3 = 1060.0, t1 600 + 60 × 2/3 = 640.0, t2 400 + 30 × 2/3 = 420.0;
    # demand is a peak, not a count: the last good read's 5.2 kW, not interpolated
    base = read(on(10, 1), energy_import_kwh="1000.0", energy_import_t1_kwh="600.0",
                energy_import_t2_kwh="400.0", demand_kw="5.2")
    later = read(on(10, 31), energy_import_kwh="1090.0", energy_import_t1_kwh="660.0",
                 energy_import_t2_kwh="430.0", demand_kw="4.8")
    made = estimate(METER, [base], on(10, 21), SETTINGS, later=later)
    assert made.read.registers == {
        "energy_import_kwh": Decimal("1060.0"), "energy_import_t1_kwh": Decimal("640.0"),
        "energy_import_t2_kwh": Decimal("420.0"), "demand_kw": Decimal("5.2")}
    assert "energy_import_t1_kwh: interpolated" in made.explanation
    assert made.explanation.endswith("; demand_kw 5.2 as on the last good read (2026-10-01)")


def test_an_estimate_carries_no_demand_from_an_earlier_estimate():
    history = [read(on(9, 1), energy_import_kwh="700.0", demand_kw="6.0"),
               read(on(10, 1), energy_import_kwh="1000.0", kind=ReadKind.ESTIMATED)]
    made = estimate(METER, history, on(10, 21), SETTINGS, method=ADU)
    assert made.read.registers["demand_kw"] == Decimal("6.0")  # the last *good* read's


# --- same period last year -----------------------------------------------------------


def test_same_period_last_year_scaled_to_this_periods_days():
    # base 8000.0 on 2026-10-01, at 2026-10-21 (20 days). 365 days earlier: 2025-10-01
    # (read there) and 2025-10-21 (nearest read 2025-10-31, 10 days off).
    # last year 5000.0 → 5150.0 over 30 days = 5 kWh/day; 8000.0 + 5 × 20 = 8100.0
    history = [read(on(10, 1, 2025), "5000.0"), read(on(10, 31, 2025), "5150.0"),
               read(on(10, 1), "8000.0")]
    made = estimate(METER, history, on(10, 21), SETTINGS, method=LAST_YEAR)
    assert made.read.registers[TOTAL] == Decimal("8100.0")
    assert made.explanation == (
        "same period last year 5 kWh/day (150.0 kWh from 2025-10-01 to 2025-10-31, 30 days) "
        "× 20 days = 100.0 kWh on top of 8 000.0 kWh read 2026-10-01 → 8 100.0 kWh")


def test_same_period_last_year_prefers_an_actual_read_to_a_nearer_estimate():
    # at − 365 days = 2025-10-21: the estimate of 2025-10-22 is nearer than the actual of
    # 2025-10-31, but the actual one counts: 150.0 / 30 days = 5/day; 8000.0 + 100 = 8100.0
    # (the estimate would give 50.0 / 21 days)
    history = [read(on(10, 1, 2025), "5000.0"),
               read(on(10, 22, 2025), "5050.0", ReadKind.ESTIMATED),
               read(on(10, 31, 2025), "5150.0"), read(on(10, 1), "8000.0")]
    made = estimate(METER, history, on(10, 21), SETTINGS, method=LAST_YEAR)
    assert made.read.registers[TOTAL] == Decimal("8100.0")


def test_same_period_last_year_skips_an_overshooting_estimate_between_its_reads():
    # last year's 10-05 estimate (5300.0) overshot the 10-31 actual (5150.0); the use is
    # taken over the actual reads: 150.0 / 30 days = 5/day; 8000.0 + 5 × 20 = 8100.0
    history = [read(on(10, 1, 2025), "5000.0"),
               read(on(10, 5, 2025), "5300.0", ReadKind.ESTIMATED),
               read(on(10, 31, 2025), "5150.0"), read(on(10, 1), "8000.0")]
    made = estimate(METER, history, on(10, 21), SETTINGS, method=LAST_YEAR)
    assert made.read.registers[TOTAL] == Decimal("8100.0")


def test_same_period_last_year_counts_a_rollover_between_last_years_reads():
    # 4 dials: 9950 → 30 over 20 days is 80 kWh (rolled), 4/day; 100 + 4 × 20 = 180
    meter = MeterFacts("W-7", "water", dials=4, multiplier=Decimal(1), unit="m3")
    history = [read(on(10, 1, 2025), volume_m3="9950"), read(on(10, 21, 2025), volume_m3="30"),
               read(on(10, 1), volume_m3="100")]
    made = estimate(meter, history, on(10, 21), SETTINGS, method=LAST_YEAR)
    assert made.read.registers == {"volume_m3": Decimal("180")}


def test_falls_back_to_same_period_last_year_without_a_later_read():
    history = [read(on(10, 1, 2025), "5000.0"), read(on(10, 31, 2025), "5150.0"),
               read(on(10, 1), "8000.0")]
    made = estimate(METER, history, on(10, 21), SETTINGS)
    assert made.method is LAST_YEAR


# --- average daily usage -------------------------------------------------------------


def test_average_daily_usage_times_days_since_last_read():
    # (60 + 90 + 120) / 90 days = 3 kWh/day; 970.0 + 3 × 20 = 1030.0
    made = estimate(METER, monthly(), days(110), SETTINGS, method=ADU)
    assert made.read.registers[TOTAL] == Decimal("1030.0")
    assert made.explanation == (
        "average daily usage 3 kWh/day over the last 3 cycles × 20 days = 60.0 kWh "
        "on top of 970.0 kWh read 2026-09-29 → 1 030.0 kWh")


def test_falls_back_to_average_daily_usage_without_a_year_of_history():
    made = estimate(METER, monthly(), days(110), SETTINGS)
    assert made.method is ADU


def test_average_daily_usage_takes_only_the_last_history_cycles():
    # last 2 intervals: (90 + 120) / 60 days = 3.5 kWh/day; 970.0 + 3.5 × 20 = 1040.0
    settings = EstimationSettings(history_cycles=2)
    made = estimate(METER, monthly(), days(110), settings, method=ADU)
    assert made.read.registers[TOTAL] == Decimal("1040.0")


def test_backward_interval_is_left_out_of_the_average():
    # 700 → 760 (60 in 30 d), 760 → 750 backward (left out), 750 → 810 (60 in 30 d):
    # 120 / 60 days = 2 kWh/day; 810.0 + 2 × 20 = 850.0
    history = [read(days(0), "700.0"), read(days(30), "760.0"), read(days(60), "750.0"),
               read(days(90), "810.0")]
    made = estimate(METER, history, days(110), SETTINGS, method=ADU)
    assert made.read.registers[TOTAL] == Decimal("850.0")


def test_average_daily_usage_prefers_intervals_between_actual_reads():
    # only 700 → 760 (60 in 30 d) has two actual ends: 2 kWh/day; 1000.0 + 2 × 20 = 1040.0
    history = [read(days(0), "700.0"), read(days(30), "760.0"),
               read(days(60), "900.0", ReadKind.ESTIMATED), read(days(90), "1000.0")]
    made = estimate(METER, history, days(110), SETTINGS, method=ADU)
    assert made.read.registers[TOTAL] == Decimal("1040.0")
    assert "2 kWh/day over 1 of the last 3 cycles" in made.explanation


def test_average_daily_usage_includes_estimated_intervals_when_too_few_are_measured():
    # min 2 cycles but 1 measured: all three count, 300 / 90 days = 3.333…/day;
    # 1000.0 + 66.666… = 1066.666… → 1066.7
    history = [read(days(0), "700.0"), read(days(30), "760.0"),
               read(days(60), "900.0", ReadKind.ESTIMATED), read(days(90), "1000.0")]
    settings = EstimationSettings(min_history_cycles=2)
    made = estimate(METER, history, days(110), settings, method=ADU)
    assert made.read.registers[TOTAL] == Decimal("1066.7")
    assert "estimated or overridden reads included" in made.explanation


def test_not_enough_history_for_average_daily_usage():
    settings = EstimationSettings(min_history_cycles=4)
    with pytest.raises(CannotEstimate, match=r"3 usable interval\(s\) of energy_import_kwh"):
        estimate(METER, monthly(), days(110), settings, method=ADU)


# --- rounding and rollover -----------------------------------------------------------


def test_estimate_rounds_half_up_to_the_base_decimals():
    # 90.0 → 100.0 in 40 days = 0.25/day; 1 day: 100.25 → 100.3 (half-up, not 100.2)
    history = [read(days(0), "90.0"), read(days(40), "100.0")]
    made = estimate(METER, history, days(41), SETTINGS, method=ADU)
    assert made.read.registers[TOTAL] == Decimal("100.3")


def test_whole_number_register_gets_a_whole_number_estimate():
    # 990 → 1000 in 4 days = 2.5/day; 1 day: 1002.5 → 1003
    history = [read(days(0), "990"), read(days(4), "1000")]
    made = estimate(METER, history, days(5), SETTINGS, method=ADU)
    assert made.read.registers[TOTAL] == Decimal("1003")


def test_estimate_rolls_over_on_a_four_dial_register():
    # 9940 → 9990 in 10 days = 5/day; 5 days: 9990 + 25 = 10015 → 15 on 4 dials
    meter = MeterFacts("W-7", "water", dials=4, multiplier=Decimal(1), unit="m3")
    history = [read(days(0), volume_m3="9940"), read(days(10), volume_m3="9990")]
    made = estimate(meter, history, days(15), SETTINGS, method=ADU)
    assert made.read.registers == {"volume_m3": Decimal("15")}
    assert "→ 15 m3 (rolled over at 10 000)" in made.explanation


# --- choosing a method, refusing -----------------------------------------------------


def test_interpolation_comes_first_when_a_later_read_exists():
    made = estimate(METER, monthly(), days(110), SETTINGS, later=read(days(120), "1000.0"))
    assert made.method is INTERPOLATION


def test_rule_set_method_order_is_followed():
    settings = EstimationSettings(methods=(ADU, INTERPOLATION))
    made = estimate(METER, monthly(), days(110), settings, later=read(days(120), "1000.0"))
    assert made.method is ADU


def test_explicit_method_that_cannot_run_says_why():
    with pytest.raises(CannotEstimate) as raised:
        estimate(METER, monthly(), days(110), SETTINGS, method=LAST_YEAR)
    assert raised.value.meter == "SDM630-00001"
    assert str(raised.value) == (
        "cannot estimate meter SDM630-00001: same period last year: no read of "
        "energy_import_kwh within 20 days of 2025-09-29")


def test_when_every_method_fails_each_reason_is_given():
    with pytest.raises(CannotEstimate) as raised:
        estimate(METER, [read(days(0), "700.0")], days(20), SETTINGS)
    reason = raised.value.reason
    assert "interpolation: there is no later read" in reason
    assert "same period last year: no read" in reason
    assert "average daily usage: 0 usable interval(s)" in reason


def test_no_history_cannot_estimate():
    with pytest.raises(CannotEstimate, match="no billing read history"):
        estimate(METER, [], days(20), SETTINGS, later=read(days(30), "1000.0"))


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="no time zone"):
        estimate(METER, monthly(), datetime(2026, 10, 20), SETTINGS)


# --- the consecutive-estimate limit --------------------------------------------------


def test_consecutive_estimates_counts_the_trailing_run():
    e, a, o = ReadKind.ESTIMATED, ReadKind.ACTUAL, ReadKind.OVERRIDE
    def history(*kinds: ReadKind) -> list[MeterRead]:
        return [read(days(i), str(i), kind) for i, kind in enumerate(kinds)]
    assert consecutive_estimates(history(e, a, e, e)) == 2
    assert consecutive_estimates(history(e, e, a)) == 0
    assert consecutive_estimates(history(e, e, o)) == 0
    assert consecutive_estimates(history(e, e, e)) == 3
    assert consecutive_estimates([]) == 0


def test_limit_reached_at_max_consecutive_trailing_estimates():
    history = [*monthly(), read(days(120), "1060.0", ReadKind.ESTIMATED),
               read(days(150), "1150.0", ReadKind.ESTIMATED)]
    with pytest.raises(EstimationLimit) as raised:
        estimate(METER, history, days(180), EstimationSettings(max_consecutive=2),
                 later=read(days(200), "1300.0"), method=INTERPOLATION)
    assert (raised.value.consecutive, raised.value.limit) == (2, 2)
    assert isinstance(raised.value, CannotEstimate)
    assert "last 2 billing reads are estimates" in str(raised.value)


def test_limit_not_reached_one_below_max_consecutive():
    history = [*monthly(), read(days(120), "1060.0", ReadKind.ESTIMATED)]
    made = estimate(METER, history, days(150), EstimationSettings(max_consecutive=2))
    assert isinstance(made, Estimate)


# --- property ------------------------------------------------------------------------


@st.composite
def register_value(draw: st.DrawFn, dials: int) -> Decimal:
    places = draw(st.integers(0, 3))
    return Decimal(draw(st.integers(0, 10 ** (dials + places) - 1))).scaleb(-places)


@st.composite
def estimation_case(draw: st.DrawFn):
    dials = draw(st.integers(4, 8))
    meter = MeterFacts("P-1", "electric", dials=dials, multiplier=Decimal(1), unit="kWh")
    names = draw(st.sampled_from([(TOTAL,), (TOTAL, "energy_import_t1_kwh"),
                                  (TOTAL, "demand_kw"), ("volume_m3",)]))
    kinds = st.sampled_from([ReadKind.ACTUAL] * 3 + [ReadKind.ESTIMATED, ReadKind.OVERRIDE])
    at = DAY0
    history = []
    for _ in range(draw(st.integers(0, 14))):
        at += timedelta(days=draw(st.integers(1, 70)), seconds=draw(st.integers(0, 86399)))
        carried = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        history.append(MeterRead(at, {name: draw(register_value(dials)) for name in carried},
                                 kind=draw(kinds)))
    at += timedelta(days=draw(st.integers(0, 60)), seconds=draw(st.integers(1, 86399)))
    later = None
    if draw(st.booleans()):
        when = at + timedelta(days=draw(st.integers(0, 60)), seconds=draw(st.integers(1, 999)))
        carried = draw(st.lists(st.sampled_from(names), unique=True))
        later = MeterRead(when, {name: draw(register_value(dials)) for name in carried},
                          kind=draw(kinds))
    settings = EstimationSettings(
        methods=tuple(draw(st.lists(st.sampled_from(list(EstimationMethod)), min_size=1,
                                    unique=True))),
        history_cycles=draw(st.integers(0, 8)), min_history_cycles=draw(st.integers(0, 4)),
        max_consecutive=draw(st.integers(1, 4)),
        last_year_tolerance_days=draw(st.integers(0, 45)))
    method = draw(st.none() | st.sampled_from(list(EstimationMethod)))
    return meter, history, at, settings, later, method


@given(estimation_case())
def test_estimate_returns_an_in_range_estimate_or_refuses(case):
    meter, history, at, settings, later, method = case
    try:
        made = estimate(meter, history, at, settings, later=later, method=method)
    except CannotEstimate as refused:
        assert refused.reason
        return
    assert made.read.kind is ReadKind.ESTIMATED
    assert made.method in EstimationMethod
    assert made.read.method is made.method
    assert method is None or made.method is method
    good = [read for read in history if read.kind is not ReadKind.ESTIMATED]
    carried_demand = {name for name in (good[-1].registers if good else ())
                      if name == "demand_kw"}  # a peak is carried from the last good read
    assert set(made.read.registers) == {
        name for name in history[-1].registers if is_cumulative(name)} | carried_demand
    for value in made.read.registers.values():
        assert Decimal(0) <= value < Decimal(10) ** meter.dials
    assert made.explanation
