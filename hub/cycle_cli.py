"""``meterhub cycle``: work a billing cycle — today, reconcile it.

``meterhub cycle reconcile C2026-11`` prints one line per route (meters, read,
missing, trouble, inactive, progress) and, with ``--report``, writes every
meter's result as JSON or CSV (by the file's suffix) for other tools.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.console import Console
from rich.table import Table

from edge_agent.files import write_atomic
from hub.collectors_cli import open_store
from hub.reconcile import Reconciliation, Status
from hub.reconcile_store import UnknownCycle, reconcile_cycle

cycle_app = typer.Typer(help="Work a billing cycle: reconcile its routes.", no_args_is_help=True)
out = Console()
log = logging.getLogger("hub")

REPORT_FORMATS = (".json", ".csv")


@cycle_app.command("reconcile")
def reconcile_command(
    ctx: typer.Context,
    cycle: Annotated[str, typer.Argument(help="Cycle id, as imported (e.g. C2026-11).")],
    report: Annotated[Path | None, typer.Option(
        help="Write every meter's result here: .json or .csv.")] = None,
    timezone: Annotated[str, typer.Option(
        envvar="METERHUB_TIMEZONE", help="The utility's time zone: read windows are its days.")]
        = "UTC",
) -> None:
    """Which meters of the cycle have a billing read, which are missing, and why."""
    if report is not None and report.suffix not in REPORT_FORMATS:
        raise typer.BadParameter(f"--report must end in {' or '.join(REPORT_FORMATS)}")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(f"{timezone!r} is not a time zone (e.g. Europe/Amsterdam)") \
            from None
    with open_store(ctx) as store, store.connect() as conn:
        try:
            result = reconcile_cycle(conn, cycle, zone)
        except UnknownCycle as exc:
            log.error("%s", exc.args[0])
            raise typer.Exit(1) from None
    out.print(route_table(result))
    if report is not None:
        write_atomic(report, render_report(result, report.suffix))
        out.print(f"report: {report} ({len(result.meters)} meters)")


def route_table(result: Reconciliation) -> Table:
    table = Table(title=f"cycle {result.cycle}: {len(result.meters)} meters")
    table.add_column("route")
    for status in (Status.READ, Status.MISSING, Status.TROUBLE, Status.ESTIMATED,
                   Status.INACTIVE):
        table.add_column(status.value, justify="right")
    table.add_column("meters", justify="right")
    table.add_column("done", justify="right")
    for route in result.routes():
        counts = [str(route.counts.get(s, 0)) for s in (
            Status.READ, Status.MISSING, Status.TROUBLE, Status.ESTIMATED, Status.INACTIVE)]
        table.add_row(route.route, *counts, str(route.meters), f"{route.done:.0%}")
    return table


def render_report(result: Reconciliation, suffix: str) -> bytes:
    rows = [m.as_row() for m in result.meters]
    if suffix == ".json":
        return (json.dumps({"cycle": result.cycle, "meters": rows}, indent=1) + "\n").encode()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["route"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()
