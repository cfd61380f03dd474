"""Modbus drivers against the simulated meters, over real TCP sockets and a real pty pair.

Every expected value is computed here from the faceplate (fixed wall clock)
with the test's own arithmetic: value ÷ scale, truncated for integer types,
rounded to a float32/float64 and written as its shortest decimal for floats.
"""

import socket
import struct
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from protocols.channels import ByteOrder, DataType, ModbusChannel, ModbusSettings, Role
from protocols.driver import ChecksumError, DeviceError, FrameError, LinkError, NoResponse
from protocols.modbus_driver import ModbusRtuBus, ModbusRtuDriver, ModbusTcpDriver
from simulators.faceplate import Faceplate
from simulators.faults import Fault, FaultSwitch
from simulators.meter_model import MeterSpec, Service
from simulators.modbus_server import ModbusRtuSimulator, ModbusTcpSimulator, SimulatedDevice
from simulators.serial_link import VirtualCable
from tests.conftest import HandClock
from tests.test_modbus_decode import shortest_float32_by_search

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
BIG, LITTLE = ByteOrder.BIG, ByteOrder.LITTLE
TIMEOUT_S = 0.25


def ch(name, unit, address, function, data_type, byte_order=BIG, word_order=BIG, scale="1",
       **kw):
    return ModbusChannel(name=name, unit=unit, address=address, function=function,
                         data_type=data_type, byte_order=byte_order, word_order=word_order,
                         scale=Decimal(scale), **kw)


CHANNELS = [
    # input registers (04), adjacent: one merged request
    ch("voltage_v", "V", 0x00, 4, DataType.FLOAT32),
    ch("current_a", "A", 0x02, 4, DataType.FLOAT32, word_order=LITTLE),
    ch("energy_import_kwh", "kWh", 0x04, 4, DataType.FLOAT64, LITTLE, LITTLE),
    ch("energy_export_kwh", "kWh", 0x08, 4, DataType.INT32, word_order=LITTLE, scale="0.1"),
    ch("frequency_hz", "Hz", 0x0A, 4, DataType.UINT16, scale="0.01"),
    ch("power_factor", "", 0x0B, 4, DataType.INT16, LITTLE, scale="0.001"),
    # 0x0C..0x0D unmapped: the meter answers exception 02 there
    ch("demand_kw", "kW", 0x0E, 4, DataType.FLOAT32),
    # holding registers (03), adjacent: one merged request
    ch("energy_import_kwh_t1", "kWh", 0x100, 3, DataType.UINT32, scale="0.01"),
    ch("energy_import_kwh_t2", "Wh", 0x102, 3, DataType.INT64, word_order=LITTLE),
    ch("energy_export_kwh_t1", "kWh", 0x106, 3, DataType.UINT64, LITTLE, BIG, scale="0.001"),
    ch("active_power_w", "W", 0x10A, 3, DataType.FLOAT32, LITTLE, LITTLE),
    ch("meter_status", "", 0x10C, 3, DataType.UINT16, role=Role.STATUS,
       flags={3: "tamper", 0: "battery_low"}),
]
TOTAL = CHANNELS[2]


def faceplate(serial="E1", *faults, start="1234.567", **switch):
    clock = HandClock()
    spec = MeterSpec(serial, Service.ELECTRIC, mean_per_day=Decimal(24), start_value=Decimal(start))
    face = Faceplate(spec, faults=FaultSwitch(faults, **switch), epoch=EPOCH, speed=3600,
                     clock=clock)
    clock.now += 5  # five simulated hours of use
    return face, clock


def expected(channel, face):
    """What the meter should report for ``channel``: the faceplate, by the test's arithmetic."""
    raw = face.value(channel.name, channel.unit) / channel.scale
    if channel.data_type is DataType.FLOAT32:
        as_float32 = struct.unpack(">f", struct.pack(">f", float(raw)))[0]
        return shortest_float32_by_search(as_float32) * channel.scale
    if channel.data_type is DataType.FLOAT64:
        return Decimal(repr(float(raw))) * channel.scale
    return Decimal(int(raw)) * channel.scale  # int() truncates, as the register does


def assert_reads_faceplate(sample, face, channels=CHANNELS):
    for channel in channels:
        if channel.role is Role.VALUE:
            got = sample.values[channel.name]
            assert got.value == expected(channel, face), channel.name
            assert got.unit == channel.unit
    assert sample.meter_time is None


@pytest.fixture
def tcp_meter():
    face, clock = faceplate()
    with ModbusTcpSimulator(devices={1: SimulatedDevice(face, CHANNELS)}) as sim:
        host, port = sim.endpoint.rsplit(":", 1)
        yield host, int(port), face, clock


@pytest.fixture
def cable():
    with VirtualCable() as link:
        yield link


@pytest.fixture(params=["tcp", "rtu"])
def meter(request, cable):
    """(driver, faceplate, clock) for one meter over either transport."""
    face, clock = faceplate()
    devices = {7: SimulatedDevice(face, CHANNELS)}
    if request.param == "tcp":
        with ModbusTcpSimulator(devices=devices) as sim:
            host, port = sim.endpoint.rsplit(":", 1)
            with ModbusTcpDriver(host, int(port), unit_id=7, timeout_s=TIMEOUT_S) as driver:
                yield driver, face, clock
        return
    with ModbusRtuSimulator(cable.meter_path, devices=devices) as sim, \
            ModbusRtuBus(cable.device_path, timeout_s=TIMEOUT_S) as bus:
        assert sim.endpoint == cable.meter_path
        with bus.driver(7) as driver:
            yield driver, face, clock


# --------------------------------------------------------------------------- values


def test_tcp_reads_every_type_and_order_in_two_merged_requests(tcp_meter):
    host, port, face, _ = tcp_meter
    with ModbusTcpDriver(host, port, unit_id=1) as driver:
        [sample] = driver.read(CHANNELS)
    assert_reads_faceplate(sample, face)
    assert sample.flags == ()
    assert driver.transactions == 3  # 04 at 0x00..0x0B, 04 at 0x0E, 03 at 0x100..0x10C
    assert driver.where == f"{host}:{port} unit 1"


def test_float32_reads_are_the_shortest_decimal(tcp_meter):
    host, port, face, _ = tcp_meter
    with ModbusTcpDriver(host, port) as driver:
        [sample] = driver.read(CHANNELS)
    voltage = sample.values["voltage_v"].value
    assert len(voltage.as_tuple().digits) <= 9
    assert struct.pack(">f", float(voltage)) == struct.pack(
        ">f", float(face.value("voltage_v", "V"))
    )


def test_merged_reads_use_fewer_transactions_than_unmerged(tcp_meter):
    host, port, _, _ = tcp_meter
    with ModbusTcpDriver(host, port) as merged, \
            ModbusTcpDriver(host, port, settings=ModbusSettings(merge=False)) as alone:
        [a] = merged.read(CHANNELS)
        [b] = alone.read(CHANNELS)
    assert a == b
    assert (merged.transactions, alone.transactions) == (3, len(CHANNELS))


def test_several_units_on_one_rtu_bus_with_functions_03_and_04(cable):
    faces = {unit: faceplate(f"E{unit}", start=f"{unit}00.5")[0] for unit in (1, 2, 3)}
    devices = {unit: SimulatedDevice(face, CHANNELS) for unit, face in faces.items()}
    with ModbusRtuSimulator(cable.meter_path, devices=devices), \
            ModbusRtuBus(cable.device_path, timeout_s=TIMEOUT_S) as bus:
        drivers = {unit: bus.driver(unit) for unit in faces}
        for unit, driver in drivers.items():
            [sample] = driver.read(CHANNELS)
            assert_reads_faceplate(sample, faces[unit])
            assert driver.where == f"{cable.device_path} unit {unit}"
        drivers[1].close()  # a meter's driver leaves the bus open for the others
        [sample] = drivers[2].read(CHANNELS)
        assert_reads_faceplate(sample, faces[2])
    assert bus.transactions == 4 * 3


def test_meters_on_one_bus_can_be_polled_from_several_threads(cable):
    faces = {unit: faceplate(f"E{unit}")[0] for unit in (1, 2)}
    devices = {unit: SimulatedDevice(face, CHANNELS) for unit, face in faces.items()}
    failures = []

    def poll(driver, face):
        try:
            for _ in range(3):
                [sample] = driver.read(CHANNELS)
                assert_reads_faceplate(sample, face)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            failures.append(exc)

    with ModbusRtuSimulator(cable.meter_path, devices=devices), \
            ModbusRtuBus(cable.device_path, timeout_s=1.0) as bus:
        threads = [threading.Thread(target=poll, args=(bus.driver(u), faces[u])) for u in faces]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert bus.transactions == 2 * 3 * 3


# --------------------------------------------------------------------------- refusals


def test_unmapped_address_is_an_exception_02_device_error(meter):
    driver, face, _ = meter
    unmapped = ch("energy_import_kwh", "kWh", 0x20, 4, DataType.FLOAT32)
    with pytest.raises(DeviceError) as refused:
        driver.read([unmapped])
    assert refused.value.code == 2
    assert "illegal data address" in str(refused.value)
    [sample] = driver.read(CHANNELS)  # the meter is fine; so is the driver
    assert_reads_faceplate(sample, face)


def test_merging_across_unmapped_registers_is_refused_so_profiles_set_max_gap_0(tcp_meter):
    host, port, face, _ = tcp_meter
    with ModbusTcpDriver(host, port, settings=ModbusSettings(max_gap=0)) as careful:
        assert_reads_faceplate(careful.read(CHANNELS)[0], face)
    with ModbusTcpDriver(host, port, settings=ModbusSettings(max_gap=2)) as greedy, \
            pytest.raises(DeviceError) as refused:
        greedy.read(CHANNELS)  # 0x00..0x0F in one request spans the unmapped 0x0C..0x0D
    assert refused.value.code == 2
    assert greedy.transactions == 2  # 03 block read, then the merged 04 block refused


def test_unknown_unit_on_tcp_is_a_gateway_exception_and_on_rtu_silence(tcp_meter, cable):
    host, port, face, _ = tcp_meter
    with ModbusTcpDriver(host, port, unit_id=9, timeout_s=TIMEOUT_S) as driver, \
            pytest.raises(DeviceError) as refused:
        driver.read(CHANNELS)
    assert refused.value.code == 11
    with ModbusRtuSimulator(cable.meter_path, devices={1: SimulatedDevice(face, CHANNELS)}), \
            ModbusRtuBus(cable.device_path, timeout_s=TIMEOUT_S) as bus, \
            pytest.raises(NoResponse):
        bus.driver(9).read(CHANNELS)


# --------------------------------------------------------------------------- line faults


def test_no_answer_is_no_response_then_the_driver_recovers(meter):
    driver, face, _ = meter
    face.faults.set(Fault.NO_ANSWER)
    started = time.monotonic()
    with pytest.raises(NoResponse, match="no answer"):
        driver.read(CHANNELS)
    assert TIMEOUT_S * 0.9 <= time.monotonic() - started < TIMEOUT_S * 4
    face.faults.clear()
    [sample] = driver.read(CHANNELS)
    assert_reads_faceplate(sample, face)


def test_slow_answer_beyond_the_timeout_is_no_response(meter):
    driver, face, _ = meter
    face.faults.slow_s = 0.5
    face.faults.set(Fault.SLOW_ANSWER)
    with pytest.raises(NoResponse):
        driver.read(CHANNELS)
    face.faults.clear()
    time.sleep(0.5)  # let the late answer pass, as a master waits out a slow meter
    [sample] = driver.read(CHANNELS)
    assert_reads_faceplate(sample, face)


def test_slow_answer_within_the_timeout_is_read(meter):
    driver, face, _ = meter
    face.faults.slow_s = 0.05
    face.faults.set(Fault.SLOW_ANSWER)
    started = time.monotonic()
    [sample] = driver.read(CHANNELS)
    assert time.monotonic() - started >= 2 * 0.05
    assert_reads_faceplate(sample, face)


def test_garbled_answer_is_a_checksum_error_on_rtu_and_a_frame_error_on_tcp(meter):
    driver, face, _ = meter
    face.faults.set(Fault.GARBLED)
    for _ in range(4):  # a different byte each time
        with pytest.raises(FrameError) as garbled:
            driver.read(CHANNELS)
        assert garbled.value.raw
        if isinstance(driver, ModbusRtuDriver):
            assert isinstance(garbled.value, ChecksumError)
    face.faults.clear()
    [sample] = driver.read(CHANNELS)
    assert_reads_faceplate(sample, face)


def test_tcp_retries_repeat_a_request_that_got_no_answer(tcp_meter):
    host, port, face, _ = tcp_meter
    face.faults.set(Fault.NO_ANSWER)
    with ModbusTcpDriver(host, port, timeout_s=0.1, retries=2) as driver:
        with pytest.raises(NoResponse):
            driver.read(CHANNELS)
        assert driver.transactions == 3
        face.faults.clear()
        driver.read(CHANNELS)
        assert driver.transactions == 3 + 3


def test_a_fault_that_strikes_some_requests_is_survived_with_retries(tcp_meter):
    host, port, face, _ = tcp_meter
    face.faults.rate = 0.3
    face.faults.set(Fault.GARBLED)
    with ModbusTcpDriver(host, port, timeout_s=0.1, retries=5) as driver:
        for _ in range(5):
            [sample] = driver.read(CHANNELS)
            assert_reads_faceplate(sample, face)
    assert driver.transactions > 10


# --------------------------------------------------------------------------- value faults


def test_tamper_sets_the_flag(meter):
    driver, face, _ = meter
    face.faults.set(Fault.TAMPER)
    [sample] = driver.read(CHANNELS)
    assert sample.flags == ("tamper",)


def test_stuck_backward_and_spike_are_visible(meter):
    driver, face, clock = meter
    [normal] = driver.read([TOTAL])
    face.faults.set(Fault.STUCK)
    [stuck] = driver.read([TOTAL])
    clock.now += 2
    [still] = driver.read([TOTAL])
    assert still.values[TOTAL.name] == stuck.values[TOTAL.name]
    face.faults.clear()
    [moving] = driver.read([TOTAL])
    assert moving.values[TOTAL.name].value > still.values[TOTAL.name].value
    face.faults.set(Fault.BACKWARD)
    [backward] = driver.read([TOTAL])
    assert backward.values[TOTAL.name].value < moving.values[TOTAL.name].value
    assert backward.values[TOTAL.name].value == expected(TOTAL, face)
    face.faults.clear()
    face.faults.set(Fault.SPIKE)
    [spike] = driver.read([TOTAL])
    assert spike.values[TOTAL.name].value >= moving.values[TOTAL.name].value + 100_000
    assert spike.values[TOTAL.name].value == expected(TOTAL, face)
    assert normal.values[TOTAL.name].value < moving.values[TOTAL.name].value


def test_rollover_wraps_to_zero():
    face, clock = faceplate("R1", Fault.ROLLOVER)
    with ModbusTcpSimulator(devices={1: SimulatedDevice(face, CHANNELS)}) as sim:
        host, port = sim.endpoint.rsplit(":", 1)
        with ModbusTcpDriver(host, int(port)) as driver:
            [top] = driver.read(CHANNELS)
            clock.now += 60  # sixty simulated hours: past the wrap
            [wrapped] = driver.read(CHANNELS)
    assert top.values[TOTAL.name].value > Decimal(999_000)
    assert wrapped.values[TOTAL.name].value < Decimal(1000)
    assert_reads_faceplate(wrapped, face)


# --------------------------------------------------------------------------- links


def test_closed_tcp_port_is_a_link_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = ModbusTcpDriver("127.0.0.1", port, timeout_s=TIMEOUT_S)
    with pytest.raises(LinkError, match=f"127.0.0.1:{port} unit 1"):
        driver.connect()
    with pytest.raises(LinkError):
        driver.read(CHANNELS)
    driver.close()
    driver.close()


def test_missing_serial_port_is_a_link_error():
    bus = ModbusRtuBus("/dev/ttyMETERHUB-NOPE", timeout_s=TIMEOUT_S)
    driver = bus.driver(1)
    with pytest.raises(LinkError, match="/dev/ttyMETERHUB-NOPE unit 1"):
        driver.connect()
    with pytest.raises(LinkError):
        driver.read(CHANNELS)
    bus.close()


def test_a_stopped_simulator_is_a_link_error_and_a_restarted_one_reads_again():
    face, _ = faceplate()
    sim = ModbusTcpSimulator(devices={1: SimulatedDevice(face, CHANNELS)})
    sim.start()
    port = sim.port
    driver = ModbusTcpDriver("127.0.0.1", port, timeout_s=TIMEOUT_S)
    driver.read(CHANNELS)
    sim.stop()
    sim.stop()
    with pytest.raises(LinkError):
        driver.read(CHANNELS)
    with ModbusTcpSimulator(port=port, devices={1: SimulatedDevice(face, CHANNELS)}):
        [sample] = driver.read(CHANNELS)
    assert_reads_faceplate(sample, face)
    driver.close()


# --------------------------------------------------------------------------- fleet scale


def test_many_tcp_simulators_share_one_loop_thread():
    face, _ = faceplate()
    before = threading.active_count()
    sims = [ModbusTcpSimulator(devices={1: SimulatedDevice(face, CHANNELS)}) for _ in range(50)]
    try:
        for sim in sims:
            sim.start()
        assert threading.active_count() <= before + 1
        assert len({sim.port for sim in sims}) == 50
        for sim in sims[::10]:
            with ModbusTcpDriver("127.0.0.1", sim.port) as driver:
                assert_reads_faceplate(driver.read(CHANNELS)[0], face)
    finally:
        for sim in sims:
            sim.stop()
    assert threading.active_count() <= before
