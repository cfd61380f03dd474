"""Whatever bytes arrive on an optical port, the IEC parsers answer with a frame or a typed error.

Random bytes, bytes from the protocol's own alphabet, and valid frames with
bytes flipped, dropped, inserted or cut all go into every parser: the only
exceptions allowed are :class:`FrameError` and its :class:`ChecksumError`
(both :class:`MeterError`), and every parse finishes quickly.
"""

import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.channels import ObisChannel, Role
from protocols.driver import ChecksumError, FrameError, MeterError, ProfileError
from protocols.iec62056_21 import (
    AckOptionSelectMessage,
    DataBlock,
    DataLine,
    DataSet,
    DataValue,
    IdentificationMessage,
    RequestMessage,
    bcc,
    parse_date,
    parse_decimal,
    parse_hex,
    parse_time,
    parse_timestamp,
)
from protocols.iec_driver import readout_sample

FAST = settings(max_examples=300, deadline=timedelta(milliseconds=250),
                suppress_health_check=[HealthCheck.too_slow])
VIENNA = ZoneInfo("Europe/Vienna")

BYTE_PARSERS = {
    "request": RequestMessage.from_bytes,
    "identification": IdentificationMessage.from_bytes,
    "option select": AckOptionSelectMessage.from_bytes,
    "data block": DataBlock.from_bytes,
    "data line": DataLine.from_bytes,
    "data set": DataSet.from_bytes,
}
TEXT_PARSERS = {
    "decimal": parse_decimal,
    "hex": parse_hex,
    "date": parse_date,
    "time": parse_time,
    "timestamp": lambda text: parse_timestamp(text, VIENNA),
}

# Bytes that matter to the grammar, so random input reaches past the first check.
ALPHABET = b"/?!()*\\\r\n\x02\x03\x06\x15\x00 .:-+0123456789ABCEFSWkKWhvar\x7f\x80\xff"
protocolish = st.lists(st.sampled_from(list(ALPHABET)), max_size=300).map(bytes)
VALID_FRAMES = [
    RequestMessage().to_bytes(),
    RequestMessage("12345678").to_bytes(),
    IdentificationMessage("LGZ", "5", "ZMD3104407.B32", "2").to_bytes(),
    AckOptionSelectMessage("5").to_bytes(),
    DataBlock((
        DataLine((DataSet("F.F", (DataValue("00000000"),)),)),
        DataLine((DataSet("1.8.0", (DataValue("001234.567", "kWh"),)),
                  DataSet("1.8.1", (DataValue("000100.000", "kWh"),)))),
        DataLine((DataSet("1.6.0", (DataValue("0012.34", "kW"), DataValue("2611011215"))),)),
        DataLine((DataSet("0.9.1", (DataValue("103000"),)),)),
        DataLine((DataSet("0.9.2", (DataValue("261101"),)),)),
        DataLine((DataSet("C.1.0", (DataValue(""),)),)),
    )).to_bytes(),
]


def assert_typed(parse, data):
    try:
        parse(data)
    except MeterError as error:
        assert isinstance(error, FrameError), type(error)


@FAST
@given(st.sampled_from(sorted(BYTE_PARSERS)), st.binary(max_size=400) | protocolish)
def test_random_bytes_give_a_message_or_a_frame_error(name, data):
    assert_typed(BYTE_PARSERS[name], data)


@FAST
@given(st.sampled_from(sorted(TEXT_PARSERS)), st.text(max_size=40)
       | st.text(st.sampled_from("0123456789 :-+.SWabcdef"), max_size=16))
def test_random_text_gives_a_value_or_a_frame_error(name, text):
    assert_typed(TEXT_PARSERS[name], text)


@st.composite
def mutated_frames(draw):
    data = bytearray(draw(st.sampled_from(VALID_FRAMES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "drop", "insert", "cut", "repeat"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "drop" and data:
            del data[position]
        elif kind == "insert":
            data.insert(position, draw(st.sampled_from(list(ALPHABET))))
        elif kind == "cut":
            del data[position:]
        else:
            data[position:position] = data[position : position + draw(st.integers(1, 8))]
    return bytes(data)


@FAST
@given(st.sampled_from(sorted(BYTE_PARSERS)), mutated_frames())
def test_mutated_frames_give_a_message_or_a_frame_error(name, data):
    assert_typed(BYTE_PARSERS[name], data)


@FAST
@given(st.data())
def test_any_corrupted_byte_under_the_bcc_is_a_checksum_error(data):
    frame = VALID_FRAMES[-1]
    position = data.draw(st.integers(1, len(frame) - 3), label="position")  # after STX, before ETX
    mask = data.draw(st.integers(1, 127), label="mask")
    corrupted = bytearray(frame)
    corrupted[position] ^= mask
    with pytest.raises(ChecksumError):
        DataBlock.from_bytes(bytes(corrupted))


@FAST
@given(
    mutated_frames().filter(lambda data: data[:1] == b"\x02") | st.sampled_from(VALID_FRAMES[-1:]),
    st.lists(st.tuples(st.sampled_from(["F.F", "1.8.0", "1.6.0", "0.9.1", "0.9.2", "C.1.0", "x"]),
                       st.sampled_from(list(Role)), st.integers(0, 2)), max_size=6),
)
def test_readouts_map_to_a_sample_or_a_typed_error(data, specs):
    try:
        block = DataBlock.from_bytes(data[:-1] + bytes([bcc(data[1:-1])]))
    except FrameError:
        return
    channels = [ObisChannel(name=f"c{index}", unit="kWh", code=code, role=role, group=group)
                for index, (code, role, group) in enumerate(specs)]
    try:
        readout_sample(block, channels, zone=VIENNA)
    except MeterError as error:
        assert isinstance(error, ProfileError), type(error)


@pytest.mark.parametrize("data", [
    b"\x02" + b"(" * 2_000_000 + b"!\r\n\x03\x00",
    b"\x02" + b"1.8.0(1)" * 250_000 + b"\r\n!\r\n\x03\x00",
    b"\x02" + b"1.8.0(000001.000*kWh)\r\n" * 100_000 + b"!\r\n\x03",
    b"/" + b"\\" * 2_000_000 + b"\r\n",
    b"/?" + b"1" * 2_000_000 + b"!\r\n",
])
def test_megabytes_of_hostile_input_end_quickly(data):
    started = time.monotonic()
    for parse in BYTE_PARSERS.values():
        assert_typed(parse, data)
        assert_typed(parse, data[:-1] + bytes([bcc(data[1:-1])]))
    # Linear parsing takes about a second here; anything quadratic in 2 MB never ends.
    # The bound only has to tell those apart, on a loaded machine too.
    assert time.monotonic() - started < 60
