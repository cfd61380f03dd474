"""The gateway's own flags on consecutive reads of one meter."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.plausibility import Limits, RegisterMemory, plausibility_flags

T0 = datetime(2026, 11, 1, tzinfo=UTC)
LIMITS = Limits(dials=6, stuck_after_s=3600, clock_tolerance_s=300)


def flags_for(memory, value, at, *, unit="kWh", offset=None, limits=LIMITS):
    return plausibility_flags(memory, {"energy_import_kwh": (Decimal(value), unit)}, at,
                              offset, limits)


def test_first_read_and_normal_growth_raise_nothing():
    memory = RegisterMemory()
    assert flags_for(memory, "100.000", T0) == ()
    assert flags_for(memory, "101.500", T0 + timedelta(hours=1)) == ()


def test_a_register_that_goes_down_is_backward():
    memory = RegisterMemory()
    flags_for(memory, "500", T0)
    assert flags_for(memory, "490", T0 + timedelta(minutes=15)) == ("backward",)


def test_a_wrap_at_the_dial_count_is_a_rollover_not_backward():
    memory = RegisterMemory()
    flags_for(memory, "999999.100", T0)
    assert flags_for(memory, "000000.400", T0 + timedelta(minutes=15)) == ("rollover",)


def test_a_rollover_that_hides_a_huge_jump_is_also_a_spike():
    memory = RegisterMemory()
    flags_for(memory, "950000", T0)
    assert flags_for(memory, "90000", T0 + timedelta(minutes=15)) == ("rollover", "spike")


def test_a_rise_faster_than_the_meter_can_measure_is_a_spike():
    memory = RegisterMemory()
    flags_for(memory, "100", T0)
    assert flags_for(memory, "100100", T0 + timedelta(minutes=15)) == ("spike",)
    own_limit = Limits(max_use_per_hour=Decimal(1_000_000))
    memory = RegisterMemory()
    flags_for(memory, "100", T0, limits=own_limit)
    assert flags_for(memory, "100100", T0 + timedelta(minutes=15), limits=own_limit) == ()


def test_a_register_unchanged_past_the_limit_is_stuck():
    memory = RegisterMemory()
    flags_for(memory, "42", T0)
    assert flags_for(memory, "42", T0 + timedelta(minutes=30)) == ()
    assert flags_for(memory, "42", T0 + timedelta(minutes=61)) == ("stuck",)
    assert flags_for(memory, "43", T0 + timedelta(minutes=90)) == ()


def test_a_meter_clock_beyond_tolerance_is_clock_skew():
    memory = RegisterMemory()
    assert flags_for(memory, "1", T0, offset=Decimal("299")) == ()
    assert flags_for(memory, "2", T0 + timedelta(hours=1), offset=Decimal("-301")) == (
        "clock_skew",
    )


def test_instantaneous_values_may_go_up_and_down():
    memory = RegisterMemory()
    for minute, volts in enumerate(("230.1", "228.0", "231.5")):
        assert plausibility_flags(memory, {"voltage_l1_v": (Decimal(volts), "V")},
                                  T0 + timedelta(minutes=minute), None, LIMITS) == ()


@given(st.lists(st.decimals(min_value=0, max_value=999_999, places=3), min_size=1, max_size=30))
def test_flags_are_always_known_names_and_never_raise(values):
    memory = RegisterMemory()
    for index, value in enumerate(values):
        flags = flags_for(memory, value, T0 + timedelta(minutes=15 * index))
        assert set(flags) <= {"backward", "rollover", "spike", "stuck"}
        assert not {"backward", "rollover"} <= set(flags)


@given(st.lists(st.decimals(min_value=0, max_value=50, places=3), min_size=2, max_size=30))
def test_steady_plausible_growth_is_never_flagged(increments):
    memory = RegisterMemory()
    value = Decimal(1000)
    for index, step in enumerate(increments):
        value += step + Decimal("0.001")
        assert flags_for(memory, value, T0 + timedelta(hours=index)) == ()
