"""The optical driver against the simulated meter over a real pty cable: modes, baud, faults.

The expected values come from a second faceplate with the same spec and the
same (hand-moved) clock, never from the simulator or the driver.
"""

import contextlib
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import serial

from protocols.channels import IecSettings, ModbusChannel, ObisChannel, Role
from protocols.driver import (
    ChecksumError,
    FrameError,
    LinkError,
    NoResponse,
    ProfileError,
    TimeoutError_,
)
from protocols.iec62056_21 import DataBlock
from protocols.iec_driver import IecOpticalDriver, readout_sample
from simulators.faceplate import Faceplate
from simulators.faults import Fault, FaultSwitch
from simulators.iec_meter import IecMeterSimulator
from simulators.meter_model import MeterSpec, Service
from simulators.serial_link import VirtualCable
from tests.conftest import HandClock

EPOCH = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
SPEED = 60.0
ZONE = "Europe/Vienna"
SPEC = MeterSpec("LGZ-0056859504", Service.ELECTRIC, tou=True, start_value=Decimal("1234.5"),
                 mean_per_day=Decimal(24))
FAST = IecSettings(mode="C", reaction_s=0.03, switch_delay_s=0.04)
CHANNELS = [
    ObisChannel(name="status", code="F.F", role=Role.STATUS, flags={0: "tamper", 3: "cover_open"}),
    ObisChannel(name="meter_serial", code="C.1.0", role=Role.IDENTITY),
    ObisChannel(name="clock_time", code="0.9.1", role=Role.CLOCK_TIME),
    ObisChannel(name="clock_date", code="0.9.2", role=Role.CLOCK_DATE),
    ObisChannel(name="energy_import_kwh", unit="kWh", obis="1-0:1.8.0", code="1.8.0"),
    ObisChannel(name="energy_import_kwh_t1", unit="kWh", obis="1-0:1.8.1", code="1.8.1"),
    ObisChannel(name="energy_import_kwh_t2", unit="kWh", obis="1-0:1.8.2", code="1.8.2"),
    ObisChannel(name="energy_export_kwh", unit="kWh", obis="1-0:2.8.0", code="2.8.0"),
    ObisChannel(name="max_demand_kw", unit="kW", obis="1-0:1.6.0", code="1.6.0"),
]
VALUE_CHANNELS = [channel for channel in CHANNELS if channel.role is Role.VALUE]


@pytest.fixture(autouse=True)
def short_quiet_time(monkeypatch):
    """Sign-ons 0.1 s apart instead of 0.2 s: still well after the simulator is back at 300 baud."""
    monkeypatch.setattr("protocols.iec_driver.SESSION_GAP_S", 0.1)


@dataclass
class Rig:
    cable: VirtualCable
    meter: IecMeterSimulator
    clock: HandClock
    truth: Faceplate
    """The meter's spec, epoch and clock without its faults: what a healthy meter shows."""

    def driver(self, settings=FAST, **options):
        options.setdefault("timezone", ZONE)
        return IecOpticalDriver(self.cable.device_path, settings=settings, **options)

    def read(self, settings=FAST, channels=CHANNELS, **options):
        with self.driver(settings, **options) as driver:
            [sample] = driver.read(channels)
        return sample

    def expected(self):
        return {channel.name: self.truth.value(channel.name, channel.unit)
                for channel in VALUE_CHANNELS}


@contextlib.contextmanager
def rig(settings=FAST, *, faults=(), pace=False, slow_s=1.5, **meter_options):
    clock = HandClock(2_000_000.0)
    switch = FaultSwitch(faults, slow_s=slow_s, skew_s=3600)
    face = Faceplate(SPEC, faults=switch, epoch=EPOCH, speed=SPEED, clock=clock)
    truth = Faceplate(SPEC, epoch=EPOCH, speed=SPEED, clock=clock)
    clock.now += 3600  # sixty simulated hours: every register has moved
    meter_options.setdefault("timezone", ZONE)
    with VirtualCable(pace=pace) as cable, IecMeterSimulator(
        cable.meter_path, face, CHANNELS, settings=settings, **meter_options
    ) as meter:
        yield Rig(cable, meter, clock, truth)


def values(sample):
    return {name: reading.value for name, reading in sample.values.items()}


# --- modes and baud rates ----------------------------------------------------------------


@pytest.mark.parametrize(("mode", "baud"), [("A", 300), ("B", 9600), ("C", 9600)])
def test_each_mode_reads_the_faceplate_exactly(mode, baud):
    settings = replace(FAST, mode=mode)
    with rig(settings) as meter:
        sample = meter.read(settings)
        assert meter.meter.last_baud == baud
    expected = meter.expected()
    assert values(sample) == expected
    assert {name: str(v) for name, v in values(sample).items()} == {
        name: str(v) for name, v in expected.items()}  # the meter's decimals, kept
    assert expected["energy_import_kwh"] > SPEC.start_value
    assert sample.values["energy_import_kwh"].unit == "kWh"
    assert sample.values["energy_import_kwh"].obis == "1-0:1.8.0"
    assert sample.meter_time == meter.truth.meter_time()
    assert sample.meter_time > EPOCH
    assert sample.identity == SPEC.serial
    assert sample.flags == ()
    assert sample.extra["manufacturer"] == "LGZ"


def test_two_reads_on_one_connection():
    with rig() as meter, meter.driver() as driver:
        first = driver.read(CHANNELS)[0]
        assert first.meter_time == meter.truth.meter_time()
        meter.clock.now += 600
        second = driver.read(CHANNELS)[0]
        assert second.meter_time == meter.truth.meter_time()
    assert second.values["energy_import_kwh"].value > first.values["energy_import_kwh"].value
    assert values(second) == meter.expected()


def test_mode_c_asks_for_no_more_than_the_profiles_max_baud():
    with rig() as meter:
        sample = meter.read(replace(FAST, max_baud=2400))
        assert meter.meter.last_baud == 2400
    assert values(sample) == meter.expected()


def test_a_reader_that_misses_the_baud_switch_reads_noise():
    with rig() as meter, pytest.raises(FrameError) as raised:
        meter.read(replace(FAST, honours_baud_switch=False), inter_char_timeout_s=0.2)
    assert meter.cable.mismatched_bytes > 0
    assert raised.value.where == meter.cable.device_path


def test_a_meter_that_ignores_the_baud_switch_is_read_at_the_initial_baud():
    stubborn = replace(FAST, honours_baud_switch=False)
    with rig(stubborn) as meter:
        sample = meter.read(stubborn)
        assert meter.meter.last_baud == 300
    assert values(sample) == meter.expected()


def test_a_meter_offering_a_mode_b_rate_to_a_mode_c_reader_is_a_profile_error():
    with rig(replace(FAST, mode="B")) as meter, pytest.raises(ProfileError, match="mode C"):
        meter.read(FAST)


def test_a_paced_300_baud_sign_on_takes_its_wire_time():
    with rig(pace=True) as meter:
        started = time.monotonic()
        sample = meter.read(channels=CHANNELS[:1] + VALUE_CHANNELS[:1])
        elapsed = time.monotonic() - started
    # request (5 chars) + identification (22) + option select (6), 10 bits each at 300 baud
    assert elapsed >= 33 * 10 / 300
    assert sample.values["energy_import_kwh"].value == meter.expected()["energy_import_kwh"]


# --- the line: echo, wake-up, addresses --------------------------------------------------


def test_an_echoing_optical_head_is_cancelled():
    with rig(echo=True) as meter:
        sample = meter.read(echo=True)
        assert values(sample) == meter.expected()
        with pytest.raises(FrameError):  # a reader not told about the echo reads its own request
            meter.read(response_timeout_s=0.5)


def test_a_battery_meter_answers_only_after_a_wakeup_train(monkeypatch):
    monkeypatch.setattr("protocols.iec_driver.WAKEUP_PAUSE_S", 0.05)
    battery = replace(FAST, wakeup=True)
    with rig(battery) as meter:
        with pytest.raises(NoResponse):
            meter.read(FAST, response_timeout_s=0.3)
        sample = meter.read(battery)
    assert values(sample) == meter.expected()


def test_a_wakeup_train_through_an_echoing_head(monkeypatch):
    monkeypatch.setattr("protocols.iec_driver.WAKEUP_PAUSE_S", 0.05)
    battery = replace(FAST, wakeup=True)
    with rig(battery, echo=True) as meter:
        assert values(meter.read(battery, echo=True)) == meter.expected()


def test_the_device_address_selects_the_meter():
    with rig(address="56859504") as meter:
        assert meter.read(address="56859504").identity == SPEC.serial
        assert meter.read().identity == SPEC.serial  # /?! asks whoever listens
        with pytest.raises(NoResponse) as raised:
            meter.read(address="99999999", response_timeout_s=0.3)
    assert raised.value.where == f"{meter.cable.device_path} address 99999999"


# --- faults -----------------------------------------------------------------------------


def test_no_answer_is_no_response():
    with rig(faults=[Fault.NO_ANSWER]) as meter, pytest.raises(NoResponse) as raised:
        meter.read(response_timeout_s=0.3)
    assert raised.value.kind == "no_response"
    assert raised.value.where == meter.cable.device_path


def test_a_slow_answer_beyond_the_response_timeout():
    with rig(faults=[Fault.SLOW_ANSWER], slow_s=0.6) as meter, pytest.raises(TimeoutError_):
        meter.read(response_timeout_s=0.3)


def test_a_slow_answer_within_the_response_timeout():
    with rig(faults=[Fault.SLOW_ANSWER], slow_s=0.3) as meter:
        assert values(meter.read(response_timeout_s=1.0)) == meter.expected()


def test_a_garbled_readout_is_a_checksum_or_frame_error():
    with rig(faults=[Fault.GARBLED]) as meter:
        for _ in range(2):
            with pytest.raises(FrameError) as raised:
                meter.read(inter_char_timeout_s=0.2)
            assert raised.value.kind in {"checksum", "frame"}


def test_tamper_raises_the_tamper_flag():
    with rig(faults=[Fault.TAMPER]) as meter:
        sample = meter.read()
    assert sample.flags == ("tamper",)
    assert values(sample) == meter.expected()


def test_clock_skew_puts_the_meter_time_ahead():
    with rig(faults=[Fault.CLOCK_SKEW]) as meter:
        sample = meter.read()
    assert sample.meter_time - meter.truth.meter_time() == timedelta(seconds=3600)


def test_stuck_registers_stop_while_the_true_ones_move():
    with rig(faults=[Fault.STUCK]) as meter:
        first = meter.read()
        meter.clock.now += 600
        second = meter.read()
    assert second.values["energy_import_kwh"] == first.values["energy_import_kwh"]
    assert meter.expected()["energy_import_kwh"] > first.values["energy_import_kwh"].value
    assert second.meter_time > first.meter_time


def test_a_backward_register_reads_below_the_true_one():
    with rig(faults=[Fault.BACKWARD]) as meter:
        shown = meter.read().values["energy_import_kwh"].value
    assert shown < meter.expected()["energy_import_kwh"]


def test_a_spike_reads_far_above_the_true_one():
    with rig(faults=[Fault.SPIKE]) as meter:
        sample = meter.read()
    expected = meter.expected()
    assert sample.values["energy_import_kwh"].value >= expected["energy_import_kwh"] + 10**5
    assert sample.values["max_demand_kw"].value > expected["max_demand_kw"] * 5


def test_a_rollover_wraps_the_register_to_zero():
    with rig(faults=[Fault.ROLLOVER]) as meter:
        meter.clock.now -= 3600  # back to the start: the rollover fault starts just below 10^6
        near_top = meter.read().values["energy_import_kwh"].value
        meter.clock.now += 600
        wrapped = meter.read().values["energy_import_kwh"].value
    assert near_top > Decimal("999990")
    assert wrapped < Decimal(100)


# --- profile and link errors ---------------------------------------------------------------


def test_a_channel_missing_from_the_readout_is_a_profile_error():
    reactive = ObisChannel(name="energy_reactive_kvarh", unit="kvarh", code="3.8.0")
    with rig() as meter, pytest.raises(ProfileError, match=r"3\.8\.0"):
        meter.read(channels=[*CHANNELS, reactive])


def test_a_unit_disagreeing_with_the_profile_is_a_profile_error():
    in_wh = ObisChannel(name="energy_import_wh", unit="Wh", code="1.8.0")
    with rig() as meter, pytest.raises(ProfileError, match="kWh"):
        meter.read(channels=[in_wh])
    kwh_any_case = ObisChannel(name="energy_import_kwh", unit="KWH", code="1.8.0")
    with rig() as meter:
        assert meter.read(channels=[kwh_any_case]).values["energy_import_kwh"].unit == "KWH"


def test_a_modbus_channel_is_a_profile_error_before_any_byte_is_sent():
    driver = IecOpticalDriver("/dev/null-does-not-exist", settings=FAST)
    with pytest.raises(ProfileError, match="not an OBIS channel"):
        driver.read([ModbusChannel(name="energy_import_kwh", address=0)])


def test_a_port_that_does_not_exist_is_a_link_error():
    driver = IecOpticalDriver("/dev/ttyIEC-does-not-exist", settings=FAST)
    with pytest.raises(LinkError) as raised:
        driver.connect()
    assert raised.value.where == "/dev/ttyIEC-does-not-exist"
    with pytest.raises(LinkError):
        driver.read(CHANNELS)
    driver.close()
    driver.close()


def test_closing_twice_after_a_read_is_harmless():
    with rig() as meter:
        driver = meter.driver()
        driver.read(CHANNELS)
        driver.close()
        driver.close()


@pytest.mark.parametrize(("options", "match"), [
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"address": "a/b"}, "address"),
    ({"settings": replace(FAST, mode="E")}, "mode"),
])
def test_bad_driver_settings_are_profile_errors(options, match):
    options = {"settings": FAST, **options}
    with pytest.raises(ProfileError, match=match):
        IecOpticalDriver("/dev/ttyUSB0", **options)


# --- a hand-made meter that stops half way ---------------------------------------------------


def with_even_parity(data: bytes) -> bytes:
    """7E1 as a pty carries it: eight bits, the even parity bit in bit 7."""
    return bytes(byte | 0x80 if bin(byte).count("1") % 2 else byte for byte in data)


@contextlib.contextmanager
def scripted_meter(answer: bytes):
    """A 'meter' that answers any request with ``answer`` (sent as is) and then stays silent."""
    with VirtualCable() as cable:
        port = serial.Serial(cable.meter_path, 300, timeout=2)
        done = threading.Event()

        def serve():
            heard = b""
            while not heard.endswith(b"!\r\n") and not done.is_set():
                heard += bytes(byte & 0x7F for byte in port.read(1))
            port.write(answer)
            done.wait(5)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield cable
        finally:
            done.set()
            thread.join(5)
            port.close()


def test_an_answer_that_stops_half_way_is_a_timeout():
    half = with_even_parity(b"/LGZ5ZMD31")
    with scripted_meter(half) as cable, pytest.raises(TimeoutError_) as raised:
        IecOpticalDriver(cable.device_path, settings=FAST, inter_char_timeout_s=0.2).read(CHANNELS)
    assert not isinstance(raised.value, NoResponse)
    assert raised.value.raw == b"/LGZ5ZMD31"


def test_noise_then_silence_is_a_frame_error():
    with scripted_meter(bytes(range(0x80, 0xA0))) as cable, pytest.raises(FrameError):
        IecOpticalDriver(cable.device_path, settings=FAST, inter_char_timeout_s=0.2).read(CHANNELS)


# --- from a readout to a sample, without a line ---------------------------------------------


def block(text: bytes) -> DataBlock:
    covered = text + b"!\r\n\x03"
    check = 0
    for byte in covered:
        check ^= byte
    return DataBlock.from_bytes(b"\x02" + covered + bytes([check & 0x7F]))


def test_scale_group_status_bits_and_a_full_timestamp():
    readout = block(b"1.8.0(123456)\r\n1.6.0(0012.34*kW)(2611011215)\r\nF.F(0000000A)\r\n"
                    b"0.9.0(261101103000)\r\n")
    channels = [
        ObisChannel(name="energy_import_kwh", unit="kWh", code="1.8.0", scale=Decimal("0.001")),
        ObisChannel(name="max_demand_kw", unit="kW", code="1.6.0"),
        ObisChannel(name="status", code="F.F", role=Role.STATUS, flags={1: "tamper"}),
        ObisChannel(name="clock", code="0.9.0", role=Role.CLOCK),
    ]
    sample = readout_sample(readout, channels, zone=ZoneInfo(ZONE))
    assert str(sample.values["energy_import_kwh"].value) == "123.456"
    assert str(sample.values["max_demand_kw"].value) == "12.34"
    assert sample.flags == ("status_bit_3", "tamper")
    assert sample.meter_time == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(("channel", "match"), [
    (ObisChannel(name="t", code="1.6.0", group=2, unit="kW"), "value 2"),
    (ObisChannel(name="e", code="C.1.0", unit=""), "not a decimal"),
    (ObisChannel(name="s", code="C.1.0", role=Role.STATUS), "hexadecimal"),
    (ObisChannel(name="d", code="0.9.2", role=Role.CLOCK_DATE), "clock_date and clock_time"),
    (ObisChannel(name="d", code="C.1.0", role=Role.CLOCK), "timestamp"),
])
def test_readouts_that_do_not_fit_the_profile(channel, match):
    readout = block(b"1.6.0(0012.34*kW)(2611011215)\r\nC.1.0(LGZ 1)\r\n0.9.2(261101)\r\n")
    with pytest.raises(ProfileError, match=match):
        readout_sample(readout, [channel], zone=UTC, where="/dev/ttyUSB0")


def test_checksum_errors_keep_their_type_and_gain_the_port():
    with rig(faults=[Fault.GARBLED]) as meter:
        meter.meter.faults.garble = lambda frame: frame[:-1] + bytes([frame[-1] ^ 1])
        with pytest.raises(ChecksumError) as raised:
            meter.read()
    assert raised.value.where == meter.cable.device_path
