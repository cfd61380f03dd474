"""Run every benchmark and write bench/RESULTS.md from their figures, with plots.

Each benchmark runs as its own process (``python -m bench.<name>``, plus
``--full`` with ``--full``), its output kept in ``bench/out/<name>.log``; it
writes its figures as ``bench/out/<name>.json`` (:func:`bench.harness.finish`).
This renders them: per benchmark the exact command, the date, the load on
the machine, a generated verdict against the aim, the table of figures (the
baseline or limit and the ratio among them), the plots, and the prose kept
in ``bench/notes/<name>.md`` — the only part written by hand.

    python -m bench.report                  # small sizes (`make bench`), then RESULTS.md
    python -m bench.report --full           # full sizes (`make bench FULL=1`)
    python -m bench.report --only billing   # run one, render with the others' last results
    python -m bench.report --render-only    # render from bench/out/*.json, run nothing
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from bench.harness import OUT, Figure, Result, format_value, machine_info, print_figures

BENCH = Path(__file__).resolve().parent
NOTES = BENCH / "notes"
PLOTS = BENCH / "plots"
RESULTS = BENCH / "RESULTS.md"

BENCHMARKS = ("edge_buffer", "poll", "ingest", "backlog", "ingest_workers", "reconcile",
              "edits", "edits_cycle", "billing")
"""Every benchmark, in the order they run and appear."""

PLOT_FILES = {"ingest_workers": "ingest_workers.png", "billing": "billing_accounts.png"}
BUSY_LOAD = 0.5
"""Load average per core above which a run's figures are marked as taken on a busy machine."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# --- running -------------------------------------------------------------------------------


def last_line(log: Path) -> str:
    """The last thing a benchmark printed, for the progress display."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in _ANSI.sub("", tail).replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line and not set(line) <= set("━─┃│┏┓┗┛┡┩└┘┳┻╇┴ ")]
    return lines[-1][:70] if lines else ""


def run_benchmarks(names: Sequence[str], *, full: bool, console: Console) -> dict[str, float]:
    """Run each benchmark in its own process; the wall seconds of each that succeeded."""
    OUT.mkdir(parents=True, exist_ok=True)
    done: dict[str, float] = {}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
               MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("[dim]{task.fields[now]}"))
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("[bold]benchmarks", total=len(names), now="")
        for name in names:
            result_file, log = OUT / f"{name}.json", OUT / f"{name}.log"
            result_file.unlink(missing_ok=True)
            command = [sys.executable, "-m", f"bench.{name}", *(["--full"] if full else [])]
            task = progress.add_task(f"bench.{name}", total=None, now="starting")
            start = time.perf_counter()
            with log.open("w", encoding="utf-8") as output:
                process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                           env={**os.environ, "COLUMNS": "120"})
                while process.poll() is None:
                    progress.update(task, now=last_line(log))
                    time.sleep(0.5)
            seconds = time.perf_counter() - start
            progress.remove_task(task)
            if process.returncode == 0 and result_file.exists():
                done[name] = seconds
                result = Result.from_json(result_file.read_text(encoding="utf-8"))
                print_figures(f"{result.title} ({seconds:.0f} s)", result.figures,
                              progress.console)
            else:
                progress.console.print(f"[red]bench.{name} failed (exit {process.returncode})"
                                       f"; see {log.relative_to(Path.cwd())}")
            progress.advance(overall)
    return done


def load_results(names: Sequence[str]) -> dict[str, Result]:
    """The last result each benchmark wrote, for those that wrote one."""
    found = {}
    for name in names:
        path = OUT / f"{name}.json"
        if path.exists():
            found[name] = Result.from_json(path.read_text(encoding="utf-8"))
    return found


# --- plots ---------------------------------------------------------------------------------


def _pyplot() -> Any:
    """matplotlib's pyplot drawing to files; matplotlib is the optional ``bench`` extra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ingest_workers(result: Result, path: Path) -> None:
    """Reads/s against hub workers, with what linear scaling from one worker would give."""
    plt = _pyplot()
    points = result.series["workers"]
    workers = [p["workers"] for p in points]
    rates = [p["reads_per_s"] for p in points]
    cores = int(result.machine.get("cores", "0") or 0)
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    axes.plot(workers, rates, "o-", color="tab:blue", linewidth=2, markersize=7,
              label="measured: reads stored and acked per second")
    axes.plot(workers, [rates[0] * w / workers[0] for w in workers], "--", color="tab:gray",
              label=f"linear scaling from {workers[0]:.0f} worker")
    for point in points:
        cores_used = f"hub {point['hub_cores']:.1f}"
        if "postgres_cores" in point:
            cores_used += f", PG {point['postgres_cores']:.1f}"
        axes.annotate(f"{point['reads_per_s']:,.0f}\n({cores_used} cores)",
                      (point["workers"], point["reads_per_s"]), textcoords="offset points",
                      xytext=(0, -30), ha="center", fontsize=8)
    if cores:
        axes.axvline(cores, color="tab:red", linestyle=":", linewidth=1)
        axes.text(cores, axes.get_ylim()[1] * 0.02, f" {cores} cores", color="tab:red",
                  fontsize=8)
    axes.set_xticks(workers)
    axes.set_xlabel("hub ingest workers (meterhub serve processes, shared subscription)")
    axes.set_ylabel("ingest rate (reads/s)")
    axes.set_ylim(0, max(rates[0] * workers[-1] / workers[0], *rates) * 1.1)
    axes.yaxis.set_major_formatter(lambda value, _pos: f"{value:,.0f}")
    first = points[0]
    gateways = (f"{first['edges']:.0f} gateways × {first['reads'] / first['edges']:,.0f}"
                if "edges" in first else f"{first['reads']:,.0f}")
    axes.set_title(f"Ingest into PostgreSQL through Mosquitto (shared subscription): "
                   f"{gateways} reads\n"
                   f"{result.machine.get('cpu', '')}, {cores} cores; {result.started[:10]}",
                   fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_billing_accounts(result: Result, path: Path) -> None:
    """compute_bill time against accounts on log-log axes, with a linear reference line."""
    plt = _pyplot()
    points = result.series["accounts"]
    accounts = [p["accounts"] for p in points]
    seconds = [p["seconds"] for p in points]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    axes.loglog(accounts, seconds, "o-", color="tab:blue", linewidth=2, markersize=7,
                label="compute_bill, slowest of the workers (wall)")
    axes.loglog(accounts, [p["cpu_seconds"] for p in points], "s", color="tab:blue",
                alpha=0.4, markersize=5, label="the same, CPU time")
    per_bill = seconds[-1] / accounts[-1]
    span = [accounts[0], max(accounts[-1], 1_000_000)]
    axes.loglog(span, [per_bill * n for n in span], "--", color="tab:gray",
                label="linear (slope 1) through the largest measured point")
    aim = next((f for f in result.figures if f.name.startswith("aim: ")), None)
    if aim is not None:
        axes.loglog([1_000_000], [aim.value], "*", color="tab:red", markersize=12,
                    label=f"aim: 1,000,000 accounts in {aim.value:.0f} s")
    axes.xaxis.set_major_formatter(lambda value, _pos: f"{value:,.0f}")
    axes.set_xlabel("accounts billed")
    axes.set_ylabel("billing time (s)")
    workers = next((f.note for f in result.figures if f.name == "compute_bill, all bills"), "")
    axes.set_title(f"Billing time against accounts (compute_bill; {workers})\n"
                   f"{result.machine.get('cpu', '')}, {result.machine.get('cores', '')} cores; "
                   f"{result.started[:10]}", fontsize=10)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


PLOTTERS = {"ingest_workers": plot_ingest_workers, "billing": plot_billing_accounts}


def draw_plots(results: dict[str, Result], console: Console) -> dict[str, Path]:
    """Draw every plot whose benchmark has a result; the files drawn, by benchmark."""
    drawn = {}
    for name, plotter in PLOTTERS.items():
        result = results.get(name)
        if result is None or not result.series:
            continue
        PLOTS.mkdir(parents=True, exist_ok=True)
        path = PLOTS / PLOT_FILES[name]
        try:
            plotter(result, path)
        except ImportError:
            console.print("matplotlib is not installed (pip install -e '.[bench]'): "
                          "no plots drawn", style="yellow", markup=False)
            return drawn
        drawn[name] = path
    return drawn


# --- RESULTS.md ----------------------------------------------------------------------------


def _value(figure: Figure) -> str:
    return format_value(figure.value, figure.unit)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _when(started: str) -> str:
    try:
        return datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return started or "unknown"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _machine_lines(info: dict[str, str]) -> list[str]:
    return [f"- CPU: {info.get('cpu', '?')}, {info.get('cores', '?')} cores, "
            f"{info.get('memory', '?')} memory",
            f"- OS: {info.get('os', '?')}, kernel {info.get('kernel', '?')}",
            f"- Python {info.get('python', '?')}",
            f"- Disk (bench/out): {info.get('disk', '?')}"]


def _busy(result: Result) -> bool:
    cores = int(result.machine.get("cores", "1") or 1)
    return result.load > BUSY_LOAD * cores


def summary_table(results: dict[str, Result], names: Sequence[str]) -> list[str]:
    lines = ["| benchmark | figure | baseline or limit, same run | ratio | aim |",
             "|---|---|---|---:|---|"]
    for name in names:
        result = results.get(name)
        if result is None:
            lines.append(f"| `bench/{name}.py` | not run | | | |")
            continue
        headline = result.headline
        if headline is None:
            lines.append(f"| [{_cell(result.title)}](#{_anchor(result)}) | see below | | | |")
            continue
        figure, baseline = result.figure(headline.figure), result.figure(headline.baseline)
        ratio = result.figure(headline.ratio)
        verdict = headline.verdict(ratio.value)
        aim = ("—" if headline.aim is None else
               f"{'≥' if headline.at_least else '≤'} {headline.aim:g}: **{verdict}**")
        lines.append(
            f"| [{_cell(result.title)}](#{_anchor(result)}) | {_cell(figure.name)}: "
            f"{_value(figure)} {figure.unit} | {_cell(baseline.name)}: "
            f"{_value(baseline)} {baseline.unit} | {_value(ratio)} | "
            f"{aim} |")
    return lines


def _anchor(result: Result) -> str:
    heading = f"{result.title} bench{result.name}py".lower()
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def section(result: Result, *, header_machine: dict[str, str], plot: Path | None,
            notes: str) -> list[str]:
    lines = [f"## {result.title} (`bench/{result.name}.py`)", ""]
    busy = " — **busy machine: figures noisy**" if _busy(result) else ""
    lines += [f"Command: `{result.command}`  ",
              f"Ran {_when(result.started)}, {'full' if result.full else 'small'} sizes, "
              f"{_duration(result.seconds)}, load average {result.load:.2f} at the "
              f"start{busy}", ""]
    if result.machine and result.machine != header_machine:
        lines += ["Machine (not the one above):", *_machine_lines(result.machine), ""]
    headline = result.headline
    if headline is not None:
        ratio = result.figure(headline.ratio)
        verdict = headline.verdict(ratio.value)
        if verdict is not None:
            sign = "≥" if headline.at_least else "≤"
            lines += [f"**Aim {verdict}** in this run: {ratio.name} = "
                      f"**{_value(ratio)}** (aim {sign} {headline.aim:g}).", ""]
    lines += ["| figure | value | unit | note |", "|---|---:|---|---|"]
    for figure in result.figures:
        value = _value(figure)
        if headline is not None and figure.name in (headline.ratio,):
            value = f"**{value}**"
        lines.append(f"| {_cell(figure.name)} | {value} | {_cell(figure.unit)} | "
                     f"{_cell(figure.note)} |")
    lines.append("")
    if plot is not None:
        relative = plot.relative_to(BENCH).as_posix()
        lines += [f"![{result.title}]({relative})", ""]
    elif result.series and result.name in PLOT_FILES:
        lines += ["(No plot: matplotlib is not installed; `pip install -e '.[bench]'`.)", ""]
    if notes:
        lines += [notes.strip(), ""]
    return lines


def render(results: dict[str, Result], *, names: Sequence[str] = BENCHMARKS,
           command: str = "make bench", equivalent: str = ".venv/bin/python -m bench.report",
           plots: dict[str, Path] | None = None,
           notes: dict[str, str] | None = None, total_seconds: float | None = None,
           now: datetime | None = None) -> str:
    """RESULTS.md from the benchmarks' results, their plots and their hand-written notes."""
    plots = plots or {}
    notes = notes if notes is not None else read_notes(names)
    first = next((results[n] for n in names if n in results), None)
    header_machine = first.machine if first is not None else machine_info()
    now = now or datetime.now(UTC)
    lines = [
        "<!-- Generated by `make bench` (bench/report.py); do not edit. The prose under each",
        "     table is bench/notes/<name>.md; everything else comes from the run. -->",
        "# Benchmark results",
        "",
        "*Generated by `make bench`; do not edit.* Hand-written analysis lives in",
        "`bench/notes/<benchmark>.md` and is inserted under each generated table.",
        "",
        "Each figure is printed beside a baseline or limit measured in the same run on",
        "the same machine, and the ratio. `make bench` runs every benchmark at small sizes",
        "(`make bench FULL=1` passes `--full` to each for the full sizes); a section's",
        "command re-runs that benchmark alone.",
        "",
        f"Command: `{command}`" + (f" (= `{equivalent}`)  " if equivalent else "  "),
        f"Date: {now.strftime('%Y-%m-%d %H:%M UTC')}"
        + (f", {_duration(total_seconds)} in all" if total_seconds is not None else ""),
        "",
        "Machine:",
        "",
        *_machine_lines(header_machine),
        "",
    ]
    busy = [results[n].name for n in names if n in results and _busy(results[n])]
    if busy:
        lines += [f"Load average above {BUSY_LOAD:g} per core when these began (other work "
                  f"on the machine; their figures are noisy): "
                  f"{', '.join(f'`{n}`' for n in busy)}.", ""]
    lines += ["## Summary", "", *summary_table(results, names), ""]
    for name in names:
        result = results.get(name)
        if result is None:
            lines += [f"## `bench/{name}.py`", "", "Not run, or failed: no result in "
                      f"`bench/out/{name}.json` (its output is in `bench/out/{name}.log`).", ""]
            if notes.get(name):
                lines += [notes[name].strip(), ""]
            continue
        lines += section(result, header_machine=header_machine, plot=plots.get(name),
                         notes=notes.get(name, ""))
    return "\n".join(lines).rstrip() + "\n"


def read_notes(names: Sequence[str]) -> dict[str, str]:
    return {name: (NOTES / f"{name}.md").read_text(encoding="utf-8")
            for name in names if (NOTES / f"{name}.md").exists()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="full sizes: --full to each")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help="run only these; the others' last results are rendered")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: render bench/out/*.json again (after editing "
                             "bench/notes/), with the last run's command and date")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the file to write")
    args = parser.parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log file: tables as wide as the benchmarks print them
        console = Console(width=120)
    start = time.perf_counter()
    ran: dict[str, float] = {}
    if not args.render_only:
        ran = run_benchmarks(args.only or BENCHMARKS, full=args.full, console=console)
    total = time.perf_counter() - start
    results = load_results(BENCHMARKS)
    plots = draw_plots(results, console)
    run = {"command": "make bench" + (" FULL=1" if args.full else ""),
           "equivalent": ".venv/bin/python -m bench.report" + (" --full" if args.full else ""),
           "total_seconds": total, "date": datetime.now(UTC).isoformat(timespec="seconds")}
    if args.only:
        run.update(command=shlex.join([".venv/bin/python", "-m", "bench.report",
                                       *(argv if argv is not None else sys.argv[1:])]),
                   equivalent="")
    last_run = OUT / "report.json"
    if args.render_only:  # the header of the run whose results these are, if it was one
        run = json.loads(last_run.read_text()) if last_run.exists() else {
            "command": ".venv/bin/python -m bench.report --render-only", "equivalent": "",
            "total_seconds": None, "date": run["date"]}
    else:
        last_run.write_text(json.dumps(run) + "\n", encoding="utf-8")
    args.out.write_text(render(results, command=run["command"], equivalent=run["equivalent"],
                               plots=plots, total_seconds=run["total_seconds"],
                               now=datetime.fromisoformat(run["date"])), encoding="utf-8")
    failed = [] if args.render_only else [n for n in (args.only or BENCHMARKS) if n not in ran]
    console.print(f"wrote {args.out} ({len(results)} benchmarks"
                  + (f", {len(plots)} plots" if plots else "") + ")"
                  + ("" if args.render_only else f" in {_duration(total)}")
                  + (f"; [red]failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
