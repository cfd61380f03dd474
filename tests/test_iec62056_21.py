"""IEC 62056-21 messages: frames round-trip, real meter frames parse, BCC and values are exact."""

import string
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.driver import ChecksumError, FrameError
from protocols.iec62056_21 import (
    AckOptionSelectMessage,
    DataBlock,
    DataLine,
    DataSet,
    DataValue,
    IdentificationMessage,
    RequestMessage,
    baud_char,
    baud_of,
    bcc,
    parse_date,
    parse_decimal,
    parse_hex,
    parse_time,
    parse_timestamp,
)

VIENNA = ZoneInfo("Europe/Vienna")

# A Logarex readout as published with its BCC (0x67), covering the usual OBIS forms.
LOGAREX_BLOCK = (
    b"1-0:96.1.0*255(001LOG0065282495)\r\n"
    b"1-0:1.8.0*255(015882.6927*kWh)\r\n"
    b"1-0:2.8.0*255(000219.4882*kWh)\r\n"
    b"1-0:16.7.0*255(000028*W)\r\n"
    b"1-0:32.7.0*255(235.2*V)\r\n"
    b"1-0:52.7.0*255(235.8*V)\r\n"
    b"1-0:72.7.0*255(237.1*V)\r\n"
    b"1-0:31.7.0*255(000.90*A)\r\n"
    b"1-0:51.7.0*255(002.28*A)\r\n"
    b"1-0:71.7.0*255(001.85*A)\r\n"
    b"1-0:81.7.1*255(117*deg)\r\n"
    b"1-0:81.7.2*255(242*deg)\r\n"
    b"1-0:81.7.4*255(032*deg)\r\n"
    b"1-0:81.7.15*255(051*deg)\r\n"
    b"1-0:81.7.26*255(073*deg)\r\n"
    b"1-0:14.7.0*255(49.9*Hz)\r\n"
    b"1-0:1.8.0*96(00019.3*kWh)\r\n"
    b"1-0:1.8.0*97(00158.7*kWh)\r\n"
    b"1-0:1.8.0*98(01074.7*kWh)\r\n"
    b"1-0:1.8.0*99(09027.4*kWh)\r\n"
    b"1-0:1.8.0*100(15882.6*kWh)\r\n"
    b"1-0:0.2.0*255(ver.03,432F,20170504)\r\n"
    b"1-0:96.90.2*255(0F66)\r\n"
    b"1-0:97.97.0*255(00000000)\r\n"
)
LOGAREX_FRAME = b"\x02" + LOGAREX_BLOCK + b"!\r\n\x03\x67"


def _history(code, value, periods=16):
    """A ZMD billing-period history: one stored value, then empty periods."""
    stored = f"1-1:{code}*01({value})\r\n".encode()
    empty = b"(00.000)(0000000000)" if code.endswith(".6.0") else b"(0000000.0)"
    return stored + (f"1-1:{code}*00".encode() + empty + b"\r\n") * periods


# A Landis+Gyr ZMD310 readout as published; its BCC happens to be LF (0x0A).
ZMD_FRAME = (
    b"\x021-1:F.F(00000000)\r\n"
    b"1-1:0.0.0(001LGZ0056859504)\r\n"
    b"1-1:0.9.1(185532)\r\n"
    b"1-1:0.9.2(210410)\r\n"
    b"1-1:0.1.0(01)\r\n"
    b"1-1:0.1.2*01(2104010000)\r\n" + b"1-1:0.1.2*00(0000000000)\r\n" * 14
    + b"1-1:1.5.0(00.030*kW)\r\n"
    b"1-1:1.6.0(10.102*kW)(2104070015)\r\n"
    + b"1-1:1.6.0*01(06.130)(2101281415)\r\n" + b"1-1:1.6.0*00(00.000)(0000000000)\r\n" * 16
    + b"1-1:1.8.0(0000094.5*kWh)\r\n" + _history("1.8.0", "0000010.2")
    + b"1-1:2.5.0(00.000*kW)\r\n"
    b"1-1:2.6.0(09.293*kW)(2104021300)\r\n"
    + b"1-1:2.6.0*01(09.301)(2103301415)\r\n" + b"1-1:2.6.0*00(00.000)(0000000000)\r\n" * 16
    + b"1-1:2.8.0(0000293.9*kWh)\r\n" + _history("2.8.0", "0000106.8")
    + b"1-1:5.8.0(0000001.1*kvarh)\r\n" + _history("5.8.0", "0000001.1")
    + b"1-1:6.8.0(0000000.3*kvarh)\r\n" + _history("6.8.0", "0000000.3")
    + b"1-1:7.8.0(0000036.8*kvarh)\r\n" + _history("7.8.0", "0000008.8")
    + b"1-1:8.8.0(0000158.8*kvarh)\r\n" + _history("8.8.0", "0000029.5")
    + b"1-1:C.5(0000E0F0)\r\n"
    b"1-1:C.7.0(00000008)\r\n"
    b"1-1:C.7.1(00000009)\r\n"
    b"1-1:C.7.2(00000010)\r\n"
    b"1-1:C.7.3(00000010)\r\n"
    b"1-1:0.2.0(B40)\r\n"
    b"1-1:0.2.1(017)\r\n"
    b"1-1:0.2.8(7F42)\r\n"
    b"1-1:32.7.0(235.2*V)\r\n"
    b"1-1:52.7.0(235.0*V)\r\n"
    b"1-1:72.7.0(237.6*V)\r\n"
    b"1-1:31.7.0(003.54*A)\r\n"
    b"1-1:51.7.0(007.63*A)\r\n"
    b"1-1:71.7.0(003.81*A)\r\n"
    b"1-1:36.7.0(-000.82*kW)\r\n"
    b"1-1:56.7.0( 001.67*kW)\r\n"
    b"1-1:76.7.0(-000.81*kW)\r\n"
    b"1-1:16.7.0( 000.03*kW)\r\n"
    b"1-1:151.7.0(-000.05*kvar)\r\n"
    b"1-1:171.7.0(-000.51*kvar)\r\n"
    b"1-1:191.7.0(-000.37*kvar)\r\n"
    b"1-1:131.7.0(-000.95*kvar)\r\n"
    b"1-1:0.5.1.2(80.000*kW)\r\n"
    b"!\r\n\x03\n"
)


def frame(text: bytes) -> bytes:
    """``text`` (data lines and the end line) as a data message with a correct BCC."""
    covered = text + b"\x03"
    return b"\x02" + covered + bytes([bcc(covered)])


# --- strategies ------------------------------------------------------------------------

PRINTABLE = [chr(code) for code in range(0x20, 0x7F)]


def chars(exclude: str) -> st.SearchStrategy[str]:
    return st.sampled_from([char for char in PRINTABLE if char not in exclude])


data_values = st.builds(
    DataValue, st.text(chars("()*/!"), max_size=12), st.none() | st.text(chars("()/!"), max_size=6)
)


def data_sets(addresses: st.SearchStrategy[str]) -> st.SearchStrategy[DataSet]:
    return st.builds(DataSet, addresses, st.lists(data_values, min_size=1, max_size=3).map(tuple))


data_lines = st.builds(
    lambda first, rest: DataLine((first, *rest)),
    data_sets(st.text(chars("()/!"), max_size=12)),
    st.lists(data_sets(st.text(chars("()/!"), min_size=1, max_size=12)), max_size=3),
) | st.just(DataLine(()))
data_blocks = st.lists(data_lines, max_size=8).map(lambda lines: DataBlock(tuple(lines)))


@st.composite
def identifications(draw):
    enhanced = draw(st.none() | chars("/!"))
    text = draw(st.text(chars("/!"), max_size=16))
    if enhanced is None:
        text = text.lstrip("\\")
    return IdentificationMessage(
        draw(st.text(st.sampled_from(string.ascii_letters), min_size=3, max_size=3)),
        draw(chars("/!\\")), text, enhanced,
    )


requests = st.builds(RequestMessage, st.text(st.sampled_from(string.digits + string.ascii_letters
                                                              + " "), max_size=32))
acks = st.builds(
    AckOptionSelectMessage, st.sampled_from(string.digits), st.sampled_from(string.digits),
    st.sampled_from(string.digits + string.ascii_uppercase),
)


# --- round trips ---------------------------------------------------------------------------


@given(requests)
def test_request_round_trips(message):
    assert RequestMessage.from_bytes(message.to_bytes()) == message


@given(identifications())
def test_identification_round_trips(message):
    assert IdentificationMessage.from_bytes(message.to_bytes()) == message


@given(acks)
def test_option_select_round_trips(message):
    assert AckOptionSelectMessage.from_bytes(message.to_bytes()) == message


@given(data_sets(st.text(chars("()/!"), min_size=1, max_size=12)))
def test_data_set_round_trips(data_set):
    assert DataSet.from_bytes(data_set.to_bytes()) == data_set


@given(data_lines)
def test_data_line_round_trips(line):
    assert DataLine.from_bytes(line.to_bytes()) == line


@given(data_blocks)
def test_data_block_round_trips(block):
    encoded = block.to_bytes()
    assert DataBlock.from_bytes(encoded) == block
    assert encoded[-1] == bcc(encoded[1:-1])


# --- BCC -------------------------------------------------------------------------------


def test_bcc_of_known_meter_frames():
    assert bcc(LOGAREX_FRAME[1:-1]) == 0x67
    assert bcc(ZMD_FRAME[1:-1]) == 0x0A
    assert bcc(b"") == 0


@given(st.binary(max_size=64))
def test_bcc_is_the_seven_bit_xor_and_checks_itself(data):
    expected = 0
    for byte in data:
        expected ^= byte
    assert bcc(data) == expected & 0x7F
    seven_bit = bytes(byte & 0x7F for byte in data)
    assert bcc(seven_bit + bytes([bcc(seven_bit)])) == 0


# --- sign-on messages ----------------------------------------------------------------


def test_request_with_and_without_address():
    assert RequestMessage().to_bytes() == b"/?!\r\n"
    assert RequestMessage("12345678").to_bytes() == b"/?12345678!\r\n"
    assert RequestMessage.from_bytes(b"/?12345678!\r\n").address == "12345678"


@pytest.mark.parametrize("address", ["a/b", "x!", "1" * 33, "ü"])
def test_request_address_outside_the_standard_is_refused(address):
    with pytest.raises(ValueError, match="address"):
        RequestMessage(address)


@pytest.mark.parametrize("frame_bytes", [b"/?!\r", b"/?!\n", b"?!\r\n", b"/?1/2!\r\n", b"/?\r\n"])
def test_malformed_requests(frame_bytes):
    with pytest.raises(FrameError):
        RequestMessage.from_bytes(frame_bytes)


@pytest.mark.parametrize(("raw", "manufacturer", "char", "enhanced", "ident"), [
    (b"/LGZ5\\2ZMD3104107.B40\r\n", "LGZ", "5", "2", "ZMD3104107.B40"),
    (b"/ISk5MT174-0001\r\n", "ISk", "5", None, "MT174-0001"),
    (b"/ITR5EM214\r\n", "ITR", "5", None, "EM214"),
    (b"/ABB5\\@V9.21\r\n", "ABB", "5", "@", "V9.21"),
    (b"/ESY5Q3DA1004 V3.02\r\n", "ESY", "5", None, "Q3DA1004 V3.02"),
    (b"/LGZEZMD310\r\n", "LGZ", "E", None, "ZMD310"),
])
def test_identifications_of_real_meters(raw, manufacturer, char, enhanced, ident):
    message = IdentificationMessage.from_bytes(raw)
    assert (message.manufacturer, message.baud_char, message.enhanced, message.identification) == (
        manufacturer, char, enhanced, ident)
    assert message.to_bytes() == raw


def test_reaction_time_follows_the_case_of_the_third_letter():
    assert IdentificationMessage("LGZ", "5", "ZMD").reaction_time_s == pytest.approx(0.2)
    assert IdentificationMessage("ISk", "5", "MT174").reaction_time_s == pytest.approx(0.02)


@pytest.mark.parametrize(("char", "mode_c", "mode_b"), [
    ("0", 300, None), ("1", 600, None), ("2", 1200, None), ("3", 2400, None),
    ("4", 4800, None), ("5", 9600, None), ("6", 19200, None),
    ("A", None, 600), ("B", None, 1200), ("C", None, 2400), ("D", None, 4800),
    ("E", None, 9600), ("F", None, 19200), ("J", None, None), ("7", None, None),
])
def test_baud_characters(char, mode_c, mode_b):
    message = IdentificationMessage("LGZ", char, "ZMD")
    assert message.baud_for("C") == mode_c == baud_of(char, "C")
    assert message.baud_for("B") == mode_b
    assert message.baud_for("A") is None


def test_baud_char_picks_the_highest_rate_allowed():
    assert baud_char(9600, "C") == "5"
    assert baud_char(14400, "C") == "5"
    assert baud_char(300, "C") == "0"
    assert baud_char(115200, "C") == "6"
    assert baud_char(2400, "B") == "C"
    for baud, mode in ((200, "C"), (300, "B"), (9600, "A")):
        with pytest.raises(ValueError, match="no baud rate"):
            baud_char(baud, mode)


@pytest.mark.parametrize("raw", [
    b"/LG5ZMD\r\n", b"/LGZ\r\n", b"/L1Z5ZMD\r\n", b"/LGZ5\\\r\n", b"/LGZ5ZMD\n", b"LGZ5ZMD\r\n",
    b"/LGZ/ZMD\r\n", b"/LGZ5Z!D\r\n", b"/LGZ5\xc3\xa9\r\n",
])
def test_malformed_identifications(raw):
    with pytest.raises(FrameError):
        IdentificationMessage.from_bytes(raw)


def test_option_select_for_readout_programming_and_hdlc():
    assert AckOptionSelectMessage("5").to_bytes() == b"\x06050\r\n"
    assert AckOptionSelectMessage.from_bytes(b"\x06050\r\n").baud == 9600
    assert AckOptionSelectMessage.from_bytes(b"\x06051\r\n").mode == "1"
    assert AckOptionSelectMessage.from_bytes(b"\x06250\r\n").protocol == "2"
    assert AckOptionSelectMessage("9").baud is None
    for raw in (b"\x0605\r\n", b"\x15050\r\n", b"\x060500\r\n", b"\x06050\n\r", b"\x060x0\r\n"):
        with pytest.raises(FrameError):
            AckOptionSelectMessage.from_bytes(raw)


# --- data messages -------------------------------------------------------------------------


def test_logarex_readout_parses_exactly():
    block = DataBlock.from_bytes(LOGAREX_FRAME)
    assert block.to_bytes() == LOGAREX_FRAME
    energy = block.find("1-0:1.8.0*255")
    assert energy.values == (DataValue("015882.6927", "kWh"),)
    assert str(energy.values[0].decimal()) == "15882.6927"
    assert block.find("1-0:0.2.0*255").values[0].value == "ver.03,432F,20170504"
    assert block.find("1.8.0") is None
    assert len(list(block.sets)) == 24


def test_landis_gyr_zmd_readout_parses_exactly():
    block = DataBlock.from_bytes(ZMD_FRAME)
    assert block.to_bytes() == ZMD_FRAME
    demand = block.find("1-1:1.6.0")
    assert demand.values == (DataValue("10.102", "kW"), DataValue("2104070015"))
    assert parse_timestamp(demand.values[1].value, VIENNA) == datetime(2021, 4, 7, 0, 15,
                                                                        tzinfo=VIENNA)
    assert block.find("1-1:1.6.0*01").values[0].unit is None
    assert block.find("1-1:56.7.0").values[0].decimal() == Decimal("1.67")
    assert block.find("1-1:36.7.0").values[0].decimal() == Decimal("-0.82")
    assert parse_hex(block.find("1-1:F.F").values[0].value) == 0
    assert parse_date(block.find("1-1:0.9.2").values[0].value) == date(2021, 4, 10)
    assert parse_time(block.find("1-1:0.9.1").values[0].value) == time(18, 55, 32)


def test_several_sets_per_line_empty_values_and_units():
    raw = frame(b"1.8.1(000100.000*kWh)1.8.2(000020.500*kWh)\r\n"
                b"1.6.0(0012.34*kW)(2611011215)\r\n"
                b"C.1.0(12345678)\r\n"
                b"0.2.0()\r\n"
                b"C.7.0(5*)\r\n"
                b"\r\n"
                b"(001)(002)\r\n"
                b"!\r\n")
    block = DataBlock.from_bytes(raw)
    assert [data_set.address for data_set in block.sets] == [
        "1.8.1", "1.8.2", "1.6.0", "C.1.0", "0.2.0", "C.7.0", ""]
    assert block.lines[0].sets[1].values == (DataValue("000020.500", "kWh"),)
    assert block.find("1.6.0").values == (DataValue("0012.34", "kW"), DataValue("2611011215"))
    assert block.find("C.1.0").values == (DataValue("12345678"),)
    assert block.find("0.2.0").values == (DataValue(""),)
    assert block.find("C.7.0").values == (DataValue("5", ""),)
    assert block.lines[5] == DataLine(())
    assert block.to_bytes() == raw


def test_empty_readout():
    assert DataBlock.from_bytes(frame(b"!\r\n")) == DataBlock(())


@pytest.mark.parametrize("text", [
    b"1.8.0(1*kWh)\r\n",                 # no end line
    b"1.8.0(1*kWh)!\r\n",                # end line not on its own line
    b"1.8.0(1*kWh)\n!\r\n",              # bare LF
    b"1.8.0(1*kWh\r\n!\r\n",             # unclosed (
    b"1.8.0(1(2)*kWh)\r\n!\r\n",         # ( inside a value
    b"1.8.0(1)junk\r\n!\r\n",            # text after the last set
    b"1.8.0\r\n!\r\n",                   # address without a value
    b"1.8.0(1/2)\r\n!\r\n",              # forbidden character
    b"1.8.0(1\x01)\r\n!\r\n",            # control character
    b"1.8.0(\xb1)\r\n!\r\n",             # 8-bit byte: noise
    b"1.8.0(1)\r\n\x03!\r\n",            # a second ETX
])
def test_malformed_readouts_are_frame_errors(text):
    with pytest.raises(FrameError) as raised:
        DataBlock.from_bytes(frame(text))
    assert not isinstance(raised.value, ChecksumError)


def test_a_wrong_bcc_is_a_checksum_error():
    corrupted = LOGAREX_FRAME[:-1] + b"\x66"
    with pytest.raises(ChecksumError, match="BCC"):
        DataBlock.from_bytes(corrupted)
    flipped = LOGAREX_FRAME.replace(b"015882.6927", b"015882.6928")
    with pytest.raises(ChecksumError):
        DataBlock.from_bytes(flipped)


@pytest.mark.parametrize("raw", [b"", b"\x02", b"1.8.0(1)\r\n!\r\n\x03\x00", LOGAREX_FRAME[:-1],
                                 LOGAREX_FRAME + b"\r\n", b"\x02!\r\n\x03"])
def test_truncated_or_unframed_readouts(raw):
    with pytest.raises(FrameError):
        DataBlock.from_bytes(raw)


# --- values ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "exact"), [
    ("000123.456", "123.456"), ("0.000", "0.000"), ("  001.67", "1.67"), ("+000.8", "0.8"),
    ("-000.82", "-0.82"), ("00051206", "51206"), ("12.", "12"), (".5", "0.5"),
])
def test_decimals_stay_exactly_as_written(text, exact):
    assert str(parse_decimal(text)) == exact


@pytest.mark.parametrize("text", ["", "1e3", "NaN", "Infinity", "1_000", "--1", "1,5", "0x10",
                                  "12.3.4", "١٢"])
def test_not_decimals(text):
    with pytest.raises(FrameError):
        parse_decimal(text)


def test_status_words_are_hexadecimal():
    assert parse_hex("00000010") == 16
    assert parse_hex("0000E0F0") == 0xE0F0
    for text in ("", "0x10", "G0", "-1"):
        with pytest.raises(FrameError):
            parse_hex(text)


def test_timestamps_with_minutes_or_seconds_are_aware_in_the_meter_zone():
    assert parse_timestamp("2611011215", VIENNA) == datetime(2026, 11, 1, 12, 15, tzinfo=VIENNA)
    assert parse_timestamp("261101121530", VIENNA) == datetime(2026, 11, 1, 12, 15, 30,
                                                                tzinfo=VIENNA)
    assert parse_timestamp("2611011215", VIENNA).astimezone(UTC) == datetime(
        2026, 11, 1, 11, 15, tzinfo=UTC)
    assert parse_timestamp("1190711111500", UTC) == datetime(2019, 7, 11, 11, 15, tzinfo=UTC)


def test_summer_and_winter_marks_settle_the_repeated_hour():
    summer = parse_timestamp("261025023000S", VIENNA).astimezone(UTC)
    winter = parse_timestamp("261025023000W", VIENNA).astimezone(UTC)
    assert summer == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert winter == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2613011215", "2611321215", "2611012515", "261101121", "",
                                  "2611011215SS", "abcdefghij", "0000000000"])
def test_invalid_timestamps(text):
    with pytest.raises(FrameError):
        parse_timestamp(text, UTC)


def test_dates_and_times_in_the_forms_meters_write():
    assert parse_date("261101") == parse_date("1261101") == parse_date("26-11-01") == date(
        2026, 11, 1)
    assert parse_time("103000") == parse_time("10:30:00") == parse_time("1103000") == time(
        10, 30)
    for bad_date in ("261301", "2611", "26/11/01"):
        with pytest.raises(FrameError):
            parse_date(bad_date)
    for bad_time in ("246000", "1030", "10-30-00"):
        with pytest.raises(FrameError):
            parse_time(bad_time)
