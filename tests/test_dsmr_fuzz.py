"""Any bytes into the P1 parsers: a Telegram, FrameError or ChecksumError, never anything else."""

import contextlib
import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

from protocols.channels import ObisChannel, Role
from protocols.driver import FrameError, ProfileError
from protocols.dsmr_p1 import MAX_TELEGRAM_BYTES, Telegram, crc16_arc, parse_timestamp
from protocols.p1_driver import telegram_samples
from tests.test_dsmr_p1 import ISKRA_DSMR22, KAIFA_DSMR42, REAL_TELEGRAMS, SPEC_DSMR502

SEEDS = [*REAL_TELEGRAMS, SPEC_DSMR502]
# Pieces of real telegrams, so random sequences get past the first checks more often.
TOKENS = [
    b"/", b"/ISk5\\2MT382-1000", b"\r\n", b"\n", b"\r", b"!", b"(", b")", b"*", b"*kWh",
    b"*m3", b"1-0:1.8.1", b"0-1:24.2.1", b"0-0:1.0.0", b"1-0:99.97.0", b"0-1:24.3.0",
    b"0-0:96.7.19", b"0-0:96.1.1", b"12", b"0001.5", b"-3", b"261123120000W", b"161107190000",
    b"S", b"W", b"EF2F", b"4B38", b".", b":", b"-", b" ", b"\x00", b"\xff", b"\xb5",
]


def sign(data: bytes) -> bytes:
    """``data`` ended and signed: a correct CRC after its first line-start ``!`` (added if none)."""
    end = data.find(b"\n!")
    body = data[: end + 2] if end >= 0 else data + b"\r\n!"
    return body + f"{crc16_arc(body):04X}\r\n".encode()


def exercise(telegram: Telegram) -> None:
    """Every typed reading of every group; each may only fail with FrameError."""
    for line in telegram.lines:
        for index in range(-1, len(line.groups) + 1):
            for reading in (line.quantity, line.timestamp, line.octets, line.text, line.group):
                with contextlib.suppress(FrameError):
                    reading(index)
        with contextlib.suppress(FrameError):
            line.event_log()
    assert Telegram.from_bytes(telegram.to_bytes()) == telegram


def parse_anything(data: bytes) -> None:
    for verify in (True, False):
        try:
            telegram = Telegram.from_bytes(data, verify_crc=verify)
        except FrameError:  # ChecksumError is a FrameError
            continue
        exercise(telegram)


@settings(max_examples=300)
@given(st.binary(max_size=4096))
@example(b"/")
@example(b"/ABC5x\r\n\n!")
@example(b"/ABC5x\n!" + b"0" * 4)
def test_random_bytes(data):
    parse_anything(data)
    parse_anything(b"/" + data)
    parse_anything(sign(b"/ABC5x\r\n\r\n" + data + b"\r\n!"))


@settings(max_examples=300)
@given(st.lists(st.sampled_from(TOKENS) | st.binary(max_size=3), max_size=80).map(b"".join))
def test_token_soup(data):
    parse_anything(data)
    parse_anything(sign(b"/ISk5\\2MT382-1000\r\n\r\n" + data + b"\r\n!"))


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "duplicate"] * 3 + ["cut"]))
        if action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 12))]
        elif action == "insert":
            data[position:position] = draw(st.sampled_from(TOKENS) | st.binary(max_size=8))
        elif action == "duplicate":
            data[position:position] = data[position : position + draw(st.integers(1, 60))]
        else:
            del data[position:]
    return bytes(data)


@settings(max_examples=400)
@given(mutated(), st.booleans())
def test_mutated_real_telegrams(data, resign):
    parse_anything(sign(data) if resign else data)


@given(st.text(max_size=20), st.sampled_from(["Europe/Amsterdam", "Europe/Brussels", "UTC"]))
def test_timestamps_from_any_text(text, zone):
    with contextlib.suppress(FrameError):
        parse_timestamp(text, timezone=zone)


CHANNELS = [
    ObisChannel(name="energy_import_kwh_t1", unit="kWh", code="1-0:1.8.1"),
    ObisChannel(name="power_failures", unit="1", code="0-0:96.7.21"),
    ObisChannel(name="clock", code="0-0:1.0.0", role=Role.CLOCK),
    ObisChannel(name="serial", code="0-0:96.1.1", role=Role.IDENTITY),
    ObisChannel(name="volume_m3", unit="m3", code="0-1:24.2.1", group=1, mbus_channel=1),
    ObisChannel(name="gas_clock", code="0-1:24.2.1", role=Role.CLOCK, mbus_channel=1),
    ObisChannel(name="gas_id", code="0-1:96.1.0", role=Role.IDENTITY, mbus_channel=1),
    ObisChannel(name="status", code="0-0:96.14.0", role=Role.STATUS),
]


@settings(max_examples=300)
@given(mutated())
def test_mutated_telegrams_into_the_sample_mapping(data):
    try:
        telegram = Telegram.from_bytes(sign(data))
    except FrameError:
        return
    with contextlib.suppress(FrameError, ProfileError):
        telegram_samples(telegram, CHANNELS)


def test_the_largest_inputs_are_refused_or_parsed_quickly():
    started = time.monotonic()
    for filler in (b"(" * MAX_TELEGRAM_BYTES, b"1-0:1.8.1" * 2000, b"()" * 8000, b"\n" * 16000):
        parse_anything(sign(b"/ISk5\\2MT382-1000\r\n" + filler[:16000] + b"\r\n!"))
        parse_anything(b"/" + filler * 4)
    parse_anything(sign(KAIFA_DSMR42.replace(b"1-0:1.8.1(", b"1-0:1.8.1(" + b"9" * 15000)))
    parse_anything(ISKRA_DSMR22.replace(b"(00001.001)\r\n", b"(00001.001)\r\n" * 1000))
    # A fraction of a second when linear; the bound only has to catch a blow-up, on a
    # loaded machine too.
    assert time.monotonic() - started < 20
