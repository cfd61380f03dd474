"""Run every meter-edit rule over billing reads with 12 cycles of history each.

200 000 reads by default, scaled to the aim's million; ``--full`` runs the
million, ``--reads N`` any other count.

Figures: the time ``run_rules`` takes over all reads (the slowest worker's sum
of chunk times: the workers run side by side, one per core), reads/s, and its
ratio to the aim of 10 s for a million reads; the time spent generating the
inputs, reported apart; and the findings by rule, so a reader can see the
rules fired. Inputs are generated inside each worker in chunks (a million
reads with their histories are 13 million objects: no parent builds them),
and only ``run_rules`` over a chunk is timed, with the garbage collector on
(it is off while a chunk is built, and a collection runs before the timing
starts, so the rules meet a heap like an engine's that loaded its cases).
Both the wall time and the CPU time of the rules are printed: the machine is
shared, and the CPU time says what the rules cost when another process takes
a core away.

The fleet: 60 % electric (100A/200A/400A/CT, TOU and demand registers), 30 %
water (5/8in to 2in), 10 % gas; reads about 30 days apart with some estimates
in history, and faults planted so that the rules have work: spikes, backward
registers, rollovers, stuck registers, tamper/leak/battery flags, vacant
accounts, clock offsets, unsigned reads, multiplier changes, removed meters,
TOU registers that do not add up, demand above capacity. With 12 cycles of
history (about 11 months) the same-period-last-year rules never have last
year's period, so they pass: their cost here is the check that says so.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
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
from hub.edits.model import EditInput, Finding, MeterFacts, MeterRead, ReadKind
from hub.edits.rules import RULES, run_rules
from hub.edits.ruleset import default_rule_set
from hub.reconcile import Cycle

AIM_S = 10.0
"""The issue's aim for a million reads through every rule, on this 2-core machine."""
AIM_READS = 1_000_000
SMALL_READS = 200_000
"""``make bench``'s size: the figures are scaled to the aim's million; ``--full`` runs it."""
HISTORY = 12
CYCLE = Cycle("C2026-11", date(2026, 11, 1), date(2026, 11, 7), date(2026, 11, 3))
TARGET = datetime(2026, 11, 3, 8, tzinfo=UTC)
ONE = Decimal(1)
TENTH = Decimal("0.1")
SERVICES = (("electric", 6), ("water", 3), ("gas", 1))
SIZES = {
    "electric": (("100A", 30), ("200A", 50), ("400A", 10), ("CT", 5), (None, 5)),
    "water": (("5/8in", 70), ("3/4in", 15), ("1in", 10), ("2in", 5)),
    "gas": ((None, 85), ("G16", 10), ("G25", 5)),
}
DAILY = {"electric": (8, 40), "water": (0.2, 1.5), "gas": (0.5, 6)}
UNITS = {"electric": "kWh", "water": "m3", "gas": "m3"}
FAULTS = (("none", 860), ("spike", 20), ("backward", 10), ("stuck", 10), ("rollover", 10),
          ("zero", 20), ("vacant", 10), ("tamper", 10), ("leak", 15), ("battery", 10),
          ("clock", 10), ("unsigned", 5), ("multiplier", 5), ("removed", 3), ("outside", 10),
          ("estimated", 20), ("low", 10), ("demand", 12), ("tou", 5))


def _choice(rng: random.Random, weighted: tuple[tuple[object, int], ...]) -> object:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


def _tenths(value: float) -> Decimal:
    return Decimal(round(value * 10)) * TENTH


@dataclass(frozen=True)
class Plan:
    """One generated meter: what it is, how much it uses, and the fault planted in it."""

    serial: int
    service: str
    size: str | None
    fault: str
    dials: int
    multiplier: Decimal
    per_day: float


def make_input(rng: random.Random, serial: int) -> EditInput:
    """One meter's billing read of the cycle, 12 billing reads of history, and its facts."""
    service = _choice(rng, SERVICES)
    size = _choice(rng, SIZES[service])
    dials = 6 if service == "electric" else rng.choice((4, 5, 6)) if service == "water" else 5
    low, high = DAILY[service]
    plan = Plan(serial, service, size, _choice(rng, FAULTS), dials,
                Decimal(rng.choice((40, 80))) if size == "CT" else ONE, rng.uniform(low, high))
    history, value = _history(rng, plan)
    read = _current(rng, plan, history[-1].read_at, value)
    meter = MeterFacts(
        f"M{serial:08d}", service, dials,
        plan.multiplier * 2 if plan.fault == "multiplier" else plan.multiplier, UNITS[service],
        size=size, account=f"A{serial:08d}",
        account_status="vacant" if plan.fault == "vacant" else "active",
        installed_on=date(2019, 5, 1),
        removed_on=date(2026, 10, 20) if plan.fault == "removed" else None)
    return EditInput(CYCLE, meter, read, history)


def _history(rng: random.Random, plan: Plan) -> tuple[tuple[MeterRead, ...], float]:
    """12 billing reads about 30 days apart, and the register's unwrapped value at the last."""
    capacity = 10 ** plan.dials
    raw_per_day = plan.per_day / float(plan.multiplier)
    value = rng.uniform(0, capacity * 0.85)
    if plan.fault == "rollover":
        value = capacity - raw_per_day * 30 * (HISTORY - 0.6)
    at = TARGET - timedelta(days=30 * HISTORY, hours=rng.randrange(48))
    estimated_run = plan.fault == "estimated" and rng.random() < 0.5
    history = []
    for index in range(HISTORY):
        if index:
            days = 30 + rng.uniform(-2, 2)
            at += timedelta(days=days)
            if not (plan.fault == "stuck" and index >= HISTORY - 2):
                value += raw_per_day * days * rng.uniform(0.8, 1.2)
        kind = ReadKind.ACTUAL
        if (estimated_run and index >= HISTORY - 2) or rng.random() < 0.03:
            kind = ReadKind.ESTIMATED
        actual = kind is ReadKind.ACTUAL
        history.append(MeterRead(
            at, _registers(plan.service, value, capacity), kind=kind, source="ami",
            collector="gw-0001" if actual else None,
            seq=plan.serial * 16 + index if actual else None,
            multiplier=plan.multiplier, cycle=f"C{index}"))
    return tuple(history), value


def _current(rng: random.Random, plan: Plan, last: datetime, value: float) -> MeterRead:
    """This cycle's billing read, with the plan's fault in it."""
    fault = plan.fault
    at = TARGET + timedelta(hours=rng.randrange(-40, 90))
    use = plan.per_day * ((at - last) / timedelta(days=1)) / float(plan.multiplier)
    if fault == "spike":
        use *= rng.uniform(4, 8)
    elif fault in ("stuck", "zero"):
        use = 0.0
    elif fault == "low":
        use *= 0.2
    elif fault == "backward":
        use = -rng.uniform(50, 500)
    registers = _registers(plan.service, value + use, 10 ** plan.dials)
    if plan.service == "electric":
        if fault == "tou":
            registers["energy_import_kwh_t2"] += 5
        registers["demand_kw"] = _tenths(rng.uniform(2, 20) * (4 if fault == "demand" else 1))
    kind = ReadKind.ESTIMATED if fault == "estimated" else ReadKind.ACTUAL
    signed = kind is ReadKind.ACTUAL and fault != "unsigned"
    offset = rng.randrange(400, 900) if fault == "clock" else rng.randrange(-30, 30)
    return MeterRead(
        CYCLE.target + timedelta(days=10) if fault == "outside" else at, registers, kind=kind,
        source="ami", flags=_flags(plan), meter_offset_s=Decimal(offset),
        collector="gw-0001" if signed else None, seq=plan.serial * 16 + 15 if signed else None)


def _flags(plan: Plan) -> tuple[str, ...]:
    if plan.fault == "tamper":
        return ("tamper_terminal_cover",)
    if plan.fault == "leak":
        return ("leak",) if plan.service == "water" else ("trouble_leak",)
    if plan.fault == "battery":
        return ("meter_battery_low", "module_comm_error")
    return ()


def _registers(service: str, total: float, capacity: int) -> dict[str, Decimal]:
    """The total register to a tenth; electric reads add TOU registers that sum to it.

    ``total`` is the use since the meter was new: each register shows it
    modulo its dial capacity, so each rolls over on its own.
    """
    value = _tenths(total)
    if service != "electric":
        return {"volume_m3": value % capacity}
    peak = _tenths(total * 0.4)
    return {"energy_import_kwh": value % capacity, "energy_import_kwh_t1": peak % capacity,
            "energy_import_kwh_t2": (value - peak) % capacity}


def work(job: tuple[int, int, int, int]) -> WorkerResult:
    """Generate ``count`` inputs in chunks and time ``run_rules`` over each chunk."""
    worker, count, chunk, seed = job
    rng = random.Random(seed * 1_000 + worker)
    rule_set = default_rule_set()
    return timed_in_chunks(count, chunk, worker * count,
                           lambda serial: make_input(rng, serial),
                           lambda item: run_rules(item, rule_set), tally)


def tally(findings: tuple[Finding, ...], counts: Counter[str]) -> None:
    for finding in findings:
        counts[finding.rule] += 1


def main(argv: list[str] | None = None) -> Result:
    args = parallel_arguments(parallel_parser(__doc__.split("\n")[0], "reads", SMALL_READS,
                                              AIM_READS), argv)
    console = Console(width=120)
    console.print(f"{args.items:,} reads × {HISTORY} history reads through {len(RULES)} rules, "
                  f"{max(1, args.workers)} worker process(es) …")
    run = run_in_workers(work, args.items, args.workers, args.chunk, args.seed)
    findings = run.counts
    figures = [Figure("billing reads", run.items, "reads", f"{HISTORY} history reads each"),
               *parallel_figures(run, work="run_rules", item="read", items="reads",
                                 aim_items=AIM_READS, aim_s=AIM_S, generated="inputs")]
    figures += [Figure(f"findings: {rule}", findings[rule], "", "") for rule in RULES
                if findings[rule]]
    return finish("edits", "Meter edits", figures, full=args.full, console=console,
                  headline=Headline(f"run_rules, at {AIM_READS:,} reads",
                                    f"aim: {AIM_READS:,} reads", "time ÷ aim",
                                    aim=1.0, at_least=False))


if __name__ == "__main__":
    main()
