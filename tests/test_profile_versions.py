"""Firmware versions put in order: numeric where numbers, never raising, a total order."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_profiles import FirmwareRange, version_key
from firmware_profiles.versions import same_version

numbers = st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=6)
versions = st.one_of(
    st.text(max_size=30),
    numbers.map(lambda parts: ".".join(map(str, parts))),
    st.from_regex(r"[vVbB]?[0-9]{1,3}(\.[0-9A-Za-z]{1,3}){0,3}", fullmatch=True),
)


def padded(parts: list[int], width: int) -> tuple[int, ...]:
    return tuple(parts) + (0,) * (width - len(parts))


@pytest.mark.parametrize(("low", "high"), [
    ("1.0", "1.1"),
    ("1.9", "1.10"),
    ("2.9", "2.10.0"),
    ("1.2", "1.2.1"),
    ("B31", "B32"),
    ("B32", "B32a"),
    ("1.0.5", "1.0.a"),
    ("V2.01", "V2.2"),
    ("0001", "0002"),
    ("40", "42"),
])
def test_versions_in_order(low, high):
    assert version_key(low) < version_key(high)


@pytest.mark.parametrize(("left", "right"), [
    ("1", "1.0"),
    ("1.0", "1.0.0"),
    ("V2.01", "2.1"),
    ("v2.1", "2.1"),
    ("b32", "B32"),
    ("2-3-1", "2.3.1"),
    ("0001", "1"),
])
def test_spellings_of_the_same_version_are_equal(left, right):
    assert same_version(left, right)


def test_a_letter_v_is_only_a_prefix_before_a_number():
    assert version_key("V") == (version_key("v")) != version_key("")
    assert version_key("V2") != version_key("B2")


@given(st.text())
def test_the_key_never_raises_on_any_text(text):
    key = version_key(text)
    assert key == version_key(text)
    assert (key < ()) is False


@given(versions, versions)
def test_any_two_keys_compare_exactly_one_way(left, right):
    a, b = version_key(left), version_key(right)
    assert [a < b, a == b, a > b].count(True) == 1


@given(versions, versions, versions)
def test_the_order_is_transitive(first, second, third):
    a, b, c = sorted(map(version_key, (first, second, third)))
    assert a <= b <= c
    assert a <= c


@given(numbers, numbers)
def test_dotted_numbers_compare_as_numbers(left, right):
    width = max(len(left), len(right))
    expected = (padded(left, width) > padded(right, width)) - (
        padded(left, width) < padded(right, width))
    a = version_key(".".join(map(str, left)))
    b = version_key(".".join(map(str, right)))
    assert (a > b) - (a < b) == expected


def test_very_long_numbers_compare_without_conversion():
    assert version_key("9" * 5000) > version_key("8" * 5000)
    assert version_key("1" + "0" * 5000) > version_key("9" * 4999)


def test_range_bounds_are_inclusive_and_ends_may_be_open():
    closed = FirmwareRange("1.0", "2.0")
    assert closed.contains("1.0") and closed.contains("1.5.3") and closed.contains("2")
    assert not closed.contains("0.9") and not closed.contains("2.0.1")
    assert FirmwareRange("B21", None).contains("B32")
    assert FirmwareRange(None, "3").contains("0.1")
    assert FirmwareRange().contains("anything")


def test_a_range_says_itself_readably():
    assert str(FirmwareRange("1.0", None)) == "≥ 1.0"
    assert str(FirmwareRange(None, "2.0")) == "≤ 2.0"
    assert str(FirmwareRange("1.0", "2.0")) == "1.0 – 2.0"
    assert str(FirmwareRange("4.02", "4.2")) == "4.02"
    assert str(FirmwareRange()) == "any"


def test_an_inverted_range_is_empty():
    assert FirmwareRange("2.0", "1.0").is_empty()
    assert not FirmwareRange("1.0", "1.0").is_empty()


@given(versions, versions, versions)
def test_contains_agrees_with_the_key(low, high, version):
    inside = version_key(low) <= version_key(version) <= version_key(high)
    assert FirmwareRange(low, high).contains(version) == inside
