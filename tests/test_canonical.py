import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.canonical import decode_read, encode_read, read_as_json_object
from protocols.errors import (
    ExtraFieldError,
    InvalidFieldError,
    MalformedReadError,
    MissingFieldError,
    NonCanonicalError,
)
from protocols.read import Read
from tests.readings import reading, reads


def generic_canonical(read: Read) -> bytes:
    """The JCS-style form written the slow, obvious way."""
    return json.dumps(
        read_as_json_object(read), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def chained(n=0, **kwargs) -> Read:
    return Read.chain(reading(n, **kwargs), collector="gw-0001", seq=n + 1,
                      prev_hash="a" * 64, key_id="b" * 32)


@given(reads)
def test_encoding_round_trips(read):
    data = encode_read(read)
    assert decode_read(data) == read
    assert encode_read(decode_read(data)) == data


@given(reads)
def test_fast_encoder_matches_the_generic_canonical_form(read):
    assert encode_read(read) == generic_canonical(read)


def test_example_bytes_are_sorted_compact_utf8():
    data = encode_read(chained())
    text = data.decode("utf-8")
    assert " " not in text
    assert text.startswith('{"clock":{"meter_offset_s":"-2.000","ntp_synced":true},')
    assert '"value":"0.000"' in text  # the meter's three decimals survive
    assert text.index('"collected_at"') < text.index('"collector"') < text.index('"flags"')


def _mutate(data: bytes, change) -> bytes:
    obj = json.loads(data)
    change(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_missing_field_is_named():
    data = _mutate(encode_read(chained()), lambda o: o.pop("read_at"))
    with pytest.raises(MissingFieldError) as info:
        decode_read(data)
    assert info.value.field == "read_at"
    assert info.value.collector == "gw-0001" and info.value.seq == 1


def test_missing_nested_field_is_named():
    data = _mutate(encode_read(chained()),
                   lambda o: o["values"]["energy_import_kwh"].pop("unit"))
    with pytest.raises(MissingFieldError) as info:
        decode_read(data)
    assert info.value.field == "values.energy_import_kwh.unit"


def test_extra_field_is_named():
    data = _mutate(encode_read(chained()), lambda o: o.__setitem__("price", "0.12"))
    with pytest.raises(ExtraFieldError) as info:
        decode_read(data)
    assert info.value.field == "price"


def test_extra_clock_field_is_named():
    data = _mutate(encode_read(chained()), lambda o: o["clock"].__setitem__("tz", "CET"))
    with pytest.raises(ExtraFieldError) as info:
        decode_read(data)
    assert info.value.field == "clock.tz"


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace(",", ", ", 1),                       # whitespace
        lambda t: t.replace('"clock":', ' "clock":', 1),
        lambda t: t.replace('"kWh"', '"\\u006bWh"', 1),           # escaped letter
        lambda t: t + "\n",
    ],
)
def test_non_canonical_spellings_are_rejected(change):
    data = encode_read(chained())
    altered = change(data.decode()).encode()
    assert altered != data
    with pytest.raises(MalformedReadError):
        decode_read(altered)


def test_reordered_keys_are_non_canonical():
    obj = json.loads(encode_read(chained()))
    reordered = json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":")).encode()
    with pytest.raises(NonCanonicalError):
        decode_read(reordered)


def test_duplicate_key_is_non_canonical():
    text = encode_read(chained()).decode()
    duplicated = text.replace('"meter":', '"meter":"X","meter":', 1).encode()
    with pytest.raises(NonCanonicalError, match="twice"):
        decode_read(duplicated)


def test_unsorted_flags_are_non_canonical():
    data = _mutate(encode_read(chained(flags=("tamper", "low_battery"))),
                   lambda o: o["flags"].reverse())
    with pytest.raises(NonCanonicalError):
        decode_read(data)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda o: o.__setitem__("seq", "1"), "seq"),
        (lambda o: o.__setitem__("seq", 0), "seq"),
        (lambda o: o.__setitem__("seq", True), "seq"),
        (lambda o: o.__setitem__("v", 2), "v"),
        (lambda o: o.__setitem__("source", "drone"), "source"),
        (lambda o: o.__setitem__("read_at", "2026-11-23T06:00:00Z"), "read_at"),
        (lambda o: o["values"]["energy_import_kwh"].__setitem__("value", 101.0),
         "values.energy_import_kwh.value"),
        (lambda o: o["values"]["energy_import_kwh"].__setitem__("value", "1e3"),
         "values.energy_import_kwh.value"),
        (lambda o: o["values"]["energy_import_kwh"].__setitem__("obis", "x"),
         "values.energy_import_kwh.obis"),
        (lambda o: o.__setitem__("values", {}), "values"),
        (lambda o: o.__setitem__("prev_hash", "A" * 64), "prev_hash"),
        (lambda o: o["clock"].__setitem__("ntp_synced", 1), "clock.ntp_synced"),
    ],
)
def test_invalid_values_name_their_field(change, field):
    data = _mutate(encode_read(chained()), change)
    with pytest.raises(InvalidFieldError) as info:
        decode_read(data)
    assert info.value.field == field


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[]", b"{", b'{"a":NaN}', b"null"])
def test_garbage_is_malformed(data):
    with pytest.raises(MalformedReadError):
        decode_read(data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_typed_errors(data):
    with contextlib.suppress(MalformedReadError):
        decode_read(data)


@given(reads, st.data())
def test_any_single_byte_change_is_rejected_or_changes_the_read(read, data):
    """A one-byte change never yields the same read from different bytes."""
    original = encode_read(read)
    index = data.draw(st.integers(0, len(original) - 1))
    mask = data.draw(st.integers(1, 255))
    altered = bytearray(original)
    altered[index] ^= mask
    try:
        decoded = decode_read(bytes(altered))
    except MalformedReadError:
        return
    assert decoded != read
