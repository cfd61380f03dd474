"""Golden bills: each worked by hand (the ``worked`` column), matched to the cent, line by line.

The rates here are small and round so the arithmetic can be checked on paper;
the last cases bill the sample tables (``hub/rates/tables``) over the demo
cycle, across their 2026-10-15 rate change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from hub.billing import Bill, BillingError, Determinants, ReadRef, compute_bill
from hub.rates import RateBook, default_rate_dir, parse_rate

D = Decimal

WATER = """
code: GW
service: water
unit: m3
register: volume_m3
description: Golden water and wastewater
versions:
  - effective: 2026-01-01
    components:
      - id: base
        type: fixed
        description: Base charge
        per: bill
        by_meter_size: {5/8in: 10.00, 1in: 20.00}
      - id: water
        type: tiered
        description: Water
        direction: inclining
        tiers: [{up_to: 10, price: 2.00}, {up_to: 20, price: 3.00}, {price: 4.00}]
      - id: wastewater
        type: wastewater
        description: Wastewater
        price: 1.50
        winter_months: [12, 1, 2]
        default_average: 8
    options:
      senior:
        description: Senior 10 % off water
        discount: {percent: 10, of: [water]}
      low_income:
        description: Low-income water blocks
        replace_tiers: {water: {tiers: [{up_to: 10, price: 1.00}, {price: 3.00}]}}
      assist:
        description: Assistance, 5.00 off the base charge
        discount: {amount: 5.00, per: bill, of: [base]}
  - effective: 2026-06-16
    components:
      - id: base
        type: fixed
        description: Base charge
        per: bill
        by_meter_size: {5/8in: 12.00, 1in: 24.00}
      - id: water
        type: tiered
        description: Water
        direction: inclining
        tiers: [{up_to: 10, price: 2.20}, {up_to: 20, price: 3.30}, {price: 4.40}]
      - id: wastewater
        type: wastewater
        description: Wastewater
        price: 1.80
        winter_months: [12, 1, 2]
        default_average: 8
"""

COMMERCIAL = """
code: GC
service: electric
unit: kWh
register: energy_import_kwh
description: Golden commercial with demand
versions:
  - effective: 2026-01-01
    components:
      - {id: customer, type: fixed, description: Customer charge, per: bill, amount: 30.00}
      - {id: energy, type: tiered, description: Energy, price: 0.10}
      - id: demand
        type: demand
        description: Demand
        price: 10.00
        ratchet: {percent: 80, months: 11}
      - id: minimum
        type: minimum
        description: Minimum bill
        amount: 100.00
        per: bill
        of: [customer, energy, demand]
      - id: tax
        type: percentage
        description: Tax 5 %
        percent: 5
        of: [customer, energy, demand, minimum]
"""

_PEAK_ROW = "[" + ", ".join(["offpeak"] * 16 + ["peak"] * 4 + ["offpeak"] * 4) + "]"
_OFF_ROW = "[" + ", ".join(["offpeak"] * 24) + "]"
TOU = f"""
code: GT
service: electric
unit: kWh
register: energy_import_kwh
description: Golden time-of-use
versions:
  - effective: 2026-01-01
    components:
      - {{id: customer, type: fixed, description: Customer charge, per: day, amount: 0.50}}
      - id: energy
        type: tou
        description: Energy
        periods:
          peak: {{register: energy_import_kwh_t1, price: 0.30}}
          offpeak: {{register: energy_import_kwh_t2, price: 0.10}}
        weekday: [{", ".join([_PEAK_ROW] * 12)}]
        weekend: [{", ".join([_OFF_ROW] * 12)}]
        fallback: {{price: 0.15}}
    options:
      senior:
        description: Senior 10 % off energy
        discount: {{percent: 10, of: [energy]}}
"""

SEASONAL = """
code: GS
service: electric
unit: kWh
register: energy_import_kwh
description: Golden seasonal inclining blocks
versions:
  - effective: 2026-01-01
    components:
      - {id: customer, type: fixed, description: Customer charge, per: day, amount: 0.50}
      - id: delivery
        type: tiered
        description: Delivery
        direction: inclining
        seasons:
          - {name: summer, months: [6, 7, 8, 9], tiers: [{up_to: 300, price: 0.10}, {price: 0.20}]}
          - {name: winter, months: [10, 11, 12, 1, 2, 3, 4, 5], price: 0.08}
"""

GAS = """
code: GG
service: gas
unit: m3
register: volume_m3
description: Golden gas, declining blocks
versions:
  - effective: 2026-01-01
    components:
      - {id: customer, type: fixed, description: Customer charge, per: bill, amount: 12.00}
      - id: delivery
        type: tiered
        description: Delivery
        direction: declining
        tiers: [{up_to: 50, price: 0.50}, {up_to: 150, price: 0.40}, {price: 0.30}]
      - {id: fee, type: percentage, description: Franchise fee 2 %, percent: 2,
         of: [customer, delivery]}
"""

RATES = {code: parse_rate(text, f"{code}.yaml") for code, text in
         (("GW", WATER), ("GC", COMMERCIAL), ("GT", TOU), ("GS", SEASONAL), ("GG", GAS))}
SAMPLES = RateBook.load(default_rate_dir())

NOV = (date(2026, 11, 1), date(2026, 11, 30))
"""A 30-day bill period with no rate change, outside winter and summer."""
APR = (date(2026, 4, 1), date(2026, 4, 30))
"""The same for the golden water rate (before its 2026-06-16 change)."""
DEMO = (date(2026, 10, 1), date(2026, 10, 31))
"""The demo cycle's bill period: 31 days, the sample tables change on day 15."""
EST = timezone(timedelta(hours=-5))
AT = datetime(2026, 12, 1, 14, tzinfo=UTC)


def actual(meter: str, seq: int, at: datetime = AT) -> ReadRef:
    return ReadRef(meter, "actual", "gw-0001", seq, f"c2lnLXtzZXF9-{seq}", at)


def estimated(meter: str, at: datetime = AT) -> ReadRef:
    return ReadRef(meter, "estimated", None, None, None, at)


@dataclass(frozen=True)
class Case:
    name: str
    rate: str
    period: tuple[date, date]
    consumption: dict[str, Decimal]
    lines: list[tuple[str, str, str]]
    """(code, quantity, amount) in bill order."""
    total: str
    worked: str
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("tiers crossing, wastewater on actual use (the lesser)", "GW", APR,
         {"volume_m3": D(25)},
         [("base", "1", "10.00"), ("water:tier1", "10", "20.00"), ("water:tier2", "10", "30.00"),
          ("water:tier3", "5", "20.00"), ("wastewater", "25", "37.50")], "117.50",
         "base 10.00; water 10×2.00 + 10×3.00 + 5×4.00 = 70.00; wastewater min(25, avg 30) = 25 "
         "× 1.50 = 37.50; total 117.50",
         {"meter_size": "5/8in", "winter_average": D(30)}),
    Case("wastewater on the winter average (the lesser)", "GW", APR, {"volume_m3": D(25)},
         [("base", "1", "10.00"), ("water:tier1", "10", "20.00"), ("water:tier2", "10", "30.00"),
          ("water:tier3", "5", "20.00"), ("wastewater", "12", "18.00")], "98.00",
         "as above but wastewater min(25, avg 12) = 12 × 1.50 = 18.00; total 98.00",
         {"meter_size": "5/8in", "winter_average": D(12)}),
    Case("wastewater default average for a new account", "GW", APR, {"volume_m3": D(25)},
         [("base", "1", "10.00"), ("water:tier1", "10", "20.00"), ("water:tier2", "10", "30.00"),
          ("water:tier3", "5", "20.00"), ("wastewater", "8", "12.00")], "92.00",
         "no winter history: the rate's default 8 m3 < 25; 8 × 1.50 = 12.00; total 92.00",
         {"meter_size": "5/8in"}),
    Case("wastewater in a winter month is billed on actual use", "GW",
         (date(2026, 1, 1), date(2026, 1, 31)), {"volume_m3": D(25)},
         [("base", "1", "10.00"), ("water:tier1", "10", "20.00"), ("water:tier2", "10", "30.00"),
          ("water:tier3", "5", "20.00"), ("wastewater", "25", "37.50")], "117.50",
         "January is a winter month: the average is being measured, so actual 25 × 1.50 = "
         "37.50 although the average (12) is lower; total 117.50",
         {"meter_size": "5/8in", "winter_average": D(12)}),
    Case("alternative tiers (low income)", "GW", APR, {"volume_m3": D(25)},
         [("base", "1", "10.00"), ("water:tier1", "10", "10.00"), ("water:tier2", "15", "45.00"),
          ("wastewater", "12", "18.00")], "83.00",
         "low-income blocks 10×1.00 + 15×3.00 = 55.00; base 10.00; wastewater 12 × 1.50 = "
         "18.00; total 83.00",
         {"meter_size": "5/8in", "winter_average": D(12), "options": ("low_income",)}),
    Case("senior percent discount", "GW", APR, {"volume_m3": D(25)},
         [("base", "1", "10.00"), ("water:tier1", "10", "20.00"), ("water:tier2", "10", "30.00"),
          ("water:tier3", "5", "20.00"), ("senior:water", "70.00", "-7.00"),
          ("wastewater", "12", "18.00")], "91.00",
         "water 70.00, 10 % off = −7.00; 10.00 + 63.00 + 18.00 = 91.00",
         {"meter_size": "5/8in", "winter_average": D(12), "options": ("senior",)}),
    Case("fixed discount", "GW", APR, {"volume_m3": D(25)},
         [("base", "1", "10.00"), ("assist:base", "1", "-5.00"), ("water:tier1", "10", "20.00"),
          ("water:tier2", "10", "30.00"), ("water:tier3", "5", "20.00"),
          ("wastewater", "12", "18.00")], "93.00",
         "base 10.00 − 5.00 assistance; 5.00 + 70.00 + 18.00 = 93.00",
         {"meter_size": "5/8in", "winter_average": D(12), "options": ("assist",)}),
    Case("meter size picks the fixed charge", "GW", APR, {"volume_m3": D(5)},
         [("base", "1", "20.00"), ("water:tier1", "5", "10.00"), ("wastewater", "5", "7.50")],
         "37.50",
         "1in meter: base 20.00; water 5 × 2.00 = 10.00 (first tier only); wastewater min(5, "
         "8) = 5 × 1.50 = 7.50; total 37.50",
         {"meter_size": "1in"}),
    Case("proration across a rate change (2026-06-16), 15 + 15 days", "GW",
         (date(2026, 6, 1), date(2026, 6, 30)), {"volume_m3": D(30)},
         [("base:v2026-01-01", "15", "5.00"), ("base:v2026-06-16", "15", "6.00"),
          ("water:tier1:v2026-01-01", "5", "10.00"), ("water:tier2:v2026-01-01", "5", "15.00"),
          ("water:tier3:v2026-01-01", "5", "20.00"), ("water:tier1:v2026-06-16", "5", "11.00"),
          ("water:tier2:v2026-06-16", "5", "16.50"), ("water:tier3:v2026-06-16", "5", "22.00"),
          ("wastewater:v2026-01-01", "4", "6.00"), ("wastewater:v2026-06-16", "4", "7.20")],
         "118.70",
         "30 days, 15 at each version. base 10.00×15/30 = 5.00 and 12.00×15/30 = 6.00; use 30 "
         "split 15 + 15; tier bounds per bill prorated 10→5, 20→10: v1 5×2.00 + 5×3.00 + "
         "5×4.00 = 45.00, v2 5×2.20 + 5×3.30 + 5×4.40 = 49.50; wastewater default 8 split 4 + "
         "4 (< 15 each): 4×1.50 = 6.00, 4×1.80 = 7.20; total 118.70",
         {"meter_size": "5/8in"}),
    Case("rollover consumption (9 990 → 120 on 4 dials = 130 m3)", "GW", APR,
         {"volume_m3": D(10_000 - 9_990 + 120)},
         [("base", "1", "10.00"), ("water:tier1", "10", "20.00"), ("water:tier2", "10", "30.00"),
          ("water:tier3", "110", "440.00"), ("wastewater", "12", "18.00")], "518.00",
         "use 10 000 − 9 990 + 120 = 130; water 20.00 + 30.00 + 110×4.00 = 490.00; base "
         "10.00; wastewater 12 × 1.50 = 18.00; total 518.00",
         {"meter_size": "5/8in", "winter_average": D(12)}),
    Case("estimated read: same arithmetic, the trace shows the estimate", "GW", APR,
         {"volume_m3": D(25)},
         [("base", "1", "10.00"), ("water:tier1", "10", "20.00"), ("water:tier2", "10", "30.00"),
          ("water:tier3", "5", "20.00"), ("wastewater", "25", "37.50")], "117.50",
         "as the first case: an estimate bills like an actual read",
         {"meter_size": "5/8in", "winter_average": D(30),
          "sources": {"volume_m3": (actual("W-1", 40), estimated("W-1"))}}),
    Case("meter multiplier 40 (250 kWh and 0.5 kW on the register), ratchet not binding",
         "GC", NOV, {"energy_import_kwh": D(250) * 40},
         [("customer", "1", "30.00"), ("energy", "10000", "1000.00"), ("demand", "20", "200.00"),
          ("tax", "1230.00", "61.50")], "1291.50",
         "energy 250 × 40 = 10 000 kWh × 0.10 = 1 000.00; demand 0.5 × 40 = 20 kW (ratchet "
         "80 % × 18 = 14.4 is lower) × 10.00 = 200.00; 1 230.00 ≥ the 100.00 minimum; tax 5 % = "
         "61.50; total 1 291.50",
         {"demand_kw": D("0.5") * 40, "demand_history": (D(15), D(18))}),
    Case("demand ratchet binding (80 % of the highest of the last 11 months)", "GC", NOV,
         {"energy_import_kwh": D(2000)},
         [("customer", "1", "30.00"), ("energy", "2000", "200.00"), ("demand", "40", "400.00"),
          ("tax", "630.00", "31.50")], "661.50",
         "demand 5 kW; history of 12 months, the oldest (80 kW) outside the 11 looked back "
         "on, the highest within is 50 → ratchet 40 kW × 10.00 = 400.00; energy 200.00; "
         "customer 30.00; tax 5 % of 630.00 = 31.50; total 661.50",
         {"demand_kw": D(5), "demand_history": (D(80),) + (D(20),) * 5 + (D(50),) + (D(30),) * 5}),
    Case("minimum bill", "GC", NOV, {"energy_import_kwh": D(100)},
         [("customer", "1", "30.00"), ("energy", "100", "10.00"), ("demand", "2", "20.00"),
          ("minimum", "60.00", "40.00"), ("tax", "100.00", "5.00")], "105.00",
         "customer 30.00 + energy 10.00 + demand 20.00 = 60.00 < 100.00: a 40.00 make-up "
         "line; tax 5 % of 100.00 = 5.00; total 105.00",
         {"demand_kw": D(2)}),
    Case("TOU registers, per-day customer charge", "GT", NOV,
         {"energy_import_kwh": D(500), "energy_import_kwh_t1": D(100),
          "energy_import_kwh_t2": D(400)},
         [("customer", "30", "15.00"), ("energy:peak", "100", "30.00"),
          ("energy:offpeak", "400", "40.00")], "85.00",
         "30 days × 0.50 = 15.00; peak 100 × 0.30 = 30.00; off-peak 400 × 0.10 = 40.00; "
         "total 85.00"),
    Case("TOU registers with the senior discount", "GT", NOV,
         {"energy_import_kwh": D(500), "energy_import_kwh_t1": D(100),
          "energy_import_kwh_t2": D(400)},
         [("customer", "30", "15.00"), ("energy:peak", "100", "30.00"),
          ("energy:offpeak", "400", "40.00"), ("senior:energy", "70.00", "-7.00")], "78.00",
         "energy 70.00, 10 % off = −7.00; 15.00 + 63.00 = 78.00",
         {"options": ("senior",)}),
    Case("TOU fallback: a meter without TOU registers", "GT", NOV,
         {"energy_import_kwh": D(500)},
         [("customer", "30", "15.00"), ("energy", "500", "75.00")], "90.00",
         "no t1/t2 registers and no intervals: 500 × 0.15 = 75.00; total 90.00"),
    Case("TOU by interval data, weekday/weekend schedule, UTC−5", "GT", NOV,
         {"energy_import_kwh": D(8)},
         [("customer", "30", "15.00"), ("energy:peak", "3.5", "1.05"),
          ("energy:offpeak", "5.5", "0.55")], "16.60",
         "intervals in local time (UTC−5): Mon 2 Nov 17:00 2.0 peak; Mon 10:00 1.0 off-peak; "
         "Sat 7 Nov 17:00 3.0 weekend = off-peak; Tue 3 Nov 19:00 1.5 peak, 20:00 0.5 "
         "off-peak; 1 Dec 02:00 UTC = Mon 30 Nov 21:00 local 1.0 off-peak. Peak 3.5 × 0.30 = "
         "1.05; off-peak 5.5 × 0.10 = 0.55; customer 15.00; total 16.60",
         {"zone": EST, "intervals": tuple(
             (datetime(2026, 11, day, hour, tzinfo=EST).astimezone(UTC), D(use))
             for day, hour, use in ((2, 17, "2.0"), (2, 10, "1.0"), (7, 17, "3.0"),
                                    (3, 19, "1.5"), (3, 20, "0.5"), (30, 21, "1.0")))}),
    Case("seasonal switch inside the period (summer → winter on 1 October)", "GS",
         (date(2026, 9, 16), date(2026, 10, 15)), {"energy_import_kwh": D(800)},
         [("customer", "30", "15.00"), ("delivery:summer:tier1", "150", "15.00"),
          ("delivery:summer:tier2", "250", "50.00"), ("delivery:winter", "400", "32.00")],
         "112.00",
         "30 days: 15 in September (summer), 15 in October (winter); use 800 split 400 + 400; "
         "summer bound 300 × 15/30 = 150: 150 × 0.10 + 250 × 0.20 = 65.00; winter 400 × 0.08 "
         "= 32.00; customer 30 × 0.50 = 15.00; total 112.00"),
    Case("declining blocks and a percentage fee", "GG", NOV, {"volume_m3": D(250)},
         [("customer", "1", "12.00"), ("delivery:tier1", "50", "25.00"),
          ("delivery:tier2", "100", "40.00"), ("delivery:tier3", "100", "30.00"),
          ("fee", "107.00", "2.14")], "109.14",
         "50 × 0.50 + 100 × 0.40 + 100 × 0.30 = 95.00; + customer 12.00 = 107.00; fee 2 % = "
         "2.14; total 109.14"),
    Case("sample RES-W1 over the demo cycle, across its 2026-10-15 change", "RES-W1", DEMO,
         {"volume_m3": D("18.4")},
         [("base:v2026-01-01", "14", "5.65"), ("base:v2026-10-15", "17", "7.27"),
          ("water:tier1:v2026-01-01", "4.516", "8.35"),
          ("water:tier2:v2026-01-01", "3.794", "9.11"),
          ("water:tier1:v2026-10-15", "5.484", "10.69"),
          ("water:tier2:v2026-10-15", "4.606", "11.75"),
          ("wastewater:v2026-01-01", "5.419", "11.65"),
          ("wastewater:v2026-10-15", "6.581", "15.14")], "79.61",
         "31 days, 14 + 17. base 12.50×14/31 = 5.645 → 5.65, 13.25×17/31 = 7.266 → 7.27. "
         "use 18.4: 18.4×14/31 = 8.310 (to 0.001), the rest 10.090. v1 bounds 10×14/31 = "
         "4.516: 4.516×1.85 = 8.3546 → 8.35, 3.794×2.40 = 9.1056 → 9.11; v2 bounds "
         "10×17/31 = 5.484: 5.484×1.95 = 10.6938 → 10.69, 4.606×2.55 = 11.7453 → 11.75. "
         "Wastewater on the default 12 (< 18.4): 5.419×2.15 = 11.65085 → 11.65, 6.581×2.30 "
         "= 15.1363 → 15.14; total 79.61",
         {"meter_size": "5/8in"}),
    Case("sample COM-E2 over the demo cycle: ratchet, proration and tax", "COM-E2", DEMO,
         {"energy_import_kwh": D(100)},
         [("customer:v2026-01-01", "14", "15.81"), ("customer:v2026-10-15", "17", "20.56"),
          ("energy:v2026-01-01", "45.161", "4.29"), ("energy:v2026-10-15", "54.839", "5.43"),
          ("demand:v2026-01-01", "8", "51.30"), ("demand:v2026-10-15", "8", "65.37"),
          ("tax:v2026-01-01", "71.40", "3.57"), ("tax:v2026-10-15", "91.36", "4.57")],
         "170.90",
         "customer 35.00×14/31 = 15.806 → 15.81, 37.50×17/31 = 20.565 → 20.56 (20.5645); "
         "energy 100 split 45.161 + 54.839: ×0.0950 = 4.29, ×0.0990 = 5.43; demand 3 kW, "
         "ratchet 80 % of 10 = 8 kW: 8×14.20×14/31 = 51.30, 8×14.90×17/31 = 65.37; minimum "
         "75.00×14/31 + 80.00×17/31 = 77.74 < the charges' 162.76: no line; tax 5 % of "
         "71.40 = 3.57 and of 91.36 = 4.57; total 170.90",
         {"demand_kw": D(3), "demand_history": (D(10), D(2))}),
]


def bill_of(case: Case) -> Bill:
    extra = dict(case.extra)
    options = extra.pop("options", ())
    d = Determinants("AC-1", case.rate, options, case.period[0], case.period[1],
                     case.consumption, **extra)
    rate = RATES[case.rate] if case.rate in RATES else SAMPLES.rate(case.rate)
    return compute_bill(d, rate)


def test_there_are_at_least_fifteen_golden_bills():
    assert len(CASES) >= 15
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_golden_bill(case: Case):
    bill = bill_of(case)
    got = [(line.code, line.quantity, line.amount) for line in bill.lines]
    want = [(code, D(quantity), D(amount)) for code, quantity, amount in case.lines]
    assert got == want, case.worked
    assert bill.total == D(case.total), case.worked
    assert all(line.amount == line.amount.quantize(D("0.01")) for line in bill.lines)
    assert bill.total == sum(line.amount for line in bill.lines)


def test_the_estimated_read_is_in_the_trace_of_the_lines_it_priced():
    case = next(case for case in CASES if case.name.startswith("estimated read"))
    bill = bill_of(case)
    refs = bill.trace(bill.line("water:tier3"))
    assert [ref.kind for ref in refs] == ["actual", "estimated"]
    assert refs[0].collector == "gw-0001" and refs[0].seq == 40 and refs[0].signature
    assert refs[1].collector is None and refs[1].signature is None
    assert bill.trace(bill.line("wastewater")) == refs  # on actual use: the same reads


def test_a_line_on_the_winter_average_traces_to_the_winter_reads():
    winter = (actual("W-1", 7, datetime(2026, 3, 2, tzinfo=UTC)),)
    d = Determinants("AC-1", "GW", (), *APR, {"volume_m3": D(25)}, meter_size="5/8in",
                     winter_average=D(12),
                     sources={"volume_m3": (actual("W-1", 40),), "winter_average": winter})
    bill = compute_bill(d, RATES["GW"])
    line = bill.line("wastewater")
    assert line.determinant == "winter_average"
    assert bill.trace(line) == winter


def test_a_tax_traces_to_every_read_behind_what_it_taxes():
    energy, demand = actual("E-1", 1), actual("E-1", 2)
    d = Determinants("AC-1", "GC", (), *NOV, {"energy_import_kwh": D(100)}, demand_kw=D(2),
                     sources={"energy_import_kwh": (energy,), "demand_kw": (demand,)})
    bill = compute_bill(d, RATES["GC"])
    assert set(bill.trace(bill.line("tax"))) == {energy, demand}
    assert bill.line("minimum").basis == ("customer", "energy", "demand")


def test_the_ratchet_line_names_the_history_as_its_determinant():
    case = next(case for case in CASES if case.name.startswith("demand ratchet binding"))
    line = bill_of(case).line("demand")
    assert line.determinant == "demand_history"
    assert "ratchet: 80 % of 50 kW" in line.description


def test_lines_name_their_version_and_days_when_prorated():
    case = next(case for case in CASES if case.name.startswith("proration"))
    bill = bill_of(case)
    line = bill.line("base:v2026-06-16")
    assert line.version == date(2026, 6, 16)
    assert line.description == "Base charge, 5/8in meter (15 of 30 days at v2026-06-16)"
    assert bill.line("water:tier1:v2026-01-01").description == (
        "Water 0–5 m3 (15 of 30 days at v2026-01-01)")


# --- rounding rules ------------------------------------------------------------------------------

FLAT = """
code: GR
service: water
unit: m3
register: volume_m3
description: Rounding check
versions:
  - effective: 2026-01-01
    rounding: ROUNDING
    components:
      - {id: water, type: tiered, description: Water, price: 0.10}
      - {id: sewer, type: tiered, description: Sewer, register: sewer_m3, price: 0.10}
"""


@pytest.mark.parametrize(("mode", "amount"), [
    ("half_up", "1.23"), ("half_even", "1.22"), ("down", "1.22"), ("up", "1.23")])
def test_a_line_is_rounded_by_the_version_s_mode(mode: str, amount: str):
    rate = parse_rate(FLAT.replace("ROUNDING", f"{{mode: {mode}}}"), "GR.yaml")
    d = Determinants("AC-1", "GR", (), *NOV, {"volume_m3": D("12.25"), "sewer_m3": D(0)})
    bill = compute_bill(d, rate)
    assert bill.line("water").amount == D(amount)  # 12.25 × 0.10 = 1.225
    assert bill.total == D(amount)


def test_rounding_per_bill_rounds_only_the_total_and_says_so_in_a_line():
    rate = parse_rate(FLAT.replace("ROUNDING", "{per: bill}"), "GR.yaml")
    d = Determinants("AC-1", "GR", (), *NOV, {"volume_m3": D("12.25"), "sewer_m3": D("0.15")})
    bill = compute_bill(d, rate)
    # 1.225 + 0.015 = 1.240: per line it would be 1.23 + 0.02 = 1.25
    assert [(line.code, line.amount) for line in bill.lines] == [
        ("water", D("1.225")), ("sewer", D("0.015"))]
    assert bill.total == D("1.24")
    d = Determinants("AC-1", "GR", (), *NOV, {"volume_m3": D("12.25"), "sewer_m3": D(0)})
    bill = compute_bill(d, rate)
    assert bill.lines[-1].code == "rounding" and bill.lines[-1].amount == D("0.005")
    assert bill.total == D("1.23") == sum(line.amount for line in bill.lines)


def test_rounding_to_whole_units():
    rate = parse_rate(FLAT.replace("ROUNDING", "{places: 0}"), "GR.yaml")
    d = Determinants("AC-1", "GR", (), *NOV, {"volume_m3": D(15), "sewer_m3": D(4)})
    assert [line.amount for line in compute_bill(d, rate).lines] == [D(2), D(0)]


# --- interval data across a rate change -------------------------------------------------------


def test_intervals_are_billed_by_the_version_in_force_on_their_day():
    intervals = ((datetime(2026, 10, 5, 18, tzinfo=UTC), D(2)),   # Monday, peak, v1
                 (datetime(2026, 10, 20, 18, tzinfo=UTC), D(3)),  # Tuesday, peak, v2
                 (datetime(2026, 10, 24, 18, tzinfo=UTC), D(4)))  # Saturday: off-peak, v2
    d = Determinants("AC-1", "RES-E1", (), *DEMO, {"energy_import_kwh": D(9)},
                     intervals=intervals)
    bill = compute_bill(d, SAMPLES.rate("RES-E1"))
    energy = {line.code: (line.quantity, line.amount) for line in bill.lines
              if line.code.startswith("energy")}
    assert energy == {
        "energy:peak:v2026-01-01": (D(2), D("0.43")),      # 2 × 0.2150
        "energy:offpeak:v2026-01-01": (D(0), D("0.00")),
        "energy:peak:v2026-10-15": (D(3), D("0.69")),      # 3 × 0.2290 = 0.687
        "energy:offpeak:v2026-10-15": (D(4), D("0.38"))}   # 4 × 0.0940 = 0.376
    assert {bill.line(code).determinant for code in energy} == {"intervals"}


# --- bills that cannot be computed ---------------------------------------------------------------


def error_of(rate: str, period: tuple[date, date], consumption: dict, **extra: Any) -> str:
    options = extra.pop("options", ())
    d = Determinants("AC-1", rate, options, *period, consumption, **extra)
    with pytest.raises(BillingError) as raised:
        compute_bill(d, RATES[rate] if rate in RATES else SAMPLES.rate(rate))
    return str(raised.value)


def test_a_missing_determinant_names_rate_version_component_and_register():
    assert error_of("GC", NOV, {}, demand_kw=D(1)) == (
        "rate GC v2026-01-01 component energy needs energy_import_kwh")
    assert error_of("GC", NOV, {"energy_import_kwh": D(1)}) == (
        "rate GC v2026-01-01 component demand needs demand_kw")
    assert error_of("GW", APR, {"volume_m3": D(1)}) == (
        "rate GW v2026-01-01 component base needs the meter size (one of 5/8in, 1in)")
    assert error_of("GW", APR, {"volume_m3": D(1)}, meter_size="3in") == (
        "rate GW v2026-01-01 component base has no charge for meter size '3in'; it has "
        "5/8in, 1in")


def test_tou_without_registers_intervals_or_fallback():
    text = TOU.replace("        fallback: {price: 0.15}\n", "")
    rate = parse_rate(text, "GT.yaml")
    d = Determinants("AC-1", "GT", (), *NOV, {"energy_import_kwh": D(5)})
    with pytest.raises(BillingError, match="component energy needs energy_import_kwh_t1, "
                                           "energy_import_kwh_t2 \\(or interval data\\)"):
        compute_bill(d, rate)


def test_no_version_in_force():
    assert error_of("GW", (date(2025, 12, 20), date(2026, 1, 10)), {"volume_m3": D(1)},
                    meter_size="1in") == (
        "rate GW has no version in force on 2025-12-20 (versions: 2026-01-01, 2026-06-16)")


def test_an_unknown_option_or_one_a_version_lacks():
    assert error_of("GW", APR, {"volume_m3": D(1)}, meter_size="1in", options=("gold",)) == (
        "rate GW v2026-01-01 has no option 'gold'; it has senior, low_income, assist")
    assert error_of("GW", (date(2026, 6, 1), date(2026, 6, 30)), {"volume_m3": D(1)},
                    meter_size="1in", options=("assist",)) == (
        "rate GW v2026-06-16 has no option 'assist'; it has none")


def test_floats_and_negative_uses_are_refused():
    assert "is a float (1.5); use is an exact Decimal" in error_of(
        "GG", NOV, {"volume_m3": 1.5})
    assert "volume_m3 use is -3; a bill prices a use ≥ 0" in error_of(
        "GG", NOV, {"volume_m3": D(-3)})
    assert "demand_kw must be a Decimal ≥ 0, got 2.0" in error_of(
        "GC", NOV, {"energy_import_kwh": D(1)}, demand_kw=2.0)


def test_intervals_outside_the_period_or_without_a_zone():
    outside = ((datetime(2026, 11, 1, 3, tzinfo=UTC), D(1)),)  # 31 Oct 22:00 in UTC−5
    assert "starts outside the bill period 2026-11-01 … 2026-11-30" in error_of(
        "GT", NOV, {}, intervals=outside, zone=EST)
    naive = ((datetime(2026, 11, 2, 3), D(1)),)
    assert "has no time zone" in error_of("GT", NOV, {}, intervals=naive)


def test_the_rate_code_must_be_the_account_s():
    d = Determinants("AC-1", "GW", (), *NOV, {"volume_m3": D(1)})
    with pytest.raises(BillingError, match="account AC-1 is on rate GW, not GG"):
        compute_bill(d, RATES["GG"])
