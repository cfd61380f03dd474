"""URDB import: tariffs round-trip exactly, bills match hand arithmetic, the rest is refused.

The sample tariffs in ``tests/data/urdb`` are written by hand in the shape of
URDB API v7 answers (``{"items": [tariff]}``) and single tariff objects. The
round trip walks the URDB input and the loaded :class:`RateTable` side by
side: every tier bound, price (``rate + adj``), schedule cell, fixed charge,
minimum and demand price must be the one the tariff gives.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hub.billing import BillingError, Determinants, compute_bill
from hub.rates import RateTable, load_rate, parse_rate, urdb
from hub.rates.model import Demand, Fixed, MinimumBill, Tiered, TimeOfUse
from hub.rates.urdb import (
    UnsupportedTariff,
    UrdbError,
    convert,
    import_urdb,
    notes,
    parse_tariff,
    read_tariff,
)
from hub.rates_cli import rates_app

D = Decimal
DATA = Path(__file__).parent / "data" / "urdb"
NO_LIMIT = D("1E+30")
JULY = (date(2025, 7, 1), date(2025, 7, 31))
JANUARY = (date(2025, 1, 1), date(2025, 1, 31))


def sample(name: str) -> dict[str, Any]:
    return read_tariff(DATA / f"{name}.json")


def rate_of(tariff: dict[str, Any], code: str = "URDB-1", **kwargs: Any) -> RateTable:
    return parse_rate(convert(tariff, code=code, source="test.json", **kwargs), f"{code}.yaml")


def flat(period: int = 0) -> list[list[int]]:
    return [[period] * 24 for _ in range(12)]


def tariff(**fields: Any) -> dict[str, Any]:
    """A small valid tariff (one period, one price) with ``fields`` replaced or added."""
    base: dict[str, Any] = {"label": "5f0000000000000000000001", "utility": "Test Utility",
                            "name": "Test Rate", "startdate": 1704096000,
                            "energyratestructure": [[{"unit": "kWh", "rate": D("0.1")}]],
                            "energyweekdayschedule": flat(), "energyweekendschedule": flat()}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def bill(rate: RateTable, period: tuple[date, date], use: Decimal | None = None,
         **kwargs: Any) -> dict[str, tuple[Decimal, Decimal]]:
    consumption = {} if use is None else {"energy_import_kwh": use}
    result = compute_bill(Determinants("AC-1", rate.code, (), *period, consumption, **kwargs),
                          rate)
    lines = {line.code: (line.quantity, line.amount) for line in result.lines}
    assert result.total == sum(amount for _, amount in lines.values())
    lines["total"] = (D(0), result.total)
    return lines


# --- the round trip, walked independently of the importer ------------------------------------


def urdb_tiers(period: list[dict[str, Any]]) -> list[tuple[Decimal | None, Decimal]]:
    """``(up_to, price)`` as the tariff means them: max (no limit on the last), rate + adj."""
    tiers = []
    for index, tier in enumerate(period):
        bound = tier.get("max")
        if bound is not None and index == len(period) - 1 and D(bound) >= NO_LIMIT:
            bound = None
        price = D(tier.get("rate") or 0) + D(tier.get("adj") or 0)
        tiers.append((None if bound is None else D(bound), price))
    return tiers


def our_tiers(tiers: tuple) -> list[tuple[Decimal | None, Decimal]]:
    return [(tier.up_to, tier.price) for tier in tiers]


def assert_round_trip(source: dict[str, Any], rate: RateTable) -> None:
    assert (rate.service, rate.unit, rate.register, rate.currency) == (
        "electric", "kWh", "energy_import_kwh", "USD")
    assert len(rate.versions) == 1
    version = rate.versions[0]
    start = source.get("startdate")
    assert version.effective == (date(2000, 1, 1) if start is None else
                                 datetime.fromtimestamp(start, UTC).date())
    end = source.get("enddate")
    assert version.ends == (None if end is None else datetime.fromtimestamp(end, UTC).date())
    ids = [component.id for component in version.components]

    fixed = D(source.get("fixedchargefirstmeter") or 0)
    if fixed:
        customer = version.component("customer")
        assert isinstance(customer, Fixed)
        assert customer.amount == fixed
        assert customer.per == {"$/month": "bill", "$/day": "day"}[
            source.get("fixedchargeunits", "$/month")]
    else:
        assert "customer" not in ids

    structure = source["energyratestructure"]
    weekday = source.get("energyweekdayschedule", flat())
    weekend = source.get("energyweekendschedule", flat())
    energy = version.component("energy")
    for month in range(12):
        for hour in range(24):
            if isinstance(energy, TimeOfUse):
                for ours, theirs in ((energy.weekday, weekday), (energy.weekend, weekend)):
                    index = theirs[month][hour]
                    assert ours[month][hour] == f"period_{index + 1}"
                    period = energy.period(ours[month][hour])
                    assert our_tiers(period.blocks.tiers) == urdb_tiers(structure[index])
            else:
                assert isinstance(energy, Tiered)
                index = weekday[month][hour]
                assert weekend[month][hour] == index == weekday[month][0]
                assert our_tiers(energy.blocks.tiers_in(month + 1)) == urdb_tiers(
                    structure[index])
    if isinstance(energy, TimeOfUse):
        assert [p.name for p in energy.periods] == [
            f"period_{n + 1}" for n in range(len(structure))]
        for number, period in enumerate(structure):
            assert our_tiers(energy.periods[number].blocks.tiers) == urdb_tiers(period)
        assert energy.fallback is None
    else:
        used = {row[0] for row in weekday}  # a period no month uses is not imported
        daily = {tier.get("unit") == "kWh daily" for index in used
                 for tier in structure[index]
                 if tier.get("max") is not None and D(tier["max"]) < NO_LIMIT}
        assert energy.scale == ("days" if True in daily else "bill")
        assert energy.standard_days == (1 if True in daily else None)

    demand_structure = source.get("flatdemandstructure") or []
    months = source.get("flatdemandmonths") or [0] * 12
    if demand_structure and any(price for m in range(12)
                                for _, price in urdb_tiers(demand_structure[months[m]])):
        demand = version.component("demand")
        assert isinstance(demand, Demand)
        for month in range(12):
            assert our_tiers(demand.blocks.tiers_in(month + 1)) == urdb_tiers(
                demand_structure[months[month]])
        if source.get("lookbackpercent"):
            assert demand.ratchet is not None
            assert demand.ratchet.percent == D(source["lookbackpercent"]) * 100
            assert demand.ratchet.months == source["lookbackrange"]
        else:
            assert demand.ratchet is None
    else:
        assert "demand" not in ids

    minimum = D(source.get("mincharge") or 0)
    if minimum:
        component = version.component("minimum")
        assert isinstance(component, MinimumBill)
        assert component.amount == minimum
        assert component.per == {"$/month": "bill", "$/day": "day"}[
            source.get("minchargeunits", "$/month")]
        assert component.of == tuple(cid for cid in ids if cid != "minimum")
    else:
        assert "minimum" not in ids


# --- the samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["res_tiered", "tou_seasonal", "commercial_demand",
                                  "seasonal_tiered"])
def test_every_sample_round_trips_exactly(name):
    source = sample(name)
    assert_round_trip(source, rate_of(source))


def test_a_flat_tiered_tariff_becomes_a_tiered_component():
    version = rate_of(sample("res_tiered")).versions[0]
    assert [(c.id, c.type) for c in version.components] == [("customer", "fixed"),
                                                            ("energy", "tiered")]
    energy = version.component("energy")
    assert our_tiers(energy.blocks.tiers) == [(D(600), D("0.1110")), (None, D("0.1265"))]
    assert (str(energy.blocks.tiers[0].price), energy.scale) == ("0.1110", "bill")
    assert version.component("customer").amount == D("25.5")


def test_a_tou_tariff_keeps_its_periods_schedules_and_dates():
    rate = rate_of(sample("tou_seasonal"))
    version = rate.versions[0]
    assert (version.effective, version.ends) == (date(2025, 1, 1), date(2025, 12, 31))
    energy = version.component("energy")
    assert [(p.name, p.register, p.blocks.tiers[0].price) for p in energy.periods] == [
        ("period_1", "energy_import_kwh_period_1", D("0.2420")),
        ("period_2", "energy_import_kwh_period_2", D("0.1087")),
        ("period_3", "energy_import_kwh_period_3", D("0.1753")),
        ("period_4", "energy_import_kwh_period_4", D("0.0979"))]
    assert energy.weekday[6][14:20] == ("period_1",) * 6          # July, 14:00–20:00
    assert energy.weekday[0][17] == "period_3"                    # January 17:00
    assert set(energy.weekend[6]) == {"period_2"}
    assert version.component("customer").per == "day"
    assert version.component("minimum").of == ("customer", "energy")


def test_months_with_one_period_each_become_seasons_with_daily_bounds():
    energy = rate_of(sample("seasonal_tiered")).versions[0].component("energy")
    assert isinstance(energy, Tiered)
    assert (energy.scale, energy.standard_days) == ("days", 1)
    assert [(s.name, s.months) for s in energy.blocks.seasons] == [
        ("period_1", (6, 7, 8, 9)), ("period_2", (1, 2, 3, 4, 5, 10, 11, 12))]
    assert notes(sample("seasonal_tiered")) == (
        "energyratestructure: period_3 defined but no month uses it; not imported",)


def test_flat_demand_by_month_becomes_seasonal_demand_with_its_ratchet():
    version = rate_of(sample("commercial_demand")).versions[0]
    demand = version.component("demand")
    assert [(s.name, s.months, our_tiers(s.tiers)) for s in demand.blocks.seasons] == [
        ("period_1", (1, 2, 3, 4, 5, 10, 11, 12), [(None, D("8.5"))]),
        ("period_2", (6, 7, 8, 9), [(D(50), D("12.25")), (None, D("10.75"))])]
    assert (demand.ratchet.percent, demand.ratchet.months) == (D(80), 11)
    assert version.component("minimum").of == ("customer", "energy", "demand")


def test_the_header_says_where_the_rate_came_from():
    text = convert(sample("tou_seasonal"), code="RES-TOU", source="tou_seasonal.json")
    header = text.split("\ncode:")[0]
    for words in ("Source: tou_seasonal.json", "Utility: Sunvale Power & Light Co",
                  "Name: Residential Time-of-Use (TOU-R)", "Label: 67b2e1d45457a3c9a40f1e22",
                  "URL: https://apps.openei.org/USURDB/rate/view/67b2e1d45457a3c9a40f1e22",
                  "Effective: 2025-01-01", "interval data", "Note: dgrules: Net Metering"):
        assert words in header
    assert all(line.startswith("#") for line in header.splitlines())
    assert 'description: "Sunvale Power & Light Co — Residential Time-of-Use (TOU-R)"' in text


def test_a_tariff_without_startdate_takes_effect_on_2000_01_01():
    text = convert(tariff(startdate=None), code="T", source="t.json")
    assert "2000-01-01 (the tariff has no startdate" in text
    assert parse_rate(text, "T.yaml").versions[0].effective == date(2000, 1, 1)


def test_converting_twice_gives_identical_bytes(tmp_path):
    for name in ("tou_seasonal", "commercial_demand", "seasonal_tiered", "res_tiered"):
        first = convert(sample(name), code="X", source=f"{name}.json")
        assert convert(sample(name), code="X", source=f"{name}.json") == first
    one = import_urdb(DATA / "tou_seasonal.json", code="X", out_dir=tmp_path / "a")
    two = import_urdb(DATA / "tou_seasonal.json", code="X", out_dir=tmp_path / "b")
    assert one.read_bytes() == two.read_bytes()


# --- exact numbers ------------------------------------------------------------------------------


def test_prices_are_the_decimals_written_in_the_json():
    text = json.dumps(tariff(energyratestructure=[[{"rate": "R", "adj": "A"}]]))
    text = text.replace('"R"', "0.1").replace('"A"', "0.2")
    energy = rate_of(parse_tariff(text, "t.json")).versions[0].component("energy")
    assert energy.blocks.tiers[0].price == D("0.3")           # 0.1 + 0.2 in floats is not 0.3
    long = text.replace("0.1,", "0.123456789012345678901234567890123,")
    energy = rate_of(parse_tariff(long, "t.json")).versions[0].component("energy")
    assert energy.blocks.tiers[0].price == D("0.323456789012345678901234567890123")


def test_a_binary_float_is_refused_not_rounded():
    with pytest.raises(UrdbError) as raised:
        convert(tariff(fixedchargefirstmeter=12.5), code="T", source="t.json")
    assert raised.value.field == "fixedchargefirstmeter"
    assert "binary float" in raised.value.why


# --- bills from converted rates, worked by hand ------------------------------------------------


def test_bill_on_the_flat_tiered_rate():
    # 750 kWh in January: 600 × 0.1110 = 66.60, 150 × 0.1265 = 18.975 → 18.98; + 25.50
    lines = bill(rate_of(sample("res_tiered")), JANUARY, D(750))
    assert lines == {"customer": (D(1), D("25.50")), "energy:tier1": (D(600), D("66.60")),
                     "energy:tier2": (D(150), D("18.98")), "total": (D(0), D("111.08"))}


def test_bill_on_the_tou_rate_from_intervals():
    # July 2025 (UTC): Tue 1st 15:00 2.0 and Mon 7th 19:00 1.0 are summer on-peak (period_1,
    # 0.2420): 3.0 → 0.726 → 0.73; Tue 03:00 1.5 and Sat 5th 16:00 4.0 are off-peak (period_2,
    # 0.1087): 5.5 → 0.59785 → 0.60; 31 days × 0.4932 = 15.2892 → 15.29. 16.62 ≥ the 10.00
    # minimum: no minimum line.
    intervals = ((datetime(2025, 7, 1, 15, tzinfo=UTC), D("2.0")),
                 (datetime(2025, 7, 1, 3, tzinfo=UTC), D("1.5")),
                 (datetime(2025, 7, 5, 16, tzinfo=UTC), D("4.0")),
                 (datetime(2025, 7, 7, 19, tzinfo=UTC), D("1.0")))
    lines = bill(rate_of(sample("tou_seasonal")), JULY, intervals=intervals)
    assert lines == {"customer": (D(31), D("15.29")),
                     "energy:period_1": (D("3.0"), D("0.73")),
                     "energy:period_2": (D("5.5"), D("0.60")),
                     "energy:period_3": (D(0), D("0.00")), "energy:period_4": (D(0), D("0.00")),
                     "total": (D(0), D("16.62"))}


def test_a_tou_rate_without_intervals_is_a_billing_error_naming_the_period_registers():
    with pytest.raises(BillingError, match=r"energy_import_kwh_period_1.*\(or interval data\)"):
        bill(rate_of(sample("tou_seasonal")), JULY, D(500))


def test_period_registers_name_the_meters_tou_registers():
    registers = {n: f"energy_import_kwh_t{n}" for n in range(1, 5)}
    rate = rate_of(sample("tou_seasonal"), period_registers=registers)
    energy = rate.versions[0].component("energy")
    assert [p.register for p in energy.periods] == list(registers.values())
    # 100 kWh on t1 × 0.2420 = 24.20, 300 on t2 × 0.1087 = 32.61, + 15.29 → 72.10
    consumption = {"energy_import_kwh_t1": D(100), "energy_import_kwh_t2": D(300),
                   "energy_import_kwh_t3": D(0), "energy_import_kwh_t4": D(0)}
    result = compute_bill(Determinants("AC-1", rate.code, (), *JULY, consumption), rate)
    assert result.total == D("72.10")


@pytest.mark.parametrize(("registers", "why"), [
    ({1: "energy_import_kwh_t1"}, "every period or none; missing: 2, 3, 4"),
    ({n: "energy_import_kwh_t1" for n in range(1, 5)}, "its own TOU register"),
    ({n: f"t{n}" for n in range(0, 4)}, "period 0"),
    ({n: f"T {n}" for n in range(1, 5)}, "not a register name"),
])
def test_period_registers_are_checked(registers, why):
    with pytest.raises(UrdbError, match=why):
        convert(sample("tou_seasonal"), code="X", source="t.json", period_registers=registers)


def test_bills_on_the_demand_rate():
    rate = rate_of(sample("commercial_demand"))
    # July: 10 000 kWh × 0.0850 = 850.00; 80 kW in summer: 50 × 12.25 = 612.50 and
    # 30 × 10.75 = 322.50; + 45.00 → 1 830.00
    assert bill(rate, JULY, D(10000), demand_kw=D(80)) == {
        "customer": (D(1), D("45.00")), "energy": (D(10000), D("850.00")),
        "demand:period_2:tier1": (D(50), D("612.50")),
        "demand:period_2:tier2": (D(30), D("322.50")), "total": (D(0), D("1830.00"))}
    # January, little use: 45.00 + 100 × 0.0850 = 8.50 + 2 kW × 8.50 = 17.00 → 70.50; the
    # 75.00 minimum adds 4.50
    assert bill(rate, JANUARY, D(100), demand_kw=D(2)) == {
        "customer": (D(1), D("45.00")), "energy": (D(100), D("8.50")),
        "demand:period_1": (D(2), D("17.00")), "minimum": (D("70.50"), D("4.50")),
        "total": (D(0), D("75.00"))}
    # the ratchet: 50 kW now, 100 kW last summer → 80 % of 100 = 80 kW × 8.50 = 680.00
    lines = bill(rate, JANUARY, D(100), demand_kw=D(50), demand_history=(D(100),))
    assert lines["demand:period_1"] == (D(80), D("680.00"))
    assert lines["total"] == (D(0), D("733.50"))


def test_bill_on_daily_tier_bounds():
    # July, 31 days: bounds 17 × 31 = 527 and 34 × 31 = 1 054 kWh. 1 200 kWh:
    # 527 × 0.105 = 55.335 → 55.34; 527 × 0.138 = 72.726 → 72.73; 146 × 0.162 = 23.652 → 23.65;
    # 31 × 0.32854 = 10.18474 → 10.18; total 161.90
    lines = bill(rate_of(sample("seasonal_tiered")), JULY, D(1200))
    assert lines == {"customer": (D(31), D("10.18")),
                     "energy:period_1:tier1": (D(527), D("55.34")),
                     "energy:period_1:tier2": (D(527), D("72.73")),
                     "energy:period_1:tier3": (D(146), D("23.65")),
                     "total": (D(0), D("161.90"))}


# --- refused: every reason, each naming its field ------------------------------------------


def test_an_unsupported_tariff_lists_every_reason():
    with pytest.raises(UnsupportedTariff) as raised:
        convert(sample("unsupported"), code="LP", source="unsupported.json")
    fields = [where for where, _ in raised.value.reasons]
    assert fields == [
        "energyratestructure[0][0].unit", "energyratestructure[0][0].sell (and 2 more)",
        "energyratestructure[0]", "fixedchargeunits", "minchargeunits", "flatdemandunit",
        "lookbackmonths", "demandratestructure", "coincidentratestructure",
        "fueladjustmentsmonthly"]
    error = raised.value
    assert (error.file, error.field) == ("unsupported.json", "(tariff)")
    assert isinstance(error, UrdbError)
    assert "10 unsupported feature(s)" in str(error)
    assert "  demandratestructure: time-of-use demand charges are not supported" in str(error)


TOU_ROWS = [[0 if 12 <= hour < 18 else 1 for hour in range(24)] for _ in range(12)]


@pytest.mark.parametrize(("fields", "where", "why"), [
    ({"demandratestructure": [[{"rate": D("12.5")}]]}, "demandratestructure",
     "time-of-use demand charges"),
    ({"coincidentratestructure": [[{"rate": 3}]]}, "coincidentratestructure", "coincident"),
    ({"energyratestructure": [[{"max": 200, "unit": "kWh/kW", "rate": D("0.1")},
                               {"rate": D("0.08")}]]},
     "energyratestructure[0][0].unit", "'kWh/kW' tiers"),
    ({"energyratestructure": [[{"max": 6, "unit": "kWh/kW daily", "rate": D("0.1")},
                               {"rate": D("0.08")}]]},
     "energyratestructure[0][0].unit", "'kWh/kW daily' tiers"),
    ({"energyratestructure": [[{"max": 6, "unit": "therms", "rate": D("0.1")},
                               {"rate": D("0.08")}]]},
     "energyratestructure[0][0].unit", "not a tier unit"),
    ({"energyratestructure": [[{"rate": D("0.1"), "sell": D("0.04")}]]},
     "energyratestructure[0][0].sell", "sell rates (net metering"),
    ({"energyratestructure": [[{"rate": D("0.1"), "adj": D("-0.2")}]]},
     "energyratestructure[0][0].rate", "rate + adj is -0.1: credits"),
    ({"energyratestructure": [[{"max": 500, "rate": D("0.1")}]]},
     "energyratestructure[0][0].max", "the last tier ends at 500"),
    ({"energyratestructure": [[{"max": 10, "unit": "kWh daily", "rate": D("0.1")},
                               {"rate": D("0.2")}],
                              [{"max": 300, "unit": "kWh", "rate": D("0.1")},
                               {"rate": D("0.2")}]],
      "energyweekdayschedule": [[m % 2] * 24 for m in range(12)],
      "energyweekendschedule": [[m % 2] * 24 for m in range(12)]},
     "energyratestructure", "'kWh' and 'kWh daily'"),
    ({"energyratestructure": [[{"max": 300, "rate": D("0.2")}, {"rate": D("0.3")}],
                              [{"rate": D("0.1")}]],
      "energyweekdayschedule": TOU_ROWS, "energyweekendschedule": flat(1)},
     "energyratestructure[0]", "tiers within time-of-use periods are not supported"),
    ({"fixedchargefirstmeter": 120, "fixedchargeunits": "$/year"}, "fixedchargeunits",
     "annual charges"),
    ({"fixedchargefirstmeter": 12, "fixedchargeunits": "$/week"}, "fixedchargeunits",
     "not a unit this importer knows"),
    ({"fixedchargefirstmeter": -5}, "fixedchargefirstmeter", "credits"),
    ({"mincharge": 240, "minchargeunits": "$/year"}, "minchargeunits", "annual minimum"),
    ({"fixedchargeeaaddl": 8}, "fixedchargeeaaddl", "per additional meter"),
    ({"flatdemandstructure": [[{"rate": 9}]], "flatdemandunit": "hp"}, "flatdemandunit",
     "'hp'"),
    ({"flatdemandstructure": [[{"rate": 9, "unit": "kVA"}]]},
     "flatdemandstructure[0][0].unit", "demand tiers in 'kVA'"),
    ({"flatdemandstructure": [[{"rate": 9}]], "lookbackpercent": D("0.8"),
      "lookbackrange": 12, "lookbackmonths": [True] * 6 + [False] * 6}, "lookbackmonths",
     "only some months"),
    ({"flatdemandstructure": [[{"rate": 9}]], "lookbackpercent": D("0.8")}, "lookbackrange",
     "none given"),
    ({"lookbackpercent": D("0.8"), "lookbackrange": 11}, "lookbackpercent",
     "without a flat demand charge"),
    ({"fueladjustmentsmonthly": [D("0.004")] * 12}, "fueladjustmentsmonthly",
     "monthly fuel adjustments"),
    ({"demandreactivepowercharge": D("0.35")}, "demandreactivepowercharge", "reactive power"),
    ({"country": "CAN"}, "country", "only US tariffs"),
])
def test_each_unsupported_feature_is_named_with_its_field(fields, where, why):
    with pytest.raises(UnsupportedTariff) as raised:
        convert(tariff(**fields), code="T", source="t.json")
    assert len(raised.value.reasons) == 1
    (found_where, found_why), = raised.value.reasons
    assert found_where == where
    assert why in found_why


def test_zero_priced_structures_are_left_out_not_refused():
    source = tariff(demandratestructure=[[{"rate": 0}], [{"rate": 0, "adj": 0}]],
                    flatdemandstructure=[[{"rate": 0}]], flatdemandmonths=[0] * 12,
                    fueladjustmentsmonthly=[0] * 12, fixedchargefirstmeter=0, mincharge=0)
    version = rate_of(source).versions[0]
    assert [c.id for c in version.components] == ["energy"]
    assert any("flatdemandstructure: every price is 0" in note for note in notes(source))


def test_a_no_limit_max_on_the_last_tier_is_no_bound():
    source = tariff(energyratestructure=[[{"max": 500, "rate": D("0.1")},
                                          {"max": D("1E+38"), "rate": D("0.12")}]])
    assert our_tiers(rate_of(source).versions[0].component("energy").blocks.tiers) == [
        (D(500), D("0.1")), (None, D("0.12"))]


# --- malformed: one error, naming the field ------------------------------------------------


@pytest.mark.parametrize(("fields", "where", "why"), [
    ({"name": None}, "name", "required"),
    ({"utility": None}, "utility", "required"),
    ({"name": 7}, "name", "must be text"),
    ({"energyratestructure": None}, "energyratestructure", "required"),
    ({"energyratestructure": []}, "energyratestructure", "no periods"),
    ({"energyratestructure": [[]]}, "energyratestructure[0]", "no tiers"),
    ({"energyratestructure": [["0.1"]]}, "energyratestructure[0][0]", "a tier is an object"),
    ({"energyratestructure": [[{"unit": "kWh"}]]}, "energyratestructure[0][0].rate",
     "required"),
    ({"energyratestructure": [[{"rate": "0.1"}]]}, "energyratestructure[0][0].rate",
     "must be a number"),
    ({"energyratestructure": [[{"rate": True}]]}, "energyratestructure[0][0].rate",
     "must be a number"),
    ({"energyratestructure": [[{"max": 500, "rate": 1}, {"max": 400, "rate": 1},
                               {"rate": 1}]]},
     "energyratestructure[0][1].max", "not above the previous tier's 500"),
    ({"energyratestructure": [[{"rate": 1}, {"rate": 2}]]}, "energyratestructure[0][0].max",
     "every tier but the last"),
    ({"energyratestructure": [[{"max": 0, "rate": 1}, {"rate": 2}]]},
     "energyratestructure[0][0].max", "not a tier bound"),
    ({"energyweekdayschedule": flat()[:11]}, "energyweekdayschedule", "11 rows"),
    ({"energyweekendschedule": [[0] * 23, *flat()[1:]]}, "energyweekendschedule[0]",
     "23 hours"),
    ({"energyweekdayschedule": [[0] * 17 + [1] + [0] * 6, *flat()[1:]]},
     "energyweekdayschedule[0][17]", "period index 1, but energyratestructure has 1"),
    ({"energyweekdayschedule": [[True] * 24, *flat()[1:]]}, "energyweekdayschedule[0][0]",
     "whole number"),
    ({"energyratestructure": [[{"rate": 1}], [{"rate": 2}]],
      "energyweekdayschedule": None}, "energyweekdayschedule", "required"),
    ({"startdate": "2024-01-01"}, "startdate", "whole number"),
    ({"enddate": 1600000000}, "enddate", "before the tariff starts"),
    ({"flatdemandstructure": [[{"rate": 9}], [{"rate": 12}]]}, "flatdemandmonths",
     "required"),
    ({"flatdemandstructure": [[{"rate": 9}]], "flatdemandmonths": [0] * 11},
     "flatdemandmonths", "11 entries"),
    ({"flatdemandstructure": [[{"rate": 9}]], "flatdemandmonths": [0] * 11 + [2]},
     "flatdemandmonths[11]", "period index 2"),
    ({"flatdemandstructure": [[{"rate": 9}]], "lookbackpercent": 80, "lookbackrange": 11},
     "lookbackpercent", "not a fraction"),
    ({"fixedchargefirstmeter": D("1E+40")}, "fixedchargefirstmeter", "out of range"),
])
def test_a_malformed_tariff_names_the_field(fields, where, why):
    with pytest.raises(UrdbError) as raised:
        convert(tariff(**fields), code="T", source="t.json")
    assert not isinstance(raised.value, UnsupportedTariff)
    assert (raised.value.file, raised.value.field) == ("t.json", where)
    assert why in raised.value.why
    assert str(raised.value) == f"t.json: {where}: {raised.value.why}"


@pytest.mark.parametrize(("text", "where", "why"), [
    ('{"name": "x", ', "(syntax)", "line 1, column"),
    ('{"name": "a", "name": "b"}', "(syntax)", "key 'name' written twice"),
    ('{"fixedchargefirstmeter": NaN}', "(syntax)", "NaN is not a number"),
    ("[1, 2]", "(root)", "not a list"),
    ('{"items": []}', "items", "no tariffs"),
    ('{"items": {"a": 1}}', "items", "list of tariff objects"),
])
def test_unreadable_json_is_an_error_saying_where(text, where, why):
    with pytest.raises(UrdbError) as raised:
        parse_tariff(text, "t.json")
    assert raised.value.field == where
    assert why in raised.value.why


def test_an_api_answer_is_unwrapped_and_label_picks_among_several():
    assert parse_tariff(json.dumps({"items": [{"label": "a", "x": 1}]}), "t")["x"] == 1
    answer = read_tariff(DATA / "two_items.json", label="61a0000000000000000000bb")
    assert answer["name"] == "Irrigation (Schedule I)"
    with pytest.raises(UrdbError, match="2 tariffs; choose one with --label"):
        read_tariff(DATA / "two_items.json")
    with pytest.raises(UrdbError, match="no tariff labelled 'zz'; the labels are 61a0"):
        read_tariff(DATA / "two_items.json", label="zz")
    with pytest.raises(UrdbError, match="labelled '66a1f0c25457a3a1b20d7c11', not 'zz'"):
        read_tariff(DATA / "res_tiered.json", label="zz")


def test_a_missing_file_is_an_error_on_the_file(tmp_path):
    with pytest.raises(UrdbError) as raised:
        read_tariff(tmp_path / "nope.json")
    assert raised.value.field == "(file)"


def test_a_bad_rate_code_is_refused():
    with pytest.raises(UrdbError, match="not a rate code"):
        convert(tariff(), code="RES E1", source="t.json")


# --- import_urdb ------------------------------------------------------------------------------


def test_import_writes_a_file_that_loads_and_refuses_to_overwrite(tmp_path):
    path = import_urdb(DATA / "commercial_demand.json", code="GS-2", out_dir=tmp_path)
    assert path == tmp_path / "GS-2.yaml"
    assert_round_trip(sample("commercial_demand"), load_rate(path))
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        import_urdb(DATA / "res_tiered.json", code="GS-2", out_dir=tmp_path)
    assert path.read_bytes() == before
    import_urdb(DATA / "res_tiered.json", code="GS-2", out_dir=tmp_path, overwrite=True)
    assert load_rate(path).description.startswith("Riverbend")


def test_import_errors_name_the_file_given(tmp_path):
    with pytest.raises(UnsupportedTariff) as raised:
        import_urdb(DATA / "unsupported.json", code="LP", out_dir=tmp_path)
    assert raised.value.file == str(DATA / "unsupported.json")
    assert not (tmp_path / "LP.yaml").exists()


def test_a_conversion_the_schema_refuses_is_an_error_not_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(urdb, "convert", lambda *args, **kwargs: "code: [broken\n")
    with pytest.raises(UrdbError) as raised:
        import_urdb(DATA / "res_tiered.json", code="R", out_dir=tmp_path)
    assert raised.value.field == "(conversion)"
    assert "a bug in the importer" in raised.value.why
    assert not (tmp_path / "R.yaml").exists()


# --- the CLI ----------------------------------------------------------------------------------


app = typer.Typer()
app.add_typer(rates_app, name="rates")


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["rates", *map(str, args)])

    return invoke


def test_import_urdb_writes_the_rate_and_says_what_it_converted(run, tmp_path):
    result = run("import-urdb", DATA / "tou_seasonal.json", "--code", "RES-TOU",
                 "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert_round_trip(sample("tou_seasonal"), load_rate(tmp_path / "RES-TOU.yaml"))
    for words in (f"wrote {tmp_path / 'RES-TOU.yaml'}", "in force 2025-01-01 … 2025-12-31",
                  "customer: fixed charge 0.4932 per day",
                  "time-of-use energy, 4 period(s): period_1 at 0.2420",
                  "weekday and weekend schedules 12 × 24", "no fallback price",
                  "minimum: minimum charge 10 per bill over customer, energy",
                  "note: dgrules: Net Metering"):
        assert words in result.output
    result = run("import-urdb", DATA / "commercial_demand.json", "--code", "GS-2",
                 "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "ratchet 80 % of the highest demand of the last 11 months" in result.output
    assert "period_2 (months 6, 7, 8, 9) 0–50 kW at 12.25, over 50 kW at 10.75" in result.output


def test_import_urdb_will_not_overwrite_without_force(run, tmp_path):
    args = ("import-urdb", DATA / "res_tiered.json", "--code", "R", "--out", tmp_path)
    assert run(*args).exit_code == 0
    result = run(*args)
    assert result.exit_code == 2
    assert "exists; --force replaces it" in result.output
    assert run(*args, "--force").exit_code == 0


def test_import_urdb_lists_every_unsupported_reason_and_exits_1(run, tmp_path):
    result = run("import-urdb", DATA / "unsupported.json", "--code", "LP", "--out", tmp_path)
    assert result.exit_code == 1
    assert "cannot import: 10 unsupported feature(s)" in result.output
    for where in ("energyratestructure[0][0].unit", "fixedchargeunits", "minchargeunits",
                  "demandratestructure", "coincidentratestructure", "lookbackmonths",
                  "fueladjustmentsmonthly", "flatdemandunit"):
        assert f"  {where}" in result.output
    assert list(tmp_path.iterdir()) == []


def test_import_urdb_exits_2_on_unreadable_or_malformed_input(run, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"items": [')
    result = run("import-urdb", broken, "--code", "X", "--out", tmp_path)
    assert result.exit_code == 2
    assert "broken.json: (syntax): line 1" in result.output
    missing = run("import-urdb", tmp_path / "none.json", "--code", "X", "--out", tmp_path)
    assert missing.exit_code == 2
    nameless = tmp_path / "nameless.json"
    nameless.write_text(json.dumps({"utility": "U", "energyratestructure": [[{"rate": 1}]]}))
    result = run("import-urdb", nameless, "--code", "X", "--out", tmp_path)
    assert result.exit_code == 2
    assert "nameless.json: name: required" in result.output
    assert not (tmp_path / "X.yaml").exists()


def test_import_urdb_label_chooses_among_several(run, tmp_path):
    result = run("import-urdb", DATA / "two_items.json", "--code", "SC", "--out", tmp_path)
    assert result.exit_code == 2
    assert "61a0000000000000000000aa, 61a0000000000000000000bb" in result.output
    result = run("import-urdb", DATA / "two_items.json", "--code", "SC", "--out", tmp_path,
                 "--label", "61a0000000000000000000aa")
    assert result.exit_code == 0, result.output
    assert "Small Commercial" in load_rate(tmp_path / "SC.yaml").description


def test_import_urdb_register_options(run, tmp_path):
    args = ["import-urdb", DATA / "tou_seasonal.json", "--code", "T", "--out", tmp_path]
    mapped = [x for n in range(1, 5) for x in ("--register", f"{n}=energy_import_kwh_t{n}")]
    result = run(*args, *mapped)
    assert result.exit_code == 0, result.output
    energy = load_rate(tmp_path / "T.yaml").versions[0].component("energy")
    assert energy.periods[3].register == "energy_import_kwh_t4"
    assert run(*args, "--force", "--register", "one=t1").exit_code == 2
    partial = run(*args, "--force", "--register", "1=energy_import_kwh_t1")
    assert partial.exit_code == 2
    assert "every period or none" in partial.output


def test_check_lists_rates_versions_and_components(run, tmp_path):
    run("import-urdb", DATA / "commercial_demand.json", "--code", "GS-2", "--out", tmp_path)
    result = run("check", tmp_path)
    assert result.exit_code == 0, result.output
    assert "1 rate(s) in" in result.output
    assert "GS-2 (electric, kWh, USD): Sunvale Power & Light Co" in result.output
    assert ("2024-01-01 …: customer fixed, energy tiered, demand demand, minimum minimum"
            in result.output)
    shipped = run("check")
    assert shipped.exit_code == 0
    for code in ("COM-E2", "RES-E1", "RES-G1", "RES-W1"):
        assert code in shipped.output


def test_check_exits_2_listing_every_files_problem(run, tmp_path):
    (tmp_path / "A.yaml").write_text("code: A\n")
    (tmp_path / "B.yaml").write_text("code: [\n")
    result = run("check", tmp_path)
    assert result.exit_code == 2
    assert "2 rate file(s) with problems" in result.output
    assert "A.yaml: service: required" in result.output
    assert "B.yaml: (syntax)" in result.output


# --- property: generated URDB-shaped tariffs convert and round-trip -------------------------


prices = st.decimals(min_value=0, max_value=2, places=4, allow_nan=False, allow_infinity=False)
adjustments = st.one_of(st.none(), st.decimals(min_value=0, max_value=D("0.05"), places=4,
                                               allow_nan=False, allow_infinity=False))
charges = st.one_of(st.none(), st.decimals(min_value=D("0.01"), max_value=500, places=5,
                                           allow_nan=False, allow_infinity=False))


@st.composite
def periods(draw: st.DrawFn, count: int, unit: str | None,
            tier_counts: st.SearchStrategy[int]) -> list[list[dict[str, Any]]]:
    built = []
    for _ in range(count):
        tiers = draw(tier_counts)
        bounds = sorted(draw(st.sets(st.decimals(min_value=1, max_value=5000, places=1,
                                                 allow_nan=False, allow_infinity=False),
                                     min_size=tiers - 1, max_size=tiers - 1)))
        period = []
        for index in range(tiers):
            tier: dict[str, Any] = {"rate": draw(prices)}
            adj = draw(adjustments)
            if adj is not None:
                tier["adj"] = adj
            if unit is not None:
                tier["unit"] = unit
            if index < tiers - 1:
                tier["max"] = bounds[index]
            period.append(tier)
        built.append(period)
    return built


@st.composite
def urdb_tariffs(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    unit = draw(st.sampled_from([None, "kWh", "kWh daily"]))
    seasonal = draw(st.booleans())
    # a TOU tariff's periods have one tier (more is refused, tested below); seasons have 1–4
    tier_counts = st.integers(1, 4) if seasonal else st.sampled_from([1, 1, 1, 2])
    structure = draw(periods(count, unit, tier_counts))
    cells = st.integers(0, count - 1)
    if seasonal:
        by_month = draw(st.lists(cells, min_size=12, max_size=12))
        weekday = weekend = [[by_month[m]] * 24 for m in range(12)]
    else:
        rows = st.lists(st.lists(cells, min_size=24, max_size=24), min_size=12, max_size=12)
        weekday, weekend = draw(rows), draw(rows)
    source: dict[str, Any] = {"label": "5f0000000000000000000099", "utility": "Generated",
                              "name": "Generated tariff", "energyratestructure": structure,
                              "energyweekdayschedule": weekday,
                              "energyweekendschedule": weekend}
    if draw(st.booleans()):
        source["startdate"] = draw(st.integers(946_684_800, 2_208_988_800))
    for amount_key, units_key in (("fixedchargefirstmeter", "fixedchargeunits"),
                                  ("mincharge", "minchargeunits")):
        amount = draw(charges)
        if amount is not None:
            source[amount_key] = amount
            source[units_key] = draw(st.sampled_from(["$/month", "$/day"]))
    return source


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(urdb_tariffs())
def test_generated_tariffs_convert_parse_and_round_trip(source):
    mixed = any(len(set(source["energyweekdayschedule"][m])
                    | set(source["energyweekendschedule"][m])) > 1 for m in range(12))
    tiered_periods = [index for index, period in enumerate(source["energyratestructure"])
                      if len(period) > 1]
    event("time-of-use" if mixed else "tiered")
    if mixed and tiered_periods:
        event("refused: tiers in time-of-use periods")
        with pytest.raises(UnsupportedTariff) as raised:
            convert(source, code="GEN-1", source="generated.json")
        assert [where for where, _ in raised.value.reasons] == [
            f"energyratestructure[{index}]" for index in tiered_periods]
        return
    text = convert(source, code="GEN-1", source="generated.json")
    assert convert(source, code="GEN-1", source="generated.json") == text
    assert_round_trip(source, parse_rate(text, "GEN-1.yaml"))


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=60),
       st.text(max_size=80))
def test_any_text_in_names_and_comments_makes_a_valid_file(name, utility, comments):
    source = tariff(name=name, utility=utility, energycomments=comments,
                    energytoulabels=[comments])
    try:
        text = convert(source, code="TXT", source="t.json")
    except UrdbError as exc:  # only a name that is nothing but blanks is refused
        assert exc.field in ("name", "utility") and exc.why == "must not be empty"
        return
    text.encode("utf-8")
    description = parse_rate(text, "TXT.yaml").description
    assert 1 <= len(description) <= 200
    assert all(line.startswith("#") for line in text.split("\ncode:")[0].splitlines())
