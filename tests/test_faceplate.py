"""What simulated meters show, and how each value fault changes it."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from simulators.faceplate import Faceplate
from simulators.faults import Fault, FaultSwitch
from simulators.meter_model import MeterSpec, Service
from tests.conftest import HandClock

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


def faceplate(*faults, speed=3600.0, spec=None):
    clock = HandClock()
    spec = spec or MeterSpec("E1", Service.ELECTRIC, mean_per_day=Decimal(24))
    return Faceplate(spec, faults=FaultSwitch(faults), epoch=EPOCH, speed=speed, clock=clock), clock


def test_registers_grow_with_simulated_time_and_units_convert():
    face, clock = faceplate()
    before = face.value("energy_import_kwh", "kWh")
    clock.now += 10  # ten simulated hours
    after = face.value("energy_import_kwh", "kWh")
    assert after > before
    assert face.value("energy_import_wh", "Wh") == after * 1000
    t1, t2 = face.value("energy_import_kwh_t1", "kWh"), face.value("energy_import_kwh_t2", "kWh")
    assert t1 + t2 <= after <= t1 + t2 + Decimal("0.002")


def test_instantaneous_values_are_plausible():
    face, _ = faceplate()
    assert Decimal(225) < face.value("voltage_l1_v", "V") < Decimal(235)
    assert Decimal("49.9") < face.value("frequency_hz", "Hz") < Decimal("50.1")
    watts, kilowatts = face.value("active_power_w", "W"), face.value("active_power_kw", "kW")
    assert abs(watts - kilowatts * 1000) < 1


def test_stuck_registers_stop_and_resume():
    face, clock = faceplate()
    face.faults.set(Fault.STUCK)
    frozen = face.value("energy_import_kwh", "kWh")
    clock.now += 5
    assert face.value("energy_import_kwh", "kWh") == frozen
    face.faults.clear(Fault.STUCK)
    assert face.value("energy_import_kwh", "kWh") > frozen


def test_backward_spike_and_rollover():
    face, clock = faceplate()
    clock.now += 100
    normal = face.value("energy_import_kwh", "kWh")
    face.faults.set(Fault.BACKWARD)
    assert face.value("energy_import_kwh", "kWh") < normal
    face.faults.clear()
    face.faults.set(Fault.SPIKE)
    assert face.value("energy_import_kwh", "kWh") >= normal + 100_000
    rolling, clock = faceplate(Fault.ROLLOVER, speed=60)
    near_top = rolling.value("energy_import_kwh", "kWh")
    assert near_top > Decimal("999990")
    clock.now += 600
    assert rolling.value("energy_import_kwh", "kWh") < Decimal(100)


def test_tamper_sets_the_tamper_bit_only():
    face, _ = faceplate()
    flags = {0: "leak", 3: "tamper_magnetic"}
    assert face.status_word(flags) == 0
    face.faults.set(Fault.TAMPER)
    assert face.status_word(flags) == 0b1000


def test_clock_skew_moves_the_meter_clock():
    face, _ = faceplate()
    true_time = face.meter_time()
    face.faults.set(Fault.CLOCK_SKEW)
    assert face.meter_time() - true_time == timedelta(seconds=3600)


def test_line_faults_strike_at_their_rate():
    faults = FaultSwitch([Fault.GARBLED], rate=0.25, seed=3)
    hits = sum(faults.strikes(Fault.GARBLED) for _ in range(4000))
    assert 800 < hits < 1200
    assert not faults.strikes(Fault.NO_ANSWER)
    garbled = faults.garble(b"/LGZ5ZMD\r\n")
    assert garbled != b"/LGZ5ZMD\r\n"
    assert len(garbled) == len(b"/LGZ5ZMD\r\n")
