"""Bill properties over generated rates and determinants: order, sums, exactness.

Rates are generated as model objects (1–3 versions inside the bill period or
before it, seasonal or not, every rounding rule), determinants with random
periods (so rate changes and season changes fall inside them), uses, demand,
history and options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.billing import Bill, Determinants, compute_bill
from hub.rates.model import (
    Blocks,
    Demand,
    Discount,
    Fixed,
    MinimumBill,
    Percentage,
    Ratchet,
    RateOption,
    RateTable,
    RateVersion,
    Rounding,
    Season,
    Tier,
    Tiered,
    TimeOfUse,
    TouPeriod,
    Wastewater,
)

ROWS = tuple(tuple("peak" if 17 <= hour < 21 else "offpeak" for hour in range(24))
             for _ in range(12))
OPTIONS = ("assist", "low", "senior")

prices = st.decimals(min_value=0, max_value=5, places=4, allow_nan=False, allow_infinity=False)
amounts = st.decimals(min_value=0, max_value=200, places=2, allow_nan=False,
                      allow_infinity=False)
uses = st.decimals(min_value=0, max_value=20_000, places=3, allow_nan=False,
                   allow_infinity=False)


@st.composite
def tier_tables(draw: st.DrawFn) -> tuple[Tier, ...]:
    count = draw(st.integers(1, 4))
    bounds = sorted(draw(st.sets(st.integers(1, 3000), min_size=count - 1,
                                 max_size=count - 1)))
    tier_prices = draw(st.lists(prices, min_size=count, max_size=count))
    return tuple(Tier(None if index == count - 1 else Decimal(bounds[index]), price)
                 for index, price in enumerate(tier_prices))


@st.composite
def blocks(draw: st.DrawFn) -> Blocks:
    if not draw(st.booleans()):
        return Blocks(tiers=draw(tier_tables()))
    first = draw(st.integers(1, 11))
    last = draw(st.integers(first, 11))
    summer = tuple(range(first, last + 1))
    winter = tuple(month for month in range(1, 13) if month not in summer)
    return Blocks(seasons=(Season("summer", summer, draw(tier_tables())),
                           Season("winter", winter, draw(tier_tables()))))


@st.composite
def versions(draw: st.DrawFn, effective: date) -> RateVersion:
    usage = draw(blocks())
    scale = draw(st.sampled_from(["bill", "days"]))
    components: list[Any] = [
        Fixed("customer", "Customer charge", draw(st.sampled_from(["bill", "day"])),
              draw(amounts)),
        Tiered("usage", "Usage", "energy_import_kwh", usage, scale,
               30 if scale == "days" else None),
        TimeOfUse("tou", "TOU adder",
                  (TouPeriod("peak", "energy_import_kwh_t1", draw(blocks())),
                   TouPeriod("offpeak", "energy_import_kwh_t2", draw(blocks()))),
                  ROWS, ROWS, "energy_import_kwh", draw(blocks())),
        Demand("demand", "Demand", draw(blocks()),
               draw(st.none() | st.builds(Ratchet, st.integers(1, 100).map(Decimal),
                                          st.integers(1, 12)))),
        Wastewater("sewer", "Sewer", "energy_import_kwh", draw(blocks()),
                   tuple(sorted(draw(st.sets(st.integers(1, 12), min_size=1, max_size=11)))),
                   draw(uses)),
        MinimumBill("minimum", "Minimum bill", draw(amounts),
                    draw(st.sampled_from(["bill", "day"])), ("customer", "usage")),
        Percentage("fee", "Fee", draw(st.integers(1, 10).map(Decimal)),
                   ("customer", "usage", "minimum")),
        Percentage("tax", "Tax", draw(st.integers(1, 20).map(Decimal)),
                   ("customer", "usage", "demand", "fee")),
    ]
    options = {
        "senior": RateOption("senior", "Senior", Discount(("usage", "tou"),
                                                          percent=Decimal(10))),
        "assist": RateOption("assist", "Assist", Discount(
            ("customer",), amount=draw(amounts), per=draw(st.sampled_from(["bill", "day"])))),
        "low": RateOption("low", "Low income", replace_tiers=MappingProxyType(
            {"usage": draw(blocks())})),
    }
    rounding = Rounding(draw(st.integers(0, 4)),
                        draw(st.sampled_from(["half_up", "half_even", "down", "up"])),
                        draw(st.sampled_from(["line", "line", "bill"])))
    return RateVersion(effective, tuple(components), MappingProxyType(options), rounding)


@st.composite
def cases(draw: st.DrawFn) -> tuple[RateTable, Determinants]:
    start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 330)))
    end = start + timedelta(days=draw(st.integers(0, 40)))
    offsets = sorted(draw(st.sets(st.integers(1, 45), max_size=2)))
    dates = [date(2025, 12, 1)] + [start + timedelta(days=offset) for offset in offsets]
    table = RateTable("P-1", "electric", "kWh", "Generated", tuple(
        draw(versions(day)) for day in dates), "energy_import_kwh")
    t1, t2 = draw(uses), draw(uses)
    consumption = {"energy_import_kwh": t1 + t2}
    if draw(st.booleans()):
        consumption |= {"energy_import_kwh_t1": t1, "energy_import_kwh_t2": t2}
    d = Determinants(
        "AC-1", "P-1", tuple(draw(st.lists(st.sampled_from(OPTIONS), unique=True))), start, end,
        consumption, demand_kw=draw(st.decimals(0, 500, places=2)),
        demand_history=tuple(draw(st.lists(st.decimals(0, 500, places=2), max_size=14))),
        winter_average=draw(st.none() | uses))
    return table, d


def fresh(rate: RateTable, **changes: Any) -> RateTable:
    """The same rate (or a changed copy) with an empty plan cache."""
    return dataclasses.replace(rate, cache={}, **changes)


def walk(value: Any) -> list[Any]:
    """Every value inside ``value``: dataclass fields, tuples, lists and mappings."""
    found = [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            found += walk(getattr(value, item.name))
    elif isinstance(value, tuple | list):
        for item in value:
            found += walk(item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found += walk(key) + walk(item)
    return found


def line_set(bill: Bill) -> set[Any]:
    return set(bill.lines)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_the_total_is_the_sum_of_the_lines_in_any_order(case):
    rate, d = case
    bill = compute_bill(d, rate)
    assert bill.total == sum((line.amount for line in bill.lines), Decimal(0))
    assert bill.total == sum((line.amount for line in reversed(bill.lines)), Decimal(0))
    assert len({line.code for line in bill.lines}) == len(bill.lines)


@settings(max_examples=150, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_reordering_components_changes_neither_lines_nor_total(case, random):
    rate, d = case
    bill = compute_bill(d, rate)
    shuffled = []
    for version in rate.versions:
        components = list(version.components)
        random.shuffle(components)
        shuffled.append(dataclasses.replace(version, components=tuple(components)))
    other = compute_bill(d, fresh(rate, versions=tuple(shuffled)))
    assert other.total == bill.total
    assert line_set(other) == line_set(bill)
    options = dataclasses.replace(d, options=tuple(reversed(d.options)))
    assert line_set(compute_bill(options, rate)) == line_set(bill)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_tier_lines_add_up_to_the_use_they_price_across_rate_parts(case):
    rate, d = case
    bill = compute_bill(d, rate)
    usage = [line for line in bill.lines if line.code.startswith("usage")]
    assert sum(line.quantity for line in usage) == d.consumption["energy_import_kwh"]
    assert all(line.quantity >= 0 for line in usage)
    for register in ("energy_import_kwh_t1", "energy_import_kwh_t2"):
        priced = [line for line in bill.lines if line.determinant == register]
        if priced:
            assert sum(line.quantity for line in priced) == d.consumption[register]


@settings(max_examples=150, deadline=None)
@given(cases())
def test_money_is_never_a_float(case):
    rate, d = case
    bill = compute_bill(d, rate)
    values = walk(bill)
    assert not [value for value in values if isinstance(value, float)]
    assert isinstance(bill.total, Decimal)
    for line in bill.lines:
        assert isinstance(line.amount, Decimal) and isinstance(line.quantity, Decimal)
        assert line.price is None or isinstance(line.price, Decimal)


@settings(max_examples=100, deadline=None)
@given(cases())
def test_lines_are_rounded_as_their_version_says(case):
    rate, d = case
    bill = compute_bill(d, rate)
    versions = {version.effective: version for version in rate.versions}
    for line in bill.lines:
        rounding = versions[line.version].rounding
        if rounding.per == "line" and line.code != "rounding":
            quantum = Decimal(1).scaleb(-rounding.places)
            assert line.amount == line.amount.quantize(quantum), line


@settings(max_examples=100, deadline=None)
@given(cases())
def test_a_cached_plan_gives_the_same_bill_as_a_fresh_one(case):
    rate, d = case
    first = compute_bill(d, rate)
    again = compute_bill(d, rate)
    assert again == first
    assert compute_bill(d, fresh(rate)) == first


@settings(max_examples=200, deadline=None)
@given(uses, st.integers(1, 62), st.data())
def test_proration_parts_add_up_exactly_to_the_whole(use, days, data):
    """A use split over any versions' days: the tier lines of every part sum to the use."""
    start = date(2026, 3, 1)
    end = start + timedelta(days=days - 1)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, days - 1)), max_size=4)))
    effective = [date(2026, 1, 1)] + [start + timedelta(days=cut) for cut in cuts
                                      if cut < days]
    tiers = data.draw(tier_tables())
    rate = RateTable("S-1", "water", "m3", "Split", tuple(
        RateVersion(day, (Tiered("water", "Water", "volume_m3", Blocks(tiers=tiers)),))
        for day in effective), "volume_m3")
    d = Determinants("AC-1", "S-1", (), start, end, {"volume_m3": use})
    bill = compute_bill(d, rate)
    assert sum(line.quantity for line in bill.lines) == use
    assert {line.version for line in bill.lines} <= set(effective)
