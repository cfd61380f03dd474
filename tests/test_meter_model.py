from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.meter_model import MeterSpec, Service, SimulatedMeter

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def test_registers_grow_with_time_and_keep_the_meters_decimals():
    meter = SimulatedMeter(MeterSpec("SDM120-1", Service.ELECTRIC), EPOCH)
    values = [meter.registers(EPOCH + timedelta(hours=h))["energy_import_kwh"]
              for h in range(0, 24 * 7, 3)]
    assert values == sorted(values)
    assert values[-1] > values[0]
    assert all(v.as_tuple().exponent == -3 for v in values)


def test_a_week_uses_about_the_mean():
    meter = SimulatedMeter(MeterSpec("m", Service.WATER, mean_per_day=Decimal("0.5")), EPOCH)
    week = meter.registers(EPOCH + timedelta(days=7))["volume_m3"]
    assert Decimal("2.5") < week < Decimal("4.5")


def test_the_model_is_deterministic_across_instances():
    spec = MeterSpec("GAS-7", Service.GAS)
    at = EPOCH + timedelta(days=3, minutes=17)
    assert SimulatedMeter(spec, EPOCH).registers(at) == SimulatedMeter(spec, EPOCH).registers(at)


def test_rollover_at_the_dial_count():
    spec = MeterSpec("old", Service.ELECTRIC, dials=4, start_value=Decimal("9999.000"),
                     mean_per_day=Decimal("24"))
    meter = SimulatedMeter(spec, EPOCH)
    after = meter.registers(EPOCH + timedelta(hours=12))["energy_import_kwh"]
    assert Decimal("0") <= after < Decimal("50")


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=60 * 24 * 60), st.integers(min_value=1, max_value=600),
       st.integers(min_value=0, max_value=90_000))
def test_tou_registers_sum_to_the_total_within_one_digit(minutes, step, start):
    """Also from a meter's starting reading: real tariff registers add up to the total."""
    meter = SimulatedMeter(MeterSpec("tou", Service.ELECTRIC, tou=True,
                                     start_value=Decimal(start)), EPOCH)
    at = EPOCH + timedelta(minutes=minutes)
    regs = meter.registers(at)
    total, t1, t2 = (regs["energy_import_kwh"], regs["energy_import_kwh_t1"],
                     regs["energy_import_kwh_t2"])
    assert abs(total - (t1 + t2)) <= Decimal("0.002")
    later = meter.registers(at + timedelta(minutes=step))
    assert later["energy_import_kwh"] >= total


def test_meter_clock_drifts():
    meter = SimulatedMeter(MeterSpec("drift", Service.ELECTRIC, clock_drift_ppm=100), EPOCH)
    at = EPOCH + timedelta(days=10)
    assert meter.meter_time(at) - at == timedelta(seconds=86.4)
