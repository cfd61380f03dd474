"""What every benchmark shares: the machine it ran on, repeated timing, a printed verdict.

A benchmark's figure means nothing alone, so each prints it next to a baseline
or limit measured in the same run on the same machine, and the ratio. Each
``main()`` ends with :func:`finish`, which prints the figures and writes them,
with the machine, the date and the exact command, to ``bench/out/<name>.json``
as a :class:`Result`; ``python -m bench.report`` renders those into RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

OUT = Path(__file__).resolve().parent / "out"
"""Where benchmarks keep their work files and their results (``<name>.json``)."""
_STARTED = time.perf_counter()
_STARTED_AT = datetime.now(UTC)
_LOAD_AT_START = os.getloadavg()[0]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def disk(path: Path = OUT) -> str:
    """The file system and block device ``path`` is on: what every fsync in a figure paid."""
    target = os.path.realpath(path if path.exists() else path.parent)
    best = ("", "", "")
    try:
        for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
            device, mountpoint, fstype = line.split()[:3]
            inside = target == mountpoint or target.startswith(mountpoint.rstrip("/") + "/")
            if inside and len(mountpoint) >= len(best[1]):
                best = (device, mountpoint, fstype)
    except OSError:
        return "unknown"
    device, _, fstype = best
    if not device:
        return "unknown"
    parts = [f"{fstype} on {device}"]
    block = Path("/sys/class/block") / Path(device).name
    if block.exists():
        details = []
        driver = block / "device" / "driver"
        if driver.exists():
            details.append(Path(os.path.realpath(driver)).name)
        if (block / "device" / "model").exists():
            details.append((block / "device" / "model").read_text(encoding="utf-8").strip())
        try:
            sectors = int((block / "size").read_text(encoding="utf-8"))
            details.append(f"{sectors * 512 / 1e9:.0f} GB")
        except (OSError, ValueError):
            pass
        if details:
            parts.append(f"({', '.join(d for d in details if d)})")
    return " ".join(parts)


def machine_info() -> dict[str, str]:
    """The machine the figures came from, one entry per line of a report's header."""
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "python": platform.python_version(),
        "os": _os_name(),
        "kernel": f"{platform.system()} {platform.release()}",
        "disk": disk(),
    }


def machine() -> str:
    """One line naming the CPU, cores, Python and OS the figures came from."""
    info = machine_info()
    return f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['kernel']}"


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


def format_value(value: float, unit: str = "") -> str:
    """A figure's value as every table shows it: whole above 100 (and counts), else 2 decimals."""
    whole = abs(value) >= 100 or (unit != "ratio" and float(value).is_integer())
    return f"{value:,.0f}" if whole else f"{value:.2f}"


def print_figures(title: str, figures: list[Figure], console: Console | None = None) -> None:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("note")
    for figure in figures:
        table.add_row(figure.name, format_value(figure.value, figure.unit), figure.unit,
                      figure.note)
    (console or Console(width=120)).print(table)


@dataclass(frozen=True)
class Headline:
    """A benchmark's summary: a figure, the baseline or limit measured beside it, the ratio.

    Each names one of the result's figures. ``aim`` is the ratio's target, if the
    issue set one: met when the ratio is at least the aim (``at_least``) or at
    most it (a time ÷ an allowed time).
    """

    figure: str
    baseline: str
    ratio: str
    aim: float | None = None
    at_least: bool = True

    def verdict(self, ratio: float) -> str | None:
        """"met" or "not met" for a ratio against the aim; None without an aim."""
        if self.aim is None:
            return None
        met = ratio >= self.aim if self.at_least else ratio <= self.aim
        return "met" if met else "not met"


@dataclass(frozen=True)
class Result:
    """What one benchmark run measured, and where, when and how: one ``bench/out/*.json``."""

    name: str
    """The module under ``bench/``: ``python -m bench.<name>``."""
    title: str
    figures: list[Figure]
    headline: Headline | None = None
    series: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Figures at several sizes or settings, for a plot: one dict of numbers per point."""
    command: str = ""
    full: bool = False
    machine: dict[str, str] = field(default_factory=dict)
    started: str = ""
    """When the run began (UTC, ISO 8601)."""
    seconds: float = 0.0
    """Wall time of the whole run: setup, generation and measurement."""
    load: float = 0.0
    """The one-minute load average when it began: other work on the machine."""

    def figure(self, name: str) -> Figure:
        for figure in self.figures:
            if figure.name == name:
                return figure
        raise KeyError(f"{self.name} has no figure {name!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Result:
        data = json.loads(text)
        data["figures"] = [Figure(**f) for f in data["figures"]]
        if data.get("headline"):
            data["headline"] = Headline(**data["headline"])
        return cls(**data)


def command_line(name: str) -> str:
    """The command that is running this benchmark, as someone would type it here."""
    executable = Path(sys.executable)
    if executable.is_relative_to(Path.cwd()):
        executable = executable.relative_to(Path.cwd())
    return shlex.join([str(executable), "-m", f"bench.{name}", *sys.argv[1:]])


def finish(name: str, title: str, figures: list[Figure], *, headline: Headline | None = None,
           series: dict[str, list[dict[str, Any]]] | None = None, full: bool = False,
           console: Console | None = None) -> Result:
    """Print the figures, and write them as ``bench/out/<name>.json`` for the report."""
    result = Result(
        name=name, title=title, figures=figures, headline=headline, series=series or {},
        command=command_line(name), full=full, machine=machine_info(),
        started=_STARTED_AT.isoformat(timespec="seconds"),
        seconds=time.perf_counter() - _STARTED, load=_LOAD_AT_START)
    if headline is not None:  # a typo in a name fails here, not in the report
        for wanted in (headline.figure, headline.baseline, headline.ratio):
            result.figure(wanted)
    print_figures(f"{title} — {machine()}", figures, console)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(result.to_json() + "\n", encoding="utf-8")
    return result


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


def parallel_parser(description: str, items: str, small: int | None, full: int | None,
                    *, sizes: str | None = None) -> argparse.ArgumentParser:
    """``--<items> N --full --workers W --chunk C --seed S``, the options of every parallel bench.

    ``items`` is ``small`` by default, ``full`` with ``--full``; ``--<items>`` overrides both.
    A bench that runs several sizes passes None for both and describes them in ``sizes``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(f"--{items}", dest="items", type=int,
                        help=sizes or f"default {small:,}; {full:,} with --full")
    parser.add_argument("--full", action="store_true",
                        help="the full sizes" if sizes else f"{full:,} {items}")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.set_defaults(small=small, full_items=full)
    return parser


def parallel_arguments(parser: argparse.ArgumentParser,
                       argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``parser``'s options and settle ``items`` from ``--full`` when not given."""
    args = parser.parse_args(argv)
    if args.items is None:
        args.items = args.full_items if args.full else args.small
    return args


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
        Figure(f"{work}, at {aim_items:,} {items}", scaled, "s",
               "measured" if done == aim_items else f"scaled from {done:,} at this rate"),
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
