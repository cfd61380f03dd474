"""What every benchmark shares: the machine it ran on, repeated timing, a printed verdict.

A benchmark's figure means nothing alone, so each prints it next to a baseline
or limit measured in the same run on the same machine, and the ratio.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table


def machine() -> str:
    """One line naming the CPU, cores, Python and OS the figures came from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def median_rate(items: int, run: Callable[[], None], *, repeats: int = 3,
                setup: Callable[[], None] | None = None) -> float:
    """Items per second of ``run``, the median of ``repeats`` timed runs."""
    rates = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        run()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""


def print_figures(title: str, figures: list[Figure], console: Console | None = None) -> None:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("note")
    for figure in figures:
        value = f"{figure.value:,.0f}" if figure.value >= 100 else f"{figure.value:.2f}"
        table.add_row(figure.name, value, figure.unit, figure.note)
    (console or Console(width=120)).print(table)


# --- work spread over worker processes -----------------------------------------------------


@dataclass(frozen=True)
class WorkerResult:
    """What one worker process did: items, and the time spent making and working them."""

    items: int
    generate_s: float
    work_s: float
    """Wall time in the timed work: what the run took."""
    work_cpu_s: float
    """CPU time in the timed work: the same without other processes taking the core away."""
    counts: Counter[str]


@dataclass(frozen=True)
class ParallelRun:
    results: list[WorkerResult]
    workers: int
    wall_s: float
    load: float

    @property
    def items(self) -> int:
        return sum(r.items for r in self.results)

    @property
    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for result in self.results:
            total.update(result.counts)
        return total


def parallel_arguments(description: str, items: str, default: int) -> argparse.Namespace:
    """``--<items> N --workers W --chunk C --seed S``, the options of every parallel bench."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(f"--{items}", dest="items", type=int, default=default)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


def run_in_workers(work: Callable[[tuple[int, int, int, int]], WorkerResult], items: int,
                   workers: int, chunk: int, seed: int) -> ParallelRun:
    """Split ``items`` over ``workers`` spawned processes, each calling ``work``.

    ``work((worker, share, chunk, seed))`` makes its own inputs in chunks (a
    parent building millions of objects would measure pickling, not work)
    and times only the work.
    """
    workers = max(1, workers)
    shares = [items // workers + (n < items % workers) for n in range(workers)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(work, [(n, share, chunk, seed) for n, share in enumerate(shares)])
    return ParallelRun(results, workers, time.perf_counter() - start, load)


def parallel_figures(run: ParallelRun, *, work: str, item: str, items: str, aim_items: int,
                     aim_s: float, generated: str) -> list[Figure]:
    """The figures every parallel bench prints: time, rate, CPU, both against the aim."""
    results = run.results
    done = run.items
    wall = max(r.work_s for r in results)
    cpu = max(r.work_cpu_s for r in results)
    cpu_total = sum(r.work_cpu_s for r in results)
    scaled, scaled_cpu = wall * aim_items / done, cpu * aim_items / done
    return [
        Figure(f"{work}, all {items}", wall, "s", f"slowest of {run.workers} workers"),
        Figure(f"{work} rate", done / wall, f"{items}/s"),
        Figure(f"aim: {aim_items:,} {items}", aim_s, "s", "the issue's limit on this machine"),
        Figure("time ÷ aim", scaled / aim_s, "ratio",
               f"{scaled:.2f} s per {aim_items:,} {items}; ≤ 1.0 meets the aim"),
        Figure(f"{work} CPU, slowest worker", cpu, "s",
               f"{cpu_total / done * 1e6:.1f} µs CPU per {item}"),
        Figure("CPU time ÷ aim", scaled_cpu / aim_s, "ratio",
               "the same with both cores to itself"),
        Figure("load average at start", run.load, "", "other processes on the machine"),
        Figure(f"generating the {generated}", sum(r.generate_s for r in results), "s",
               "all workers' wall time; not in the figures above"),
        Figure("wall time, start to end", run.wall_s, "s", "process start, generation and work"),
    ]


def timed_in_chunks(count: int, chunk: int, first: int, make: Callable[[int], Any],
                    timed: Callable[[Any], Any], tally: Callable[[Any, Counter[str]], None]
                    ) -> WorkerResult:
    """Make ``count`` inputs ``chunk`` at a time (``make(serial)``) and time ``timed`` on each.

    The collector is off while a chunk is made (thousands of new objects and
    no cycles: nothing to collect) and on, after one collection, while the
    work is timed — as a real run meets inputs loaded earlier, not a pile of
    untracked young objects. ``tally(output, counts)`` counts what came out.
    """
    counts: Counter[str] = Counter()
    generate = work = work_cpu = 0.0
    done = 0
    while done < count:
        size = min(chunk, count - done)
        start = time.perf_counter()
        gc.disable()
        inputs = [make(first + done + n) for n in range(size)]
        gc.enable()
        gc.collect()
        middle = time.perf_counter()
        cpu = time.process_time()
        outputs = [timed(item) for item in inputs]
        work_cpu += time.process_time() - cpu
        work += time.perf_counter() - middle
        generate += middle - start
        for output in outputs:
            tally(output, counts)
        done += size
    return WorkerResult(done, generate, work, work_cpu, counts)
