import contextlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.scalars import (
    ScalarError,
    format_decimal,
    format_instant,
    normalize_decimal,
    normalize_instant,
    parse_decimal,
    parse_instant,
)
from tests.readings import decimals, instants


@given(decimals)
def test_decimal_text_round_trips_exactly(value):
    text = format_decimal(normalize_decimal(value))
    assert format_decimal(parse_decimal(text)) == text
    assert parse_decimal(text) == value


@pytest.mark.parametrize("text", ["0.000", "123456789.123456", "-42.5", "0", "1000"])
def test_meter_precision_is_kept(text):
    assert format_decimal(parse_decimal(text)) == text


@pytest.mark.parametrize(
    "text", ["+1", "01", "1e3", "1E3", ".5", "5.", "-0", "-0.000", " 1", "1 ", "NaN", "", "1,5"]
)
def test_non_canonical_decimal_text_is_rejected(text):
    with pytest.raises(ScalarError):
        parse_decimal(text)


def test_negative_zero_is_made_zero_and_infinity_refused():
    assert format_decimal(normalize_decimal(Decimal("-0.00"))) == "0.00"
    with pytest.raises(ScalarError):
        normalize_decimal(Decimal("Infinity"))
    with pytest.raises(ScalarError):
        normalize_decimal(1.5)  # a float is never money or consumption


def test_oversized_decimal_is_refused():
    with pytest.raises(ScalarError):
        normalize_decimal(Decimal("1E+100"))


@given(instants)
def test_instant_text_round_trips(value):
    text = format_instant(normalize_instant(value))
    assert format_instant(parse_instant(text)) == text
    assert parse_instant(text) == normalize_instant(value)


def test_instants_are_utc_truncated_to_milliseconds():
    cet = timezone(timedelta(hours=1))
    value = normalize_instant(datetime(2026, 11, 23, 20, 0, 0, 123999, tzinfo=cet))
    assert format_instant(value) == "2026-11-23T19:00:00.123Z"


def test_naive_datetime_is_refused():
    with pytest.raises(ScalarError, match="no time zone"):
        normalize_instant(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "text",
    ["2026-11-23T19:00:00Z", "2026-11-23T19:00:00.123+00:00", "2026-11-23 19:00:00.123Z",
     "2026-02-30T00:00:00.000Z", "2026-11-23T19:00:00.1234Z"],
)
def test_non_canonical_instants_are_rejected(text):
    with pytest.raises(ScalarError):
        parse_instant(text)


@given(st.text(max_size=50))
def test_parsers_raise_only_scalar_errors(text):
    for parse in (parse_decimal, parse_instant):
        with contextlib.suppress(ScalarError):
            parse(text)


def test_utc_instant_stays_utc():
    assert normalize_instant(datetime(2026, 1, 1, tzinfo=UTC)).tzinfo is UTC


@given(decimals)
def test_fast_decimal_format_equals_positional_format(value):
    value = normalize_decimal(value)
    assert format_decimal(value) == format(value, "f")


@given(instants)
def test_fast_instant_format_equals_the_spelled_out_form(value):
    value = normalize_instant(value)
    spelled = (f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
               f"{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z")
    assert format_instant(value) == spelled
