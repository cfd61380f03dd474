"""Whatever a meter or a profile throws at the Modbus decoder and planner: only typed errors."""

import contextlib
import socket
import threading
import time
from decimal import Decimal

import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.channels import ByteOrder, DataType, ModbusChannel, ModbusSettings, Role
from protocols.driver import MeterError
from protocols.modbus_decode import decode_channel
from protocols.modbus_driver import ModbusRtuBus, ModbusTcpDriver
from protocols.modbus_plan import plan_blocks
from simulators.serial_link import VirtualCable

scales = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.sampled_from([Decimal("1E+999"), Decimal("1E-999"), Decimal(0), Decimal("-0.5")]),
)
channels = st.builds(
    ModbusChannel,
    name=st.text(min_size=1, max_size=8),
    address=st.integers(-5, 70000),
    function=st.integers(0, 10),
    data_type=st.sampled_from(list(DataType)),
    byte_order=st.sampled_from(list(ByteOrder)),
    word_order=st.sampled_from(list(ByteOrder)),
    scale=scales,
    role=st.sampled_from([Role.VALUE, Role.STATUS, Role.IDENTITY]),
    flags=st.dictionaries(st.integers(0, 70), st.text(max_size=5), max_size=3),
)
registers = st.lists(
    st.one_of(st.integers(0, 0xFFFF), st.integers(-(2**20), 2**20)), max_size=6
)


@settings(max_examples=400)
@given(channels, registers)
def test_decoder_raises_only_meter_errors(channel, words):
    try:
        result = decode_channel(channel, words)
    except MeterError:
        return
    assert isinstance(result, (Decimal, tuple))
    if isinstance(result, Decimal):
        assert result.is_finite()


@settings(max_examples=300)
@given(channels, st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4),
       st.integers(0, 63), st.integers(1, 255))
def test_a_mutated_answer_decodes_or_fails_typed(channel, words, bit, mask):
    """A valid answer with one byte damaged, as line noise leaves it."""
    damaged = list(words[: channel.count])
    position = bit % len(damaged)
    damaged[position] ^= mask << (8 * (bit % 2))
    with contextlib.suppress(MeterError):
        decode_channel(channel, damaged)


@settings(max_examples=300)
@given(st.lists(channels, max_size=12),
       st.builds(ModbusSettings, merge=st.booleans(), max_block=st.integers(-3, 200),
                 max_gap=st.integers(-3, 200)))
def test_planner_raises_only_meter_errors(layout, modbus):
    try:
        blocks = plan_blocks(layout, modbus)
    except MeterError:
        return
    for block in blocks:
        assert 1 <= block.count <= min(modbus.max_block, 125)
        assert block.address >= 0
        assert block.end <= 0x10000


# --------------------------------------------------------------------------- on the wire


def crc16_modbus(frame):
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return frame + crc.to_bytes(2, "little")


class RawMeter:
    """A socket or serial 'meter' that answers each request with ``self.reply(request)``."""

    def __init__(self):
        self.reply = lambda request: b""
        self.stopped = threading.Event()

    def serve_tcp(self, listener):
        listener.settimeout(0.05)
        while not self.stopped.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.05)
                while not self.stopped.is_set():
                    try:
                        request = conn.recv(260)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not request:
                        break
                    with contextlib.suppress(OSError):
                        conn.sendall(self.reply(request))

    def serve_serial(self, port):
        while not self.stopped.is_set():
            request = port.read(8)
            if len(request) == 8:
                port.write(self.reply(request))


CHANNEL = ModbusChannel(name="energy_import_kwh", address=0x48, function=4,
                        data_type=DataType.FLOAT32, word_order=ByteOrder.LITTLE)
mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 40), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 40), st.just(0)),
    st.tuples(st.just("junk"), st.binary(max_size=12), st.just(0)),
    st.tuples(st.just("none"), st.just(0), st.just(0)),
)


def mutate(frame, mutation):
    kind, where, mask = mutation
    if kind == "flip" and frame:
        position = where % len(frame)
        return frame[:position] + bytes([frame[position] ^ mask]) + frame[position + 1 :]
    if kind == "cut":
        return frame[: where % (len(frame) + 1)]
    if kind == "junk":
        return frame + where
    return frame


def read_or_typed_error(driver):
    try:
        [sample] = driver.read([CHANNEL])
    except MeterError:
        return None
    return sample.values[CHANNEL.name].value


def test_tcp_driver_meets_damaged_answers_with_typed_errors():
    meter = RawMeter()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = threading.Thread(target=meter.serve_tcp, args=(listener,), daemon=True)
        server.start()
        driver = ModbusTcpDriver("127.0.0.1", listener.getsockname()[1], timeout_s=0.05)

        @settings(max_examples=40, deadline=None)
        @given(st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), mutations,
               st.sampled_from([4, 0x84, 3]))
        def check(registers, mutation, function):
            def reply(request):
                tid, unit = request[:2], request[6:7]
                pdu = bytes([function]) + (
                    bytes([2]) if function & 0x80 else
                    bytes([4]) + b"".join(r.to_bytes(2, "big") for r in registers)
                )
                frame = tid + b"\0\0" + (len(pdu) + 1).to_bytes(2, "big") + unit + pdu
                return mutate(frame, mutation)

            meter.reply = reply
            value = read_or_typed_error(driver)
            if value is not None:
                assert function == 4  # only an answer to the question asked is read

        try:
            check()
        finally:
            meter.stopped.set()
            driver.close()
            server.join()


def test_rtu_driver_meets_damaged_answers_with_typed_errors():
    meter = RawMeter()
    with VirtualCable() as cable, serial.Serial(cable.meter_path, 9600, timeout=0.05) as port, \
            ModbusRtuBus(cable.device_path, timeout_s=0.05) as bus:
        server = threading.Thread(target=meter.serve_serial, args=(port,), daemon=True)
        server.start()
        driver = bus.driver(1)

        @settings(max_examples=40, deadline=None)
        @given(st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), mutations,
               st.sampled_from([4, 0x84, 3]))
        def check(registers, mutation, function):
            body = bytes([1, function]) + (
                bytes([2]) if function & 0x80 else
                bytes([4]) + b"".join(r.to_bytes(2, "big") for r in registers)
            )
            frame = mutate(crc16_modbus(body), mutation)
            meter.reply = lambda request: frame
            value = read_or_typed_error(driver)
            if value is not None:
                assert function == 4  # only an answer to the question asked is read
            time.sleep(0.01)  # let a long junk tail drain before the next request

        try:
            check()
        finally:
            meter.stopped.set()
            server.join()
