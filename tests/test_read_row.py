"""read_row: ingest's fast parse agrees with decode_read on every valid read, and fails typed."""

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.read_row import read_row
from protocols.canonical import decode_read
from protocols.chain import ChainTip, read_hash, sign_and_chain
from protocols.errors import InvalidFieldError, MalformedReadError, MissingFieldError
from protocols.scalars import format_decimal
from protocols.signing import Signer
from tests.readings import reading, reads

SIGNER = Signer.generate()
RECEIVED = datetime(2026, 11, 23, 6, 0, 5, tzinfo=UTC)
FIELDS = ("clock", "collected_at", "collector", "flags", "key_id", "meter", "prev_hash",
          "read_at", "seq", "source", "v", "values")


def signed(read):
    """``read`` placed at its seq after its prev_hash, as sign_and_chain seals it."""
    [sealed], _ = sign_and_chain([read], signer=SIGNER, collector=read.collector,
                                 after=ChainTip(read.seq - 1, read.prev_hash))
    return sealed


def valid_bytes(n=0):
    [sealed], _ = sign_and_chain([reading(n)], signer=SIGNER, collector="gw-0001",
                                 after=ChainTip(41, "ab" * 32))
    return sealed.data


def row_of(data, sig=b"s" * 64):
    return read_row(data, sig, received_at=RECEIVED)


def with_field(path, value):
    """Valid read bytes with the JSON field at dotted ``path`` set to ``value``."""
    raw = json.loads(valid_bytes())
    *parents, name = path.split(".")
    target = raw
    for parent in parents:
        target = target[parent]
    target[name] = value
    return json.dumps(raw, separators=(",", ":")).encode()


def without_field(name):
    raw = json.loads(valid_bytes())
    del raw[name]
    return json.dumps(raw).encode()


# --- agreement with decode_read -------------------------------------------------------


@given(reads)
def test_row_agrees_with_decode_read_on_every_valid_read(read):
    sealed = signed(read)
    decoded = decode_read(sealed.data)
    row = read_row(sealed.data, sealed.sig, received_at=RECEIVED)

    for name in ("read_at", "collected_at"):
        assert row[name] == getattr(decoded, name)
        assert row[name].utcoffset() == timedelta(0)
    assert row["meter"] == decoded.meter
    assert row["source"] == decoded.source.value
    assert row["ntp_synced"] is decoded.clock.ntp_synced
    offset = decoded.clock.meter_offset_s
    assert row["meter_offset_s"] == (None if offset is None else format_decimal(offset))
    assert row["values"] == {
        name: {"obis": r.obis, "unit": r.unit, "value": format_decimal(r.value)}
        for name, r in decoded.values.items()
    }
    assert row["flags"] == list(decoded.flags)
    assert (row["collector"], row["seq"], row["key_id"], row["prev_hash"]) == (
        decoded.collector, decoded.seq, decoded.key_id, decoded.prev_hash)
    assert row["hash"] == read_hash(sealed.data)
    assert (row["data"], row["sig"], row["received_at"]) == (sealed.data, sealed.sig, RECEIVED)
    assert row["verify_status"] == "pending"


def test_row_keeps_the_offset_as_written_in_the_bytes():
    row = row_of(valid_bytes())
    assert row["meter_offset_s"] == "-2.000"
    assert row["values"]["energy_export_kwh"] == {"obis": "2.8.0", "unit": "kWh",
                                                  "value": "0.000"}


def test_row_times_from_another_zone_are_converted_to_utc():
    row = row_of(with_field("read_at", "2026-11-23T08:00:00+02:00"))
    assert row["read_at"] == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert row["read_at"].tzinfo is UTC


# --- typed refusals ---------------------------------------------------------------------


@pytest.mark.parametrize("name", FIELDS)
def test_a_missing_field_is_named(name):
    with pytest.raises(MissingFieldError) as info:
        row_of(without_field(name))
    assert info.value.field == name


def test_an_unknown_field_is_named():
    raw = json.loads(valid_bytes())
    raw["zz_extra"] = 1
    with pytest.raises(MalformedReadError) as info:
        row_of(json.dumps(raw).encode())
    assert info.value.field == "zz_extra"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("v", 2, "v"),
        ("v", True, "v"),
        ("v", 1.0, "v"),
        ("seq", 0, "seq"),
        ("seq", True, "seq"),
        ("seq", "1", "seq"),
        ("clock", None, "clock"),
        ("clock.ntp_synced", 1, "clock"),
        ("clock.meter_offset_s", -2.0, "clock.meter_offset_s"),
        ("source", "telepathy", "source"),
        ("source", None, "source"),
        ("values", {}, "values"),
        ("values", [], "values"),
        ("flags", "tamper", "flags"),
        ("meter", "", "meter"),
        ("meter", 7, "meter"),
        ("collector", None, "collector"),
        ("key_id", [], "key_id"),
        ("prev_hash", 0, "prev_hash"),
        ("read_at", "2026-11-23T06:00:00", "read_at"),
        ("read_at", "yesterday", "read_at"),
        ("collected_at", 1_700_000_000, "collected_at"),
    ],
)
def test_a_mistyped_field_is_an_invalid_field_error_naming_it(path, value, field):
    with pytest.raises(InvalidFieldError) as info:
        row_of(with_field(path, value))
    assert info.value.field == field


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[]", b'"read"', b"{", b"null"])
def test_bytes_that_are_not_a_json_object_are_malformed(data):
    with pytest.raises(MalformedReadError, match="not"):
        row_of(data)


# --- fuzz: only MalformedReadError ever escapes -----------------------------------------


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_malformed_read_errors(data):
    with contextlib.suppress(MalformedReadError):
        row_of(data)


@st.composite
def mutated(draw):
    """Valid read bytes with a few bytes overwritten, deleted or inserted."""
    data = bytearray(valid_bytes(draw(st.integers(0, 50))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["set", "delete", "insert"]))
        if action == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=6)
                               | st.sampled_from([b'"', b"{", b"}", b"[", b"]", b",", b":",
                                                  b"null", b"true", b"-1", b"1e999", b"\\"]))
    return bytes(data)


@given(mutated())
def test_mutated_read_bytes_raise_only_malformed_read_errors(data):
    with contextlib.suppress(MalformedReadError):
        row_of(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["2026-11-23T06:00:00.000Z", "ami", "-2.000"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["ntp_synced", "meter_offset_s", "value", "unit", "obis",
                                       "x"]), children, max_size=4),
    max_leaves=10,
)
@pytest.mark.parametrize(
    "path",
    [*FIELDS, "clock.ntp_synced", "clock.meter_offset_s", "values.energy_import_kwh"],
)
@given(value=json_values)
def test_any_json_value_in_any_field_raises_only_malformed_read_errors(path, value):
    with contextlib.suppress(MalformedReadError):
        row_of(with_field(path, value))


@pytest.mark.parametrize("value", [[], {}, ["ami"]])
def test_a_source_that_is_not_a_string_is_an_invalid_field(value):
    with pytest.raises(InvalidFieldError):
        row_of(with_field("source", value))


@pytest.mark.parametrize(
    ("path", "value"),
    [("read_at", "0001-01-01T00:00:00+05:00"), ("collected_at", "9999-12-31T23:59:59-01:00")],
)
def test_a_time_outside_the_calendar_in_utc_is_an_invalid_field(path, value):
    with pytest.raises(InvalidFieldError):
        row_of(with_field(path, value))


def test_an_overlong_integer_is_malformed():
    data = valid_bytes().replace(b'"seq":42', b'"seq":' + b"4" * 5000)
    assert data != valid_bytes()
    with pytest.raises(MalformedReadError):
        row_of(data)


def test_deeply_nested_json_is_malformed():
    with pytest.raises(MalformedReadError):
        row_of(b"[" * 50_000 + b"]" * 50_000)
