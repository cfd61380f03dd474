"""Meter-edit rules: each rule at the edge of its default threshold, and never raising.

Thresholds are the shipped rule set's (``hub/edits/rulesets/default.yaml``);
every comparison is strict, so a figure exactly at its limit passes and the
smallest step beyond it is a finding.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.edits.model import EditInput, Finding, MeterFacts, MeterRead, ReadKind, Severity
from hub.edits.rules import OUTCOME_RULES, RULES, Context, run_rules
from hub.edits.ruleset import RuleSetLookupError, default_rule_set, parse_rule_set
from hub.edits.usage import average_daily_usage, intervals
from hub.reconcile import Cycle

RULE_SET = default_rule_set()
CYCLE = Cycle("C2026-11", date(2026, 11, 1), date(2026, 11, 7), date(2026, 11, 3))
NOW = datetime(2026, 11, 3, 12, tzinfo=UTC)
KWH = "energy_import_kwh"
M3 = "volume_m3"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def dec(value: object) -> Decimal:
    return Decimal(str(value))


def read(at: datetime, value: object = None, *, register: str = KWH,
         kind: ReadKind = ReadKind.ACTUAL, signed: bool = True, multiplier: object = None,
         flags: tuple[str, ...] = (), offset: object = None, reason: str | None = None,
         audit_id: int | None = None, **extra: object) -> MeterRead:
    registers = {} if value is None else {register: dec(value)}
    registers.update({name: dec(v) for name, v in extra.items()})
    return MeterRead(
        at, registers, kind=kind, source="ami", flags=flags,
        meter_offset_s=None if offset is None else dec(offset),
        collector="gw-0001" if signed else None, seq=1 if signed else None,
        method=None, reason=reason, audit_id=audit_id,
        multiplier=None if multiplier is None else dec(multiplier))


def days_before(days: int, at: datetime = NOW) -> datetime:
    return at - timedelta(days=days)


def past(*values: object, every: int = 30, register: str = KWH, multiplier: object = 1,
         kinds: tuple[ReadKind, ...] = ()) -> tuple[MeterRead, ...]:
    """History reads ``every`` days apart, the last one ``every`` days before NOW."""
    count = len(values)
    kinds = kinds + (ReadKind.ACTUAL,) * (count - len(kinds))
    return tuple(
        read(NOW - timedelta(days=every * (count - index)), value, register=register,
             multiplier=multiplier, kind=kind, signed=kind is ReadKind.ACTUAL)
        for index, (value, kind) in enumerate(zip(values, kinds, strict=False)))


def meter(service: str = "electric", *, dials: int = 6, multiplier: object = 1,
          size: str | None = None, status: str | None = "active",
          installed: date | None = None, removed: date | None = None) -> MeterFacts:
    unit = "kWh" if service == "electric" else "m3"
    return MeterFacts("M-0001", service, dials, dec(multiplier), unit, size=size,
                      account="A-0001", account_status=status, installed_on=installed,
                      removed_on=removed)


def edit(current: MeterRead, history: tuple[MeterRead, ...] = (),
         facts: MeterFacts | None = None, cycle: Cycle = CYCLE) -> EditInput:
    return EditInput(cycle, facts or meter(), current, history)


def found(item: EditInput, rule: str, rule_set=RULE_SET) -> Finding | None:
    """The finding of ``rule`` among everything run_rules says about ``item``."""
    hits = [f for f in run_rules(item, rule_set) if f.rule == rule]
    assert len(hits) <= 1
    return hits[0] if hits else None


def steady(per_cycle: object, cycles: int = 7, start: object = 1000,
           register: str = KWH) -> tuple[MeterRead, ...]:
    """``cycles`` history reads 30 days apart, each ``per_cycle`` above the one before."""
    return past(*(dec(start) + dec(per_cycle) * n for n in range(cycles)), register=register)


def after(history: tuple[MeterRead, ...], used: object, *, register: str = KWH,
          **kwargs: object) -> MeterRead:
    """The read at NOW, ``used`` above the last history read."""
    return read(NOW, history[-1].registers[register] + dec(used), register=register, **kwargs)


# --- high and low usage against the average ------------------------------------------------------


def test_high_usage_at_twice_the_average_passes():
    history = steady(300)  # 10 kWh/day
    assert found(edit(after(history, 600), history), "high_usage") is None


def test_high_usage_just_above_twice_the_average_is_a_warning_with_its_figures():
    history = steady(300)
    finding = found(edit(after(history, "600.001"), history), "high_usage")
    assert finding is not None and finding.severity is Severity.WARNING
    assert finding.register == KWH
    assert finding.message.startswith("Used 600.001 kWh in 30.0 days (20.0 kWh/day), 2.000003×"
                                      " the average of 10.0 kWh/day over the last 6 cycles "
                                      "(limit 2.0×)")
    assert "300 kWh above it, limit 200 kWh" in finding.message


def test_high_usage_within_the_absolute_floor_passes():
    history = steady(60)  # 2 kWh/day: 260 kWh is 4.3× but only 200 kWh more
    assert found(edit(after(history, 260), history), "high_usage") is None
    assert found(edit(after(history, "260.1"), history), "high_usage") is not None


def test_high_usage_needs_min_cycles_of_history():
    history = steady(300, cycles=3)  # two intervals; the rule set wants three
    assert found(edit(after(history, 5000), history), "high_usage") is None
    history = steady(300, cycles=4)
    assert found(edit(after(history, 5000), history), "high_usage") is not None


def test_high_usage_counts_the_use_after_the_multiplier():
    history = past(1000, 1010, 1020, 1030, 1040, multiplier=40)  # 400 kWh per cycle
    facts = meter(multiplier=40, size="CT")
    finding = found(edit(read(NOW, "1070"), history, facts), "high_usage")  # 1 200 kWh, 3×
    assert finding is None  # CT class: at least 2 000 kWh over the average
    finding = found(edit(read(NOW, "1110"), history, facts), "high_usage")  # 2 800 kWh, 7×
    assert finding is not None and "Used 2 800 kWh" in finding.message


def test_high_usage_only_on_active_accounts():
    history = steady(300)
    assert found(edit(after(history, 5000), history, meter(status="vacant")),
                 "high_usage") is None


def test_low_usage_at_half_the_average_passes():
    history = steady(600)  # 20 kWh/day
    assert found(edit(after(history, 300), history), "low_usage") is None


def test_low_usage_just_below_half_the_average_is_a_warning_with_its_figures():
    history = steady(600)
    finding = found(edit(after(history, "299.999"), history), "low_usage")
    assert finding is not None and finding.severity is Severity.WARNING
    assert "Used 299.999 kWh in 30.0 days (10.0 kWh/day)" in finding.message
    assert "the average of 20.0 kWh/day over the last 6 cycles (limit 0.5×)" in finding.message
    assert "300 kWh below it, limit 200 kWh" in finding.message


def test_low_usage_within_the_absolute_floor_passes():
    history = steady(300)  # 10 kWh/day: 100 kWh is a third, but only 200 kWh short
    assert found(edit(after(history, 100), history), "low_usage") is None
    assert found(edit(after(history, "99.9"), history), "low_usage") is not None


def test_low_usage_leaves_zero_use_to_zero_consumption():
    history = steady(600)
    item = edit(after(history, 0), history)
    assert found(item, "low_usage") is None
    assert found(item, "zero_consumption") is not None


def test_water_thresholds_follow_the_meter_size():
    history = steady(15, register=M3)  # 0.5 m3/day
    facts = meter("water", size="2in")
    item = edit(after(history, 100, register=M3), history, facts)  # 85 m3 over
    assert found(item, "high_usage") is None  # 2in: 150 m3 over the average
    item = edit(after(history, 100, register=M3), history, meter("water", size="5/8in"))
    finding = found(item, "high_usage")
    assert finding is not None and "Used 100 m3" in finding.message


# --- against the same period last year ------------------------------------------------------------


def last_year(per_day_then: object, *, late: int = 0) -> tuple[MeterRead, ...]:
    """Reads a year and a month ago and ``late`` days after a year ago, and last month.

    Last year's use per day between the two is ``per_day_then``.
    """
    then = dec(per_day_then) * (30 + late)
    return (
        read(days_before(395), 1000), read(days_before(365 - late), 1000 + then),
        read(days_before(60), 5000), read(days_before(30), 5300),
    )


def test_high_usage_last_year_at_the_limit_passes():
    history = last_year(10)
    assert found(edit(after(history, 600), history), "high_usage_last_year") is None


def test_high_usage_last_year_beyond_the_limit_is_found_with_the_period():
    history = last_year(10)
    finding = found(edit(after(history, "600.001"), history), "high_usage_last_year")
    assert finding is not None and finding.severity is Severity.INFO
    assert "last year's 10.0 kWh/day over the same period (2025-10-04 to 2025-11-03)" in (
        finding.message)
    assert "(limit 2.0×)" in finding.message


def test_last_year_needs_reads_within_the_tolerance():
    inside = last_year(10, late=20)   # 20 days off: the rule set tolerates 20
    outside = last_year(10, late=21)
    assert found(edit(after(inside, 2000), inside), "high_usage_last_year") is not None
    assert found(edit(after(outside, 2000), outside), "high_usage_last_year") is None


def test_low_usage_last_year_at_and_beyond_the_limit():
    history = last_year(20)  # 600 kWh over last year's 30 days
    assert found(edit(after(history, 300), history), "low_usage_last_year") is None
    finding = found(edit(after(history, "299.999"), history), "low_usage_last_year")
    assert finding is not None and "below it, limit 200 kWh" in finding.message


def test_last_year_rules_pass_without_a_year_of_history():
    history = steady(300)
    item = edit(after(history, 5000), history)
    assert found(item, "high_usage_last_year") is None


# --- the register ---------------------------------------------------------------------------------


def test_zero_consumption_on_an_active_account():
    history = steady(300)
    finding = found(edit(after(history, 0), history), "zero_consumption")
    assert finding is not None and "still reads 2 800 kWh" in finding.message
    assert found(edit(after(history, "0.001"), history), "zero_consumption") is None


def test_zero_consumption_passes_on_a_vacant_account():
    history = steady(300)
    assert found(edit(after(history, 0), history, meter(status="vacant")),
                 "zero_consumption") is None


def test_inactive_consumption_any_use_on_a_vacant_account():
    history = steady(300)
    facts = meter(status="vacant")
    assert found(edit(after(history, 0), history, facts), "inactive_consumption") is None
    finding = found(edit(after(history, "0.001"), history, facts), "inactive_consumption")
    assert finding is not None and "account A-0001 is vacant" in finding.message
    assert "Used 0.001 kWh" in finding.message


def test_inactive_consumption_on_a_meter_with_no_account():
    history = steady(300)
    finding = found(edit(after(history, 5), history, meter(status=None)), "inactive_consumption")
    assert finding is not None and "serves no account" in finding.message


def test_a_backward_register_is_negative_consumption_and_blocks():
    history = past(500_000, 500_100)
    finding = found(edit(read(NOW, 500_090), history), "negative_consumption")
    assert finding is not None and finding.blocking
    assert "went backward from 500 100 to 500 090 kWh (-10 kWh)" in finding.message
    assert found(edit(read(NOW, 500_100), history), "negative_consumption") is None


@pytest.mark.parametrize(("dials", "before"), [(4, 9_990), (5, 99_990), (6, 999_990)])
def test_rollover_at_the_dial_count(dials, before):
    history = past(before - 300, before)
    item = edit(read(NOW, 12), history, meter(dials=dials))
    finding = found(item, "rollover")
    assert finding is not None and finding.severity is Severity.INFO
    shown = f"{before:,}".replace(",", " ")
    assert finding.message == f"{KWH} rolled over on {dials} dials: {shown} → 12 kWh, used 22 kWh."
    assert found(item, "negative_consumption") is None


@pytest.mark.parametrize("dials", [4, 5, 6])
def test_a_large_drop_is_negative_not_a_rollover(dials):
    half = 10 ** dials // 2
    item = edit(read(NOW, half - 1000), past(half - 2000, half), meter(dials=dials))
    assert found(item, "rollover") is None
    finding = found(item, "negative_consumption")
    assert finding is not None and f"on {dials} dials a rollover would mean" in finding.message


def test_rollover_up_to_the_wrap_share_and_negative_beyond():
    facts = meter(dials=4)  # wraps at 10 000; max_wrap_share 0.1: at most 1 000 wrapped
    history = past(9_000, 9_990)
    assert found(edit(read(NOW, 990), history, facts), "rollover") is not None  # used 1 000
    item = edit(read(NOW, "990.1"), history, facts)  # would be 1 000.1
    assert found(item, "rollover") is None
    assert found(item, "negative_consumption") is not None


def test_spike_at_three_times_the_highest_earlier_use_passes():
    history = past(0, 300, 600, 1200)  # 10, 10, then 20 kWh/day
    assert found(edit(after(history, 1800), history), "spike") is None


def test_spike_just_above_three_times_the_highest_earlier_use():
    history = past(0, 300, 600, 1200)
    finding = found(edit(after(history, "1800.001"), history), "spike")
    assert finding is not None and finding.blocking
    assert "the highest earlier use of 20.0 kWh/day (the 30.0 days to 2026-10-04)" in (
        finding.message)
    assert "(limit 3.0×, over 3 cycles)" in finding.message


def test_spike_needs_more_than_min_use():
    history = past(0, 30, 60, 90)  # 1 kWh/day
    assert found(edit(after(history, 300), history), "spike") is None
    assert found(edit(after(history, "300.1"), history), "spike") is not None


def test_stuck_register_on_three_equal_reads():
    history = past(1000, 1300, 1300)
    finding = found(edit(read(NOW, 1300), history), "stuck_register")
    assert finding is not None
    assert "has read 1 300 kWh on the last 3 billing reads (since 2026-09-04, limit 3)" in (
        finding.message)


def test_stuck_register_passes_on_two_equal_reads():
    history = past(1000, 1000, 1300)
    item = edit(read(NOW, 1300), history)
    assert found(item, "stuck_register") is None
    assert found(item, "zero_consumption") is not None


def test_tou_use_adding_up_within_tolerance_passes():
    history = (read(days_before(30), 5000, energy_import_kwh_t1=2000,
                    energy_import_kwh_t2=3000),)
    item = edit(read(NOW, 6000, energy_import_kwh_t1=2600, energy_import_kwh_t2="3401"),
                history)  # 1 000 against 1 001: 0.1 % allowed
    assert found(item, "tou_sum_mismatch") is None


def test_tou_use_beyond_the_share_tolerance():
    history = (read(days_before(30), 5000, energy_import_kwh_t1=2000,
                    energy_import_kwh_t2=3000),)
    item = edit(read(NOW, 6000, energy_import_kwh_t1=2600, energy_import_kwh_t2="3401.001"),
                history)
    finding = found(item, "tou_sum_mismatch")
    assert finding is not None
    assert "use (energy_import_kwh_t1 + energy_import_kwh_t2) add up to 1 001.001 kWh" in (
        finding.message)
    assert "energy_import_kwh's is 1 000 kWh: 1.001 apart, more than the 1 kWh allowed" in (
        finding.message)


def test_tou_use_on_a_small_cycle_uses_the_absolute_tolerance():
    history = (read(days_before(30), 5000, energy_import_kwh_t1=2000,
                    energy_import_kwh_t2=3000),)
    ok = read(NOW, 5050, energy_import_kwh_t1=2020, energy_import_kwh_t2="3030.1")
    bad = read(NOW, 5050, energy_import_kwh_t1=2020, energy_import_kwh_t2="3030.101")
    assert found(edit(ok, history), "tou_sum_mismatch") is None
    assert found(edit(bad, history), "tou_sum_mismatch") is not None


def test_tou_values_are_compared_when_the_last_bill_lacks_them():
    history = past(4000)
    ok = read(NOW, 5000, energy_import_kwh_t1=2000, energy_import_kwh_t2=3005)  # 0.1 %: 5
    bad = read(NOW, 5000, energy_import_kwh_t1=2000, energy_import_kwh_t2="3005.001")
    assert found(edit(ok, history), "tou_sum_mismatch") is None
    finding = found(edit(bad, history), "tou_sum_mismatch")
    assert finding is not None and "TOU registers' values" in finding.message


def test_tou_check_passes_without_tou_registers():
    history = past(4000)
    assert found(edit(read(NOW, 5000, energy_import_kwh_t1=1), history),
                 "tou_sum_mismatch") is None


# --- the read and the meter's facts ---------------------------------------------------------------


@pytest.mark.parametrize(("at", "outside"), [
    (datetime(2026, 11, 1, tzinfo=UTC), False),
    (datetime(2026, 11, 1, tzinfo=UTC) - timedelta(microseconds=1), True),
    (datetime(2026, 11, 8, tzinfo=UTC) - timedelta(microseconds=1), False),
    (datetime(2026, 11, 8, tzinfo=UTC), True),
])
def test_read_outside_window_at_its_edges(at, outside):
    finding = found(edit(read(at, 100)), "read_outside_window")
    assert (finding is not None) is outside


def test_read_outside_window_counts_days_in_the_cycle_zone():
    cycle = Cycle("C2026-11", date(2026, 11, 1), date(2026, 11, 7), date(2026, 11, 3), AMSTERDAM)
    late_utc = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)  # 00:30 on 1 November in Amsterdam
    assert found(edit(read(late_utc, 100), cycle=cycle), "read_outside_window") is None
    finding = found(edit(read(datetime(2026, 11, 7, 23, 30, tzinfo=UTC), 100), cycle=cycle),
                    "read_outside_window")
    assert finding is not None
    assert "2026-11-08T00:30+01:00, outside cycle C2026-11's read window 2026-11-01 to " \
           "2026-11-07" in finding.message


def test_meter_clock_offset_at_and_beyond_the_tolerance():
    assert found(edit(read(NOW, 1, offset=300)), "meter_clock_offset") is None
    assert found(edit(read(NOW, 1, offset=-300)), "meter_clock_offset") is None
    finding = found(edit(read(NOW, 1, offset="-300.001")), "meter_clock_offset")
    assert finding is not None
    assert finding.message == ("The meter's clock was 300.001 s behind the collector's at the "
                               "read (limit 300 s).")


def test_multiplier_change_without_an_exchange_blocks():
    history = past(1000, 1010, multiplier=40)
    finding = found(edit(read(NOW, 1020), history, meter(multiplier=80)), "multiplier_change")
    assert finding is not None and finding.blocking
    assert "multiplier is 80, but the last bill (2026-10-04) used 40" in finding.message


def test_multiplier_change_explained_by_an_installation_after_the_last_bill():
    history = past(1000, 1010, multiplier=40)
    exchanged = meter(multiplier=80, installed=date(2026, 10, 5))
    same_day = meter(multiplier=80, installed=date(2026, 10, 4))
    assert found(edit(read(NOW, 1020), history, exchanged), "multiplier_change") is None
    assert found(edit(read(NOW, 1020), history, same_day), "multiplier_change") is not None


def test_the_same_multiplier_is_no_change():
    history = past(1000, 1010, multiplier=40)
    assert found(edit(read(NOW, 1020), history, meter(multiplier=40)),
                 "multiplier_change") is None


def test_meter_alarm_takes_the_worst_flag_and_lists_them():
    item = edit(read(NOW, 1, flags=("leak", "tamper_terminal_cover", "meter_battery_low")))
    finding = found(item, "meter_alarm")
    assert finding is not None and finding.severity is Severity.BLOCKING
    assert finding.message == ("The meter raised alarms: leak (warning), tamper_terminal_cover "
                               "(blocking), meter_battery_low (info).")


def test_a_battery_alarm_alone_is_info():
    finding = found(edit(read(NOW, 1, flags=("module_battery_low",))), "meter_alarm")
    assert finding is not None and finding.severity is Severity.INFO


def test_plausibility_and_trouble_flags_are_not_alarms():
    flags = ("backward", "rollover", "spike", "stuck", "clock_skew", "trouble_leak")
    assert found(edit(read(NOW, 1, flags=flags)), "meter_alarm") is None


def test_demand_at_and_above_the_class_capacity():
    facts = meter(size="200A")
    assert found(edit(read(NOW, 1, demand_kw=48), facts=facts), "demand_over_capacity") is None
    finding = found(edit(read(NOW, 1, demand_kw="48.001"), facts=facts), "demand_over_capacity")
    assert finding is not None and finding.register == "demand_kw"
    assert finding.message == ("Demand of 48.001 kW (demand_kw) is above the meter's capacity "
                               "of 48 kW for a 200A service.")


def test_demand_counts_the_multiplier():
    facts = meter(size="100A", multiplier=2)
    assert found(edit(read(NOW, 1, demand_kw=12), facts=facts), "demand_over_capacity") is None
    assert found(edit(read(NOW, 1, demand_kw="12.0005"), facts=facts),
                 "demand_over_capacity") is not None


def test_demand_without_a_class_capacity_passes():
    assert found(edit(read(NOW, 1, demand_kw=1000)), "demand_over_capacity") is None


def test_two_estimates_in_a_row_pass_and_a_third_blocks():
    actual, estimated = ReadKind.ACTUAL, ReadKind.ESTIMATED
    estimate = read(NOW, 1900, kind=estimated, signed=False)
    one_before = past(1000, 1300, 1600, kinds=(actual, actual, estimated))
    assert found(edit(estimate, one_before), "consecutive_estimates") is None
    two_before = past(1000, 1300, 1600, kinds=(actual, estimated, estimated))
    finding = found(edit(estimate, two_before), "consecutive_estimates")
    assert finding is not None and finding.blocking
    assert finding.message.startswith("This is the 3rd estimated read in a row; the rule set "
                                      "allows 2")


def test_an_operators_estimate_past_the_limit_is_their_audited_decision():
    estimated = ReadKind.ESTIMATED
    decided = replace(read(NOW, 1900, kind=estimated, signed=False), audit_id=41,
                      reason="road closed until spring")
    two_before = past(1000, 1300, 1600, kinds=(ReadKind.ACTUAL, estimated, estimated))
    assert found(edit(decided, two_before), "consecutive_estimates") is None


def test_an_actual_read_ends_a_run_of_estimates():
    history = past(1000, 1300, 1600, kinds=(ReadKind.ESTIMATED,) * 3)
    assert found(edit(read(NOW, 1900), history), "consecutive_estimates") is None


def test_read_on_the_day_of_removal_passes_and_the_day_after_blocks():
    facts = meter(removed=date(2026, 11, 2))
    last_minute = datetime(2026, 11, 2, 23, 59, 59, tzinfo=UTC)
    assert found(edit(read(last_minute, 1), facts=facts), "read_on_removed_meter") is None
    finding = found(edit(read(last_minute + timedelta(seconds=1), 1), facts=facts),
                    "read_on_removed_meter")
    assert finding is not None and finding.blocking
    assert finding.message == ("Read dated 2026-11-03, after meter M-0001 was removed on "
                               "2026-11-02.")


def test_read_before_installation_blocks():
    facts = meter(installed=date(2026, 11, 3))
    midnight = datetime(2026, 11, 3, tzinfo=UTC)
    assert found(edit(read(midnight, 1), facts=facts), "read_on_removed_meter") is None
    finding = found(edit(read(midnight - timedelta(microseconds=1), 1), facts=facts),
                    "read_on_removed_meter")
    assert finding is not None and "before meter M-0001 was installed on 2026-11-03" in (
        finding.message)


def test_removal_date_is_a_day_in_the_cycle_zone():
    cycle = Cycle("C2026-11", date(2026, 11, 1), date(2026, 11, 7), date(2026, 11, 3), AMSTERDAM)
    facts = meter(removed=date(2026, 11, 2))
    late = datetime(2026, 11, 2, 23, 30, tzinfo=UTC)  # already 3 November in Amsterdam
    assert found(edit(read(late, 1), facts=facts, cycle=cycle), "read_on_removed_meter")
    assert found(edit(read(late, 1), facts=facts), "read_on_removed_meter") is None


def test_a_signed_actual_read_is_verified():
    assert found(edit(read(NOW, 1)), "unverified_provenance") is None


def test_an_actual_read_without_signature_blocks_even_with_a_reason():
    item = edit(read(NOW, 1, signed=False, reason="typed in", audit_id=4))
    finding = found(item, "unverified_provenance")
    assert finding is not None and finding.blocking
    assert "without a collector's signature" in finding.message


def test_an_override_needs_a_reason_and_an_audit_id():
    ok = read(NOW, 1, kind=ReadKind.OVERRIDE, signed=False, reason="photo of dial", audit_id=7)
    assert found(edit(ok), "unverified_provenance") is None
    no_audit = read(NOW, 1, kind=ReadKind.OVERRIDE, signed=False, reason="photo of dial")
    finding = found(edit(no_audit), "unverified_provenance")
    assert finding is not None and "without an audit id" in finding.message
    bare = read(NOW, 1, kind=ReadKind.OVERRIDE, signed=False, reason="  ")
    finding = found(edit(bare), "unverified_provenance")
    assert finding is not None and "without a reason and an audit id" in finding.message


def test_an_estimate_needs_no_signature():
    assert found(edit(read(NOW, 1, kind=ReadKind.ESTIMATED, signed=False)),
                 "unverified_provenance") is None


# --- the engine -----------------------------------------------------------------------------------


def test_a_good_read_has_no_findings():
    history = steady(300)
    assert run_rules(edit(after(history, 310, offset=2), history), RULE_SET) == ()


def test_rules_that_lack_history_pass():
    assert run_rules(edit(read(NOW, 1000)), RULE_SET) == ()


def test_a_disabled_rule_does_not_run():
    data = yaml.safe_load(default_rule_set_text())
    data["services"]["electric"]["rules"]["zero_consumption"]["enabled"] = False
    quiet = parse_rule_set(yaml.safe_dump(data), "quiet.yaml")
    history = steady(300)
    assert found(edit(after(history, 0), history), "zero_consumption") is not None
    assert found(edit(after(history, 0), history), "zero_consumption", quiet) is None


def test_a_class_override_changes_the_severity():
    data = yaml.safe_load(default_rule_set_text())
    data["services"]["electric"]["classes"]["200A"]["rules"]["zero_consumption"] = {
        "severity": "blocking"}
    strict = parse_rule_set(yaml.safe_dump(data), "strict.yaml")
    history = steady(300)
    finding = found(edit(after(history, 0), history, meter(size="200A")), "zero_consumption",
                    strict)
    assert finding is not None and finding.blocking


def test_a_service_the_rule_set_lacks_is_an_error():
    with pytest.raises(RuleSetLookupError, match=r"no such service.*electric, water, gas"):
        run_rules(edit(read(NOW, 1), facts=meter("steam")), RULE_SET)


def test_every_rule_has_a_config_and_outcomes_are_not_run():
    configs = RULE_SET.rules_for("electric", "default")
    assert set(RULES) | set(OUTCOME_RULES) == set(configs)
    assert not set(RULES) & set(OUTCOME_RULES)


def default_rule_set_text() -> str:
    from importlib.resources import files

    return (files("hub.edits") / "rulesets" / "default.yaml").read_text(encoding="utf-8")


# --- properties -----------------------------------------------------------------------------------

FLAGS = ("tamper_terminal_cover", "leak", "meter_battery_low", "measurement_fail",
         "reverse_flow", "backward", "rollover", "spike", "stuck", "clock_skew",
         "trouble_no_access", "trouble_leak", "flow_cut_off", "checksum_error")
SIZES = (None, "100A", "200A", "400A", "CT", "5/8in", "2in", "G16", "odd")
REGISTER_SETS = {
    "electric": (KWH, "energy_import_kwh_t1", "energy_import_kwh_t2", "demand_kw"),
    "water": (M3,), "gas": (M3,),
}


@st.composite
def edit_inputs(draw) -> EditInput:
    service = draw(st.sampled_from(sorted(REGISTER_SETS)))
    dials = draw(st.integers(4, 8))
    capacity = 10 ** dials
    names = REGISTER_SETS[service]
    values = st.decimals(min_value=0, max_value=capacity - 1, places=3, allow_nan=False,
                         allow_infinity=False)
    multipliers = st.sampled_from([None, Decimal(1), Decimal(40), Decimal("0.5"), Decimal(80)])

    def registers() -> dict[str, Decimal]:
        chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
        return {name: draw(values) for name in chosen}

    count = draw(st.integers(0, 14))
    gaps = draw(st.lists(st.integers(1, 60 * 86_400 * 1_000_000), min_size=count + 1,
                         max_size=count + 1))
    at = datetime(2025, 1, 1, tzinfo=UTC)
    history = []
    for gap in gaps[:-1]:
        kind = draw(st.sampled_from(list(ReadKind)))
        history.append(MeterRead(
            at, registers(), kind=kind, flags=tuple(draw(st.lists(st.sampled_from(FLAGS),
                                                                   max_size=2))),
            collector=draw(st.sampled_from([None, "gw-1"])), seq=draw(st.sampled_from([None, 1])),
            multiplier=draw(multipliers)))
        at += timedelta(microseconds=gap)
    at += timedelta(microseconds=gaps[-1])
    current = MeterRead(
        at, registers(), kind=draw(st.sampled_from(list(ReadKind))),
        flags=tuple(draw(st.lists(st.sampled_from(FLAGS), max_size=3))),
        meter_offset_s=draw(st.one_of(st.none(), st.decimals(-5000, 5000, places=3))),
        collector=draw(st.sampled_from([None, "gw-1"])), seq=draw(st.sampled_from([None, 2])),
        reason=draw(st.sampled_from([None, "", "photo"])),
        audit_id=draw(st.sampled_from([None, 3])), multiplier=draw(multipliers))
    day = st.dates(date(2024, 1, 1), date(2027, 1, 1))
    facts = MeterFacts(
        "M-1", service, dials, draw(st.sampled_from([Decimal(1), Decimal(40), Decimal("0.5")])),
        "kWh" if service == "electric" else "m3", size=draw(st.sampled_from(SIZES)),
        account=draw(st.sampled_from([None, "A-1"])),
        account_status=draw(st.sampled_from([None, "active", "inactive", "vacant", "closed"])),
        installed_on=draw(st.one_of(st.none(), day)), removed_on=draw(st.one_of(st.none(), day)))
    zone = draw(st.sampled_from([UTC, AMSTERDAM, ZoneInfo("America/Chicago")]))
    cycle = Cycle("C", at.date() - timedelta(days=3), at.date() + timedelta(days=3), at.date(),
                  zone)
    return EditInput(cycle, facts, current, tuple(history))


@settings(max_examples=400, deadline=None)
@given(edit_inputs())
def test_no_rule_raises_on_a_well_formed_history(item):
    findings = run_rules(item, RULE_SET)
    configs = RULE_SET.rules_for(item.meter.service, RULE_SET.meter_class(item.meter))
    for finding in findings:
        assert finding.rule in RULES
        assert isinstance(finding.severity, Severity)
        assert finding.message.endswith(".")
        assert configs[finding.rule].enabled


@settings(max_examples=300, deadline=None)
@given(edit_inputs(), st.integers(1, 14))
def test_the_average_is_the_intervals_average(item, cycles):
    """The telescoped average equals usage.average_daily_usage over the same intervals."""
    if any(r.multiplier not in (None, item.meter.multiplier) for r in item.history):
        return  # usage.intervals knows no multipliers
    plan_key = (item.meter.service, item.meter.size)
    run_rules(item, RULE_SET)  # builds the plan
    ctx = Context(item, RULE_SET.cache[plan_key])
    used, us, count = ctx.average(cycles)
    total = RULE_SET.registers(item.meter.service).total
    spans = intervals(item.history, total, item.meter.dials,
                      RULE_SET.estimation.max_wrap_share)[-cycles:]
    usable = [s for s in spans if s.used >= 0 and s.days > 0]
    assert count == len(usable)
    expected = average_daily_usage(usable)
    if expected is None:
        assert us == 0
    else:
        assert used * 86_400_000_000 / us / item.meter.multiplier == pytest.approx(expected)
