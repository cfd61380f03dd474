"""``meter-sim``: simulated meters for tests, demos and a technician's bench."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

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
out = Console()


@app.callback()
def main() -> None:
    """Simulated meters (see the commands below)."""


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
