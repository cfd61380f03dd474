"""The cycle file's byte forms: deterministic, readable back, fixed-width to the byte."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.export.formats import (
    CSV_COLUMNS,
    JSONL_KEYS,
    RECORD_LENGTH,
    RECORD_TYPES,
    ExportParseError,
    FieldKind,
    FieldWidthError,
    Format,
    count_rows,
    fixed_width_layout,
    layout_markdown,
    parse,
    parse_fixed_width,
    render,
)
from hub.export.rows import ExportLine, ExportRow, ExportRowError, sorted_rows
from tests.readings import instants

BILLED = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
PREVIOUS = datetime(2026, 10, 31, 14, 5, 7, 250000, tzinfo=UTC)
CURRENT = datetime(2026, 11, 30, 14, 2, 11, 500000, tzinfo=UTC)


def line(code="ENERGY", amount="46.32", **overrides):
    values = {"code": code, "description": "Energy, first 500 kWh",
              "quantity": Decimal("412.500"), "unit": "kWh", "price": Decimal("0.1123"),
              "amount": Decimal(amount)}
    values.update(overrides)
    return ExportLine(**values)


def row(route="R01", account="A-1001", meter="SDM630-00001", **overrides):
    lines = overrides.pop("lines", (line("FIXED", "12.50", description="Customer charge",
                                         quantity=Decimal(1), unit="bill",
                                         price=Decimal("12.50")), line()))
    values = {"cycle": "C2026-11", "route": route, "account": account, "meter": meter,
              "service": "electric", "read_type": "actual",
              "previous_read": Decimal("1000.000"), "previous_read_at": PREVIOUS,
              "current_read": Decimal("1412.500"), "current_read_at": CURRENT,
              "multiplier": Decimal(1), "consumption": Decimal("412.500"), "unit": "kWh",
              "edit_flags": (), "lines": lines,
              "total": sum((item.amount for item in lines), Decimal("0.00"))}
    values.update(overrides)
    return ExportRow(**values)


def sample_rows():
    """Three account-meters over two routes: electric with flags, water estimated, no read."""
    return [
        row(edit_flags=("spike", "high_usage")),
        row("R01", "A-1002", "W-77", service="water", read_type="estimated", unit="m3",
            previous_read=None, previous_read_at=None, current_read=Decimal("88.120"),
            consumption=Decimal("13.004"), multiplier=Decimal("1.0"),
            lines=(line("WATER", "31.21", description="Wasserverbrauch Ü", quantity=Decimal(
                "13.004"), unit="m3", price=Decimal("2.4")), line("TAX", "-1.25", price=None,
                description="Rebate", quantity=Decimal(1), unit=""))),
        row("R00", "A-0999", "E-CT-1", read_type="override", multiplier=Decimal("40"),
            consumption=None, current_read=None, current_read_at=None, lines=(),
            total=Decimal(0)),
    ]


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders_the_same_bytes_for_shuffled_rows(fmt):
    rows = sample_rows()
    first = render(rows, fmt, generated_at=BILLED)
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert render(shuffled, fmt, generated_at=BILLED) == first


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_reads_back_into_its_rows(fmt):
    rows = sample_rows()
    assert parse(render(rows, fmt, generated_at=BILLED), fmt) == sorted_rows(rows)


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_is_utf8_with_newline_line_ends(fmt):
    data = render(sample_rows(), fmt, generated_at=BILLED)
    text = data.decode("utf-8")
    assert "\r" not in text and text.endswith("\n")


def test_rows_are_written_in_route_account_meter_order():
    rows = parse(render(sample_rows(), Format.CSV), Format.CSV)
    assert [r.key for r in rows] == [("R00", "A-0999", "E-CT-1"), ("R01", "A-1001",
                                     "SDM630-00001"), ("R01", "A-1002", "W-77")]


def test_csv_has_the_documented_header_and_one_record_per_account_meter():
    records = list(csv.reader(io.StringIO(render(sample_rows(), Format.CSV).decode(),
                                          newline="")))
    assert tuple(records[0]) == CSV_COLUMNS
    assert len(records) == 1 + 3
    water = dict(zip(CSV_COLUMNS, records[2], strict=True))
    assert water["edit_flags"] == "high_usage;spike"


def test_csv_cells_hold_reads_money_times_and_lines_as_documented():
    records = list(csv.DictReader(io.StringIO(render(sample_rows(), Format.CSV).decode(),
                                              newline="")))
    electric, water = records[1], records[2]
    assert electric["previous_read"] == "1000.000"  # the meter's places are kept
    assert electric["previous_read_at"] == "2026-10-31T14:05:07.250Z"
    assert electric["total"] == "58.82" and electric["currency"] == "USD"
    assert records[0]["total"] == "0.00" and records[0]["consumption"] == ""
    assert records[0]["multiplier"] == "40"
    lines = json.loads(water["lines"])
    assert water["line_count"] == "2"
    assert lines[1] == {"amount": "-1.25", "code": "TAX", "description": "Rebate",
                        "price": None, "quantity": "1", "unit": ""}
    assert lines[0]["description"] == "Wasserverbrauch Ü"


def test_jsonl_is_one_sorted_key_object_per_row_with_decimals_as_strings():
    text = render(sample_rows(), Format.JSONL).decode()
    objects = [json.loads(line) for line in text.splitlines()]
    assert len(objects) == 3
    for obj, raw in zip(objects, text.splitlines(), strict=True):
        assert tuple(obj) == JSONL_KEYS
        assert raw == json.dumps(obj, sort_keys=True, separators=(",", ":"),
                                 ensure_ascii=False)
    assert objects[1]["total"] == "58.82" and objects[1]["consumption"] == "412.500"
    assert objects[0]["consumption"] is None and objects[0]["edit_flags"] == []
    assert objects[2]["lines"][0]["price"] == "2.4"


def test_fixed_width_records_all_have_the_documented_length():
    data = render(sample_rows(), Format.FIXED, generated_at=BILLED)
    records = data.split(b"\n")[:-1]
    assert [r[:1] for r in records] == [b"H", b"D", b"D", b"E", b"E", b"L", b"L", b"D", b"L",
                                        b"L", b"T"]
    assert all(len(r) == RECORD_LENGTH for r in records)


def test_fixed_width_fields_sit_where_the_layout_says():
    data = render(sample_rows(), Format.FIXED, generated_at=BILLED)
    records = data.split(b"\n")[:-1]
    fields = {(f.record, f.name): f for f in fixed_width_layout()}

    def field(record, name):
        f = fields[(record[:1].decode(), name)]
        return record[f.start - 1:f.end].decode()

    assert field(records[0], "generated_at") == "2026-12-01T06:00:00.000Z"
    electric = records[2]
    assert field(electric, "account") == "A-1001".ljust(64)
    assert field(electric, "previous_read") == "+0000001000.000000"
    assert field(electric, "total") == "+0000000058.82"
    assert field(electric, "flag_count") == "02"
    assert field(records[1], "current_read") == " " * 18  # absent read is blank
    assert field(records[3], "rule") == "high_usage".ljust(64)
    assert field(records[9], "amount") == "-0000000001.25"
    assert field(records[9], "price") == " " * 18


def test_fixed_width_trailer_counts_and_totals_match_the_details():
    data = render(sample_rows(), Format.FIXED, generated_at=BILLED)
    trailer = data.split(b"\n")[-2]
    fields = {f.name: f for f in fixed_width_layout() if f.record == "T"}

    def value(name):
        f = fields[name]
        return trailer[f.start - 1:f.end].decode()

    assert value("detail_count") == "0000003"
    assert int(value("flag_count")) == 2 and int(value("line_count")) == 4
    assert int(value("record_count")) == 11
    assert Decimal(value("amount_total")) == Decimal("58.82") + Decimal("29.96")
    assert Decimal(value("consumption_total")) == Decimal("412.500") + Decimal("13.004")


def test_fixed_width_header_keeps_cycle_and_generated_at():
    parsed = parse_fixed_width(render(sample_rows(), Format.FIXED, generated_at=BILLED))
    assert parsed.cycle == "C2026-11" and parsed.generated_at == BILLED


def test_a_value_too_wide_for_its_field_is_a_typed_error_naming_row_and_field():
    too_long = row(account="A" * 65)
    with pytest.raises(FieldWidthError) as caught:
        render([too_long], Format.FIXED)
    assert caught.value.field == "account" and caught.value.record == "D"
    assert caught.value.key == ("R01", "A" * 65, "SDM630-00001")
    assert "65 bytes" in str(caught.value)


def test_every_identifier_the_hub_accepts_fits():
    longest = "M" * 64  # protocols.read.METER_RE: 64 characters at most
    data = render([row(longest, longest, longest, cycle=longest)], Format.FIXED)
    assert parse(data, Format.FIXED)[0].meter == longest


def test_a_multibyte_character_counts_its_utf8_bytes_against_the_width():
    description = "Ü" + "x" * 118  # 119 characters, 120 bytes: fits exactly
    assert render([row(lines=(line(amount="46.32", description=description),),
                       total=Decimal("46.32"))], Format.FIXED)
    with pytest.raises(FieldWidthError) as caught:
        render([row(lines=(line(amount="46.32", description=description + "x"),),
                    total=Decimal("46.32"))], Format.FIXED)
    assert caught.value.record == "L" and caught.value.field == "description"


def test_more_places_than_a_fixed_width_field_holds_is_an_error_not_rounding():
    with pytest.raises(FieldWidthError) as caught:
        render([row(multiplier=Decimal("1.0000005"))], Format.FIXED)
    assert caught.value.field == "multiplier"


def test_too_many_integer_digits_is_an_error():
    with pytest.raises(FieldWidthError) as caught:
        render([row(current_read=Decimal("12345678901"))], Format.FIXED)
    assert caught.value.field == "current_read"


def test_csv_and_jsonl_have_no_width_limits():
    wide = row(account="A" * 200, multiplier=Decimal("1.000000001"))
    for fmt in (Format.CSV, Format.JSONL):
        assert parse(render([wide], fmt), fmt) == [wide]


def test_layout_is_one_table_that_tiles_every_record_exactly():
    layout = fixed_width_layout()
    assert {f.record for f in layout} == set(RECORD_TYPES)
    for record in RECORD_TYPES:
        fields = [f for f in layout if f.record == record]
        assert fields[0].start == 1 and fields[0].kind is FieldKind.CONSTANT
        assert fields[-1].end == RECORD_LENGTH
        for before, after in pairwise(fields):
            assert after.start == before.end + 1


def test_layout_markdown_documents_every_field_of_the_layout():
    text = layout_markdown()
    for f in fixed_width_layout():
        assert f"| `{f.record}` | `{f.name}` | {f.start} | {f.end} | {f.width} |" in text


def test_count_rows_counts_from_the_file_itself():
    for fmt in Format:
        assert count_rows(render(sample_rows(), fmt, generated_at=BILLED), fmt) == 3
        assert count_rows(render([], fmt, cycle="C2026-11"), fmt) == 0


def test_a_fixed_width_trailer_that_disagrees_is_a_parse_error():
    data = bytearray(render(sample_rows(), Format.FIXED, generated_at=BILLED))
    trailer_start = len(data) - RECORD_LENGTH - 1
    data[trailer_start + 7] = ord("4")  # detail_count 0000003 -> 0000004
    with pytest.raises(ExportParseError) as caught:
        parse(bytes(data), Format.FIXED)
    assert caught.value.field == "detail_count"


def test_a_truncated_file_is_a_parse_error():
    for fmt in Format:
        data = render(sample_rows(), fmt, generated_at=BILLED)
        with pytest.raises(ExportParseError):
            parse(data[:-5], fmt)


def test_a_csv_with_another_header_is_a_parse_error():
    data = render(sample_rows(), Format.CSV).replace(b"cycle,route", b"cycle,rout", 1)
    with pytest.raises(ExportParseError) as caught:
        parse(data, Format.CSV)
    assert caught.value.line == 1


def test_rows_of_another_cycle_are_refused():
    with pytest.raises(ExportRowError) as caught:
        render([row(), row("R02", cycle="C2026-12")], Format.CSV)
    assert caught.value.field == "cycle"
    with pytest.raises(ExportRowError):
        render([row()], Format.CSV, cycle="C2026-12")


def test_the_same_account_meter_twice_is_refused():
    with pytest.raises(ExportRowError) as caught:
        render([row(), row()], Format.JSONL)
    assert caught.value.key == ("R01", "A-1001", "SDM630-00001")


def test_money_with_more_than_two_places_is_refused_not_rounded():
    with pytest.raises(ExportRowError) as caught:
        line(amount="46.325")
    assert "two decimal places" in str(caught.value)


def test_a_float_is_never_money_or_consumption():
    with pytest.raises(ExportRowError):
        row(consumption=412.5)
    with pytest.raises(ExportRowError):
        ExportLine("FIXED", "Customer charge", Decimal(1), "bill", None, 12.5)


def test_a_total_that_is_not_the_sum_of_its_lines_is_refused():
    with pytest.raises(ExportRowError) as caught:
        row(total=Decimal("58.83"))
    assert caught.value.field == "total"


def test_a_naive_read_time_is_refused():
    with pytest.raises(ExportRowError) as caught:
        row(current_read_at=datetime(2026, 11, 30, 14, 2))
    assert caught.value.field == "current_read_at"


def test_times_are_written_as_utc():
    eastern = CURRENT.astimezone(timezone(timedelta(hours=-5)))
    text = render([row(current_read_at=eastern)], Format.CSV).decode()
    assert "2026-11-30T14:02:11.500Z" in text


def test_a_read_without_its_date_is_refused():
    with pytest.raises(ExportRowError) as caught:
        row(previous_read_at=None)
    assert caught.value.field == "previous_read_at"


def test_an_unknown_read_type_is_refused():
    with pytest.raises(ExportRowError):
        row(read_type="guessed")


def test_text_with_a_line_break_is_refused():
    with pytest.raises(ExportRowError):
        row(account="A-1\nA-2")
    with pytest.raises(ExportRowError):
        line(description="two\nlines")


def test_edit_flags_are_kept_sorted_and_unique():
    assert row(edit_flags=["spike", "high_usage", "spike"]).edit_flags == ("high_usage", "spike")
    with pytest.raises(ExportRowError):
        row(edit_flags=("high usage",))


# --- properties --------------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
                min_size=1, max_size=24).map(str.strip).filter(bool)
reads = st.decimals(min_value=-10**9, max_value=10**9, places=3, allow_nan=False,
                    allow_infinity=False)
money = st.integers(min_value=-10**11, max_value=10**11).map(lambda c: Decimal(c).scaleb(-2))
UNITS = ["kWh", "m3", "m³", "ft3", "gal", "ccf", "day", "bill"]


@st.composite
def export_lines(draw):
    return ExportLine(code=draw(texts), description=draw(st.just("") | texts),
                      quantity=draw(reads), unit=draw(st.sampled_from(["", *UNITS])),
                      price=draw(st.none() | reads), amount=draw(money))


@st.composite
def export_rows(draw):
    lines = tuple(draw(st.lists(export_lines(), max_size=3)))
    previous = draw(st.none() | reads)
    current = draw(st.none() | reads)
    return ExportRow(
        cycle="C2026-11", route=draw(texts), account=draw(texts), meter=draw(texts),
        service=draw(st.sampled_from(["electric", "water", "gas"])),
        read_type=draw(st.sampled_from(["actual", "estimated", "handheld", "override"])),
        previous_read=previous,
        previous_read_at=None if previous is None else draw(instants),
        current_read=current, current_read_at=None if current is None else draw(instants),
        multiplier=draw(st.decimals(min_value=Decimal("0.001"), max_value=1000, places=3)),
        consumption=draw(st.none() | reads), unit=draw(st.sampled_from(UNITS)),
        edit_flags=tuple(draw(st.lists(st.from_regex(r"[a-z][a-z_]{0,20}", fullmatch=True),
                                       max_size=3))),
        lines=lines, total=sum((item.amount for item in lines), Decimal("0.00")),
        currency=draw(st.sampled_from(["USD", "CAD", "EUR"])))


def unique_rows(rows):
    return list({r.key: r for r in rows}.values())


@settings(max_examples=150, deadline=None)
@given(st.lists(export_rows(), max_size=5).map(unique_rows))
def test_csv_and_jsonl_round_trip_any_rows_exactly(rows):
    for fmt in (Format.CSV, Format.JSONL):
        data = render(rows, fmt, cycle="C2026-11")
        parsed = parse(data, fmt)
        assert parsed == sorted_rows(rows)
        assert render(parsed, fmt, cycle="C2026-11") == data


@settings(max_examples=150, deadline=None)
@given(st.lists(export_rows(), max_size=5).map(unique_rows))
def test_fixed_width_round_trips_or_says_which_field_does_not_fit(rows):
    try:
        data = render(rows, Format.FIXED, cycle="C2026-11", generated_at=BILLED)
    except FieldWidthError as exc:
        assert exc.field in {f.name for f in fixed_width_layout()}
        return
    assert parse(data, Format.FIXED) == sorted_rows(rows)
    assert all(len(r) == RECORD_LENGTH for r in data.split(b"\n")[:-1])
