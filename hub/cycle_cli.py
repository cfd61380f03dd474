"""``meterhub cycle``: work a billing cycle — reconcile it, send its missing meters out.

``meterhub cycle reconcile C2026-11`` prints one line per route (meters, read,
missing, trouble, inactive, progress) and, with ``--report``, writes every
meter's result as JSON or CSV (by the file's suffix) for other tools.
``meterhub cycle reread C2026-11 --collector hh-01`` builds the route of the
missing meters and publishes it to that handheld.
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
from hub import broker_options as options
from hub.collectors_cli import open_store
from hub.reconcile import Reconciliation, Status
from hub.reconcile_store import UnknownCycle, reconcile_cycle
from hub.reread_store import PublishError, build_from_store, publish_route
from protocols.broker_settings import BrokerCredentialError
from protocols.mqtt_contract import routes_topic
from protocols.read import COLLECTOR_RE
from protocols.route_message import encode_route

cycle_app = typer.Typer(help="Work a billing cycle: reconcile it, send re-read routes.",
                        no_args_is_help=True)
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
    zone = _zone(timezone)
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


@cycle_app.command("reread")
def reread_command(
    ctx: typer.Context,
    cycle: Annotated[str, typer.Argument(help="Cycle id.")],
    collector: Annotated[str, typer.Option(help="The handheld's collector id.")],
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Also write the route message here (JSON).")] = None,
    publish: Annotated[bool, typer.Option(help="Publish to the handheld over MQTT.")] = True,
    timezone: Annotated[str, typer.Option(envvar="METERHUB_TIMEZONE")] = "UTC",
    broker_host: options.Host = options.DEFAULT_HOST,
    broker_port: options.Port = None,
    broker_user: options.User = options.DEFAULT_USER,
    broker_password_file: options.PasswordFile = None,
    broker_password_env: options.PasswordEnv = None,
    tls: options.Tls = False,
    ca_file: options.CaFile = None,
) -> None:
    """Send the cycle's missing meters, in walk order with limits, to a handheld."""
    if not COLLECTOR_RE.fullmatch(collector):
        raise typer.BadParameter(f"{collector!r} is not a collector id")
    broker = options.broker_settings(broker_host, broker_port, broker_user,
                                     broker_password_file, broker_password_env, tls, ca_file)
    with open_store(ctx) as store, store.connect() as conn:
        try:
            route, _ = build_from_store(conn, cycle, collector, _zone(timezone))
        except UnknownCycle as exc:
            log.error("%s", exc.args[0])
            raise typer.Exit(1) from None
    if not route.stops:
        out.print(f"cycle {cycle}: no missing meters; no route sent")
        return
    if out_file is not None:
        write_atomic(out_file, encode_route(route))
    table = Table(title=f"route {route.route_id} for {collector}: {len(route.stops)} meters")
    for column in ("#", "meter", "address", "previous", "low", "high", "hazards"):
        table.add_column(column)
    for stop in route.stops:
        table.add_row(str(stop.sequence), stop.meter, stop.address,
                      str(stop.previous.value) if stop.previous else "—",
                      str(stop.limits.low) if stop.limits else "—",
                      str(stop.limits.high) if stop.limits else "—", stop.hazards)
    out.print(table)
    if publish:
        try:
            publish_route(route, broker)
        except (PublishError, BrokerCredentialError) as exc:
            log.error("%s", exc)
            raise typer.Exit(1) from None
        out.print(f"published to {routes_topic(collector)} (retained: the handheld gets it "
                  "when it next connects)")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(f"{name!r} is not a time zone (e.g. Europe/Amsterdam)") \
            from None


def route_table(result: Reconciliation) -> Table:
    table = Table(title=f"cycle {result.cycle}: {len(result.meters)} meters")
    table.add_column("route")
    for status in Status:  # read, missing, trouble, estimated, inactive
        table.add_column(status.value, justify="right")
    table.add_column("meters", justify="right")
    table.add_column("done", justify="right")
    for route in result.routes():
        counts = [str(route.counts.get(status, 0)) for status in Status]
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
