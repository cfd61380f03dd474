"""The rules see every meter in kWh and kW with a total, whatever its profile reports."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from hub.edits.engine import MeterCase, evaluate
from hub.edits.model import MeterFacts, MeterRead
from hub.edits.rules_view import kilo_name, rules_view
from hub.edits.ruleset import default_rule_set
from hub.reconcile import Cycle, Status

RULES = default_rule_set()
ELECTRIC = RULES.registers("electric")
NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
CYCLE = Cycle("C1", date(2026, 11, 1), date(2026, 11, 7), date(2026, 11, 3))


def read(at: datetime, **registers: str) -> MeterRead:
    return MeterRead(at, {k: Decimal(v) for k, v in registers.items()}, source="ami",
                     collector="gw-1", seq=1)


def test_watt_registers_are_also_seen_in_kilo_units_exactly():
    seen = rules_view(read(NOW, energy_import_wh="12345678", demand_w="5400"), ELECTRIC)
    assert seen.registers["energy_import_kwh"] == Decimal("12345.678")
    assert seen.registers["demand_kw"] == Decimal("5.4")
    assert seen.registers["energy_import_wh"] == Decimal("12345678")  # the signed value stays


def test_a_meter_with_only_tariff_registers_gets_their_sum_as_total():
    seen = rules_view(read(NOW, energy_import_kwh_t1="1200.5", energy_import_kwh_t2="800.25"),
                      ELECTRIC)
    assert seen.registers["energy_import_kwh"] == Decimal("2000.75")


def test_a_read_that_has_what_the_rules_need_is_left_as_it_is():
    original = read(NOW, energy_import_kwh="5", energy_import_kwh_t1="3")
    assert rules_view(original, ELECTRIC) is original  # one tariff register missing: no sum


def test_names_without_watts_are_not_renamed():
    assert kilo_name("energy_import_kwh") is None
    assert kilo_name("wheel_w_t1") == "wheel_kw_t1"  # tokens, not substrings
    assert kilo_name("flow_m3h") is None


@given(st.dictionaries(st.sampled_from(["energy_import_wh", "energy_import_kwh_t1",
                                        "energy_import_kwh_t2", "demand_w", "volume_m3"]),
                       st.decimals(min_value=0, max_value=10**9, places=3), min_size=1))
def test_the_view_only_adds_registers_never_changes_one(values):
    seen = rules_view(MeterRead(NOW, values), ELECTRIC)
    assert {k: seen.registers[k] for k in values} == values


def test_a_dsmr_meter_stuck_at_zero_use_is_caught_through_its_tariff_registers():
    facts = MeterFacts("KFM-1", "electric", 9, Decimal(1), "kWh", account="A1",
                       account_status="active")
    history = tuple(
        MeterRead(NOW - timedelta(days=30 * back), {
            "energy_import_kwh_t1": Decimal(600 - 60 * back),
            "energy_import_kwh_t2": Decimal(400 - 40 * back)}, multiplier=Decimal(1))
        for back in range(3, 0, -1))
    current = read(NOW, energy_import_kwh_t1="540", energy_import_kwh_t2="360")
    outcome = evaluate(MeterCase(CYCLE, facts, Status.READ, actual=current, history=history),
                       RULES)
    assert "zero_consumption" in {f.rule for f in outcome.findings}
    assert outcome.billing_read is current  # judged through the view, billed as signed
