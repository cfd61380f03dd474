"""Run ``meterhub cycle edits`` over a whole cycle in a SQLite hub store.

The rules alone are :mod:`bench.edits`; this is what an operator waits for:
reconcile the cycle, load every meter's facts and twelve billing reads of
history, evaluate (rules, estimates for the meters without a read), and save
the billing reads, exceptions and audit records, in one transaction. Run
twice: the first run writes everything, the second finds nothing new (what a
re-run after a few re-reads costs). The baseline measured in the same run is
reconciling the cycle, which the edits do first.

The store is :mod:`bench.reconcile`'s (500-meter routes, ~2 verified reads a
meter in the window, one meter in seven without a read, 2 % vacant), with
reads of 5 000 kWh and a history climbing 300 kWh a month to 4 700 kWh.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime, timedelta

from rich.console import Console
from sqlalchemy import func, insert, select, update

from bench.harness import Figure, Headline, Result, finish
from bench.reconcile import NOW, build_store
from hub.edits.engine import evaluate
from hub.edits.ruleset import default_rule_set
from hub.edits.store import load_cases, run_edits
from hub.gc_tuning import tune_garbage_collector
from hub.reconcile_store import load_cycle, reconcile_cycle, reconcile_loaded
from hub.store.tables import audit_log, billing_reads, cycles, edit_exceptions, meters, reads

HISTORY = 12
CURRENT = "5000.000"
SMALL_METERS, FULL_METERS = 30_000, 100_000


def add_history(store, count: int) -> None:
    """Twelve monthly billing reads per meter before the cycle, as the CIS would give."""
    with store.begin() as conn:
        conn.execute(update(reads).values({"values": {"energy_import_kwh": {
            "obis": "1.8.0", "unit": "kWh", "value": CURRENT}}}))
        serials = conn.execute(select(meters.c.serial).order_by(meters.c.serial)).scalars().all()
        for back in range(1, HISTORY + 1):
            month = date(2026, 11, 3) - timedelta(days=30 * back)
            conn.execute(insert(cycles).values(
                id=f"P{back:02d}", read_window_start=month - timedelta(days=2),
                read_window_end=month + timedelta(days=2), scheduled_read_date=month,
                bill_period_start=month - timedelta(days=30), bill_period_end=month,
                updated_at=NOW))
            at = datetime.combine(month, datetime.min.time(), UTC) + timedelta(hours=9)
            value = f"{5000 - 300 * back}.000"
            conn.execute(insert(billing_reads), [
                {"cycle": f"P{back:02d}", "meter": serial, "account": f"A{serial[1:]}",
                 "kind": "actual", "origin": "cis", "read_at": at,
                 "registers": {"energy_import_kwh": value}, "multiplier": "1",
                 "flags": [], "detail": "imported", "updated_at": NOW}
                for serial in serials[:count]])


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int,
                        help=f"default {SMALL_METERS:,}; {FULL_METERS:,} with --full")
    parser.add_argument("--full", action="store_true", help=f"{FULL_METERS:,} meters")
    args = parser.parse_args(argv)
    args.meters = args.meters or (FULL_METERS if args.full else SMALL_METERS)
    console = Console(width=120)
    console.print(f"building a store of {args.meters:,} meters with {HISTORY} cycles of "
                  "history each …")
    store = build_store(args.meters)
    add_history(store, args.meters)
    rules = default_rule_set()
    tune_garbage_collector()  # as `meterhub cycle edits` does
    try:
        with store.connect() as conn:
            start = time.perf_counter()
            reconcile_cycle(conn, "C1", UTC)
            baseline = time.perf_counter() - start
            start = time.perf_counter()
            cycle = load_cycle(conn, "C1", UTC)
            cases = load_cases(conn, cycle, reconcile_loaded(conn, cycle))
            loading = time.perf_counter() - start
            start = time.perf_counter()
            for case in cases:
                evaluate(case, rules)
            evaluating = time.perf_counter() - start
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            with store.begin() as conn:
                run = run_edits(conn, "C1", UTC, rules, now=NOW)
            runs.append((time.perf_counter() - start, run))
        with store.connect() as conn:
            exceptions = conn.execute(select(func.count()).select_from(edit_exceptions)
                                      ).scalar_one()
            audits = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    finally:
        store.close()
    (first, run), (second, again) = runs
    meters_count = run.meters
    return finish("edits_cycle", "A whole cycle's edits against the store", [
        Figure("meters in the cycle", meters_count, "meters",
               f"billing reads: {dict(run.billing)}; {exceptions:,} exceptions, "
               f"{audits:,} audit records; {len(run.held):,} accounts held"),
        Figure("run_edits, first run", first, "s", "reconcile, load, evaluate, save"),
        Figure("run_edits rate", meters_count / first, "meters/s"),
        Figure("of which loading the cases", loading, "s", "reconcile + facts + history"),
        Figure("of which evaluating (rules, estimates)", evaluating, "s"),
        Figure("run_edits, second run", second, "s",
               f"{again.opened} opened, {again.cleared} cleared: nothing new"),
        Figure("baseline: reconcile_cycle", baseline, "s", "measured in the same run"),
        Figure("first run ÷ baseline", first / baseline, "ratio",
               "what the edits cost beyond reconciling"),
    ], full=args.full, console=console,
        headline=Headline("run_edits, first run", "baseline: reconcile_cycle",
                          "first run ÷ baseline"))


if __name__ == "__main__":
    main()
