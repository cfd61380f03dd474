"""The P1 driver against a simulated smart meter pushing telegrams over a real pseudo-terminal."""

import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import serial

from protocols.channels import ObisChannel, Role, SerialSettings
from protocols.driver import (
    ChecksumError,
    FrameError,
    LinkError,
    NoResponse,
    ProfileError,
    TimeoutError_,
)
from protocols.dsmr_p1 import Telegram, crc16_arc
from protocols.p1_driver import P1Driver, telegram_samples
from simulators.faceplate import Faceplate
from simulators.faults import Fault, FaultSwitch
from simulators.meter_model import MeterSpec, Service
from simulators.p1_emitter import P1Emitter
from simulators.serial_link import VirtualCable
from tests.conftest import HandClock

EPOCH = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ELAPSED_S = 437.0
"""Wall seconds the faceplates' clock stands past their epoch: now = 12:07:17 UTC (13:07:17 W)."""
INTERVAL_S = 0.2

ELECTRIC = MeterSpec("E0001234", Service.ELECTRIC, tou=True, start_value=Decimal("1500"))
GAS = MeterSpec("G4-000777", Service.GAS, mean_per_day=Decimal(24))
CHANNELS = [
    ObisChannel(name="energy_import_kwh", unit="kWh", code="1-0:1.8.0"),
    ObisChannel(name="energy_import_kwh_t1", unit="kWh", obis="1-0:1.8.1", code="1-0:1.8.1"),
    ObisChannel(name="energy_import_kwh_t2", unit="kWh", obis="1-0:1.8.2", code="1-0:1.8.2"),
    ObisChannel(name="energy_export_kwh_t1", unit="kWh", code="1-0:2.8.1"),
    ObisChannel(name="energy_export_kwh_t2", unit="kWh", code="1-0:2.8.2"),
    ObisChannel(name="active_power_kw", unit="kW", code="1-0:1.7.0"),
    ObisChannel(name="voltage_l1_v", unit="V", code="1-0:32.7.0"),
    ObisChannel(name="clock", code="0-0:1.0.0", role=Role.CLOCK),
    ObisChannel(name="serial", code="0-0:96.1.1", role=Role.IDENTITY),
    ObisChannel(name="volume_m3", unit="m3", code="0-1:24.2.1", group=1, mbus_channel=1),
    ObisChannel(name="gas_capture", code="0-1:24.2.1", role=Role.CLOCK, mbus_channel=1),
    ObisChannel(name="gas_serial", code="0-1:96.1.0", role=Role.IDENTITY, mbus_channel=1),
]
ELECTRIC_VALUES = {c.name: c.unit for c in CHANNELS if c.role is Role.VALUE and not c.mbus_channel}


def faceplate(spec, *faults):
    """A faceplate whose clock stands ``ELAPSED_S`` past its epoch; the same args give the same."""
    clock = HandClock()
    switch = FaultSwitch(faults, skew_s=3600.0, slow_s=0.8)
    face = Faceplate(spec, faults=switch, epoch=EPOCH, clock=clock)
    clock.advance(ELAPSED_S)
    return face, clock


@contextmanager
def p1_meter(*faults, version="5.0", channels=CHANNELS, interval_s=INTERVAL_S, **emitter_args):
    """A cable with an emitting meter (electricity + gas on M-Bus 1); yields (cable, emitter)."""
    face, _ = faceplate(ELECTRIC, *faults)
    gas, _ = faceplate(GAS)
    with VirtualCable() as cable, P1Emitter(
        cable.meter_path, face, channels, sub_meters={1: gas}, version=version,
        interval_s=interval_s, **emitter_args,
    ) as emitter:
        yield cable, emitter


def driver(cable, **settings):
    settings.setdefault("telegram_timeout_s", 2.0)
    return P1Driver(cable.device_path, **settings)


def expected_electric(*faults):
    face, _ = faceplate(ELECTRIC, *faults)
    return face.values(ELECTRIC_VALUES), face


def values(sample):
    return {name: value.value for name, value in sample.values.items()}


def test_reads_the_faceplate_values_and_clock_exactly():
    with p1_meter() as (cable, _), driver(cable) as meter:
        electric, gas = meter.read(CHANNELS)
    expected, face = expected_electric()
    assert electric.mbus_channel == 0
    assert values(electric) == expected
    assert electric.values["energy_import_kwh_t1"].unit == "kWh"
    assert electric.values["energy_import_kwh_t1"].obis == "1-0:1.8.1"
    assert electric.values["voltage_l1_v"].unit == "V"
    assert electric.meter_time == face.meter_time() == EPOCH + timedelta(seconds=ELAPSED_S)
    assert electric.identity == "E0001234"
    assert gas.mbus_channel == 1
    assert gas.identity == "G4-000777"


def test_gas_comes_with_its_own_five_minute_capture_time_and_value():
    with p1_meter() as (cable, _), driver(cable) as meter:
        _, gas = meter.read(CHANNELS)
    capture = datetime(2026, 11, 23, 12, 5, tzinfo=UTC)  # 12:07:17 on a DSMR 5 meter
    expected, _ = faceplate(GAS)
    assert gas.meter_time == capture
    assert gas.values["volume_m3"].value == expected.value("volume_m3", "m3", capture)
    assert gas.values["volume_m3"].unit == "m3"
    assert gas.values["volume_m3"].value < expected.value("volume_m3", "m3")


def test_dsmr4_sends_version_42_every_interval_with_hourly_gas():
    with p1_meter(version="4.2", interval_s=0.4, header="/KFM5KAIFA-METER") as (cable, emitter):
        assert emitter.interval_s == 0.4
        with driver(cable) as meter:
            telegram = meter.read_telegram()
            started = time.monotonic()
            meter.read_telegram()
            between = time.monotonic() - started
            electric, gas = meter.read(CHANNELS)
    assert telegram.version == "42"
    assert telegram.header == "/KFM5KAIFA-METER"
    assert 0.15 < between < 0.8
    assert values(electric) == expected_electric()[0]
    assert gas.meter_time == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert P1Emitter("unused", faceplate(ELECTRIC)[0], [], version="4.2").interval_s == 10.0


def test_dsmr22_has_no_crc_runs_at_9600_7e1_and_sends_gas_on_two_lines():
    channels = [
        ObisChannel(name="energy_import_kwh_t1", unit="kWh", code="1-0:1.8.1"),
        ObisChannel(name="volume_m3", unit="m3", code="0-1:24.3.0", group=6, mbus_channel=1),
        ObisChannel(name="gas_capture", code="0-1:24.3.0", role=Role.CLOCK, mbus_channel=1),
    ]
    line = SerialSettings(baudrate=9600, bytesize=7, parity="E", stopbits=1)
    # One driver only: a pty keeps 8 data bits and refuses 7 on the next open (EINVAL).
    meter22 = p1_meter(version="2.2", channels=channels, header="/ISk5\\2MT382-1004")
    with meter22 as (cable, _), driver(cable, serial=line, require_crc=False) as meter:
        electric, gas = meter.read(channels)
        telegram = meter.read_telegram()
        meter.require_crc = True
        with pytest.raises(FrameError, match="no CRC"):
            meter.read(channels)
    assert not telegram.checksum
    assert telegram.version is None
    assert electric.values["energy_import_kwh_t1"].value == expected_electric()[0][
        "energy_import_kwh_t1"]
    assert gas.meter_time == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert gas.values["volume_m3"].value == faceplate(GAS)[0].value("volume_m3", "m3", EPOCH)


def test_no_answer_is_no_response():
    with p1_meter(Fault.NO_ANSWER) as (cable, _), driver(cable, telegram_timeout_s=0.5) as meter:
        started = time.monotonic()
        with pytest.raises(NoResponse, match=r"no telegram within 0\.5 s") as caught:
            meter.read(CHANNELS)
    assert 0.45 < time.monotonic() - started < 1.5
    assert caught.value.where == cable.device_path


def test_slow_telegrams_come_late_and_time_out_a_short_wait():
    with p1_meter(Fault.SLOW_ANSWER) as (cable, _), driver(cable) as meter:
        meter.read_telegram()  # one just ended: the next is slow_s (0.8 s) away, not 0.2 s
        started = time.monotonic()
        electric, _ = meter.read(CHANNELS)
        waited = time.monotonic() - started
        meter.telegram_timeout_s = 0.3
        with pytest.raises(NoResponse):
            meter.read(CHANNELS)
    assert waited > 0.6
    assert values(electric) == expected_electric()[0]


def test_garbled_telegrams_are_checksum_errors():
    with p1_meter(Fault.GARBLED) as (cable, emitter), driver(cable) as meter:
        for _ in range(2):  # each read sees two: one with a wrong CRC, one with a damaged byte
            with pytest.raises(ChecksumError) as caught:
                meter.read(CHANNELS)
            assert caught.value.where == cable.device_path
            assert caught.value.raw.startswith(b"/Ene5")
        emitter.faults.clear()
        assert values(meter.read(CHANNELS)[0]) == expected_electric()[0]


def test_clock_skew_shifts_meter_time():
    with p1_meter(Fault.CLOCK_SKEW) as (cable, _), driver(cable) as meter:
        electric, gas = meter.read(CHANNELS)
    assert electric.meter_time == EPOCH + timedelta(seconds=ELAPSED_S + 3600)
    assert gas.meter_time == datetime(2026, 11, 23, 12, 5, tzinfo=UTC)  # its own clock is fine


@pytest.mark.parametrize("fault", [Fault.STUCK, Fault.BACKWARD, Fault.SPIKE, Fault.ROLLOVER])
def test_value_faults_show_in_the_values(fault):
    with p1_meter(fault) as (cable, _), driver(cable) as meter:
        electric, _ = meter.read(CHANNELS)
    read = values(electric)
    assert read == expected_electric(fault)[0]
    normal = expected_electric()[0]
    energy = "energy_import_kwh"
    if fault is Fault.STUCK:
        assert read == normal  # the clock stands still: stuck reads as the normal value
    elif fault is Fault.BACKWARD:
        assert read[energy] < normal[energy]
    elif fault is Fault.SPIKE:
        assert read[energy] >= normal[energy] + 100_000
        assert read["active_power_kw"] > normal["active_power_kw"] * 9
    else:  # the total register starts seconds of use below 10^6: about to wrap, or wrapped
        assert read[energy] > Decimal(999_990) or read[energy] < Decimal(1), read[energy]
        assert read[energy] != normal[energy]


def test_stuck_registers_stop_advancing_between_reads():
    face, clock = faceplate(ELECTRIC)
    gas, _ = faceplate(GAS)
    with VirtualCable() as cable, P1Emitter(
        cable.meter_path, face, CHANNELS, sub_meters={1: gas}, interval_s=INTERVAL_S,
    ), driver(cable) as meter:
        first = values(meter.read(CHANNELS)[0])
        face.faults.set(Fault.STUCK)
        stuck = values(meter.read(CHANNELS)[0])
        clock.advance(3600)
        still = [values(meter.read(CHANNELS)[0]) for _ in range(2)][-1]
        face.faults.clear()
        moving = [values(meter.read(CHANNELS)[0]) for _ in range(2)][-1]  # past one in flight
    assert first == stuck
    assert still["energy_import_kwh"] == stuck["energy_import_kwh"]
    assert moving["energy_import_kwh"] > stuck["energy_import_kwh"]


def test_a_missing_code_is_a_profile_error_naming_it():
    wanted = [*CHANNELS, ObisChannel(name="energy_import_kwh_t3", unit="kWh", code="1-0:1.8.3")]
    with p1_meter() as (cable, _), driver(cable) as meter, pytest.raises(
        ProfileError, match=r"1-0:1\.8\.3"
    ) as caught:
        meter.read(wanted)
    assert caught.value.where == cable.device_path


def test_a_port_that_does_not_exist_is_a_link_error():
    meter = P1Driver("/dev/does-not-exist-p1", telegram_timeout_s=0.5)
    with pytest.raises(LinkError, match="cannot open") as caught:
        meter.connect()
    assert caught.value.where == "/dev/does-not-exist-p1"
    with pytest.raises(LinkError):
        meter.read(CHANNELS)
    meter.close()
    meter.close()


def test_a_wrong_baud_rate_reads_as_line_noise():
    slow_line = SerialSettings(baudrate=9600)
    with p1_meter() as (cable, _), driver(cable, serial=slow_line, telegram_timeout_s=0.6) as meter:
        noisy = pytest.raises(FrameError, match="line noise")
        with noisy:
            meter.read(CHANNELS)


def test_reads_at_any_moment_get_complete_telegrams():
    with p1_meter(interval_s=0.15) as (cable, emitter), driver(cable) as meter:
        for pause in (0.0, 0.01, 0.03, 0.05, 0.08, 0.11):
            time.sleep(pause)
            assert values(meter.read(CHANNELS)[0]) == expected_electric()[0]
        assert emitter.telegrams_sent >= 6


# --- a hand-driven meter end, for exact byte sequences -----------------------------------

GOOD_BODY = (b"/ISk5\\2MT382-1000\r\n\r\n1-0:1.8.1(000123.456*kWh)\r\n"
             b"0-0:1.0.0(261123130717W)\r\n!")
GOOD = GOOD_BODY + b"%04X\r\n" % crc16_arc(GOOD_BODY)
BAD_CRC = GOOD[:-6] + b"0000\r\n"
SIMPLE = [ObisChannel(name="energy_import_kwh_t1", unit="kWh", code="1-0:1.8.1"),
          ObisChannel(name="clock", code="0-0:1.0.0", role=Role.CLOCK)]


@contextmanager
def hand_meter(*chunks):
    """A cable whose meter end writes ``chunks`` (bytes, or float pauses) once a read has begun."""
    with VirtualCable() as cable:
        port = serial.Serial(cable.meter_path, 115200)

        def play():
            time.sleep(0.1)  # after the driver's flush
            for chunk in chunks:
                if isinstance(chunk, float):
                    time.sleep(chunk)
                else:
                    port.write(chunk)

        player = threading.Thread(target=play, daemon=True)
        with driver(cable, telegram_timeout_s=1.0) as meter:
            player.start()
            try:
                yield meter
            finally:
                player.join()
                port.close()


def test_a_driver_opened_mid_telegram_returns_the_next_complete_one():
    with hand_meter(GOOD[20:], 0.05, GOOD) as meter:
        [sample] = meter.read(SIMPLE)
    assert sample.values["energy_import_kwh_t1"].value == Decimal("123.456")
    assert sample.meter_time == datetime(2026, 11, 23, 12, 7, 17, tzinfo=UTC)


def test_one_bad_telegram_is_retried_and_two_are_a_checksum_error():
    with hand_meter(BAD_CRC, 0.05, GOOD) as meter:
        [sample] = meter.read(SIMPLE)
    assert sample.values["energy_import_kwh_t1"].value == Decimal("123.456")
    with hand_meter(BAD_CRC + BAD_CRC) as meter, pytest.raises(ChecksumError):
        meter.read(SIMPLE)
    with hand_meter(BAD_CRC) as meter, pytest.raises(ChecksumError, match="0000 sent"):
        meter.read(SIMPLE)  # no second telegram in time: the first error is the one raised


def test_a_telegram_cut_short_is_a_timeout_not_no_response():
    with hand_meter(GOOD[:40]) as meter, pytest.raises(TimeoutError_) as caught:
        meter.read(SIMPLE)
    assert not isinstance(caught.value, NoResponse)
    assert caught.value.raw == GOOD[:40]


def test_two_telegrams_in_one_burst_are_read_one_by_one():
    later = GOOD.replace(b"000123.456", b"000123.457")
    later = Telegram.from_bytes(later, verify_crc=False).to_bytes()
    with hand_meter(BAD_CRC + later) as meter:
        [sample] = meter.read(SIMPLE)
    assert sample.values["energy_import_kwh_t1"].value == Decimal("123.457")


# --- mapping a telegram to samples (no I/O) ----------------------------------------------

def test_the_emitters_telegram_is_valid_for_the_parser():
    face, _ = faceplate(ELECTRIC)
    gas, _ = faceplate(GAS)
    raw = P1Emitter("unused", face, CHANNELS, sub_meters={1: gas}).telegram()
    telegram = Telegram.from_bytes(raw)
    assert telegram.version == "50"
    assert telegram.find("0-1:24.1.0").groups == ("003",)
    assert telegram.find("1-0:1.8.1").groups[0].startswith("00")


def test_units_scales_and_roles_map_onto_the_sample():
    telegram = Telegram.from_bytes(GOOD)
    in_wh = ObisChannel(name="energy_import_wh_t1", unit="Wh", code="1-0:1.8.1",
                        scale=Decimal(1000))
    [sample] = telegram_samples(telegram, [in_wh])
    assert sample.values["energy_import_wh_t1"].value == Decimal("123456.000")
    assert sample.values["energy_import_wh_t1"].unit == "Wh"
    with pytest.raises(ProfileError, match=r"writes 1-0:1\.8\.1 in kWh"):
        telegram_samples(telegram, [ObisChannel(name="energy_wh", unit="Wh", code="1-0:1.8.1")])
    with pytest.raises(ProfileError, match="no group 1"):
        telegram_samples(telegram, [ObisChannel(name="x", unit="kWh", code="1-0:1.8.1",
                                                group=1)])
    unitless = ObisChannel(name="count", unit="", code="1-0:1.8.1")
    assert telegram_samples(telegram, [unitless])[0].values["count"].unit == "kWh"
    status = ObisChannel(name="s", code="1-0:1.8.1", role=Role.STATUS)
    with pytest.raises(FrameError, match="not a bit field"):
        telegram_samples(telegram, [status])


def test_samples_come_meter_first_then_by_mbus_channel():
    face, _ = faceplate(ELECTRIC)
    gas, _ = faceplate(GAS)
    water, _ = faceplate(MeterSpec("W-1", Service.WATER))
    channels = [
        ObisChannel(name="volume_m3", unit="m3", code="0-2:24.2.1", group=1, mbus_channel=2),
        *CHANNELS,
    ]
    raw = P1Emitter("unused", face, channels, sub_meters={1: gas, 2: water}).telegram()
    samples = telegram_samples(Telegram.from_bytes(raw), channels)
    assert [s.mbus_channel for s in samples] == [0, 1, 2]
    assert Telegram.from_bytes(raw).find("0-2:24.1.0").groups == ("007",)
    assert samples[2].identity is None  # no identity channel named for M-Bus 2
