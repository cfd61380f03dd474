"""Rate files: the samples load, versions are picked by date, and a broken file says where."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from hub.rates import (
    NoVersionError,
    RateBook,
    RateBookError,
    RateError,
    UnknownRateError,
    default_rate_dir,
    load_rate,
    parse_rate,
)
from hub.rates.model import Demand, Fixed, MinimumBill, Percentage, Tiered, TimeOfUse, Wastewater

ROW = "[" + ", ".join(["offpeak"] * 17 + ["peak"] * 4 + ["offpeak"] * 3) + "]"
ROWS = "[" + ", ".join([ROW] * 12) + "]"

BASE = f"""
code: T-1
service: electric
unit: kWh
register: energy_import_kwh
description: Test rate
versions:
  - effective: 2026-01-01
    components:
      - {{id: customer, type: fixed, description: Customer charge, per: bill, amount: 10.00}}
      - id: energy
        type: tiered
        description: Energy
        direction: inclining
        tiers: [{{up_to: 500, price: 0.10}}, {{price: 0.12}}]
      - id: demand
        type: demand
        description: Demand
        price: 12.00
        ratchet: {{percent: 80, months: 11}}
      - id: adder
        type: tou
        description: TOU adder
        periods:
          peak: {{register: energy_import_kwh_t1, price: 0.05}}
          offpeak: {{register: energy_import_kwh_t2, price: 0.01}}
        weekday: {ROWS}
        weekend: {ROWS}
      - {{id: minimum, type: minimum, description: Minimum, amount: 20, per: bill,
         of: [customer, energy]}}
      - {{id: tax, type: percentage, description: Tax, percent: 5, of: [customer, energy]}}
    options:
      senior: {{description: Senior, discount: {{percent: 10, of: [energy]}}}}
  - effective: 2026-10-15
    components:
      - {{id: customer, type: fixed, description: Customer charge, per: day, amount: 0.35}}
      - id: energy
        type: tiered
        description: Energy
        seasons:
          - {{name: summer, months: [6, 7, 8, 9], price: 0.11}}
          - {{name: winter, months: [10, 11, 12, 1, 2, 3, 4, 5], price: 0.09}}
      - id: sewer
        type: wastewater
        description: Sewer
        price: 2.00
        winter_months: [12, 1, 2]
        default_average: 12
"""


def parse(text: str = BASE, source: str = "T-1.yaml"):
    return parse_rate(text, source)


def error_of(old: str, new: str, text: str = BASE) -> RateError:
    assert text.count(old) == 1, f"{old!r} is not unique in the base file"
    with pytest.raises(RateError) as raised:
        parse(text.replace(old, new))
    return raised.value


V1 = "versions.2026-01-01"
V2 = "versions.2026-10-15"


# --- the base file and the samples ---------------------------------------------------------------


def test_the_base_file_loads_into_typed_components():
    rate = parse()
    assert (rate.code, rate.service, rate.unit, rate.register, rate.currency) == (
        "T-1", "electric", "kWh", "energy_import_kwh", "USD")
    first, second = rate.versions
    assert [type(c) for c in first.components] == [Fixed, Tiered, Demand, TimeOfUse,
                                                   MinimumBill, Percentage]
    assert [type(c) for c in second.components] == [Fixed, Tiered, Wastewater]
    assert first.rounding.places == 2 and first.rounding.mode == "half_up"
    assert first.options["senior"].discount.percent == Decimal(10)
    energy = second.component("energy")
    assert energy.register == "energy_import_kwh"
    assert energy.blocks.tiers_in(7)[0].price == Decimal("0.11")
    assert energy.blocks.tiers_in(1)[0].price == Decimal("0.09")


def test_yaml_numbers_are_the_exact_decimals_written():
    text = BASE.replace("price: 0.10}", "price: 0.100000000000000000000000000001}")
    energy = parse(text).versions[0].component("energy")
    assert energy.blocks.tiers[0].price == Decimal("0.100000000000000000000000000001")
    assert str(parse().versions[0].component("energy").blocks.tiers[0].price) == "0.10"
    quoted = BASE.replace("price: 0.10}", 'price: "0.10"}')
    assert parse(quoted).versions[0].component("energy").blocks.tiers[0].price == Decimal("0.1")


def test_every_sample_table_loads():
    book = RateBook.load(default_rate_dir())
    assert book.codes == ("COM-E2", "RES-E1", "RES-G1", "RES-W1")
    for rate in book:
        assert len(rate.versions) >= 2
        assert date(2026, 10, 15) in [v.effective for v in rate.versions]
    assert set(book.rate("RES-E1").versions[0].options) == {"senior", "low_income"}
    water = book.rate("RES-W1").versions[0].component("base")
    assert set(water.by_meter_size) == {"5/8in", "3/4in", "1in", "2in"}
    demand = book.rate("COM-E2").versions[0].component("demand")
    assert (demand.ratchet.percent, demand.ratchet.months) == (Decimal(80), 11)


# --- versions by date ------------------------------------------------------------------------


def test_version_on_picks_the_version_in_force():
    rate = parse()
    assert rate.version_on(date(2026, 1, 1)).effective == date(2026, 1, 1)
    assert rate.version_on(date(2026, 10, 14)).effective == date(2026, 1, 1)
    assert rate.version_on(date(2026, 10, 15)).effective == date(2026, 10, 15)
    assert rate.version_on(date(2030, 1, 1)).effective == date(2026, 10, 15)
    with pytest.raises(NoVersionError, match="no version in force on 2025-12-31"):
        rate.version_on(date(2025, 12, 31))


def test_versions_in_splits_a_period_at_a_rate_change():
    rate = parse()
    parts = rate.versions_in(date(2026, 10, 1), date(2026, 10, 31))
    assert [(v.effective, start, end) for v, start, end in parts] == [
        (date(2026, 1, 1), date(2026, 10, 1), date(2026, 10, 14)),
        (date(2026, 10, 15), date(2026, 10, 15), date(2026, 10, 31))]
    whole = rate.versions_in(date(2026, 11, 1), date(2026, 11, 30))
    assert [(v.effective, s, e) for v, s, e in whole] == [
        (date(2026, 10, 15), date(2026, 11, 1), date(2026, 11, 30))]


def test_versions_in_leaves_out_days_no_version_covers():
    text = BASE.replace("  - effective: 2026-01-01\n", "  - effective: 2026-01-01\n"
                        "    ends: 2026-09-30\n")
    rate = parse(text)
    parts = rate.versions_in(date(2026, 9, 20), date(2026, 10, 20))
    assert [(s, e) for _, s, e in parts] == [(date(2026, 9, 20), date(2026, 9, 30)),
                                             (date(2026, 10, 15), date(2026, 10, 20))]
    assert rate.versions_in(date(2025, 1, 1), date(2025, 1, 31)) == []
    with pytest.raises(NoVersionError):
        rate.version_on(date(2026, 10, 1))
    with pytest.raises(ValueError, match="before it starts"):
        rate.versions_in(date(2026, 2, 1), date(2026, 1, 1))


# --- errors name file, key and why --------------------------------------------------------------


def test_an_error_names_file_key_and_why():
    error = error_of("colour", "colour", BASE + "colour: red\n")
    known = "code, service, unit, register, currency, description, versions"
    assert (error.file, error.key, error.why) == ("T-1.yaml", "colour",
                                                  f"unknown key; known here: {known}")
    assert str(error) == f"T-1.yaml: colour: unknown key; known here: {known}"
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(("old", "new", "key", "why"), [
    # unknown keys and types
    ("{price: 0.12}]", "{pirce: 0.12}]", f"{V1}.components.energy.tiers.1.pirce",
     "unknown key; known here: up_to, price"),
    ("type: tiered\n        description: Energy\n        direction",
     "type: tierd\n        description: Energy\n        direction",
     f"{V1}.components.energy.type", "'tierd' is not a component type; one of fixed, tiered"),
    ("amount: 10.00}", "amount: ten}", f"{V1}.components.customer.amount",
     "'ten' is not a number"),
    ("amount: 10.00}", "amount: -10.00}", f"{V1}.components.customer.amount",
     "must not be negative, got -10.00"),
    ("amount: 10.00}", "amount: true}", f"{V1}.components.customer.amount",
     "must be a number, not true/false"),
    ("percent: 5,", "percent: 150,", f"{V1}.components.tax.percent",
     "a percentage is above 0 and at most 100, got 150"),
    ("service: electric", "service: steam", "service", "Input should be 'electric', 'water'"),
    ("register: energy_import_kwh\ndescription", "register: Energy kWh\ndescription",
     "register", "'Energy kWh' is not a register name"),
    ("register: energy_import_kwh\ndescription", "description", "register",
     "required: the register whose use this prices"),
    ("code: T-1", "code: T 1", "code", "'T 1' is not a rate code"),
    ("per: bill, amount: 10.00", "per: month, amount: 10.00",
     f"{V1}.components.customer.per", "Input should be 'bill' or 'day'"),
    # tiers
    ("[{up_to: 500, price: 0.10}, {price: 0.12}]",
     "[{up_to: 500, price: 0.10}, {up_to: 400, price: 0.11}, {price: 0.12}]",
     f"{V1}.components.energy.tiers.1.up_to", "400 is not above the previous tier's 500"),
    ("{price: 0.12}]", "{up_to: 900, price: 0.12}]", f"{V1}.components.energy.tiers.1.up_to",
     "the last tier has no upper bound: use above 900 would have no price"),
    ("[{up_to: 500, price: 0.10}, {price: 0.12}]", "[{price: 0.10}, {price: 0.12}]",
     f"{V1}.components.energy.tiers.0.up_to", "required: every tier but the last ends"),
    ("{price: 0.12}]", "{price: 0.08}]", f"{V1}.components.energy.tiers.1.price",
     "0.08 is below the previous tier's 0.10, but the blocks are inclining"),
    ("{up_to: 500, price: 0.10}", "{up_to: 0, price: 0.10}",
     f"{V1}.components.energy.tiers.0.up_to", "must be above 0, got 0"),
    ("price: 12.00\n", "price: 12.00\n        tiers: [{price: 1}]\n",
     f"{V1}.components.demand.tiers", "price and tiers both given"),
    ("price: 12.00\n", "\n", f"{V1}.components.demand",
     "no price: give price, tiers or seasons (one of them)"),
    # seasons
    ("months: [10, 11, 12, 1, 2, 3, 4, 5]", "months: [10, 11, 12, 1, 2, 3, 4]",
     f"{V2}.components.energy.seasons", "month(s) 5 in no season"),
    ("months: [10, 11, 12, 1, 2, 3, 4, 5]", "months: [9, 10, 11, 12, 1, 2, 3, 4, 5]",
     f"{V2}.components.energy.seasons.1.months.0", "month 9 is in season 'summer' too"),
    ("months: [6, 7, 8, 9]", "months: [6, 7, 8, 9, 13]",
     f"{V2}.components.energy.seasons.0.months.4", "a month is 1 to 12, got 13"),
    ("{name: summer,", "{name: winter,", f"{V2}.components.energy.seasons.1.name",
     "season 'winter' is named twice"),
    # schedules
    (f"weekday: {ROWS}", "weekday: [" + ", ".join([ROW] * 11) + "]",
     f"{V1}.components.adder.weekday", "11 rows; a schedule has one row per month"),
    (f"weekend: {ROWS}", "weekend: [" + ", ".join([ROW] * 11 + ["[offpeak]"]) + "]",
     f"{V1}.components.adder.weekend.11", "1 hours; a row has 24"),
    (f"weekday: {ROWS}", f"weekday: {ROWS.replace('offpeak, peak', 'offpeak, peek', 1)}",
     f"{V1}.components.adder.weekday.0.17", "'peek' is not a period; the periods are peak, "
                                             "offpeak"),
    (f"weekday: {ROWS}", f"weekday: {ROWS.replace('offpeak', 'off', 1)}",
     f"{V1}.components.adder.weekday.0.0", "false is not a period (YAML reads unquoted"),
    ("offpeak: {register: energy_import_kwh_t2", "offpeak: {register: energy_import_kwh_t1",
     f"{V1}.components.adder.periods.offpeak.register",
     "energy_import_kwh_t1 is period peak's register too"),
    # references, ids, cycles
    ("of: [customer, energy]}\n    options", "of: [customer, enrgy]}\n    options",
     f"{V1}.components.tax.of.1", "'enrgy' is not a component of this version; it has "
                                  "customer, energy, demand, adder, minimum, tax"),
    ("of: [customer, energy]}\n    options", "of: [customer, tax]}\n    options",
     f"{V1}.components.tax.of.1", "'tax' cannot apply to itself"),
    ("of: [customer, energy]}\n    options", "of: [customer, minimum]}\n    options",
     "", ""),  # a tax on the minimum is fine (checked below: no cycle)
    ("{id: minimum, type: minimum, description: Minimum, amount: 20, per: bill,\n"
     "         of: [customer, energy]}",
     "{id: minimum, type: minimum, description: Minimum, amount: 20, per: bill,\n"
     "         of: [customer, tax]}",
     "", ""),
    ("id: adder", "id: demand", f"{V1}.components.demand.id",
     "'demand' is the id of component 2 too: ids are unique"),
    ("id: adder", "id: Adder", f"{V1}.components.3.id", "'Adder' is not an id"),
    ("{id: customer, type: fixed, description: Customer charge, per: bill, amount: 10.00}",
     "{type: fixed, description: Customer charge, per: bill, amount: 10.00}",
     f"{V1}.components.0.id", "required: the component's id"),
    # fixed charges
    ("per: bill, amount: 10.00}", "per: bill}", f"{V1}.components.customer",
     "give amount or by_meter_size (one of the two)"),
    ("per: bill, amount: 10.00}", "per: bill, amount: 1, by_meter_size: {1in: 2}}",
     f"{V1}.components.customer", "give amount or by_meter_size (one of the two)"),
    # wastewater
    ("winter_months: [12, 1, 2]", "winter_months: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]",
     f"{V2}.components.sewer.winter_months", "every month is a winter month"),
    ("winter_months: [12, 1, 2]", "winter_months: [12, 1, 1]",
     f"{V2}.components.sewer.winter_months.2", "month 1 is named twice"),
    ("        default_average: 12\n", "", f"{V2}.components.sewer.default_average",
     "required: the winter average of a new account"),
    # scale
    ("        direction: inclining\n", "        scale: days\n",
     f"{V1}.components.energy.standard_days", "required with scale: days"),
    # ratchet
    ("ratchet: {percent: 80, months: 11}", "ratchet: {percent: 80, months: 0}",
     f"{V1}.components.demand.ratchet.months", "Input should be greater than or equal to 1"),
    # options
    ("discount: {percent: 10, of: [energy]}", "discount: {percent: 10, of: [water]}",
     f"{V1}.options.senior.discount.of.0", "'water' is not a component of this version"),
    ("discount: {percent: 10, of: [energy]}", "discount: {amount: 5, of: [energy, customer], "
                                              "per: bill}",
     f"{V1}.options.senior.discount.of", "a fixed discount applies to one component"),
    ("discount: {percent: 10, of: [energy]}", "discount: {amount: 5, of: [energy]}",
     f"{V1}.options.senior.discount.per", "required with amount: bill or day"),
    ("discount: {percent: 10, of: [energy]}", "discount: {percent: 10, amount: 1, of: [energy]}",
     f"{V1}.options.senior.discount", "give percent or amount (one of the two)"),
    ("discount: {percent: 10, of: [energy]}", "discount: {percent: 10, of: [tax]}",
     f"{V1}.options.senior.discount.of.0", "'tax' is a percentage: discounts apply to charges"),
    ("discount: {percent: 10, of: [energy]}", "replace_tiers: {customer: {price: 1}}",
     f"{V1}.options.senior.replace_tiers.customer",
     "'customer' is a fixed component; replace_tiers applies to tiered and wastewater"),
    ("discount: {percent: 10, of: [energy]}",
     "replace_tiers: {energy: {tiers: [{up_to: 5, price: 0.2}, {price: 0.1}]}}",
     f"{V1}.options.senior.replace_tiers.energy.tiers.1.price",
     "0.1 is below the previous tier's 0.2, but the blocks are inclining"),
    ("senior: {description: Senior,", "energy: {description: Senior,", f"{V1}.options.energy",
     "'energy' is a component id too"),
    ("senior: {description: Senior,", "Senior: {description: Senior,", f"{V1}.options.Senior",
     "'Senior' is not an option name"),
    # versions
    ("effective: 2026-10-15", "effective: 2026-01-01", f"{V1}.effective",
     "2026-01-01 is the effective date of version 0 too: one version per date"),
    ("effective: 2026-10-15", "effective: 2025-10-15", "versions.2025-10-15.effective",
     "2025-10-15 comes before the previous version's 2026-01-01"),
    ("  - effective: 2026-01-01\n", "  - effective: 2026-01-01\n    ends: 2026-10-20\n",
     f"{V1}.ends", "2026-10-20 overlaps the next version, in force from 2026-10-15"),
    ("  - effective: 2026-01-01\n", "  - effective: 2026-01-01\n    ends: 2025-10-20\n",
     f"{V1}.ends", "2025-10-20 is before the version takes effect (2026-01-01)"),
    ("effective: 2026-10-15", "effective: 2026-10-15T00:00:00", "versions.1.effective",
     "is a time; an effective date is a day"),
    ("effective: 2026-10-15", "effective: soon", "versions.1.effective",
     "'soon' is not a date such as 2026-10-15"),
    ("  - effective: 2026-01-01\n", "  - effective: 2026-01-01\n    rounding: {mode: nearest}\n",
     f"{V1}.rounding.mode", "Input should be 'half_up', 'half_even', 'down' or 'up'"),
    ("  - effective: 2026-01-01\n", "  - effective: 2026-01-01\n    rounding: {places: 9}\n",
     f"{V1}.rounding.places", "Input should be less than or equal to 6"),
])
def test_a_precise_error(old: str, new: str, key: str, why: str):
    if not key:  # allowed variations, for contrast with the errors around them
        parse(BASE.replace(old, new))
        return
    error = error_of(old, new)
    assert error.file == "T-1.yaml"
    assert error.key == key, str(error)
    assert why in error.why, str(error)


def test_a_chain_of_percentages_coming_back_to_itself():
    text = BASE.replace(
        "      - {id: tax, type: percentage, description: Tax, percent: 5, of: [customer, energy]}",
        "      - {id: tax, type: percentage, description: Tax, percent: 5, of: [customer, fee]}\n"
        "      - {id: fee, type: percentage, description: Fee, percent: 1, of: [tax]}")
    with pytest.raises(RateError) as raised:
        parse(text)
    assert raised.value.key in (f"{V1}.components.tax.of", f"{V1}.components.fee.of")
    assert "fee → tax → fee" in raised.value.why or "tax → fee → tax" in raised.value.why


def test_a_tax_on_a_minimum_covering_the_tax_is_a_cycle():
    text = BASE.replace("of: [customer, energy]}\n    options", "of: [customer, minimum]}\n"
                        "    options").replace("         of: [customer, energy]}",
                                               "         of: [customer, tax]}")
    with pytest.raises(RateError, match="comes back to itself"):
        parse(text)


def test_yaml_problems_are_syntax_errors_with_a_line():
    error = error_of("code: T-1", "code: T-1\ncode: T-2")
    assert error.key == "(syntax)" and "line 3" in error.why and "duplicate key 'code'" in (
        error.why)
    error = error_of("price: 12.00\n", "price: .inf\n")
    assert error.key == "(syntax)" and "not a finite decimal number" in error.why
    error = error_of("amount: 10.00}", "amount: [10.00}")
    assert error.key == "(syntax)" and "line" in error.why


@pytest.mark.parametrize(("text", "why"), [
    ("", "not an empty file"), ("- a\n- b\n", "not a list"), ("42\n", "not a int")])
def test_a_file_that_is_not_a_mapping(text: str, why: str):
    with pytest.raises(RateError) as raised:
        parse(text)
    assert raised.value.key == "(root)" and why in raised.value.why


def test_a_component_that_is_not_a_mapping():
    error = error_of("      - {id: customer, type: fixed, description: Customer charge, "
                     "per: bill, amount: 10.00}", "      - customer")
    assert error.key == f"{V1}.components.0"
    assert "a component is a mapping" in error.why


def test_a_version_without_components_or_a_rate_without_versions():
    text = BASE.split("  - effective: 2026-10-15", maxsplit=1)[0]
    without = text.split("    components:", maxsplit=1)[0] + "    components: []\n"
    with pytest.raises(RateError, match=f"{V1}.components: a version has at least one"):
        parse(without)
    with pytest.raises(RateError, match="versions: a rate has at least one version"):
        parse(BASE.split("versions:", maxsplit=1)[0] + "versions: []\n")


def test_the_file_name_must_be_the_code(tmp_path: Path):
    path = tmp_path / "T-2.yaml"
    path.write_text(BASE, encoding="utf-8")
    with pytest.raises(RateError) as raised:
        load_rate(path)
    assert (raised.value.file, raised.value.key) == (str(path), "code")
    assert "'T-1' is not the file's name ('T-2')" in raised.value.why
    (tmp_path / "T-1.yaml").write_text(BASE, encoding="utf-8")
    assert load_rate(tmp_path / "T-1.yaml").code == "T-1"


def test_an_unreadable_file(tmp_path: Path):
    with pytest.raises(RateError) as raised:
        load_rate(tmp_path / "NOPE.yaml")
    assert raised.value.key == "(file)" and "No such file" in raised.value.why
    (tmp_path / "BIN.yaml").write_bytes(b"code: \xff\xfe")
    with pytest.raises(RateError, match="not UTF-8"):
        load_rate(tmp_path / "BIN.yaml")


# --- the rate book -------------------------------------------------------------------------------


def test_the_book_collects_every_file_s_error(tmp_path: Path):
    (tmp_path / "T-1.yaml").write_text(BASE, encoding="utf-8")
    (tmp_path / "T-2.yaml").write_text(BASE, encoding="utf-8")  # wrong name
    (tmp_path / "T-3.yaml").write_text(BASE.replace("code: T-1", "code: T-3").replace(
        "amount: 10.00}", "amount: ten}"), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a rate", encoding="utf-8")
    with pytest.raises(RateBookError) as raised:
        RateBook.load(tmp_path)
    errors = raised.value.errors
    assert [(Path(e.file).name, e.key) for e in errors] == [
        ("T-2.yaml", "code"), ("T-3.yaml", f"{V1}.components.customer.amount")]
    assert "2 rate file(s) with problems" in str(raised.value)
    assert "T-3.yaml: versions.2026-01-01.components.customer.amount: 'ten'" in str(
        raised.value)


def test_the_book_looks_up_a_code_and_lists_the_known_ones(tmp_path: Path):
    (tmp_path / "T-1.yaml").write_text(BASE, encoding="utf-8")
    book = RateBook.load(tmp_path)
    assert book.rate("T-1").code == "T-1" and "T-1" in book and len(book) == 1
    with pytest.raises(KeyError) as raised:
        book.rate("T-9")
    assert isinstance(raised.value, UnknownRateError)
    assert str(raised.value) == "no rate 'T-9' in the rate book; it has T-1"


def test_an_empty_or_missing_directory_is_an_error(tmp_path: Path):
    with pytest.raises(RateBookError, match="no rate files"):
        RateBook.load(tmp_path)
    with pytest.raises(RateBookError, match="not a directory"):
        RateBook.load(tmp_path / "missing")


def test_the_default_rate_dir_is_the_packaged_tables():
    directory = default_rate_dir()
    assert directory.name == "tables" and directory.parent.name == "rates"
    assert {path.stem for path in directory.glob("*.yaml")} == {
        "RES-E1", "COM-E2", "RES-W1", "RES-G1"}


def test_the_annotated_example_in_the_schema_documentation_loads():
    import hub.rates.schema as schema

    doc = schema.__doc__
    example = doc[doc.index("    code: RES-E1"):doc.index("Example::")]
    text = "\n".join(line[4:] for line in example.splitlines())
    text = text.replace("[*row, …]", ROWS)
    rate = parse_rate(text, "RES-E1.yaml")
    assert [c.id for c in rate.versions[0].components] == [
        "customer", "energy", "delivery", "demand", "minimum", "tax", "wastewater"]
    assert set(rate.versions[0].options) == {"senior", "low_income"}
