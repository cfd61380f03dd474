"""What every benchmark shares: the machine it ran on, repeated timing, a printed verdict.

A benchmark's figure means nothing alone, so each prints it next to a baseline
or limit measured in the same run on the same machine, and the ratio.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

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
