"""Decoding Modbus registers: every type × byte order × word order, exact scale, shortest floats.

The expected registers come from ``struct`` formats chosen per order (a
little-endian pack for a fully swapped layout, and so on), not from any
word-splitting code of the decoder or the simulator.
"""

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from protocols.channels import ByteOrder, DataType, ModbusChannel, Role
from protocols.driver import FrameError, ProfileError
from protocols.modbus_decode import (
    decode_channel,
    decode_status,
    decode_value,
    float32_decimal,
    float64_decimal,
)

BIG, LITTLE = ByteOrder.BIG, ByteOrder.LITTLE
FORMATS = {
    DataType.INT16: "h", DataType.UINT16: "H", DataType.INT32: "i", DataType.UINT32: "I",
    DataType.INT64: "q", DataType.UINT64: "Q", DataType.FLOAT32: "f", DataType.FLOAT64: "d",
}
ORDERS = [(BIG, BIG), (BIG, LITTLE), (LITTLE, BIG), (LITTLE, LITTLE)]


def wire(data_type, number, byte_order, word_order):
    """Registers as a meter with these orders sends them, straight from struct."""
    fmt = FORMATS[data_type]
    words = struct.calcsize(fmt) // 2
    if byte_order == word_order:  # fully big- or fully little-endian value, read as registers
        endian = "<" if byte_order is LITTLE else ">"
        return list(struct.unpack(">" + "H" * words, struct.pack(endian + fmt, number)))
    big = struct.pack(">" + fmt, number)
    if word_order is LITTLE:  # CDAB: big-endian registers, least significant first
        return list(reversed(struct.unpack(">" + "H" * words, big)))
    return list(struct.unpack("<" + "H" * words, big))  # BADC: each register byte-swapped


def chan(data_type, byte_order=BIG, word_order=BIG, scale=Decimal(1), **kw):
    return ModbusChannel(name="x", address=0, data_type=data_type, byte_order=byte_order,
                         word_order=word_order, scale=scale, **kw)


def shortest_float32_by_search(number):
    """Fewest significant digits whose decimal reads back as the same float32 (a brute oracle)."""
    bits = struct.pack(">f", number)
    for digits in range(1, 10):
        text = f"{number:.{digits}g}"
        try:
            candidate = struct.pack(">f", float(text))
        except OverflowError:  # rounded past the largest float32 (3.4028e38): not it
            continue
        if candidate == bits:
            return Decimal(text)
    raise AssertionError(number)


def significant_digits(value):
    return len(value.normalize().as_tuple().digits)


# --------------------------------------------------------------------------- known layouts


@pytest.mark.parametrize(
    ("byte_order", "word_order", "registers"),
    [
        (BIG, BIG, [0x449A, 0x522B]),        # ABCD
        (BIG, LITTLE, [0x522B, 0x449A]),     # CDAB, the common "swapped" float
        (LITTLE, BIG, [0x9A44, 0x2B52]),     # BADC
        (LITTLE, LITTLE, [0x2B52, 0x9A44]),  # DCBA
    ],
)
def test_float32_layouts_give_the_meters_decimal(byte_order, word_order, registers):
    value = decode_value(chan(DataType.FLOAT32, byte_order, word_order), registers)
    assert value == Decimal("1234.5677")
    assert str(value) == "1234.5677"  # not 1234.5677490234375


def test_int32_little_word_order_with_scale():
    channel = chan(DataType.INT32, word_order=LITTLE, scale=Decimal("0.1"))
    assert decode_value(channel, [0x5678, 0x1234]) == Decimal("30541989.6")
    assert str(decode_value(channel, [0xFFFF, 0xFFFF])) == "-0.1"


def test_uint64_scale_is_exact_at_the_top_of_the_range():
    channel = chan(DataType.UINT64, scale=Decimal("0.01"))
    assert str(decode_value(channel, [0xFFFF] * 4)) == "184467440737095516.15"


def test_float_times_scale_is_exact_and_positional():
    channel = chan(DataType.FLOAT32, scale=Decimal("0.001"))
    assert str(decode_value(channel, wire(DataType.FLOAT32, 100.0, BIG, BIG))) == "0.100"
    assert str(decode_value(chan(DataType.FLOAT32), wire(DataType.FLOAT32, 3e6, BIG, BIG))) \
        == "3000000"


@pytest.mark.parametrize("data_type", [DataType.FLOAT32, DataType.FLOAT64])
@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_frame_errors(data_type, number):
    with pytest.raises(FrameError, match="not a meter reading"):
        decode_value(chan(data_type), wire(data_type, number, BIG, BIG))


def test_zero_and_negative_zero_are_zero():
    for number in (0.0, -0.0):
        assert decode_value(chan(DataType.FLOAT32), wire(DataType.FLOAT32, number, BIG, BIG)) == 0
        assert decode_value(chan(DataType.FLOAT64), wire(DataType.FLOAT64, number, BIG, BIG)) == 0


@pytest.mark.parametrize("registers", [[1], [1, 2, 3], []])
def test_wrong_register_count_is_a_frame_error(registers):
    with pytest.raises(FrameError, match="needs 2 registers"):
        decode_value(chan(DataType.UINT32), registers)


@pytest.mark.parametrize("registers", [[0x10000], [-1]])
def test_a_register_beyond_16_bits_is_a_frame_error(registers):
    with pytest.raises(FrameError, match="16-bit"):
        decode_value(chan(DataType.UINT16), registers)


def test_status_channel_gives_flag_names_of_the_unsigned_bits():
    channel = chan(DataType.INT16, role=Role.STATUS, flags={3: "tamper", 15: "battery_low"})
    assert decode_status(channel, [0b1000]) == ("tamper",)
    assert decode_channel(channel, [0x8009]) == ("battery_low", "status_bit_0", "tamper")
    assert decode_channel(channel, [0]) == ()


def test_a_float_status_channel_is_a_profile_error():
    with pytest.raises(ProfileError):
        decode_status(chan(DataType.FLOAT32, role=Role.STATUS), [0, 0])


def test_a_scale_that_is_not_finite_is_a_profile_error():
    with pytest.raises(ProfileError, match="scale"):
        decode_value(chan(DataType.UINT16, scale=Decimal("NaN")), [1])


def test_shortest_float32_at_the_edges():
    assert float32_decimal(struct.unpack(">f", bytes.fromhex("3DCCCCCD"))[0]) == Decimal("0.1")
    assert float32_decimal(struct.unpack(">f", bytes.fromhex("00000001"))[0]) == Decimal("1E-45")
    top = float32_decimal(struct.unpack(">f", bytes.fromhex("7F7FFFFF"))[0])
    assert top == Decimal("3.4028235E+38")
    assert float64_decimal(0.1) == Decimal("0.1")


# --------------------------------------------------------------------------- properties

INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1), DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1), DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1), DataType.UINT64: (0, 2**64 - 1),
}
SCALES = st.sampled_from([Decimal(1), Decimal("0.1"), Decimal("0.01"), Decimal("0.001"),
                          Decimal(10), Decimal("2.5")])


@st.composite
def integer_cases(draw):
    data_type = draw(st.sampled_from(list(INT_RANGES)))
    low, high = INT_RANGES[data_type]
    return data_type, draw(st.integers(low, high)), draw(st.sampled_from(ORDERS)), draw(SCALES)


@given(integer_cases())
def test_integers_round_trip_in_every_order_with_exact_scale(case):
    data_type, number, (byte_order, word_order), scale = case
    registers = wire(data_type, number, byte_order, word_order)
    value = decode_value(chan(data_type, byte_order, word_order, scale), registers)
    assert value == Decimal(number) * scale
    assert value.as_tuple().exponent <= 0


finite_float32 = st.integers(0, 2**32 - 1).filter(lambda b: (b >> 23) & 0xFF != 0xFF)


@example(2_139_093_445, (ByteOrder.BIG, ByteOrder.BIG))  # near the largest float32
@given(finite_float32, st.sampled_from(ORDERS))
def test_float32_decodes_to_the_shortest_decimal_that_round_trips(bits, orders):
    number = struct.unpack(">f", bits.to_bytes(4, "big"))[0]
    byte_order, word_order = orders
    value = decode_value(chan(DataType.FLOAT32, byte_order, word_order),
                         wire(DataType.FLOAT32, number, byte_order, word_order))
    if number == 0:
        assert value == 0
        return
    assert struct.pack(">f", float(value)) == struct.pack(">f", number)
    assert significant_digits(value) <= significant_digits(shortest_float32_by_search(number))


@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(ORDERS), SCALES)
def test_float64_decodes_to_its_repr_times_scale(number, orders, scale):
    byte_order, word_order = orders
    value = decode_value(chan(DataType.FLOAT64, byte_order, word_order, scale),
                         wire(DataType.FLOAT64, number, byte_order, word_order))
    assume(number != 0)
    assert value == Decimal(repr(number)) * scale


def test_powers_of_two_have_their_shortest_decimal():
    """The rounding interval is lopsided at a power of two; check every one of them."""
    for exponent in range(1, 255):
        number = struct.unpack(">f", (exponent << 23).to_bytes(4, "big"))[0]
        value = float32_decimal(number)
        assert struct.pack(">f", float(value)) == struct.pack(">f", number)
        assert significant_digits(value) <= significant_digits(shortest_float32_by_search(number))
