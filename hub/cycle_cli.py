"""``meterhub cycle``: work a billing cycle — reconcile it, send its missing meters out.

``meterhub cycle reconcile C2026-11`` prints one line per route (meters, read,
missing, trouble, inactive, progress) and, with ``--report``, writes every
meter's result as JSON or CSV (by the file's suffix) for other tools.
``meterhub cycle reread C2026-11 --collector hh-01`` builds the route of the
missing meters and publishes it to that handheld. ``meterhub cycle edits
C2026-11`` runs the meter edits and lists the accounts held out of billing
(the queue itself is ``meterhub exceptions``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.console import Console
from rich.table import Table

from edge_agent.files import write_atomic
from hub import broker_options as options
from hub.billing_store import bill_cycle
from hub.collectors_cli import open_store
from hub.edits.ruleset import RuleSet, RuleSetError, default_rule_set, load_rule_set
from hub.edits.store import EditsRun, run_edits
from hub.export.files import write_export
from hub.export.formats import Format
from hub.export.green_button import green_button_xml
from hub.export.rows import ExportError
from hub.export.store import NothingToExport, export_rows, green_button_inputs
from hub.gc_tuning import tune_garbage_collector
from hub.keys_cli import HubKeyOption, load_hub_signer
from hub.rates.book import RateBook, RateBookError, default_rate_dir
from hub.reconcile import Reconciliation, Status
from hub.reconcile_store import UnknownCycle, reconcile_cycle
from hub.reread_store import PublishError, build_from_store, publish_route
from protocols.broker_settings import BrokerCredentialError
from protocols.mqtt_contract import routes_topic
from protocols.read import COLLECTOR_RE
from protocols.route_message import encode_route

cycle_app = typer.Typer(help="Work a billing cycle: reconcile it, send re-read routes, run "
                             "the meter edits.",
                        no_args_is_help=True)
out = Console(markup=False)
log = logging.getLogger("hub")

REPORT_FORMATS = (".json", ".csv")


@cycle_app.command("reconcile")
def reconcile_command(
    ctx: typer.Context,
    cycle: Annotated[str, typer.Argument(help="Cycle id, as imported (e.g. C2026-11).")],
    report: Annotated[Path | None, typer.Option(
        help="Write every meter's result here: .json or .csv.")] = None,
    timezone: ZoneOption = "UTC",
) -> None:
    """Which meters of the cycle have a billing read, which are missing, and why."""
    if report is not None and report.suffix not in REPORT_FORMATS:
        raise typer.BadParameter(f"--report must end in {' or '.join(REPORT_FORMATS)}")
    utility_zone = zone(timezone)
    with open_store(ctx) as store, store.connect() as conn:
        try:
            result = reconcile_cycle(conn, cycle, utility_zone)
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
    timezone: ZoneOption = "UTC",
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
            route, _ = build_from_store(conn, cycle, collector, zone(timezone))
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


ZoneOption = Annotated[str, typer.Option(
    "--timezone", envvar="METERHUB_TIMEZONE",
    help="The utility's time zone: read windows are its days.")]
RuleSetOption = Annotated[Path | None, typer.Option(
    "--rules", envvar="METERHUB_RULES", exists=True, dir_okay=False,
    help="Meter-edit rule set (YAML); default: the rule set that ships with meterhub.")]


def load_rules(path: Path | None) -> RuleSet:
    """The rule set at ``path`` (or the packaged one); a bad file exits 2 saying where."""
    try:
        return load_rule_set(path) if path is not None else default_rule_set()
    except RuleSetError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None


@cycle_app.command("edits")
def edits_command(
    ctx: typer.Context,
    cycle: Annotated[str, typer.Argument(help="Cycle id.")],
    rules: RuleSetOption = None,
    timezone: ZoneOption = "UTC",
) -> None:
    """Run the meter edits: choose each meter's billing read, estimate missing ones, open
    an exception for every finding, and list the accounts held out of billing."""
    from hub.exceptions_cli import print_held  # noqa: PLC0415 - that module imports this one

    rule_set = load_rules(rules)
    tune_garbage_collector()
    with open_store(ctx) as store:
        try:
            with store.begin() as conn:
                run = run_edits(conn, cycle, zone(timezone), rule_set)
        except UnknownCycle as exc:
            log.error("%s", exc.args[0])
            raise typer.Exit(1) from None
    out.print(edits_table(run))
    out.print(f"billing reads: {_counts(run.billing) or 'none'}; exceptions: {run.opened} "
              f"opened, {run.cleared} cleared, {run.open_exceptions} open")
    print_held(cycle, run.held)


def edits_table(run: EditsRun) -> Table:
    table = Table(title=f"cycle {run.cycle}: {run.meters} meters, rule set {run.rule_set}")
    for column in ("rule", "severity", "findings"):
        table.add_column(column, justify="right" if column == "findings" else "left")
    order = {"blocking": 0, "warning": 1, "info": 2}
    for (rule, severity), count in sorted(run.findings.items(),
                                          key=lambda kv: (order.get(kv[0][1], 3), kv[0][0])):
        table.add_row(rule, severity, str(count))
    return table


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(counter.items()))


RatesOption = Annotated[Path | None, typer.Option(
    "--rates", envvar="METERHUB_RATES", exists=True, file_okay=False,
    help="Directory of rate tables, one <RATE-CODE>.yaml each; default: the sample rates "
         "shipped with meterhub.")]


def load_book(directory: Path | None) -> RateBook:
    """The rate book in ``directory`` (or the shipped one); bad files exit 2, each named."""
    try:
        return RateBook.load(directory if directory is not None else default_rate_dir())
    except RateBookError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None


@cycle_app.command("bill")
def bill_command(
    ctx: typer.Context,
    cycle: Annotated[str, typer.Argument(help="Cycle id.")],
    rates: RatesOption = None,
) -> None:
    """Compute every account's bill for the cycle from its billing reads and rate table;
    accounts held by the meter edits are skipped and listed."""
    from hub.exceptions_cli import print_held  # noqa: PLC0415 - that module imports this one

    book = load_book(rates)
    tune_garbage_collector()
    with open_store(ctx) as store:
        try:
            with store.begin() as conn:
                run = bill_cycle(conn, cycle, book)
        except UnknownCycle as exc:
            log.error("%s", exc.args[0])
            raise typer.Exit(1) from None
    out.print(f"cycle {cycle}: {run.billed} bills, total {run.total:,.2f}")
    table = Table()
    table.add_column("rate")
    table.add_column("bills", justify="right")
    for code, count in sorted(run.by_rate.items()):
        table.add_row(code, str(count))
    out.print(table)
    print_held(cycle, run.held)
    if run.skipped:
        skipped = Table(title=f"{len(run.skipped)} account(s) not billed")
        skipped.add_column("account")
        skipped.add_column("why", overflow="fold")
        for item in run.skipped:
            skipped.add_row(item.account, item.why)
        out.print(skipped)


@cycle_app.command("export")
def export_command(
    ctx: typer.Context,
    cycle: Annotated[str, typer.Argument(help="Cycle id.")],
    key: HubKeyOption,
    fmt: Annotated[Format, typer.Option("--format", help="csv, fixed (fixed-width) or jsonl.")]
        = Format.CSV,
    out_dir: Annotated[Path, typer.Option(
        "--out", file_okay=False, help="Directory for the file and its manifest.")] = Path("."),
    rates: RatesOption = None,
) -> None:
    """Write the cycle file for the CIS and its signed manifest (same cycle, same bytes)."""
    book = load_book(rates)
    signer = load_hub_signer(key)
    with open_store(ctx) as store, store.connect() as conn:
        try:
            rows, generated_at = export_rows(conn, cycle, book)
        except NothingToExport as exc:
            log.error("%s", exc)
            raise typer.Exit(1) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        paths = write_export(out_dir, cycle, rows, fmt, signer, generated_at=generated_at)
    except ExportError as exc:
        log.error("%s", exc)
        raise typer.Exit(1) from None
    out.print(f"{paths.file}: {len(rows)} rows")
    out.print(f"{paths.manifest}: signed by key {signer.key_id}")


@cycle_app.command("green-button")
def green_button_command(
    ctx: typer.Context,
    cycle: Annotated[str, typer.Argument(help="Cycle id.")],
    account: Annotated[str, typer.Argument(help="Account id.")],
    out_file: Annotated[Path, typer.Option("--out", dir_okay=False,
                                           help="The Green Button XML file to write.")],
    rates: RatesOption = None,
    timezone: ZoneOption = "UTC",
) -> None:
    """An account's usage and bill for the cycle as a Green Button (NAESB ESPI) file."""
    book = load_book(rates)
    with open_store(ctx) as store, store.connect() as conn:
        try:
            row, usage, summary, generated_at = green_button_inputs(conn, cycle, account, book)
        except NothingToExport as exc:
            log.error("%s", exc)
            raise typer.Exit(1) from None
    try:
        xml = green_button_xml(account, usage, summary, meter=row.meter, service=row.service,
                               unit=row.unit, cycle=cycle, generated_at=generated_at,
                               day_zone=zone(timezone))
    except ExportError as exc:
        log.error("%s", exc)
        raise typer.Exit(1) from None
    write_atomic(out_file, xml)
    out.print(f"{out_file}: {len(usage)} intervals of meter {row.meter} and the bill of "
              f"{summary.total} {summary.currency}")


def zone(name: str) -> ZoneInfo:
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
