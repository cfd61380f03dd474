"""Bill accounts: tiered water with wastewater, and TOU electric with demand.

By default 1 000 to 100 000 accounts (``SMALL_SIZES``), to show how the time
grows, and the largest scaled to the aim's million; ``--full`` goes on to
the million; ``--accounts N`` bills N only.

Figures (of the largest size): the time ``compute_bill`` takes over all accounts (the slowest
worker's sum of chunk times: the workers run side by side, one per core),
bills/s, and its ratio to the aim of 30 s for a million accounts; the CPU
time of the same (the machine is shared); the time spent generating the
determinants, reported apart; and what was billed (lines per bill, the share
of bills prorated across a rate change, on an option, on a ratchet), so a
reader can see the bills did the work.

The accounts: half on ``RES-W1`` (the sample water table: base charge by
meter size, three inclining blocks, wastewater on the lesser of use and the
winter average, 10 % of accounts new with no winter average, 5 % low-income),
half on ``COM-TOU`` below (customer charge, peak/off-peak energy from the TOU
registers, demand with an 80 %/11-month ratchet, a minimum bill and a 5 %
tax; 8 % on the small-business option; 3 % of meters without TOU registers,
billed at the fallback price; 15 % with a peak month in their demand
history, so the ratchet binds; 5 % of premises barely used, so the minimum
bill applies). Twenty billing cycles whose 30-day periods start on
1–20 October 2026, so 14 of 20 straddle the rate change of 15 October and
are prorated, and those ending in December split wastewater at the winter
months. Determinants are generated inside each worker in chunks
(nothing is shipped between processes), each with the provenance of its
reads, and only ``compute_bill`` over a chunk is timed.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from rich.console import Console

from bench.harness import (
    Figure,
    Headline,
    Result,
    WorkerResult,
    finish,
    parallel_arguments,
    parallel_figures,
    parallel_parser,
    run_in_workers,
    timed_in_chunks,
)
from hub.billing import Bill, Determinants, ReadRef, compute_bill
from hub.rates import RateBook, RateTable, default_rate_dir, parse_rate

AIM_S = 30.0
"""The issue's aim for a million bills, on this 2-core machine."""
AIM_ACCOUNTS = 1_000_000
SMALL_SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)
"""``make bench``'s run: how billing time grows with accounts, the largest scaled to the aim."""
FULL_SIZES = (*SMALL_SIZES, 300_000, 1_000_000)
CYCLES = 20
FIRST_START = date(2026, 10, 1)
PERIOD_DAYS = 30
SIZES = (("5/8in", 70), ("3/4in", 15), ("1in", 10), ("2in", 5))
HUNDREDTH = Decimal("0.01")
TENTH = Decimal("0.1")

_ROW = "[" + ", ".join(["offpeak"] * 8 + ["peak"] * 12 + ["offpeak"] * 4) + "]"
_OFF = "[" + ", ".join(["offpeak"] * 24) + "]"
COM_TOU = f"""
code: COM-TOU
service: electric
unit: kWh
register: energy_import_kwh
description: Small commercial, time-of-use with demand (benchmark rate)
versions:
  - effective: 2026-01-01
    components:
      - {{id: customer, type: fixed, description: Customer charge, per: bill, amount: 28.00}}
      - id: energy
        type: tou
        description: Energy
        periods:
          peak: {{register: energy_import_kwh_t1, price: 0.1420}}
          offpeak: {{register: energy_import_kwh_t2, price: 0.0780}}
        weekday: [{", ".join([_ROW] * 12)}]
        weekend: [{", ".join([_OFF] * 12)}]
        fallback: {{price: 0.1050}}
      - id: demand
        type: demand
        description: Demand
        price: 11.40
        ratchet: {{percent: 80, months: 11}}
      - {{id: minimum, type: minimum, description: Minimum bill, amount: 60.00, per: bill,
         of: [customer, energy, demand]}}
      - {{id: tax, type: percentage, description: Sales tax 5 %, percent: 5,
         of: [customer, energy, demand, minimum]}}
    options:
      small_business:
        description: Small-business discount, 5 % off energy
        discount: {{percent: 5, of: [energy]}}
  - effective: 2026-10-15
    components:
      - {{id: customer, type: fixed, description: Customer charge, per: bill, amount: 30.00}}
      - id: energy
        type: tou
        description: Energy
        periods:
          peak: {{register: energy_import_kwh_t1, price: 0.1490}}
          offpeak: {{register: energy_import_kwh_t2, price: 0.0810}}
        weekday: [{", ".join([_ROW] * 12)}]
        weekend: [{", ".join([_OFF] * 12)}]
        fallback: {{price: 0.1100}}
      - id: demand
        type: demand
        description: Demand
        price: 11.90
        ratchet: {{percent: 80, months: 11}}
      - {{id: minimum, type: minimum, description: Minimum bill, amount: 65.00, per: bill,
         of: [customer, energy, demand]}}
      - {{id: tax, type: percentage, description: Sales tax 5 %, percent: 5,
         of: [customer, energy, demand, minimum]}}
    options:
      small_business:
        description: Small-business discount, 5 % off energy
        discount: {{percent: 5, of: [energy]}}
"""


def rates() -> dict[str, RateTable]:
    return {"RES-W1": RateBook.load(default_rate_dir()).rate("RES-W1"),
            "COM-TOU": parse_rate(COM_TOU, "COM-TOU (bench/billing.py)")}


def _period(cycle: int) -> tuple[date, date]:
    start = FIRST_START + timedelta(days=cycle)
    return start, start + timedelta(days=PERIOD_DAYS - 1)


def _refs(rng: random.Random, meter: str, serial: int, end: date) -> tuple[ReadRef, ...]:
    """The two billing reads a use came from; 3 % of the closing reads estimated."""
    opened = ReadRef(meter, "actual", "gw-0001", serial * 16, "c2lnbmF0dXJl", datetime(
        end.year, end.month, end.day, 8, tzinfo=UTC) - timedelta(days=PERIOD_DAYS))
    closed_at = datetime(end.year, end.month, end.day, 8, tzinfo=UTC)
    if rng.random() < 0.03:
        return opened, ReadRef(meter, "estimated", None, None, None, closed_at)
    return opened, ReadRef(meter, "actual", "gw-0001", serial * 16 + 1, "c2lnbmF0dXJl",
                           closed_at)


def make_determinants(rng: random.Random, serial: int) -> Determinants:
    """One account's determinants for its cycle's bill period."""
    start, end = _period(serial % CYCLES)
    account = f"AC-{serial:08d}"
    if serial % 2 == 0:
        use = Decimal(round(rng.lognormvariate(2.8, 0.5) * 10)) * TENTH
        average = (None if rng.random() < 0.10 else
                   Decimal(round(rng.uniform(6, 22) * 10)) * TENTH)
        refs = _refs(rng, f"W{serial:08d}", serial, end)
        size = rng.choices([size for size, _ in SIZES], [weight for _, weight in SIZES])[0]
        return Determinants(account, "RES-W1", ("low_income",) if rng.random() < 0.05 else (),
                            start, end, {"volume_m3": use}, meter_size=size,
                            winter_average=average, sources={"volume_m3": refs})
    scale = 0.02 if rng.random() < 0.05 else 1.0  # a premise barely used: the minimum bills
    peak = Decimal(round(rng.uniform(300, 3000) * scale * 10)) * TENTH
    offpeak = Decimal(round(rng.uniform(500, 5000) * scale * 10)) * TENTH
    consumption = {"energy_import_kwh": peak + offpeak}
    if rng.random() >= 0.03:
        consumption["energy_import_kwh_t1"] = peak
        consumption["energy_import_kwh_t2"] = offpeak
    kw = rng.uniform(5, 60) * scale
    demand = Decimal(round(kw * 100)) * HUNDREDTH
    spike = 2.0 if rng.random() < 0.15 else 1.0  # a peak month in the last year: the ratchet
    history = tuple(Decimal(round(kw * rng.uniform(0.6, 1.2) * (spike if n == 3 else 1.0)
                                  * 100)) * HUNDREDTH for n in range(11))
    refs = _refs(rng, f"E{serial:08d}", serial, end)
    return Determinants(account, "COM-TOU", ("small_business",) if rng.random() < 0.08 else (),
                        start, end, consumption, demand_kw=demand, demand_history=history,
                        sources={"energy_import_kwh": refs, "demand_kw": refs[1:]})


def work(job: tuple[int, int, int, int]) -> WorkerResult:
    """Generate ``count`` determinants in chunks and time ``compute_bill`` over each chunk."""
    worker, count, chunk, seed = job
    rng = random.Random(seed * 1_000 + worker)
    tables = rates()
    return timed_in_chunks(count, chunk, worker * count,
                           lambda serial: make_determinants(rng, serial),
                           lambda found: compute_bill(found, tables[found.rate_code]), tally)


def tally(bill: Bill, counts: Counter[str]) -> None:
    """Count what kinds of bill the run made, so a reader sees the mix was billed."""
    counts["lines"] += len(bill.lines)
    counts[bill.rate_code] += 1
    codes = [line.code for line in bill.lines]
    if any(":v2026" in code for code in codes):
        counts["prorated"] += 1
    if bill.determinants.options:
        counts["on an option"] += 1
    if any(line.determinant == "demand_history" for line in bill.lines):
        counts["ratchet binding"] += 1
    if any(line.determinant == "winter_average" for line in bill.lines):
        counts["wastewater on the winter average"] += 1
    if any(code.startswith("minimum") for code in codes):
        counts["minimum bill"] += 1
    if any(code.startswith("energy:v") or code == "energy" for code in codes):
        counts["TOU fallback"] += 1


def main(argv: list[str] | None = None) -> Result:
    parser = parallel_parser(__doc__.split("\n")[0], "accounts", None, None, sizes=(
        "bill this many accounts only (default: each of "
        f"{', '.join(f'{n:,}' for n in SMALL_SIZES)}; with --full up to {FULL_SIZES[-1]:,})"))
    args = parallel_arguments(parser, argv)
    sizes = [args.items] if args.items else list(FULL_SIZES if args.full else SMALL_SIZES)
    console = Console(width=120)
    console.print(f"{', '.join(f'{n:,}' for n in sizes)} accounts (half RES-W1 water, half "
                  f"COM-TOU electric), {CYCLES} cycles, {max(1, args.workers)} worker "
                  "process(es) …")
    series = []
    for size in sizes:
        run = run_in_workers(work, size, args.workers, args.chunk, args.seed)
        wall = max(r.work_s for r in run.results)
        series.append({"accounts": run.items, "seconds": wall,
                       "cpu_seconds": max(r.work_cpu_s for r in run.results),
                       "bills_per_s": run.items / wall})
        console.print(f"  {run.items:>9,} accounts: compute_bill {wall:.3f} s, "
                      f"{run.items / wall:,.0f} bills/s")
    counts = run.counts
    bills = run.items
    figures = [
        Figure("accounts billed", bills, "bills",
               f"{counts['RES-W1']:,} RES-W1, {counts['COM-TOU']:,} COM-TOU"),
        *parallel_figures(run, work="compute_bill", item="bill", items="bills",
                          aim_items=AIM_ACCOUNTS, aim_s=AIM_S, generated="determinants"),
        Figure("lines per bill", counts["lines"] / bills, "lines", "mean"),
    ]
    figures += [Figure(f"bills: {name}", counts[name], "", f"{counts[name] / bills:.1%}")
                for name in ("prorated", "on an option", "ratchet binding",
                             "wastewater on the winter average", "minimum bill",
                             "TOU fallback")]
    if len(series) > 1:
        first = series[0]
        figures += [Figure(f"compute_bill, {point['accounts']:,} accounts", point["seconds"],
                           "s", f"{point['bills_per_s']:,.0f} bills/s" + (
                               "" if point is first else
                               f"; {point['seconds'] / first['seconds']:.1f}× the time of "
                               f"{point['accounts'] / first['accounts']:,.0f}× the accounts"))
                    for point in series]
    return finish("billing", "Billing", figures, full=args.full, console=console,
                  series={"accounts": series},
                  headline=Headline(f"compute_bill, at {AIM_ACCOUNTS:,} bills",
                                    f"aim: {AIM_ACCOUNTS:,} bills", "time ÷ aim",
                                    aim=1.0, at_least=False))


if __name__ == "__main__":
    main()
