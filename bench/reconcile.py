"""Reconcile a cycle of meters with about two reads each, from a SQLite hub store.

Figures: the whole ``reconcile_cycle`` (load stops, installations and
verified reads, then classify) in meters/s; the pure classification alone;
and, as the floor measured in the same run, the time just to fetch the same
rows from the store — reconciliation can be no faster than its own reads.
The reads are stored rows marked verified (reconciliation never checks
signatures; the verifier did), built directly in the store for speed.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from datetime import UTC, date, datetime, timedelta

from rich.console import Console
from sqlalchemy import insert, select

from bench.harness import OUT as BENCH_OUT
from bench.harness import Figure, Headline, Result, finish
from hub.reconcile import Cycle, reconcile
from hub.reconcile_store import (
    load_candidate_reads,
    load_cycle,
    load_installations,
    load_stops,
    reconcile_cycle,
)
from hub.store import Store
from hub.store.collectors import add_collector
from hub.store.reads import insert_reads
from hub.store.tables import (
    accounts,
    cycles,
    meter_installations,
    meters,
    reads,
    route_stops,
    routes,
)
from protocols.signing import Signer

OUT = BENCH_OUT / "reconcile"
WINDOW = (date(2026, 11, 1), date(2026, 11, 7))
NOW = datetime(2026, 11, 8, tzinfo=UTC)
ROUTE_SIZE = 500
SMALL_METERS, FULL_METERS = 50_000, 100_000


def build_store(count: int, seed: int = 7) -> Store:
    """A store with ``count`` meters on routes of one cycle and ~2 verified reads each."""
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    store = Store.open(f"sqlite:///{OUT / 'hub.sqlite'}", upgrade_schema=True)
    rng = random.Random(seed)
    serials = [f"M{n:07d}" for n in range(count)]
    with store.begin() as conn:
        add_collector(conn, "bench-gw", Signer.generate().public_key)
        conn.execute(insert(cycles).values(
            id="C1", read_window_start=WINDOW[0], read_window_end=WINDOW[1],
            scheduled_read_date=date(2026, 11, 3), bill_period_start=date(2026, 10, 1),
            bill_period_end=date(2026, 10, 31), updated_at=NOW))
        conn.execute(insert(accounts), [
            {"id": f"A{n:07d}", "name": "n", "service_address": "a",
             "status": "active" if n % 50 else "vacant", "rate_code": "E1",
             "rate_options": [], "updated_at": NOW} for n in range(count)])
        conn.execute(insert(meters), [
            {"serial": s, "service": "electric", "multiplier": "1", "dials": 6, "unit": "kWh",
             "updated_at": NOW} for s in serials])
        conn.execute(insert(meter_installations), [
            {"meter": s, "account": f"A{n:07d}", "installed_on": date(2020, 1, 1)}
            for n, s in enumerate(serials)])
        conn.execute(insert(routes), [
            {"id": f"R{r:04d}", "cycle": "C1", "updated_at": NOW}
            for r in range(-(-count // ROUTE_SIZE))])
        conn.execute(insert(route_stops), [
            {"route": f"R{n // ROUTE_SIZE:04d}", "sequence": n % ROUTE_SIZE + 1, "meter": s,
             "location_notes": "", "hazards": ""} for n, s in enumerate(serials)])
        rows, seq = [], 0
        for serial in serials:
            for _ in range(rng.choice((0, 1, 2, 2, 2, 3, 3))):  # ≈ 2 reads, some meters none
                seq += 1
                at = datetime(2026, 10, 30, tzinfo=UTC) + timedelta(minutes=rng.randrange(
                    10 * 24 * 60))
                rows.append({
                    "collector": "bench-gw", "seq": seq, "meter": serial, "read_at": at,
                    "collected_at": at, "source": "ami", "ntp_synced": True,
                    "meter_offset_s": "0.000", "flags": [], "key_id": "0" * 32,
                    "values": {"energy_import_kwh": {"obis": "1.8.0", "unit": "kWh",
                                                     "value": "1.000"}},
                    "prev_hash": "0" * 64, "hash": "0" * 64, "data": b"{}", "sig": b"",
                    "received_at": NOW, "verify_status": "ok", "verified_at": NOW,
                })
        insert_reads(conn, rows)
    return store


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int,
                        help=f"default {SMALL_METERS:,}; {FULL_METERS:,} with --full")
    parser.add_argument("--full", action="store_true", help=f"{FULL_METERS:,} meters")
    args = parser.parse_args(argv)
    args.meters = args.meters or (FULL_METERS if args.full else SMALL_METERS)
    console = Console(width=120)
    console.print(f"building a store of {args.meters:,} meters …")
    store = build_store(args.meters)
    try:
        with store.connect() as conn:
            read_count = len(conn.execute(select(reads.c.id)).all())
            start = time.perf_counter()
            cycle = load_cycle(conn, "C1", UTC)
            stops = load_stops(conn, "C1")
            installations = load_installations(conn, "C1")
            candidates = load_candidate_reads(conn, cycle)
            fetch = time.perf_counter() - start
            start = time.perf_counter()
            pure = reconcile(Cycle("C1", *WINDOW, date(2026, 11, 3)), stops, installations,
                             candidates)
            classify = time.perf_counter() - start
            start = time.perf_counter()
            result = reconcile_cycle(conn, "C1", UTC)
            whole = time.perf_counter() - start
    finally:
        store.close()
    assert result.meters == pure.meters
    counts = {route_status: 0 for route_status in ("read", "missing", "inactive")}
    for meter in result.meters:
        counts[meter.status.value] = counts.get(meter.status.value, 0) + 1
    return finish("reconcile", "Reconciling a cycle", [
        Figure("meters reconciled", len(result.meters), "meters",
               f"{read_count:,} verified reads; " + ", ".join(
                   f"{k} {v:,}" for k, v in counts.items())),
        Figure("reconcile_cycle, store to verdicts", whole, "s"),
        Figure("reconcile_cycle rate", len(result.meters) / whole, "meters/s"),
        Figure("pure classification alone", len(result.meters) / classify, "meters/s"),
        Figure("floor: fetching the same rows", fetch, "s", "measured in the same run"),
        Figure("floor ÷ whole", fetch / whole, "ratio", "1.0 = all time is I/O"),
    ], full=args.full, console=console,
        headline=Headline("reconcile_cycle, store to verdicts", "floor: fetching the same rows",
                          "floor ÷ whole"))


if __name__ == "__main__":
    main()
