"""``meter-sim``: simulated meters for tests, demos and a technician's bench."""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from firmware_profiles import ProfileError
from protocols.logs import configure_logging
from simulators.fleet import (
    Fleet,
    FleetError,
    FleetFile,
    FleetMeter,
    SimProtocol,
    load_fleet,
    parse_faults,
    start_fleet,
)
from simulators.meter_model import MeterSpec, Service, SimulatedMeter

app = typer.Typer(
    name="meter-sim",
    help=(
        "Simulated utility meters that behave like real ones: registers that grow with a "
        "realistic daily load, roll over at their dial count, and drift their clocks. "
        "Use them to test collectors and to demonstrate meterhub without hardware."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(markup=False)
err = Console(stderr=True, markup=False)
log = logging.getLogger("simulators")


@app.callback()
def main(
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "warning",
) -> None:
    """Simulated meters (see the commands below)."""
    configure_logging(log_level, err)


def _run_fleet(fleet_file: FleetFile, agent_config: Path | None, manifest: Path | None,
               poll_interval_s: float) -> None:
    """Start the fleet, tell where it is, serve until SIGTERM or Ctrl-C."""
    try:
        fleet = start_fleet(fleet_file)
    except (FleetError, ProfileError) as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with fleet:
        if agent_config is not None:
            agent_config.write_text(fleet.agent_sections(interval_s=poll_interval_s))
        if manifest is not None:
            manifest.write_text(json.dumps(fleet.manifest(), indent=1))
        out.print(_fleet_table(fleet))
        out.print("serving; Ctrl-C to stop", style="dim")
        stop.wait()


def _fleet_table(fleet: Fleet) -> Table:
    table = Table(title=f"{len(fleet.meters)} simulated meters")
    for column in ("meter", "profile", "protocol", "endpoint", "unit", "faults"):
        table.add_column(column)
    for meter in fleet.meters:
        table.add_row(meter.config.serial, meter.profile.id, meter.config.protocol,
                      meter.endpoint, str(meter.config.unit_id),
                      ", ".join(f.value for f in meter.config.faults) or "none")
    return table


AgentConfigOption = Annotated[Path | None, typer.Option(
    "--agent-config",
    help="Write the \\[\\[bus]]/\\[\\[meter]] TOML an edge agent needs to poll these.")]
ManifestOption = Annotated[Path | None, typer.Option(
    "--manifest", help="Write endpoints and faults as JSON.")]
PollIntervalOption = Annotated[float, typer.Option(
    "--poll-interval", help="interval_s written into --agent-config.")]


@app.command("serve")
def serve(
    protocol: Annotated[SimProtocol, typer.Option("--protocol", "-p", help="Wire protocol.")],
    profile: Annotated[str, typer.Option("--profile", help="Firmware profile id.")],
    serial: Annotated[str, typer.Option("--serial", help="Meter serial.")] = "SIM0001",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free).")] = 0,
    unit_id: Annotated[int, typer.Option("--unit-id", help="Modbus unit id.")] = 1,
    address: Annotated[str, typer.Option("--address", help="IEC device address.")] = "",
    faults: Annotated[str, typer.Option(
        "--faults", help="Comma-separated: no_answer, slow_answer, garbled, rollover, "
        "backward, stuck, spike, tamper, clock_skew.")] = "",
    fault_rate: Annotated[float, typer.Option(
        "--fault-rate", help="Share of requests a line fault hits.")] = 1.0,
    speed: Annotated[float, typer.Option(
        "--speed", help="Simulated seconds per wall-clock second.")] = 1.0,
    agent_config: AgentConfigOption = None,
    manifest: ManifestOption = None,
    poll_interval: PollIntervalOption = 5.0,
) -> None:
    """Serve one simulated meter: Modbus TCP on a port, or a serial protocol on a new pty."""
    try:
        meter = FleetMeter(serial=serial, profile=profile, protocol=protocol, port=port,
                           unit_id=unit_id, address=address, faults=parse_faults(faults),
                           fault_rate=fault_rate)
    except ValueError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None
    _run_fleet(FleetFile(speed=speed, meters=[meter]), agent_config, manifest, poll_interval)


@app.command("fleet")
def fleet(
    config: Annotated[Path, typer.Option("--config", "-c", help="Fleet file (YAML).")],
    agent_config: AgentConfigOption = None,
    manifest: ManifestOption = None,
    poll_interval: PollIntervalOption = 5.0,
) -> None:
    """Start every meter of a fleet file at once, faults included, until stopped."""
    try:
        fleet_file = load_fleet(config)
    except FleetError as exc:
        log.error("%s", exc)
        raise typer.Exit(2) from None
    _run_fleet(fleet_file, agent_config, manifest, poll_interval)


@app.command("model")
def model(
    serial: Annotated[str, typer.Argument(help="Meter serial; it seeds the load pattern.")],
    service: Annotated[Service, typer.Option(help="What the meter measures.")] = Service.ELECTRIC,
    days: Annotated[int, typer.Option(min=1, help="How many days to show.")] = 2,
    every_hours: Annotated[int, typer.Option(min=1, help="Hours between rows.")] = 6,
    mean_per_day: Annotated[str, typer.Option(help="Average use per day.")] = "12",
    dials: Annotated[int, typer.Option(min=1, max=12, help="Integer digits before rollover.")] = 6,
    start_value: Annotated[str, typer.Option(help="Register value at the start.")] = "0",
    tou: Annotated[bool, typer.Option(help="Also show day/night tariff registers.")] = False,
) -> None:
    """Print the registers a simulated meter would report over a few days."""
    epoch = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    spec = MeterSpec(serial, service, dials=dials, mean_per_day=Decimal(mean_per_day),
                     start_value=Decimal(start_value), tou=tou)
    meter = SimulatedMeter(spec, epoch)
    table = Table(title=f"{serial} ({service.value}, {spec.unit})")
    table.add_column("time (UTC)")
    names = list(meter.registers(epoch))
    for name in names:
        table.add_column(name, justify="right", min_width=len(name))
    for hour in range(0, days * 24 + 1, every_hours):
        at = epoch + timedelta(hours=hour)
        registers = meter.registers(at)
        table.add_row(at.strftime("%Y-%m-%d %H:%M"), *(str(registers[n]) for n in names))
    out.print(table)
