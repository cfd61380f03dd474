"""Ingest rate against hub workers: gateways' backlogs drained into PostgreSQL over MQTT.

Issue 9's question: does a second (or fourth) ``meterhub serve`` worker on
the shared subscription raise ingest once the store is PostgreSQL, whose
writers do not queue for one file lock as SQLite's do? Each point drains
``--edges`` gateways' backlogs at once — the real sync client over a real
edge buffer per gateway, all in this process — through a private Mosquitto
into a fresh PostgreSQL database served by 1, 2 and 4 ingest processes
(``bench/backlog.py``'s rig, several gateways instead of one: one gateway's
chain is extended by one worker at a time, since each batch locks its
collector's row, so a single gateway cannot show what more workers do).

The baseline measured in the same run is the one-worker rate; the ratio of
each point is its rate over that. Beside each point: the CPU the hub
workers used (in cores) and the load average, because on a 2-core machine
the broker, PostgreSQL, the edges and the workers all share the same two
cores: four workers there are more processes than cores, measured to show
whether that costs anything, not because it could scale.

The buffers are signed once and kept under ``bench/out/``; each point drains
fresh copies.

    python -m bench.ingest_workers            # 4 gateways × 25 000 reads per point
    python -m bench.ingest_workers --full     # 4 gateways × 100 000 reads per point
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import Progress
from sqlalchemy.engine import make_url

from bench.backlog import fresh_copy, prepared_buffer
from bench.harness import OUT as BENCH_OUT
from bench.harness import Figure, Headline, Result, finish
from bench.mqtt_rig import PG_ADMIN, broker_and_hub, drain, fresh_postgres
from edge_agent.buffer import EdgeBuffer
from hub.store.collectors import add_collector

OUT = BENCH_OUT / "ingest_workers"
WORKERS = (1, 2, 4)
EDGES = 4
SMALL_READS, FULL_READS = 25_000, 100_000
"""Reads per gateway's backlog."""
REPEATS = 3
GAP_LOGGED = b"; acking through"
"""What a worker logs (at info) when a batch waited out ``GAP_WAIT_S`` for the one before it
and answered ``seq_gap``, so that the edge resends from the stored tip."""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (those still running)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def backend_pids(url: str) -> list[int]:
    """The PostgreSQL server processes serving ``url``'s database (the hub workers' sessions)."""
    with psycopg.connect(PG_ADMIN) as admin:
        return [pid for (pid,) in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (make_url(url).database,))]


def drain_point(workers: int, edges: int, per_edge: int, progress: Progress) -> dict[str, Any]:
    """Drain ``edges`` kept backlogs at once into ``workers`` hub processes on PostgreSQL."""
    sources = [prepared_buffer(per_edge, progress, collector=f"bench-gw-{n}")
               for n in range(edges)]
    hubs: list[subprocess.Popen[bytes]] = []
    with fresh_postgres() as url, \
            broker_and_hub(OUT, workers=workers, url=url, processes=hubs) as (broker, store):
        with store.begin() as conn:
            for n, (_, signer) in enumerate(sources):
                add_collector(conn, f"bench-gw-{n}", signer.public_key)
        buffers = []
        for n, (source, _) in enumerate(sources):
            fresh_copy(source, OUT / f"edge-{n}.sqlite")
            buffers.append(EdgeBuffer(OUT / f"edge-{n}.sqlite", collector=f"bench-gw-{n}"))
        try:
            load = os.getloadavg()[0]
            hub_pids = [hub.pid for hub in hubs]
            pg_pids = backend_pids(url)
            cpu0, pg_cpu0 = cpu_seconds(hub_pids), cpu_seconds(pg_pids)
            edge_cpu0 = time.process_time()
            start = time.perf_counter()
            with ThreadPoolExecutor(edges) as pool:
                list(pool.map(lambda buffer: drain(buffer, broker.port, timeout=1800,
                                                   progress=progress), buffers))
            seconds = time.perf_counter() - start
            edge_cpu = time.process_time() - edge_cpu0
            hub_cpu, pg_cpu = cpu_seconds(hub_pids) - cpu0, cpu_seconds(pg_pids) - pg_cpu0
        finally:
            for buffer in buffers:
                buffer.close()
        gaps = sum(log.read_bytes().count(GAP_LOGGED) for log in OUT.glob("hub-*.log"))
    reads = edges * per_edge
    return {"workers": workers, "edges": edges, "reads": reads, "seconds": seconds,
            "reads_per_s": reads / seconds, "hub_cores": hub_cpu / seconds,
            "edge_cores": edge_cpu / seconds, "postgres_cores": pg_cpu / seconds,
            "load": load, "gap_acks": gaps}


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help=f"{FULL_READS:,} reads per gateway instead of {SMALL_READS:,}")
    parser.add_argument("--reads", type=int, help="reads per gateway's backlog")
    parser.add_argument("--edges", type=int, default=EDGES, help="gateways draining at once")
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS),
                        help="hub worker counts to measure, the first being the baseline")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help="runs per worker count, interleaved; the median is kept")
    args = parser.parse_args(argv)
    per_edge = args.reads or (FULL_READS if args.full else SMALL_READS)
    console = Console(width=120)
    console.print(f"{args.edges} gateways × {per_edge:,} reads into PostgreSQL, hub workers "
                  f"{', '.join(map(str, args.workers))} on {os.cpu_count()} cores …")
    runs: dict[int, list[dict[str, Any]]] = {workers: [] for workers in args.workers}
    with Progress(console=console, transient=True) as progress:
        for repeat in range(args.repeats):  # interleaved, so that load drift hits every count
            for workers in args.workers:
                point = drain_point(workers, args.edges, per_edge, progress)
                runs[workers].append(point)
                progress.console.print(
                    f"  run {repeat + 1}, {workers} worker(s): {point['reads_per_s']:,.0f} "
                    f"reads/s; cores used: hub workers {point['hub_cores']:.2f}, PostgreSQL "
                    f"{point['postgres_cores']:.2f}, edges {point['edge_cores']:.2f}; "
                    f"{point['gap_acks']:.0f} seq_gap acks; load {point['load']:.1f}")
    points = []
    for measured in runs.values():
        ordered = sorted(measured, key=lambda p: p["reads_per_s"])
        median = dict(ordered[len(ordered) // 2])
        median["runs"] = [p["reads_per_s"] for p in measured]
        points.append(median)
    base = points[0]
    figures = []
    for point in points:
        workers = int(point["workers"])
        figures += [
            Figure(f"ingest, {workers} hub worker{'s' if workers > 1 else ''}",
                   point["reads_per_s"], "reads/s",
                   f"median of {len(point['runs'])} "
                   f"({', '.join(f'{rate:,.0f}' for rate in point['runs'])}); median run's "
                   f"cores: hub workers {point['hub_cores']:.2f}, PostgreSQL "
                   f"{point['postgres_cores']:.2f}, edges {point['edge_cores']:.2f}; "
                   f"{point['gap_acks']:.0f} seq_gap acks; load {point['load']:.1f}"),
        ]
    figures += [
        Figure(f"{int(point['workers'])} ÷ {int(base['workers'])} worker"
               f"{'s' if base['workers'] > 1 else ''}",
               point["reads_per_s"] / base["reads_per_s"], "ratio",
               f"{point['workers'] / base['workers']:.0f}× the workers; "
               f"{os.cpu_count()} cores shared with broker, PostgreSQL and edges")
        for point in points[1:]
    ]
    headline = None
    if len(points) > 1:  # the summary's point: a worker per core, else the most workers
        cores = [p for p in points[1:] if p["workers"] == os.cpu_count()]
        shown = points.index(cores[0] if cores else points[-1])
        headline = Headline(figures[shown].name, figures[0].name,
                            figures[len(points) + shown - 1].name)
    return finish("ingest_workers", "Ingest against hub workers (PostgreSQL)", figures,
                  full=args.full, console=console, series={"workers": points},
                  headline=headline)


if __name__ == "__main__":
    main()
